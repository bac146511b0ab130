// The data of a lease version: UTF-8 JSON, one small object per version,
//
//   {"v":1,"holder":"worker-a","state":"held","ttlMs":10000,"grant":"17","nonce":"<uuid>"}
//
// - `v`: the format; a reader refuses any other, naming it.
// - `holder`: who holds (or released) the lease; for people and logs only.
// - `state`: "held" (grant or renewal) or "released" (free: take it at once).
// - `ttlMs`: the holder's promise: a version left unchanged this long on a
//   contender's clock may be taken over. Contenders wait the ttl written
//   here, never their own, so a holder with a longer ttl is never cut short.
// - `grant`: the seqno of the version that granted this tenure, in decimal
//   (the fencing token); a grant names its own seqno.
// - `nonce`: unique per acquireLease call, so that the caller recognises its
//   own version after an indeterminate compare-and-set.
//
// About 130 bytes with a UUID nonce and a short holder name.
import type { VersionedData } from "./types.ts";
import { host } from "./_runtime.ts";

/** The format version this release writes and reads. */
export const LEASE_FORMAT = 1;

/** A decoded lease version. */
export interface LeaseRecord {
  readonly holder: string;
  readonly state: "held" | "released";
  readonly ttlMs: number;
  readonly grant: bigint;
  readonly nonce: string;
}

const encoder = new host.TextEncoder();
const decoder = new host.TextDecoder();

/** The bytes of `record`, in the documented field order. */
export function encodeLease(record: LeaseRecord): Uint8Array {
  return encoder.encode(JSON.stringify({
    v: LEASE_FORMAT,
    holder: record.holder,
    state: record.state,
    ttlMs: record.ttlMs,
    grant: String(record.grant),
    nonce: record.nonce,
  }));
}

/**
 * Reads a lease version of `key`, or throws a `TypeError` naming the key and
 * the version when it is not one (foreign data, or another format).
 */
export function decodeLease(op: string, key: string, version: VersionedData): LeaseRecord {
  const problem = (why: string) =>
    new TypeError(
      `Cannot ${op} ${JSON.stringify(key)}: version ${version.seqno} is not a lease record ` +
        `(${why}); is another program writing this key?`,
    );
  let value: unknown;
  try {
    value = JSON.parse(decoder.decode(version.data));
  } catch {
    throw problem(`${version.data.byteLength} bytes that are not JSON`);
  }
  if (value === null || typeof value !== "object" || Array.isArray(value)) {
    throw problem("not a JSON object");
  }
  const { v, holder, state, ttlMs, grant, nonce } = value as Record<string, unknown>;
  if (v !== LEASE_FORMAT) {
    throw problem(
      typeof v === "number"
        ? `format v${v}; this release reads v${LEASE_FORMAT}`
        : `no "v": ${LEASE_FORMAT}`,
    );
  }
  if (typeof holder !== "string" || holder.length === 0) throw problem("no holder");
  if (state !== "held" && state !== "released") throw problem(`state ${JSON.stringify(state)}`);
  if (typeof ttlMs !== "number" || !Number.isSafeInteger(ttlMs) || ttlMs <= 0) {
    throw problem(`ttlMs ${JSON.stringify(ttlMs)}`);
  }
  if (typeof grant !== "string" || !/^\d{1,19}$/.test(grant) || BigInt(grant) > version.seqno) {
    throw problem(`grant ${JSON.stringify(grant)}`);
  }
  if (typeof nonce !== "string" || nonce.length === 0) throw problem("no nonce");
  return { holder, state, ttlMs, grant: BigInt(grant), nonce };
}
