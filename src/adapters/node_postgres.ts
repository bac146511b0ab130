/**
 * Adapter for node-postgres (`npm:pg`), on Deno, Bun and Node.
 *
 * @module
 */
import {
  type ListenOptions,
  type QueryOptions,
  SqlError,
  type SqlExecutor,
  type SqlResult,
  type SqlStatement,
  type SqlSubscription,
  type SqlValue,
} from "../executor.ts";
import { host } from "../_runtime.ts";
import {
  abandoned,
  convertRows,
  describeTarget,
  messageOf,
  SOCKET_CODES,
  SQLSTATE,
} from "./_convert.ts";

/**
 * The subset of node-postgres' `Pool` the adapter uses, written here so that
 * importing this module never loads the driver. A `pg.Pool` fits it.
 *
 * @example Usage
 * ```ts
 * import type { NodePostgresPool } from "@persist/consensus/node-postgres";
 *
 * // A pool that refuses every checkout, as a stand-in in a unit test.
 * const closed: NodePostgresPool = {
 *   connect: () => Promise.reject(new Error("pool is closed")),
 *   query: () => Promise.reject(new Error("pool is closed")),
 *   end: () => Promise.resolve(),
 * };
 * ```
 */
export interface NodePostgresPool {
  /** Checks a client out of the pool, connecting one when none is idle. */
  connect(): Promise<NodePostgresClient>;
  /**
   * Runs one query on any pooled client: cancels a statement when the pool
   * has no `Client` constructor (and then waits for a free client).
   */
  query(text: string, values?: unknown[]): Promise<unknown>;
  /** Closes every client and the pool. */
  end(): Promise<void>;
  /** The pool's connection options; host, port, user and database name the target in errors. */
  readonly options?: object;
  /**
   * The constructor of the pool's clients (`pg.Pool` sets it): a cancel runs
   * on a client of its own, made from `options`, outside the pool.
   */
  readonly Client?: new (options?: object) => NodePostgresControlClient;
}

/**
 * The subset of node-postgres' `Client` a cancel uses: one connection of its
 * own, outside the pool, so that a cancel never waits for a pooled client
 * (with a full pool, the one running the statement it cancels).
 *
 * @example Usage
 * ```ts
 * import type { NodePostgresControlClient } from "@persist/consensus/node-postgres";
 *
 * const client: NodePostgresControlClient = {
 *   connect: () => Promise.resolve(),
 *   query: () => Promise.resolve({ rows: [[true]], rowCount: 1 }),
 *   end: () => Promise.resolve(),
 * };
 * ```
 */
export interface NodePostgresControlClient {
  /** Opens the connection. */
  connect(): Promise<unknown>;
  /** Runs one query. */
  query(text: string, values?: unknown[]): Promise<unknown>;
  /** Closes the connection. */
  end(): Promise<unknown>;
  /** Adds an event listener; an `"error"` one keeps a late socket error from going unhandled. */
  on?(event: "error", listener: (error: unknown) => void): unknown;
}

/** The subset of node-postgres' `PoolClient` the adapter uses. *
 * @example Usage
 * ```ts
 * import type { NodePostgresClient } from "@persist/consensus/node-postgres";
 *
 * const client: NodePostgresClient = {
 *   query: () => Promise.resolve({ rows: [["1"]], rowCount: 1 }),
 *   release: () => {},
 * };
 * ```
 */
export interface NodePostgresClient {
  /** Runs one query; with `name`, prepared once per connection and reused. */
  query(config: {
    name?: string;
    text: string;
    values?: unknown[];
    rowMode: "array";
  }): Promise<NodePostgresResult>;
  /** Returns the client to the pool; `true` destroys it instead. */
  release(destroy?: boolean): void;
  /** The server process id of the connection (set once connected). */
  readonly processID?: number | null;
  /**
   * Adds an event listener (pg's client is an EventEmitter): `"notification"`
   * receives `{ channel, payload }`, `"error"` and `"end"` a broken
   * connection. Optional: without it the executor cannot listen.
   */
  on?(event: "notification" | "error" | "end", listener: (event: unknown) => void): unknown;
  /** Removes a listener added with `on`. */
  removeListener?(
    event: "notification" | "error" | "end",
    listener: (event: unknown) => void,
  ): unknown;
}

