/**
 * Deliberately broken {@linkcode Consensus} stores, to prove the checker
 * catches what it should. Never use them for anything else.
 *
 * - {@linkcode SplitStatementConsensus}: on Postgres, compare-and-set reads
 *   the head in one statement and inserts in a second one, on a table with
 *   no primary key: two racers both see the same head and both commit.
 * - {@linkcode YieldingMemoryConsensus}: the same mistake in memory, a yield
 *   between the check and the write.
 * - {@linkcode LaggyReadConsensus}: writes are right, but `head` answers
 *   from a copy refreshed every few milliseconds (like a lagging replica),
 *   so a read can miss a write acknowledged before it started. No two
 *   writers ever commit one seqno; only the real-time order breaks, which
 *   only the search finds.
 *
 * Compare-and-sets of several keys, broken (single-key operations correct):
 *
 * - {@linkcode NonAtomicManyConsensus}: applies the entries one by one,
 *   each with the store's own compareAndSet, and stops at the first
 *   mismatch: a reader can see one key written and another not yet, and a
 *   mismatch leaves the earlier entries behind.
 * - {@linkcode SnapshotManyConsensus}: in memory, checks every condition on
 *   a copy of the heads, yields (a round trip), then appends every entry
 *   without looking again: two racers both commit one seqno.
 * - {@linkcode SnapshotManyPostgres}: on Postgres, reads the heads in one
 *   statement, without locks, then inserts every row with
 *   `ON CONFLICT DO NOTHING` in a second one and reports "committed"
 *   without counting what landed: a row another writer committed in
 *   between is skipped, so the call is half applied and says it is whole.
 *
 * Each takes a `between` hook, run between its check and its writes (or
 * between two entries), so a test can put a competing operation exactly
 * there.
 *
 * @module
 */
import type postgres from "postgres";
import {
  type CasEntry,
  type CasResult,
  type Consensus,
  ConsensusError,
  MemoryConsensus,
  type VersionedData,
} from "../mod.ts";

/** A store whose compareAndSet is two statements, on a table with no key. */
export class SplitStatementConsensus implements Consensus {
  readonly #sql: postgres.Sql;
  readonly #table: string;

  private constructor(sql: postgres.Sql, table: string) {
    this.#sql = sql;
    this.#table = table;
  }

  /** Creates the (keyless) table anew and returns the store. */
  static async open(sql: postgres.Sql, table: string): Promise<SplitStatementConsensus> {
    const t = `"${table.replaceAll('"', '""')}"`;
    await sql.unsafe(`DROP TABLE IF EXISTS ${t}`);
    await sql.unsafe(
      `CREATE TABLE ${t} (shard text NOT NULL, sequence_number bigint NOT NULL, data bytea NOT NULL)`,
    );
    return new SplitStatementConsensus(sql, t);
  }

