/**
 * Adapter for deno-postgres (`jsr:@db/postgres` 0.19), denodrivers' driver
 * for Deno.
 *
 * ## Over TCP, turn on TCP_NODELAY and coalescing (or use a Unix socket)
 *
 * deno-postgres 0.19 writes each message of the extended query protocol
 * (Parse, Bind, Describe, Execute, Sync) as its own socket write, and Deno
 * leaves Nagle's algorithm on for `Deno.connect`. Over TCP on Linux every
 * parameterised statement therefore waits for the server's delayed ACK
 * (tens of milliseconds per statement; measured in BENCHMARKS.md,
 * "deno-postgres over TCP"). The driver offers no hook into its
 * sockets, so this package ships the fix in the Deno runtime entry:
 * `enableTcpNoDelay()` from `@persist/consensus/deno` makes `Deno.connect`
 * set TCP_NODELAY on the TCP connections it opens (to the hostnames and
 * ports given, or all), as Go and Node's HTTP client do by default. With
 * `coalesce: true` it also sends each statement's messages as one write and
 * reads replies ahead, which saves client CPU. Call it once, before the pool connects. A server on
 * the same host can instead be reached over its Unix socket
 * (`host_type: "socket"`), which needs no fix for the delayed ACK. This
 * adapter stays runtime-neutral and does neither by itself.
 *
 * ## Other driver traits the adapter accounts for
 * - Server errors carry the SQLSTATE in `error.fields.code`; FATAL ones and
 *   socket errors (`Deno.errors.*`, the driver's `ConnectionError`) mean the
 *   connection broke, and the adapter ends that client before it goes back
 *   to the pool, so that the pool reconnects it instead of handing out a
 *   dead session.
 * - `Pool.connect()` has no timeout: when the store gives up waiting, a
 *   connection that arrives later is released at once, not leaked.
 * - The driver cannot cancel a running statement: one the store gave up on
 *   runs to completion before its connection returns to the pool. Bound it
 *   on the server with `statement_timeout` in the pool's connection
 *   `options`.
 * - deno-postgres 0.19.5 cannot always revive a client whose connection the
 *   server closed (a terminated backend, a server restart): when a write
 *   already failed, ending the client fails too and leaves it marked
 *   connected. The adapter then keeps that client out of the pool instead
 *   of handing it to the next statement, so the pool shrinks by one; after a
 *   server restart, recreate the `Pool`. Likewise a lazy pool whose
 *   connection attempt fails loses that slot for good.
 * - Statements go through the unnamed prepared statement (the driver caches
 *   none); int8 is bound as the exact decimal of a `bigint`, bytea as binary.
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
import { convertRowsWith } from "./_convert.ts";

/**
 * The subset of deno-postgres' `Pool` the adapter uses, written here so
 * that importing this module never loads the driver.
 *
 * @example A function that accepts any deno-postgres pool
 * ```ts
 * import type { DenoPostgresPool } from "@persist/consensus/deno-postgres";
 *
 * async function ping(pool: DenoPostgresPool): Promise<void> {
 *   const client = await pool.connect();
 *   try {
 *     await client.queryArray("SELECT 1");
 *   } finally {
 *     client.release();
 *   }
 * }
 * ```
 */
export interface DenoPostgresPool {
  /** Takes a client from the pool, connecting it if needed; waits while none is free. */
  connect(): Promise<DenoPostgresPoolClient>;
  /** Closes the pool's connections. */
  end(): Promise<void>;
}

/**
 * The subset of deno-postgres' `PoolClient` the adapter uses.
 *
 * @example Run one parameterised query
 * ```ts
 * import type { DenoPostgresPoolClient } from "@persist/consensus/deno-postgres";
 *
 * async function next(client: DenoPostgresPoolClient, seqno: bigint): Promise<unknown> {
 *   const { rows } = await client.queryArray({ text: "SELECT $1::int8 + 1", args: [seqno] });
 *   return rows[0][0];
 * }
 * ```
 */
export interface DenoPostgresPoolClient {
  /** Runs a query, rows as arrays; with `args` through the extended protocol. */
  queryArray(query: { text: string; args?: unknown[] }): Promise<DenoPostgresQueryArrayResult>;
  /** Runs a query without parameters through the simple protocol. */
  queryArray(text: string): Promise<DenoPostgresQueryArrayResult>;
  /** Returns the client to its pool. */
  release(): void;
  /** Closes the client's connection; the pool reconnects it on its next use. */
  end(): Promise<void>;
}

