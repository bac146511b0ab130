/**
 * A watch round: writers race on a few keys through several stores while a
 * truncator keeps each key short, and watchers on other stores record every
 * version `watch` yields; some consume slowly, fall behind the truncator,
 * and start again from where the log now begins. Every write and truncate is
 * recorded for the linearizability checker, every watcher's output for
 * {@linkcode checkWatches}. An optional fault (say, terminating the
 * listening connections) runs at a fixed interval.
 *
 * Under faults (the campaign's fault rounds run it beside their workload):
 * a watcher that fails with a `ConsensusError` is recorded as `failed` and
 * watched again from the next seqno it expected, so the checker sees the
 * chain stay gapless across failures; late watchers start now and then with
 * an old `from` (somewhere between 0 and the head) while the truncator
 * runs, and leave after a few versions.
 *
 * Bounded: the writers stop after `durationMs`; `beforeSettle` runs (the
 * campaign waits there for its faults to end); the watchers then get
 * `settleMs` to reach the final heads, and are stopped.
 *
 * @module
 */
import { type Consensus, ConsensusError, TruncatedError, watch } from "../mod.ts";
import { History, payloadText, type Version } from "./history.ts";
import type { WatchRecord } from "./watch_checker.ts";

/** Options for {@linkcode runWatchRound}. */
export interface WatchRoundOptions {
  /** Keys written and watched. @default {2} */
  keys?: number;
  /** Read-then-compare-and-set loops per writer store. @default {3} */
  writersPerStore?: number;
  /** Watchers per key on each watcher store. @default {3} */
  watchersPerKey?: number;
  /** How long the writers run, in milliseconds. */
  durationMs: number;
  /** How long watchers may take to reach the final heads, in milliseconds. @default {10_000} */
  settleMs?: number;
  /** Versions each key keeps behind its head (a truncator per key); none when undefined. */
  keep?: number;
  /** Runs every `faultEveryMs` while the writers run; its failures are counted, not thrown. */
  fault?: () => Promise<void>;
  /** @default {500} */
  faultEveryMs?: number;
  /** How often watchers poll (`pollIntervalMs`). @default {250} */
  pollIntervalMs?: number;
  /** Key names and payloads start with this. @default {"w"} */
  prefix?: string;
  /**
   * The share of writes that append to two keys at once with
   * compareAndSetMany (on stores that have it). @default {0}
   */
  manyShare?: number;
  /** Records the writes here (say, to snapshot them at a crash). @default {a new History} */
  history?: History;
  /**
   * Starts a late watcher every this many milliseconds while the writers
   * run: `from` an old seqno, racing the truncator; it leaves after 5 to 50
   * versions. None when undefined.
   */
  lateEveryMs?: number;
  /** Stops the writers early (say, when the workload beside them ends). */
  stopWriting?: AbortSignal;
  /** Runs after the writers stop and before the final heads are read. */
  beforeSettle?: () => Promise<void>;
}

