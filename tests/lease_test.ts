// Leases in simulated time (torture/lease_sim.ts): processes with drifting
// clocks, pauses, deaths and a network with delays and failures, around a
// shared MemoryConsensus. Deterministic and fast; real-time cases at the end.
import {
  assert,
  assertEquals,
  assertInstanceOf,
  assertRejects,
  assertStringIncludes,
} from "@std/assert";
import {
  acquireLease,
  type CasResult,
  type Consensus,
  ConsensusError,
  type Lease,
  MemoryConsensus,
  type VersionedData,
} from "../mod.ts";
import { acquireLeaseWith, DRIFT_BOUND, holdMs, SAFETY_MARGIN_MS } from "../src/_lease.ts";
import type { LeaseOptions } from "../src/lease.ts";
import { checkTenures, type Tenure } from "../torture/lease_checker.ts";
import { runLeaseRound } from "../torture/lease_round.ts";
import { seededRandom, SimProcess, SimStore, VirtualTime } from "../torture/lease_sim.ts";

// Bigints and numbers both; the offline stand-in for @std/assert has no assertGreater.
function assertGreater<T extends number | bigint>(actual: T, floor: T, message = ""): void {
  assert(actual > floor, `${message}: expected ${actual} > ${floor}`);
}
function assertLess<T extends number | bigint>(actual: T, ceiling: T, message = ""): void {
  assert(actual < ceiling, `${message}: expected ${actual} < ${ceiling}`);
}

const TTL = 100;
const POLL = 10;
const decoder = new TextDecoder();

/** The shared store, recording the real (virtual) time of every commit. */
class Recorded extends MemoryConsensus {
  readonly commits: { at: number; seqno: bigint; record: Record<string, unknown> }[] = [];
  /** Head reads, by real time. */
  readonly reads: number[] = [];
  constructor(readonly vt: VirtualTime) {
    super();
  }
  override head(key: string): Promise<VersionedData | undefined> {
    this.reads.push(this.vt.now);
    return super.head(key);
  }
  override async compareAndSet(key: string, next: VersionedData): Promise<CasResult> {
    const outcome = await super.compareAndSet(key, next);
    if (outcome === "committed") {
      const record = JSON.parse(decoder.decode(next.data));
      this.commits.push({ at: this.vt.now, seqno: next.seqno, record });
    }
    return outcome;
  }
}

interface Contender {
  process: SimProcess;
  store: SimStore;
  acquire(options?: Partial<LeaseOptions>): Tracked<Lease>;
}

interface Tracked<T> {
  promise: Promise<T>;
  value?: T;
  error?: unknown;
  /** Real time it settled. */
  at?: number;
}

function simulation(seed = 1) {
  const vt = new VirtualTime();
  const shared = new Recorded(vt);
  const random = seededRandom(seed);
  const contender = (name: string, rate = 1, delay = () => 1, wakes = false): Contender => {
    const process = new SimProcess(vt, name, rate, 1e5 * random());
    const store = new SimStore(shared, process, vt, { random, delay, wakes });
    return {
      process,
      store,
      acquire: (options = {}) =>
        track(
          vt,
          acquireLeaseWith(
            store,
            "k",
            { holder: name, ttlMs: TTL, pollIntervalMs: POLL, ...options },
            process.clock,
          ),
        ),
    };
  };
  return { vt, shared, contender };
}

function track<T>(vt: VirtualTime, promise: Promise<T>): Tracked<T> {
  const tracked: Tracked<T> = { promise };
  promise.then(
    (value) => Object.assign(tracked, { value, at: vt.now }),
    (error) => Object.assign(tracked, { error, at: vt.now }),
  );
  return tracked;
}

/** Runs the simulation until `promise` settles (at most `ms` of it), and returns its outcome. */
async function drive<T>(vt: VirtualTime, promise: Promise<T>, ms = 100 * TTL): Promise<T> {
  const tracked = track(vt, promise);
  await vt.runUntil(vt.now + ms, () => tracked.at !== undefined);
  if (tracked.at === undefined) throw new Error(`still pending after ${ms} ms of simulated time`);
  if ("error" in tracked) throw tracked.error;
  return tracked.value as T;
}

/** Records when a lease's signal aborted, in real time. */
function abortTime(vt: VirtualTime, lease: Lease): { at?: number } {
  const seen: { at?: number } = {};
  lease.signal.addEventListener("abort", () => seen.at ??= vt.now);
  return seen;
}

