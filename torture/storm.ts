/**
 * The fresh-key storm: many stores race the first writes of fresh keys while
 * truncators chase the head, every operation recorded for the checker.
 *
 * The fault workload (`torture/workload.ts`) reuses a few keys for a whole
 * round, so a key is empty only at its first write, and that first write
 * never raced a truncate. The window this storm aims at needs both: a first
 * write whose statement starts on an empty key while other stores commit
 * version 0 and version 1 and a truncator deletes version 0 below it (issue
 * 8). So every store's writers and its truncator move to a new key every
 * few milliseconds, on one clock they all share: key `prefix + floor(elapsed
 * / slotMs)`. On each key a writer's first write is a blind compareAndSet of
 * seqno 0 half the time, a read-then-write the other half; it then writes
 * the next few versions (read-then-write or blind at the next seqno), and
 * waits for the next key. Each truncator reads the head and truncates to it.
 *
 * Stores are meant to sit on separate pools: a store serves the writers of
 * its own process from what it knows (same-seqno writes in flight, head
 * floors), so races between processes reach the server only across stores.
 *
 * Bounded by an operation count and a deadline; it stops by itself.
 *
 * @module
 */
import type { Consensus } from "../mod.ts";
import { type Entry, History, type Op, type Outcome, type Version } from "./history.ts";

/** Options for {@linkcode runStorm}. */
export interface StormOptions {
  /** Writers per store. @default {4} */
  writersPerStore?: number;
  /** Each key is the current one for this long, in milliseconds. @default {4} */
  slotMs?: number;
  /** Writers stop writing a key once its head reaches this seqno. @default {3} */
  lastSeqno?: number;
  /** Stop after this many recorded operations. */
  operations: number;
  /** Stop after this long, in milliseconds. */
  durationMs: number;
  /** Key names start with this, so runs on one table do not mix. @default {"s"} */
  prefix?: string;
  /** Record into this history. @default {new History()} */
  history?: History;
  /** Stop early when aborted (the operations in flight finish). */
  signal?: AbortSignal;
}

/** What {@linkcode runStorm} recorded. */
export interface StormResult {
  history: History;
  elapsedMs: number;
  /** Keys some client used. */
  keys: number;
  /** First writes of a writer on a key: the compareAndSet (blind or after a read) that opened it. */
  firstWrites: number;
  /** Of those, blind compareAndSets of seqno 0. */
  blindFirstWrites: number;
}

/**
 * Runs the storm on `stores`: `writersPerStore` writers and one truncator on
 * each store, all on the shared key schedule.
 */
export async function runStorm(
  stores: readonly Consensus[],
  options: StormOptions,
): Promise<StormResult> {
  const history = options.history ?? new History();
  const writers = options.writersPerStore ?? 4;
  const slotMs = options.slotMs ?? 4;
  const lastSeqno = BigInt(options.lastSeqno ?? 3);
  const prefix = options.prefix ?? "s";
  const started = performance.now();
  const deadline = started + options.durationMs;
  const used = new Set<number>();
  let firstWrites = 0;
  let blindFirstWrites = 0;
  const done = () =>
    history.entries.length >= options.operations || performance.now() >= deadline ||
    (options.signal?.aborted ?? false);
  const slot = () => Math.floor((performance.now() - started) / slotMs);
  const untilNextSlot = (current: number) =>
    sleep(Math.max(0, started + (current + 1) * slotMs - performance.now()));

  const writer = async (store: Consensus, process: number) => {
    let writes = 0;
    const payload = () => `w${process}.${writes++}`;
    const run = (key: string, op: Op) => history.run(store, process, key, op);
    // Read the head, then compareAndSet the seqno after it.
    const readThenWrite = async (key: string, first = false): Promise<bigint | undefined> => {
      const read = await run(key, { kind: "head" });
      if (read.type !== "ok") return undefined;
      const head = read.value as Version | undefined;
      const seqno = head === undefined ? 0n : head.seqno + 1n;
      if (seqno > lastSeqno) return head!.seqno;
      if (first) firstWrites++;
      return settle(seqno, await run(key, { kind: "cas", seqno, data: payload() }));
    };
    while (!done()) {
      const current = slot();
      const key = `${prefix}${current}`;
      used.add(current);
      // The first write on this key.
      let known: bigint | undefined;
      if (Math.random() < 0.5) {
        firstWrites++;
        blindFirstWrites++;
        known = settle(0n, await run(key, { kind: "cas", seqno: 0n, data: payload() }));
      } else {
        known = await readThenWrite(key, true);
      }
      // The next few versions, while this key is the current one.
      while (!done() && slot() === current && (known === undefined || known < lastSeqno)) {
        known = known !== undefined && Math.random() < 0.5
          ? settle(known + 1n, await run(key, { kind: "cas", seqno: known + 1n, data: payload() }))
          : await readThenWrite(key);
      }
      if (!done() && slot() === current) await untilNextSlot(current);
    }
  };

  const truncator = async (store: Consensus, process: number) => {
    while (!done()) {
      const current = slot();
      const key = `${prefix}${current}`;
      const read = await history.run(store, process, key, { kind: "head" });
      const head = read.type === "ok" ? read.value as Version | undefined : undefined;
      if (head === undefined) {
        // Nothing written yet: look again shortly, or at the next key.
        await sleep(slot() === current ? 1 : 0);
        continue;
      }
      if (done()) break;
      await history.run(store, process, key, { kind: "truncate", seqno: head.seqno });
    }
  };

  const clients: Promise<void>[] = [];
  let process = 0;
  for (const store of stores) {
    for (let i = 0; i < writers; i++) clients.push(writer(store, process++));
    clients.push(truncator(store, process++));
  }
  await Promise.all(clients);
  return {
    history,
    elapsedMs: performance.now() - started,
    keys: used.size,
    firstWrites,
    blindFirstWrites,
  };
}

// What a writer knows of the head after a compareAndSet of `seqno`: the
// seqno when it committed, nothing when it lost or failed (read again).
function settle(seqno: bigint, outcome: Outcome): bigint | undefined {
  return outcome.type === "ok" && outcome.value === "committed" ? seqno : undefined;
}

/** A (key, seqno) that two different writes were told they committed. */
export interface DoubleCommit {
  readonly key: string;
  readonly seqno: bigint;
  /** The payloads acknowledged as committed, in the order they completed. */
  readonly payloads: readonly string[];
}

/**
 * Finds every (key, seqno) acknowledged "committed" to two or more writes
 * with different payloads (payloads are unique per write, so each is a
 * different writer or attempt).
 *
 * @param entries A recorded history.
 * @returns The double commits, in the order their second commit completed.
 */
export function findDoubleCommits(entries: readonly Entry[]): DoubleCommit[] {
  const committed = new Map<string, string[]>();
  const doubles: { key: string; seqno: bigint; payloads: string[] }[] = [];
  const sorted = entries.filter((e) =>
    e.op.kind === "cas" && e.outcome.type === "ok" && e.outcome.value === "committed"
  ).sort((a, b) => a.ret - b.ret);
  for (const entry of sorted) {
    if (entry.op.kind !== "cas") continue;
    const tag = `${entry.op.seqno}\u0000${entry.key}`;
    let payloads = committed.get(tag);
    if (payloads === undefined) committed.set(tag, payloads = []);
    if (payloads.includes(entry.op.data)) continue;
    payloads.push(entry.op.data);
    if (payloads.length === 2) {
      doubles.push({ key: entry.key, seqno: entry.op.seqno, payloads });
    }
  }
  return doubles;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
