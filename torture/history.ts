/**
 * Records concurrent histories of {@linkcode Consensus} operations for the
 * linearizability checker: per operation, who ran it, what it asked, when it
 * was invoked and completed (monotonic clock), and what came back.
 *
 * A compare-and-set of several keys (`casMany`) is one entry: its entries
 * (key, seqno, payload) and one outcome for all of them, "committed" or
 * "mismatch" as the store answered, `fail` or `unknown` as for any write.
 * The entry's `key` is its first entry's key; the checker reads the keys
 * from the operation (`torture/multi_key.ts`).
 *
 * Outcomes:
 * - `ok`: the operation returned (`value` is its result);
 * - `range`: it rejected with a `RangeError` (a truncate above the head or
 *   on an empty key), which the model allows only when that holds;
 * - `fail`: a determinate {@linkcode ConsensusError}: it surely did not take
 *   effect, so the checker leaves it out;
 * - `unknown`: an indeterminate error: it may have taken effect at any point
 *   after its invocation, or never; its completion time is +Infinity.
 *
 * @module
 */
import { type Consensus, ConsensusError } from "../mod.ts";

/** An operation and its arguments. Payloads are strings (unique per write). */
export type Op =
  | { readonly kind: "head" }
  | { readonly kind: "cas"; readonly seqno: bigint; readonly data: string }
  | { readonly kind: "scan"; readonly from: bigint; readonly limit?: number }
  | { readonly kind: "truncate"; readonly seqno: bigint }
  | { readonly kind: "casMany"; readonly entries: readonly ManyEntry[] };

/** One entry of a `casMany` operation: append (`seqno`, `data`) to `key`. */
export interface ManyEntry {
  readonly key: string;
  readonly seqno: bigint;
  readonly data: string;
}

/** A version as the checker sees it. */
export interface Version {
  readonly seqno: bigint;
  readonly data: string;
}

/** The value an operation returned, by kind. */
export type OkValue =
  | Version
  | undefined // head of an empty key
  | "committed"
  | "mismatch"
  | readonly Version[] // scan
  | number; // truncate

/** How an operation ended. */
export type Outcome =
  | { readonly type: "ok"; readonly value: OkValue }
  | { readonly type: "range" }
  | { readonly type: "fail"; readonly message: string }
  | { readonly type: "unknown"; readonly message: string };

/** One completed (or abandoned) operation. */
export interface Entry {
  /** Position in the history, unique. */
  readonly id: number;
  /** The client that ran it; a client runs one operation at a time. */
  readonly process: number;
  /** The key; for `casMany`, the first entry's key (the op has them all). */
  readonly key: string;
  readonly op: Op;
  /** Invocation time, `performance.now()` milliseconds. */
  readonly call: number;
  /** Completion time; `Infinity` when the outcome is unknown. */
  readonly ret: number;
  readonly outcome: Outcome;
}

const decoder = new TextDecoder("utf-8", { fatal: false });
const encoder = new TextEncoder();

/** Decodes a payload the workload wrote (UTF-8 text). */
export function payloadText(bytes: Uint8Array): string {
  return decoder.decode(bytes);
}

/** Encodes a payload for writing. */
export function payloadBytes(text: string): Uint8Array {
  return encoder.encode(text);
}

/** Collects entries; each client calls {@linkcode History.run} for every operation. */
export class History {
  readonly entries: Entry[] = [];
  readonly #hangMs: number;

  /**
   * @param hangMs An operation that has not settled after this long is
   * recorded as an unexpected outcome (a liveness failure: every store
   * operation is bounded by its timeout), so a hung store cannot hang the
   * workload.
   */
  constructor(hangMs = 60_000) {
    this.#hangMs = hangMs;
  }

  /** Runs `op` on `store` for `process`, records it, and returns its outcome. */
  async run(store: Consensus, process: number, key: string, op: Op): Promise<Outcome> {
    const call = performance.now();
    let outcome: Outcome;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const hung = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Hung(this.#hangMs)), this.#hangMs);
    });
    try {
      outcome = { type: "ok", value: await Promise.race([invoke(store, key, op), hung]) };
    } catch (error) {
      if (error instanceof RangeError && op.kind === "truncate") outcome = { type: "range" };
      else if (error instanceof ConsensusError) {
        outcome = error.determinate
          ? { type: "fail", message: error.message }
          : { type: "unknown", message: error.message };
      } else {
        // Anything else (a driver error that escaped the core, a TypeError) is
        // a bug to report, but it must not corrupt the history: it may have
        // happened.
        outcome = { type: "unknown", message: `unexpected: ${String(error)}` };
      }
    } finally {
      clearTimeout(timer);
    }
    const ret = outcome.type === "unknown" ? Infinity : performance.now();
    this.entries.push({ id: this.entries.length, process, key, op, call, ret, outcome });
    return outcome;
  }

  /** Runs `compareAndSetMany(entries)` on `store` for `process`, records it, and returns its outcome. */
  runMany(store: Consensus, process: number, entries: readonly ManyEntry[]): Promise<Outcome> {
    return this.run(store, process, entries[0].key, { kind: "casMany", entries });
  }
}

class Hung extends Error {
  constructor(ms: number) {
    super(`no answer after ${ms} ms (hung)`);
  }
}

async function invoke(store: Consensus, key: string, op: Op): Promise<OkValue> {
  switch (op.kind) {
    case "head": {
      const head = await store.head(key);
      return head && { seqno: head.seqno, data: payloadText(head.data) };
    }
    case "cas":
      return await store.compareAndSet(key, { seqno: op.seqno, data: payloadBytes(op.data) });
    case "scan": {
      const versions = await store.scan(key, op.from, op.limit);
      return versions.map((v) => ({ seqno: v.seqno, data: payloadText(v.data) }));
    }
    case "truncate":
      return await store.truncate(key, op.seqno);
    case "casMany": {
      if (store.compareAndSetMany === undefined) {
        throw new TypeError("the store has no compareAndSetMany");
      }
      return await store.compareAndSetMany(
        op.entries.map((e) => ({
          key: e.key,
          next: { seqno: e.seqno, data: payloadBytes(e.data) },
        })),
      );
    }
  }
}

/** The keys an entry touches: its key, or every key of a `casMany`. */
export function keysOf(entry: Entry): readonly string[] {
  return entry.op.kind === "casMany" ? entry.op.entries.map((e) => e.key) : [entry.key];
}

/** Counts of outcomes in a history, for reports. */
export function tally(entries: readonly Entry[]): Record<Outcome["type"], number> {
  const counts = { ok: 0, range: 0, fail: 0, unknown: 0 };
  for (const entry of entries) counts[entry.outcome.type]++;
  return counts;
}

/** A history as JSON: bigints as strings ending in "n", `Infinity` as a string. */
export function serializeHistory(entries: readonly Entry[]): string {
  return JSON.stringify(
    entries,
    (_, value) => typeof value === "bigint" ? `${value}n` : value === Infinity ? "Infinity" : value,
  );
}

/** Reads what {@linkcode serializeHistory} wrote. */
export function parseHistory(text: string): Entry[] {
  return JSON.parse(text, (_, value) => {
    if (value === "Infinity") return Infinity;
    if (typeof value === "string" && /^-?\d+n$/.test(value)) return BigInt(value.slice(0, -1));
    return value;
  });
}
