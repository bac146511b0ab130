import type { Consensus } from "../types.ts";
import { host } from "../_runtime.ts";
import { assert, assertEquals } from "./_assert.ts";

/** Options for {@linkcode raceOnOneKey}. */
export interface RaceOptions {
  /** Concurrent writers. */
  writers: number;
  /** Stop once the head reaches this seqno. */
  untilSeqno?: bigint;
  /** Stop after this long, in milliseconds. */
  durationMs?: number;
  /** Called now and then with the current head, for progress output. */
  onProgress?: (head: bigint, elapsedMs: number) => void;
}

/** What {@linkcode raceOnOneKey} observed. */
export interface RaceReport {
  /** Compare-and-sets that returned "committed". */
  committed: number;
  /** Compare-and-sets that returned "mismatch". */
  mismatched: number;
  /** Operations that threw (every one is also rethrown as an AggregateError). */
  errors: number;
  /** The head seqno at the end. */
  head: bigint;
  /** Wall time, in milliseconds. */
  elapsedMs: number;
}

/**
 * Runs `writers` concurrent read-then-compare-and-set loops on one key of an
 * empty store and verifies the outcome: no operation threw, the chain is
 * gapless from 0 to the head, and every seqno has exactly one writer that was
 * told "committed", whose payload is the one stored.
 *
 * @param store The store to race on, or several on the same data (as
 *   separate processes would be): writer `i` uses `store[i % store.length]`.
 * @param key A key with no data.
 * @param options Writers and bounds (at least one of `untilSeqno`, `durationMs`).
 * @returns Counts, for reports.
 * @throws {ConformanceFailure} When the chain or the claims are wrong.
 * @throws {AggregateError} When operations threw.
 *
 * @example Usage
 * ```ts
 * import { MemoryConsensus } from "@persist/consensus";
 * import { raceOnOneKey } from "@persist/consensus/testing";
 *
 * await using store = new MemoryConsensus();
 * const report = await raceOnOneKey(store, "k", { writers: 4, untilSeqno: 50n });
 * if (report.committed !== 51) throw new Error("lost an update");
 * ```
 */
export async function raceOnOneKey(
  store: Consensus | readonly Consensus[],
  key: string,
  options: RaceOptions,
): Promise<RaceReport> {
  const stores: readonly Consensus[] = Array.isArray(store)
    ? store as readonly Consensus[]
    : [store as Consensus];
  const { writers, untilSeqno, durationMs, onProgress } = options;
  assert(
    untilSeqno !== undefined || durationMs !== undefined,
    "raceOnOneKey needs untilSeqno or durationMs",
  );
  const encoder = new host.TextEncoder();
  const claims = new Map<bigint, string>();
  const errors: unknown[] = [];
  let committed = 0;
  let mismatched = 0;
  let done = false;
  let lastProgress = 0;
  const started = Date.now();
  const finished = () => done || (durationMs !== undefined && Date.now() - started >= durationMs);

  async function writer(id: number): Promise<void> {
    const store = stores[id % stores.length];
    let attempt = 0;
    while (!finished()) {
      try {
        const head = await store.head(key);
        const seqno = head === undefined ? 0n : head.seqno + 1n;
        if (untilSeqno !== undefined && seqno > untilSeqno) {
          done = true;
          return;
        }
        const payload = `${id}:${attempt++}`;
        const result = await store.compareAndSet(key, { seqno, data: encoder.encode(payload) });
        if (result === "committed") {
          committed++;
          const previous = claims.get(seqno);
          assert(
            previous === undefined,
            `seqno ${seqno} committed twice: by ${previous} and ${payload}`,
          );
          claims.set(seqno, payload);
          if (onProgress && Date.now() - lastProgress >= 1000) {
            lastProgress = Date.now();
            onProgress(seqno, lastProgress - started);
          }
        } else {
          mismatched++;
        }
      } catch (error) {
        errors.push(error);
        if (errors.length >= 10) done = true;
      }
    }
  }

  await Promise.all(Array.from({ length: writers }, (_, id) => writer(id)));
  const elapsedMs = Date.now() - started;
  if (errors.length > 0) {
    throw new AggregateError(errors, `${errors.length} operations threw during the race`);
  }
  const versions = await stores[0].scan(key, 0n);
  const decoder = new host.TextDecoder();
  assertEquals(versions.length, committed, "versions stored vs. commits acknowledged");
  versions.forEach((version, index) => {
    assertEquals(version.seqno, BigInt(index), "the chain has a gap");
    assertEquals(
      decoder.decode(version.data),
      claims.get(version.seqno),
      `payload of seqno ${version.seqno}`,
    );
  });
  const head = versions.at(-1)?.seqno ?? -1n;
  return { committed, mismatched, errors: errors.length, head, elapsedMs };
}
