import { ConsensusError } from "./errors.ts";
import type { Consensus, VersionedData } from "./types.ts";

/**
 * Options for {@linkcode update}.
 */
export interface UpdateOptions {
  /**
   * How many compare-and-sets one update may lose before it gives up with a
   * determinate {@linkcode ConsensusError} (nothing was written).
   *
   * @default {1000}
   */
  maxAttempts?: number;
}

/**
 * What {@linkcode update} did.
 */
export interface UpdateResult {
  /**
   * The version written, or the head `fn` declined to change: never older
   * than a version committed before {@linkcode update} was called.
   */
  readonly version: VersionedData | undefined;
  /** Whether a version was written (`false` when `fn` returned `undefined`). */
  readonly committed: boolean;
  /** Compare-and-sets sent, including lost ones. */
  readonly attempts: number;
}

/** The function that computes the next payload from the current head. */
export type UpdateFn = (
  current: VersionedData | undefined,
) => Uint8Array | undefined | Promise<Uint8Array | undefined>;

interface KeyState {
  /** The last version this process committed or read, while believed current. */
  head: VersionedData | undefined;
  known: boolean;
  /** Updates in a row that started from the remembered head, without a read. */
  unread: number;
  /** The tail of this key's queue of updates in this process. */
  tail: Promise<unknown>;
  waiting: number;
}

const MAX_REMEMBERED_HEADS = 1024;
const UNREAD_LIMIT = 8;
const states = new WeakMap<Consensus, Map<string, KeyState>>();

function stateOf(store: Consensus, key: string): KeyState {
  let keys = states.get(store);
  if (keys === undefined) {
    keys = new Map();
    states.set(store, keys);
  }
  let state = keys.get(key);
  if (state === undefined) {
    if (keys.size >= MAX_REMEMBERED_HEADS) {
      // Forget an idle key; keys with queued updates stay.
      for (const [k, s] of keys) {
        if (s.waiting === 0) {
          keys.delete(k);
          break;
        }
      }
    }
    state = { head: undefined, known: false, unread: 0, tail: Promise.resolve(), waiting: 0 };
    keys.set(key, state);
  }
  return state;
}

/**
 * Runs a read-modify-write of `key`: reads the head, computes the next
 * payload with `fn`, appends it with compare-and-set, and on a lost race
 * reads again and retries. The way to advance a shared key from many places.
 *
 * Within one process, updates of one key on one store run one at a time (one
 * compare-and-set in flight per key per process), so writers of the same
 * process never waste round trips racing each other, and each update starts
 * from the version the previous one committed, without reading it back: an
 * uncontended update is one round trip (every eighth reads the head first,
 * so that a process that keeps winning does not starve writers elsewhere).
 * Writers in other processes are handled by compare-and-set: a stale start
 * is a mismatch, then a fresh read.
 *
 * A decline is checked the same way: when `fn` returns `undefined` for a
 * head that was not read during this call, `update()` reads the head and, if
 * it has moved, calls `fn` again on the new one. So when nothing is written,
 * the version `fn` last declined, which is the version returned, is never
 * older than a version committed (by any process, this one included) before
 * `update()` was called. A decline on a remembered head costs that read; a
 * write from it does not.
 *
 * `fn` may run more than once (once per attempt, and once more when it
 * declined a remembered head that turned out stale) and must not have side
 * effects beyond computing the payload; it may return `undefined` to write
 * nothing. The bytes it returns must not be changed afterwards.
 *
 * @param store Any {@linkcode Consensus}.
 * @param key The key to update.
 * @param fn Computes the next payload from the current head (`undefined` when the key is empty).
 * @param options Attempt limit.
 * @returns The version written, or the head `fn` declined (no older than any committed before the call), whether one was written, and the attempts made.
 * @throws {TypeError | RangeError} When the key or `fn`'s result is invalid (nothing written).
 * @throws {ConsensusError} When the store failed, or the update lost `maxAttempts` races in a row (determinate).
 *
 * @example A shared counter
 * ```ts
 * import { MemoryConsensus, update } from "@persist/consensus";
 *
 * await using store = new MemoryConsensus();
 * const increment = (current: { data: Uint8Array } | undefined) =>
 *   Uint8Array.of((current?.data[0] ?? 0) + 1);
 * await Promise.all([1, 2, 3].map(() => update(store, "counter", increment)));
 * const head = await store.head("counter");
 * if (head?.data[0] !== 3 || head.seqno !== 2n) throw new Error("lost an update");
 * ```
 */
