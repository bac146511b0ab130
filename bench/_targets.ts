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

/** node-postgres (`pg`) on Deno; statements prepared by name, as the adapter does. */
export async function nodePostgresTarget(url: string, max: number): Promise<Target> {
  const pg = (await import("pg")).default;
  const { fromNodePostgres } = await import("../src/adapters/node_postgres.ts");
  const dialect = benchDialect();
  const libPool = new pg.Pool({ connectionString: url, max });
  const rawPool = new pg.Pool({ connectionString: url, max });
  const store = await PostgresConsensus.open(fromNodePostgres(libPool, { owned: true }), {
    table: TABLE,
    mode: "postgres",
  });
  const run = (statement: { name: string; text: string }, values: unknown[]) =>
    rawPool.query({
      name: `raw_${statement.name}`,
      text: statement.text,
      values,
      rowMode: "array",
    });
  return {
    name: "node-postgres",
    store,
    async rawHead(key) {
      const { rows } = await run(dialect.head, [key]);
      return rows.length ? [BigInt(rows[0][0]), rows[0][1]] : undefined;
    },
    async rawCas(key, seqno, data) {
      const result = seqno === 0n
        ? await run(dialect.casFirst, [key, data])
        : await run(dialect.casNext, [key, seqno, data]);
      return result.rowCount === 1;
    },
    async rawScan(key, from) {
      return (await run(dialect.scan, [key, from, 2n ** 62n])).rows.length;
    },
    async close() {
      await store.close();
      await rawPool.end();
    },
  };
}

/**
 * deno-postgres (JSR) with `enableTcpNoDelay({ coalesce: true })` for the
 * database's host and port, or undefined (with the
 * reason printed) where `jsr:@db/postgres` cannot be loaded.
 */
export async function denoPostgresTarget(url: string, max: number): Promise<Target | undefined> {
  const specifier = ["jsr:@db", "postgres@^0.19.5"].join("/");
  let driver: {
    Pool: new (
      url: string,
      size: number,
      lazy?: boolean,
    ) => import("../src/adapters/deno_postgres.ts").DenoPostgresPool;
  };
  try {
    driver = await import(specifier);
  } catch (error) {
    console.error(
      `  *** deno-postgres SKIPPED: ${specifier} cannot be loaded (${
        (error as Error).message
      }) ***`,
    );
    return undefined;
  }
  const { enableTcpNoDelay } = await import("../src/runtime/deno.ts");
  const { hostname, port } = new URL(url);
  enableTcpNoDelay({ hostnames: [hostname], ports: [Number(port || 5432)], coalesce: true });
  const { fromDenoPostgres } = await import("../src/adapters/deno_postgres.ts");
  const dialect = benchDialect();
  const libPool = new driver.Pool(url, max, true);
  const rawPool = new driver.Pool(url, max, true);
  const store = await PostgresConsensus.open(fromDenoPostgres(libPool, { owned: true }), {
    table: TABLE,
    mode: "postgres",
  });
  const run = async (text: string, args: unknown[]) => {
    const client = await rawPool.connect();
    try {
      return await client.queryArray({ text, args });
    } finally {
      client.release();
    }
  };
  return {
    name: "deno-postgres (nodelay + coalesce)",
    store,
    async rawHead(key) {
      const { rows } = await run(dialect.head.text, [key]);
      return rows.length ? [BigInt(rows[0][0] as bigint), rows[0][1] as Uint8Array] : undefined;
    },
    async rawCas(key, seqno, data) {
      const result = seqno === 0n
        ? await run(dialect.casFirst.text, [key, data])
        : await run(dialect.casNext.text, [key, seqno, data]);
      return result.rowCount === 1;
    },
    async rawScan(key, from) {
      return (await run(dialect.scan.text, [key, from, 2n ** 62n])).rows.length;
    },
    async close() {
      await store.close();
      await rawPool.end();
    },
  };
}
