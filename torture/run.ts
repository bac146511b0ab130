/**
 * `deno task torture`: runs the torture campaign and prints its figures;
 * exits 1 on any violation, lost write, undecided key or unexpected error.
 *
 * Flags: `--duration <seconds>` of workload in total (default 600),
 * `--round <seconds>` per round (default 60), `--clients <n>` (default 16),
 * `--max-ops <n>` per round (default 60000), `--pipeline` to let porsager
 * pipeline (its default; reproduces the result mix-up in
 * `torture/porsager_cancel_repro.ts`), `--bun` to alternate Deno/porsager
 * rounds with Bun/Bun.SQL rounds.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { formatReport, passed, runCampaign } from "./campaign.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    duration: { type: "string", default: "600" },
    round: { type: "string", default: "60" },
    clients: { type: "string", default: "16" },
    "max-ops": { type: "string", default: "60000" },
    pipeline: { type: "boolean", default: false },
    bun: { type: "boolean", default: false },
  },
});
const seconds = (name: string, text: string) => {
  const value = Number(text);
  if (!(value > 0)) throw new RangeError(`--${name} must be a positive number, got ${text}`);
  return value;
};

const report = await runCampaign({
  durationMs: seconds("duration", values.duration) * 1000,
  roundMs: seconds("round", values.round) * 1000,
  clients: seconds("clients", values.clients),
  maxOpsPerRound: seconds("max-ops", values["max-ops"]),
  pipeline: values.pipeline,
  runtimes: values.bun ? ["deno", "bun"] : ["deno"],
});
const command = `deno task torture --duration ${values.duration} --round ${values.round} ` +
  `--clients ${values.clients} --max-ops ${values["max-ops"]}${
    values.pipeline ? " --pipeline" : ""
  }${values.bun ? " --bun" : ""}`;
console.log(formatReport(report, command));
for (const failure of report.failures) console.log(`FAILURE: ${failure}`);
Deno.exit(passed(report) ? 0 : 1);