  async #query<T>(run: () => Promise<T>): Promise<T> {
    try {
      return await run();
    } catch (error) {
      throw new ConsensusError(`broken store failed: ${String(error)}`, {
        determinate: false,
        cause: error,
      });
    }
  }

  /** The latest version. */
  async head(key: string): Promise<VersionedData | undefined> {
    const rows = await this.#query(() =>
      this.#sql.unsafe(
        `SELECT sequence_number, data FROM ${this.#table} WHERE shard = $1 ` +
          `ORDER BY sequence_number DESC LIMIT 1`,
        [key],
      )
    );
    return rows[0] && { seqno: BigInt(rows[0].sequence_number), data: bytes(rows[0].data) };
  }

  /** Reads the head, then (separately) inserts: the bug. */
  async compareAndSet(key: string, next: VersionedData): Promise<CasResult> {
    const current = await this.head(key);
    const expected = current === undefined ? 0n : current.seqno + 1n;
    if (next.seqno !== expected) return "mismatch";
    await this.#query(() =>
      this.#sql.unsafe(
        `INSERT INTO ${this.#table} (shard, sequence_number, data) VALUES ($1, $2, $3)`,
        [key, String(next.seqno), next.data],
      )
    );
    return "committed";
  }

  /** Versions from `from`. */
  async scan(key: string, from: bigint, limit?: number): Promise<VersionedData[]> {
    const rows = await this.#query(() =>
      this.#sql.unsafe(
        `SELECT sequence_number, data FROM ${this.#table} WHERE shard = $1 ` +
          `AND sequence_number >= $2 ORDER BY sequence_number LIMIT $3`,
        [key, String(from), limit ?? 1_000_000],
      )
    );
    return rows.map((row) => ({ seqno: BigInt(row.sequence_number), data: bytes(row.data) }));
  }

  /** Deletes below `seqno`. */
  async truncate(key: string, seqno: bigint): Promise<number> {
    const current = await this.head(key);
    if (current === undefined || seqno > current.seqno) {
      throw new RangeError(`Cannot truncate ${JSON.stringify(key)}: above the head`);
    }
    const result = await this.#query(() =>
      this.#sql.unsafe(
        `DELETE FROM ${this.#table} WHERE shard = $1 AND sequence_number < $2`,
        [key, String(seqno)],
      )
    );
    return result.count;
  }

  /** Every key. */
  async *listKeys(): AsyncIterable<string> {
    const rows = await this.#sql.unsafe(`SELECT DISTINCT shard FROM ${this.#table} ORDER BY 1`);
    for (const row of rows) yield row.shard as string;
  }

  /** Does not close the caller's pool. */
  close(): Promise<void> {
    return Promise.resolve();
  }

  /** Same as close. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}

function bytes(value: Uint8Array): Uint8Array {
  return new Uint8Array(value.buffer, value.byteOffset, value.byteLength);
}

/** In memory, with a yield between the head check and the append. */
export class YieldingMemoryConsensus implements Consensus {
  readonly #logs = new Map<string, VersionedData[]>();

