/**
 * `deno task torture`: runs the torture campaign and prints its figures;
 * exits 1 on any violation, double commit, lost write, undecided key,
 * unexpected error, compareAndSetMany half applied or balance off, 2 on a bad
 * flag. `deno task torture --help` lists the flags.
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
the workload of every other fault round). Exits 1 on any violation, double
commit, lost write, undecided key, unexpected error, compareAndSetMany not all
or nothing in the table, or balances that do not add up.

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
};
const report = await runCampaign(options);
const command = `deno task torture --duration ${values.duration} --round ${values.round} ` +
  `--clients ${values.clients} --max-ops ${values["max-ops"]}${
    values.pipeline ? " --pipeline" : ""
  }${values.bun ? " --bun" : ""} --storm ${values.storm} --storm-round ${
    values["storm-round"]
  } --storm-max-ops ${values["storm-max-ops"]} --transfers ${transfers} --transfer-round ${
    values["transfer-round"]
  } --fault-transfers ${faultTransfers}`;
console.log(formatReport(report, command));
for (const failure of report.failures) console.log(`FAILURE: ${failure}`);
Deno.exit(passed(report) ? 0 : 1);

function usageError(message: string): never {
  console.error(`deno task torture: ${message}\n\n${USAGE}`);
  Deno.exit(2);
}
