// Leases on the plain Consensus interface (head, compareAndSet, truncate).
//
// A lease on key k is the head version of k: "held" by a holder, or
// "released". A grant is a compare-and-set of the next seqno; its seqno is
// the fencing token. The holder renews by compare-and-set of further
// versions; a contender takes over a held version only after seeing that
// same version (same seqno) unchanged for the holder's whole ttl on its own
// clock.
//
// ## Why two holders are never valid at once
//
// Assumption (the only one about time): every process's monotonic clock
// (`performance.now()`) runs at a rate within [1 - RHO, 1 + RHO] of real
// time, RHO = DRIFT_BOUND. Clocks need not agree on the time, only on how
// fast it passes. Nothing is assumed about message delays or pauses.
//
// Let H write version s (a grant or a renewal) by a compare-and-set that H
// sent at its local time h, real time t_h, and that committed at real time
// t_c. Then:
//
// 1. H's deadline for s is h + HOLD on H's clock, with
//    HOLD = ttl * (1 - RHO) / (1 + RHO) - MARGIN. It counts from BEFORE the
//    send, not from the reply: t_h <= t_c, whatever the delays.
// 2. H's clock runs at least 1 - RHO, so it reads h + HOLD no later than
//    real time t_h + HOLD / (1 - RHO) = t_h + ttl / (1 + RHO) - MARGIN / (1 - RHO).
//    From then on `signal` reads aborted (its getters compare the clock with
//    the deadline) and the deadline timer aborts it, unless a later version
//    of H's committed; that version gets its own deadline by the same rule.
// 3. A contender C that reads s starts its wait when that read RETURNS, at
//    real time t_r. The read returned s, so s had committed: t_r >= t_c >= t_h.
// 4. C sends its takeover compare-and-set of s + 1 only after its clock has
//    advanced ttl past that return, so at real time >= t_r + ttl / (1 + RHO)
//    >= t_h + ttl / (1 + RHO); its grant commits later still, and C's
//    acquireLease resolves later again.
// 5. By 2 and 4, H's signal reads aborted at least MARGIN / (1 - RHO) of real
//    time before C's grant can commit. The margin covers the abort event's
//    listeners running a little late (a busy event loop, timer granularity).
// 6. If H's renewal s + 1 commits instead, C's compare-and-set of s + 1
//    mismatches (one seqno, one winner) and C starts a fresh wait on the new
//    version; the argument repeats with H's new deadline. A renewal that
//    commits after H's deadline passed does not revive the lease: H checks
//    its deadline before it uses any reply, and an aborted signal stays
//    aborted.
// 7. Release: H aborts its signal, THEN sends the "released" version. A
//    contender can only take over a released version after reading it, so
//    after it committed, so after H's signal aborted.
// 8. Tokens rise: a grant is the compare-and-set of head + 1, and heads only
//    grow (truncation never removes the head), so each grant's seqno is
//    above every earlier version's, every earlier grant included.
//
// What this does not cover: a process paused between reading
// `signal.aborted === false` and acting on it can act after its deadline.
// No lease can prevent that; the fencing token is for exactly that case.
//
// Indeterminate compare-and-sets: every version carries the nonce of the
// acquireLease call that wrote it. After a compare-and-set that may have
// committed, the next read of the head tells: our nonce means ours. A grant
// of ours that shows up later is taken back by a renewal before it is
// handed to the caller (its deadline would count from a send whose time
// the caller cannot know for sure); a renewal of ours that shows up later
// extends the deadline from the FIRST send of that seqno, the earliest
// moment it can have committed.
import { ConsensusError } from "./errors.ts";
import type { Lease, LeaseOptions } from "./lease.ts";
import type { Consensus } from "./types.ts";
import { decodeLease, encodeLease } from "./_lease_record.ts";
import { host } from "./_runtime.ts";
import { checkKey } from "./_validate.ts";
import { wakeSourceOf, type WakeSubscription } from "./_wake.ts";

