import type { Consensus } from "./types.ts";
import { acquireLeaseWith, systemClock } from "./_lease.ts";

/**
 * Options for {@linkcode acquireLease}.
 *
 * @example Give up after five seconds
 * ```ts
 * import { acquireLease, type LeaseOptions, MemoryConsensus } from "@persist/consensus";
 *
 * await using store = new MemoryConsensus();
 * const options: LeaseOptions = { holder: "worker-1", ttlMs: 10_000, signal: AbortSignal.timeout(5000) };
 * await using lease = await acquireLease(store, "leader", options);
 * ```
 */
export interface LeaseOptions {
  /** Who asks: any non-empty name up to 256 characters, written into the lease for people and logs. */
  holder: string;
  /**
   * How long the lease outlives its holder: a contender takes a lease over
   * once its version has stayed unchanged this long on the contender's own
   * clock. An integer from 100 to 2147483647 milliseconds. The holder renews
   * every third of it, and its own deadline is shorter (see the README,
   * "Leases").
   */
  ttlMs: number;
  /**
   * Gives up waiting: {@linkcode acquireLease} rejects with its reason.
   *
   * @default {undefined}
   */
  signal?: AbortSignal;
  /**
   * How often a waiting contender reads the key, which bounds how soon it
   * sees a release.
   *
   * @default {ttlMs / 10, from 10 to 1000}
   */
  pollIntervalMs?: number;
}

/**
 * A lease that {@linkcode acquireLease} granted: held until `signal` aborts.
 *
 * @example Do work only while the lease holds
 * ```ts
 * import { acquireLease, MemoryConsensus } from "@persist/consensus";
 *
 * await using store = new MemoryConsensus();
 * await using lease = await acquireLease(store, "leader", { holder: "a", ttlMs: 1000 });
 * if (!lease.signal.aborted) {
 *   // act as the leader; pass lease.token to every write downstream
 * }
 * ```
 */
export interface Lease extends AsyncDisposable {
  /** The key the lease is on. */
  readonly key: string;
  /** The holder name given to {@linkcode acquireLease}. */
  readonly holder: string;
  /**
   * The fencing token: the seqno of the version that granted this lease.
   * Every later holder of the key has a greater token, so a downstream
   * system that remembers the greatest token it has seen can refuse a stale
   * holder's writes.
   */
  readonly token: bigint;
  /**
   * Aborts as soon as this process can no longer be sure it holds the
   * lease: a renewal lost to another writer, its deadline passed without a
   * renewal, the store refused (closed), or {@linkcode Lease.release} was
   * called; always before another holder can be granted the key (under the
   * clock assumption in the README). Reading `aborted`, `reason` or calling
   * `throwIfAborted()` checks the deadline against the clock at that moment,
   * so a read right after the process was paused is never stale.
   */
  readonly signal: AbortSignal;
  /**
   * Ends the lease and hands it over at once: aborts `signal`, then writes a
   * released version, which a waiting contender takes without waiting for the
   * ttl. Calling it again returns the same promise.
   *
   * @returns When the released version is written, or the key turned out to be someone else's.
   * @throws {ConsensusError} When the store failed to write it; the lease is still over, and the key is handed over after the ttl instead.
   */
  release(): Promise<void>;
  /** Calls {@linkcode Lease.release}; `await using` calls it. */
  [Symbol.asyncDispose](): Promise<void>;
}

/**
 * Acquires the lease on `key`: waits until `options.holder` holds it, then
 * keeps it renewed until it is released, lost or the store closes. Works on
 * any {@linkcode Consensus}; the lease is a log of small JSON versions on
 * `key` (README, "Leases"), so use a key for nothing else.
 *
 * A free key is taken at once; a released one as soon as a poll sees it; a
 * held one only after its version has stayed unchanged for the holder's
 * whole ttl on this process's clock, so a holder that died is replaced
 * within about one ttl and a poll interval.
 *
 * @param store Any {@linkcode Consensus}.
 * @param key The key that names the lease.
 * @param options Holder name, ttl, and a signal to give up waiting.
 * @returns The lease, once held.
 * @throws {TypeError | RangeError} When an argument is invalid (before any I/O).
 * @throws {TypeError} When the key holds data that is not a lease version (named in the message).
 * @throws {ConsensusError} When the store failed; you do not hold the lease. If a grant may have been written, the message says so: nobody renews it, and it is handed over after the ttl.
 * @throws {unknown} `options.signal.reason`, when it aborts first.
 *
 * @example Leader election with a fencing token
 * ```ts
 * import { acquireLease, MemoryConsensus } from "@persist/consensus";
 *
 * await using store = new MemoryConsensus();
 * const first = await acquireLease(store, "leader", { holder: "a", ttlMs: 1000 });
 * // A second contender waits; release() hands the lease over at once.
 * const second = acquireLease(store, "leader", { holder: "b", ttlMs: 1000, pollIntervalMs: 10 });
 * await first.release();
 * const lease = await second;
 * if (!first.signal.aborted || lease.token <= first.token) throw new Error("not fenced");
 * await lease.release();
 * ```
 */
export function acquireLease(store: Consensus, key: string, options: LeaseOptions): Promise<Lease> {
  return acquireLeaseWith(store, key, options, systemClock);
}