Deno.test("lease: a free key is granted at once with token 0, and renewed while held", async () => {
  const { vt, shared, contender } = simulation();
  const a = contender("a");
  const b = contender("b");
  const first = a.acquire();
  await vt.runUntil(5);
  const lease = first.value!;
  assertEquals(lease.token, 0n);
  assertEquals(lease.holder, "a");
  assertEquals(lease.key, "k");
  const second = b.acquire();
  await vt.runUntil(20 * TTL);
  assertEquals(second.at, undefined, "b never acquires while a renews");
  assertEquals(lease.signal.aborted, false);
  const renewals = shared.commits.filter((c) => c.record.holder === "a").length;
  assertGreater(renewals, 55, "about three renewals per ttl");
  for (const commit of shared.commits) assertEquals(commit.record.grant, "0", "the token stays");
  const log = await shared.scan("k", 0n);
  assertLess(log.length, 13, "renewals truncate the log");
  await drive(vt, lease.release());
  vt.close();
});

Deno.test("lease: a dead holder is replaced after its last version stayed unchanged for a ttl", async () => {
  const { vt, shared, contender } = simulation();
  const a = contender("a");
  const b = contender("b");
  const first = a.acquire();
  await vt.runUntil(5);
  const second = b.acquire();
  await vt.runUntil(50);
  a.process.kill(); // stops renewing, never releases
  const killedAt = vt.now;
  await vt.runUntil(5 * TTL);
  const last = shared.commits.filter((c) => c.record.holder === "a").at(-1)!;
  const lease = second.value!;
  assert(lease, "b acquired");
  assertGreater(lease.token, first.value!.token);
  assertGreater(second.at!, last.at + TTL, "not before a full ttl after a's last write");
  assertLess(second.at!, last.at + TTL + POLL + 10, "within a ttl and a poll of it");
  assertLess(second.at! - killedAt, 2 * TTL, "replaced within two ttl of dying");
  await drive(vt, lease.release());
  vt.close();
});

Deno.test("lease: release() hands over at once, after the holder's signal aborted", async () => {
  const { vt, shared, contender } = simulation();
  const a = contender("a");
  const b = contender("b");
  const first = a.acquire();
  await vt.runUntil(5);
  const lease = first.value!;
  const aborted = abortTime(vt, lease);
  const second = b.acquire();
  await vt.runUntil(3 * TTL);
  const released = track(vt, lease.release());
  const releasedAt = vt.now;
  assertEquals(lease.signal.aborted, true, "aborted at the call");
  assertStringIncludes(String(lease.signal.reason), "released");
  await vt.runUntil(4 * TTL);
  assert(released.at !== undefined && released.error === undefined, "release resolved");
  const handover = shared.commits.findIndex((c) => c.record.state === "released");
  assertEquals(shared.commits[handover].record.holder, "a");
  assertLess(aborted.at!, shared.commits[handover].at, "aborted before the released version");
  assertLess(aborted.at!, second.at!);
  assertLess(second.at! - releasedAt, POLL + 10, "within a poll interval and a round trip");
  assertEquals(second.value!.token, shared.commits[handover + 1].seqno);
  assertGreater(second.value!.token, lease.token);
  assertEquals(await drive(vt, lease.release()), undefined, "again: same outcome");
  await drive(vt, second.value!.release());
  vt.close();
});

/**
 * Lets a new acquisition's subscription to wake-ups settle before time runs:
 * it takes a few promise turns and no simulated time, so a run with no event
 * queued yet would end before its first read.
 */
async function subscribed(vt: VirtualTime): Promise<void> {
  for (let i = 0; i < 5; i++) await vt.settle();
}

