// One SQL harness for every adapter's tests, and for adapters written
// outside this library: it drives the table through the executor under
// test, so a test needs no second driver to set its table up.
import { StatementRunner } from "../_runner.ts";
import { quotedTable, recreateOf, Schema } from "../_schema.ts";
import { dialectFor, type Engine, statement } from "../dialect.ts";
import type { SqlExecutor } from "../executor.ts";
import { toHex } from "../_hex.ts";
import { PostgresConsensus, type PostgresConsensusOptions } from "../postgres.ts";
import type { Consensus, VersionedData } from "../types.ts";

/**
 * Which table the harness works on, named as {@linkcode PostgresConsensusOptions} names it.
 *
 * @example Usage
 * ```ts
 * import type { TableOptions } from "@persist/consensus/testing";
 *
 * const options: TableOptions = { table: "my_adapter_test", schema: "public" };
 * ```
 */
export interface TableOptions {
  /**
   * The table's name.
   *
   * @default {"consensus"}
   */
  table?: string;
  /**
   * The table's schema; the connection's current schema when omitted.
   *
   * @default {undefined}
   */
  schema?: string;
}

/**
 * Options for {@linkcode createTable}.
 *
 * @example Usage
 * ```ts
 * import type { CreateTableOptions } from "@persist/consensus/testing";
 *
 * const options: CreateTableOptions = { table: "t", engine: "postgres" };
 * ```
 */
export interface CreateTableOptions extends TableOptions {
  /**
   * Whose `CREATE TABLE` to run: the server's own when omitted (asked from
   * `version()`), so the CockroachDB statements can be tested on a table
   * Postgres created.
   *
   * @default {undefined}
   */
  engine?: Engine;
  /**
   * Receives warnings (a CockroachDB tuning the role may not run).
   *
   * @default {() => {}}
   */
  onWarning?: (message: string) => void;
}

/**
 * Options for {@linkcode seedTable}.
 *
 * @example Usage
 * ```ts
 * import type { SeedOptions } from "@persist/consensus/testing";
 *
 * const options: SeedOptions = { table: "t", markers: false };
 * ```
 */
export interface SeedOptions extends TableOptions {
  /**
   * Whether each seeded key also gets the first-write marker row
   * (`sequence_number = -1`) the store writes with version 0. Without it
   * the table looks as an older release of this library left it; the
   * store's statements are correct on both.
   *
   * @default {true}
   */
  markers?: boolean;
}

/**
 * Options for {@linkcode openSeeded}: the store's own options, plus what to
 * seed. `create` defaults to `false`, since the harness created the table.
 *
 * @example Usage
 * ```ts
 * import type { OpenSeededOptions } from "@persist/consensus/testing";
 *
 * const options: OpenSeededOptions = {
 *   table: "t",
 *   initial: new Map([["k", [{ seqno: 0n, data: new Uint8Array([1]) }]]]),
 * };
 * ```
 */
export interface OpenSeededOptions extends PostgresConsensusOptions {
  /** Versions to insert before opening, per key. */
  initial?: Iterable<readonly [string, readonly VersionedData[]]>;
  /**
   * Whether seeded keys get marker rows (see {@linkcode SeedOptions.markers}).
   *
   * @default {true}
   */
  markers?: boolean;
}

// The harness's statements run through the same runner as the store's, so
// their failures read like the store's (determinate or not, with the
// SQLSTATE), and a serialization failure is retried.
function runnerFor(executor: SqlExecutor): StatementRunner {
  return new StatementRunner(executor, 30_000, 8);
}

/**
 * Drops the table if it exists.
 *
 * @param executor Any executor.
 * @param options The table.
 * @returns When the table is gone.
 * @throws {ConsensusError} When the statement failed.
 *
 * @example Usage
 * ```ts ignore
 * import { dropTable } from "@persist/consensus/testing";
 *
 * await dropTable(executor, { table: "my_adapter_test" });
 * ```
 */
export async function dropTable(executor: SqlExecutor, options: TableOptions = {}): Promise<void> {
  const dialect = dialectFor("postgres", quotedTable(options.table ?? "consensus", options.schema));
  await runnerFor(executor).ddl("drop the table", dialect.dropTable);
}

/**
 * Creates the table as `PostgresConsensus.open` would (unless it exists),
 * with the server's own `CREATE TABLE` unless `engine` says whose.
 *
 * @param executor Any executor.
 * @param options The table, and whose statement to run.
 * @returns When the table exists.
 * @throws {ConsensusError} When the statement failed.
 *
 * @example Usage
 * ```ts ignore
 * import { createTable, dropTable } from "@persist/consensus/testing";
 *
 * await dropTable(executor, { table: "my_adapter_test" });
 * await createTable(executor, { table: "my_adapter_test" });
 * ```
 */
export async function createTable(
  executor: SqlExecutor,
  options: CreateTableOptions = {},
): Promise<void> {
  const schema = new Schema(runnerFor(executor), "", options.onWarning ?? (() => {}));
  const engine = options.engine ?? (await schema.probe()).server;
  await schema.createTable(
    dialectFor(engine, quotedTable(options.table ?? "consensus", options.schema)),
  );
}

