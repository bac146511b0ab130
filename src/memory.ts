import { checkEntries, checkKey, checkLimit, checkSeqno, checkVersion } from "./_validate.ts";
import type { CasEntry, CasResult, Consensus, VersionedData } from "./types.ts";
import { provideWakeSource, WakeHub } from "./_wake.ts";

/**
 * Options for {@linkcode MemoryConsensus}.
 */
export interface MemoryConsensusOptions {
  /**
   * Versions to start from, per key: each list contiguous and ascending (a
   * truncated log need not start at 0). Useful to seed a key near
   * {@linkcode MAX_SEQNO} in tests.
   *
   * @default {undefined}
   */
  initial?: Iterable<readonly [string, readonly VersionedData[]]>;
}

/**
 * The reference implementation of {@linkcode Consensus}, in process memory.
 * Operations are atomic because they never yield between their check and
 * their write. It validates input exactly as the SQL backends do, and copies
 * payloads in and out, so it behaves like them in tests and examples.
 * {@linkcode watch} is woken by every commit, in process, without polling.
 *
 * @example Usage
 * ```ts
 * import { MemoryConsensus } from "@persist/consensus";
 *
 * await using store = new MemoryConsensus();
 * const data = new TextEncoder().encode("v0");
 * if (await store.compareAndSet("k", { seqno: 0n, data }) !== "committed") throw new Error();
 * if (await store.compareAndSet("k", { seqno: 0n, data }) !== "mismatch") throw new Error();
 * ```
 */
export class MemoryConsensus implements Consensus {
  #logs = new Map<string, VersionedData[]>();
  #closed = false;
  // Every commit happens here, so every commit wakes its watchers: complete.
  readonly #watchers = new WakeHub(true);

  /**
   * Creates an empty store, or one seeded from `options.initial`.
   *
   * @param options Initial contents.
   * @throws {TypeError | RangeError} When the initial contents are not valid logs.
   */
  constructor(options: MemoryConsensusOptions = {}) {
    for (const [key, versions] of options.initial ?? []) {
      checkKey("seed MemoryConsensus", key);
      const log: VersionedData[] = [];
      for (const version of versions) {
        checkVersion("seed MemoryConsensus", version);
        const last = log.at(-1);
        if (last !== undefined && version.seqno !== last.seqno + 1n) {
          throw new RangeError(
            `Cannot seed MemoryConsensus: key ${
              JSON.stringify(key)
            } jumps from seqno ${last.seqno} to ${version.seqno}`,
          );
        }
        log.push({ seqno: version.seqno, data: version.data.slice() });
      }
      if (log.length > 0) this.#logs.set(key, log);
    }
    provideWakeSource(this, this.#watchers);
  }

  #open(op: string): void {
    if (this.#closed) throw new TypeError(`Cannot ${op}: the store is closed`);
  }

  /** {@inheritDoc Consensus.head} */
  head(key: string): Promise<VersionedData | undefined> {
    try {
      this.#open("read head");
      checkKey("read head", key);
      const head = this.#logs.get(key)?.at(-1);
      return Promise.resolve(head && copy(head));
    } catch (error) {
      return Promise.reject(error);
    }
  }

  /** {@inheritDoc Consensus.compareAndSet} */
  compareAndSet(key: string, next: VersionedData): Promise<CasResult> {
    try {
      this.#open("compareAndSet");
      checkKey("compareAndSet", key);
      checkVersion("compareAndSet", next);
      const log = this.#logs.get(key);
      const head = log?.at(-1);
      const expected = head === undefined ? 0n : head.seqno + 1n;
      if (next.seqno !== expected) return Promise.resolve("mismatch");
      const version = { seqno: next.seqno, data: next.data.slice() };
      if (log === undefined) this.#logs.set(key, [version]);
      else log.push(version);
      this.#watchers.wake(key, version.seqno);
      return Promise.resolve("committed");
    } catch (error) {
      return Promise.reject(error);
    }
  }

  /**
   * {@inheritDoc Consensus.compareAndSetMany}
   *
   * @example Move one unit between two keys, all or nothing
   * ```ts
   * import { MemoryConsensus } from "@persist/consensus";
   *
   * await using store = new MemoryConsensus();
   * const result = await store.compareAndSetMany([
   *   { key: "alice", next: { seqno: 0n, data: Uint8Array.of(9) } },
   *   { key: "bob", next: { seqno: 0n, data: Uint8Array.of(1) } },
   * ]);
   * if (result !== "committed") throw new Error("expected a commit");
   * ```
   */
  compareAndSetMany(entries: readonly CasEntry[]): Promise<CasResult> {
    try {
      this.#open("compareAndSetMany");
      const sorted = checkEntries("compareAndSetMany", entries);
      // Checked and applied in one synchronous step: one instant.
      for (const { key, next } of sorted) {
        const head = this.#logs.get(key)?.at(-1);
        const expected = head === undefined ? 0n : head.seqno + 1n;
        if (next.seqno !== expected) return Promise.resolve("mismatch");
      }
      for (const { key, next } of sorted) {
        const version = { seqno: next.seqno, data: next.data.slice() };
        const log = this.#logs.get(key);
        if (log === undefined) this.#logs.set(key, [version]);
        else log.push(version);
      }
      for (const { key, next } of sorted) this.#watchers.wake(key, next.seqno);
      return Promise.resolve("committed");
    } catch (error) {
      return Promise.reject(error);
    }
  }

  /** {@inheritDoc Consensus.scan} */
  scan(key: string, from: bigint, limit?: number): Promise<VersionedData[]> {
    try {
      this.#open("scan");
      checkKey("scan", key);
      checkSeqno("scan", "from", from);
      checkLimit("scan", limit);
      const log = this.#logs.get(key);
      if (log === undefined) return Promise.resolve([]);
      // Logs are contiguous, so a seqno maps to an index by subtraction.
      const first = log[0].seqno;
      const start = from <= first ? 0 : Number(from - first);
      const end = limit === undefined ? log.length : Math.min(log.length, start + limit);
      return Promise.resolve(log.slice(start, end).map(copy));
    } catch (error) {
      return Promise.reject(error);
    }
  }

  /** {@inheritDoc Consensus.truncate} */
  truncate(key: string, seqno: bigint): Promise<number> {
    try {
      this.#open("truncate");
      checkKey("truncate", key);
      checkSeqno("truncate", "seqno", seqno);
      const log = this.#logs.get(key);
      const head = log?.at(-1);
      if (log === undefined || head === undefined) {
        throw new RangeError(
          `Cannot truncate ${JSON.stringify(key)}: the key has no data`,
        );
      }
      if (seqno > head.seqno) {
        throw new RangeError(
          `Cannot truncate ${JSON.stringify(key)}: seqno ${seqno} is above head ${head.seqno}`,
        );
      }
      const first = log[0].seqno;
      const count = seqno <= first ? 0 : Number(seqno - first);
      log.splice(0, count);
      return Promise.resolve(count);
    } catch (error) {
      return Promise.reject(error);
    }
  }

  /** {@inheritDoc Consensus.listKeys} */
  async *listKeys(): AsyncIterable<string> {
    this.#open("list keys");
    // A sorted snapshot, like the SQL backends' keyset pages.
    const keys = [...this.#logs.keys()].sort();
    for (const key of keys) yield key;
  }

  /** {@inheritDoc Consensus.close} */
  close(): Promise<void> {
    this.#closed = true;
    return this.#watchers.close();
  }

  /** Closes the store; `await using` calls it. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}

function copy(version: VersionedData): VersionedData {
  return { seqno: version.seqno, data: version.data.slice() };
}
