// Leases across processes on a real Postgres: contenders under Deno (and
// Bun, when it is on the PATH) paused with SIGSTOP for longer than the ttl
// and killed with SIGKILL, their tenures checked (torture/lease_processes.ts);
// and a contender woken by the notification of a release.
import { assert, assertEquals } from "@std/assert";
import { importMapArgs } from "../tools/_jsr.ts";
import { runLeaseProcesses } from "../torture/lease_processes.ts";
import { acquireLease, PostgresConsensus } from "../mod.ts";
import { fromPostgresJs } from "../src/adapters/postgres_js.ts";
import { connect, DATABASE_URL, dbTest } from "./_db.ts";

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

dbTest("lease: a contender on another store is woken by the release's notification", async () => {
  // Two stores with `notify: true`, as two processes would have. The
  // contender polls once a minute: only the NOTIFY of the released version
  // can wake it before the guard below (far under a poll interval) fires.
  const open = () =>
    PostgresConsensus.open(fromPostgresJs(connect({ max: 2 }), { owned: true }), {
      table: "lease_notify",
      notify: true,
    });
  await using holderStore = await open();
  await using contenderStore = await open();
  const key = `notify-${crypto.randomUUID()}`;
  const options = { ttlMs: 60_000, pollIntervalMs: 60_000 };
  const held = await acquireLease(holderStore, key, { holder: "a", ...options });
  const waiting = acquireLease(contenderStore, key, { holder: "b", ...options });
  // Let the contender read the held version and settle into its wait.
  const seen = await contenderStore.head(key);
  assertEquals(seen?.seqno, held.token);
  await new Promise((resolve) => setTimeout(resolve, 200));
  await held.release();
  let guard: ReturnType<typeof setTimeout> | undefined;
  const outcome = await Promise.race([
    waiting,
    new Promise<"poll">((resolve) => guard = setTimeout(() => resolve("poll"), 20_000)),
  ]);
  clearTimeout(guard);
  assert(outcome !== "poll", "the contender was not woken: it would have waited for its poll");
  assert(outcome.token > held.token, "a later token");
  await outcome.release();
});