/**
 * Drops the table if it exists and creates it again, empty (see
 * {@linkcode createTable}).
 *
 * @param executor Any executor.
 * @param options The table, and whose statement to run.
 * @returns When the table exists, empty.
 * @throws {ConsensusError} When a statement failed.
 *
 * @example Usage
 * ```ts ignore
 * import { recreateTable } from "@persist/consensus/testing";
 *
 * await recreateTable(executor, { table: "my_adapter_test" });
 * ```
 */
export async function recreateTable(
  executor: SqlExecutor,
  options: CreateTableOptions = {},
): Promise<void> {
  await dropTable(executor, options);
  await createTable(executor, options);
}

/**
 * Inserts versions into the table in one statement, as given (no checks:
 * a test may seed what the store would never write, a gap or a truncated
 * prefix), with each key's marker row unless `markers` is `false`.
 *
 * @param executor Any executor.
 * @param versions Per key, the versions to insert.
 * @param options The table, and whether to write marker rows.
 * @returns When the rows are committed.
 * @throws {ConsensusError} When the statement failed (a duplicate version: SQLSTATE 23505).
 *
 * @example Usage
 * ```ts ignore
 * import { seedTable } from "@persist/consensus/testing";
 *
 * await seedTable(executor, [["k", [{ seqno: 0n, data: new Uint8Array([1]) }]]], {
 *   table: "my_adapter_test",
 * });
 * ```
 */
export async function seedTable(
  executor: SqlExecutor,
  versions: Iterable<readonly [string, readonly VersionedData[]]>,
  options: SeedOptions = {},
): Promise<void> {
  const rows: { k: string; s: string; d: string }[] = [];
  for (const [key, list] of versions) {
    if (options.markers ?? true) rows.push({ k: key, s: "-1", d: "" });
    for (const { seqno, data } of list) rows.push({ k: key, s: String(seqno), d: toHex(data) });
  }
  if (rows.length === 0) return;
  const table = quotedTable(options.table ?? "consensus", options.schema);
  // One text parameter of JSON, as the store's own multi-key statements
  // take it (src/executor.ts): every adapter binds text the same way.
  const insert = statement(
    "seed",
    `INSERT INTO ${table} (shard, sequence_number, data) ` +
      "SELECT r.k, r.s::int8, decode(r.d, 'hex') " +
      "FROM jsonb_to_recordset($1::text::jsonb) AS r(k text, s text, d text)",
    ["text"],
    [],
  );
  await runnerFor(executor).run("seed the table", "", insert, [JSON.stringify(rows)]);
}

/**
 * Drops the table, creates it, seeds it, and opens a store on it through
 * `executor`: the whole set-up of an adapter's test in one call, used by
 * this library's own adapter tests. Pass it as the conformance harness's
 * `open` to run every case on a new adapter.
 *
 * @param executor The executor under test; the store owns it from here on.
 * @param options The store's options, and the versions to seed.
 * @returns The open store on a table holding just `initial`.
 * @throws {ConsensusError} When a statement failed or open refused.
 *
 * @example Run the conformance suite on an adapter
 * ```ts ignore
 * import postgres from "postgres";
 * import { fromPostgresJs } from "@persist/consensus/postgres-js";
 * import { openSeeded, runConformance } from "@persist/consensus/testing";
 *
 * runConformance(Deno.test, "my adapter", {
 *   open: (initial) =>
 *     openSeeded(fromPostgresJs(postgres(Deno.env.get("DATABASE_URL")!), { owned: true }), {
 *       table: "my_adapter_conformance",
 *       initial,
 *     }),
 * });
 * ```
 */
export async function openSeeded(
  executor: SqlExecutor,
  options: OpenSeededOptions = {},
): Promise<PostgresConsensus> {
  const { initial, markers, ...storeOptions } = options;
  const table = { table: options.table, schema: options.schema };
  try {
    await recreateTable(executor, { ...table, onWarning: options.onWarning });
    await seedTable(executor, initial ?? [], { ...table, markers });
  } catch (error) {
    await executor.close().catch(() => {});
    throw error;
  }
  return await PostgresConsensus.open(executor, { create: false, ...storeOptions });
}

/**
 * Drops a `PostgresConsensus` store's table and creates it again, empty,
 * through the store's own executor; the store stays open and forgets what it
 * knew of the old rows. For tests: it deletes every key's history.
 *
 * @param store A store opened by `PostgresConsensus.open`.
 * @returns When the table is empty.
 * @throws {TypeError} When `store` is not a `PostgresConsensus`.
 * @throws {ConsensusError} When a statement failed.
 *
 * @example Start a test from an empty table
 * ```ts ignore
 * import postgres from "postgres";
 * import { PostgresConsensus } from "@persist/consensus";
 * import { fromPostgresJs } from "@persist/consensus/postgres-js";
 * import { dropAndRecreate } from "@persist/consensus/testing";
 *
 * const sql = postgres(Deno.env.get("DATABASE_URL")!);
 * await using store = await PostgresConsensus.open(fromPostgresJs(sql, { owned: true }), {
 *   table: "my_test",
 * });
 * await dropAndRecreate(store);
 * ```
 */
export async function dropAndRecreate(store: Consensus): Promise<void> {
  const recreate = recreateOf(store);
  if (recreate === undefined) {
    throw new TypeError("Cannot drop and recreate the table: the store is not a PostgresConsensus");
  }
  await recreate();
}
