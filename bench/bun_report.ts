/**
 * The Bun runner of the benchmarks: the uncontended compare-and-set workload
 * through Bun.SQL and porsager's `postgres` under Bun, each beside its raw
 * driver running the identical SQL and beside pgbench, interleaved in one
 * run. `deno task bench` runs it when `bun` is on the PATH and appends its
 * table; alone: `bun run bench/bun_report.ts [--seconds N] [--rounds N] [--quick]`
 * with `DATABASE_URL` set.
 *
 * @module
 */
import { SQL } from "bun";
import postgres from "postgres";
import { PostgresConsensus } from "../mod.ts";
import { fromBunSql } from "../src/adapters/bun_sql.ts";
import { fromPostgresJs } from "../src/adapters/postgres_js.ts";
import { dialectFor, quoteIdentifier } from "../src/dialect.ts";
import {
  benchArgs,
  casScript,
  fmt,
  freshKey,
  mean,
  parsePgbench,
  percentile,
  pgbenchArgs,
  rate,
  ratio,
  type RunResult,
  timeBoxed,
  usageOrProblem,
} from "./_measure.ts";

const argv = process.argv.slice(2);
const parsed = benchArgs(argv);
usageOrProblem(
  parsed,
  `Usage: bun run bench/bun_report.ts [--quick] [--seconds N] [--rounds N]

The uncontended workload under Bun (Bun.SQL, porsager), against DATABASE_URL.
deno task bench runs it. Tables to stdout, progress to stderr.`,
  (code) => process.exit(code),
);
const { quick, seconds, rounds } = parsed;
const url = process.env.DATABASE_URL;
if (!url) {
  console.error("DATABASE_URL is not set");
  process.exit(2);
}
const TABLE = "bench_consensus_bun";
const dialect = dialectFor("postgres", quoteIdentifier(TABLE, "table"));

async function findPgBin(): Promise<string> {
  const dirs = [process.env.PG_BIN ?? "", ...(process.env.PATH ?? "").split(":")];
  for (const version of ["18", "17", "16", "15", "14"]) {
    dirs.push(`/usr/lib/postgresql/${version}/bin`);
  }
  for (const dir of dirs) if (dir && await Bun.file(`${dir}/pgbench`).exists()) return dir;
  throw new Error("pgbench not found (set PG_BIN)");
}

async function pgbench(script: string, clients: number): Promise<number> {
  const file = `/tmp/persist-consensus-bun-bench-${process.pid}-${Date.now()}.sql`;
  await Bun.write(file, script);
  const proc = Bun.spawn([`${binDir}/pgbench`, ...pgbenchArgs(file, url!, clients, seconds)], {
    stdout: "pipe",
    stderr: "pipe",
  });
  const text = (await new Response(proc.stdout).text()) + (await new Response(proc.stderr).text());
  await proc.exited;
  await Bun.file(file).delete();
  if (proc.exitCode !== 0) throw new Error(`pgbench failed:\n${text}`);
  return parsePgbench(text).tps;
}

interface Target {
  name: string;
  store: PostgresConsensus;
  rawHead(key: string): Promise<bigint>;
  rawCas(key: string, seqno: bigint, data: Uint8Array): Promise<boolean>;
  close(): Promise<void>;
}

async function bunSqlTarget(): Promise<Target> {
  const lib = new SQL(url!, { max: 20 });
  const raw = new SQL(url!, { max: 20 });
  const store = await PostgresConsensus.open(fromBunSql(lib, { owned: true }), {
    table: TABLE,
    mode: "postgres",
    create: false,
  });
  return {
    name: "Bun.SQL",
    store,
    async rawHead(key) {
      const rows = await raw.unsafe(dialect.head.text, [key]).values();
      return BigInt(rows[0][0]);
    },
    async rawCas(key, seqno, data) {
      const rows = await raw.unsafe(dialect.casNext.text, [key, seqno, data]);
      return rows.count === 1;
    },
    async close() {
      await store.close();
      await raw.close();
    },
  };
}

