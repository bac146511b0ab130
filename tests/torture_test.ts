// The short torture campaign: the recorded workload against a throwaway
// Postgres of its own (the restart faults need to own the server), every
// fault kind injected, the history checked for linearizability, and
// acknowledged writes checked after crashes; then a short fresh-key storm at
// each isolation level; then compareAndSetMany transfers at each level and
// under faults; then watchers and lease contenders beside the workload under
// faults. `deno task torture` runs the long version.
import { assert, assertEquals } from "@std/assert";
import {
  formatReport,
  runCampaign,
  STORM_VARIANTS,
  stormVariantName,
} from "../torture/campaign.ts";
import { FAULT_KINDS } from "../torture/faults.ts";

Deno.test({
  name: "torture: 16 clients, 1 and 8 keys, every fault kind, linearizable and durable",
  // Pools and the proxy keep sockets and timers between statements by design.
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const report = await runCampaign({
      durationMs: 50_000,
      roundMs: 25_000,
      clients: 16,
      maxOpsPerRound: 30_000,
      stormShare: 0,
      log: () => {},
    });
    console.log(formatReport(report, "tests/torture_test.ts (short campaign)"));
    for (const failure of report.failures) console.log(`FAILURE: ${failure}`);
    assertEquals(report.violations, 0, "linearizability violations");
    assertEquals(report.writesLost, 0, "acknowledged writes lost");
    assertEquals(report.undecided, 0, "keys the checker could not decide");
    assertEquals(report.unexpectedErrors, 0, "errors other than ConsensusError/RangeError");
    assert(report.opsChecked >= 10_000, `only ${report.opsChecked} operations checked`);
    for (const kind of FAULT_KINDS) assert(report.faults[kind] > 0, `no ${kind} fault injected`);
    assert(report.outcomes.unknown > 0, "no fault produced an unknown outcome");
    assert(report.writesVerified > 0, "no acknowledged write was verified after a crash");
  },
});

Deno.test({
  name: "torture: fresh-key storm at each isolation level, no double commit",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    // 3 s per variant that opens: Postgres' statements at the three levels
    // and CockroachDB's at SERIALIZABLE; CockroachDB's at the other two must
    // refuse to open, which takes no workload time.
    const report = await runCampaign({
      durationMs: 12_000,
      stormShare: 1,
      stormRoundMs: 3_000,
      log: () => {},
    });
    console.log(formatReport(report, "tests/torture_test.ts (short storm)"));
    for (const failure of report.failures) console.log(`FAILURE: ${failure}`);
    assertEquals(report.doubleCommits, 0, "double commits");
    assertEquals(report.violations, 0, "linearizability violations");
    assertEquals(report.writesLost, 0, "acknowledged writes lost");
    assertEquals(report.undecided, 0, "keys the checker could not decide");
    assertEquals(report.unexpectedErrors, 0, "errors other than ConsensusError/RangeError");
    for (const variant of STORM_VARIANTS) {
      const name = stormVariantName(variant);
      const figures = report.storm.find((f) => stormVariantName(f.variant) === name);
      assert(figures !== undefined, `no storm round for ${name}`);
      if (variant.engine === "cockroach" && variant.isolation !== "serializable") {
        assertEquals(figures.rounds, 0, `${name} opened; it must be refused at open`);
        assert(figures.refusedAtOpen > 0, `${name} was not refused at open`);
      } else {
        assert(figures.rounds > 0, `${name} did not run`);
        assert(figures.firstWrites >= 1_000, `${name}: only ${figures.firstWrites} first writes`);
      }
    }
  },
});

