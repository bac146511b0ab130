// Runs examples/leader.ts briefly with `bun run`: one leader at a time,
// rising tokens, stale appends refused. Every wait is bounded.
import { expect } from "bun:test";
import { DATABASE_URL, dbTest } from "./_db.ts";

dbTest(
  "examples/leader.ts under bun run: one leader at a time, stale appends refused",
  async () => {
    const child = Bun.spawn([process.execPath, "run", "examples/leader.ts"], {
      env: {
        ...process.env,
        DATABASE_URL: DATABASE_URL!,
        SECONDS: "2",
        TTL_MS: "500",
        TERM_MS: "400",
      },
      stdout: "pipe",
      stderr: "pipe",
    });
    const kill = setTimeout(() => child.kill("SIGKILL"), 50_000);
    const [stdout, stderr, code] = await Promise.all([
      new Response(child.stdout).text(),
      new Response(child.stderr).text(),
      child.exited,
    ]).finally(() => clearTimeout(kill));
    expect(code, `${stdout}\n${stderr}`).toBe(0);
    const summary = stdout.trim().split("\n").at(-1)!;
    expect(summary).toMatch(/^ok: \d+ terms, \d+ fenced appends, [1-9]\d* stale appends refused/);
    expect(summary).toMatch(/never two leaders at once$/);
  },
);
