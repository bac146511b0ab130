import type { AbortSignalLike } from "./executor.ts";
import { TruncatedError } from "./errors.ts";
import { MAX_SEQNO } from "./limits.ts";
import type { Consensus, VersionedData } from "./types.ts";
import { checkKey, checkSeqno } from "./_validate.ts";
import { host } from "./_runtime.ts";
import { wakeSourceOf, type WakeSubscription } from "./_wake.ts";

/**
 * Options for {@linkcode watch}.
 *
 * @example Replay from version 10, poll every second, stop on shutdown
 * ```ts
 * import type { WatchOptions } from "@persist/consensus";
 *
 * const shutdown = new AbortController();
 * const options: WatchOptions = { from: 10n, pollIntervalMs: 1_000, signal: shutdown.signal };
 * ```
 */
export interface WatchOptions {
  /**
   * The first version to yield. Versions from here on are yielded in order,
   * each once, those already committed first. When omitted, the watcher
   * starts with the head as it is when iteration starts (or, for a key with
   * no data, with version 0 when it arrives).
   *
   * @default {undefined}
   */
  from?: bigint;
  /**
   * Ends the watch when aborted: the iterator finishes (`done`), without an
   * error, and releases what it held. A standard `AbortSignal` fits.
   *
   * @default {undefined}
   */
  signal?: AbortSignalLike;
  /**
   * How often the watcher reads the key when nothing woke it, in
   * milliseconds. Stores that wake their watchers on every commit in
   * process (`MemoryConsensus`) need no reads; `PostgresConsensus` reads at
   * this interval as well as when a notification or its own commit wakes it,
   * which bounds the delay of a version whose writer does not notify (or
   * whose notification was lost). Any other `Consensus` is only polled.
   *
   * @default {250}
   */
  pollIntervalMs?: number;
}

const DEFAULT_POLL_INTERVAL_MS = 250;
// Versions read per scan: the consumer takes them one at a time, so a
// watcher far behind holds one page, not the whole backlog.
const PAGE = 100;

/**
 * Watches `key`: yields every version with `seqno >= from`, in ascending
 * order, each exactly once, then waits for new ones and yields them as they
 * are committed.
 *
 * - `from` defaults to the head's seqno when iteration starts, so the current
 *   head comes first; on a key with no data the first item is version 0.
 * - It ends (`done`) when `options.signal` aborts, when the loop breaks
 *   (`return()`), or when the store closes, and releases what it held.
 * - It throws {@linkcode TruncatedError}, naming the first missing seqno,
 *   when versions it must yield were truncated before it read them.
 * - It rethrows the store's errors ({@linkcode ConsensusError} when a read
 *   failed). Nothing is lost: watch again with `from` one past the last
 *   version seen.
 *
 * How it learns of new versions: `MemoryConsensus` wakes it on every commit.
 * `PostgresConsensus` wakes it on its own commits, and, through executors
 * that can LISTEN (porsager, node-postgres, PGlite, Bun.SQL), on commits by
 * stores opened with `notify: true` in any process; it also reads every
 * `pollIntervalMs`, which covers writers that do not notify, lost
 * notifications and reconnects. Any other `Consensus` is polled every
 * `pollIntervalMs`. Whatever woke it, it reads the versions from the store
 * starting at the next seqno it expects, so a missed or spurious wake-up only
 * changes when a version arrives, never which.
 *
 * Iteration starts at the first `next()`: no read and no subscription before.
 *
 * @param store The store to watch.
 * @param key The key to watch.
 * @param options Where to start, how to stop, how often to poll.
 * @returns An async iterator of versions; `break` out of `for await` to stop.
 * @throws {TypeError | RangeError} When an argument is invalid (at the call, before any I/O).
 *
 * @example Reload configuration whenever it changes
 * ```ts
 * import { MemoryConsensus, watch } from "@persist/consensus";
 *
 * await using store = new MemoryConsensus();
 * const text = (data: Uint8Array) => new TextDecoder().decode(data);
 * const seen: string[] = [];
 * const watching = (async () => {
 *   for await (const version of watch(store, "config", { from: 0n })) {
 *     seen.push(text(version.data));
 *     if (version.seqno === 2n) break;
 *   }
 * })();
 * for (const [seqno, value] of ["a", "b", "c"].entries()) {
 *   await store.compareAndSet("config", {
 *     seqno: BigInt(seqno),
 *     data: new TextEncoder().encode(value),
 *   });
 * }
 * await watching;
 * if (seen.join() !== "a,b,c") throw new Error(`saw ${seen}`);
 * ```
 *
 * @example Stop with a signal
 * ```ts
 * import { MemoryConsensus, watch } from "@persist/consensus";
 *
 * await using store = new MemoryConsensus();
 * const controller = new AbortController();
 * setTimeout(() => controller.abort(), 10);
 * for await (const _version of watch(store, "idle", { signal: controller.signal })) {
 *   throw new Error("nothing was written");
 * }
 * ```
 */
