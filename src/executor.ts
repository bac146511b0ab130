/**
 * The SQL types the core binds and reads. Adapters pass each parameter with
 * its declared type and convert each result column to its JavaScript form,
 * so no driver has to guess:
 * - `"text"`: `string`
 * - `"int8"`: `bigint` (exact over the whole int8 range)
 * - `"bytea"`: `Uint8Array` (a plain view, not a driver-specific subclass)
 *
 * @example Usage
 * ```ts
 * import type { SqlType } from "@persist/consensus";
 *
 * const types: SqlType[] = ["text", "int8", "bytea"];
 * ```
 */
export type SqlType = "text" | "int8" | "bytea";

// Statements that take many values at once (several keys in one commit, or
// a batch of operations) take them as ONE "text" parameter holding JSON,
// unpacked on the server with jsonb_to_recordset, bytes as hex. Every
// driver binds text the same way, so no adapter needs array types, and the
// executor contract stays three scalar types.

/**
 * A value bound as a parameter or read from a result column. `null` is only
 * ever read (an aggregate over no rows), never bound.
 *
 * @example Usage
 * ```ts
 * import type { SqlValue } from "@persist/consensus";
 *
 * const params: SqlValue[] = ["orders", 7n, new Uint8Array([1, 2])];
 * ```
 */
export type SqlValue = string | bigint | Uint8Array | null;

/**
 * A statement the core runs many times: adapters prepare it once per
 * connection (by `name` or by text) and reuse it.
 *
 * @example Usage
 * ```ts
 * import type { SqlStatement } from "@persist/consensus";
 *
 * const statement: SqlStatement = {
 *   name: "example_head",
 *   text: "SELECT $1::int8 + 1",
 *   paramTypes: ["int8"],
 *   columnTypes: ["int8"],
 * };
 * ```
 */
export interface SqlStatement {
  /** A name unique to this text, usable as a server-side prepared statement name. */
  readonly name: string;
  /** The SQL text, with `$1`-style placeholders that carry explicit casts. */
  readonly text: string;
  /** The type of each parameter, in order; `query` takes one value per entry. */
  readonly paramTypes: readonly SqlType[];
  /** The type of each result column, in order; `query` returns each row's columns in these forms. */
  readonly columnTypes: readonly SqlType[];
}

/**
 * The rows a statement returned, each an array of column values converted
 * according to {@linkcode SqlStatement.columnTypes}, and the number of rows it
 * affected (inserted, deleted or returned).
 *
 * @example Usage
 * ```ts
 * import type { SqlResult } from "@persist/consensus";
 *
 * const result: SqlResult = { rows: [[1n]], rowCount: 1 };
 * ```
 */
export interface SqlResult {
  /** The returned rows, columns in statement order. */
  readonly rows: readonly (readonly SqlValue[])[];
  /** Rows inserted, updated or deleted for DML; rows returned otherwise. */
  readonly rowCount: number;
}

/**
 * The subset of the standard `AbortSignal` that executors may listen to.
 * A real `AbortSignal` fits it.
 *
 * @example Usage
 * ```ts
 * import type { AbortSignalLike } from "@persist/consensus";
 *
 * const signal: AbortSignalLike = new AbortController().signal;
 * ```
 */
export interface AbortSignalLike {
  /** Whether the operation was abandoned. */
  readonly aborted: boolean;
  /** Registers a listener that runs once when the operation is abandoned. */
  addEventListener(type: "abort", listener: () => void, options?: { once?: boolean }): void;
  /** Removes a listener registered with `addEventListener`. */
  removeEventListener(type: "abort", listener: () => void): void;
}

/**
 * Per-call options of {@linkcode SqlExecutor.query}.
 *
 * @example Usage
 * ```ts
 * import type { QueryOptions } from "@persist/consensus";
 *
 * const options: QueryOptions = { signal: AbortSignal.timeout(1000) };
 * ```
 */
export interface QueryOptions {
  /**
   * Aborted when the core has given up on the call (its timeout passed). The
   * executor should cancel the statement on the server if it can; the core
   * has already reported the operation as indeterminate.
   */
  readonly signal?: AbortSignalLike;
}

/**
 * The smallest interface the core needs from a SQL driver. Each adapter
 * (`fromPostgresJs`, ...) implements it in one small file.
 *
 * Contract:
 * - `query` runs one statement in its own implicit transaction (autocommit),
 *   binds `params` with the types of `statement.paramTypes`, and returns rows
 *   converted according to `statement.columnTypes`.
 * - `ddl` runs one schema statement; it returns nothing, and the core reads
 *   nothing from it (what open needs to know, it asks through `query`).
 * - Failures are thrown as {@linkcode SqlError}, carrying the SQLSTATE when
 *   the server sent one and `connectionLost` when the connection broke, so
 *   that the core classifies every driver's errors in one place.
 *
 * @example A logging wrapper around any executor
 * ```ts
 * import type { SqlExecutor } from "@persist/consensus";
 *
 * function logged(inner: SqlExecutor, log: (line: string) => void): SqlExecutor {
 *   return {
 *     query(statement, params, options) {
 *       log(statement.name);
 *       return inner.query(statement, params, options);
 *     },
 *     ddl: (text) => inner.ddl(text),
 *     close: () => inner.close(),
 *   };
 * }
 * ```
 */
