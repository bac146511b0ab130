/**
 * Renders the benchmark charts (`throughput.svg`, `contended.svg`) from a
 * results JSON written by `deno task bench`, without running anything:
 *
 *     deno run -A bench/charts.ts bench/results/benchmarks.json [--out DIR] [--prefix P]
 *
 * `DIR` defaults to the JSON file's directory; `P` goes before each file
 * name (`--prefix peers-` for the JSON of a `--peers-only` run).
 * `deno task bench --write` does the same at the end of its run.
 *
 * @module
 */
import { type ChartResults, writeCharts } from "./_charts.ts";

const USAGE = "Usage: deno run -A bench/charts.ts <results.json> [--out DIR] [--prefix P]";
const args = [...Deno.args];
if (args.includes("--help") || args.includes("-h")) {
  console.log(USAGE);
  Deno.exit(0);
}
const take = (name: string): string | undefined => {
  const at = args.indexOf(name);
  if (at < 0) return undefined;
  const value = args[at + 1] ?? "";
  args.splice(at, 2);
  return value;
};
const out = take("--out"), prefix = take("--prefix") ?? "";
if (args.length !== 1 || out === "" || args[0].startsWith("-")) {
  console.error(USAGE);
  Deno.exit(2);
}
const file = args[0];
const results = JSON.parse(await Deno.readTextFile(file)) as ChartResults;
const dir = out ?? (file.includes("/") ? file.slice(0, file.lastIndexOf("/")) : ".");
for (const path of await writeCharts(results, dir, prefix)) {
  console.error(`[charts] wrote ${path}`);
}
