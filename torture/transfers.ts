/**
 * The transfer workload: compare-and-sets of several keys racing single-key
 * writers and truncators, every operation recorded for the checker.
 *
 * A few accounts hold a balance each (version 0 of every account is written
 * by one compareAndSetMany before the clients start). On every store:
 * - transferers read the heads of two accounts and move an amount from one
 *   to the other with one compareAndSetMany (now and then blind, at the
 *   seqnos they last saw, so some lose on a stale head); a third of them
 *   also write the current fresh key in the same call, version 0 when they
 *   have not seen it (blind) or the next one after a head read;
 * - writers rewrite one account alone (head, then compareAndSet of the same
 *   balance at head + 1), or write the fresh key alone, racing the
 *   transferers on the same heads and first writes;
 * - a truncator reads the head of an account or of the fresh key and
 *   truncates to near it.
 * The fresh key changes every `freshSlotMs` on one clock shared by every
 * store (as in `torture/storm.ts`), so first writes of a compareAndSetMany
 * race single-key first writes and truncation of the same key.
 *
 * Every payload is unique per attempt (`<balance>/<tag>` on accounts), so a
 * read or a row says which attempt wrote it, and transfers conserve the
 * total of the balances: at the end, the heads of the accounts must add up
 * to what they started with, whatever ended indeterminate.
 *
 * Bounded by an operation count and a deadline; it stops by itself.
 *
 * @module
 */
import type { Consensus } from "../mod.ts";
import { History, type ManyEntry, type Op, type Outcome, type Version } from "./history.ts";

/** Options for {@linkcode runTransfers}. */
export interface TransferOptions {
  /** Accounts. @default {4} */
  accounts?: number;
  /** Balance of every account at the start. @default {1000} */
  initialBalance?: number;
  /** Transferers per store. @default {3} */
  transferersPerStore?: number;
  /** Single-key writers per store. @default {1} */
  writersPerStore?: number;
  /** Truncators per store. @default {1} */
  truncatorsPerStore?: number;
  /** The fresh key changes this often, in milliseconds. @default {5} */
  freshSlotMs?: number;
  /** Stop after this many recorded operations. */
  operations: number;
  /** Stop after this long, in milliseconds. */
  durationMs: number;
  /** Key names start with this, so runs on one table do not mix. @default {"t"} */
  prefix?: string;
  /** Record into this history. @default {new History()} */
  history?: History;
  /** Stop early when aborted (the operations in flight finish). */
  signal?: AbortSignal;
  /** Random numbers in [0, 1), for a repeatable mix. @default {Math.random} */
  random?: () => number;
  /** Pause after an error, so a dead server is not flooded. @default {5} */
  errorPauseMs?: number;
}

/** What {@linkcode runTransfers} recorded. */
export interface TransferResult {
  history: History;
  elapsedMs: number;
  /** The account keys. */
  accounts: string[];
  /** Fresh keys some client wrote or read. */
  freshKeys: number;
  /** compareAndSetMany calls by outcome (the setup call included). */
  many: { committed: number; mismatched: number; unknown: number; failed: number };
  /** Of those, calls that carried a first write (seqno 0) of a fresh key. */
  manyFirstWrites: number;
  /** The balances' total at the start. */
  expectedTotal: number;
}

/**
 * Runs the workload on `stores` (each with `compareAndSetMany`): the
 * clients of the options on each store.
 *
 * @throws {Error} When the setup call that writes version 0 of every account fails 20 times.
 */