export interface SqlExecutor {
  /**
   * Runs one prepared statement in autocommit mode.
   *
   * @param statement The statement to run.
   * @param params One value per `statement.paramTypes` entry.
   * @param options Cancellation.
   * @returns The converted rows and the affected-row count.
   * @throws {SqlError} When the statement failed.
   */
  query(
    statement: SqlStatement,
    params: readonly SqlValue[],
    options?: QueryOptions,
  ): Promise<SqlResult>;

  /**
   * Runs one schema statement (DDL or session setup) without parameters and
   * without preparing it.
   *
   * @param text One SQL statement.
   * @returns When the statement has run.
   * @throws {SqlError} When the statement failed.
   */
  ddl(text: string): Promise<void>;

  /** Releases what the executor owns (an adapter closes the client only when told it owns it). */
  close(): Promise<void>;

  /**
   * Optional: subscribes to a Postgres notification channel (LISTEN) on a
   * connection of its own, so that `watch` is woken by commits instead of
   * polling. Adapters whose driver cannot listen leave it out, and watchers
   * poll.
   *
   * Contract: `onNotify` receives each payload sent on `channel` while the
   * subscription is live, in the order the server delivered them. After the
   * listening connection broke and was re-established, `onReconnect` is
   * called: notifications sent in between are lost, and the caller must
   * re-read what it watches. The promise resolves once the first LISTEN is
   * in effect (a notification committed after that is delivered).
   *
   * @param channel The channel name, a plain identifier of at most 63 bytes.
   * @param onNotify Called with each payload.
   * @param options What to call after a reconnect.
   * @returns The subscription; `close()` stops it (UNLISTEN and release).
   * @throws {SqlError} When the first LISTEN failed.
   */
  listen?(
    channel: string,
    onNotify: (payload: string) => void,
    options?: ListenOptions,
  ): Promise<SqlSubscription>;

  /**
   * Where the executor connects, for messages, without a password
   * (`postgres://app@127.0.0.1:5432/app`). Optional: errors then name no
   * server.
   */
  readonly target?: string;
}

/**
 * Options for {@linkcode SqlExecutor.listen}.
 *
 * @example Usage
 * ```ts
 * import type { ListenOptions } from "@persist/consensus";
 *
 * const options: ListenOptions = { onReconnect: () => console.log("re-read") };
 * ```
 */
export interface ListenOptions {
  /** Called after the listening connection was lost and LISTEN is in effect again. */
  readonly onReconnect?: () => void;
}

/**
 * A live LISTEN subscription from {@linkcode SqlExecutor.listen}.
 *
 * @example Usage
 * ```ts
 * import type { SqlSubscription } from "@persist/consensus";
 *
 * const none: SqlSubscription = { close: () => Promise.resolve() };
 * await none.close();
 * ```
 */
export interface SqlSubscription {
  /** Stops delivery and releases the connection; idempotent. */
  close(): Promise<void>;
}

/**
 * Options for {@linkcode SqlError}.
 */
export interface SqlErrorOptions {
  /** The five-character SQLSTATE, when the server sent an error response. */
  code?: string;
  /** `true` when the connection broke (or never opened) during the call. */
  connectionLost?: boolean;
  /** The driver's own error. */
  cause?: unknown;
}

/**
 * The normalised error an executor throws. Adapters translate each driver's
 * error shapes into it; the core then decides from `code` and
 * `connectionLost` alone whether a failure is retryable, determinate or not.
 *
 * @example Usage
 * ```ts
 * import { SqlError } from "@persist/consensus";
 *
 * const error = new SqlError("could not serialize access", { code: "40001" });
 * if (error.code !== "40001") throw new Error("unexpected");
 * ```
 */
export class SqlError extends Error {
  /** The SQLSTATE, when the server sent one. */
  readonly code: string | undefined;
  /** Whether the connection broke during the call. */
  readonly connectionLost: boolean;

  /**
   * Creates an error.
   *
   * @param message The driver's message.
   * @param options SQLSTATE, connection state and cause.
   */
  constructor(message: string, options: SqlErrorOptions = {}) {
    super(message, { cause: options.cause });
    this.name = "SqlError";
    this.code = options.code;
    this.connectionLost = options.connectionLost ?? false;
  }
}
