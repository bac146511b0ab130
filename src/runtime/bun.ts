/**
 * The Bun entry point: {@linkcode connect} opens a store on a Bun `SQL`
 * client that it creates, owns and closes. Services that already hold a
 * client use `fromBunSql` (or `fromPostgresJs`) with
 * `PostgresConsensus.open` instead.
 *
 * @module
 */
import { type BunSql, fromBunSql } from "../adapters/bun_sql.ts";
import { ConsensusError, redactSecrets } from "../errors.ts";
import { PostgresConsensus, type PostgresConsensusOptions } from "../postgres.ts";

/**
 * A constructor with the shape of Bun's `SQL` class, the part
 * {@linkcode connect} uses.
 *
 * @example Usage
 * ```ts
 * import type { BunSqlConstructor } from "@persist/consensus/bun";
 *
 * // A constructor that logs each client it creates, around Bun's own.
 * function logged(SQL: BunSqlConstructor, log: (line: string) => void): BunSqlConstructor {
 *   return class {
 *     constructor(url: string, options?: { max?: number }) {
 *       log(`new client, pool of ${options?.max ?? "default"}`);
 *       return new SQL(url, options);
 *     }
 *   } as unknown as BunSqlConstructor;
 * }
 * ```
 */
export type BunSqlConstructor = new (url: string, options?: BunSqlClientOptions) => BunSql;

/** The subset of Bun's `SQL` options {@linkcode connect} passes on. *
 * @example Usage
 * ```ts
 * import type { BunSqlClientOptions } from "@persist/consensus/bun";
 *
 * const options: BunSqlClientOptions = { max: 4, connectionTimeout: 5, idleTimeout: 30 };
 * ```
 */
export interface BunSqlClientOptions {
  /** Pool size. */
  max?: number;
  /** Seconds to wait for a connection to open. */
  connectionTimeout?: number;
  /** Seconds an idle connection stays open (0: forever). */
  idleTimeout?: number;
}

/**
 * Options for {@linkcode connect}: the store's options plus the client's.
 *
 * @example Usage
 * ```ts
 * import type { ConnectOptions } from "@persist/consensus/bun";
 *
 * const options: ConnectOptions = { table: "orders_consensus", max: 4, timeoutMs: 5_000 };
 * ```
 */
export interface ConnectOptions extends PostgresConsensusOptions {
  /**
   * Connections in the client's pool.
   *
   * @default {10}
   */
  max?: number;
  /**
   * Seconds to wait for a connection to open.
   *
   * @default {10}
   */
  connectionTimeout?: number;
  /**
   * Seconds an idle connection stays open before it is closed (0: forever).
   *
   * @default {30}
   */
  idleTimeout?: number;
  /**
   * The `SQL` class to create the client with; Bun's own (`Bun.SQL`) when
   * omitted. For tests and for wrappers around Bun's class.
   *
   * @default {Bun.SQL}
   */
  SQL?: BunSqlConstructor;
}

// Read through globalThis, typed structurally, so that this module
// type-checks against a plain ES lib and loads (but cannot connect) outside
// Bun.
function bunSql(): BunSqlConstructor | undefined {
  const bun = (globalThis as { Bun?: { SQL?: BunSqlConstructor } }).Bun;
  return bun?.SQL;
}

/**
 * Opens a {@linkcode PostgresConsensus} on a new Bun `SQL` client for `url`.
 * The store owns the client: closing the store closes it. A password in
 * `url` never appears in an error message.
 *
 * @param url A `postgres://` (or `postgresql://`) connection URL.
 * @param options The store's options (`table`, `mode`, `timeoutMs`, ...) and the pool's.
 * @returns The open store.
 * @throws {TypeError} When `url` is not a string, or Bun's `SQL` is not available (not on Bun
 * and no `options.SQL`).
 * @throws {RangeError} When an option is out of range.
 * @throws {ConsensusError} When the server could not be reached or the table could not be created.
 *
 * @example A counter service on Bun
 * ```ts ignore
 * import { connect } from "@persist/consensus/bun";
 *
 * await using store = await connect(process.env.DATABASE_URL!, { table: "counters" });
 * const head = await store.head("visits");
 * await store.compareAndSet("visits", {
 *   seqno: head === undefined ? 0n : head.seqno + 1n,
 *   data: new Uint8Array([1]),
 * });
 * ```
 */
export async function connect(
  url: string,
  options: ConnectOptions = {},
): Promise<PostgresConsensus> {
  if (typeof url !== "string") {
    throw new TypeError(`Cannot connect: url must be a string, got ${typeof url}`);
  }
  const {
    max = 10,
    connectionTimeout = 10,
    idleTimeout = 30,
    SQL = bunSql(),
    ...storeOptions
  } = options;
  if (SQL === undefined) {
    throw new TypeError(
      "Cannot connect: Bun's SQL client is not available (not running on Bun); " +
        "pass options.SQL, or use PostgresConsensus.open with another adapter",
    );
  }
  if (!Number.isSafeInteger(max) || max < 1) {
    throw new RangeError(`Cannot connect: max must be a positive integer, got ${max}`);
  }
  let sql: BunSql;
  try {
    sql = new SQL(url, { max, connectionTimeout, idleTimeout });
  } catch (error) {
    // The client parses the URL eagerly; its message may quote the URL.
    const message = error instanceof Error ? error.message : String(error);
    throw new ConsensusError(
      `Cannot connect to ${redactSecrets(url)}: ${redactSecrets(message)}`,
      { determinate: true, code: undefined },
    );
  }
  try {
    return await PostgresConsensus.open(fromBunSql(sql, { owned: true }), storeOptions);
  } catch (error) {
    await sql.close({ timeout: 0 }).catch(() => {});
    throw error;
  }
}
