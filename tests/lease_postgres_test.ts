// Leases across processes on a real Postgres: contenders under Deno (and
// Bun, when it is on the PATH) paused with SIGSTOP for longer than the ttl
// and killed with SIGKILL, their tenures checked (torture/lease_processes.ts).
import { assert, assertEquals } from "@std/assert";
import { importMapArgs } from "../tools/_jsr.ts";
import { runLeaseProcesses } from "../torture/lease_processes.ts";
import { DATABASE_URL, dbTest } from "./_db.ts";

dbTest("lease: processes paused past the ttl and killed never hold at once", async () => {
  const report = await runLeaseProcesses({
    url: DATABASE_URL!,
    denoArgs: await importMapArgs(),
    workers: 4,
    ttlMs: 300,
    durationMs: 8000,
  });
  console.log(
    `  ${report.tenures.length} tenures ${JSON.stringify(report.endings)}, ` +
      `${report.pauses} pauses, ${report.kills} kills, runtimes ${
        JSON.stringify(report.runtimes)
      }, ` +
      `smallest gap ${report.verdict.minGapMs.toFixed(1)} ms`,
  );
  assertEquals(report.verdict.violations, [], "violations");
  assertEquals(report.noise, [], "workers wrote errors");
  assert(report.tenures.length >= 8, `only ${report.tenures.length} tenures`);
  assert(report.pauses >= 2, "pauses");
});