Deno.test({
  name: "torture: compareAndSetMany transfers at each isolation level, all or nothing",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    // 3 s per variant that opens, as the storm above: Postgres' statements
    // at the three levels and CockroachDB's at SERIALIZABLE.
    const report = await runCampaign({
      durationMs: 12_000,
      stormShare: 0,
      transferShare: 1,
      transferRoundMs: 3_000,
      log: () => {},
    });
    console.log(formatReport(report, "tests/torture_test.ts (short transfers)"));
    for (const failure of report.failures) console.log(`FAILURE: ${failure}`);
    assertEquals(report.violations, 0, "linearizability violations");
    assertEquals(report.manyAtomicity, 0, "compareAndSetMany not all or nothing in the table");
    assertEquals(report.conservationErrors, 0, "balances that do not add up");
    assertEquals(report.writesLost, 0, "acknowledged writes lost");
    assertEquals(report.undecided, 0, "keys the checker could not decide");
    assertEquals(report.unexpectedErrors, 0, "errors other than ConsensusError/RangeError");
    for (const variant of STORM_VARIANTS) {
      const name = stormVariantName(variant);
      const figures = report.transfers.find((f) => f.label === name);
      assert(figures !== undefined, `no transfer round for ${name}`);
      if (variant.engine === "cockroach" && variant.isolation !== "serializable") {
        assertEquals(figures.rounds, 0, `${name} opened; it must be refused at open`);
        assert(figures.refusedAtOpen > 0, `${name} was not refused at open`);
      } else {
        assert(figures.rounds > 0, `${name} did not run`);
        assert(figures.many.committed >= 50, `${name}: ${figures.many.committed} committed`);
        assert(figures.many.mismatched >= 20, `${name}: ${figures.many.mismatched} mismatched`);
        assert(figures.manyFirstWrites >= 20, `${name}: ${figures.manyFirstWrites} first writes`);
      }
    }
  },
});

Deno.test({
  name: "torture: compareAndSetMany transfers under every fault kind, all or nothing",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const report = await runCampaign({
      durationMs: 20_000,
      roundMs: 20_000,
      stormShare: 0,
      faultWorkloads: ["transfers"],
      faultIntervalMs: [150, 500],
      log: () => {},
    });
    console.log(formatReport(report, "tests/torture_test.ts (transfers under faults)"));
    for (const failure of report.failures) console.log(`FAILURE: ${failure}`);
    assertEquals(report.violations, 0, "linearizability violations");
    assertEquals(report.manyAtomicity, 0, "compareAndSetMany not all or nothing in the table");
    assertEquals(report.conservationErrors, 0, "balances that do not add up");
    assertEquals(report.writesLost, 0, "acknowledged writes lost");
    assertEquals(report.undecided, 0, "keys the checker could not decide");
    assertEquals(report.unexpectedErrors, 0, "errors other than ConsensusError/RangeError");
    const figures = report.transfers.find((f) => f.label === "faults");
    assert(figures !== undefined && figures.rounds >= 1, "no transfer round under faults");
    assert(figures.many.committed >= 100, `${figures.many.committed} committed`);
    assert(figures.many.unknown > 0, "no compareAndSetMany ended indeterminate");
  },
});

Deno.test({
  name: "torture: watchers and lease contenders beside the workload under every fault kind",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    // One 20 s fault round: 2 watchers per key on each watcher store (plus
    // late ones from an old seqno), listening connections terminated, 3
    // lease contender processes paused, stalled and killed past the ttl.
    const report = await runCampaign({
      durationMs: 20_000,
      roundMs: 20_000,
      maxOpsPerRound: 200_000,
      stormShare: 0,
      watchers: 2,
      leaseContenders: 3,
      log: () => {},
    });
    console.log(formatReport(report, "tests/torture_test.ts (watch and lease under faults)"));
    for (const failure of report.failures) console.log(`FAILURE: ${failure}`);
    assertEquals(report.violations, 0, "linearizability violations");
    assertEquals(report.writesLost, 0, "acknowledged writes lost");
    assertEquals(report.undecided, 0, "keys the checker could not decide");
    assertEquals(report.unexpectedErrors, 0, "errors other than ConsensusError/RangeError");
    const { watch, lease } = report;
    assertEquals(watch.violations, 0, "watch violations");
    assertEquals([watch.gaps, watch.duplicates, watch.outOfOrder], [0, 0, 0]);
    assertEquals(watch.truncationsIllegal, 0, "illegal TruncatedErrors");
    assertEquals(lease.violations, 0, "lease violations");
    assertEquals([lease.overlaps, lease.tokenRegressions], [0, 0]);
    assertEquals(lease.crashes, 0, "lease contenders that crashed");
    assert(watch.rounds >= 1 && watch.versions >= 1_000, `${watch.versions} versions delivered`);
    assert(watch.late > 0, "no late watcher");
    assert(watch.truncationsLegal > 0, "no watcher fell behind the truncator");
    assert(watch.listenKills > 0, "no listening connection terminated");
    assert(lease.grants >= 3, `only ${lease.grants} lease grants`);
    assert(lease.pauses + lease.stalls + lease.kills > 0, "no contender disturbed");
    for (const kind of FAULT_KINDS) assert(report.faults[kind] > 0, `no ${kind} fault injected`);
  },
});
