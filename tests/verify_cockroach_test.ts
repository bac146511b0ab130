// tools/verify_cockroach.ts, the script users run against their own
// CockroachDB, run here against Postgres (`--allow-postgres`: the CockroachDB
// statements at SERIALIZABLE), so that it keeps working as the library
// changes; and its refusal of a server that is not CockroachDB.
import { assertEquals, assertMatch, assertStringIncludes } from "@std/assert";
import { importMapArgs } from "../tools/_jsr.ts";
import { DATABASE_URL, dbTest } from "./_db.ts";

async function verify(...args: string[]): Promise<{ code: number; stdout: string }> {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", ...await importMapArgs(), "tools/verify_cockroach.ts", ...args],
    stdin: "null",
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const kill = setTimeout(() => child.kill("SIGKILL"), 180_000);
  try {
    const { code, stdout } = await child.output();
    return { code, stdout: new TextDecoder().decode(stdout) };
  } finally {
    clearTimeout(kill);
  }
}

dbTest(
  "verify:cockroach passes on Postgres with --allow-postgres, every check but the DDL",
  async () => {
    const { code, stdout } = await verify(
      "--url",
      DATABASE_URL!,
      "--allow-postgres",
      "--race-seconds",
      "2",
    );
    assertEquals(code, 0, stdout);
    for (
      const check of [
        "engine",
        "isolation level",
        "table-shape query",
        "conformance suite",
        "race",
        "window tests",
      ]
    ) {
      assertStringIncludes(stdout, `PASS ${check}:`);
    }
    assertStringIncludes(stdout, "SKIP DDL:");
    assertMatch(
      stdout,
      /\nverify:cockroach: PASS on not CockroachDB .*: 6 passed, 0 failed, 1 skipped\n/,
    );
  },
);

dbTest("verify:cockroach fails on a server that is not CockroachDB", async () => {
  const { code, stdout } = await verify("--url", DATABASE_URL!, "--race-seconds", "1");
  assertEquals(code, 1, stdout);
  assertStringIncludes(stdout, "FAIL engine: the server is not CockroachDB");
  assertMatch(stdout, /\nverify:cockroach: FAIL /);
});
