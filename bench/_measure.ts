// Runtime-neutral measurement helpers shared by the Deno and Bun runners:
// time-boxed worker loops, latency percentiles, table formatting, the pgbench
// script and the parsing of its output.
import type { Dialect } from "../src/dialect.ts";

/** What one time-boxed run measured. */
export interface RunResult {
  /** Compare-and-sets that committed (or operations completed, for reads). */
  ops: number;
  /** Operations attempted (CAS attempts, including mismatches). */
  attempts: number;
  /** Operations that threw. */
  errors: number;
  /** Wall time, seconds. */
  seconds: number;
  /** Latencies of successful operations, milliseconds (a sample; empty for pgbench). */
  latencies: number[];
}

export function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  const index = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[index];
}

/** Runs `workers` loops until `ms` passes; each loop iteration reports its outcome. */
export async function timeBoxed(
  workers: number,
  ms: number,
  body: (worker: number) => Promise<{ ok: boolean; attempts: number; startedAt: number }>,
): Promise<RunResult> {
  const result: RunResult = { ops: 0, attempts: 0, errors: 0, seconds: 0, latencies: [] };
  const started = performance.now();
  const deadline = started + ms;
  await Promise.all(
    Array.from({ length: workers }, async (_, worker) => {
      while (performance.now() < deadline) {
        try {
          const outcome = await body(worker);
          result.attempts += outcome.attempts;
          if (outcome.ok) {
            result.ops++;
            if (result.latencies.length < 200_000) {
              result.latencies.push(performance.now() - outcome.startedAt);
            }
          }
        } catch (error) {
          result.errors++;
          if (result.errors <= 3) console.error(`  error: ${(error as Error).message}`);
        }
      }
    }),
  );
  result.seconds = (performance.now() - started) / 1000;
  result.latencies.sort((a, b) => a - b);
  return result;
}

export function hex(bytes: Uint8Array): string {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

/** Arguments for a pgbench run of `script` (a file path) with `clients` clients. */
export function pgbenchArgs(file: string, url: string, clients: number, seconds: number): string[] {
  return [
    "-n",
    "-M",
    "prepared",
    "-c",
    String(clients),
    "-j",
    String(Math.min(clients, 2)),
    "-T",
    String(seconds),
    "-f",
    file,
    url,
  ];
}

/** Transactions per second (excluding connection setup) and counts from pgbench's output. */
export function parsePgbench(text: string): { tps: number; transactions: number; failed: number } {
  const tps = Number(/tps = ([\d.]+) \(without initial connection time\)/.exec(text)?.[1]);
  const transactions = Number(/number of transactions actually processed: (\d+)/.exec(text)?.[1]);
  const failed = Number(/number of failed transactions: (\d+)/.exec(text)?.[1] ?? 0);
  return { tps, transactions, failed };
}

/** A key no earlier run used. */
export function freshKey(label: string): string {
  return `${label}-${Date.now().toString(36)}-${runId++}`;
}
let runId = 0;

/** Operations per second of a run. */
export const rate = (r: RunResult): number => r.ops / r.seconds;
/** The arithmetic mean. */
export const mean = (xs: number[]): number => xs.reduce((a, b) => a + b, 0) / xs.length;
/** A number for a table, "n/a" when not finite. */
export const fmt = (x: number, digits = 0): string =>
  Number.isFinite(x) ? x.toLocaleString("en-US", { maximumFractionDigits: digits }) : "n/a";
/** `a / b` for a table, "n/a" when either is missing. */
export const ratio = (a: number, b: number): string =>
  Number.isFinite(a) && Number.isFinite(b) && b > 0 ? (a / b).toFixed(2) : "n/a";

/**
 * The pgbench script running the same two statements as the library: the
 * head read, then the dialect's compare-and-set with the head bound by
 * `\gset`, for the shard `shardExpr` (an SQL expression) and payload `data`.
 */
export function casScript(dialect: Dialect, shardExpr: string, data: Uint8Array): string {
  const casText = dialect.casNext.text
    .replaceAll("$1::text", `(${shardExpr})::text`)
    .replaceAll("$2::int8", "(:head + 1)::int8")
    .replaceAll("$3::bytea", `'\\x${hex(data)}'::bytea`);
  const headText = dialect.head.text.replace("$1::text", `(${shardExpr})::text`)
    .replace("SELECT sequence_number, data", "SELECT sequence_number AS head");
  return `${headText}\n\\gset\n${casText};\n`;
}

/** What a bench runner accepts besides the common flags of {@linkcode benchArgs}. */
export interface BenchFlags {
  /** Flags without a value, without the leading `--`. */
  flags?: string[];
  /** Options taking a number (`--name N`), without the leading `--`. */
  options?: string[];
}

/**
 * The flags every bench runner takes, from its arguments: `--quick`,
 * `--seconds N` per case, `--rounds N` and `--help` (`-h`), plus the
 * runner's own (`extra`), read with `flag`/`option`. `help` is set when
 * usage was asked for; `problem` names the first argument that is unknown
 * or lacks a positive number. The runner prints and exits (see
 * {@linkcode usageOrProblem}); nothing here touches a runtime.
 */
export function benchArgs(args: readonly string[], extra: BenchFlags = {}) {
  const flags = ["quick", "help", ...(extra.flags ?? [])];
  const options = ["seconds", "rounds", ...(extra.options ?? [])];
  let problem: string | undefined;
  for (let i = 0; i < args.length && problem === undefined; i++) {
    const arg = args[i];
    if (arg === "-h" || (arg.startsWith("--") && flags.includes(arg.slice(2)))) continue;
    if (arg.startsWith("--") && options.includes(arg.slice(2))) {
      const value = Number(args[i + 1]);
      if (!(value > 0)) problem = `${arg} needs a positive number, got ${args[i + 1] ?? "nothing"}`;
      i++;
      continue;
    }
    problem = `Unknown argument "${arg}"`;
  }
  const flag = (name: string) => args.includes(`--${name}`);
  const option = (name: string, fallback: number) => {
    const i = args.indexOf(`--${name}`);
    return i >= 0 ? Number(args[i + 1]) : fallback;
  };
  const quick = flag("quick");
  return {
    flag,
    option,
    quick,
    help: flag("help") || args.includes("-h"),
    problem,
    seconds: option("seconds", quick ? 1 : 3),
    rounds: option("rounds", quick ? 1 : 2),
  };
}

/**
 * Prints `usage` to stdout and exits 0 when help was asked for; prints the
 * problem in one line to stderr and exits 2 when an argument was wrong;
 * returns otherwise. `exit` is the runtime's (`Deno.exit`, `process.exit`).
 */
export function usageOrProblem(
  parsed: { help: boolean; problem?: string },
  usage: string,
  exit: (code: number) => never,
): void {
  if (parsed.help) {
    console.log(usage);
    exit(0);
  }
  if (parsed.problem !== undefined) {
    console.error(`${parsed.problem} (--help lists the flags)`);
    exit(2);
  }
}