/** RHO: the bound on how far any clock's rate may stray from real time. */
export const DRIFT_BOUND = 0.01;
/** MARGIN, in milliseconds: slack between a holder's deadline and any takeover. */
export const SAFETY_MARGIN_MS = 25;
/** The shortest ttl: four margins, so a holder keeps at least half a ttl. */
export const MIN_TTL_MS = 4 * SAFETY_MARGIN_MS;
/** The longest ttl: the longest timer every runtime supports. */
export const MAX_TTL_MS = 2 ** 31 - 1;
const MAX_HOLDER_LENGTH = 256;
/** Renewals per ttl: a holder survives two lost renewals in a row. */
const RENEWALS_PER_TTL = 3;
/** Versions kept behind the head, and how often the log is cut back. */
const KEEP_VERSIONS = 3n;
const TRUNCATE_EVERY = 8n;
/**
 * Store failures in a row that a waiting acquireLease rides out (backing off
 * a poll interval, then two, then four) before it rejects.
 */
const MAX_FAILURES = 4;
/** Attempts to write the released version. */
const HANDOVER_ATTEMPTS = 3;

/** HOLD: how long after sending a write that committed its holder may trust it. */
export function holdMs(ttlMs: number): number {
  return ttlMs * (1 - DRIFT_BOUND) / (1 + DRIFT_BOUND) - SAFETY_MARGIN_MS;
}

/**
 * The clock and timers a lease runs on: the process's monotonic clock by
 * default; tests inject a simulated one.
 */
export interface LeaseClock {
  /** Milliseconds on a monotonic clock. */
  now(): number;
  /** Runs `fn` once, `ms` milliseconds of this clock from now. */
  setTimer(fn: () => void, ms: number): unknown;
  /** Cancels a timer from `setTimer`. */
  clearTimer(id: unknown): void;
}

/** `performance.now()` and the runtime's timers. */
export const systemClock: LeaseClock = {
  now: () => host.performance.now(),
  setTimer: (fn, ms) => host.setTimeout(fn, ms),
  clearTimer: (id) => host.clearTimeout(id),
};

interface Settings {
  readonly key: string;
  readonly quoted: string;
  readonly holder: string;
  readonly ttlMs: number;
  readonly pollMs: number;
  readonly holdMs: number;
  readonly signal: AbortSignal | undefined;
}

function describe(value: unknown): string {
  if (value === null) return "null";
  if (typeof value === "string") return JSON.stringify(value.slice(0, 40));
  if (typeof value === "object") return value.constructor?.name ?? "object";
  return `${typeof value} ${String(value)}`;
}

function settingsFor(store: unknown, key: string, options: unknown): Settings {
  checkKey("acquire lease", key);
  const op = `Cannot acquire lease ${JSON.stringify(key)}`;
  const s = store as Partial<Consensus> | null;
  if (
    s === null || typeof s !== "object" || typeof s.head !== "function" ||
    typeof s.compareAndSet !== "function" || typeof s.truncate !== "function"
  ) {
    throw new TypeError(`${op}: store must be a Consensus, got ${describe(store)}`);
  }
  if (options === null || typeof options !== "object") {
    throw new TypeError(`${op}: options must be an object, got ${describe(options)}`);
  }
  const { holder, ttlMs, signal, pollIntervalMs } = options as Partial<LeaseOptions>;
  if (typeof holder !== "string") {
    throw new TypeError(`${op}: holder must be a string, got ${describe(holder)}`);
  }
  if (holder.length === 0) throw new RangeError(`${op}: holder must not be empty`);
  if (holder.length > MAX_HOLDER_LENGTH || !holder.isWellFormed()) {
    throw new RangeError(
      `${op}: holder must be well-formed text of at most ${MAX_HOLDER_LENGTH} characters, got ${
        describe(holder)
      } (${holder.length} characters)`,
    );
  }
  if (typeof ttlMs !== "number") {
    throw new TypeError(`${op}: ttlMs must be a number, got ${describe(ttlMs)}`);
  }
  if (!Number.isInteger(ttlMs) || ttlMs <= 0) {
    throw new RangeError(`${op}: ttlMs must be a positive integer, got ${ttlMs}`);
  }
  if (ttlMs < MIN_TTL_MS) {
    throw new RangeError(
      `${op}: ttlMs must be at least ${MIN_TTL_MS} (four times the ${SAFETY_MARGIN_MS} ms ` +
        `safety margin), got ${ttlMs}`,
    );
  }
  if (ttlMs > MAX_TTL_MS) {
    throw new RangeError(`${op}: ttlMs must be at most ${MAX_TTL_MS}, got ${ttlMs}`);
  }
  const pollMs = pollIntervalMs ?? Math.min(1000, Math.max(10, Math.floor(ttlMs / 10)));
  if (typeof pollMs !== "number") {
    throw new TypeError(`${op}: pollIntervalMs must be a number, got ${describe(pollMs)}`);
  }
  if (!Number.isInteger(pollMs) || pollMs <= 0 || pollMs > ttlMs) {
    throw new RangeError(
      `${op}: pollIntervalMs must be a positive integer no greater than ttlMs, got ${pollMs}`,
    );
  }
  if (
    signal !== undefined &&
    (signal === null || typeof signal !== "object" ||
      typeof (signal as AbortSignal).addEventListener !== "function")
  ) {
    throw new TypeError(`${op}: signal must be an AbortSignal, got ${describe(signal)}`);
  }
  return {
    key,
    quoted: JSON.stringify(key),
    holder,
    ttlMs,
    pollMs,
    holdMs: holdMs(ttlMs),
    signal,
  };
}

