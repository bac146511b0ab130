// What the benchmarks drive: the library through an adapter, and the same
// driver running the identical SQL without the library (the "raw" ceiling).
import postgres from "postgres";
import { PostgresConsensus } from "../mod.ts";
import { fromPostgresJs } from "../src/adapters/postgres_js.ts";
import { type Dialect, dialectFor, quoteIdentifier } from "../src/dialect.ts";

/** One adapter under test, with its raw-driver twin. */
export interface Target {
  /** Adapter name, for the tables. */
  readonly name: string;
  /** The store, through the adapter. */
  readonly store: PostgresConsensus;
  /** The raw driver: head of `key` as [seqno, data] or undefined. */
  rawHead(key: string): Promise<[bigint, Uint8Array] | undefined>;
  /** The raw driver: compare-and-set; true when a row was inserted. */
  rawCas(key: string, seqno: bigint, data: Uint8Array): Promise<boolean>;
  /** The raw driver: scan. */
  rawScan(key: string, from: bigint): Promise<number>;
  /** Closes both. */
  close(): Promise<void>;
}

export const TABLE = "bench_consensus";

export function benchDialect(): Dialect {
  return dialectFor("postgres", quoteIdentifier(TABLE, "table"));
}

/** porsager's `postgres` on Deno. */
export async function postgresJsTarget(url: string, max: number): Promise<Target> {
  const dialect = benchDialect();
  const libSql = postgres(url, { max, onnotice: () => {} });
  const rawSql = postgres(url, { max, onnotice: () => {} });
  const store = await PostgresConsensus.open(fromPostgresJs(libSql, { owned: true }), {
    table: TABLE,
    mode: "postgres",
  });
  const prepared = { prepare: true };
  return {
    name: "postgres-js",
    store,
    async rawHead(key) {
      const rows = await rawSql.unsafe(dialect.head.text, [key], prepared).values();
      return rows.length ? [BigInt(rows[0][0] as string), rows[0][1] as Uint8Array] : undefined;
    },
    async rawCas(key, seqno, data) {
      const rows = seqno === 0n
        ? await rawSql.unsafe(dialect.casFirst.text, [key, data] as never[], prepared)
        : await rawSql.unsafe(dialect.casNext.text, [key, seqno, data] as never[], prepared);
      return rows.count === 1;
    },
    async rawScan(key, from) {
      const rows = await rawSql.unsafe(
        dialect.scan.text,
        [key, from, 2n ** 62n] as never[],
        prepared,
      )
        .values();
      return rows.length;
    },
    async close() {
      await store.close();
      await rawSql.end({ timeout: 1 });
    },
  };
}
