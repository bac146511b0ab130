// Conversions and error-shape helpers shared by the driver adapters: each
// driver returns int8 and bytea in its own form (string, number, bigint;
// Buffer or Uint8Array), and the core wants exactly `bigint` and a plain
// `Uint8Array`.
import type { SqlStatement, SqlValue } from "../executor.ts";

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
 * Converts array rows to the JavaScript forms `statement.columns` names.
 */
export function convertRows(
  rows: ArrayLike<ArrayLike<unknown>>,
  statement: SqlStatement,
): SqlValue[][] {
  const columns = statement.columns;
  const out = new Array<SqlValue[]>(rows.length);
  for (let i = 0; i < rows.length; i++) {
    const row = rows[i];
    const values = new Array<SqlValue>(columns.length);
    for (let c = 0; c < columns.length; c++) {
      const type = columns[c];
      values[c] = type === "int8"
        ? toBigInt(row[c])
        : type === "bytea"
        ? toBytes(row[c])
        : (row[c] as string | null);
    }
    out[i] = values;
  }
  return out;
}