/** Thrown inside an acquisition its caller has given up on; never seen outside. */
const STOPPED: unique symbol = Symbol("stopped");

/**
 * {@linkcode acquireLease} on a given clock (tests inject a simulated one).
 */
export function acquireLeaseWith(
  store: Consensus,
  key: string,
  options: LeaseOptions,
  clock: LeaseClock,
): Promise<Lease> {
  let settings: Settings;
  try {
    settings = settingsFor(store, key, options);
  } catch (error) {
    return Promise.reject(error);
  }
  const signal = settings.signal;
  if (signal?.aborted) return Promise.reject(signal.reason);
  const acquisition = new Acquisition(store, settings, clock);
  const won = acquisition.run();
  if (signal === undefined) return won;
  return new Promise<Lease>((resolve, reject) => {
    const onAbort = () => {
      acquisition.stop();
      reject(signal.reason);
    };
    signal.addEventListener("abort", onAbort, { once: true });
    won.then(
      (lease) => {
        signal.removeEventListener("abort", onAbort);
        // Granted after the caller gave up: hand it straight back.
        if (signal.aborted) lease.release().catch(() => {});
        else resolve(lease);
      },
      (error) => {
        signal.removeEventListener("abort", onAbort);
        if (error !== STOPPED) reject(error);
      },
    );
  });
}

/** One acquireLease call: reads, waits and competes until it holds the lease. */
class Acquisition {
  readonly #store: Consensus;
  readonly #s: Settings;
  readonly #clock: LeaseClock;
  readonly #nonce = host.crypto.randomUUID();
  #stopped = false;
  #wake: (() => void) | undefined;
  /** Ends a wait for change early: a wake-up came (see #waitForChange). */
  #changed: (() => void) | undefined;
  /** A wake-up came since the last read began: the next wait returns at once. */
  #dirty = false;
  /** The highest seqno a read returned; wake-ups at or below it are old news. */
  #seen = -1n;
  /**
   * The highest seqno of ours whose compare-and-set was indeterminate, while
   * it may still be written (until a read shows that seqno taken).
   */
  #unsettled: bigint | undefined;
  /** Store failures in a row. */
  #failures = 0;
  /** The held version being timed: its seqno, when a read first returned it, its ttl. */
  #watched: { seqno: bigint; since: number; ttlMs: number } | undefined;

  constructor(store: Consensus, settings: Settings, clock: LeaseClock) {
    this.#store = store;
    this.#s = settings;
    this.#clock = clock;
  }

  stop(): void {
    this.#stopped = true;
    this.#wake?.();
    this.#changed?.();
  }