/** The subset of node-postgres' query result the adapter uses. *
 * @example Usage
 * ```ts
 * import type { NodePostgresResult } from "@persist/consensus/node-postgres";
 *
 * const result: NodePostgresResult = { rows: [["7", new Uint8Array([1])]], rowCount: 1 };
 * ```
 */
export interface NodePostgresResult {
  /** The rows, as arrays (`rowMode: "array"`). */
  readonly rows: ArrayLike<ArrayLike<unknown>>;
  /** Rows affected (DML) or returned; `null` for statements with no count. */
  readonly rowCount: number | null;
}

/**
 * Options for {@linkcode fromNodePostgres}.
 *
 * @example Usage
 * ```ts
 * import type { FromNodePostgresOptions } from "@persist/consensus/node-postgres";
 *
 * const options: FromNodePostgresOptions = { owned: true };
 * ```
 */
export interface FromNodePostgresOptions {
  /**
   * Whether closing the executor (and so the store) ends the pool. Leave it
   * `false` when the pool is shared.
   *
   * @default {false}
   */
  owned?: boolean;
}

// An error response from the server: pg's DatabaseError carries the
// SQLSTATE in `code` and a `severity`; Node's socket errors carry an
// errno-style `code` and no severity.
function serverError(error: unknown): { code: string; fatal: boolean } | undefined {
  const { code, severity } = (error ?? {}) as { code?: unknown; severity?: unknown };
  if (typeof severity !== "string" || typeof code !== "string" || !SQLSTATE.test(code)) {
    return undefined;
  }
  return { code, fatal: severity === "FATAL" || severity === "PANIC" };
}

function normalise(error: unknown): SqlError {
  if (error instanceof SqlError) return error;
  const server = serverError(error);
  if (server) return new SqlError(messageOf(error), { code: server.code, cause: error });
  const code = (error as { code?: unknown } | null)?.code;
  // Besides socket errors, pg reports a connection that ended under a query
  // as a plain Error ("Connection terminated unexpectedly"), and a client
  // that cannot run queries any more as "not queryable".
  const lost = (typeof code === "string" && SOCKET_CODES.has(code)) ||
    /connection terminated|not queryable|connection error|timeout/i.test(messageOf(error));
  return new SqlError(messageOf(error), { connectionLost: lost, cause: error });
}

/**
 * Wraps a node-postgres `Pool` as a {@linkcode SqlExecutor}. Each call checks
 * a client out, runs the statement prepared by name (once per connection),
 * and releases the client in `finally`, destroying it when the connection
 * broke. int8 comes back as a string and is converted to `bigint`; bytea
 * comes back as a `Buffer` and is handed out as a plain `Uint8Array` view;
 * parameters are passed as `bigint` and `Uint8Array`, which pg serialises
 * exactly.
 *
 * Cancellation: pg has no per-query cancel, so when the core gives up on a
 * call (its timeout) the adapter asks the server to cancel the statement
 * with `pg_cancel_backend` on a connection of its own, outside the pool
 * (a `pool.Client` made from `pool.options`: same role, connected, used
 * once, ended; given up after 5 seconds), and destroys the statement's
 * client instead of returning it to the pool, so that a late cancel can
 * never hit a later statement. A pool without a `Client` constructor gets
 * the cancel through `pool.query`, which waits for a free client: with a
 * full pool, until the statement it cancels ends. Waiting for a pooled
 * client is bounded by the core's timeout; set the pool's
 * `connectionTimeoutMillis` to give the checkout itself a bound.
 *
 * @param pool The caller's `pg.Pool`.
 * @param options Whether the executor owns (and so ends) the pool.
 * @returns The executor.
 *
 * @example Usage
 * ```ts ignore
 * import pg from "pg";
 * import { PostgresConsensus } from "@persist/consensus";
 * import { fromNodePostgres } from "@persist/consensus/node-postgres";
 *
 * const pool = new pg.Pool({ connectionString: Deno.env.get("DATABASE_URL"), max: 10 });
 * await using store = await PostgresConsensus.open(fromNodePostgres(pool, { owned: true }));
 * console.log(await store.head("orders"));
 * ```
 */
