/**
 * One version of a key: its sequence number and the bytes written with it.
 *
 * @example Usage
 * ```ts
 * import type { VersionedData } from "@persist/consensus";
 *
 * const first: VersionedData = { seqno: 0n, data: new TextEncoder().encode("hello") };
 * ```
 */
export interface VersionedData {
  /** Position in the key's log: `0n` for the first version, then one more per write, up to `2n ** 63n - 1n`. */
  readonly seqno: bigint;
  /** The payload of this version. */
  readonly data: Uint8Array;
}

/**
 * The outcome of {@linkcode Consensus.compareAndSet}: `"committed"` when the
 * version was appended, `"mismatch"` when the head was not the expected one
 * (a lost race is a mismatch, never an exception).
 *
 * @example Usage
 * ```ts
 * import type { CasResult } from "@persist/consensus";
 *
 * const outcome: CasResult = "mismatch";
 * ```
 */
export type CasResult = "committed" | "mismatch";

/**
 * One entry of {@linkcode Consensus.compareAndSetMany}: append `next` to `key`.
 *
 * @example Usage
 * ```ts
 * import type { CasEntry } from "@persist/consensus";
 *
 * const entry: CasEntry = { key: "accounts/alice", next: { seqno: 4n, data: new Uint8Array([9]) } };
 * ```
 */
export interface CasEntry {
  /** The key to append to. */
  readonly key: string;
  /** The version to append, under the same rule as {@linkcode Consensus.compareAndSet}. */
  readonly next: VersionedData;
}

/**
 * A linearizable versioned store: per key, an append-only log of
 * {@linkcode VersionedData} advanced by compare-and-set.
 *
 * Every implementation must pass the conformance suite exported from
 * `@persist/consensus/testing`.
 *
 * @example Read-modify-write loop
 * ```ts
 * import { type Consensus, MemoryConsensus } from "@persist/consensus";
 *
 * async function increment(store: Consensus, key: string): Promise<bigint> {
 *   for (;;) {
 *     const head = await store.head(key);
 *     const value = head ? new DataView(head.data.buffer, head.data.byteOffset).getBigUint64(0) : 0n;
 *     const data = new Uint8Array(8);
 *     new DataView(data.buffer).setBigUint64(0, value + 1n);
 *     const seqno = head ? head.seqno + 1n : 0n;
 *     if (await store.compareAndSet(key, { seqno, data }) === "committed") return value + 1n;
 *   }
 * }
 *
 * await using store = new MemoryConsensus();
 * await increment(store, "counter");
 * if (await increment(store, "counter") !== 2n) throw new Error("lost update");
 * ```
 */
export interface Consensus extends AsyncDisposable {
  /**
   * Reads the latest version of `key`.
   *
   * @param key The key to read.
   * @returns The head version, or `undefined` when the key has no data.
   * @throws {TypeError | RangeError} When `key` is invalid (before any I/O).
   * @throws {ConsensusError} When the store could not answer.
   */
  head(key: string): Promise<VersionedData | undefined>;

  /**
   * Appends `next` iff the current head of `key` is `next.seqno - 1n`, or,
   * when `next.seqno` is `0n`, iff `key` has no data.
   *
   * @param key The key to write.
   * @param next The version to append.
   * @returns `"committed"` when appended, `"mismatch"` otherwise.
   * @throws {TypeError | RangeError} When an argument is invalid (before any I/O; nothing written).
   * @throws {ConsensusError} When the store failed; `determinate` says whether the write surely did not happen.
   */
  compareAndSet(key: string, next: VersionedData): Promise<CasResult>;

  /**
   * Appends to several keys at once, all or nothing: `"committed"` iff the
   * condition of {@linkcode Consensus.compareAndSet} holds for every entry at
   * one instant, and then every entry is appended atomically; otherwise
   * `"mismatch"`, and nothing is appended. Linearizable together with the
   * single-key operations. Optional for third-party backends;
   * `MemoryConsensus` and `PostgresConsensus` have it.
   *
   * @param entries One entry per key: no key twice, at least one and at most
   *   `MAX_MANY_ENTRIES`, payloads together at most `MAX_DATA_BYTES`.
   * @returns `"committed"` when every entry was appended, `"mismatch"` when none was.
   * @throws {TypeError | RangeError} When an entry is invalid, a key repeats, or the list is empty or too long (before any I/O; nothing written).
   * @throws {ConsensusError} When the store failed; `determinate` says whether the write surely did not happen.
   */
  compareAndSetMany?(entries: readonly CasEntry[]): Promise<CasResult>;

  /**
   * Reads the versions of `key` with `seqno >= from`, in ascending order.
   *
   * @param key The key to read.
   * @param from The lowest sequence number to return.
   * @param limit The most versions to return; all when omitted.
   * @returns The versions found, possibly none.
   * @throws {TypeError | RangeError} When an argument is invalid (before any I/O).
   * @throws {ConsensusError} When the store could not answer.
   */
  scan(key: string, from: bigint, limit?: number): Promise<VersionedData[]>;

  /**
   * Deletes the versions of `key` below `seqno`. Never deletes the head.
   *
   * @param key The key to truncate.
   * @param seqno Versions below this are deleted.
   * @returns How many versions were deleted (`0` when already truncated).
   * @throws {TypeError | RangeError} When an argument is invalid, before any I/O.
   * @throws {RangeError} When `seqno` is above the head or `key` has no data; nothing was deleted.
   * @throws {ConsensusError} When the store failed.
   */
  truncate(key: string, seqno: bigint): Promise<number>;

  /**
   * Lists every key that has data, in pages, without loading all keys into memory.
   *
   * @returns The keys, each once.
   * @throws {ConsensusError} When the store could not answer.
   */
  listKeys(): AsyncIterable<string>;

  /** Releases what this store owns. Further calls reject. */
  close(): Promise<void>;
}
