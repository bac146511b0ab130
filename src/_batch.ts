// Cross-key batching: head reads and compare-and-sets on different keys,
// issued together, go to the server as one statement each kind
// (`Dialect.headBatch`, `Dialect.casBatch`; their arguments are in
// src/dialect.ts), and each operation gets its own result back.
//
// The window. An operation joins the open batch of its kind; the batch is
// sent once the microtask queue has run QUIET_HOPS hops in a row without a
// new operation joining (at most MAX_HOPS hops after it opened). No timer:
// a lone operation waits a few microtasks, not a turn of the event loop,
// and then goes out on its single-key statement, as without batching.
// Workers whose previous results arrived in one read from the socket issue
// their next operations in the same turn, a few hops apart: they share a
// statement. A batch holds at most MAX_BATCH operations and BATCH_BYTES of
// payload; a larger window is sent as several statements at once, and a
// compare-and-set of more than ALONE_BYTES goes alone.
//
// Per operation:
// - A batch of one runs the single-key statement, unchanged.
// - Keys in one compare-and-set batch are distinct: an operation on a key
//   that already has one waiting or in flight here waits until that one's
//   statement has ended, then goes alone (see CasOp.alone). Head reads of
//   one key may share a batch: the statement starts after every one of
//   their invocations, so its answer serves each (each gets its own bytes).
// - A failure of the batch statement is the same fact for every operation
//   in it. Serialization failures and deadlocks (40001, 40P01) rolled the
//   whole statement back: the store's runner retries it, and if that runs
//   out of attempts, each compare-and-set is run again on its own
//   single-key statement with its own retries, within its own deadline.
//   Any other failure is reported to every operation of the batch, with the
//   error's own determinacy: an indeterminate failure (connection lost,
//   timeout) leaves every operation in that batch indeterminate, and each
//   error says it was sent in one statement with the others.
import { isRetryable } from "./_classify.ts";
import { toHex } from "./_hex.ts";
import { host } from "./_runtime.ts";
import type { Dialect } from "./dialect.ts";
import { ConsensusError } from "./errors.ts";
import type { SqlResult, SqlStatement, SqlValue } from "./executor.ts";
import type { OperationTrace } from "./_telemetry.ts";

/** Most operations in one batched statement. */
export const MAX_BATCH = 64;
// Payload bytes: a compare-and-set whose data is larger than ALONE_BYTES
// goes alone on its single-key statement (its bytes travel as a binary
// parameter there, not as hex inside JSON), and a batch carries at most
// BATCH_BYTES of data (2 MiB of hex in its one parameter), so one batch
// never nears Postgres' 1 GiB limit on a value or a JavaScript string's.
const ALONE_BYTES = 64 * 1024;
const BATCH_BYTES = 1024 * 1024;
// Microtask hops without a new operation before a batch is sent, and the
// most hops a batch stays open.
const QUIET_HOPS = 2;
const MAX_HOPS = 64;

/** Runs one statement with the store's retries and deadline (PostgresConsensus#run). */
export type BatchRun = (
  op: string,
  key: string,
  statement: SqlStatement,
  params: readonly SqlValue[],
  deadline?: number,
  trace?: OperationTrace,
) => Promise<SqlResult>;

/** Told the size of each statement sent for a batch (telemetry). */
export type BatchSizes = (kind: "head" | "compareAndSet", size: number) => void;

interface Waiter {
  resolve(result: SqlResult): void;
  reject(error: unknown): void;
}

interface HeadOp extends Waiter {
  key: string;
  // The operation's span: a statement run for this operation alone counts
  // its retries there; a shared statement's retries belong to no one span.
  trace?: OperationTrace;
  // How many head() calls of the store this read serves (the store already
  // folds reads of one key in one turn into one), for the size telemetry.
  weight: number;
}

interface CasOp extends Waiter {
  key: string;
  seqno: bigint;
  data: Uint8Array;
  deadline: number;
  trace?: OperationTrace;
  // Waited behind an earlier compare-and-set on its key (here, or in the
  // store for the same seqno), so its deadline is older than its
  // batch-mates' would be: it goes alone, since a batch runs to its
  // earliest deadline and would cut theirs short.
  alone: boolean;
}

