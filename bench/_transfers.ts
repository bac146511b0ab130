// Two-key transfers with compareAndSetMany beside single-key compare-and-set,
// in the same loop shape (read the heads, then write; on a mismatch, read
// again), interleaved round by round on one store: each worker on keys of
// its own, and all workers on a few shared accounts. The raw driver runs
// the library's compareAndSetMany statement for the ceiling.
import type postgres from "postgres";
import type { PostgresConsensus } from "../mod.ts";
import type { Dialect } from "../src/dialect.ts";
import {
  fmt,
  freshKey,
  mean,
  percentile,
  rate,
  ratio,
  type RunResult,
  timeBoxed,
} from "./_measure.ts";

/** What {@linkcode transfers} needs. */
export interface TransferBenchOptions {
  /** The library, on the bench table. */
  store: PostgresConsensus;
  /** A pool for the raw driver (as many connections as workers). */
  raw: postgres.Sql;
  dialect: Dialect;
  /** Writes version 0 of each key. */
  seed: (keys: string[]) => Promise<void>;
  workers: number;
  /** Shared accounts in the contended runs. */
  accounts: number;
  ms: number;
  rounds: number;
  out: (line: string) => void;
  progress: (text: string) => void;
}

/** One row of the table, as written to the JSON results. */
export interface TransferRow {
  workload: string;
  workers: number;
  keys: string;
  committed: number;
  attempts: number;
  mismatchPercent: number;
  p50: number;
  p99: number;
  errors: number;
  vsSingleKey: number;
}

const payload = new Uint8Array(8);
const MISMATCH = "22012";

interface Runner {
  label: string;
  keys: string;
  /** The single-key run this one is compared with. */
  base: string;
  run: () => Promise<RunResult>;
}

