// Runs examples/leader.ts briefly as a child process under Deno: one leader
// at a time, rising tokens, stale appends refused. Every wait is bounded.
import { assertEquals, assertMatch } from "@std/assert";
import { importMapArgs } from "../tools/_jsr.ts";
import { DATABASE_URL, dbTest } from "./_db.ts";

dbTest("examples/leader.ts: one leader at a time, fenced appends, stale ones refused", async () => {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", ...await importMapArgs(), "examples/leader.ts"],
    env: { DATABASE_URL: DATABASE_URL!, SECONDS: "2", TTL_MS: "500", TERM_MS: "400" },
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const kill = setTimeout(() => child.kill("SIGKILL"), 60_000);
  const output = await child.output().finally(() => clearTimeout(kill));
  const stdout = new TextDecoder().decode(output.stdout);
  const stderr = new TextDecoder().decode(output.stderr);
  assertEquals(output.code, 0, `${stdout}\n${stderr}`);
  const summary = stdout.trim().split("\n").at(-1)!;
  assertMatch(summary, /^ok: \d+ terms, \d+ fenced appends, [1-9]\d* stale appends refused/);
  assertMatch(summary, /never two leaders at once$/);
});