Deno.test("lease: with wake-ups, release() hands over after a notification, not a poll interval", async () => {
  // A poll as long as the ttl: only a wake-up can make the handover quick.
  const ttlMs = 1000;
  const run = async (wakes: boolean) => {
    const { vt, shared, contender } = simulation();
    const a = contender("a", 1, () => 1, wakes);
    const b = contender("b", 1, () => 1, wakes);
    const first = a.acquire({ ttlMs });
    await subscribed(vt);
    await vt.runUntil(50);
    const lease = first.value!;
    const second = b.acquire({ ttlMs, pollIntervalMs: ttlMs });
    await subscribed(vt);
    await vt.runUntil(2.5 * ttlMs); // b is in its wait, past several renewals
    const readsBefore = shared.reads.length;
    const releasedAt = vt.now;
    const released = track(vt, lease.release());
    await vt.runUntil(vt.now + 2 * ttlMs, () => second.at !== undefined);
    assert(second.value !== undefined, "b acquired");
    assert(released.error === undefined);
    const handover = second.at! - releasedAt;
    const reads = shared.reads.length - readsBefore;
    await drive(vt, second.value.release());
    vt.close();
    return { handover, reads };
  };
  const woken = await run(true);
  const polled = await run(false);
  // Simulated time, 1 ms each way: release write, wake-up, read, grant.
  assertLess(woken.handover, 10, "with wake-ups: a few one-way delays");
  assertEquals(woken.reads, 1, "one read, on the wake-up");
  assertGreater(polled.handover, 10 * woken.handover, "without: the next poll");
});

Deno.test("lease: wake-ups never shorten the ttl a contender waits for a silent holder", async () => {
  // Every renewal wakes b, which reads again; a dead holder is still
  // replaced only after its last version stayed unchanged for a ttl on b's
  // clock, here at the drift bound's slow end.
  const { vt, shared, contender } = simulation(3);
  const a = contender("a", 1 + DRIFT_BOUND, () => 1, true);
  const b = contender("b", 1 - DRIFT_BOUND, () => 1, true);
  const first = a.acquire();
  await subscribed(vt);
  await vt.runUntil(20);
  const second = b.acquire({ pollIntervalMs: TTL });
  await subscribed(vt);
  await vt.runUntil(20 * TTL);
  assertEquals(second.at, undefined, "b never acquires while a renews");
  const readsWhileHeld = shared.reads.length;
  assertGreater(readsWhileHeld, 40, "b read on the renewals' wake-ups");
  a.process.kill();
  await vt.runUntil(25 * TTL);
  const last = shared.commits.filter((c) => c.record.holder === "a").at(-1)!;
  assert(second.value !== undefined, "b acquired");
  assertGreater(second.value.token, first.value!.token);
  assertGreater(second.at!, last.at + TTL / (1 - DRIFT_BOUND) - 5, "a whole ttl on b's clock");
  await drive(vt, second.value.release());
  vt.close();
});

Deno.test("lease: a holder cut off from the store aborts before a takeover, clocks at the drift bound", async () => {
  // The tightest case the argument allows: the holder's clock slow, the
  // contender's fast, by just under the bound.
  const { vt, shared, contender } = simulation();
  const a = contender("a", 1 - DRIFT_BOUND * 0.999);
  const b = contender("b", 1 + DRIFT_BOUND * 0.999);
  const first = a.acquire();
  await vt.runUntil(5);
  const lease = first.value!;
  const aborted = abortTime(vt, lease);
  const second = b.acquire();
  await vt.runUntil(40);
  a.store.partitioned = true;
  await vt.runUntil(10 * TTL);
  const lastSend = shared.commits.filter((c) => c.record.holder === "a").at(-1)!.at - 1;
  assertStringIncludes(String(lease.signal.reason), "expired");
  assertLess(
    aborted.at!,
    lastSend + holdMs(TTL) / (1 - DRIFT_BOUND) + 1.5,
    "aborted by its deadline, counted from before the send",
  );
  assertGreater(second.at! - aborted.at!, SAFETY_MARGIN_MS - 2, "a margin before the takeover");
  assertEquals(
    checkTenures([
      tenure("a", lease, first.at!, aborted.at!),
      tenure("b", second.value!, second.at!, Infinity),
    ]).ok,
    true,
  );
  a.store.partitioned = false;
  await drive(vt, second.value!.release());
  await vt.runUntil(20 * TTL);
  vt.close();
});

function tenure(holder: string, lease: Lease, grantedAt: number, endedAt: number): Tenure {
  return { holder, token: lease.token, grantedAt, lastValidAt: grantedAt, endedAt };
}

