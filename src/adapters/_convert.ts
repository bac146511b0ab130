// Conversions and error-shape helpers shared by the driver adapters: each
// driver returns int8 and bytea in its own form (string, number, bigint;
// Buffer or Uint8Array), and the core wants exactly `bigint` and a plain
// `Uint8Array`.
import {
  type AbortSignalLike,
  type ListenOptions,
  SqlError,
  type SqlStatement,
  type SqlSubscription,
  type SqlValue,
} from "../executor.ts";

/** A five-character SQLSTATE, as servers send in an error response. */
export const SQLSTATE: RegExp = /^[0-9A-Z]{5}$/;

/**
 * Socket-level error codes (Node's `net`, also raised by Deno's and Bun's
 * Node compatibility) that mean the connection broke or never opened.
 */
export const SOCKET_CODES: ReadonlySet<string> = new Set([
  "ECONNREFUSED",
  "ECONNRESET",
  "ECONNABORTED",
  "EPIPE",
  "ETIMEDOUT",
  "ENOTFOUND",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "EAI_AGAIN",
]);

/** The message of any thrown value. */
export function messageOf(error: unknown): string {
  const message = (error as { message?: unknown } | null)?.message;
  return typeof message === "string" && message !== "" ? message : String(error);
}

function toBigInt(value: unknown): bigint | null {
  if (value === null || value === undefined) return null;
  if (typeof value === "bigint") return value;
  if (typeof value === "number" && !Number.isSafeInteger(value)) {
    // A driver that parsed int8 into a double has already lost digits.
    throw new RangeError(`Cannot read int8 column: ${value} is not exact as a number`);
  }
  return BigInt(value as string | number);
}

function toBytes(value: unknown): Uint8Array | null {
  if (value === null || value === undefined) return null;
  const bytes = value as Uint8Array;
  // Buffer (node-postgres, Bun) is a Uint8Array subclass: hand out a plain
  // view of the same memory, as the contract asks.
  return bytes.constructor === Uint8Array
    ? bytes
    : new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/**
 * Converts array rows, in place, to the forms `statement.columnTypes` names,
 * with the given converters. Every driver hands over fresh row arrays that
 * nothing else references, so no second array per row is allocated (a scan
 * of 1,000 versions converts 1,000 rows).
 */
export function convertRowsWith(
  rows: ArrayLike<ArrayLike<unknown>>,
  statement: SqlStatement,
  int8: (value: unknown) => bigint | null,
  bytea: (value: unknown) => Uint8Array | null,
): SqlValue[][] {
  const columns = statement.columnTypes;
  for (let c = 0; c < columns.length; c++) {
    const type = columns[c];
    if (type === "text") continue;
    const convert = type === "int8" ? int8 : bytea;
    for (let i = 0; i < rows.length; i++) {
      const row = rows[i] as unknown[];
      row[c] = convert(row[c]);
    }
  }
  return rows as unknown as SqlValue[][];
}

/** Converts array rows in place with the usual int8 and bytea forms. */
export function convertRows(
  rows: ArrayLike<ArrayLike<unknown>>,
  statement: SqlStatement,
): SqlValue[][] {
  return convertRowsWith(rows, statement, toBigInt, toBytes);
}

/** The error for a call the core abandoned before the adapter could start it. */
export function abandoned(): SqlError {
  return new SqlError("Cannot run the statement: the call was abandoned");
}

/**
 * Runs `cancel` once when `signal` aborts; returns the function that
 * detaches it. A cancel request travels on a connection of its own, and when
 * that fails its promise rejects with nobody else to handle it, so a
 * returned promise's rejection is swallowed here.
 */
export function onAbort(signal: AbortSignalLike | undefined, cancel: () => unknown): () => void {
  if (signal === undefined) return () => {};
  const listener = () => {
    const sent = cancel() as PromiseLike<unknown> | undefined;
    if (sent && typeof sent.then === "function") sent.then(undefined, () => {});
  };
  signal.addEventListener("abort", listener, { once: true });
  return () => signal.removeEventListener("abort", listener);
}

/**
 * The `target` of an executor, from a driver's parsed connection options:
 * `postgres://user@host:port/database`, never the password.
 */
export function describeTarget(options: unknown): string | undefined {
  if (typeof options !== "object" || options === null) return undefined;
  const fields = options as Record<string, unknown>;
  const { port, user, username, database, connectionString } = fields;
  const host = fields.host ?? fields.hostname;
  if (host === undefined && typeof connectionString === "string") {
    // The URL without its password (up to the last "@" of the authority)
    // and without its query, where other secrets may sit.
    const match = /^([a-z][a-z0-9+.-]*:\/\/)(?:([^:@/?#]*)(?::[^/?#]*)?@)?([^?#]*)/i.exec(
      connectionString,
    );
    if (match === null) return undefined;
    return `${match[1]}${match[2] === undefined ? "" : `${match[2]}@`}${match[3]}`;
  }
  const hosts = Array.isArray(host) ? host : host === undefined ? [] : [host];
  const ports = Array.isArray(port) ? port : port === undefined ? [] : [port];
  if (hosts.length === 0) return undefined;
  const where = hosts.map((h, i) => {
    const name = String(h);
    const shown = name.includes(":") && !name.startsWith("/") ? `[${name}]` : name;
    const p = ports[i] ?? ports[0];
    return p === undefined ? shown : `${shown}:${p}`;
  }).join(",");
  const who = user ?? username;
  const db = database === undefined ? "" : `/${String(database)}`;
  return `postgres://${who === undefined ? "" : `${String(who)}@`}${where}${db}`;
}

/** A driver's `listen(channel, onNotify, onlisten)`, as porsager and Bun.SQL have it. */
export type OnlistenListen = (
  channel: string,
  onNotify: (payload: string) => void,
  onlisten?: () => void,
) => Promise<{ unlisten(): Promise<unknown> }>;

/**
 * An executor's `listen` over a driver whose own `listen` keeps a listening
 * connection, re-LISTENs after it broke, and runs `onlisten` each time
 * LISTEN is in effect (porsager, Bun.SQL): every `onlisten` after the first
 * is a reconnect. Callbacks after `close()` are dropped, whatever the driver
 * still delivers.
 */
export async function listenWithOnlisten(
  listen: OnlistenListen,
  normalise: (error: unknown) => SqlError,
  channel: string,
  onNotify: (payload: string) => void,
  options: ListenOptions | undefined,
): Promise<SqlSubscription> {
  let closed = false;
  let first = true;
  let subscription: { unlisten(): Promise<unknown> };
  try {
    subscription = await listen(channel, (payload) => {
      if (!closed) onNotify(String(payload));
    }, () => {
      if (first) first = false;
      else if (!closed) options?.onReconnect?.();
    });
  } catch (error) {
    throw normalise(error);
  }
  return {
    async close() {
      if (closed) return;
      closed = true;
      await subscription.unlisten().catch(() => {});
    },
  };
}
