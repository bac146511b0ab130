// Runs examples/config_reload.ts with `bun run`: every instance applies every
// configuration change, in order, each once. Every wait is bounded.
import { expect } from "bun:test";
import { DATABASE_URL, dbTest } from "./_db.ts";

dbTest("examples/config_reload.ts under bun run: every change applied in order, once", async () => {
  const child = Bun.spawn([process.execPath, "run", "examples/config_reload.ts"], {
    env: { ...process.env, DATABASE_URL: DATABASE_URL!, CHANGES: "20", INTERVAL_MS: "10" },
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
  expect(stdout.trim().split("\n").at(-1)).toBe(
    "ok: 3 instances applied 20 changes, in order, each once, up to seqno 20",
  );
});
