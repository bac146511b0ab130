/**
 * CAS throughput over TCP, deno-postgres against porsager's `postgres`, in
 * one process against one server: 16 workers, each on its own key, each
 * loop one `head` and one `compareAndSet(head + 1)`, two rounds of each
 * variant in mirrored order (A B C C B A). deno-postgres runs with
 * `enableTcpNoDelay()` (TCP_NODELAY), with `enableTcpNoDelay({ coalesce:
 * true })` (TCP_NODELAY, writes coalesced until the next read, reads
 * ahead), and, for reference, once without either. The client's CPU time
 * per compare-and-set (the whole process's user + system time over the
 * round) and the load average before and after are printed with the table.
 *
 * Measured on a noisy 2-core machine (other jobs running), Deno 2.9.6,
 * deno-postgres 0.19.5, local Postgres 15, 5 s rounds: throughput as a
 * ratio to porsager's in the same run, and the client's CPU time per
 * compare-and-set (porsager's was 167 to 246 µs in these runs). The load
 * average is the 1-minute one before and after the rounds.
 *
 * | run | load avg  | TCP_NODELAY      | TCP_NODELAY + coalesce |
 * | --- | --------- | ---------------- | ---------------------- |
 * | 1   | 2.1 → 4.4 | 0.49 (409 µs)    | 0.80 (226 µs)          |
 * | 2   | 4.0 → 5.7 | 0.36 (415 µs)    | 0.47 (303 µs)          |
 * | 3   | 3.7 → 5.2 | 0.48 (384 µs)    | 0.50 (247 µs)          |
 * | 4   | 4.9 → 6.2 | 0.53 (480 µs)    | 0.81 (323 µs)          |
 * | 5   | 3.5 → 4.2 | 0.61 (362 µs)    | 0.83 (252 µs)          |
 * | 6   | 4.4 → 6.0 | 0.51 (465 µs)    | 0.63 (354 µs)          |
 *
 * Without either fix deno-postgres ran at 0.05 to 0.09 of porsager
 * (about 170 CAS/s: every statement waits for a delayed ACK).
 *
 * Usage: `deno run -A tools/with_postgres.ts deno run -A bench/adapters_tcp.ts [seconds]`
 *
 * deno-postgres is on JSR and imported dynamically; where it cannot be
 * loaded its rows are skipped and the reason is printed.
 *
 * @module
 */
import process from "node:process";
import postgres from "postgres";
import { PostgresConsensus } from "../mod.ts";
import { type DenoPostgresPool, fromDenoPostgres } from "../src/adapters/deno_postgres.ts";
import { fromPostgresJs } from "../src/adapters/postgres_js.ts";
import { dialectFor, quoteIdentifier } from "../src/dialect.ts";
import { enableTcpNoDelay } from "../src/runtime/deno.ts";

const WORKERS = 16;
const SECONDS = Number(Deno.args[0] ?? 5);
const TABLE = "bench_adapters_tcp";
const url = Deno.env.get("DATABASE_URL");
if (!url) {
  console.error("DATABASE_URL is not set: run through tools/with_postgres.ts");
  Deno.exit(2);
}
if (new URL(url).hostname === "" || new URL(url).hostname.startsWith("/")) {
  console.error(`DATABASE_URL must name a TCP host, got ${url}`);
  Deno.exit(2);
}

interface Driver {
  Pool: new (url: string, size: number, lazy?: boolean) => DenoPostgresPool;
}
const SPECIFIER = ["jsr:@db", "postgres@^0.19.5"].join("/");
let driver: Driver | undefined;
try {
  driver = await import(SPECIFIER) as Driver;
} catch (error) {
  console.error(
    `*** deno-postgres rows SKIPPED: ${SPECIFIER} cannot be loaded (${
      error instanceof Error ? error.message : String(error)
    }) ***`,
  );
}

async function casLoop(store: PostgresConsensus, key: string, until: number): Promise<number> {
  let committed = 0;
  const data = new Uint8Array(64);
  while (performance.now() < until) {
    const head = await store.head(key);
    const seqno = head === undefined ? 0n : head.seqno + 1n;
    if (await store.compareAndSet(key, { seqno, data }) === "committed") committed++;
  }
  return committed;
}

