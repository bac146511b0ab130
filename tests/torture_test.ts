// The short torture campaign: the recorded workload against a throwaway
// Postgres of its own (the restart faults need to own the server), every
// fault kind injected, the history checked for linearizability, and
// acknowledged writes checked after crashes. `deno task torture` runs the
// long version.
import { assert, assertEquals } from "@std/assert";
import { formatReport, runCampaign } from "../torture/campaign.ts";
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
