// First writes on a growing table (issue 8, item 6, "No first-write cliff").
// After five executions a prepared statement may switch to a generic plan,
// costed once, with the planner's guess at the size of a table that was never
// analyzed: the old first-write statement's `NOT EXISTS (SELECT 1 FROM t
// WHERE shard = $1)` kept a sequential scan as the table grew, until an
// ANALYZE. This module grows a young table from empty through the library
// and compares its rate with first writes on an analyzed table; it also runs
// the old statement through the raw driver on a young table, to show the
// cliff the new statement removed (src/dialect.ts, CAS_FIRST_POSTGRES).
import postgres from "postgres";
import { PostgresConsensus } from "../mod.ts";
import { fromPostgresJs } from "../src/adapters/postgres_js.ts";
import { dialectFor, quoteIdentifier } from "../src/dialect.ts";
import { fmt, mean, percentile } from "./_measure.ts";

/** The first-write statement before commit 580ba5f, for the comparison row. */
export const OLD_CAS_FIRST = (t: string): string =>
  `INSERT INTO ${t} (shard, sequence_number, data) SELECT $1::text, 0, $2::bytea ` +
  `WHERE NOT EXISTS (SELECT 1 FROM ${t} WHERE shard = $1::text) ON CONFLICT DO NOTHING`;

/**
 * First writes of new keys into one table, written in one or more segments.
 * Times count only the time spent writing, so a growth paused between
 * segments reads as one run.
 */
export interface Growth {
  /** Keys in the table before the first segment. */
  readonly keysBefore: number;
  /** The prefix of the keys written, `${prefix}-0000000` onwards. */
  readonly prefix: string;
  /** Keys attempted so far. */
  attempted: number;
  /** First writes that committed. */
  committed: number;
  /** First writes that threw or did not commit (every key is new, so none should). */
  errors: number;
  /** Whether a segment stopped at its time cap before writing all its keys. */
  capped: boolean;
  /** Writing time of the finished segments, milliseconds. */
  elapsed: number;
  /** `times[i]`: writing time, milliseconds, until the (i + 1)th commit. */
  readonly times: number[];
  /** Latency of each committed first write, milliseconds. */
  readonly latencies: number[];
  /** Sequential scans of the table while it was written (pg_stat_user_tables). */
  seqScans: number;
}

/** A growth of a table that holds `keysBefore` keys, writing keys `${prefix}-…`. */
export function newGrowth(prefix: string, keysBefore: number): Growth {
  return {
    keysBefore,
    prefix,
    attempted: 0,
    committed: 0,
    errors: 0,
    capped: false,
    elapsed: 0,
    times: [],
    latencies: [],
    seqScans: NaN,
  };
}

/** First writes/s over commits (from, to] of a growth, NaN when it did not get that far. */
export function rateBetween(g: Growth, from: number, to: number): number {
  if (to > g.committed || from >= to || from < 0) return NaN;
  const start = from === 0 ? 0 : g.times[from - 1];
  return (to - from) / ((g.times[to - 1] - start) / 1000);
}

/**
 * One segment of `g`: `workers` loops writing version 0 of the next `count`
 * keys, or fewer when `capMs` passes. `write` returns whether it committed.
 */
export async function grow(
  g: Growth,
  count: number,
  workers: number,
  capMs: number,
  write: (worker: number, key: string) => Promise<boolean>,
): Promise<void> {
  const end = g.attempted + count;
  const started = performance.now();
  const deadline = started + capMs;
  const offset = g.elapsed - started;
  await Promise.all(Array.from({ length: workers }, async (_, worker) => {
    while (g.attempted < end) {
      if (performance.now() >= deadline) {
        g.capped = true;
        return;
      }
      const key = `${g.prefix}-${String(g.attempted++).padStart(7, "0")}`;
      const t = performance.now();
      try {
        if (await write(worker, key)) {
          const now = performance.now();
          g.committed++;
          g.times.push(now + offset);
          g.latencies.push(now - t);
        } else {
          g.errors++;
        }
      } catch (error) {
        g.errors++;
        if (g.errors <= 3) console.error(`  error: ${(error as Error).message}`);
      }
    }
  }));
  g.elapsed += performance.now() - started;
}