/**
 * The subset of deno-postgres' `QueryArrayResult` the adapter uses.
 *
 * @example Usage
 * ```ts
 * import type { DenoPostgresQueryArrayResult } from "@persist/consensus/deno-postgres";
 *
 * const result: DenoPostgresQueryArrayResult = { rows: [[1n]], rowCount: 1 };
 * ```
 */
export interface DenoPostgresQueryArrayResult {
  /** The rows, columns in statement order. */
  readonly rows: unknown[][];
  /** Rows affected (DML) or returned, from the command tag. */
  readonly rowCount?: number;
}

/**
 * Options for {@linkcode fromDenoPostgres}.
 *
 * @example Usage
 * ```ts
 * import type { FromDenoPostgresOptions } from "@persist/consensus/deno-postgres";
 *
 * const options: FromDenoPostgresOptions = { owned: true };
 * ```
 */
export interface FromDenoPostgresOptions {
  /**
   * Whether closing the executor (and so the store) ends the pool. Leave it
   * `false` when the pool is shared.
   *
   * @default {false}
   */
  owned?: boolean;
}

// Error names (Deno.errors.* and the driver's own) that mean the socket broke
// or never opened, as opposed to an error response from the server.
const CONNECTION_ERRORS = new Set([
  "ConnectionError",
  "ConnectionRefused",
  "ConnectionReset",
  "ConnectionAborted",
  "NotConnected",
  "BrokenPipe",
  "UnexpectedEof",
  "TimedOut",
  "BadResource",
  "Interrupted",
  "AddrNotAvailable",
  "NotFound",
]);

const SQLSTATE = /^[0-9A-Z]{5}$/;
const BYTEA_HEX = /^\\x(?:[0-9a-fA-F]{2})*$/;

function normalise(error: unknown): SqlError {
  if (error instanceof SqlError) return error;
  const { name, fields, message } = error as {
    name?: unknown;
    fields?: { code?: unknown; severity?: unknown };
    message?: unknown;
  };
  const text = typeof message === "string" ? message : String(error);
  const code = fields?.code;
  if (typeof code === "string" && SQLSTATE.test(code)) {
    // A FATAL error response ends the session (an administrator terminated
    // the backend, the server is shutting down): the connection is gone too.
    // The driver reads the localised severity, so the SQLSTATE classes that
    // come with FATAL (08 connection, 57P0x shutdown) count as well.
    const fatal = fields?.severity === "FATAL" || fields?.severity === "PANIC" ||
      code.startsWith("08") || code.startsWith("57P0");
    return new SqlError(text, { code, connectionLost: fatal, cause: error });
  }
  if (typeof name === "string" && CONNECTION_ERRORS.has(name)) {
    return new SqlError(text, { connectionLost: true, cause: error });
  }
  return new SqlError(text, { cause: error });
}

function toBigInt(value: unknown): bigint | null {
  if (value === null) return null;
  if (typeof value === "bigint") return value;
  // The "string" decode strategy hands int8 over as its decimal text.
  if (typeof value === "string") return BigInt(value);
  if (typeof value === "number" && Number.isSafeInteger(value)) return BigInt(value);
  throw new SqlError(
    `Cannot read an int8 column: the driver decoded it as ${typeof value} ${
      String(value)
    }, which may be inexact; remove the custom int8 decoder`,
  );
}

function toBytes(value: unknown): Uint8Array | null {
  if (value === null) return null;
  if (value instanceof Uint8Array) {
    return value.constructor === Uint8Array
      ? value
      : new Uint8Array(value.buffer, value.byteOffset, value.byteLength);
  }
  // The "string" decode strategy hands bytea over in Postgres' hex form.
  if (typeof value === "string" && BYTEA_HEX.test(value)) {
    const bytes = new Uint8Array((value.length - 2) / 2);
    for (let i = 0; i < bytes.length; i++) {
      bytes[i] = Number.parseInt(value.slice(2 + 2 * i, 4 + 2 * i), 16);
    }
    return bytes;
  }
  throw new SqlError(
    `Cannot read a bytea column: the driver decoded it as ${typeof value}; ` +
      `remove the custom bytea decoder`,
  );
}

function convertRows(rows: readonly unknown[][], statement: SqlStatement): SqlValue[][] {
  return convertRowsWith(rows, statement, toBigInt, toBytes);
}