export function watch(
  store: Consensus,
  key: string,
  options: WatchOptions = {},
): AsyncIterableIterator<VersionedData> {
  if (typeof store !== "object" || store === null || typeof store.scan !== "function") {
    throw new TypeError(`Cannot watch: store must be a Consensus, got ${typeof store}`);
  }
  checkKey("watch", key);
  if (typeof options !== "object" || options === null) {
    throw new TypeError(`Cannot watch: options must be an object, got ${typeof options}`);
  }
  const { from, signal } = options;
  if (from !== undefined) checkSeqno("watch", "from", from);
  const pollIntervalMs = options.pollIntervalMs ?? DEFAULT_POLL_INTERVAL_MS;
  if (
    typeof pollIntervalMs !== "number" || !Number.isFinite(pollIntervalMs) ||
    pollIntervalMs <= 0 || pollIntervalMs > 2 ** 31 - 1
  ) {
    throw new RangeError(
      `Cannot watch: pollIntervalMs must be a positive number of milliseconds, got ${
        String(pollIntervalMs)
      }`,
    );
  }
  if (
    signal !== undefined &&
    (typeof signal !== "object" || signal === null ||
      typeof signal.addEventListener !== "function")
  ) {
    throw new TypeError("Cannot watch: signal must be an AbortSignal");
  }
  return new Watcher(store, key, from, signal, pollIntervalMs);
}

// The wait between reads: woken by a wake-up for a version the watcher still
// expects, by the poll timer, or by stop. A wake-up that comes while the
// watcher reads is remembered (`dirty`), so the read after it happens.
class Alarm {
  dirty = false;
  stopped = false;
  next = 0n;
  #resolve: (() => void) | undefined;

  wake(seqno?: bigint): void {
    if (seqno !== undefined && seqno < this.next) return;
    this.dirty = true;
    this.#ring();
  }

  stop(): void {
    this.stopped = true;
    this.#ring();
  }

  async wait(ms: number | undefined): Promise<void> {
    if (this.dirty || this.stopped) return;
    let timer: unknown;
    await new Promise<void>((resolve) => {
      this.#resolve = resolve;
      if (ms !== undefined) timer = host.setTimeout(resolve, ms);
    });
    this.#resolve = undefined;
    if (timer !== undefined) host.clearTimeout(timer);
  }

  #ring(): void {
    const resolve = this.#resolve;
    this.#resolve = undefined;
    resolve?.();
  }
}

const CLOSED = Symbol("closed");

// The iterator `watch` returns: a generator for the loop, and a stop that
// wakes it, so that return() and an abort end a watcher that is waiting
// instead of queueing behind its wait.
class Watcher implements AsyncIterableIterator<VersionedData> {
  readonly #alarm = new Alarm();
  readonly #loop: AsyncGenerator<VersionedData, undefined, undefined>;

  constructor(
    store: Consensus,
    key: string,
    from: bigint | undefined,
    signal: AbortSignalLike | undefined,
    pollIntervalMs: number,
  ) {
    this.#loop = run(store, key, from, signal, pollIntervalMs, this.#alarm);
  }

  next(): Promise<IteratorResult<VersionedData, undefined>> {
    return this.#loop.next();
  }

  return(): Promise<IteratorResult<VersionedData, undefined>> {
    this.#alarm.stop();
    return this.#loop.return(undefined);
  }

  throw(error?: unknown): Promise<IteratorResult<VersionedData, undefined>> {
    this.#alarm.stop();
    return this.#loop.throw(error);
  }

  [Symbol.asyncIterator](): AsyncIterableIterator<VersionedData> {
    return this;
  }
}

async function* run(
  store: Consensus,
  key: string,
  from: bigint | undefined,
  signal: AbortSignalLike | undefined,
  pollIntervalMs: number,
  alarm: Alarm,
): AsyncGenerator<VersionedData, undefined, undefined> {
  if (signal?.aborted) return;
  const onAbort = () => alarm.stop();
  signal?.addEventListener("abort", onAbort, { once: true });
  let subscription: WakeSubscription | undefined;
  try {
    // Subscribe before the first read: a commit after the read then wakes
    // this watcher (for a listening store, LISTEN is in effect by now).
    subscription = await wakeSourceOf(store)?.subscribe(key, (seqno) => alarm.wake(seqno));
    const ended = () => alarm.stopped || subscription?.closed === true;
    if (ended()) return;
    if (from === undefined) {
      const head = await read(() => store.head(key));
      if (head === CLOSED || ended()) return;
      alarm.next = head === undefined ? 0n : head.seqno + 1n;
      if (head !== undefined) yield head;
    } else {
      alarm.next = from;
    }
    const poll = subscription?.complete ? undefined : pollIntervalMs;
    for (;;) {
      if (ended()) return;
      // Past the top of the range no version can come: wait for the end.
      if (alarm.next > MAX_SEQNO) {
        alarm.dirty = false;
        await alarm.wait(undefined);
        continue;
      }
      alarm.dirty = false;
      const page = await read(() => store.scan(key, alarm.next, PAGE));
      if (page === CLOSED) return;
      for (const version of page) {
        // Versions are contiguous (heads only grow, truncation removes a
        // prefix), so a version above the expected one means the expected
        // one is gone.
        if (version.seqno !== alarm.next) throw new TruncatedError(key, alarm.next, version.seqno);
        alarm.next++;
        yield version;
        if (ended()) return;
      }
      if (page.length < PAGE) await alarm.wait(poll);
    }
  } finally {
    signal?.removeEventListener("abort", onAbort);
    await subscription?.close();
  }
}

// A read that finds the store closed ends the watch; any other failure is
// the caller's to see. Arguments were checked at the call, so a TypeError
// from the store here can only be its refusal to run after close().
async function read<T>(operation: () => Promise<T>): Promise<T | typeof CLOSED> {
  try {
    return await operation();
  } catch (error) {
    if (error instanceof TypeError && /closed/i.test(error.message)) return CLOSED;
    throw error;
  }
}