Deno.test("lease: a renewal that commits after the deadline does not revive the lease", async () => {
  const { vt, shared, contender } = simulation();
  let replyDelay = 1;
  const process = new SimProcess(vt, "a", 1, 0);
  const store = new SimStore(shared, process, vt, {
    random: seededRandom(2),
    delay: () => 1,
    replyDelay: () => replyDelay,
  });
  const options = { holder: "a", ttlMs: TTL, pollIntervalMs: POLL };
  const first = track(vt, acquireLeaseWith(store, "k", options, process.clock));
  await vt.runUntil(5);
  const lease = first.value!;
  const aborted = abortTime(vt, lease);
  const second = contender("b").acquire();
  await vt.runUntil(20);
  // The next renewal (at about 34 ms) commits at once; its reply arrives
  // after the deadline the grant gave (about 73 ms).
  replyDelay = 60;
  await vt.runUntil(110);
  assertStringIncludes(String(lease.signal.reason), "expired");
  assertLess(aborted.at!, 2 + holdMs(TTL) + 1.5, "its deadline counts from the send at 2 ms");
  const renewal = shared.commits[1];
  assertEquals(renewal.record.holder, "a", "the renewal committed");
  await vt.runUntil(10 * TTL);
  assertEquals(lease.signal.aborted, true, "its late 'committed' reply revived nothing");
  const states = shared.commits.map((c) => `${c.record.holder}:${c.record.state}`);
  assertEquals(states.slice(0, 4), ["a:held", "a:held", "a:released", "b:held"]);
  assertLess(second.at!, renewal.at + TTL, "handed over when a heard back, before the ttl ran out");
  assertLess(aborted.at!, second.at!);
  await drive(vt, second.value!.release());
  vt.close();
});

Deno.test("lease: an indeterminate grant that was written is recognised as ours", async () => {
  for (const fault of ["applied", "late"] as const) {
    const { vt, shared, contender } = simulation();
    const a = contender("a");
    a.store.scripted.push(fault);
    const first = a.acquire();
    await vt.runUntil(5 * TTL);
    const lease = first.value!;
    assert(lease, `${fault}: acquired`);
    assertEquals(lease.token, 0n, `${fault}: the grant that landed is the token`);
    assertEquals(lease.signal.aborted, false);
    assertEquals(
      new Set(shared.commits.map((c) => c.record.grant)),
      new Set(["0"]),
      `${fault}: no second grant`,
    );
    await drive(vt, lease.release());
    await vt.runUntil(6 * TTL);
    vt.close();
  }
});

Deno.test("lease: a grant that lands after the caller gave up is handed straight back", async () => {
  const { vt, shared, contender } = simulation();
  const a = contender("a", 1, () => 20);
  const giveUp = new AbortController();
  const first = a.acquire({ signal: giveUp.signal });
  await vt.runUntil(50); // the head read took 40 ms; the grant is in flight
  giveUp.abort(new Error("no longer needed"));
  await vt.runUntil(51);
  assertEquals((first.error as Error).message, "no longer needed");
  await vt.runUntil(200);
  assertEquals(shared.commits.map((c) => c.record.state), ["held", "released"]);
  const b = contender("b");
  const second = b.acquire();
  await vt.runUntil(210);
  assertEquals(second.value?.token, 2n, "the next contender takes it at once");
  await drive(vt, second.value!.release());
  vt.close();
});

Deno.test("lease: an aborted signal rejects with its reason, before any I/O when already aborted", async () => {
  const { vt, contender } = simulation();
  const a = contender("a");
  const held = a.acquire();
  await vt.runUntil(5);
  const b = contender("b");
  const giveUp = new AbortController();
  const waiting = b.acquire({ signal: giveUp.signal });
  await vt.runUntil(2 * TTL);
  giveUp.abort();
  await vt.runUntil(2 * TTL + 1);
  assertInstanceOf(waiting.error, DOMException);
  assertEquals((waiting.error as DOMException).name, "AbortError");
  const calls = counting(new MemoryConsensus());
  await assertRejects(
    () => acquireLease(calls, "k", { holder: "c", ttlMs: TTL, signal: AbortSignal.abort() }),
    DOMException,
  );
  assertEquals(calls.calls, 0);
  await drive(vt, held.value!.release());
  vt.close();
});

