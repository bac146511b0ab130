// Argument checks shared by every backend, so each one rejects the same bad
// input with the same error before any I/O.
import { MAX_DATA_BYTES, MAX_KEY_BYTES, MAX_MANY_ENTRIES, MAX_SEQNO } from "./limits.ts";
import type { CasEntry, VersionedData } from "./types.ts";
import { utf8ByteLength } from "./_runtime.ts";

function show(value: unknown): string {
  if (typeof value === "bigint") return `${value}n`;
  if (typeof value === "string") {
    const shown = value.length > 40 ? `${value.slice(0, 40)}...` : value;
    return JSON.stringify(shown);
  }
  if (value instanceof Uint8Array) return `${value.constructor.name}(${value.byteLength})`;
  if (value === null) return "null";
  if (typeof value === "object") return Object.prototype.toString.call(value);
  return String(value);
}

function describeType(value: unknown): string {
  if (value === null) return "null";
  if (typeof value === "object") return value.constructor?.name ?? "object";
  return typeof value;
}

/** Throws unless `key` is a usable key; returns it for chaining. */
export function checkKey(op: string, key: unknown): string {
  if (typeof key !== "string") {
    throw new TypeError(
      `Cannot ${op}: key must be a string, got ${describeType(key)} ${show(key)}`,
    );
  }
  if (key.length === 0) throw new RangeError(`Cannot ${op}: key must not be empty`);
  // Postgres text cannot hold U+0000, and a lone surrogate has no UTF-8 form:
  // a driver would either fail mid-flight or silently store U+FFFD.
  if (key.includes("\u0000")) {
    throw new RangeError(`Cannot ${op}: key ${show(key)} contains U+0000`);
  }
  if (!key.isWellFormed()) {
    throw new RangeError(
      `Cannot ${op}: key ${show(key)} is not well-formed UTF-16 (lone surrogate)`,
    );
  }
  // Every UTF-16 code unit encodes to at most 3 UTF-8 bytes, so short keys
  // need no encoding to be known short.
  if (key.length * 3 > MAX_KEY_BYTES) {
    const bytes = utf8ByteLength(key);
    if (bytes > MAX_KEY_BYTES) {
      throw new RangeError(
        `Cannot ${op}: key ${
          show(key)
        } is ${bytes} UTF-8 bytes, above the limit of ${MAX_KEY_BYTES}`,
      );
    }
  }
  return key;
}

/** Throws unless `seqno` is a bigint in `[0, MAX_SEQNO]`. */
export function checkSeqno(op: string, name: string, seqno: unknown): bigint {
  if (typeof seqno !== "bigint") {
    throw new TypeError(
      `Cannot ${op}: ${name} must be a bigint, got ${describeType(seqno)} ${show(seqno)}`,
    );
  }
  if (seqno < 0n || seqno > MAX_SEQNO) {
    throw new RangeError(
      `Cannot ${op}: ${name} ${show(seqno)} is outside [0n, ${MAX_SEQNO}n]`,
    );
  }
  return seqno;
}

/** Throws unless `next` is a well-formed version. */
export function checkVersion(op: string, next: unknown): VersionedData {
  if (typeof next !== "object" || next === null) {
    throw new TypeError(
      `Cannot ${op}: next must be an object { seqno, data }, got ${describeType(next)}`,
    );
  }
  const { seqno, data } = next as { seqno: unknown; data: unknown };
  checkSeqno(op, "next.seqno", seqno);
  if (!(data instanceof Uint8Array)) {
    throw new TypeError(
      `Cannot ${op}: next.data must be a Uint8Array, got ${describeType(data)} ${show(data)}`,
    );
  }
  if (data.byteLength > MAX_DATA_BYTES) {
    throw new RangeError(
      `Cannot ${op}: next.data is ${data.byteLength} bytes, above the limit of ${MAX_DATA_BYTES}`,
    );
  }
  return next as VersionedData;
}

/** Throws unless `limit` is undefined or a non-negative safe integer. */
export function checkLimit(op: string, limit: unknown): number | undefined {
  if (limit === undefined) return undefined;
  if (typeof limit !== "number") {
    throw new TypeError(
      `Cannot ${op}: limit must be a number, got ${describeType(limit)} ${show(limit)}`,
    );
  }
  if (!Number.isSafeInteger(limit) || limit < 0) {
    throw new RangeError(`Cannot ${op}: limit ${show(limit)} is not a non-negative integer`);
  }
  return limit;
}

/**
 * Throws unless `entries` is a usable compareAndSetMany list; returns the
 * entries sorted by key, so every backend locks keys in one order.
 */
export function checkEntries(op: string, entries: unknown): CasEntry[] {
  if (!Array.isArray(entries)) {
    throw new TypeError(
      `Cannot ${op}: entries must be an array, got ${describeType(entries)} ${show(entries)}`,
    );
  }
  if (entries.length === 0) throw new RangeError(`Cannot ${op}: entries must not be empty`);
  if (entries.length > MAX_MANY_ENTRIES) {
    throw new RangeError(
      `Cannot ${op}: ${entries.length} entries, above the limit of ${MAX_MANY_ENTRIES}`,
    );
  }
  const seen = new Set<string>();
  let bytes = 0;
  entries.forEach((entry: unknown, i) => {
    if (typeof entry !== "object" || entry === null) {
      throw new TypeError(
        `Cannot ${op}: entries[${i}] must be an object { key, next }, got ${describeType(entry)}`,
      );
    }
    const { key, next } = entry as { key: unknown; next: unknown };
    checkKey(`${op} (entries[${i}])`, key);
    checkVersion(`${op} (entries[${i}])`, next);
    if (seen.has(key as string)) {
      throw new RangeError(`Cannot ${op}: key ${show(key)} appears twice`);
    }
    seen.add(key as string);
    bytes += (next as VersionedData).data.byteLength;
  });
  if (bytes > MAX_DATA_BYTES) {
    throw new RangeError(
      `Cannot ${op}: the payloads are ${bytes} bytes together, above the limit of ${MAX_DATA_BYTES}`,
    );
  }
  return (entries as CasEntry[]).slice().sort((a, b) => a.key < b.key ? -1 : a.key > b.key ? 1 : 0);
}
