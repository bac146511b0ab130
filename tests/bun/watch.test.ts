// watch under Bun through Bun.SQL, which can LISTEN (Bun 1.4): versions from
// another notifying store arrive in order, once each, by notification; one
// listening connection serves every watcher and its end releases it; a
// terminated listening connection loses nothing. Tables are `watch_bun_*`.
import { expect } from "bun:test";
import { PostgresConsensus, type VersionedData, watch } from "../../mod.ts";
import { fromBunSql } from "../../src/adapters/bun_sql.ts";
import { fromPostgresJs } from "../../src/adapters/postgres_js.ts";
import { bunSql, dbTest, freshTable, porsager } from "./_db.ts";

const bytes = (text: string) => new TextEncoder().encode(text);
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const NEVER_POLL = { pollIntervalMs: 600_000 };

function watcherStore(table: string, app: string): Promise<PostgresConsensus> {
  return PostgresConsensus.open(
    fromBunSql(bunSql(4, { application_name: app }), { owned: true }),
    { table, create: false },
  );
}

function writerStore(table: string): Promise<PostgresConsensus> {
  return PostgresConsensus.open(fromPostgresJs(porsager(4), { owned: true }), {
    table,
    create: false,
    notify: true,
  });
}

async function listening(app: string): Promise<number[]> {
  const sql = porsager(1);
  try {
    const rows = await sql`SELECT pid FROM pg_stat_activity
      WHERE application_name = ${app} AND query ILIKE 'listen %'`;
    return rows.map((row) => row.pid as number);
  } finally {
    await sql.end();
  }
}

async function eventually<T>(probe: () => Promise<T>, done: (value: T) => boolean, ms = 5_000) {
  const deadline = Date.now() + ms;
  let value = await probe();
  while (!done(value) && Date.now() < deadline) {
    await sleep(25);
    value = await probe();
  }
  return value;
}

async function bounded<T>(promise: Promise<T>, what: string, ms = 10_000): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: nothing after ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([promise, late]);
  } finally {
    clearTimeout(timer);
  }
}

async function collect(
  iterator: AsyncIterableIterator<VersionedData>,
  untilSeqno: bigint,
): Promise<bigint[]> {
  const seen: bigint[] = [];
  try {
    for (;;) {
      const item = await bounded(iterator.next(), `after ${seen.length} versions`, 20_000);
      if (item.done) return seen;
      seen.push(item.value.seqno);
      if (item.value.seqno >= untilSeqno) return seen;
    }
  } finally {
    await iterator.return!();
  }
}

const upTo = (n: number) => Array.from({ length: n + 1 }, (_, i) => BigInt(i));

dbTest(
  "bun-sql watch: one LISTEN per store, notified versions in order, released at the end",
  async () => {
    const table = "watch_bun_sql";
    const app = "watch_bun_sql";
    await freshTable(table);
    const writer = await writerStore(table);
    const store = await watcherStore(table, app);
    try {
      const runs = ["a", "b", "c"].map((key) =>
        collect(watch(store, key, { from: 0n, ...NEVER_POLL }), 49n)
      );
      const pids = await eventually(() => listening(app), (p) => p.length > 0);
      expect(pids.length).toBe(1);
      for (let seqno = 0n; seqno < 50n; seqno++) {
        for (const key of ["a", "b", "c"]) {
          expect(await writer.compareAndSet(key, { seqno, data: bytes(`${key}${seqno}`) }))
            .toBe("committed");
        }
      }
      for (const run of runs) expect(await run).toEqual(upTo(49));
      expect(await eventually(() => listening(app), (p) => p.length === 0)).toEqual([]);
    } finally {
      await writer.close();
      await store.close();
    }
  },
);

dbTest("bun-sql watch: a terminated listening connection loses no version", async () => {
  const table = "watch_bun_sql_terminated";
  const app = "watch_bun_sql_terminated";
  await freshTable(table);
  const writer = await writerStore(table);
  const store = await watcherStore(table, app);
  const admin = porsager(1);
  try {
    const run = collect(watch(store, "k", { from: 0n, ...NEVER_POLL }), 149n);
    const [before] = await eventually(() => listening(app), (p) => p.length === 1);
    let after: number | undefined;
    for (let seqno = 0n; seqno < 150n; seqno++) {
      if (seqno === 50n) {
        await admin`SELECT pg_terminate_backend(${before})`;
      }
      if (seqno === 100n) {
        [after] = await eventually(
          () => listening(app),
          (p) => p.length === 1 && p[0] !== before,
        );
      }
      expect(await writer.compareAndSet("k", { seqno, data: bytes(`v${seqno}`) }))
        .toBe("committed");
      if (seqno % 4n === 0n) await sleep(2);
    }
    expect(await run).toEqual(upTo(149));
    expect(after).not.toBe(before);
    expect(after).toBeDefined();
  } finally {
    await admin.end();
    await writer.close();
    await store.close();
  }
});

dbTest("bun-sql watch: close ends a waiting watcher and releases the LISTEN", async () => {
  const table = "watch_bun_sql_close";
  const app = "watch_bun_sql_close";
  await freshTable(table);
  const store = await watcherStore(table, app);
  const pending = watch(store, "k").next();
  await eventually(() => listening(app), (p) => p.length === 1);
  await store.close();
  expect(await bounded(pending, "after close")).toEqual({ done: true, value: undefined });
  expect(await eventually(() => listening(app), (p) => p.length === 0)).toEqual([]);
});
