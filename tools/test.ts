/**
 * `deno task test`: runs every Deno test suite (unit, conformance against
 * memory and a real Postgres, JSDoc examples) against `DATABASE_URL`, or a
 * throwaway local Postgres when none is given, then the Bun suite
 * (`bun test tests/bun`) against the same server when `bun` is on the PATH,
 * and writes JUnit reports to `.tmp/` for the CI summary
 * (`deno.junit.xml`, `doc.junit.xml`, `bun.junit.xml`).
 *
 * Without `bun` the Bun suite is reported as SKIPPED; that fails the run
 * only when `CI` is set, so that CI never passes without it.
 *
 * Ctrl-C or SIGTERM stops every child, the server and every process below,
 * and removes the run's temporary directory (children's `TMPDIR`), which
 * holds the server's.
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
import { runChild, startRun } from "./_run.ts";
import { exit } from "./_interrupt.ts";
import { helpAndExit } from "./_usage.ts";

helpAndExit(`Usage: deno task test [deno test flags...]

Runs every test suite against a real Postgres: the Deno tests (unit,
conformance on every adapter, window tests, the short torture rounds), the
JSDoc examples, then the Bun suite (tests/bun) when bun is on the PATH; ends
with one "N passed, N failed" line and exits 1 if anything failed.

Uses DATABASE_URL when set, else starts a throwaway Postgres (installed, or
from npm) and removes it afterwards. Extra arguments go to \`deno test\` for
the Deno tests, e.g. \`deno task test --filter watch\`.

  -h, --help   print this and exit
`);

const extra = Deno.args;

const importMap = await importMapArgs();

const run = await startRun();
let env: Record<string, string> = { ...run.env };
let stop = async () => {};
if (!Deno.env.get("DATABASE_URL")) {
  const server = await startThrowawayPostgres({
    log: (line) => console.error(`[test] ${line}`),
    tmpDir: run.tmpDir,
  });
  env = { ...env, DATABASE_URL: server.url, PG_BIN: server.binDir };
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
    const status = await runChild(Deno.execPath(), args, env);
    if (!status.success) failed = true;
  }
  if (!await runBun(env)) failed = true;
} finally {
  await stop();
  await run.close();
}
await exit(failed ? 1 : 0);

// The Bun suite: conformance through Bun.SQL and porsager under Bun, the
// Bun entry point and the example Bun service. `--filter` is Deno's and is
// not passed on.
async function runBun(env: Record<string, string>): Promise<boolean> {
  const args = [
    "test",
    "--reporter=junit",
    "--reporter-outfile=.tmp/bun.junit.xml",
    "--timeout=60000",
    "tests/bun",
  ];
  let status: Deno.CommandStatus;
  try {
    console.error(`[test] bun ${args.join(" ")}   (bun suite)`);
    status = await runChild("bun", args, env);
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
    const ci = Boolean(Deno.env.get("CI"));
    console.error(
      "\n" + "*".repeat(78) +
        "\n*** SKIPPED: the Bun suite (tests/bun): `bun` is not on the PATH." +
        (ci ? " CI is set: this FAILS the run." : " Set CI to make this fail.") + "\n" +
        "*".repeat(78) + "\n",
    );
    return !ci;
  }
  return status.success;
}