async function measure(label: string, store: PostgresConsensus, seconds: number) {
  // Warm every connection of the pool before timing.
  await Promise.all(
    Array.from({ length: WORKERS }, (_, w) => casLoop(store, `${label}/warm/${w}`, 0)),
  );
  for (let w = 0; w < WORKERS; w++) await store.head(`${label}/warm/${w}`);
  const cpuBefore = process.cpuUsage();
  const start = performance.now();
  const until = start + seconds * 1000;
  const counts = await Promise.all(
    Array.from({ length: WORKERS }, (_, w) => casLoop(store, `${label}/${w}`, until)),
  );
  const elapsed = (performance.now() - start) / 1000;
  const cpu = process.cpuUsage(cpuBefore);
  const total = counts.reduce((a, b) => a + b, 0);
  return { label, total, perSecond: total / elapsed, elapsed, cpuMicros: cpu.user + cpu.system };
}

const setup = postgres(url, { max: 1, onnotice: () => {} });
const ddl = dialectFor("postgres", quoteIdentifier(TABLE, "table"));
await setup.unsafe(ddl.dropTable);
await setup.unsafe(ddl.createTable);
await setup.end();

const open = (executor: Parameters<typeof PostgresConsensus.open>[0]) =>
  PostgresConsensus.open(executor, { mode: "postgres", table: TABLE, create: false });

interface Row {
  label: string;
  total: number;
  elapsed: number;
  perSecond: number;
  cpuMicros: number;
}
const rows = new Map<string, Row>();
function record(r: Awaited<ReturnType<typeof measure>>): void {
  console.error(`round: ${r.label}: ${(r.total / r.elapsed).toFixed(0)} CAS/s`);
  const row = rows.get(r.label) ??
    { label: r.label, total: 0, elapsed: 0, perSecond: 0, cpuMicros: 0 };
  row.total += r.total;
  row.elapsed += r.elapsed;
  row.cpuMicros += r.cpuMicros;
  row.perSecond = row.total / row.elapsed;
  rows.set(r.label, row);
}

async function loadAverage(): Promise<string> {
  try {
    return (await Deno.readTextFile("/proc/loadavg")).split(" ").slice(0, 3).join(" ");
  } catch {
    return "unknown";
  }
}

async function porsager(): Promise<void> {
  const sql = postgres(url!, { max: WORKERS, onnotice: () => {} });
  const store = await open(fromPostgresJs(sql, { owned: true }));
  record(await measure("postgres-js (porsager)", store, SECONDS));
  await store.close();
}

async function denoPostgres(Pool: Driver["Pool"], coalesce: boolean): Promise<void> {
  // Only the database's connections are tuned.
  const target = new URL(url!);
  using _tuned = enableTcpNoDelay({
    hostnames: [target.hostname],
    ports: [Number(target.port || 5432)],
    coalesce,
  });
  const store = await open(fromDenoPostgres(new Pool(url!, WORKERS, true), { owned: true }));
  const label = coalesce
    ? "deno-postgres + enableTcpNoDelay({ coalesce: true })"
    : "deno-postgres + enableTcpNoDelay()";
  record(await measure(label, store, SECONDS));
  await store.close();
}

// Two rounds of each variant in mirrored order (A B C C B A), so that drift
// in the machine's load over the run weighs on every variant alike.
const loadBefore = await loadAverage();
await porsager();
if (driver) {
  await denoPostgres(driver.Pool, false);
  await denoPostgres(driver.Pool, true);
  await denoPostgres(driver.Pool, true);
  await denoPostgres(driver.Pool, false);
}
await porsager();
const loadAfter = await loadAverage();
if (driver) {
  const store = await open(fromDenoPostgres(new driver.Pool(url, WORKERS, true), { owned: true }));
  record(await measure("deno-postgres, no fix", store, Math.min(SECONDS, 3)));
  await store.close();
}
const results = [...rows.values()];

const baseline = results[0].perSecond;
console.log(`\nCAS throughput over TCP, ${WORKERS} workers, own key each (head + compareAndSet)\n`);
console.log("| adapter | CAS/s | vs porsager | client CPU µs/CAS | CAS in run | seconds |");
console.log("|---|---:|---:|---:|---:|---:|");
for (const r of results) {
  console.log(
    `| ${r.label} | ${r.perSecond.toFixed(0)} | ${(r.perSecond / baseline).toFixed(2)} | ${
      (r.cpuMicros / r.total).toFixed(0)
    } | ${r.total} | ${r.elapsed.toFixed(1)} |`,
  );
}
console.log(
  `\nload average (1, 5, 15 min): ${loadBefore} before, ${loadAfter} after the ABBA rounds`,
);
