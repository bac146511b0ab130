/**
 * Simulated time for lease tests: processes whose clocks drift, that pause
 * (everything they would run waits, as in a stop-the-world GC pause or
 * SIGSTOP) or die (nothing they would run ever runs), talking to a shared
 * store over a network with delays and failures. Deterministic for a seed,
 * and fast: a minute of leases runs in well under a second.
 *
 * - {@linkcode VirtualTime}: the real time of the simulation and its event queue.
 * - {@linkcode SimProcess}: one process: its clock (rate and offset), pauses, death.
 * - {@linkcode SimStore}: a {@linkcode Consensus} as that process sees it.
 *
 * @module
 */
import { type CasResult, type Consensus, ConsensusError, type VersionedData } from "../mod.ts";
import type { LeaseClock } from "../src/_lease.ts";
import { provideWakeSource, wakeSourceOf } from "../src/_wake.ts";

interface Event {
  at: number;
  seq: number;
  fn: () => void;
}

/** The simulation's real time and its queue of events. */
export class VirtualTime {
  /** Real time, in milliseconds. */
  now = 0;
  #heap: Event[] = [];
  #seq = 0;
  #channel = new MessageChannel();
  #settled: (() => void)[] = [];

  constructor() {
    this.#channel.port1.onmessage = () => this.#settled.shift()?.();
  }

  /** Runs `fn` at real time `at` (not before now). */
  schedule(at: number, fn: () => void): void {
    const event = { at: Math.max(at, this.now), seq: this.#seq++, fn };
    const heap = this.#heap;
    heap.push(event);
    for (let i = heap.length - 1; i > 0;) {
      const parent = (i - 1) >> 1;
      if (before(heap[parent], heap[i])) break;
      [heap[parent], heap[i]] = [heap[i], heap[parent]];
      i = parent;
    }
  }

  #pop(): Event | undefined {
    const heap = this.#heap;
    const top = heap[0];
    const last = heap.pop();
    if (heap.length > 0 && last !== undefined) {
      heap[0] = last;
      for (let i = 0;;) {
        const l = 2 * i + 1, r = l + 1;
        let m = i;
        if (l < heap.length && before(heap[l], heap[m])) m = l;
        if (r < heap.length && before(heap[r], heap[m])) m = r;
        if (m === i) break;
        [heap[m], heap[i]] = [heap[i], heap[m]];
        i = m;
      }
    }
    return top;
  }

  /** Lets every promise chain started so far run to its next wait (one macrotask turn). */
  settle(): Promise<void> {
    return new Promise((resolve) => {
      this.#settled.push(resolve);
      this.#channel.port2.postMessage(0);
    });
  }

  /** Runs events in order of time until `end` (or until `until()` holds), settling after each. */
  async runUntil(end: number, until?: () => boolean): Promise<void> {
    await this.settle();
    while (this.#heap.length > 0 && this.#heap[0].at <= end) {
      if (until?.()) return;
      const event = this.#pop()!;
      this.now = event.at;
      event.fn();
      await this.settle();
    }
    if (!until?.()) this.now = Math.max(this.now, end);
  }

  /** Frees the channel used to settle. */
  close(): void {
    this.#channel.port1.close();
    this.#channel.port2.close();
  }
}

function before(a: Event, b: Event): boolean {
  return a.at < b.at || (a.at === b.at && a.seq < b.seq);
}

/** One simulated process: a drifting clock, pauses and death. */
export class SimProcess {
  readonly #vt: VirtualTime;
  #pausedUntil = -Infinity;
  readonly #pauses: [number, number][] = [];
  #dead = false;
  /** Its monotonic clock: `offset + rate * real time`; the lease's clock. */
  readonly clock: LeaseClock;