Deno.test("lease: failures while waiting are ridden out; too many in a row reject", async () => {
  const { vt, contender } = simulation();
  const a = contender("a");
  a.store.scripted.push("refused", "lost", "refused", "refused", "refused");
  const first = a.acquire();
  await vt.runUntil(5 * TTL);
  assertEquals(first.value?.token, 0n, "acquired after refused and lost grants");
  await drive(vt, first.value!.release());
  // Every call times out: four in a row reject, as the store's own error.
  const b = contender("b");
  b.store.partitioned = true;
  const second = b.acquire();
  await vt.runUntil(vt.now + 40 * TTL);
  assertInstanceOf(second.error, ConsensusError);
  assertStringIncludes((second.error as Error).message, "simulated timeout");
  // The same after a grant that may have been written: the error says so.
  const c = contender("c");
  c.store.scripted.push("lost");
  const third = c.acquire();
  await vt.runUntil(vt.now + 3);
  c.store.partitioned = true;
  await vt.runUntil(vt.now + 40 * TTL);
  assertInstanceOf(third.error, ConsensusError);
  assertEquals((third.error as ConsensusError).determinate, false);
  assertStringIncludes((third.error as Error).message, "may have been written");
  assertStringIncludes((third.error as Error).message, `handed over ${TTL} ms after`);
  vt.close();
});

Deno.test("lease: a closed store ends the lease at the next renewal", async () => {
  const { vt, contender } = simulation();
  const a = contender("a");
  const first = a.acquire();
  await vt.runUntil(5);
  const lease = first.value!;
  const aborted = abortTime(vt, lease);
  await a.store.close();
  await vt.runUntil(TTL);
  assertLess(aborted.at!, TTL / 3 + 10);
  assertStringIncludes(String(lease.signal.reason), "store refused");
  assertEquals(await drive(vt, lease.release()), undefined);
  vt.close();
});

Deno.test("lease: tokens rise across many holders", async () => {
  const { vt, contender } = simulation();
  const tokens: bigint[] = [];
  const people = ["a", "b", "c"].map((name) => contender(name));
  for (let round = 0; round < 12; round++) {
    const got = people[round % 3].acquire();
    await vt.runUntil(vt.now + 3 * TTL);
    tokens.push(got.value!.token);
    if (round % 2 === 0) await drive(vt, got.value!.release());
    else people[round % 3].process.kill(), people[round % 3] = contender(`x${round}`);
  }
  for (let i = 1; i < tokens.length; i++) assertGreater(tokens[i], tokens[i - 1]);
  vt.close();
});

Deno.test("lease: foreign data on the key is an error that names the key", async () => {
  const store = new MemoryConsensus();
  await store.compareAndSet("jobs", { seqno: 0n, data: new TextEncoder().encode("not json") });
  const error = await assertRejects(
    () => acquireLease(store, "jobs", { holder: "a", ttlMs: TTL }),
    TypeError,
    'Cannot acquire lease "jobs": version 0 is not a lease record (8 bytes that are not JSON)',
  );
  assertStringIncludes(error.message, "another program");
  const newer = new TextEncoder().encode(JSON.stringify({ v: 2, holder: "z" }));
  await store.compareAndSet("jobs", { seqno: 1n, data: newer });
  await assertRejects(
    () => acquireLease(store, "jobs", { holder: "a", ttlMs: TTL }),
    TypeError,
    "format v2; this release reads v1",
  );
});

function counting(inner: Consensus): Consensus & { calls: number } {
  const wrapper = {
    calls: 0,
    head: (key: string) => (wrapper.calls++, inner.head(key)),
    compareAndSet: (
      key: string,
      next: VersionedData,
    ) => (wrapper.calls++, inner.compareAndSet(key, next)),
    scan: (
      key: string,
      from: bigint,
      limit?: number,
    ) => (wrapper.calls++, inner.scan(key, from, limit)),
    truncate: (key: string, seqno: bigint) => (wrapper.calls++, inner.truncate(key, seqno)),
    listKeys: () => inner.listKeys(),
    close: () => inner.close(),
    [Symbol.asyncDispose]: () => inner.close(),
  };
  return wrapper;
}