export async function runTransfers(
  stores: readonly Consensus[],
  options: TransferOptions,
): Promise<TransferResult> {
  const history = options.history ?? new History();
  const random = options.random ?? Math.random;
  const prefix = options.prefix ?? "t";
  const initial = options.initialBalance ?? 1000;
  const slotMs = options.freshSlotMs ?? 5;
  const pause = options.errorPauseMs ?? 5;
  const accounts = Array.from({ length: options.accounts ?? 4 }, (_, i) => `${prefix}a${i}`);
  const result: TransferResult = {
    history,
    elapsedMs: 0,
    accounts,
    freshKeys: 0,
    many: { committed: 0, mismatched: 0, unknown: 0, failed: 0 },
    manyFirstWrites: 0,
    expectedTotal: initial * accounts.length,
  };
  const count = (outcome: Outcome) => {
    if (outcome.type === "ok") {
      if (outcome.value === "committed") result.many.committed++;
      else result.many.mismatched++;
    } else if (outcome.type === "fail") result.many.failed++;
    else result.many.unknown++;
  };

  // Version 0 of every account, all at once: itself a first write of several
  // keys. Tried again after an error (under faults); a mismatch then means
  // an earlier try landed, which wrote the same balances.
  for (let attempt = 0;; attempt++) {
    const setup = await history.runMany(
      stores[0],
      -1,
      accounts.map((key) => ({ key, seqno: 0n, data: `${initial}/init${attempt}` })),
    );
    count(setup);
    if (setup.type === "ok") break;
    if (attempt >= 20 || options.signal?.aborted) {
      throw new Error(`Cannot start the transfers: the setup call ended ${JSON.stringify(setup)}`);
    }
    await sleep(100);
  }

  const started = performance.now();
  const deadline = started + options.durationMs;
  const used = new Set<number>();
  const done = () =>
    history.entries.length >= options.operations || performance.now() >= deadline ||
    (options.signal?.aborted ?? false);
  const fresh = () => {
    const slot = Math.floor((performance.now() - started) / slotMs);
    used.add(slot);
    return `${prefix}f${slot}`;
  };
  const pick = <T>(list: readonly T[]) => list[Math.floor(random() * list.length)];

  const client = (store: Consensus, process: number) => {
    let attempts = 0;
    const tag = () => `${process}.${attempts++}`;
    const known = new Map<string, Version>(); // the last version this client saw, per key
    const run = async (key: string, op: Op): Promise<Outcome> => {
      const outcome = await history.run(store, process, key, op);
      if (outcome.type === "ok") {
        if (op.kind === "head" && outcome.value !== undefined) {
          known.set(key, outcome.value as Version);
        }
        if (op.kind === "cas" && outcome.value === "committed") {
          known.set(key, { seqno: op.seqno, data: op.data });
        }
      } else if (outcome.type !== "range") await sleep(pause * (0.5 + random()));
      return outcome;
    };
    // Yield now and then: the in-memory store never does.
    let turns = 0;
    const turn = () => ++turns % 8 === 0 ? sleep(0) : Promise.resolve();
    const head = async (key: string): Promise<Version | undefined | null> => {
      const read = await run(key, { kind: "head" });
      return read.type === "ok" ? read.value as Version | undefined : null;
    };
    return { process, store, tag, known, run, head, turn };
  };
  type Client = ReturnType<typeof client>;

  const transferer = async (c: Client) => {
    while (!done()) {
      await c.turn();
      const from = pick(accounts);
      let to = pick(accounts);
      while (to === from) to = pick(accounts);
      const amount = 1 + Math.floor(random() * 5);
      const blind = random() < 0.15 && c.known.has(from) && c.known.has(to);
      let a = c.known.get(from), b = c.known.get(to);
      if (!blind) {
        const [ra, rb] = [await c.head(from), await c.head(to)];
        if (!ra || !rb || done()) continue;
        [a, b] = [ra, rb];
      }
      const t = c.tag();
      const entries: ManyEntry[] = [
        { key: from, seqno: a!.seqno + 1n, data: `${balance(a!) - amount}/m${t}` },
        { key: to, seqno: b!.seqno + 1n, data: `${balance(b!) + amount}/m${t}` },
      ];
      let first = false;
      if (random() < 0.33) {
        const key = fresh();
        let seqno = 0n;
        if (random() < 0.5) {
          const h = await c.head(key);
          if (h === null || done()) continue;
          if (h !== undefined) seqno = h.seqno + 1n;
        }
        first = seqno === 0n;
        entries.push({ key, seqno, data: `f/m${t}` });
      }
      const outcome = await history.runMany(c.store, c.process, entries);
      count(outcome);
      if (first) result.manyFirstWrites++;
      if (outcome.type === "ok" && outcome.value === "committed") {
        for (const e of entries) c.known.set(e.key, { seqno: e.seqno, data: e.data });
      } else if (outcome.type !== "ok") await sleep(pause * (0.5 + random()));
    }
  };

  const writer = async (c: Client) => {
    while (!done()) {
      await c.turn();
      if (random() < 0.3) {
        // The fresh key alone: blind version 0, or the next one after a read.
        const key = fresh();
        let seqno = 0n;
        if (random() < 0.5) {
          const h = await c.head(key);
          if (h === null || done()) continue;
          if (h !== undefined) seqno = h.seqno + 1n;
        }
        await c.run(key, { kind: "cas", seqno, data: `f/s${c.tag()}` });
        continue;
      }
      const key = pick(accounts);
      const h = await c.head(key);
      if (!h || done()) continue;
      await c.run(key, { kind: "cas", seqno: h.seqno + 1n, data: `${balance(h)}/s${c.tag()}` });
    }
  };

  const truncator = async (c: Client) => {
    while (!done()) {
      await c.turn();
      const key = random() < 0.5 ? fresh() : pick(accounts);
      const h = await c.head(key);
      if (h === undefined) await sleep(1);
      if (!h || done()) continue;
      const below = BigInt(Math.floor(random() * 4));
      const seqno = h.seqno > below ? h.seqno - below : 0n;
      await c.run(key, { kind: "truncate", seqno });
      if (random() < 0.5) await sleep(1);
    }
  };

  const clients: Promise<void>[] = [];
  let process = 0;
  for (const store of stores) {
    for (let i = 0; i < (options.transferersPerStore ?? 3); i++) {
      clients.push(transferer(client(store, process++)));
    }
    for (let i = 0; i < (options.writersPerStore ?? 1); i++) {
      clients.push(writer(client(store, process++)));
    }
    for (let i = 0; i < (options.truncatorsPerStore ?? 1); i++) {
      clients.push(truncator(client(store, process++)));
    }
  }
  await Promise.all(clients);
  result.elapsedMs = performance.now() - started;
  result.freshKeys = used.size;
  return result;
}

/** The balance a version of an account holds. */
export function balance(version: Version): number {
  return Number(version.data.slice(0, version.data.indexOf("/")));
}

/**
 * The total of the accounts' balances, from their heads (after the run, read
 * with any store on the same table).
 */
export async function totalOf(store: Consensus, accounts: readonly string[]): Promise<number> {
  let total = 0;
  for (const key of accounts) {
    const head = await store.head(key);
    if (head === undefined) throw new Error(`Account ${key} has no version`);
    total += balance({ seqno: head.seqno, data: new TextDecoder().decode(head.data) });
  }
  return total;
}

/**
 * A seeded generator of numbers in [0, 1) (xorshift32), so a workload's mix
 * repeats from run to run.
 */
export function seededRandom(seed: number): () => number {
  let x = seed | 0 || 0x2545f491;
  return () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) / 0x1_0000_0000;
  };
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
