/**
 * `deno task bench:watch`: what `watch` costs and how fast it delivers.
 *
 * 1. The cost of `notify: true` to writers. The uncontended workload of
 *    `bench/report.ts` (W workers, each on its own key, head then CAS head + 1)
 *    through the library with `notify: false` and `notify: true`, and with
 *    `notify: true` while a watcher listens, each beside pgbench running the
 *    same compare-and-set statement (bare or notifying) at the same
 *    concurrency: the server's cost without any client in the way. Variants
 *    run interleaved, their order rotating from round to round.
 * 2. Delivery latency: a writer store commits one version of a key every few
 *    milliseconds; watchers in another store (another connection pool, as
 *    another process would have) record when each version is yielded. The
 *    delay is measured from the writer's acknowledgement of the commit (it
 *    can be negative: the notification may overtake the acknowledgement) and
 *    from the writer's call. With notifications, with them under a write
 *    load, and by polling (`notify: false`).
 *
 * Flags: `--seconds N` per run (default 3), `--rounds N` (default 2),
 * `--quick` (1 s, 1 round). Writes `bench/results/watch.json` and `.md`.
 *
 * @module
 */
import postgres from "postgres";
import { PostgresConsensus, watch } from "../mod.ts";
import { fromPostgresJs } from "../src/adapters/postgres_js.ts";
import { dialectFor, quoteIdentifier } from "../src/dialect.ts";
import {
  benchArgs,
  casScript,
  fmt,
  freshKey,
  mean,
  percentile,
  rate,
  type RunResult,
  timeBoxed,
  usageOrProblem,
} from "./_measure.ts";
import { findPgBin, pgbench } from "./_pgbench.ts";

const args = Deno.args;
const parsed = benchArgs(args);
usageOrProblem(
  parsed,
  `Usage: deno task bench:watch [--quick] [--seconds N] [--rounds N]

What notify: true costs writers, and how fast watch delivers, against DATABASE_URL
or a throwaway local Postgres. Tables to stdout, progress to stderr; results to
bench/results/watch.json and watch.md.

  --quick        1 s per case, 1 round
  --seconds N    seconds per case (default 3)
  --rounds N     interleaved rounds (default 2)
  --help, -h     this text`,
  Deno.exit,
);
const { seconds, rounds } = parsed;
const ms = seconds * 1000;
const url = Deno.env.get("DATABASE_URL");
if (!url) {
  console.error("DATABASE_URL is not set: run `deno task bench:watch`");
  Deno.exit(2);
}
const TABLE = "watch_bench";
const quoted = quoteIdentifier(TABLE, "table");
const lines: string[] = [];
const out = (line: string) => {
  console.log(line);
  lines.push(line);
};
const progress = (text: string) => console.error(`  [bench:watch] ${text}`);

const binDir = await findPgBin();
const admin = postgres(url, { max: 1, onnotice: () => {} });
await admin.unsafe(dialectFor("postgres", quoted).dropTable);
await admin.unsafe(dialectFor("postgres", quoted).createTable);
const settings = Object.fromEntries(
  (await admin`SELECT name, setting FROM pg_settings
    WHERE name IN ('server_version', 'fsync', 'synchronous_commit')`)
    .map((row) => [row.name, row.setting]),
);
// The statements the stores run name the table with its schema (open
// resolves it), so pgbench runs those exact texts too.
const schema = (await admin`SELECT current_schema() AS s`)[0].s as string;
const resolved = `${quoteIdentifier(schema, "schema")}.${quoted}`;
out(`# watch benchmarks (${new Date().toISOString()})`);
out(
  `Deno ${Deno.version.deno}, Postgres ${settings.server_version} on loopback TCP (fsync ${settings.fsync}, ` +
    `synchronous_commit ${settings.synchronous_commit}), ${navigator.hardwareConcurrency} cores, ` +
    `${seconds} s per run, ${rounds} interleaved round(s).\n`,
);

function open(notify: boolean, max: number): Promise<PostgresConsensus> {
  return PostgresConsensus.open(
    fromPostgresJs(postgres(url!, { max, onnotice: () => {} }), { owned: true }),
    { table: TABLE, notify, create: false },
  );
}

async function seed(keys: string[]): Promise<void> {
  await admin.unsafe(
    `INSERT INTO ${quoted} (shard, sequence_number, data) SELECT unnest($1::text[]), 0, '\\x00'::bytea`,
    [keys],
  );
}