Deno.test("lease: bad input is a TypeError or RangeError before any I/O", async () => {
  const store = counting(new MemoryConsensus());
  // deno-lint-ignore no-explicit-any
  type Loose = any;
  const cases: [string, () => Promise<unknown>, typeof TypeError | typeof RangeError, string][] = [
    [
      "empty key",
      () => acquireLease(store, "", { holder: "a", ttlMs: TTL }),
      RangeError,
      "key must not be empty",
    ],
    [
      "key as number",
      () => acquireLease(store, 1 as Loose, { holder: "a", ttlMs: TTL }),
      TypeError,
      "key must be a string",
    ],
    [
      "store null",
      () => acquireLease(null as Loose, "k", { holder: "a", ttlMs: TTL }),
      TypeError,
      '"k": store must be a Consensus',
    ],
    [
      "options missing",
      () => acquireLease(store, "k", undefined as Loose),
      TypeError,
      '"k": options must be an object',
    ],
    [
      "holder missing",
      () => acquireLease(store, "k", { ttlMs: TTL } as Loose),
      TypeError,
      "holder must be a string",
    ],
    [
      "holder empty",
      () => acquireLease(store, "k", { holder: "", ttlMs: TTL }),
      RangeError,
      "holder must not be empty",
    ],
    [
      "holder too long",
      () => acquireLease(store, "k", { holder: "h".repeat(257), ttlMs: TTL }),
      RangeError,
      "at most 256 characters",
    ],
    [
      "ttl as string",
      () => acquireLease(store, "k", { holder: "a", ttlMs: "100" as Loose }),
      TypeError,
      "ttlMs must be a number",
    ],
    [
      "ttl zero",
      () => acquireLease(store, "k", { holder: "a", ttlMs: 0 }),
      RangeError,
      "ttlMs must be a positive integer, got 0",
    ],
    [
      "ttl negative",
      () => acquireLease(store, "k", { holder: "a", ttlMs: -5 }),
      RangeError,
      "got -5",
    ],
    [
      "ttl fractional",
      () => acquireLease(store, "k", { holder: "a", ttlMs: 150.5 }),
      RangeError,
      "got 150.5",
    ],
    ["ttl NaN", () => acquireLease(store, "k", { holder: "a", ttlMs: NaN }), RangeError, "got NaN"],
    [
      "ttl below the margin",
      () => acquireLease(store, "k", { holder: "a", ttlMs: 99 }),
      RangeError,
      `ttlMs must be at least 100 (four times the ${SAFETY_MARGIN_MS} ms safety margin), got 99`,
    ],
    [
      "ttl above timers",
      () => acquireLease(store, "k", { holder: "a", ttlMs: 2 ** 31 }),
      RangeError,
      "ttlMs must be at most 2147483647",
    ],
    [
      "poll zero",
      () => acquireLease(store, "k", { holder: "a", ttlMs: TTL, pollIntervalMs: 0 }),
      RangeError,
      "pollIntervalMs must be a positive integer",
    ],
    [
      "poll above ttl",
      () => acquireLease(store, "k", { holder: "a", ttlMs: TTL, pollIntervalMs: 101 }),
      RangeError,
      "no greater than ttlMs",
    ],
    [
      "signal not a signal",
      () => acquireLease(store, "k", { holder: "a", ttlMs: TTL, signal: {} as Loose }),
      TypeError,
      "signal must be an AbortSignal",
    ],
  ];
  for (const [what, call, errorClass, includes] of cases) {
    const error = await call().then(
      () => assert(false, `${what}: resolved`),
      (error: Error) => error,
    ) as Error;
    assertInstanceOf(error, errorClass, what);
    assertStringIncludes(error.message, includes, what);
    assert(error.message.startsWith("Cannot acquire lease"), `${what}: ${error.message}`);
  }
  assertEquals(store.calls, 0, "no I/O");
});

Deno.test({
  name: "lease: after a pause past its deadline the signal reads aborted before any timer runs",
  async fn() {
    await using store = new MemoryConsensus();
    const lease = await acquireLease(store, "paused", { holder: "a", ttlMs: TTL });
    let dispatched = false;
    lease.signal.addEventListener("abort", () => dispatched = true);
    // A stop-the-world pause: no timer, no callback can run during it.
    const until = performance.now() + TTL * 1.5;
    while (performance.now() < until) { /* paused */ }
    assertEquals(dispatched, false, "no timer has run yet");
    assertEquals(lease.signal.aborted, true, "the read itself checks the clock");
    assertEquals(dispatched, true, "and dispatches the abort");
    assertStringIncludes(String(lease.signal.reason), "expired");
    await lease.release();
    const head = await store.head("paused");
    assertEquals(JSON.parse(decoder.decode(head!.data)).state, "released");
  },
});

