/**
 * Adapter for porsager's `postgres` driver (`npm:postgres`), on Deno, Bun
 * and Node.
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
  convertRows,
  describeTarget,
  listenWithOnlisten,
  onAbort,
  SOCKET_CODES,
  SQLSTATE,
} from "./_convert.ts";

/**
 * The subset of a `postgres()` instance the adapter uses, written here so
 * that importing this module never loads the driver.
 */
export interface PostgresJsSql {
  /** Runs a query from text, binding `params`; prepared when `options.prepare` is set. */
  unsafe(
    query: string,
    params?: unknown[],
    options?: { prepare?: boolean },
  ): PostgresJsPendingQuery;
  /** Closes the pool. */
  end(options?: { timeout?: number }): Promise<void>;
  /**
   * LISTENs on `channel` on the driver's own listening connection;
   * `onlisten` runs each time LISTEN is in effect (first time and after every
   * reconnect). Optional: without it the executor cannot listen.
   */
  listen?(
    channel: string,
    onNotify: (payload: string) => void,
    onlisten?: () => void,
  ): Promise<{ unlisten(): Promise<unknown> }>;
  /** The parsed options; their `max_pipeline` decides whether cancelling is safe. */
  readonly options?: object;
}

/** The subset of porsager's pending query the adapter uses. */
export interface PostgresJsPendingQuery {
  /** Makes rows arrays instead of objects. */
  values(): PostgresJsValuesQuery;
}

/** The subset of porsager's pending query, rows as arrays, the adapter uses. */
export interface PostgresJsValuesQuery extends PromiseLike<PostgresJsRowList> {
  /** Cancels the statement on the server. */
  cancel(): unknown;
}

/** The subset of porsager's result the adapter uses. */
export interface PostgresJsRowList extends ReadonlyArray<readonly unknown[]> {
  /** Rows affected (DML) or returned. */
  readonly count: number | null;
}

/**
 * Options for {@linkcode fromPostgresJs}.
 */
export interface FromPostgresJsOptions {
  /**
   * Whether closing the executor (and so the store) ends the `postgres()`
   * instance. Leave it `false` when the instance is shared.
   *
   * @default {false}
   */
  owned?: boolean;
}

// porsager's own codes for a connection that broke or never opened, besides
// the socket errors it passes through.
const CONNECTION_CODES = new Set([
  "CONNECTION_CLOSED",
  "CONNECTION_ENDED",
  "CONNECTION_DESTROYED",
  "CONNECT_TIMEOUT",
  ...SOCKET_CODES,
]);

function normalise(error: unknown): SqlError {
  if (error instanceof SqlError) return error;
  const { name, code, message } = error as { name?: string; code?: unknown; message?: unknown };
  const text = typeof message === "string" ? message : String(error);
  // A PostgresError is the server's error response; porsager also raises
  // "generic" errors with a SQLSTATE-shaped code for client-side cancels.
  if (name === "PostgresError" && typeof code === "string" && SQLSTATE.test(code)) {
    return new SqlError(text, { code, cause: error });
  }
  if (typeof code === "string" && CONNECTION_CODES.has(code)) {
    return new SqlError(text, { connectionLost: true, cause: error });
  }
  return new SqlError(text, { cause: error });
}

/**
 * Wraps a `postgres()` instance from porsager's driver as a
 * {@linkcode SqlExecutor}. Statements are prepared once per connection;
 * int8 parameters are sent as bigints (exact) and results converted back to
 * `bigint` and `Uint8Array`.
 *
 * A statement that outlives the store's timeout is cancelled on the server
 * only when the instance was created with `max_pipeline: 0`: with porsager's
 * default pipelining, cancelling a pipelined statement corrupts the results
 * of the statements after it on that connection (a porsager 3.4.9 bug), so
 * it is left to finish. Create the instance with `max_pipeline: 0` to get
 * cancellation, or set `statement_timeout` to bound statements server-side.
 *
 * @param sql The caller's `postgres()` instance.
 * @param options Whether the executor owns (and so ends) the instance.
 * @returns The executor.
 *
 * @example Usage
 * ```ts ignore
 * import postgres from "postgres";
 * import { PostgresConsensus } from "@persist/consensus";
 * import { fromPostgresJs } from "@persist/consensus/postgres-js";
 *
 * const sql = postgres(Deno.env.get("DATABASE_URL")!, { max: 10 });
 * await using store = await PostgresConsensus.open(fromPostgresJs(sql, { owned: true }));
 * console.log(await store.head("orders"));
 * ```
 */
export function fromPostgresJs(
  sql: PostgresJsSql,
  options: FromPostgresJsOptions = {},
): SqlExecutor {
  const owned = options.owned ?? false;
  // porsager pipelines statements onto a busy connection unless created
  // with `max_pipeline: 0`. Cancelling a pipelined statement (sent, not yet
  // running) makes porsager 3.4.9 skip it without consuming its response,
  // so every later statement on that connection receives the previous one's
  // result: a head answered with another key's row, a mismatch read as a
  // commit. Our torture campaign found it (RELIABILITY.md). A cancel request
  // also targets a backend, not a statement, so with pipelining it can hit
  // the next statement. Timed-out statements are therefore cancelled only
  // when the pool does not pipeline; otherwise they run to completion (the
  // core has already reported them as indeterminate) and `statement_timeout`
  // is the way to bound them on the server.
  const cancellable = (sql.options as { max_pipeline?: unknown } | undefined)?.max_pipeline === 0;
  // porsager keeps one listening connection per postgres() instance, opened at
  // the first listen() and kept (idle once unlistened) until end(). When it
  // breaks, porsager reconnects and LISTENs again, and runs `onlisten` once
  // that is in effect: every call after the first is a reconnect. Two things
  // porsager 3.4.9 does that the subscription guards against: after a
  // reconnect, the `unlisten` handed out before it no longer removes the
  // callback (it was re-registered as a new listener), so a closed
  // subscription drops what still arrives; and a re-LISTEN that fails (the
  // server still down) is dropped for good, after which watchers are woken by
  // their own polling only.
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
      const pending = sql.unsafe(statement.text, params as unknown[], { prepare: true }).values();
      const signal = cancellable ? queryOptions?.signal : undefined;
      const detach = onAbort(signal, () => pending.cancel());
      try {
        const received = await pending;
        let rows: ArrayLike<readonly unknown[]> = received;
        // porsager 3.4.9 counts rows per connection and resets the count at
        // CommandComplete, not at an error: after a statement that sent rows
        // and then failed (a 40001 mid-result, a cancel), the next result on
        // that connection has its rows at indexes shifted up by that many,
        // behind a prefix of holes. Its rows are right, only misplaced:
        // dropping the holes puts them back.
        if (received.length > 0 && received[0] === undefined) {
          rows = received.filter((row) => row !== undefined);
        }
        const converted = statement.columnTypes.length === 0 ? [] : convertRows(rows, statement);
        return { rows: converted, rowCount: received.count ?? rows.length };
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
      if (owned) await sql.end({ timeout: 5 });
    },
  };
}
