/**
 * CAS throughput over TCP, deno-postgres against porsager's `postgres`, in
 * one process against one server: 16 workers, each on its own key, each
 * loop one `head` and one `compareAndSet(head + 1)`, two rounds of each
 * adapter in ABBA order. deno-postgres runs with `enableTcpNoDelay()` (the
 * documented fix) and, for reference, once without it.
 *
 * Usage: `deno run -A tools/with_postgres.ts deno run -A bench/adapters_tcp.ts [seconds]`
 *
 * deno-postgres is on JSR and imported dynamically; where it cannot be
 * loaded its rows are skipped and the reason is printed.
 *
 * @module
 */
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
  const start = performance.now();
  const until = start + seconds * 1000;
  const counts = await Promise.all(
    Array.from({ length: WORKERS }, (_, w) => casLoop(store, `${label}/${w}`, until)),
  );
  const elapsed = (performance.now() - start) / 1000;
  const total = counts.reduce((a, b) => a + b, 0);
  return { label, total, perSecond: total / elapsed, elapsed };
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
}
const rows = new Map<string, Row>();
function record(r: Awaited<ReturnType<typeof measure>>): void {
  const row = rows.get(r.label) ?? { label: r.label, total: 0, elapsed: 0, perSecond: 0 };
  row.total += r.total;
  row.elapsed += r.elapsed;
  row.perSecond = row.total / row.elapsed;
  rows.set(r.label, row);
}

async function porsager(): Promise<void> {
  const sql = postgres(url!, { max: WORKERS, onnotice: () => {} });
  const store = await open(fromPostgresJs(sql, { owned: true }));
  record(await measure("postgres-js (porsager)", store, SECONDS));
  await store.close();
}

async function denoPostgres(Pool: Driver["Pool"]): Promise<void> {
  using _noDelay = enableTcpNoDelay();
  const store = await open(fromDenoPostgres(new Pool(url!, WORKERS, true), { owned: true }));
  record(await measure("deno-postgres + enableTcpNoDelay", store, SECONDS));
  await store.close();
}

// Two rounds in ABBA order, so that drift in the machine's load over the run
// weighs on both adapters alike.
await porsager();
if (driver) {
  await denoPostgres(driver.Pool);
  await denoPostgres(driver.Pool);
}
await porsager();
if (driver) {
  const store = await open(fromDenoPostgres(new driver.Pool(url, WORKERS, true), { owned: true }));
  record(await measure("deno-postgres, no fix", store, Math.min(SECONDS, 3)));
  await store.close();
}
const results = [...rows.values()];

const baseline = results[0].perSecond;
console.log(`\nCAS throughput over TCP, ${WORKERS} workers, own key each (head + compareAndSet)\n`);
console.log("| adapter | CAS/s | vs porsager | CAS in run | seconds |");
console.log("|---|---:|---:|---:|---:|");
for (const r of results) {
  console.log(
    `| ${r.label} | ${r.perSecond.toFixed(0)} | ${
      (r.perSecond / baseline).toFixed(2)
    } | ${r.total} | ${r.elapsed.toFixed(1)} |`,
  );
}