Deno.test("lease: randomized rounds with pauses, partitions, kills and faults: 0 violations", async () => {
  const runs = [
    ...[1, 2, 3, 4, 5, 6].map((seed) => ({ seed })),
    { seed: 7, ttlMs: 1000, pollIntervalMs: 20, durationMs: 100_000 },
    { seed: 8, ttlMs: 1000, pollIntervalMs: 20, durationMs: 100_000, contenders: 8 },
  ];
  let tenures = 0;
  for (const options of runs) {
    const report = await runLeaseRound(options);
    assertEquals(report.unexpected, [], `seed ${options.seed}: unexpected errors`);
    assertEquals(report.verdict.violations, [], `seed ${options.seed}`);
    assertGreater(report.pauses, 10);
    assertGreater(report.partitions, 3);
    assertGreater(report.kills, 3);
    assertLess(report.logLength, 16, "truncation keeps the log short");
    tenures += report.tenures.length;
  }
  assertGreater(tenures, 600);
});

Deno.test("lease: randomized rounds with wake-ups (lost while partitioned): 0 violations", async () => {
  // The rounds above, with every store passing on the shared store's
  // wake-ups: contenders read on every renewal and release, and must still
  // never take over early.
  SimStore.wakesByDefault = true;
  try {
    let tenures = 0;
    for (const options of [{ seed: 11 }, { seed: 12 }, { seed: 13, contenders: 8 }]) {
      const report = await runLeaseRound(options);
      assertEquals(report.unexpected, [], `seed ${options.seed}: unexpected errors`);
      assertEquals(report.verdict.violations, [], `seed ${options.seed}`);
      assertGreater(report.partitions, 3);
      tenures += report.tenures.length;
    }
    assertGreater(tenures, 150);
    // And the same harness still sees clocks drifting beyond the bound.
    const drifting = await runLeaseRound({
      seed: 1,
      ttlMs: 1000,
      pollIntervalMs: 20,
      durationMs: 150_000,
      drift: 0.04,
    });
    assert(!drifting.verdict.ok, "a violation is found with wake-ups too");
  } finally {
    SimStore.wakesByDefault = false;
  }
});

Deno.test("lease: the checker catches clocks that drift beyond the bound", async () => {
  // The same round with clock rates 4% off, four times the bound: holders
  // whose clocks run slow believe in their lease after a fast contender
  // has taken over.
  const report = await runLeaseRound({
    seed: 3,
    ttlMs: 1000,
    pollIntervalMs: 20,
    durationMs: 150_000,
    drift: 0.04,
  });
  assert(!report.verdict.ok, "a violation is found");
  assertStringIncludes(report.verdict.violations[0], "was valid");
});

Deno.test("lease checker: overlaps, falling tokens and pauses", () => {
  const t = (
    holder: string,
    token: bigint,
    grantedAt: number,
    endedAt: number,
    extra: Partial<Tenure> = {},
  ): Tenure => ({ holder, token, grantedAt, lastValidAt: grantedAt, endedAt, ...extra });
  assertEquals(checkTenures([t("a", 0n, 0, 10), t("b", 1n, 11, 20)]).ok, true);
  assertEquals(checkTenures([t("a", 0n, 0, 10), t("b", 1n, 11, 20)]).minGapMs, 1);
  assertStringIncludes(
    checkTenures([t("a", 0n, 0, 12), t("b", 1n, 11, 20)]).violations[0],
    "granted while a",
  );
  // An overlap with a tenure two grants back.
  assertEquals(
    checkTenures([t("a", 0n, 0, 50), t("b", 1n, 11, 20), t("c", 2n, 30, 40)]).violations.length,
    2,
  );
  assertStringIncludes(
    checkTenures([t("a", 5n, 0, 10), t("b", 1n, 11, 20)]).violations[0],
    "token fell",
  );
  assertStringIncludes(
    checkTenures([t("a", 1n, 0, 10), t("b", 1n, 11, 20)]).violations[0],
    "granted twice",
  );
  // Paused before its abort ran: its last valid read ends it.
  const paused = t("a", 0n, 0, 30, { lastValidAt: 8, pausedBeforeEnd: true });
  assertEquals(checkTenures([paused, t("b", 1n, 11, 40)]).ok, true);
  assertEquals(checkTenures([{ ...paused, lastValidAt: 12 }, t("b", 1n, 11, 40)]).ok, false);
  assertStringIncludes(
    checkTenures([t("a", 0n, 0, 10, { lastValidAt: 11 })]).violations[0],
    "acted as holder after its end",
  );
});