// Takes a client from the pool, or rejects once `signal` is aborted. The
// driver's wait has no timeout and cannot be withdrawn, so a client that
// arrives after the abort is handed straight back.
function acquire(
  pool: DenoPostgresPool,
  signal: QueryOptions["signal"],
): Promise<DenoPostgresPoolClient> {
  if (signal === undefined) return pool.connect();
  if (signal.aborted) {
    return Promise.reject(
      new SqlError("Cannot acquire a connection: the operation was abandoned"),
    );
  }
  return new Promise((resolve, reject) => {
    let abandoned = false;
    const abandon = () => {
      abandoned = true;
      reject(new SqlError("Cannot acquire a connection: the operation was abandoned"));
    };
    signal.addEventListener("abort", abandon, { once: true });
    pool.connect().then(
      (client) => {
        signal.removeEventListener("abort", abandon);
        if (abandoned) client.release();
        else resolve(client);
      },
      (error) => {
        signal.removeEventListener("abort", abandon);
        reject(error);
      },
    );
  });
}

async function withClient<T>(
  pool: DenoPostgresPool,
  signal: QueryOptions["signal"],
  run: (client: DenoPostgresPoolClient) => Promise<T>,
): Promise<T> {
  let client: DenoPostgresPoolClient;
  try {
    client = await acquire(pool, signal);
  } catch (error) {
    throw normalise(error);
  }
  let dead = false;
  try {
    return await run(client);
  } catch (error) {
    const normalised = normalise(error);
    if (normalised.connectionLost) {
      // A client whose socket broke may still count as connected; ending it
      // makes the pool open a fresh connection on its next use. When even
      // that fails (0.19.5 writes Terminate to the dead socket and throws
      // before marking the client closed), the client would fail every
      // statement from then on, so it is kept out of the pool.
      try {
        await client.end();
      } catch {
        dead = true;
      }
    }
    throw normalised;
  } finally {
    if (!dead) client.release();
  }
}

/**
 * Wraps a deno-postgres `Pool` as a {@linkcode SqlExecutor}. Each statement
 * takes a client from the pool and releases it when done, also when the
 * store gave up on it. int8 parameters are bound as exact decimals of
 * bigints; results are converted to `bigint` and `Uint8Array`.
 *
 * Over TCP, call `enableTcpNoDelay({ coalesce: true })` from
 * `@persist/consensus/deno` before the pool connects (or use a Unix
 * socket): without TCP_NODELAY every statement waits about 40 ms for a
 * delayed ACK, and coalescing saves client CPU (see the module
 * documentation).
 *
 * @param pool The caller's deno-postgres `Pool`.
 * @param options Whether the executor owns (and so ends) the pool.
 * @returns The executor.
 * @throws {SqlError} From the executor's methods, never from this function.
 *
 * @example Usage
 * ```ts ignore
 * import { Pool } from "jsr:@db/postgres@^0.19.5";
 * import { PostgresConsensus } from "@persist/consensus";
 * import { enableTcpNoDelay } from "@persist/consensus/deno";
 * import { fromDenoPostgres } from "@persist/consensus/deno-postgres";
 *
 * const url = new URL(Deno.env.get("DATABASE_URL")!);
 * // Before the pool opens TCP connections; only the database's are tuned.
 * enableTcpNoDelay({ hostnames: [url.hostname], ports: [Number(url.port || 5432)], coalesce: true });
 * const pool = new Pool(url.href, 10, true);
 * await using store = await PostgresConsensus.open(fromDenoPostgres(pool, { owned: true }));
 * console.log(await store.head("orders"));
 * ```
 */
export function fromDenoPostgres(
  pool: DenoPostgresPool,
  options: FromDenoPostgresOptions = {},
): SqlExecutor {
  const owned = options.owned ?? false;
  let ended = false;
  return {
    query(
      statement: SqlStatement,
      params: readonly SqlValue[],
      queryOptions?: QueryOptions,
    ): Promise<SqlResult> {
      return withClient(pool, queryOptions?.signal, async (client) => {
        // Without arguments the driver uses the simple protocol, whose
        // results are text; columns are converted the same way either way.
        const result = params.length === 0
          ? await client.queryArray(statement.text)
          : await client.queryArray({ text: statement.text, args: params as unknown[] });
        const rows = statement.columnTypes.length === 0 ? [] : convertRows(result.rows, statement);
        return { rows, rowCount: result.rowCount ?? result.rows.length };
      });
    },
    ddl(text: string): Promise<void> {
      return withClient(pool, undefined, async (client) => {
        await client.queryArray(text);
      });
    },
    async close(): Promise<void> {
      if (!owned || ended) return;
      ended = true;
      try {
        await pool.end();
      } catch (error) {
        throw normalise(error);
      }
    },
  };
}