/** What {@linkcode runWatchRound} recorded. */
export interface WatchRoundResult {
  history: History;
  watches: WatchRecord[];
  /** The head of each key after the writers stopped. */
  finalHeads: Map<string, bigint>;
  /** Keys whose final head no store could read (left out of `finalHeads`), with the last error. */
  headsUnread: string[];
  /** Watchers that ended with a TruncatedError (each was followed by a new one). */
  truncations: number;
  /** Watchers that ended with a ConsensusError (each was followed by a new one). */
  failures: number;
  /** Late watchers started with an old `from`. */
  late: number;
  faults: number;
  faultErrors: number;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Runs one round: writers and a truncator per key on `writerStores`,
 * watchers on `watcherStores`.
 */
export async function runWatchRound(
  writerStores: readonly Consensus[],
  watcherStores: readonly Consensus[],
  options: WatchRoundOptions,
): Promise<WatchRoundResult> {
  const history = options.history ?? new History(30_000);
  const prefix = options.prefix ?? "w";
  const keys = Array.from({ length: options.keys ?? 2 }, (_, i) => `${prefix}${i}`);
  const deadline = performance.now() + options.durationMs;
  const writing = () => performance.now() < deadline && !options.stopWriting?.aborted;
  const watches: WatchRecord[] = [];
  const stop = new AbortController();
  let truncations = 0;
  let failures = 0;
  let late = 0;
  let faults = 0;
  let faultErrors = 0;
  let process = 0;
  let watcherId = 0;
  // The last seqno each running watcher yielded, for the settle phase.
  const live = new Map<number, { key: string; last: bigint | undefined }>();

  // A watcher: records what it yields; a TruncatedError ends its record and
  // starts a new watcher where the log now begins, a ConsensusError one
  // from the next seqno it expected. Slow ones sleep between items, so that
  // the truncator overtakes them. One that `leaves` breaks out after that
  // many versions.
  const watcher = async (
    store: Consensus,
    key: string,
    from: bigint | undefined,
    slow: boolean,
    leaves?: number,
  ) => {
    for (let restarts = 0; restarts < 1_000 && !stop.signal.aborted; restarts++) {
      const versions: (Version & { at: number })[] = [];
      const started = performance.now();
      const id = watcherId++;
      const progress = { key, last: undefined as bigint | undefined };
      if (leaves === undefined) live.set(id, progress);
      // A late watcher stopped before it left has no final head to reach.
      let end: WatchRecord["end"] = leaves === undefined ? { type: "stopped" } : { type: "left" };
      const start = from;
      try {
        for await (
          const version of watch(store, key, {
            from,
            signal: stop.signal,
            pollIntervalMs: options.pollIntervalMs ?? 250,
          })
        ) {
          versions.push({
            seqno: version.seqno,
            data: payloadText(version.data),
            at: performance.now(),
          });
          progress.last = version.seqno;
          if (leaves !== undefined && versions.length >= leaves) {
            end = { type: "left" };
            break;
          }
          // Slow only while the writers run: afterwards, catch up.
          if (slow && writing()) await sleep(Math.random() * 20);
        }
      } catch (error) {
        if (error instanceof TruncatedError) {
          end = {
            type: "truncated",
            seqno: error.seqno,
            available: error.available,
            at: performance.now(),
          };
          from = error.available;
          truncations++;
        } else if (error instanceof ConsensusError) {
          end = { type: "failed", message: error.message };
          if (versions.length > 0) from = versions.at(-1)!.seqno + 1n;
          failures++;
        } else {
          end = { type: "error", message: String(error) };
        }
      }
      live.delete(id);
      watches.push({ watcher: id, key, from: start, started, versions, end });
      if (end.type === "failed") await sleep(20);
      else if (end.type !== "truncated") return;
    }
  };

  // Late watchers: from an old seqno (up to the head this store last saw).
  const lateStarter = async () => {
    if (options.lateEveryMs === undefined) return;
    while (writing()) {
      await sleep(options.lateEveryMs);
      if (!writing()) break;
      const key = keys[Math.floor(Math.random() * keys.length)];
      const store = watcherStores[late % watcherStores.length];
      const head = await store.head(key).catch(() => undefined);
      const top = head === undefined ? 0 : Number(head.seqno);
      late++;
      watching.push(
        watcher(
          store,
          key,
          BigInt(Math.floor(Math.random() * (top + 1))),
          false,
          5 + Math.floor(Math.random() * 46),
        ),
      );
    }
  };

  const writer = async (store: Consensus) => {
    const me = process++;
    let writes = 0;
    while (writing()) {
      if (keys.length > 1 && store.compareAndSetMany && Math.random() < (options.manyShare ?? 0)) {
        // Two keys at once, each at the seqno after the head just read.
        const pair = [...keys].sort(() => Math.random() - 0.5).slice(0, 2);
        const entries = [];
        for (const key of pair) {
          const read = await history.run(store, me, key, { kind: "head" });
          if (read.type !== "ok") break;
          const head = read.value as Version | undefined;
          entries.push({
            key,
            seqno: head === undefined ? 0n : head.seqno + 1n,
            data: `${prefix}/p${me}.${writes++}`,
          });
        }
        if (entries.length === 2) await history.runMany(store, me, entries);
        else await sleep(10);
        continue;
      }
      const key = keys[Math.floor(Math.random() * keys.length)];
      const read = await history.run(store, me, key, { kind: "head" });
      if (read.type !== "ok") {
        await sleep(10);
        continue;
      }
      const head = read.value as Version | undefined;
      const seqno = head === undefined ? 0n : head.seqno + 1n;
      const wrote = await history.run(store, me, key, {
        kind: "cas",
        seqno,
        data: `${prefix}/p${me}.${writes++}`,
      });
      if (wrote.type === "fail" || wrote.type === "unknown") await sleep(10);
      // An in-memory store answers in microtasks: let timers (the
      // truncator, slow watchers, the fault) run too.
      if (writes % 8 === 0) await sleep(0);
    }
  };

  const truncator = async (store: Consensus, key: string, keep: number) => {
    const me = process++;
    while (writing()) {
      await sleep(15);
      const read = await history.run(store, me, key, { kind: "head" });
      const head = read.type === "ok" ? read.value as Version | undefined : undefined;
      if (head === undefined || head.seqno < BigInt(keep)) continue;
      await history.run(store, me, key, { kind: "truncate", seqno: head.seqno - BigInt(keep) });
    }
  };

  const injector = async () => {
    if (options.fault === undefined) return;
    while (writing()) {
      await sleep(options.faultEveryMs ?? 500);
      if (!writing()) break;
      faults++;
      await options.fault().catch(() => faultErrors++);
    }
  };

  // Watchers first: some from 0, some from the head, some slow.
  const watching: Promise<void>[] = [];
  for (const store of watcherStores) {
    for (const key of keys) {
      for (let i = 0; i < (options.watchersPerKey ?? 3); i++) {
        watching.push(watcher(store, key, i % 2 === 0 ? 0n : undefined, i % 3 === 2));
      }
    }
  }
  await sleep(100);
  const clients: Promise<void>[] = [injector(), lateStarter()];
  for (const store of writerStores) {
    for (let i = 0; i < (options.writersPerStore ?? 3); i++) clients.push(writer(store));
  }
  if (options.keep !== undefined) {
    for (const key of keys) clients.push(truncator(writerStores[0], key, options.keep));
  }
  await Promise.all(clients);
  await options.beforeSettle?.();

  // Read with retries, from each store in turn: under faults a store may
  // still be reconnecting, or its driver may have stopped answering on its
  // connections (porsager after a restart). A key no store could read is
  // left out of `finalHeads` (its watchers are then not asked to reach it)
  // and named in `headsUnread`.
  const finalHeads = new Map<string, bigint>();
  const headsUnread: string[] = [];
  const readers = [...writerStores, ...watcherStores];
  for (const key of keys) {
    for (let attempt = 0;; attempt++) {
      try {
        const head = await readers[attempt % readers.length].head(key);
        if (head !== undefined) finalHeads.set(key, head.seqno);
        break;
      } catch (error) {
        if (attempt >= 4 * readers.length) {
          headsUnread.push(`${key} (${String(error)})`);
          break;
        }
        await sleep(200);
      }
    }
  }
  // Let the watchers catch up (bounded), then stop them.
  const settle = performance.now() + (options.settleMs ?? 10_000);
  const behind = () =>
    [...live.values()].some(({ key, last }) => {
      const head = finalHeads.get(key);
      return head !== undefined && (last === undefined || last < head);
    });
  while (behind() && performance.now() < settle) await sleep(20);
  stop.abort();
  await Promise.all(watching);
  return {
    history,
    watches,
    finalHeads,
    headsUnread,
    truncations,
    failures,
    late,
    faults,
    faultErrors,
  };
}
