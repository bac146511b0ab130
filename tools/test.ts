/**
 * `deno task test`: runs every Deno test suite (unit, conformance against
 * memory and a real Postgres, JSDoc examples) against `DATABASE_URL`, or a
 * throwaway local Postgres when none is given, and writes JUnit reports to
 * `.tmp/` for the CI summary.
 *
 * `@std/assert` comes from JSR. Where JSR cannot be reached (this project's
 * build machines reach only the npm registry), the tests run with
 * `tests/_offline/import_map.json`, which maps it to a small stand-in over
 * `node:assert/strict`; this is printed loudly when it happens.
 *
 * @module
 */
import { importMapArgs } from "./_jsr.ts";
import { startThrowawayPostgres } from "./postgres_server.ts";

const extra = Deno.args;

const importMap = await importMapArgs();

let env: Record<string, string> = {};
let stop = async () => {};
if (!Deno.env.get("DATABASE_URL")) {
  const server = await startThrowawayPostgres({
    log: (line) => console.error(`[test] ${line}`),
  });
  env = { DATABASE_URL: server.url, PG_BIN: server.binDir };
  stop = () => server.stop();
}

await Deno.mkdir(".tmp", { recursive: true });
let failed = false;
try {
  const runs: [string, string[]][] = [
    ["unit+conformance", [
      "test",
      "-A",
      ...importMap,
      "--junit-path=.tmp/deno.junit.xml",
      ...extra,
      "tests/",
    ]],
    ["jsdoc examples", [
      "test",
      "-A",
      ...importMap,
      "--doc",
      "--junit-path=.tmp/doc.junit.xml",
      "mod.ts",
      "src/",
    ]],
  ];
  for (const [label, args] of runs) {
    console.error(`[test] deno ${args.join(" ")}   (${label})`);
    const status = await new Deno.Command(Deno.execPath(), { args, env }).spawn().status;
    if (!status.success) failed = true;
  }
} finally {
  await stop();
}
Deno.exit(failed ? 1 : 0);