const MISMATCH: SqlResult = { rows: [], rowCount: 0 };
const COMMITTED: SqlResult = { rows: [], rowCount: 1 };

// Collects items until the microtask queue is quiet, then hands them over.
class Window<T> {
  #items: T[] = [];
  #open = false;
  readonly #send: (items: T[]) => void;

  constructor(send: (items: T[]) => void) {
    this.#send = send;
  }

  add(item: T): void {
    this.#items.push(item);
    if (this.#open) return;
    this.#open = true;
    let seen = 0, quiet = 0, hops = 0;
    const tick = () => {
      if (this.#items.length !== seen) {
        seen = this.#items.length;
        quiet = 0;
      } else quiet++;
      if (quiet < QUIET_HOPS && ++hops < MAX_HOPS) {
        host.queueMicrotask(tick);
        return;
      }
      const items = this.#items;
      this.#items = [];
      this.#open = false;
      for (let at = 0; at < items.length; at += MAX_BATCH) {
        this.#send(items.slice(at, at + MAX_BATCH));
      }
    };
    host.queueMicrotask(tick);
  }
}

/** Batches one store's head reads and compare-and-sets across keys. */
export class Batcher {
  readonly #dialect: Dialect;
  readonly #run: BatchRun;
  readonly #heads = new Window<HeadOp>((ops) => this.#sendHeads(ops));
  readonly #cas = new Window<CasOp>((ops) => this.#sendCas(ops));
  // Per key, the compare-and-set of this batcher waiting or in flight; a
  // later one on the key waits for it to settle (distinct keys per batch).
  readonly #busy = new Map<string, Promise<unknown>>();

  readonly #sizes: BatchSizes;

  constructor(dialect: Dialect, run: BatchRun, sizes: BatchSizes = () => {}) {
    this.#dialect = dialect;
    this.#run = run;
    this.#sizes = sizes;
  }

  /** The head of `key`, as the single-key `head` statement's result. */
  head(key: string, trace?: OperationTrace, weight = 1): Promise<SqlResult> {
    return new Promise((resolve, reject) =>
      this.#heads.add({ key, trace, weight, resolve, reject })
    );
  }