async function postgresJsTarget(): Promise<Target> {
  const lib = postgres(url!, { max: 20, onnotice: () => {} });
  const raw = postgres(url!, { max: 20, onnotice: () => {} });
  const store = await PostgresConsensus.open(fromPostgresJs(lib, { owned: true }), {
    table: TABLE,
    mode: "postgres",
    create: false,
  });
  const prepared = { prepare: true };
  return {
    name: "postgres-js",
    store,
    async rawHead(key) {
      const rows = await raw.unsafe(dialect.head.text, [key], prepared).values();
      return BigInt(rows[0][0] as string);
    },
    async rawCas(key, seqno, data) {
      const rows = await raw.unsafe(dialect.casNext.text, [key, seqno, data] as never[], prepared);
      return rows.count === 1;
    },
    async close() {
      await store.close();
      await raw.end({ timeout: 1 });
    },
  };
}

const binDir = await findPgBin();
const admin = postgres(url, { max: 1, onnotice: () => {} });
await admin.unsafe(dialect.dropTable);
await admin.unsafe(dialect.createTable);
const seed = (shards: string[]) =>
  admin.unsafe(
    `INSERT INTO ${TABLE} (shard, sequence_number, data) SELECT unnest($1::text[]), 0, '\\x00'::bytea`,
    [shards],
  );

const targets = [await bunSqlTarget(), await postgresJsTarget()];
const rows: Record<string, unknown>[] = [];
console.log(`\n## Uncontended compare-and-set under Bun ${Bun.version}\n`);
console.log(
  "| adapter | workers | payload | library CAS/s | raw driver CAS/s | pgbench CAS/s | library / raw | library / pgbench | p50 ms | p99 ms | errors |",
);
console.log("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
const data = new Uint8Array(8).map((_, i) => i);
for (const workers of quick ? [1, 16] : [1, 4, 16]) {
  const lib = new Map<Target, RunResult[]>(), raw = new Map<Target, RunResult[]>();
  const bench: number[] = [];
  for (let round = 0; round < rounds; round++) {
    const prefix = freshKey("b-pgb");
    await seed(Array.from({ length: workers }, (_, i) => `${prefix}-${i}`));
    console.error(`  [bench/bun] ${workers} workers, round ${round + 1}: pgbench`);
    bench.push(await pgbench(casScript(dialect, `'${prefix}-' || :client_id`, data), workers));
    for (const t of targets) {
      console.error(`  [bench/bun] ${workers} workers, round ${round + 1}: ${t.name}`);
      const libKeys = Array.from({ length: workers }, () => freshKey("b-lib"));
      const rawKeys = Array.from({ length: workers }, () => freshKey("b-raw"));
      await seed([...libKeys, ...rawKeys]);
      const l = await timeBoxed(workers, seconds * 1000, async (w) => {
        const startedAt = performance.now();
        const head = await t.store.head(libKeys[w]);
        const outcome = await t.store.compareAndSet(libKeys[w], { seqno: head!.seqno + 1n, data });
        return { ok: outcome === "committed", attempts: 1, startedAt };
      });
      const r = await timeBoxed(workers, seconds * 1000, async (w) => {
        const startedAt = performance.now();
        const head = await t.rawHead(rawKeys[w]);
        return { ok: await t.rawCas(rawKeys[w], head + 1n, data), attempts: 1, startedAt };
      });
      lib.set(t, [...(lib.get(t) ?? []), l]);
      raw.set(t, [...(raw.get(t) ?? []), r]);
    }
  }
  const pgbRate = mean(bench);
  for (const t of targets) {
    const libRate = mean(lib.get(t)!.map(rate)), rawRate = mean(raw.get(t)!.map(rate));
    const latencies = lib.get(t)!.flatMap((r) => r.latencies).sort((a, b) => a - b);
    const errors = lib.get(t)!.reduce((a, r) => a + r.errors, 0);
    rows.push({
      adapter: t.name,
      runtime: "bun",
      workers,
      payload: 8,
      library: libRate,
      raw: rawRate,
      pgbench: pgbRate,
      errors,
    });
    console.log(
      `| ${t.name} (Bun) | ${workers} | 8 B | ${fmt(libRate)} | ${fmt(rawRate)} | ${
        fmt(pgbRate)
      } | ${ratio(libRate, rawRate)} | ${ratio(libRate, pgbRate)} | ${
        fmt(percentile(latencies, 50), 2)
      } | ${fmt(percentile(latencies, 99), 2)} | ${errors} |`,
    );
  }
}
for (const t of targets) await t.close();
await admin.end({ timeout: 1 });
await Bun.write("bench/results/latest-bun.json", JSON.stringify(rows, null, 2));
