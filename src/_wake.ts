// Wake-ups for `watch`: a store that can tell its watchers when a key may
// have a new version registers a WakeSource for itself here; `watch` looks it
// up and, for any other Consensus, polls. A registry rather than a method on
// the Consensus interface, so that the interface third-party backends
// implement stays as it is, and a backend without wake-ups needs nothing.
//
// A wake-up is a hint, never data: the watcher always reads the versions from
// the store (from the next seqno it expects), so a wake-up that is late,
// spurious or duplicated changes nothing but when it reads, and one that is
// lost is covered by the watcher's periodic read unless the source is
// `complete`.

/** Called when `key` may have a version `seqno` (unknown: any new version). */
export type Wake = (seqno?: bigint) => void;

/** One watcher's registration with a {@linkcode WakeSource}. */
export interface WakeSubscription {
  /**
   * Every commit of the key wakes this subscriber once it is in the store,
   * so the watcher need not poll (an in-process store). When `false`, some
   * commits may wake nobody (another process that does not notify, a lost
   * notification) and the watcher reads periodically too.
   */
  readonly complete: boolean;
  /** Set, and every subscriber woken, when the store closed: watchers end. */
  readonly closed: boolean;
  /** Stops the wake-ups; resolves once what the subscription held is released. */
  close(): Promise<void>;
}

/** What a store offers its watchers. */
export interface WakeSource {
  /**
   * Registers `wake` for `key`. Resolves once a commit after this point wakes
   * it (for a listening store: once LISTEN is in effect), so a watcher that
   * reads after this misses nothing.
   */
  subscribe(key: string, wake: Wake): Promise<WakeSubscription>;
}

import { host } from "./_runtime.ts";

const sources = new WeakMap<object, WakeSource>();

/** Registers `source` as the wake-ups of `store`. */
export function provideWakeSource(store: object, source: WakeSource): void {
  sources.set(store, source);
}

/** The wake-ups `store` registered, if any. */
export function wakeSourceOf(store: object): WakeSource | undefined {
  return sources.get(store);
}

/**
 * How a hub holds an outside subscription (a LISTEN connection) while it has
 * subscribers: `start` runs when the first arrives and its result's `close`
 * when the last leaves. A start that yields `undefined` failed: the hub
 * starts again after a delay (FEED_RETRY_MIN_MS, doubling up to
 * FEED_RETRY_MAX_MS) for as long as it has subscribers, and wakes them all
 * once it is in, since commits in between woke nobody.
 */
export interface WakeFeed {
  start(): Promise<{ close(): Promise<void> } | undefined>;
}

/**
 * Subscribers per key, woken by the store on its own commits (`wake`), by a
 * feed (notifications from other processes), or all at once (`wakeAll`,
 * after a reconnect that may have lost notifications).
 */
export class WakeHub implements WakeSource {
  /** First delay before a failed feed is started again (ms). */
  static readonly FEED_RETRY_MIN_MS = 500;
  /** Longest delay between two starts of a failed feed (ms). */
  static readonly FEED_RETRY_MAX_MS = 30_000;
  readonly #complete: boolean;
  readonly #feed: WakeFeed | undefined;
  readonly #subscribers = new Map<string, Set<Wake>>();
  #count = 0;
  #feeding: Promise<{ close(): Promise<void> } | undefined> | undefined;
  #closed = false;
  #retryTimer: unknown;
  #retryDelay = WakeHub.FEED_RETRY_MIN_MS;

  constructor(complete: boolean, feed?: WakeFeed) {
    this.#complete = complete;
    this.#feed = feed;
  }

  /** Whether nobody watches (the store can skip work meant for watchers). */
  get idle(): boolean {
    return this.#count === 0;
  }

  async subscribe(key: string, wake: Wake): Promise<WakeSubscription> {
    if (this.#closed) {
      return { complete: this.#complete, closed: true, close: () => Promise.resolve() };
    }
    let set = this.#subscribers.get(key);
    if (set === undefined) this.#subscribers.set(key, set = new Set());
    set.add(wake);
    if (this.#count++ === 0 && this.#feed !== undefined) this.#startFeed(false);
    const feeding = this.#feeding;
    const closed = () => this.#closed;
    let active = true;
    const leave = async () => {
      if (!active) return;
      active = false;
      const set = this.#subscribers.get(key);
      set?.delete(wake);
      if (set?.size === 0) this.#subscribers.delete(key);
      if (--this.#count === 0) await this.#stopFeed();
    };
    // A feed that failed to start yields undefined (the watcher polls).
    await feeding;
    return {
      complete: this.#complete,
      get closed() {
        return closed();
      },
      close: leave,
    };
  }

  /** Wakes the subscribers of `key`. */
  wake(key: string, seqno?: bigint): void {
    const set = this.#subscribers.get(key);
    if (set === undefined) return;
    for (const wake of set) wake(seqno);
  }

  /** Wakes every subscriber: they read again from what they expect next. */
  wakeAll(): void {
    for (const set of this.#subscribers.values()) for (const wake of set) wake();
  }

  /** Ends every subscription (the store closed) and releases the feed. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.wakeAll();
    await this.#stopFeed();
  }

  // Starts the feed; if it fails while someone still subscribes, schedules
  // the next start. Subscribers poll meanwhile (a feed-less hub is not
  // complete), so a failed feed costs delay, never a version; `wakeAll`
  // after a late start makes them read at once what they may have missed.
  #startFeed(late: boolean): void {
    const feeding = this.#feed!.start();
    this.#feeding = feeding;
    feeding.then((feed) => {
      if (this.#feeding !== feeding) return; // stopped meanwhile
      if (feed !== undefined) {
        this.#retryDelay = WakeHub.FEED_RETRY_MIN_MS;
        if (late) this.wakeAll();
        return;
      }
      if (this.#count === 0 || this.#closed) return;
      const delay = this.#retryDelay;
      this.#retryDelay = Math.min(delay * 2, WakeHub.FEED_RETRY_MAX_MS);
      this.#retryTimer = host.setTimeout(() => {
        this.#retryTimer = undefined;
        if (this.#feeding !== feeding || this.#count === 0 || this.#closed) return;
        this.#startFeed(true);
      }, delay);
    }, () => {}); // a feed whose start rejects fails its subscribe instead
  }

  async #stopFeed(): Promise<void> {
    if (this.#retryTimer !== undefined) {
      host.clearTimeout(this.#retryTimer);
      this.#retryTimer = undefined;
    }
    const feeding = this.#feeding;
    this.#feeding = undefined;
    const feed = await feeding;
    await feed?.close();
  }
}