  /**
   * Compare-and-set of `key`, as the single-key statement's result (rowCount
   * 1 iff committed); `waited` when the caller already waited since its
   * deadline was set (it then goes alone, see CasOp.alone).
   */
  async compareAndSet(
    key: string,
    seqno: bigint,
    data: Uint8Array,
    deadline: number,
    trace?: OperationTrace,
    waited = false,
  ): Promise<SqlResult> {
    for (let ahead = this.#busy.get(key); ahead !== undefined; ahead = this.#busy.get(key)) {
      waited = true;
      await ahead;
    }
    const result = new Promise<SqlResult>((resolve, reject) =>
      this.#cas.add({ key, seqno, data, deadline, trace, alone: waited, resolve, reject })
    );
    const settled = result.then(() => {}, () => {});
    this.#busy.set(key, settled);
    try {
      return await result;
    } finally {
      if (this.#busy.get(key) === settled) this.#busy.delete(key);
    }
  }

  #single(op: CasOp): Promise<SqlResult> {
    return op.seqno === 0n
      ? this.#run(
        "compareAndSet",
        op.key,
        this.#dialect.casFirst,
        [op.key, op.data],
        op.deadline,
        op.trace,
      )
      : this.#run(
        "compareAndSet",
        op.key,
        this.#dialect.casNext,
        [op.key, op.seqno, op.data],
        op.deadline,
        op.trace,
      );
  }

  async #sendHeads(ops: HeadOp[]): Promise<void> {
    const positions = new Map<string, number>();
    for (const op of ops) if (!positions.has(op.key)) positions.set(op.key, positions.size + 1);
    const found = new Map<number, readonly SqlValue[]>();
    let served = 0;
    for (const op of ops) served += op.weight;
    this.#sizes("head", served);
    try {
      if (positions.size === 1) {
        const { rows } = await this.#run(
          "read head",
          ops[0].key,
          this.#dialect.head,
          [ops[0].key],
          undefined,
          ops.length === 1 ? ops[0].trace : undefined,
        );
        if (rows[0] !== undefined) found.set(1, [1n, rows[0][0], rows[0][1]]);
      } else {
        const { rows } = await this.#run(
          `read head of ${positions.size} keys in one statement`,
          "",
          this.#dialect.headBatch,
          [JSON.stringify([...positions.keys()])],
        );
        for (const row of rows) found.set(Number(row[0] as bigint), row);
      }
    } catch (error) {
      for (const op of ops) {
        op.reject(
          positions.size === 1 ? error : batchError("read head", op.key, ops.length, error),
        );
      }
      return;
    }
    const given = new Set<string>();
    for (const op of ops) {
      const row = found.get(positions.get(op.key)!);
      if (row === undefined) {
        op.resolve(MISMATCH);
        continue;
      }
      // Each caller of a shared key gets its own bytes.
      const data = given.has(op.key) ? (row[2] as Uint8Array).slice() : row[2] as Uint8Array;
      given.add(op.key);
      op.resolve({ rows: [[row[1], data]], rowCount: 1 });
    }
  }

  #sendCas(ops: CasOp[]): void {
    let chunk: CasOp[] = [];
    let bytes = 0;
    for (const op of ops) {
      if (op.alone || op.data.byteLength > ALONE_BYTES) {
        this.#sendCasChunk([op]);
        continue;
      }
      if (bytes + op.data.byteLength > BATCH_BYTES) {
        this.#sendCasChunk(chunk);
        chunk = [];
        bytes = 0;
      }
      chunk.push(op);
      bytes += op.data.byteLength;
    }
    if (chunk.length > 0) this.#sendCasChunk(chunk);
  }

  async #sendCasChunk(ops: CasOp[]): Promise<void> {
    if (ops.length === 1) {
      const [op] = ops;
      this.#single(op).then(op.resolve, op.reject);
      return;
    }
    // Recorded for shared statements only: a lone compare-and-set runs the
    // single-key statement, as without batching, which records nothing.
    this.#sizes("compareAndSet", ops.length);
    // Sorted, so that batches lock shared keys in one order.
    ops.sort((a, b) => a.key < b.key ? -1 : a.key > b.key ? 1 : 0);
    const json = JSON.stringify(
      ops.map((op) => ({ k: op.key, s: String(op.seqno), d: toHex(op.data) })),
    );
    let deadline = ops[0].deadline;
    for (const op of ops) deadline = Math.min(deadline, op.deadline);
    let result: SqlResult;
    try {
      result = await this.#run(
        `compareAndSet of ${ops.length} keys in one statement`,
        "",
        this.#dialect.casBatch,
        [json],
        deadline,
      );
    } catch (error) {
      if (
        error instanceof ConsensusError && error.determinate && isRetryable(error.code)
      ) {
        // Rolled back, every entry: each goes again on its own statement.
        for (const op of ops) {
          if (Date.now() < op.deadline) this.#single(op).then(op.resolve, op.reject);
          else op.reject(batchError("compareAndSet", op.key, ops.length, error));
        }
        return;
      }
      for (const op of ops) op.reject(batchError("compareAndSet", op.key, ops.length, error));
      return;
    }
    const committed = new Set<string>(JSON.parse(String(result.rows[0]?.[0] ?? "[]")));
    for (const op of ops) op.resolve(committed.has(op.key) ? COMMITTED : MISMATCH);
  }
}

// The batch's failure, told to one of its operations in its own words.
function batchError(op: string, key: string, size: number, error: unknown): unknown {
  if (!(error instanceof ConsensusError)) return error;
  return new ConsensusError(
    `${op} ${JSON.stringify(key)}, sent in one statement with ${size - 1} other ` +
      `operation(s), ${error.determinate ? "did not take effect" : "may have taken effect"}: ` +
      error.message,
    { determinate: error.determinate, code: error.code, cause: error },
  );
}