  async run(): Promise<Lease> {
    let subscription: WakeSubscription | undefined;
    try {
      // Subscribe before the first read, so that a commit after that read
      // wakes this contender (for a listening store: LISTEN is in effect).
      // A source that fails leaves the contender polling, as without one.
      // Without a source, not even an await: the steps stay as they were.
      const source = wakeSourceOf(this.#store);
      if (source !== undefined) {
        subscription = await source.subscribe(this.#s.key, (seqno) => this.#woken(seqno))
          .catch(() => undefined);
      }
      return await this.#compete();
    } catch (error) {
      if (
        error === STOPPED || this.#unsettled === undefined || !(error instanceof ConsensusError)
      ) {
        throw error;
      }
      throw new ConsensusError(
        `Cannot acquire lease ${this.#s.quoted}: ${error.message}; a grant sent earlier may ` +
          `have been written: nobody renews it, so it is handed over ${this.#s.ttlMs} ms after ` +
          `it was written`,
        { determinate: false, code: error.code, cause: error },
      );
    } finally {
      // Not awaited: the outcome is known, and a listening store's UNLISTEN
      // must not delay the grant it no longer concerns.
      subscription?.close().catch(() => {});
    }
  }

  #woken(seqno?: bigint): void {
    if (seqno !== undefined && seqno <= this.#seen) return;
    this.#dirty = true;
    this.#changed?.();
  }

  async #compete(): Promise<Lease> {
    const { key, holder, ttlMs } = this.#s;
    for (;;) {
      if (this.#stopped) throw STOPPED;
      let head;
      // A wake-up from here on calls for another read after this one.
      this.#dirty = false;
      try {
        head = await this.#store.head(key);
        this.#failures = 0;
      } catch (error) {
        await this.#backOff(error);
        continue;
      }
      // The wait starts when the read RETURNS (argument, step 3).
      const readAt = this.#clock.now();
      if (this.#stopped) throw STOPPED;
      let next = 0n;
      if (head !== undefined) {
        const record = decodeLease("acquire lease", key, head);
        next = head.seqno + 1n;
        if (head.seqno > this.#seen) this.#seen = head.seqno;
        if (this.#unsettled !== undefined && head.seqno >= this.#unsettled) {
          this.#unsettled = undefined; // taken: ours, seen below, or never to be written
        }
        if (record.nonce === this.#nonce && record.state === "held") {
          // A grant of ours that was indeterminate has landed: renew it
          // before trusting it.
          const lease = await this.#renewOwn(next, record.grant);
          if (lease !== undefined) return lease;
          continue;
        }
        if (record.state === "held") {
          if (this.#watched?.seqno !== head.seqno) {
            this.#watched = { seqno: head.seqno, since: readAt, ttlMs: record.ttlMs };
          }
          const left = this.#watched.since + this.#watched.ttlMs - this.#clock.now();
          if (left > 0) {
            await this.#waitForChange(Math.min(left, this.#s.pollMs));
            continue;
          }
          // Unchanged for the holder's whole ttl on our clock (step 4).
        }
      }
      const sentAt = this.#clock.now();
      const data = encodeLease({ holder, state: "held", ttlMs, grant: next, nonce: this.#nonce });
      let outcome;
      try {
        outcome = await this.#store.compareAndSet(key, { seqno: next, data });
      } catch (error) {
        // If it may have been written, the next read of the head says.
        if (error instanceof ConsensusError && !error.determinate) this.#unsettle(next);
        await this.#backOff(error);
        continue;
      }
      this.#failures = 0;
      if (outcome === "mismatch") continue;
      // A reply slower than HOLD leaves nothing to trust: renew first.
      if (this.#clock.now() >= sentAt + this.#s.holdMs) {
        const lease = await this.#renewOwn(next + 1n, next);
        if (lease !== undefined) return lease;
        continue;
      }
      return new HeldLease(this.#store, this.#s, this.#clock, this.#nonce, next, next, sentAt);
    }
  }

  /** Takes back a grant of ours (token `grant`) by writing `seqno` over it. */
  async #renewOwn(seqno: bigint, grant: bigint): Promise<Lease | undefined> {
    const { key, holder, ttlMs } = this.#s;
    const sentAt = this.#clock.now();
    const data = encodeLease({ holder, state: "held", ttlMs, grant, nonce: this.#nonce });
    let outcome;
    try {
      outcome = await this.#store.compareAndSet(key, { seqno, data });
    } catch (error) {
      if (error instanceof ConsensusError && !error.determinate) this.#unsettle(seqno);
      await this.#backOff(error);
      return undefined;
    }
    this.#failures = 0;
    if (outcome === "mismatch" || this.#clock.now() >= sentAt + this.#s.holdMs) return undefined;
    return new HeldLease(this.#store, this.#s, this.#clock, this.#nonce, grant, seqno, sentAt);
  }

  #unsettle(seqno: bigint): void {
    if (this.#unsettled === undefined || seqno > this.#unsettled) this.#unsettled = seqno;
  }

  /** Rides out a store failure, or rethrows it after MAX_FAILURES in a row. */
  async #backOff(error: unknown): Promise<void> {
    if (!(error instanceof ConsensusError) || ++this.#failures >= MAX_FAILURES) throw error;
    await this.#sleep(this.#s.pollMs * 2 ** (this.#failures - 1));
    if (this.#stopped) throw STOPPED;
  }

  // The one place a contender waits for the key to change: until a wake-up
  // from the store (its own commits; for PostgresConsensus, notifications
  // from stores with `notify: true`; see src/_wake.ts) says a version above
  // the last one read may be there, or `ms` (the poll interval, or what is
  // left of the ttl), whichever comes first.
  //
  // Why wake-ups change no safety argument: a wake-up carries no data and
  // grants nothing. It only ends this wait early, and the loop then READS
  // the head, as after a poll. The ttl wait on a held version counts from
  // when a read first returned that seqno (#watched.since), and only a read
  // of a different seqno restarts it; a read sooner than the poll interval
  // leaves `since` as it was, so a takeover still needs the same seqno seen
  // unchanged for a whole ttl on this process's clock (step 4). A released
  // version is taken over, as before, only after a read returned it, so
  // after it committed, so after the holder's signal aborted (step 7). A
  // lost or late wake-up only makes the next read wait for the timer, as
  // without wake-ups; a spurious or duplicated one costs one read. So the
  // poll stays: the fallback for stores and writers that do not notify, and
  // the safety net for lost notifications.
  #waitForChange(ms: number): Promise<void> {
    if (this.#dirty || this.#stopped) return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        this.#changed = undefined;
        resolve();
      };
      const timer = this.#clock.setTimer(done, ms);
      this.#changed = () => {
        this.#clock.clearTimer(timer);
        done();
      };
    });
  }

  #sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        this.#wake = undefined;
        resolve();
      };
      const timer = this.#clock.setTimer(done, ms);
      this.#wake = () => {
        this.#clock.clearTimer(timer);
        done();
      };
    });
  }
}

type RenewOutcome = "renewed" | "retry" | "over";

/** A held lease: renews itself, aborts its signal when unsure, hands over on release. */
class HeldLease implements Lease {
  readonly key: string;
  readonly holder: string;
  readonly token: bigint;
  readonly signal: AbortSignal;
  readonly #store: Consensus;
  readonly #s: Settings;
  readonly #clock: LeaseClock;
  readonly #nonce: string;
  readonly #controller = new host.AbortController();
  /** The last version of ours known to have committed. */
  #seqno: bigint;
  /** When that version's compare-and-set was sent. */
  #sentAt: number;
  #deadline: number;
  /** The first send of each seqno tried since `#seqno` (step 1 for late arrivals). */
  readonly #firstSent = new Map<bigint, number>();
  #ended = false;
  /** Nothing to hand over: the key is someone else's, or the store refused. */
  #gone = false;
  #released = false;
  #handoverError: unknown;
  #deadlineTimer: unknown;
  #wake: (() => void) | undefined;
  #truncating = false;
  readonly #done: Promise<void>;

  constructor(
    store: Consensus,
    settings: Settings,
    clock: LeaseClock,
    nonce: string,
    token: bigint,
    seqno: bigint,
    sentAt: number,
  ) {
    this.#store = store;
    this.#s = settings;
    this.#clock = clock;
    this.#nonce = nonce;
    this.key = settings.key;
    this.holder = settings.holder;
    this.token = token;
    this.#seqno = seqno;
    this.#sentAt = sentAt;
    this.#deadline = sentAt + settings.holdMs;
    this.signal = clockedSignal(this.#controller.signal, () => this.#expireIfDue());
    this.#armDeadline();
    this.#truncate();
    this.#done = this.#run();
  }

  release(): Promise<void> {
    if (!this.#released) {
      this.#released = true;
      this.#end(new Error(`Lease ${this.#s.quoted} was released by ${this.holder}`));
    }
    return this.#done.then(() => {
      if (this.#handoverError !== undefined) throw this.#handoverError;
    });
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.release();
  }

  /** Aborts the signal once the deadline has passed; true when the lease is over. */
  #expireIfDue(): boolean {
    if (!this.#ended && this.#clock.now() >= this.#deadline) {
      this.#end(
        new Error(
          `Lease ${this.#s.quoted} of ${this.holder} expired: no renewal committed in time`,
        ),
      );
    }
    return this.#ended;
  }