/** Settings of the first-write campaign. */
export interface FirstWriteOptions {
  /** The server. */
  readonly url: string;
  /** A one-connection client for DDL, ANALYZE and statistics. */
  readonly admin: postgres.Sql;
  /** Keys a young table grows to; also the keys the analyzed table holds at first. */
  readonly keys: number;
  /** The slice the runs alternate by, and the tail reported on its own. */
  readonly window: number;
  /** Rounds: each grows a new young table beside the analyzed one. */
  readonly rounds: number;
  /** The table size the target is stated for; smaller runs are smoke runs, not judged. */
  readonly targetKeys: number;
  /** Time cap of the raw rows' growth, milliseconds (the old statement slows as it goes). */
  readonly rawCapMs: number;
  /** Prints a line of the report. */
  readonly out: (line: string) => void;
  /** Prints progress to stderr. */
  readonly progress: (text: string) => void;
}

const WORKERS = 16;
const POOLS = 4;
// A bound for a run that has not stalled; the library's runs take seconds.
const RUN_CAP_MS = 600_000;
const data = new Uint8Array(8).map((_, i) => i);

/** Drops `name` if it exists; returns it quoted. */
async function dropTable(admin: postgres.Sql, name: string): Promise<string> {
  const quoted = quoteIdentifier(name, "table");
  await admin.unsafe(`DROP TABLE IF EXISTS ${quoted}`);
  return quoted;
}

/**
 * Creates `table` the way an application does, by opening a store, and
 * closes that store, so that its connection's statistics (the primary key's
 * build counts as a sequential scan) are in before any run is counted.
 * Autovacuum is then switched off for the table: it would ANALYZE the table
 * once about a tenth of it is new rows, which ends the young-table condition
 * mid-run; off, the table stays as its creator left it (the worst case).
 */
async function createTable(admin: postgres.Sql, url: string, name: string): Promise<string> {
  const quoted = await dropTable(admin, name);
  const sql = postgres(url, { max: 1, onnotice: () => {} });
  const store = await PostgresConsensus.open(fromPostgresJs(sql, { owned: true }), {
    table: name,
    engine: "postgres",
  });
  await store.close();
  await admin.unsafe(`ALTER TABLE ${quoted} SET (autovacuum_enabled = false)`);
  return quoted;
}

/** The table's planner statistics: reltuples is -1 until a VACUUM or ANALYZE. */
async function reltuples(admin: postgres.Sql, quoted: string): Promise<number> {
  const rows = await admin.unsafe(
    `SELECT reltuples::float8 AS n FROM pg_class WHERE oid = '${quoted}'::regclass`,
  );
  return Number(rows[0].n);
}

/**
 * The tables' sequential scan counts. A backend reports its counts when it
 * exits, so this waits (a bounded while) for the other client backends to
 * go, then reads until two reads agree.
 */
async function seqScans(admin: postgres.Sql, quoted: string[]): Promise<number[]> {
  const pause = () => new Promise((resolve) => setTimeout(resolve, 250));
  for (let attempt = 0; attempt < 40; attempt++) {
    const rows = await admin.unsafe(
      `SELECT count(*)::int4 AS n FROM pg_stat_activity ` +
        `WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()`,
    );
    if (rows[0].n === 0) break;
    await pause();
  }
  let previous = "";
  for (let attempt = 0; attempt < 20; attempt++) {
    await pause();
    const counts: number[] = [];
    for (const q of quoted) {
      const rows = await admin.unsafe(
        `SELECT coalesce(seq_scan, 0)::int8::text AS n FROM pg_stat_user_tables ` +
          `WHERE relid = '${q}'::regclass`,
      );
      counts.push(Number(rows[0]?.n ?? 0));
    }
    if (counts.join() === previous) return counts;
    previous = counts.join();
  }
  return previous.split(",").map(Number);
}

