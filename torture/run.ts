/**
 * `deno task torture`: runs the torture campaign and prints its figures;
 * exits 1 on any violation, double commit, lost write, undecided key,
 * unexpected error, compareAndSetMany half applied, balance off, watch or
 * lease violation or crashed lease contender, 2 on a bad flag.
 * `deno task torture --help` lists the flags.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { formatReport, passed, runCampaign } from "./campaign.ts";
import { failoverPassed, formatFailoverReport, runFailoverCampaign } from "./failover.ts";

const USAGE = `Usage: deno task torture [flags]

Runs the torture campaign against a throwaway Postgres of its own: fault
rounds (the recorded workload under kills, restarts, timeouts, a chaos proxy)
and fresh-key storm rounds (4 stores x 4 writers + 1 truncator each racing
first writes on a new key every 4 ms, no faults), cycling through Postgres'
statements, then CockroachDB's statements (engine "cockroach"), each at READ
COMMITTED, REPEATABLE READ and SERIALIZABLE (a store that refuses to open at
a level is reported as "refused at open"), and transfer rounds
(compareAndSetMany between accounts racing single-key writers and
truncators, without faults at the same engine and isolation variants, and as
the workload of every other fault round). Beside the workload of every fault
round, on the same table and the same faulty paths: watchers (two writer
stores, one through the proxy, racing single and two-key commits on two keys
under a truncator; watchers from 0, from the head, slow ones the truncator
overtakes, late ones from an old seqno, on a proxied and a direct store; the
writers notify in turn both, one, neither; the listening connections
terminated every 1.5 s), checked for gapless, in-order, committed-only
delivery and legal TruncatedErrors; and lease contender processes (through
the proxy and direct; SIGSTOPped and busy-waiting past the ttl, releasing,
dying, SIGKILLed), checked for overlapping tenures and falling tokens.
Exits 1 on any violation, double commit, lost write, undecided key,
unexpected error, compareAndSetMany not all or nothing in the table,
balances that do not add up, watch or lease violation, or a lease contender
that crashed.

Flags:
  --duration <s>       workload time in total, all rounds (default 600)
  --round <s>          workload time per fault round (default 60)
  --clients <n>        clients per fault round, at least 16 (default 16)
  --max-ops <n>        operations per fault round at most (default 60000)
  --pipeline           let porsager pipeline (reproduces the result mix-up in
                       torture/porsager_cancel_repro.ts)
  --bun                alternate Deno/porsager fault rounds with Bun/Bun.SQL ones
  --storm <share>      share of rounds that are storms, 0 to 1 (default 0.25;
                       1: storms only, 0: none)
  --storm-round <s>    workload time per storm round (default 20)
  --storm-max-ops <n>  operations per storm round at most (default 1500000)
  --transfers <share>  share of rounds that are transfer rounds without faults,
                       0 to 1 (default 0.25, or what --storm leaves if less)
  --transfer-round <s> workload time per transfer round (default 20)
  --fault-transfers <yes|no>
                       every other fault round runs the transfer workload
                       (default yes)
  --watchers <n>       watchers per key on each of the two watcher stores of
                       every fault round, 0 for none (default 2; late
                       watchers from an old seqno start every 0.4 s on top)
  --lease-contenders <n>
                       live lease contender processes in every fault round,
                       0 for none (default 3)
  --lease-ttl <ms>     the contenders' lease ttl (default 1000)
  --failover           instead: the failover mode. A primary and a streaming
                       standby on loopback; the workload and the storm run
                       through a multi-host URL while the primary is killed
                       (immediate), the standby promoted and a new standby
                       built, --failovers times; then the histories are
                       checked and every acknowledged commit looked for on
                       the final primary. Synchronous replication unless
                       --async; exits 1 if a synchronous run loses a write
                       or is not linearizable
  --async              with --failover: asynchronous replication (measures
                       the acknowledged writes lost; does not fail on them)
  --failovers <n>      with --failover: failovers to run (default 20)
  --interval <s>       with --failover: workload time before each failover
                       (default 3)
  -h, --help           print this and exit
`;

let values;
try {
  ({ values } = parseArgs({
    args: Deno.args,
    strict: true,
    allowPositionals: false,
    options: {
      duration: { type: "string", default: "600" },
      round: { type: "string", default: "60" },
      clients: { type: "string", default: "16" },
      "max-ops": { type: "string", default: "60000" },
      pipeline: { type: "boolean", default: false },
      bun: { type: "boolean", default: false },
      storm: { type: "string", default: "0.25" },
      "storm-round": { type: "string", default: "20" },
      "storm-max-ops": { type: "string", default: "1500000" },
      transfers: { type: "string" },
      "transfer-round": { type: "string", default: "20" },
      "fault-transfers": { type: "string", default: "yes" },
      watchers: { type: "string", default: "2" },
      "lease-contenders": { type: "string", default: "3" },
      "lease-ttl": { type: "string", default: "1000" },
      failover: { type: "boolean", default: false },
      async: { type: "boolean", default: false },
      failovers: { type: "string", default: "20" },
      interval: { type: "string", default: "3" },
      help: { type: "boolean", short: "h", default: false },
    },
  }));
} catch (error) {
  usageError(error instanceof Error ? error.message : String(error));
}
if (values.help) {
  console.log(USAGE);
  Deno.exit(0);
}

const positive = (name: string, text: string) => {
  const value = Number(text);
  if (!(value > 0)) usageError(`--${name} must be a positive number, got ${JSON.stringify(text)}`);
  return value;
};
if (values.failover) {
  const failovers = positive("failovers", values.failovers);
  const report = await runFailoverCampaign({
    synchronous: !values.async,
    failovers,
    intervalMs: positive("interval", values.interval) * 1000,
    log: (line) => console.error(`[failover] ${line}`),
  });
  const command = `deno task torture --failover${
    values.async ? " --async" : ""
  } --failovers ${values.failovers} --interval ${values.interval}`;
  console.log(formatFailoverReport(report, command));
  for (const failure of report.failures) console.log(`FAILURE: ${failure}`);
  Deno.exit(failoverPassed(report) ? 0 : 1);
}
if (values.async) usageError("--async needs --failover");

const share = Number(values.storm);
if (!(share >= 0 && share <= 1)) {
  usageError(`--storm must be a number from 0 to 1, got ${JSON.stringify(values.storm)}`);
}

const transfers = values.transfers === undefined
  ? Math.min(0.25, 1 - share)
  : Number(values.transfers);
if (!(transfers >= 0 && transfers <= 1)) {
  usageError(`--transfers must be a number from 0 to 1, got ${JSON.stringify(values.transfers)}`);
}
const faultTransfers = values["fault-transfers"];
if (faultTransfers !== "yes" && faultTransfers !== "no") {
  usageError(`--fault-transfers must be yes or no, got ${JSON.stringify(faultTransfers)}`);
}

const count = (name: string, text: string) => {
  const value = Number(text);
  if (!(Number.isInteger(value) && value >= 0)) {
    usageError(`--${name} must be a whole number, 0 or more, got ${JSON.stringify(text)}`);
  }
  return value;
};
const leaseTtl = Number(values["lease-ttl"]);
if (!(Number.isInteger(leaseTtl) && leaseTtl >= 100)) {
  usageError(
    `--lease-ttl must be a whole number of milliseconds, 100 or more, got ${
      JSON.stringify(values["lease-ttl"])
    }`,
  );
}

const options = {
  durationMs: positive("duration", values.duration) * 1000,
  roundMs: positive("round", values.round) * 1000,
  clients: positive("clients", values.clients),
  maxOpsPerRound: positive("max-ops", values["max-ops"]),
  pipeline: values.pipeline,
  runtimes: values.bun ? ["deno", "bun"] as const : ["deno"] as const,
  stormShare: share,
  stormRoundMs: positive("storm-round", values["storm-round"]) * 1000,
  stormMaxOps: positive("storm-max-ops", values["storm-max-ops"]),
  transferShare: transfers,
  transferRoundMs: positive("transfer-round", values["transfer-round"]) * 1000,
  faultWorkloads: faultTransfers === "yes" ? ["mix", "transfers"] as const : ["mix"] as const,
  watchers: count("watchers", values.watchers),
  leaseContenders: count("lease-contenders", values["lease-contenders"]),
  leaseTtlMs: leaseTtl,
  leaseBun: values.bun,
};
const report = await runCampaign(options);
const command = `deno task torture --duration ${values.duration} --round ${values.round} ` +
  `--clients ${values.clients} --max-ops ${values["max-ops"]}${
    values.pipeline ? " --pipeline" : ""
  }${values.bun ? " --bun" : ""} --storm ${values.storm} --storm-round ${
    values["storm-round"]
  } --storm-max-ops ${values["storm-max-ops"]} --transfers ${transfers} --transfer-round ${
    values["transfer-round"]
  } --fault-transfers ${faultTransfers} --watchers ${values.watchers} --lease-contenders ${
    values["lease-contenders"]
  } --lease-ttl ${values["lease-ttl"]}`;
console.log(formatReport(report, command));
for (const failure of report.failures) console.log(`FAILURE: ${failure}`);
Deno.exit(passed(report) ? 0 : 1);

function usageError(message: string): never {
  console.error(`deno task torture: ${message}\n\n${USAGE}`);
  Deno.exit(2);
}