  /**
   * @param vt The simulation.
   * @param name For reports.
   * @param rate How fast its clock runs against real time.
   * @param offset Its clock's reading at real time 0.
   */
  constructor(vt: VirtualTime, readonly name: string, readonly rate = 1, readonly offset = 0) {
    this.#vt = vt;
    this.clock = {
      now: () => this.offset + this.rate * vt.now,
      setTimer: (fn, ms) => this.after(ms / this.rate, fn),
      clearTimer: (handle) => {
        if (handle && typeof handle === "object") {
          (handle as { cancelled: boolean }).cancelled = true;
        }
      },
    };
  }

  get dead(): boolean {
    return this.#dead;
  }

  /** Runs `fn` on this process `realMs` from now: later if paused then, never if dead. */
  after(realMs: number, fn: () => void): { cancelled: boolean } {
    const handle = { cancelled: false };
    this.#vt.schedule(this.#vt.now + realMs, () => this.run(() => handle.cancelled || fn()));
    return handle;
  }

  /** Runs `fn` on this process now, or when its pause ends, or never if it is dead. */
  run(fn: () => void): void {
    if (this.#dead) return;
    if (this.#vt.now < this.#pausedUntil) {
      this.#vt.schedule(this.#pausedUntil, () => this.run(fn));
      return;
    }
    fn();
  }

  /** Sleeps on this process for `realMs` of real time. */
  sleep(realMs: number): Promise<void> {
    return new Promise((resolve) => this.after(realMs, resolve));
  }

  /** Stops the process for `realMs` from now: a GC pause, SIGSTOP, a VM migration. */
  pause(realMs: number): void {
    const until = Math.max(this.#pausedUntil, this.#vt.now + realMs);
    this.#pauses.push([this.#vt.now, until]);
    this.#pausedUntil = until;
  }

  /** Whether the process was paused at some moment in `(from, to]`. */
  pausedBetween(from: number, to: number): boolean {
    return this.#pauses.some(([start, end]) => start < to && end > from);
  }

  /** Kills the process: it never runs anything again (and never releases). */
  kill(): void {
    this.#dead = true;
  }
}

/** Network and server behaviour for a {@linkcode SimStore}. */
export interface NetworkOptions {
  /** A number in [0, 1); the simulation's random source. */
  random: () => number;
  /** One-way delay of a request in real ms, drawn per message. @default {0.1 to 2 ms} */
  delay?: () => number;
  /** One-way delay of a reply in real ms. @default {delay} */
  replyDelay?: () => number;
  /** Chance that an operation fails determinately (not applied). @default {0} */
  determinate?: number;
  /** Chance that an operation fails indeterminately (a write applied or not, at random). @default {0} */
  indeterminate?: number;
  /** Chance that a failed write is applied much later, after its error was reported. @default {0} */
  late?: number;
  /** How long a partitioned call waits before it fails indeterminately (the store's timeout). @default {500} */
  timeoutMs?: number;
  /**
   * Pass on the shared store's wake-ups (src/_wake.ts) to this process, each
   * after a one-way delay, as notifications would be; none arrive while
   * partitioned (lost), and they are not `complete`, as with Postgres.
   * @default {SimStore.wakesByDefault}
   */
  wakes?: boolean;
}

/** A shared store as one {@linkcode SimProcess} sees it across the network. */
export class SimStore implements Consensus {
  /**
   * `wakes` for stores whose options leave it out: lets a test run rounds
   * built elsewhere (torture/lease_round.ts) with wake-ups.
   */
  static wakesByDefault = false;
  readonly #inner: Consensus;
  readonly #process: SimProcess;
  readonly #vt: VirtualTime;
  readonly #net: Required<NetworkOptions>;
  /** While set, requests never arrive and calls time out: a partition. */
  partitioned = false;
  /**
   * Faults for the next writes, in order, before any random ones: a lost
   * reply after the write was applied, or before; applied after its error;
   * refused.
   */
  readonly scripted: ("applied" | "lost" | "late" | "refused")[] = [];
  #closed = false;

  constructor(inner: Consensus, process: SimProcess, vt: VirtualTime, net: NetworkOptions) {
    this.#inner = inner;
    this.#process = process;
    this.#vt = vt;
    const delay = net.delay ?? (() => 0.1 + 1.9 * net.random());
    this.#net = {
      delay,
      replyDelay: delay,
      determinate: 0,
      indeterminate: 0,
      late: 0,
      timeoutMs: 500,
      wakes: SimStore.wakesByDefault,
      ...net,
    };
    const source = this.#net.wakes ? wakeSourceOf(inner) : undefined;
    if (source !== undefined) {
      provideWakeSource(this, {
        subscribe: async (key, wake) => {
          const inner = await source.subscribe(key, (seqno) => {
            if (this.partitioned || this.#closed) return;
            vt.schedule(vt.now + this.#net.delay(), () => process.run(() => wake(seqno)));
          });
          return {
            complete: false,
            get closed() {
              return inner.closed;
            },
            close: () => inner.close(),
          };
        },
      });
    }
  }

  #call<T>(write: boolean, run: () => Promise<T>): Promise<T> {
    if (this.#closed) return Promise.reject(new TypeError("Cannot use the store: it is closed"));
    const net = this.#net;
    const vt = this.#vt;
    return new Promise<T>((resolve, reject) => {
      const reply = (settle: () => void) =>
        vt.schedule(vt.now + net.replyDelay(), () => this.#process.run(settle));
      if (this.partitioned) {
        vt.schedule(
          vt.now + net.timeoutMs,
          () =>
            this.#process.run(() =>
              reject(new ConsensusError("simulated timeout (partition)", { determinate: false }))
            ),
        );
        return;
      }
      const fate = (write ? this.scripted.shift() : undefined) ?? this.#fate(write);
      const arrive = vt.now + net.delay();
      if (fate === "refused") {
        vt.schedule(
          arrive,
          () =>
            reply(() =>
              reject(new ConsensusError("simulated determinate failure", { determinate: true }))
            ),
        );
        return;
      }
      if (fate !== "ok") {
        const indeterminate = () =>
          reject(new ConsensusError("simulated lost reply", { determinate: false }));
        vt.schedule(arrive, () => {
          if (fate === "applied") run().catch(() => {});
          reply(indeterminate);
        });
        // Applied after the error was reported: a statement that outlived its timeout.
        if (fate === "late") {
          vt.schedule(arrive + 20 + 200 * net.random(), () => run().catch(() => {}));
        }
        return;
      }
      vt.schedule(arrive, () => {
        run().then(
          (value) => reply(() => resolve(value)),
          (error) => reply(() => reject(error)),
        );
      });
    });
  }

  #fate(write: boolean): "ok" | "refused" | "applied" | "lost" | "late" {
    const net = this.#net;
    const roll = net.random();
    if (roll < net.determinate) return "refused";
    if (roll >= net.determinate + net.indeterminate) return "ok";
    if (!write || net.random() < 0.5) return "lost";
    return net.random() < net.late ? "late" : "applied";
  }

  head(key: string): Promise<VersionedData | undefined> {
    return this.#call(false, () => this.#inner.head(key));
  }
  compareAndSet(key: string, next: VersionedData): Promise<CasResult> {
    const copy = { seqno: next.seqno, data: next.data.slice() };
    return this.#call(true, () => this.#inner.compareAndSet(key, copy));
  }
  scan(key: string, from: bigint, limit?: number): Promise<VersionedData[]> {
    return this.#call(false, () => this.#inner.scan(key, from, limit));
  }
  truncate(key: string, seqno: bigint): Promise<number> {
    return this.#call(true, () => this.#inner.truncate(key, seqno));
  }
  listKeys(): AsyncIterable<string> {
    return this.#inner.listKeys();
  }
  close(): Promise<void> {
    this.#closed = true;
    return Promise.resolve();
  }
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}

/** A small seeded random source (mulberry32). */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
