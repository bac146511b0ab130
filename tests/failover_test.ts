// A short failover round (`deno task torture --failover` runs the long one):
// a primary and a synchronous standby on loopback, the workload and the
// storm through a multi-host URL, the primary killed (immediate), the
// standby promoted and a new standby built, twice; the history must be
// linearizable and every acknowledged commit on the final primary.
import { assert, assertEquals } from "@std/assert";
import { failoverPassed, formatFailoverReport, runFailoverCampaign } from "../torture/failover.ts";
import { findReplicationBinaries } from "../torture/replication.ts";

Deno.test({
  name: "failover: 2 failovers, synchronous standby, linearizable, no acknowledged write lost",
  // Needs installed binaries with pg_basebackup and pg_ctl (the npm binaries have neither).
  ignore: await findReplicationBinaries() === undefined,
  // Pools keep sockets and timers between statements by design.
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const report = await runFailoverCampaign({
      synchronous: true,
      failovers: 2,
      intervalMs: 2_000,
      clients: 4,
      stormStores: 1,
      // Generous on a loaded machine: a slow failover must not turn into
      // timeouts that leave too little to check.
      storeTimeoutMs: 10_000,
      log: () => {},
    });
    console.log(formatFailoverReport(report, "tests/failover_test.ts (2 failovers, sync)"));
    for (const failure of report.failures) console.log(`FAILURE: ${failure}`);
    assertEquals(report.failovers, 2, "failovers that ran");
    assertEquals(report.violations, 0, "linearizability violations");
    assertEquals(report.writesLost, 0, "acknowledged writes lost");
    assertEquals(report.undecided, 0, "keys the checker could not decide");
    assertEquals(report.doubleCommits, 0, "double commits");
    assertEquals(report.unexpectedErrors, 0, "errors other than ConsensusError/RangeError");
    assert(report.writesAcknowledged > 100, `only ${report.writesAcknowledged} commits`);
    assert(failoverPassed(report));
  },
});