  #end(reason: Error): void {
    if (this.#ended) return;
    this.#ended = true;
    this.#clock.clearTimer(this.#deadlineTimer);
    this.#controller.abort(reason);
    this.#wake?.();
  }

  #armDeadline(): void {
    this.#clock.clearTimer(this.#deadlineTimer);
    // A timer may fire a little early against the clock (runtimes round
    // delays; floating point): then it is armed again, at least 1 ms out,
    // rather than trusted. Late by up to that, the margin covers it.
    const left = this.#deadline - this.#clock.now();
    this.#deadlineTimer = this.#clock.setTimer(() => {
      if (!this.#expireIfDue()) this.#armDeadline();
    }, Math.max(1, Math.ceil(left)));
  }

  async #run(): Promise<void> {
    const every = this.#s.ttlMs / RENEWALS_PER_TTL;
    let next = this.#sentAt + every;
    while (!this.#expireIfDue()) {
      await this.#sleepUntil(next);
      if (this.#expireIfDue()) break;
      const outcome = await this.#renew();
      if (outcome === "over") break;
      next = outcome === "renewed" ? this.#sentAt + every : this.#clock.now() + every / 4;
    }
    if (!this.#gone) await this.#handOver();
  }

  #record(state: "held" | "released"): Uint8Array {
    const { holder, ttlMs } = this.#s;
    return encodeLease({ holder, state, ttlMs, grant: this.token, nonce: this.#nonce });
  }

  async #renew(): Promise<RenewOutcome> {
    const seqno = this.#seqno + 1n;
    const sentAt = this.#clock.now();
    if (!this.#firstSent.has(seqno)) this.#firstSent.set(seqno, sentAt);
    let outcome;
    try {
      outcome = await this.#store.compareAndSet(this.key, { seqno, data: this.#record("held") });
    } catch (error) {
      // A store failure may pass; retry until the deadline. It may also
      // have committed: the next attempt mismatches and the read tells.
      if (error instanceof ConsensusError) return this.#expireIfDue() ? "over" : "retry";
      return this.#refused(error);
    }
    if (outcome === "committed") {
      this.#adopt(seqno, sentAt);
      return this.#ended ? "over" : "renewed";
    }
    return await this.#reconcile();
  }

  /** `seqno` is ours and committed; its write was sent at `sentAt` or later. */
  #adopt(seqno: bigint, sentAt: number): void {
    this.#seqno = seqno;
    this.#firstSent.clear();
    this.#truncate();
    // Deadline first: a reply that arrives after it revives nothing (step 6).
    if (this.#expireIfDue()) return;
    this.#sentAt = sentAt;
    this.#deadline = sentAt + this.#s.holdMs;
    this.#armDeadline();
  }

  /** After a mismatch: was it a write of ours that landed late, or someone else? */
  async #reconcile(): Promise<RenewOutcome> {
    let head;
    try {
      head = await this.#store.head(this.key);
    } catch (error) {
      if (error instanceof ConsensusError) return this.#expireIfDue() ? "over" : "retry";
      return this.#refused(error);
    }
    let why: string;
    if (head === undefined) why = "the key was emptied";
    else {
      try {
        const record = decodeLease("renew lease", this.key, head);
        const first = this.#firstSent.get(head.seqno);
        if (record.nonce === this.#nonce && record.state === "held" && first !== undefined) {
          this.#adopt(head.seqno, first);
          return this.#ended ? "over" : "renewed";
        }
        why = `version ${head.seqno} was written by ${JSON.stringify(record.holder)}`;
      } catch (error) {
        why = (error as Error).message;
      }
    }
    this.#gone = true;
    this.#end(new Error(`Lease ${this.#s.quoted} of ${this.holder} was lost: ${why}`));
    return "over";
  }

  /** The store refused outright (closed, or a bug): nothing more can be written. */
  #refused(error: unknown): "over" {
    this.#gone = true;
    const reason = new Error(
      `Lease ${this.#s.quoted} of ${this.holder} ended: the store refused to renew it: ${
        (error as Error)?.message ?? String(error)
      }`,
      { cause: error },
    );
    this.#end(reason);
    return "over";
  }

  /** Writes the released version over our last one (the signal is already aborted). */
  async #handOver(): Promise<void> {
    let failure: unknown;
    for (let attempt = 0; attempt < HANDOVER_ATTEMPTS; attempt++) {
      if (attempt > 0) await this.#sleepUntil(this.#clock.now() + 20 * 2 ** attempt);
      const seqno = this.#seqno + 1n;
      try {
        const outcome = await this.#store.compareAndSet(this.key, {
          seqno,
          data: this.#record("released"),
        });
        if (outcome === "committed") {
          this.#seqno = seqno;
          return;
        }
        const head = await this.#store.head(this.key);
        if (head === undefined || head.seqno <= this.#seqno) return;
        const record = decodeLease("release lease", this.key, head);
        if (record.nonce !== this.#nonce) return; // someone else's now
        if (record.state === "released") return; // an earlier attempt landed
        this.#seqno = head.seqno; // a renewal of ours landed late
      } catch (error) {
        if (!(error instanceof ConsensusError)) return;
        failure = error;
      }
    }
    if (this.#released) this.#handoverError = failure;
  }

  #truncate(): void {
    const seqno = this.#seqno;
    if (this.#truncating || seqno % TRUNCATE_EVERY !== 0n || seqno < KEEP_VERSIONS) return;
    this.#truncating = true;
    // Off the renewal path: a slow truncate must not delay a renewal.
    this.#store.truncate(this.key, seqno - KEEP_VERSIONS).catch(() => {}).finally(() => {
      this.#truncating = false;
    });
  }

  #sleepUntil(at: number): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        this.#wake = undefined;
        resolve();
      };
      const timer = this.#clock.setTimer(done, Math.max(0, at - this.#clock.now()));
      this.#wake = () => {
        this.#clock.clearTimer(timer);
        done();
      };
    });
  }
}

/**
 * Makes `signal`'s `aborted`, `reason` and `throwIfAborted()` check the
 * deadline first, so that a read is never stale: after a pause the runtime
 * may run other callbacks before the overdue deadline timer.
 */
function clockedSignal(signal: AbortSignal, check: () => void): AbortSignal {
  for (const name of ["aborted", "reason"] as const) {
    const getter = inherited(signal, name)?.get;
    if (getter === undefined) continue;
    Object.defineProperty(signal, name, {
      configurable: true,
      enumerable: true,
      get: () => {
        check();
        return getter.call(signal);
      },
    });
  }
  const throwIfAborted = inherited(signal, "throwIfAborted")?.value;
  if (typeof throwIfAborted === "function") {
    Object.defineProperty(signal, "throwIfAborted", {
      configurable: true,
      writable: true,
      value: () => {
        check();
        throwIfAborted.call(signal);
      },
    });
  }
  return signal;
}

function inherited(object: object, name: string): PropertyDescriptor | undefined {
  for (let o = Object.getPrototypeOf(object); o !== null; o = Object.getPrototypeOf(o)) {
    const descriptor = Object.getOwnPropertyDescriptor(o, name);
    if (descriptor !== undefined) return descriptor;
  }
  return undefined;
}