/** Runs `run` and records in each growth the sequential scans of its table. */
async function counted(
  admin: postgres.Sql,
  tables: [string, Growth][],
  run: () => Promise<void>,
): Promise<void> {
  const quoted = tables.map(([q]) => q);
  const before = await seqScans(admin, quoted);
  await run();
  const after = await seqScans(admin, quoted);
  tables.forEach(([, g], i) => g.seqScans = after[i] - before[i]);
}

/** A first write through one of POOLS stores on `table`, each its own porsager pool. */
type Writer = ((worker: number, key: string) => Promise<boolean>) & { close(): Promise<void> };

async function libraryWriter(url: string, table: string): Promise<Writer> {
  const stores: PostgresConsensus[] = [];
  for (let i = 0; i < POOLS; i++) {
    const sql = postgres(url, { max: WORKERS / POOLS, onnotice: () => {} });
    stores.push(
      await PostgresConsensus.open(fromPostgresJs(sql, { owned: true }), {
        table,
        engine: "postgres",
        create: false,
      }),
    );
  }
  const write = async (worker: number, key: string) =>
    (await stores[worker % POOLS].compareAndSet(key, { seqno: 0n, data })) === "committed";
  return Object.assign(write, {
    close: async () => {
      for (const store of stores) await store.close();
    },
  });
}

/** The same through POOLS raw porsager pools, `text` prepared. */
function rawWriter(url: string, text: string): Writer {
  const pools = Array.from(
    { length: POOLS },
    () => postgres(url, { max: WORKERS / POOLS, onnotice: () => {} }),
  );
  const write = async (worker: number, key: string) =>
    (await pools[worker % POOLS].unsafe(text, [key, data] as never[], { prepare: true }))
      .count === 1;
  return Object.assign(write, {
    close: async () => {
      for (const pool of pools) await pool.end({ timeout: 1 });
    },
  });
}

/**
 * Runs the campaign and prints its tables. An analyzed table is filled with
 * `keys` keys through the library and ANALYZEd. Each round then grows a
 * young table (created by opening a store, autovacuum off, never analyzed)
 * from empty to `keys` keys through the library, alternating every `window`
 * keys with as many new keys written to the analyzed table (which goes first
 * alternates too), so that both see the same load on a noisy machine. After
 * the first round, the raw driver grows young tables with the old and the
 * new first-write statements.
 *
 * @returns The figures, for the JSON results.
 */
