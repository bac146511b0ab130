/**
 * Adapter for Bun's built-in Postgres client (`import { SQL } from "bun"`).
 *
 * @module
 */
import {
  type QueryOptions,
  SqlError,
  type SqlExecutor,
  type SqlResult,
  type SqlStatement,
  type SqlValue,
} from "../executor.ts";
import {
  abandoned,
  convertRows,
  describeTarget,
  listenWithOnlisten,
  messageOf,
  onAbort,
  SQLSTATE,
} from "./_convert.ts";

/**
 * The subset of a Bun `SQL` instance the adapter uses, written here so that
 * this module type-checks, and loads, outside Bun.
 *
 * @example Usage
 * ```ts
 * import type { BunSql } from "@persist/consensus/bun-sql";
 *
 * // Accepts Bun's `SQL` instances without importing "bun".
 * function describe(sql: BunSql): string {
 *   return typeof sql.unsafe === "function" ? "a Bun SQL client" : "something else";
 * }
 * ```
 */
export interface BunSql {
  /** Runs a query from text, binding `params`; prepared unless the client says `prepare: false`. */
  unsafe(query: string, params?: unknown[]): BunSqlQuery;
  /** Closes the pool, waiting up to `timeout` seconds for queries in flight. */
  close(options?: { timeout?: number }): Promise<void>;
  /**
   * LISTENs on `channel` on a connection of its own; `onlisten` runs each
   * time LISTEN is in effect (first time and after every reconnect).
   * Optional: Bun releases without it cannot listen, and watchers poll.
   */
  listen?(
    channel: string,
    onNotify: (payload: string) => void,
    onlisten?: () => void,
  ): Promise<{ unlisten(): Promise<unknown> }>;
  /** The parsed options; hostname, port, username and database name the target in errors. */
  readonly options?: object;
}

/** The subset of Bun's pending query the adapter uses. *
 * @example Usage
 * ```ts
 * import type { BunSqlQuery } from "@persist/consensus/bun-sql";
 *
 * function cancelOnAbort(query: BunSqlQuery, signal: AbortSignal): void {
 *   signal.addEventListener("abort", () => query.cancel(), { once: true });
 * }
 * ```
 */
export interface BunSqlQuery extends PromiseLike<BunSqlRowList> {
  /** Makes rows arrays instead of objects. */
  values(): BunSqlQuery;
  /** Cancels the statement on the server. */
  cancel(): unknown;
}

/** The subset of Bun's result the adapter uses. *
 * @example Usage
 * ```ts
 * import type { BunSqlRowList } from "@persist/consensus/bun-sql";
 *
 * const rows: BunSqlRowList = Object.assign([["1", new Uint8Array([1])]], { count: 1 });
 * ```
 */
export interface BunSqlRowList extends ArrayLike<ArrayLike<unknown>> {
  /** Rows affected (DML) or returned. */
  readonly count: number | null;
}

/**
 * Options for {@linkcode fromBunSql}.
 *
 * @example Usage
 * ```ts
 * import type { FromBunSqlOptions } from "@persist/consensus/bun-sql";
 *
 * const options: FromBunSqlOptions = { owned: true };
 * ```
 */
export interface FromBunSqlOptions {
  /**
   * Whether closing the executor (and so the store) closes the `SQL`
   * instance. Leave it `false` when the instance is shared.
   *
   * @default {false}
   */
  owned?: boolean;
}

function normalise(error: unknown): SqlError {
  if (error instanceof SqlError) return error;
  const { code, errno } = (error ?? {}) as { code?: unknown; errno?: unknown };
  // Bun's PostgresError keeps its own code (ERR_POSTGRES_SERVER_ERROR, ...)
  // in `code` and the server's SQLSTATE in `errno`.
  if (typeof errno === "string" && SQLSTATE.test(errno)) {
    return new SqlError(messageOf(error), { code: errno, cause: error });
  }
  // Connection failures have no SQLSTATE: ERR_POSTGRES_CONNECTION_CLOSED,
  // _CONNECTION_REFUSED, _CONNECTION_TIMEOUT, _IDLE_TIMEOUT,
  // _LIFETIME_TIMEOUT, and the TLS and authentication handshakes' codes.
  const lost = typeof code === "string" &&
    /^ERR_POSTGRES_(CONNECTION|IDLE|LIFETIME|TLS|.*AUTH|UNEXPECTED)/.test(code);
  return new SqlError(messageOf(error), { connectionLost: lost, cause: error });
}

/**
 * Wraps a Bun `SQL` instance as a {@linkcode SqlExecutor}. Statements run
 * through `sql.unsafe(text, params)`, which Bun prepares once per
 * connection (its `prepare` option, on by default), with rows as arrays.
 *
 * Bun sends a JavaScript number that is a whole number from 2^51 to 2^53 as
 * float8; the core passes int8 parameters as `bigint` into statements that
 * cast them (`$2::int8`), which Bun sends exactly over the whole int8 range.
 * int8 results come back as strings (or `bigint` with `bigint: true`) and
 * bytea as `Buffer`; both are converted to `bigint` and a plain
 * `Uint8Array`. Server errors carry the SQLSTATE in `errno`.
 *
 * @param sql The caller's `SQL` instance (a Postgres one).
 * @param options Whether the executor owns (and so closes) the instance.
 * @returns The executor.
 *
 * @example Usage
 * ```ts ignore
 * import { SQL } from "bun";
 * import { PostgresConsensus } from "@persist/consensus";
 * import { fromBunSql } from "@persist/consensus/bun-sql";
 *
 * const sql = new SQL(process.env.DATABASE_URL!, { max: 10 });
 * await using store = await PostgresConsensus.open(fromBunSql(sql, { owned: true }));
 * console.log(await store.head("orders"));
 * ```
 */
export function fromBunSql(sql: BunSql, options: FromBunSqlOptions = {}): SqlExecutor {
  const owned = options.owned ?? false;
  // Bun.SQL (1.4 and later; checked on 1.4.5) LISTENs on a connection of its
  // own, reconnects it when it breaks and runs `onlisten` each time LISTEN is
  // in effect: every call after the first is a reconnect.
  const listen = typeof sql.listen === "function" ? sql.listen.bind(sql) : undefined;
  return {
    target: describeTarget(sql.options),
    ...listen &&
      {
        listen: (channel, onNotify, options) =>
          listenWithOnlisten(listen, normalise, channel, onNotify, options),
      },
    async query(
      statement: SqlStatement,
      params: readonly SqlValue[],
      queryOptions?: QueryOptions,
    ): Promise<SqlResult> {
      const signal = queryOptions?.signal;
      if (signal?.aborted) throw abandoned();
      const pending = sql.unsafe(statement.text, params as unknown[]).values();
      const detach = onAbort(signal, () => pending.cancel());
      try {
        const rows = await pending;
        const converted = statement.columnTypes.length === 0 ? [] : convertRows(rows, statement);
        return { rows: converted, rowCount: rows.count ?? rows.length };
      } catch (error) {
        throw normalise(error);
      } finally {
        detach();
      }
    },
    async ddl(text: string): Promise<void> {
      try {
        await sql.unsafe(text).values();
      } catch (error) {
        throw normalise(error);
      }
    },
    async close(): Promise<void> {
      if (owned) await sql.close({ timeout: 5 });
    },
  };
}