export function update(
  store: Consensus,
  key: string,
  fn: UpdateFn,
  options: UpdateOptions = {},
): Promise<UpdateResult> {
  const maxAttempts = options.maxAttempts ?? 1000;
  if (!Number.isSafeInteger(maxAttempts) || maxAttempts < 1) {
    return Promise.reject(
      new RangeError(`Cannot update: maxAttempts must be a positive integer, got ${maxAttempts}`),
    );
  }
  if (typeof fn !== "function") {
    return Promise.reject(new TypeError(`Cannot update: fn must be a function, got ${typeof fn}`));
  }
  const state = stateOf(store, key);
  state.waiting++;
  const run = state.tail.then(() => attempt(store, key, fn, maxAttempts, state));
  state.tail = run.then(
    () => state.waiting--,
    () => state.waiting--,
  );
  return run;
}

async function attempt(
  store: Consensus,
  key: string,
  fn: UpdateFn,
  maxAttempts: number,
  state: KeyState,
): Promise<UpdateResult> {
  for (let attempts = 0; attempts < maxAttempts;) {
    let current: VersionedData | undefined;
    // Whether `current` came from a read sent during this call.
    let fresh = false;
    // Starting from the remembered head saves a round trip, but it also
    // lets a process that keeps winning keep the key: its next
    // compare-and-set is on the wire a read ahead of every other
    // process's. Reading afresh every UNREAD_LIMIT updates opens that
    // window, so writers elsewhere get their turn instead of starving.
    if (state.known && state.unread < UNREAD_LIMIT) {
      current = state.head;
      state.unread++;
    } else {
      current = await readHead(store, key, state);
      fresh = true;
    }
    let data = await fn(current);
    // A decline must hand back a version no older than any committed, by
    // any process, before update() was called. A remembered head cannot
    // promise that, not even one inherited from the update queued ahead of
    // this one in this process: that update read its head, or had its
    // compare-and-set take effect, possibly before this call, and another
    // process may have committed in between. A read sent during this call
    // can: by linearizability it returns a version no older than any
    // committed before it was sent, hence before the call; if it shows the
    // remembered head unchanged, that head was current then too. A write
    // needs no such read: compare-and-set rejects one from a stale head,
    // and the retry reads afresh.
    if (data === undefined && !fresh) {
      const head = await readHead(store, key, state);
      if (head?.seqno !== current?.seqno) {
        current = head;
        data = await fn(current);
      }
    }
    if (data === undefined) {
      state.head = current;
      state.known = true;
      return { version: current, committed: false, attempts };
    }
    const next = { seqno: current === undefined ? 0n : current.seqno + 1n, data };
    attempts++;
    let outcome;
    try {
      outcome = await store.compareAndSet(key, next);
    } catch (error) {
      state.known = false;
      throw error;
    }
    if (outcome === "committed") {
      state.head = next;
      state.known = true;
      return { version: next, committed: true, attempts };
    }
    state.known = false;
  }
  throw new ConsensusError(
    `update ${JSON.stringify(key)} lost ${maxAttempts} compare-and-sets in a row and wrote nothing`,
    { determinate: true },
  );
}

async function readHead(
  store: Consensus,
  key: string,
  state: KeyState,
): Promise<VersionedData | undefined> {
  try {
    const head = await store.head(key);
    state.unread = 0;
    return head;
  } catch (error) {
    state.known = false;
    throw error;
  }
}