// ---- 1. What notify costs the writers.
type Variant = "plain" | "notify" | "notify, listening";
const VARIANTS: Variant[] = ["plain", "notify", "notify, listening"];
const data = new Uint8Array(8);
const costRows: Record<string, unknown>[] = [];
out("## What `notify: true` costs writers (head, then CAS head + 1; each worker its own key)\n");
out(
  "| workers | variant | library CAS/s | pgbench CAS/s | library / plain | pgbench / plain | p50 ms | p99 ms | errors |",
);
out("| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
for (const workers of [1, 4, 16]) {
  const lib = new Map<Variant, RunResult[]>(), bench = new Map<Variant, number[]>();
  for (let round = 0; round < rounds; round++) {
    // Rotate the order, so that no variant always runs first (or last).
    const order = VARIANTS.map((_, i) => VARIANTS[(i + round + workers) % VARIANTS.length]);
    for (const variant of order) {
      const notify = variant !== "plain";
      const store = await open(notify, Math.max(workers, 2));
      // A watcher on another key keeps a LISTEN open on the channel, so the
      // server delivers every notification to a listener.
      const listener = variant === "notify, listening" ? await open(false, 2) : undefined;
      const stop = new AbortController();
      const watching = listener &&
        (async () => {
          for await (
            const _ of watch(listener, freshKey("idle"), { signal: stop.signal })
          ) { /* none */ }
        })();
      try {
        progress(`cost: ${workers} workers, ${variant}, round ${round + 1}: library`);
        const keys = Array.from({ length: workers }, () => freshKey("cost"));
        await seed(keys);
        const result = await timeBoxed(workers, ms, async (w) => {
          const startedAt = performance.now();
          const head = await store.head(keys[w]);
          const outcome = await store.compareAndSet(keys[w], { seqno: head!.seqno + 1n, data });
          return { ok: outcome === "committed", attempts: 1, startedAt };
        });
        lib.set(variant, [...lib.get(variant) ?? [], result]);
        progress(`cost: ${workers} workers, ${variant}, round ${round + 1}: pgbench`);
        const prefix = freshKey("cost-pgb");
        await seed(Array.from({ length: workers }, (_, i) => `${prefix}-${i}`));
        const script = casScript(
          dialectFor("postgres", resolved, notify),
          `'${prefix}-' || :client_id`,
          data,
        );
        const tps = (await pgbench(binDir, url, script, workers, seconds)).tps;
        bench.set(variant, [...bench.get(variant) ?? [], tps]);
      } finally {
        stop.abort();
        await watching;
        await listener?.close();
        await store.close();
      }
    }
  }
  const plainLib = mean(lib.get("plain")!.map(rate)), plainBench = mean(bench.get("plain")!);
  for (const variant of VARIANTS) {
    const runs = lib.get(variant)!;
    const libRate = mean(runs.map(rate)), benchRate = mean(bench.get(variant)!);
    const latencies = runs.flatMap((r) => r.latencies).sort((a, b) => a - b);
    const errors = runs.reduce((a, r) => a + r.errors, 0);
    const row = {
      workers,
      variant,
      library: libRate,
      pgbench: benchRate,
      libraryPerRound: runs.map(rate),
      pgbenchPerRound: bench.get(variant),
      p50: percentile(latencies, 50),
      p99: percentile(latencies, 99),
      errors,
    };
    costRows.push(row);
    out(
      `| ${workers} | ${variant} | ${fmt(libRate)} | ${fmt(benchRate)} | ${
        (libRate / plainLib).toFixed(2)
      } | ${(benchRate / plainBench).toFixed(2)} | ${fmt(row.p50, 2)} | ${
        fmt(row.p99, 2)
      } | ${errors} |`,
    );
  }
}

// ---- 2. Delivery latency.
interface LatencyCase {
  name: string;
  notify: boolean;
  watchers: number;
  /** Background writers (notifying, each on its own key) during the run. */
  load: number;
  pollIntervalMs?: number;
}
const CASES: LatencyCase[] = [
  { name: "notify, 1 watcher", notify: true, watchers: 1, load: 0 },
  { name: "notify, 16 watchers of the key", notify: true, watchers: 16, load: 0 },
  { name: "notify, 1 watcher, 16 other writers notifying", notify: true, watchers: 1, load: 16 },
  {
    name: "polling (notify off), 1 watcher, pollIntervalMs 250",
    notify: false,
    watchers: 1,
    load: 0,
    pollIntervalMs: 250,
  },
];
const latencyRows: Record<string, unknown>[] = [];
out("\n## Delivery latency: a version committed by one store, yielded by `watch` in another\n");
out(
  "| case | versions seen | after commit p50 ms | after commit p99 ms | after the call p50 ms | after the call p99 ms | lost or out of order |",
);
out("| --- | ---: | ---: | ---: | ---: | ---: | ---: |");
for (const c of CASES) {
  const afterCommit: number[] = [], afterCall: number[] = [];
  let seen = 0, wrong = 0;
  for (let round = 0; round < rounds; round++) {
    progress(`latency: ${c.name}, round ${round + 1}`);
    const writer = await open(c.notify, 2);
    const watcherStore = await open(false, 4);
    const loadStore = c.load > 0 ? await open(true, c.load) : undefined;
    const key = freshKey("lat");
    const called = new Map<bigint, number>(), acknowledged = new Map<bigint, number>();
    const stop = new AbortController();
    const yields: Map<bigint, number>[] = [];
    const watchers = Array.from({ length: c.watchers }, async () => {
      const mine = new Map<bigint, number>();
      yields.push(mine);
      let expected = 0n;
      for await (
        const version of watch(watcherStore, key, {
          from: 0n,
          signal: stop.signal,
          pollIntervalMs: c.pollIntervalMs ?? 60_000,
        })
      ) {
        mine.set(version.seqno, performance.now());
        if (version.seqno !== expected++) wrong++;
      }
    });
    const loadKeys = Array.from({ length: c.load }, () => freshKey("load"));
    if (loadKeys.length) await seed(loadKeys);
    const loading = loadStore &&
      timeBoxed(c.load, ms + 500, async (w) => {
        const startedAt = performance.now();
        const head = await loadStore.head(loadKeys[w]);
        const outcome = await loadStore.compareAndSet(loadKeys[w], {
          seqno: head!.seqno + 1n,
          data,
        });
        return { ok: outcome === "committed", attempts: 1, startedAt };
      });
    await new Promise((resolve) => setTimeout(resolve, 200));
    const deadline = performance.now() + ms;
    let seqno = 0n;
    for (; performance.now() < deadline; seqno++) {
      called.set(seqno, performance.now());
      await writer.compareAndSet(key, { seqno, data });
      acknowledged.set(seqno, performance.now());
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
    // Bounded wait for the last version to reach every watcher.
    const until = performance.now() + 5_000 + (c.pollIntervalMs ?? 0);
    while (yields.some((m) => !m.has(seqno - 1n)) && performance.now() < until) {
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    stop.abort();
    await Promise.all(watchers);
    await loading;
    for (const mine of yields) {
      for (let s = 0n; s < seqno; s++) {
        const at = mine.get(s);
        if (at === undefined) {
          wrong++;
          continue;
        }
        seen++;
        afterCommit.push(at - acknowledged.get(s)!);
        afterCall.push(at - called.get(s)!);
      }
    }
    await Promise.all([writer.close(), watcherStore.close(), loadStore?.close()]);
  }
  afterCommit.sort((a, b) => a - b);
  afterCall.sort((a, b) => a - b);
  const row = {
    case: c.name,
    seen,
    wrong,
    afterCommitP50: percentile(afterCommit, 50),
    afterCommitP99: percentile(afterCommit, 99),
    afterCallP50: percentile(afterCall, 50),
    afterCallP99: percentile(afterCall, 99),
  };
  latencyRows.push(row);
  out(
    `| ${c.name} | ${seen} | ${fmt(row.afterCommitP50, 2)} | ${fmt(row.afterCommitP99, 2)} | ${
      fmt(row.afterCallP50, 2)
    } | ${fmt(row.afterCallP99, 2)} | ${wrong} |`,
  );
}

await admin.end();
await Deno.mkdir("bench/results", { recursive: true });
await Deno.writeTextFile(
  "bench/results/watch.json",
  JSON.stringify({ settings, seconds, rounds, cost: costRows, latency: latencyRows }, null, 2),
);
await Deno.writeTextFile("bench/results/watch.md", lines.join("\n") + "\n");
console.error("\n  [bench:watch] wrote bench/results/watch.json and watch.md");