export function fromNodePostgres(
  pool: NodePostgresPool,
  options: FromNodePostgresOptions = {},
): SqlExecutor {
  const owned = options.owned ?? false;
  // Cancels still under way; close() waits for them (each bounded).
  const cancelling = new Set<Promise<void>>();
  const cancelBackend = (pid: number) => {
    const done = cancelOnOwnClient(pool, pid).finally(() => cancelling.delete(done));
    cancelling.add(done);
  };
  return {
    target: describeTarget(pool.options),
    async query(
      statement: SqlStatement,
      params: readonly SqlValue[],
      queryOptions?: QueryOptions,
    ): Promise<SqlResult> {
      const signal = queryOptions?.signal;
      let client: NodePostgresClient;
      try {
        client = await pool.connect();
      } catch (error) {
        throw normalise(error);
      }
      let destroy = false;
      const cancel = () => {
        destroy = true;
        const pid = client.processID;
        if (typeof pid === "number") cancelBackend(pid);
      };
      if (signal?.aborted) {
        client.release();
        throw abandoned();
      }
      signal?.addEventListener("abort", cancel, { once: true });
      try {
        const result = await client.query({
          name: statement.name,
          text: statement.text,
          values: params as unknown[],
          rowMode: "array",
        });
        const rows = statement.columnTypes.length === 0 ? [] : convertRows(result.rows, statement);
        return { rows, rowCount: result.rowCount ?? result.rows.length };
      } catch (error) {
        const server = serverError(error);
        if (!server || server.fatal) destroy = true;
        throw normalise(error);
      } finally {
        signal?.removeEventListener("abort", cancel);
        client.release(destroy);
      }
    },
    async ddl(text: string): Promise<void> {
      let client: NodePostgresClient;
      try {
        client = await pool.connect();
      } catch (error) {
        throw normalise(error);
      }
      let destroy = false;
      try {
        await client.query({ text, rowMode: "array" });
      } catch (error) {
        const server = serverError(error);
        if (!server || server.fatal) destroy = true;
        throw normalise(error);
      } finally {
        client.release(destroy);
      }
    },
    listen(channel, onNotify, listenOptions) {
      return listenOn(pool, channel, onNotify, listenOptions);
    },
    async close(): Promise<void> {
      await Promise.all(cancelling);
      if (owned) await pool.end();
    },
  };
}

const CANCEL_TIMEOUT_MS = 5_000;

// `pg_cancel_backend` on a client made for it alone (kysely does the same:
// a pooled fallback "might have to wait for an idle connection"). A cancel
// is best effort: when it fails or takes longer than CANCEL_TIMEOUT_MS the
// statement runs on, and the core has already reported the call as one that
// may have taken effect. Never rejects.
async function cancelOnOwnClient(pool: NodePostgresPool, pid: number): Promise<void> {
  const Client = pool.Client;
  if (Client === undefined) {
    // Not awaited: with a full pool it waits as long as the statement runs.
    pool.query("SELECT pg_cancel_backend($1::int4)", [pid]).catch(() => {});
    return;
  }
  let client: NodePostgresControlClient;
  try {
    client = new Client(pool.options);
  } catch {
    return;
  }
  client.on?.("error", () => {});
  let finished = false;
  const work = (async () => {
    try {
      await client.connect();
      await client.query("SELECT pg_cancel_backend($1::int4)", [pid]);
    } catch {
      // Best effort (above).
    }
    await client.end().catch(() => {});
    finished = true;
  })();
  let timer: unknown;
  const expired = new Promise<void>((resolve) => {
    timer = host.setTimeout(resolve, CANCEL_TIMEOUT_MS);
  });
  await Promise.race([work, expired]);
  host.clearTimeout(timer);
  // Past the bound: ending stops a connect or query still under way.
  if (!finished) client.end().catch(() => {});
}