  /** The latest version. */
  head(key: string): Promise<VersionedData | undefined> {
    return Promise.resolve(this.#logs.get(key)?.at(-1));
  }

  /** Checks, yields, then appends: the bug. */
  async compareAndSet(key: string, next: VersionedData): Promise<CasResult> {
    const head = this.#logs.get(key)?.at(-1);
    const expected = head === undefined ? 0n : head.seqno + 1n;
    if (next.seqno !== expected) return "mismatch";
    await new Promise((resolve) => setTimeout(resolve, 0));
    const log = this.#logs.get(key) ?? [];
    log.push({ seqno: next.seqno, data: next.data.slice() });
    this.#logs.set(key, log);
    return "committed";
  }

  /** Versions from `from`. */
  scan(key: string, from: bigint, limit?: number): Promise<VersionedData[]> {
    const found = (this.#logs.get(key) ?? []).filter((v) => v.seqno >= from);
    return Promise.resolve(found.slice(0, limit ?? found.length));
  }

  /** Deletes below `seqno`. */
  truncate(key: string, seqno: bigint): Promise<number> {
    const log = this.#logs.get(key);
    const head = log?.at(-1);
    if (log === undefined || head === undefined || seqno > head.seqno) {
      return Promise.reject(new RangeError(`Cannot truncate ${JSON.stringify(key)}`));
    }
    const keep = log.filter((v) => v.seqno >= seqno || v === head);
    this.#logs.set(key, keep);
    return Promise.resolve(log.length - keep.length);
  }

  /** Every key. */
  async *listKeys(): AsyncIterable<string> {
    for (const key of [...this.#logs.keys()].sort()) yield key;
  }

  /** Nothing to release. */
  close(): Promise<void> {
    return Promise.resolve();
  }

  /** Same as close. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}

/** A correct store whose `head` answers from a copy up to `lagMs` old. */
export class LaggyReadConsensus implements Consensus {
  readonly #inner: Consensus;
  readonly #lagMs: number;
  readonly #cache = new Map<string, { at: number; head: VersionedData | undefined }>();

  /** Wraps `inner`; `lagMs` is how stale a head may be. */
  constructor(inner: Consensus, lagMs: number) {
    this.#inner = inner;
    this.#lagMs = lagMs;
  }

  /** The head as of up to `lagMs` ago: the bug. */
  async head(key: string): Promise<VersionedData | undefined> {
    const cached = this.#cache.get(key);
    if (cached !== undefined && performance.now() - cached.at < this.#lagMs) return cached.head;
    const head = await this.#inner.head(key);
    this.#cache.set(key, { at: performance.now(), head });
    return head;
  }

  /** Passed through. */
  compareAndSet(key: string, next: VersionedData): Promise<CasResult> {
    return this.#inner.compareAndSet(key, next);
  }

  /** Passed through. */
  scan(key: string, from: bigint, limit?: number): Promise<VersionedData[]> {
    return this.#inner.scan(key, from, limit);
  }

  /** Passed through. */
  truncate(key: string, seqno: bigint): Promise<number> {
    return this.#inner.truncate(key, seqno);
  }

  /** Passed through. */
  listKeys(): AsyncIterable<string> {
    return this.#inner.listKeys();
  }

  /** Closes the inner store. */
  close(): Promise<void> {
    return this.#inner.close();
  }

  /** Same as close. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}

/** Runs between a broken compareAndSetMany's steps (see the module comment). */
export type BetweenHook = (entries: readonly CasEntry[], step: number) => Promise<void>;

/** Passes single-key operations through to `inner`. */
abstract class PassThrough implements Consensus {
  protected readonly inner: Consensus;

  constructor(inner: Consensus) {
    this.inner = inner;
  }

  /** Passed through. */
  head(key: string): Promise<VersionedData | undefined> {
    return this.inner.head(key);
  }

  /** Passed through. */
  compareAndSet(key: string, next: VersionedData): Promise<CasResult> {
    return this.inner.compareAndSet(key, next);
  }

  /** Passed through. */
  scan(key: string, from: bigint, limit?: number): Promise<VersionedData[]> {
    return this.inner.scan(key, from, limit);
  }

  /** Passed through. */
  truncate(key: string, seqno: bigint): Promise<number> {
    return this.inner.truncate(key, seqno);
  }

  /** Passed through. */
  listKeys(): AsyncIterable<string> {
    return this.inner.listKeys();
  }

  /** Closes the inner store. */
  close(): Promise<void> {
    return this.inner.close();
  }

  /** Same as close. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}

/** A correct store whose compareAndSetMany is a loop of compareAndSet calls. */
export class NonAtomicManyConsensus extends PassThrough {
  readonly #between: BetweenHook;

  /** Wraps `inner`; `between` runs after each entry but the last. */
  constructor(inner: Consensus, between: BetweenHook = () => Promise.resolve()) {
    super(inner);
    this.#between = between;
  }

  /** One entry at a time, stopping at the first mismatch: the bug. */
  async compareAndSetMany(entries: readonly CasEntry[]): Promise<CasResult> {
    for (let i = 0; i < entries.length; i++) {
      if (i > 0) await this.#between(entries, i);
      const { key, next } = entries[i];
      if (await this.inner.compareAndSet(key, next) === "mismatch") return "mismatch";
    }
    return "committed";
  }
}

/** In memory: correct single-key operations, compareAndSetMany checked on a snapshot. */
export class SnapshotManyConsensus extends PassThrough {
  readonly #logs = new Map<string, VersionedData[]>();
  readonly #between: BetweenHook;

  /** `between` runs after the check and before the writes; by default it yields. */
  constructor(between: BetweenHook = () => new Promise((resolve) => setTimeout(resolve, 0))) {
    super(new MemoryConsensus());
    this.#between = between;
  }

  /** The latest version. */
  override head(key: string): Promise<VersionedData | undefined> {
    return Promise.resolve(this.#logs.get(key)?.at(-1));
  }

  /** Checked and appended in one step (correct). */
  override compareAndSet(key: string, next: VersionedData): Promise<CasResult> {
    const head = this.#logs.get(key)?.at(-1);
    if (next.seqno !== (head === undefined ? 0n : head.seqno + 1n)) {
      return Promise.resolve("mismatch");
    }
    this.#append(key, next);
    return Promise.resolve("committed");
  }

  /** Checks every head, yields, then appends every entry without a second look: the bug. */
  async compareAndSetMany(entries: readonly CasEntry[]): Promise<CasResult> {
    for (const { key, next } of entries) {
      const head = this.#logs.get(key)?.at(-1);
      if (next.seqno !== (head === undefined ? 0n : head.seqno + 1n)) return "mismatch";
    }
    await this.#between(entries, 0);
    for (const { key, next } of entries) this.#append(key, next);
    return "committed";
  }

  #append(key: string, next: VersionedData): void {
    const log = this.#logs.get(key) ?? [];
    log.push({ seqno: next.seqno, data: next.data.slice() });
    this.#logs.set(key, log);
  }

  /** Versions from `from`. */
  override scan(key: string, from: bigint, limit?: number): Promise<VersionedData[]> {
    const found = (this.#logs.get(key) ?? []).filter((v) => v.seqno >= from);
    return Promise.resolve(found.slice(0, limit ?? found.length));
  }

  /** Deletes below `seqno`, never the head. */
  override truncate(key: string, seqno: bigint): Promise<number> {
    const log = this.#logs.get(key);
    const head = log?.at(-1);
    if (log === undefined || head === undefined || seqno > head.seqno) {
      return Promise.reject(new RangeError(`Cannot truncate ${JSON.stringify(key)}`));
    }
    const keep = log.filter((v) => v.seqno >= seqno);
    this.#logs.set(key, keep);
    return Promise.resolve(log.length - keep.length);
  }

  /** Every key. */
  override async *listKeys(): AsyncIterable<string> {
    for (const key of [...this.#logs.keys()].sort()) yield key;
  }
}

/**
 * On Postgres: single-key operations through a correct store on `table`,
 * compareAndSetMany as two unlocked statements in one READ COMMITTED
 * transaction.
 */
export class SnapshotManyPostgres extends PassThrough {
  readonly #sql: postgres.Sql;
  readonly #table: string;
  readonly #between: BetweenHook;

  /**
   * @param inner A correct store on `table`, for the single-key operations.
   * @param sql A pool on the same database.
   * @param table The table's name, unquoted.
   * @param between Runs after the heads are read and before the insert.
   */
  constructor(
    inner: Consensus,
    sql: postgres.Sql,
    table: string,
    between: BetweenHook = () => Promise.resolve(),
  ) {
    super(inner);
    this.#sql = sql;
    this.#table = `"${table.replaceAll('"', '""')}"`;
    this.#between = between;
  }

  /** Reads the heads, then inserts and trusts that every row landed: the bug. */
  async compareAndSetMany(entries: readonly CasEntry[]): Promise<CasResult> {
    const keys = entries.map((e) => e.key);
    try {
      return await this.#sql.begin(async (tx) => {
        const rows = await tx.unsafe(
          `SELECT k, (SELECT max(sequence_number) FROM ${this.#table} ` +
            `WHERE shard = k AND sequence_number >= 0)::text AS head FROM unnest($1::text[]) AS k`,
          [keys],
        );
        const heads = new Map(rows.map((r) => [r.k as string, r.head as string | null]));
        for (const { key, next } of entries) {
          const head = heads.get(key);
          if (next.seqno !== (head === null || head === undefined ? 0n : BigInt(head) + 1n)) {
            return "mismatch" as const;
          }
        }
        await this.#between(entries, 0);
        for (const { key, next } of entries) {
          await tx.unsafe(
            `INSERT INTO ${this.#table} (shard, sequence_number, data) VALUES ($1, $2, $3) ` +
              `ON CONFLICT DO NOTHING`,
            [key, String(next.seqno), next.data],
          );
        }
        return "committed" as const;
      });
    } catch (error) {
      throw new ConsensusError(`broken store failed: ${String(error)}`, {
        determinate: false,
        cause: error,
      });
    }
  }
}