export async function firstWrites(options: FirstWriteOptions): Promise<Record<string, unknown>> {
  const { url, admin, keys, window, rounds, out, progress } = options;
  const slices = Math.round(keys / window);
  const young: Growth[] = [], analyzed: Growth[] = [];
  const youngReltuples: number[] = [];
  const raw: { label: string; young: Growth; analyzed?: Growth }[] = [];

  const analyzedName = "bench_first_writes_analyzed";
  const analyzedTable = await createTable(admin, url, analyzedName);
  progress(`first writes: filling the analyzed table with ${fmt(keys)} keys`);
  const fill = newGrowth("fill", 0);
  const filler = await libraryWriter(url, analyzedName);
  await grow(fill, keys, WORKERS, RUN_CAP_MS, filler).finally(() => filler.close());
  let analyzedKeys = fill.committed;

  for (let round = 0; round < rounds; round++) {
    const youngName = `bench_first_writes_young_${round}`;
    const youngTable = await createTable(admin, url, youngName);
    await admin.unsafe(`ANALYZE ${analyzedTable}`);
    const a = newGrowth(`young${round}`, 0), b = newGrowth(`analyzed${round}`, analyzedKeys);
    await counted(admin, [[youngTable, a], [analyzedTable, b]], async () => {
      const toYoung = await libraryWriter(url, youngName);
      const toAnalyzed = await libraryWriter(url, analyzedName);
      try {
        for (let slice = 0; slice < slices; slice++) {
          const pairs: [Growth, Writer, string][] = [
            [a, toYoung, "young"],
            [b, toAnalyzed, "analyzed"],
          ];
          if ((slice + round) % 2 === 1) pairs.reverse();
          for (const [g, write, label] of pairs) {
            progress(
              `first writes, round ${round + 1}: ${label} table, keys ${fmt(g.attempted + 1)} to ${
                fmt(g.attempted + window)
              }`,
            );
            await grow(g, window, WORKERS, RUN_CAP_MS, write);
          }
        }
      } finally {
        await toYoung.close();
        await toAnalyzed.close();
      }
    });
    analyzedKeys += b.committed;
    young.push(a);
    analyzed.push(b);
    youngReltuples.push(await reltuples(admin, youngTable));
    await admin.unsafe(`DROP TABLE ${youngTable}`);

    // The raw driver's rows run once, between the library's rounds.
    if (round !== 0) continue;
    for (
      const [label, text] of [
        ["raw driver, old statement (before 580ba5f)", OLD_CAS_FIRST],
        ["raw driver, new statement (CAS_FIRST_POSTGRES)", undefined],
      ] as const
    ) {
      const name = "bench_first_writes_raw";
      const q = await createTable(admin, url, name);
      const statement = text ? text(q) : dialectFor("postgres", q).casFirst.text;
      const y = newGrowth("raw", 0);
      progress(`first writes: ${label}, young table, 0 to ${fmt(keys)} keys`);
      await counted(admin, [[q, y]], async () => {
        const write = rawWriter(url, statement);
        await grow(y, keys, WORKERS, options.rawCapMs, write).finally(() => write.close());
      });
      let z: Growth | undefined;
      if (text) {
        progress(`first writes: ${label}, the same table ANALYZEd, ${fmt(window)} new keys`);
        await admin.unsafe(`ANALYZE ${q}`);
        z = newGrowth("raw-analyzed", y.committed);
        await counted(admin, [[q, z]], async () => {
          const write = rawWriter(url, statement);
          await grow(z!, window, WORKERS, RUN_CAP_MS, write).finally(() => write.close());
        });
      }
      raw.push({ label, young: y, analyzed: z });
      await admin.unsafe(`DROP TABLE ${q}`);
    }
  }
  await admin.unsafe(`DROP TABLE ${analyzedTable}`);

  const whole = (g: Growth) => rateBetween(g, 0, g.committed);
  const last = (g: Growth) => rateBetween(g, g.committed - window, g.committed);
  const sliceRates = (g: Growth) =>
    Array.from({ length: slices }, (_, i) => rateBetween(g, i * window, (i + 1) * window));
  const p = (gs: Growth[], q: number) =>
    percentile(gs.flatMap((g) => g.latencies).sort((a, b) => a - b), q);

  out(
    `\n## First writes on a growing table (${WORKERS} workers over ${POOLS} stores, ` +
      `compareAndSet seqno 0 of new keys)\n`,
  );
  out(
    "| run | table | first writes | first writes/s, whole run | first writes/s, last " +
      `${fmt(window)} | p50 ms | p99 ms | seq scans | errors |`,
  );
  out("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
  const row = (label: string, table: string, gs: Growth[]) => {
    const sum = (f: (g: Growth) => number) => gs.reduce((n, g) => n + f(g), 0);
    const written = gs.map((g) => fmt(g.committed) + (g.capped ? " (capped)" : "")).join(", ");
    out(
      `| ${label} | ${table} | ${written} | ${fmt(mean(gs.map(whole)))} | ${
        fmt(mean(gs.map(last)))
      } | ${fmt(p(gs, 50), 2)} | ${fmt(p(gs, 99), 2)} | ${fmt(sum((g) => g.seqScans))} | ${
        sum((g) => g.errors)
      } |`,
    );
  };
  const many = rounds > 1 ? ` (mean of ${rounds} rounds)` : "";
  row(`library, young table${many}`, `empty to ${fmt(keys)} keys, never analyzed`, young);
  row(
    `library, analyzed table${many}`,
    `${fmt(keys)} keys, +${fmt(keys)} per round, ANALYZEd before each round`,
    analyzed,
  );
  for (const r of raw) {
    const cap = r.young.capped ? `, stopped at ${options.rawCapMs / 1000} s` : "";
    row(r.label, `empty, never analyzed${cap}`, [r.young]);
    if (r.analyzed) {
      row(r.label, `the same with ${fmt(r.analyzed.keysBefore)} keys, ANALYZEd`, [r.analyzed]);
    }
  }

  out(`\nFirst writes/s per ${fmt(window)} keys, in the order written:\n`);
  const heads = Array.from(
    { length: slices },
    (_, i) => `${fmt(i * window + 1)} to ${fmt((i + 1) * window)}`,
  );
  out(`| run | ${heads.join(" | ")} |`);
  out(`| --- | ${heads.map(() => "---:").join(" | ")} |`);
  const slicesRow = (label: string, g: Growth) =>
    out(`| ${label} | ${sliceRates(g).map((x) => fmt(x)).join(" | ")} |`);
  young.forEach((g, i) => {
    slicesRow(`library, young table, round ${i + 1}`, g);
    slicesRow(
      `library, analyzed table (from ${fmt(analyzed[i].keysBefore)} keys), round ${i + 1}`,
      analyzed[i],
    );
  });
  for (const r of raw) slicesRow(`${r.label}, young table`, r.young);

  const ratioWhole = mean(young.map(whole)) / mean(analyzed.map(whole));
  const ratioLast = mean(young.map(last)) / mean(analyzed.map(last));
  const perRound = (f: (g: Growth) => number) =>
    young.map((g, i) => (f(g) / f(analyzed[i])).toFixed(2)).join(", ");
  const verdict = keys < options.targetKeys
    ? `not judged (${fmt(keys)} keys, the target is about ${fmt(options.targetKeys)})`
    : ratioWhole >= 0.8 && ratioLast >= 0.8
    ? "met"
    : "NOT MET";
  out(
    `\n| target | young / analyzed, whole growth | young / analyzed, last ${fmt(window)} | |`,
  );
  out("| --- | ---: | ---: | --- |");
  out(
    `| first writes/s on a table growing from empty to ${fmt(options.targetKeys)} keys ` +
      `at least 0.8 of the rate on an analyzed table | ${ratioWhole.toFixed(2)} (rounds: ${
        perRound(whole)
      }) | ${ratioLast.toFixed(2)} (rounds: ${perRound(last)}) | ${verdict} |`,
  );
  out(
    `\nEach round alternates ${fmt(window)} keys on the young table with ${fmt(window)} new ` +
      "keys on the analyzed one, so both see the same load; `last` pairs the young table's " +
      `last ${fmt(window)} keys with the analyzed table's last ${fmt(window)} of that round. ` +
      "Tables are created by opening a store, then set `autovacuum_enabled = false`, so no " +
      "automatic ANALYZE ends the young-table condition mid-run (the worst case); " +
      `pg_class.reltuples of the young tables after their growth: ${
        youngReltuples.join(", ")
      } (-1: never vacuumed or analyzed). \`seq scans\`: sequential scans of the table while ` +
      "it was written (pg_stat_user_tables). The raw rows run once, after round 1.",
  );

  const summary = (g: Growth) => ({
    keysBefore: g.keysBefore,
    keys: g.committed,
    capped: g.capped,
    errors: g.errors,
    seqScans: g.seqScans,
    whole: whole(g),
    last: last(g),
    slices: sliceRates(g),
  });
  return {
    workers: WORKERS,
    stores: POOLS,
    keys,
    window,
    young: young.map(summary),
    analyzed: analyzed.map(summary),
    raw: raw.map((r) => ({
      label: r.label,
      young: summary(r.young),
      analyzed: r.analyzed && summary(r.analyzed),
    })),
    ratioWhole,
    ratioLast,
    youngReltuples,
  };
}