const RECONNECT_BASE_MS = 100;
const RECONNECT_CAP_MS = 5_000;

// LISTEN on a client of the pool's own, held for as long as the
// subscription lives (it counts against the pool's max). When its
// connection breaks, the client is destroyed and another one LISTENs in its
// place, after a jittered exponential backoff (100 ms doubling up to 5 s)
// for as long as that fails; once LISTEN is in effect again `onReconnect`
// runs, since notifications sent in between were lost. close() UNLISTENs
// and returns the client to the pool (or destroys it when that fails).
async function listenOn(
  pool: NodePostgresPool,
  channel: string,
  onNotify: (payload: string) => void,
  options: ListenOptions | undefined,
): Promise<SqlSubscription> {
  // The listening client is one of the pool's, held for as long as anyone
  // watches: with a pool of one it would starve every statement.
  const max = (pool.options as { max?: unknown } | undefined)?.max;
  if (typeof max === "number" && max < 2) {
    throw new SqlError(`Cannot listen: the pool's max is ${max}, and LISTEN holds one client`);
  }
  const quoted = `"${channel.replaceAll('"', '""')}"`;
  let closed = false;
  // The client LISTENing now, with the listener that reacts to its loss.
  let current: { client: NodePostgresClient; broken: () => void } | undefined;
  let timer: unknown;
  let failures = 0;
  const notified = (event: unknown) => {
    const { channel: from, payload } = (event ?? {}) as { channel?: unknown; payload?: unknown };
    if (!closed && from === channel) onNotify(typeof payload === "string" ? payload : "");
  };
  const detach = (client: NodePostgresClient, broken: () => void) => {
    client.removeListener?.("notification", notified);
    client.removeListener?.("error", broken);
    client.removeListener?.("end", broken);
  };
  const connect = async (): Promise<void> => {
    let client: NodePostgresClient;
    try {
      client = await pool.connect();
    } catch (error) {
      throw normalise(error);
    }
    if (typeof client.on !== "function") {
      client.release();
      throw new SqlError("Cannot listen: the pool's clients emit no events (no on())");
    }
    const broken = () => {
      if (current?.client !== client) return;
      current = undefined;
      detach(client, broken);
      client.release(true);
      if (!closed) retry();
    };
    // An "error" event with no listener would crash the process.
    client.on("error", broken);
    client.on("end", broken);
    client.on("notification", notified);
    try {
      await client.query({ text: `LISTEN ${quoted}`, rowMode: "array" });
    } catch (error) {
      detach(client, broken);
      client.release(true);
      throw normalise(error);
    }
    current = { client, broken };
  };
  const retry = () => {
    const delay = Math.random() * Math.min(RECONNECT_CAP_MS, RECONNECT_BASE_MS * 2 ** failures);
    timer = host.setTimeout(async () => {
      timer = undefined;
      if (closed) return;
      try {
        await connect();
        failures = 0;
        if (closed) await unlisten();
        else options?.onReconnect?.();
      } catch {
        failures = Math.min(failures + 1, 16);
        if (!closed) retry();
      }
    }, delay);
  };
  const unlisten = async () => {
    const held = current;
    current = undefined;
    if (held === undefined) return;
    try {
      await held.client.query({ text: `UNLISTEN ${quoted}`, rowMode: "array" });
      detach(held.client, held.broken);
      held.client.release();
    } catch {
      detach(held.client, held.broken);
      held.client.release(true);
    }
  };
  await connect();
  return {
    async close() {
      if (closed) return;
      closed = true;
      if (timer !== undefined) host.clearTimeout(timer);
      timer = undefined;
      await unlisten();
    },
  };
}