/** Runs the interleaved rounds, prints the table and returns its rows. */
export async function transfers(options: TransferBenchOptions): Promise<TransferRow[]> {
  const { store, raw, dialect, workers, ms } = options;
  const own = async (label: string, perWorker: number) => {
    const keys = Array.from(
      { length: workers },
      () => Array.from({ length: perWorker }, () => freshKey(label)),
    );
    await options.seed(keys.flat());
    return keys;
  };
  const shared = async (label: string) => {
    const keys = Array.from({ length: options.accounts }, () => freshKey(label));
    await options.seed(keys);
    return keys;
  };
  const pair = (keys: readonly string[]) => {
    const a = Math.floor(Math.random() * keys.length);
    const b = (a + 1 + Math.floor(Math.random() * (keys.length - 1))) % keys.length;
    return [keys[a], keys[b]];
  };

  // The library: read the heads (both at once), then write; retry on a mismatch.
  const single = (keyOf: (w: number) => string) =>
    timeBoxed(workers, ms, async (w) => {
      const startedAt = performance.now();
      const key = keyOf(w);
      for (let attempts = 1;; attempts++) {
        const head = await store.head(key);
        const next = { seqno: head!.seqno + 1n, data: payload };
        if (await store.compareAndSet(key, next) === "committed") {
          return { ok: true, attempts, startedAt };
        }
      }
    });
  const transfer = (keysOf: (w: number) => string[]) =>
    timeBoxed(workers, ms, async (w) => {
      const startedAt = performance.now();
      const keys = keysOf(w);
      for (let attempts = 1;; attempts++) {
        const heads = await Promise.all(keys.map((key) => store.head(key)));
        const entries = keys.map((key, i) => ({
          key,
          next: { seqno: heads[i]!.seqno + 1n, data: payload },
        }));
        if (await store.compareAndSetMany(entries) === "committed") {
          return { ok: true, attempts, startedAt };
        }
      }
    });
  // The raw driver: the same statements, the mismatch read from 22012.
  const rawTransfer = (keysOf: (w: number) => string[]) =>
    timeBoxed(workers, ms, async (w) => {
      const startedAt = performance.now();
      const keys = keysOf(w).sort();
      for (let attempts = 1;; attempts++) {
        const heads = await Promise.all(
          keys.map((key) => raw.unsafe(dialect.head.text, [key], { prepare: true }).values()),
        );
        const json = JSON.stringify(keys.map((key, i) => ({
          k: key,
          s: String(BigInt(heads[i][0][0] as string) + 1n),
          d: "0000000000000000",
        })));
        try {
          await raw.unsafe(dialect.casMany.text, [json, keys.length] as never[], {
            prepare: true,
          });
          return { ok: true, attempts, startedAt };
        } catch (error) {
          if ((error as { code?: string }).code !== MISMATCH) throw error;
        }
      }
    });

  const runners: Runner[] = [
    {
      label: "single-key compare-and-set (head, then compareAndSet)",
      keys: "1 of its own",
      base: "own",
      run: async () => {
        const keys = await own("x-single", 1);
        return single((w) => keys[w][0]);
      },
    },
    {
      label: "two-key transfer (2 heads at once, then compareAndSetMany)",
      keys: "2 of its own",
      base: "own",
      run: async () => {
        const keys = await own("x-many", 2);
        return transfer((w) => keys[w]);
      },
    },
    {
      label: "raw driver two-key transfer (the same statements)",
      keys: "2 of its own",
      base: "own",
      run: async () => {
        const keys = await own("x-raw", 2);
        return rawTransfer((w) => keys[w]);
      },
    },
    {
      label: "single-key compare-and-set (head, then compareAndSet)",
      keys: `1 of ${options.accounts} shared`,
      base: "shared",
      run: async () => {
        const keys = await shared("x-single-shared");
        return single(() => keys[Math.floor(Math.random() * keys.length)]);
      },
    },
    {
      label: "two-key transfer (2 heads at once, then compareAndSetMany)",
      keys: `2 of ${options.accounts} shared`,
      base: "shared",
      run: async () => {
        const keys = await shared("x-many-shared");
        return transfer(() => pair(keys));
      },
    },
  ];
  const runs = new Map<Runner, RunResult[]>();
  for (let round = 0; round < options.rounds; round++) {
    for (const runner of runners) {
      options.progress(`transfers: ${runner.label}, ${runner.keys}, round ${round + 1}`);
      runs.set(runner, [...(runs.get(runner) ?? []), await runner.run()]);
    }
  }

  options.out(
    `\n## Two-key transfers with compareAndSetMany beside single-key compare-and-set (${workers} workers)\n`,
  );
  options.out(
    "| workload | keys per worker | committed/s | attempts/s | mismatch % | p50 ms | p99 ms | errors | vs. single-key |",
  );
  options.out("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
  const rows: TransferRow[] = [];
  for (const runner of runners) {
    const results = runs.get(runner)!;
    const committed = mean(results.map(rate));
    const attempts = mean(results.map((r) => r.attempts / r.seconds));
    const latencies = results.flatMap((r) => r.latencies).sort((a, b) => a - b);
    const base = runners.find((r) => r.base === runner.base)!;
    const baseRate = mean(runs.get(base)!.map(rate));
    const row: TransferRow = {
      workload: runner.label,
      workers,
      keys: runner.keys,
      committed,
      attempts,
      mismatchPercent: attempts > 0 ? 100 * (1 - committed / attempts) : NaN,
      p50: percentile(latencies, 50),
      p99: percentile(latencies, 99),
      errors: results.reduce((a, r) => a + r.errors, 0),
      vsSingleKey: committed / baseRate,
    };
    rows.push(row);
    options.out(
      `| ${row.workload} | ${row.keys} | ${fmt(committed)} | ${fmt(attempts)} | ${
        fmt(row.mismatchPercent, 1)
      } | ${fmt(row.p50, 2)} | ${fmt(row.p99, 2)} | ${row.errors} | ${
        ratio(committed, baseRate)
      } |`,
    );
  }
  options.out(
    "\nA transfer commits two versions; `committed/s` counts transfers. Latency runs from the " +
      "first read to the commit, retries included. `vs. single-key`: over the single-key rate " +
      "with the same keys (its own, or shared).",
  );
  return rows;
}
