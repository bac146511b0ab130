import { toHex } from "./_hex.ts";
import { StatementRunner } from "./_runner.ts";
import { host } from "./_runtime.ts";
import { provideRecreate, quotedTable, Schema } from "./_schema.ts";
import { type OperationTrace, type Outcome, Telemetry } from "./_telemetry.ts";
import { checkEntries, checkKey, checkLimit, checkSeqno, checkVersion } from "./_validate.ts";
import { CAS_MANY_MISMATCH, type Dialect, type Engine } from "./dialect.ts";
import { ConsensusError, redactSecrets } from "./errors.ts";
import type { SqlExecutor, SqlResult, SqlStatement, SqlValue } from "./executor.ts";
import { MAX_SEQNO } from "./limits.ts";
import type { CasEntry, CasResult, Consensus, VersionedData } from "./types.ts";
import { provideWakeSource, WakeHub } from "./_wake.ts";
import { Batcher } from "./_batch.ts";

/**
 * Options for {@linkcode PostgresConsensus.open}.
 */
export interface PostgresConsensusOptions {
  /**
   * Which engine's statements to run. `"auto"` asks the server's `version()`
   * and picks `"cockroach"` when it names CockroachDB; the store reports the
   * choice as {@linkcode PostgresConsensus.engine}.
   *
   * @default {"auto"}
   */
  engine?: "auto" | Engine;
  /**
   * The former name of `engine`.
   *
   * @deprecated Use `engine`.
   */
  mode?: "auto" | Engine;
  /**
   * The table's name. Quoted as an identifier, so any characters are taken
   * literally (at most 63 bytes, no U+0000).
   *
   * @default {"consensus"}
   */
  table?: string;
  /**
   * The table's schema; the connection's current schema when omitted.
   *
   * @default {undefined}
   */
  schema?: string;
  /**
   * Create the table when it is missing. A role that may only read opens an
   * existing table with `create: false`, or with the default when the table
   * exists (existence is checked before any DDL).
   *
   * @default {true}
   */
  create?: boolean;
  /**
   * How long one operation may take, internal retries and waiting for a
   * pooled connection included, before it rejects with an indeterminate
   * {@linkcode ConsensusError}.
   *
   * @default {10_000}
   */
  timeoutMs?: number;
  /**
   * How many times one operation runs when the server reports a
   * serialization failure (40001) or deadlock (40P01), with jittered
   * exponential backoff between attempts.
   *
   * @default {8}
   */
  maxAttempts?: number;
  /**
   * How many keys `listKeys` reads per round trip.
   *
   * @default {1000}
   */
  listKeysPageSize?: number;
  /**
   * Whether this store's compare-and-sets send a Postgres notification when
   * they commit (`pg_notify` inside the same statement: no extra round trip,
   * and only a committed write notifies), so that watchers in other
   * processes wake at once instead of at their next poll. Watchers listen
   * whatever this says; set it on every store that writes keys someone
   * watches.
   *
   * Off by default because it costs every write, watched or not: Postgres
   * serialises notifying commits on a database-wide lock held through the
   * commit's WAL flush (16 concurrent writers: 0.39 of the plain rate at
   * the server; BENCHMARKS.md, "Watch"). CockroachDB has no LISTEN/NOTIFY:
   * there it is ignored, with a warning.
   *
   * @default {false}
   */
  notify?: boolean;
  /**
   * Whether the store's telemetry spans carry the key (`persist.key`) and
   * error messages, which name it. Keys are the application's data, so they
   * are left out unless this opts in. README, "Telemetry".
   *
   * @default {false}
   */
  traceKeys?: boolean;
  /**
   * Whether head reads and compare-and-sets on different keys issued
   * together (in the same few microtasks, no timer) go to the server as one
   * statement per kind, at most 64 operations each, instead of one
   * statement per operation. Each operation keeps its own result; a lone
   * operation runs its single-key statement as it would without batching.
   * See README.md, "Batching".
   *
   * @default {true}
   */
  batch?: boolean;
  /**
   * Receives warnings that do not stop the store from working (for example,
   * CockroachDB tuning the role had no privilege for).
   *
   * @default {console.warn}
   */
  onWarning?: (message: string) => void;
}

const DEFAULT_TIMEOUT_MS = 10_000;
const DEFAULT_MAX_ATTEMPTS = 8;

interface Settings {
  runner: StatementRunner;
  schema: Schema;
  telemetry: Telemetry;
  pageSize: number;
  warn: (message: string) => void;
  batch: boolean;
}

// How many keys' head lower bounds a store remembers (see #floors).
const MAX_FLOORS = 10_000;

/**
 * {@linkcode Consensus} on Postgres or CockroachDB, through any
 * {@linkcode SqlExecutor}. Every operation is one prepared statement and one
 * round trip (operations on different keys issued together share one: the
 * `batch` option); the statements and the argument for their correctness
 * are in `src/dialect.ts`.
 *
 * @example Open on porsager's `postgres`
 * ```ts ignore
 * import postgres from "postgres";
 * import { PostgresConsensus } from "@persist/consensus";
 * import { fromPostgresJs } from "@persist/consensus/postgres-js";
 *
 * await using store = await PostgresConsensus.open(
 *   fromPostgresJs(postgres(Deno.env.get("DATABASE_URL")!), { owned: true }),
 * );
 * const result = await store.compareAndSet("orders", { seqno: 0n, data: new Uint8Array([1]) });
 * console.log(result); // "committed" the first time, "mismatch" after
 * ```
 */
export class PostgresConsensus implements Consensus {
  readonly #executor: SqlExecutor;
  readonly #dialect: Dialect;
  readonly #runner: StatementRunner;
  readonly #schema: Schema;
  readonly #telemetry: Telemetry;
  readonly #timeoutMs: number;
  readonly #pageSize: bigint;
  readonly #warn: (message: string) => void;
  // Watchers of this store's keys (see watch): woken by this store's own
  // commits, and, through one LISTEN connection while anyone watches, by
  // the notifications of every notifying store on the table. Not complete:
  // a writer that does not notify wakes nobody, so watchers poll too.
  readonly #watchers: WakeHub;
  // A lower bound on each recently used key's head: the highest seqno this
  // store has seen committed or read. Heads only grow (truncate never
  // removes the head), so a compareAndSet of a seqno at or below it is a
  // sure mismatch, answered without a round trip: at its invocation the head
  // is already at least that seqno, which is a valid linearization point.
  // It is what spares a read-then-CAS loop the wasted round trips of writers
  // that lost to another writer of this process. Rows changed outside the
  // library (a restore from a backup, a rewrite) can leave it too high; the
  // next head read of the key sets it to what it read, which heals it.
  readonly #floors = new Map<string, bigint>();
  // Head reads of a key waiting for the end of this turn (see head).
  // `size` counts the reads sharing it, for telemetry.
  readonly #headBatches = new Map<
    string,
    { size: number; read: Promise<VersionedData | undefined> }
  >();
  // The latest compare-and-set in flight per key (see compareAndSet).
  readonly #inflight = new Map<string, { seqno: bigint; run: Promise<SqlResult> }>();
  // Cross-key batching of heads and compare-and-sets (src/_batch.ts), or
  // undefined when the `batch` option is off.
  readonly #batch: Batcher | undefined;
  #closed = false;
  // Operations invoked before close() and still running; close() waits for
  // them to end with their real results before it closes the executor.
  #active = 0;
  #drained: (() => void) | undefined;
  #closing: Promise<void> | undefined;

  private constructor(executor: SqlExecutor, dialect: Dialect, settings: Settings) {
    this.#executor = executor;
    this.#dialect = dialect;
    this.#runner = settings.runner;
    this.#schema = settings.schema;
    this.#telemetry = settings.telemetry;
    this.#timeoutMs = settings.runner.timeoutMs;
    this.#pageSize = BigInt(settings.pageSize);
    this.#warn = settings.warn;
    this.#batch = settings.batch
      ? new Batcher(
        dialect,
        (op, key, statement, params, deadline, trace) =>
          this.#run(op, key, statement, params, deadline, trace),
        (kind, size) => this.#telemetry.batch(kind, size),
      )
      : undefined;
    const listen = dialect.channel === undefined ? undefined : executor.listen?.bind(executor);
    this.#watchers = new WakeHub(
      false,
      listen && { start: () => this.#listen(listen, dialect.channel!) },
    );
    provideWakeSource(this, this.#watchers);
    provideRecreate(this, async () => {
      // The table starts empty: every floor is too high now.
      this.#floors.clear();
      await this.#schema.dropAndRecreate(this.#dialect);
    });
  }

  // Starts the store's one LISTEN subscription. A failure leaves watchers
  // polling, and says so once per failure.
  async #listen(
    listen: NonNullable<SqlExecutor["listen"]>,
    channel: string,
  ): Promise<{ close(): Promise<void> } | undefined> {
    try {
      return await listen(channel, (payload) => this.#notified(payload), {
        // Notifications sent while the connection was down are lost: every
        // watcher reads again from what it expects next.
        onReconnect: () => this.#watchers.wakeAll(),
      });
    } catch (error) {
      this.#warn(
        `@persist/consensus: could not LISTEN for watchers, who poll instead: ${
          redactSecrets(error instanceof Error ? error.message : String(error))
        }`,
      );
      return undefined;
    }
  }

  // A payload is "<seqno>:<key>" (src/dialect.ts); anything else on the
  // channel is not ours and is ignored.
  #notified(payload: string): void {
    const colon = payload.indexOf(":");
    if (colon <= 0 || colon > 20) return;
    let seqno: bigint;
    try {
      seqno = BigInt(payload.slice(0, colon));
    } catch {
      return;
    }
    this.#watchers.wake(payload.slice(colon + 1), seqno);
  }

  /**
   * Opens a store on `executor`: detects the engine (unless `mode` says it),
   * and creates the table when it is missing and `create` allows.
   *
   * @param executor The SQL executor of a driver adapter.
   * @param options Engine, table, timeouts.
   * @returns The open store. Closing it closes the executor.
   * @throws {TypeError | RangeError} When an option is invalid.
   * @throws {ConsensusError} When the server could not be reached or the table could not be created.
   *
   * @example Usage
   * ```ts ignore
   * import postgres from "postgres";
   * import { PostgresConsensus } from "@persist/consensus";
   * import { fromPostgresJs } from "@persist/consensus/postgres-js";
   *
   * const sql = postgres("postgres://app@localhost/app");
   * const store = await PostgresConsensus.open(fromPostgresJs(sql), { table: "app_consensus" });
   * await store.close(); // `sql` stays open: it is the caller's
   * ```
   */
  static async open(
    executor: SqlExecutor,
    options: PostgresConsensusOptions = {},
  ): Promise<PostgresConsensus> {
    try {
      return await PostgresConsensus.#open(executor, options);
    } catch (error) {
      // The caller never gets a store to close: release what the executor
      // owns (an adapter closes its client only when told it owns it), so a
      // failed open does not keep the process alive.
      await executor.close().catch(() => {});
      throw error;
    }
  }

  static async #open(
    executor: SqlExecutor,
    options: PostgresConsensusOptions,
  ): Promise<PostgresConsensus> {
    if (
      options.engine !== undefined && options.mode !== undefined &&
      options.engine !== options.mode
    ) {
      throw new RangeError(
        `Cannot open consensus: engine ${JSON.stringify(options.engine)} and its former name ` +
          `mode ${JSON.stringify(options.mode)} disagree; give engine only`,
      );
    }
    const mode = options.engine ?? options.mode ?? "auto";
    if (mode !== "auto" && mode !== "postgres" && mode !== "cockroach") {
      throw new RangeError(
        `Cannot open consensus: engine must be "auto", "postgres" or "cockroach", got ${
          JSON.stringify(mode)
        }`,
      );
    }
    const tableName = options.table ?? "consensus";
    const quoted = quotedTable(tableName, options.schema);
    const timeoutMs = positiveInteger("timeoutMs", options.timeoutMs ?? DEFAULT_TIMEOUT_MS);
    const maxAttempts = positiveInteger("maxAttempts", options.maxAttempts ?? DEFAULT_MAX_ATTEMPTS);
    const pageSize = positiveInteger("listKeysPageSize", options.listKeysPageSize ?? 1000);
    const notify = options.notify ?? false;
    if (typeof notify !== "boolean") {
      throw new TypeError(
        `Cannot open consensus: notify must be a boolean, got ${typeof notify}`,
      );
    }
    const traceKeys = options.traceKeys ?? false;
    if (typeof traceKeys !== "boolean") {
      throw new TypeError(
        `Cannot open consensus: traceKeys must be a boolean, got ${typeof traceKeys}`,
      );
    }
    const batch = options.batch ?? true;
    if (typeof batch !== "boolean") {
      throw new TypeError(`Cannot open consensus: batch must be a boolean, got ${typeof batch}`);
    }
    const warn = options.onWarning ?? ((message: string) => host.console?.warn(message));
    const target = typeof executor.target === "string" ? redactSecrets(executor.target) : "";
    const runner = new StatementRunner(executor, timeoutMs, maxAttempts);
    const schema = new Schema(runner, target, warn);
    const dialect = await schema.open({
      mode,
      quoted,
      create: options.create ?? true,
      notify,
    });
    const telemetry = new Telemetry(dialect.engine, dialect.table, traceKeys);
    return new PostgresConsensus(executor, dialect, {
      runner,
      schema,
      telemetry,
      pageSize,
      warn,
      batch,
    });
  }

  /** The engine whose statements this store runs. */
  get engine(): Engine {
    return this.#dialect.engine;
  }

  /** Whether this store's compare-and-sets notify watchers in other processes (the `notify` option). */
  get notify(): boolean {
    return this.#dialect.notify;
  }

  /** {@inheritDoc Consensus.head} */
  async head(key: string): Promise<VersionedData | undefined> {
    this.#checkOpen("read head");
    checkKey("read head", key);
    const trace = this.#telemetry.start("head", key);
    return await this.#track(this.#head(key, trace), trace);
  }

  async #head(key: string, trace: OperationTrace): Promise<VersionedData | undefined> {
    // Reads of one key invoked in the same turn of the event loop share one
    // statement, sent once that turn's microtasks have run: it starts after
    // every one of their invocations, so its answer is a linearizable answer
    // for each. Writers that all lost a race to this store's winner re-read
    // the head together, and this spends one round trip on them, not one
    // each.
    const batch = this.#headBatches.get(key);
    if (batch !== undefined) {
      batch.size++;
      const version = await batch.read;
      return version && { seqno: version.seqno, data: version.data.slice() };
    }
    const entry = { size: 1, read: undefined as unknown as Promise<VersionedData | undefined> };
    entry.read = new Promise<void>((resolve) => host.queueMicrotask(resolve)).then(async () => {
      this.#headBatches.delete(key);
      // With cross-key batching the batcher records each statement's size
      // (the reads it served, over every key in it).
      if (this.#batch === undefined) this.#telemetry.batch("head", entry.size);
      const { rows } = this.#batch !== undefined
        ? await this.#batch.head(key, trace, entry.size)
        : await this.#run("read head", key, this.#dialect.head, [key], undefined, trace);
      const row = rows[0];
      // The floor follows this read even down: what the server just said
      // is a lower bound for the future (heads only grow), and a floor
      // above it could only come from rows changed outside the library,
      // which one read must be enough to heal.
      if (row === undefined) {
        this.#floors.delete(key);
        return undefined;
      }
      const seqno = row[0] as bigint;
      this.#setFloor(key, seqno);
      return { seqno, data: row[1] as Uint8Array };
    });
    this.#headBatches.set(key, entry);
    return await entry.read;
  }

  /** {@inheritDoc Consensus.compareAndSet} */
  async compareAndSet(key: string, next: VersionedData): Promise<CasResult> {
    this.#checkOpen("compareAndSet");
    checkKey("compareAndSet", key);
    checkVersion("compareAndSet", next);
    // The bytes as they are now: the driver serialises them later, after
    // the caller may have reused the array.
    const trace = this.#telemetry.start("compareAndSet", key);
    return await this.#track(this.#compareAndSet(key, next.seqno, next.data.slice(), trace), trace);
  }

  async #compareAndSet(
    key: string,
    seqno: bigint,
    data: Uint8Array,
    trace: OperationTrace,
  ): Promise<CasResult> {
    const next = { seqno, data };
    const deadline = Date.now() + this.#timeoutMs;
    // A compare-and-set for the same key and seqno already in flight from
    // this store: wait for it. If it commits, this one is a sure mismatch
    // (linearized just after that commit, which falls inside this call), and
    // no round trip is spent losing a race on the server, where the loser
    // would only wait for the winner's row lock. Otherwise this one runs.
    const ahead = this.#inflight.get(key);
    const waited = ahead !== undefined && ahead.seqno === next.seqno;
    if (waited) await ahead.run.then(() => {}, () => {});
    const floor = this.#floors.get(key);
    if (floor !== undefined && next.seqno <= floor) return "mismatch";
    const run = this.#batch !== undefined
      ? this.#batch.compareAndSet(key, next.seqno, next.data, deadline, trace, waited)
      : next.seqno === 0n
      ? this.#run("compareAndSet", key, this.#dialect.casFirst, [key, next.data], deadline, trace)
      : this.#run(
        "compareAndSet",
        key,
        this.#dialect.casNext,
        [key, next.seqno, next.data],
        deadline,
        trace,
      );
    // The owner awaits `run` below; only a waiter adds a handler of its own.
    const entry = { seqno: next.seqno, run };
    this.#inflight.set(key, entry);
    try {
      const { rowCount } = await run;
      if (rowCount !== 1) return "mismatch";
      this.#raiseFloor(key, next.seqno);
      this.#watchers.wake(key, next.seqno);
      return "committed";
    } finally {
      if (this.#inflight.get(key) === entry) this.#inflight.delete(key);
    }
  }

  /**
   * {@inheritDoc Consensus.compareAndSetMany}
   *
   * One statement, one round trip, on both engines; its argument is beside
   * `CAS_MANY_POSTGRES` in `src/dialect.ts`.
   *
   * @example Move money between two accounts, all or nothing
   * ```ts ignore
   * const [alice, bob] = [await store.head("alice"), await store.head("bob")];
   * const result = await store.compareAndSetMany([
   *   { key: "alice", next: { seqno: alice!.seqno + 1n, data: Uint8Array.of(8) } },
   *   { key: "bob", next: { seqno: bob!.seqno + 1n, data: Uint8Array.of(2) } },
   * ]);
   * console.log(result); // "mismatch" if either moved meanwhile: then nothing was written
   * ```
   */
  async compareAndSetMany(entries: readonly CasEntry[]): Promise<CasResult> {
    this.#checkOpen("compareAndSetMany");
    const sorted = checkEntries("compareAndSetMany", entries);
    const trace = this.#telemetry.start("compareAndSetMany", sorted[0].key);
    this.#telemetry.batch("compareAndSetMany", sorted.length);
    // A seqno at or below a key's floor is a sure mismatch for that entry,
    // and so for all of them (see #floors).
    for (const { key, next } of sorted) {
      const floor = this.#floors.get(key);
      if (floor !== undefined && next.seqno <= floor) {
        trace.end("mismatch");
        return "mismatch";
      }
    }
    // Encoded now: the bytes as they are at the call.
    const json = JSON.stringify(
      sorted.map(({ key, next }) => ({ k: key, s: String(next.seqno), d: toHex(next.data) })),
    );
    return await this.#track(this.#compareAndSetMany(sorted, json, trace), trace);
  }

  async #compareAndSetMany(
    sorted: readonly CasEntry[],
    json: string,
    trace: OperationTrace,
  ): Promise<CasResult> {
    const op = `compareAndSetMany of ${sorted.length} keys from ${JSON.stringify(sorted[0].key)}`;
    try {
      await this.#run(
        op,
        "",
        this.#dialect.casMany,
        [
          json,
          BigInt(sorted.length),
        ],
        undefined,
        trace,
      );
    } catch (error) {
      if (error instanceof ConsensusError && error.code === CAS_MANY_MISMATCH) return "mismatch";
      throw error;
    }
    for (const { key, next } of sorted) {
      this.#raiseFloor(key, next.seqno);
      this.#watchers.wake(key, next.seqno);
    }
    return "committed";
  }

  /** {@inheritDoc Consensus.scan} */
  async scan(key: string, from: bigint, limit?: number): Promise<VersionedData[]> {
    this.#checkOpen("scan");
    checkKey("scan", key);
    checkSeqno("scan", "from", from);
    checkLimit("scan", limit);
    if (limit === 0) return [];
    const trace = this.#telemetry.start("scan", key);
    return await this.#track(this.#scan(key, from, limit, trace), trace);
  }

  async #scan(
    key: string,
    from: bigint,
    limit: number | undefined,
    trace: OperationTrace,
  ): Promise<VersionedData[]> {
    const bound = limit === undefined ? MAX_SEQNO : BigInt(limit);
    const packed = this.#dialect.scanPacked;
    if (packed !== undefined && (limit === undefined || limit > ROW_SCAN_MAX_LIMIT)) {
      const { rows } = await this.#run("scan", key, packed, [key, from, bound], undefined, trace);
      return unpackVersions(rows);
    }
    const { rows } = await this.#run(
      "scan",
      key,
      this.#dialect.scan,
      [key, from, bound],
      undefined,
      trace,
    );
    const versions = new Array<VersionedData>(rows.length);
    for (let i = 0; i < rows.length; i++) {
      versions[i] = { seqno: rows[i][0] as bigint, data: rows[i][1] as Uint8Array };
    }
    return versions;
  }

  /** {@inheritDoc Consensus.truncate} */
  async truncate(key: string, seqno: bigint): Promise<number> {
    this.#checkOpen("truncate");
    checkKey("truncate", key);
    checkSeqno("truncate", "seqno", seqno);
    const trace = this.#telemetry.start("truncate", key);
    return await this.#track(this.#truncate(key, seqno, trace), trace);
  }

  async #truncate(key: string, seqno: bigint, trace: OperationTrace): Promise<number> {
    const { rows } = await this.#run(
      "truncate",
      key,
      this.#dialect.truncate,
      [key, seqno],
      undefined,
      trace,
    );
    const head = rows[0]?.[0] as bigint | null | undefined;
    if (head === null || head === undefined) {
      throw new RangeError(`Cannot truncate ${JSON.stringify(key)}: the key has no data`);
    }
    if (seqno > head) {
      throw new RangeError(
        `Cannot truncate ${JSON.stringify(key)}: seqno ${seqno} is above head ${head}`,
      );
    }
    this.#raiseFloor(key, head);
    return Number(rows[0][1] as bigint);
  }

  /** {@inheritDoc Consensus.listKeys} */
  listKeys(): AsyncIterable<string> {
    // A hand-written iterator rather than an async generator: a page of keys
    // is handed out from the buffer with no generator machinery per key,
    // which measured about twice as fast over 100,000 keys.
    return { [Symbol.asyncIterator]: () => this.#keyPages() };
  }

  #keyPages(): AsyncIterator<string> {
    let rows: readonly (readonly SqlValue[])[] = [];
    let index = 0;
    let after = "";
    let last = false;
    const next = async (): Promise<IteratorResult<string>> => {
      this.#checkOpen("list keys");
      const trace = this.#telemetry.start("listKeys", undefined);
      const page = await this.#track(
        this.#run(
          "list keys",
          after,
          this.#dialect.listKeys,
          [after, this.#pageSize],
          undefined,
          trace,
        ),
        trace,
      );
      rows = page.rows;
      index = 0;
      last = BigInt(rows.length) < this.#pageSize;
      if (rows.length === 0) return { value: undefined, done: true };
      after = rows[rows.length - 1][0] as string;
      return { value: rows[index++][0] as string, done: false };
    };
    return {
      next: () => {
        if (index < rows.length) {
          return Promise.resolve({ value: rows[index++][0] as string, done: false });
        }
        if (last) return Promise.resolve({ value: undefined, done: true });
        return next();
      },
    };
  }

  /** {@inheritDoc Consensus.close} */
  close(): Promise<void> {
    // Operations invoked before this call finish with their real results;
    // later ones are refused (#checkOpen); every call gets the same promise.
    this.#closing ??= (async () => {
      this.#closed = true;
      // Watchers end, and the LISTEN connection is released before the
      // executor closes (a pool waits for the clients it lent).
      await this.#watchers.close();
      if (this.#active > 0) await new Promise<void>((resolve) => this.#drained = resolve);
      await this.#executor.close();
    })();
    return this.#closing;
  }

  /** Closes the store; `await using` calls it. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  #raiseFloor(key: string, seqno: bigint): void {
    const floor = this.#floors.get(key);
    if (floor !== undefined && floor >= seqno) return;
    this.#setFloor(key, seqno);
  }

  #setFloor(key: string, seqno: bigint): void {
    // Re-inserting moves the key to the end: the map evicts in least
    // recently set order.
    if (this.#floors.delete(key) === false && this.#floors.size >= MAX_FLOORS) {
      this.#floors.delete(this.#floors.keys().next().value!);
    }
    this.#floors.set(key, seqno);
  }

  // Counts the operation in flight for close(), and ends its telemetry:
  // a string result is the compare-and-set's outcome; anything else is "ok".
  async #track<T>(operation: Promise<T>, trace: OperationTrace): Promise<T> {
    this.#active++;
    try {
      const value = await operation;
      trace.end(typeof value === "string" ? value as Outcome : "ok");
      return value;
    } catch (error) {
      trace.end("error", error);
      throw error;
    } finally {
      if (--this.#active === 0 && this.#drained !== undefined) this.#drained();
    }
  }

  #checkOpen(op: string): void {
    if (this.#closed) throw new TypeError(`Cannot ${op}: the store is closed`);
  }

  #run(
    op: string,
    key: string,
    statement: SqlStatement,
    params: readonly SqlValue[],
    deadline?: number,
    trace?: OperationTrace,
  ): Promise<SqlResult> {
    return this.#runner.run(op, key, statement, params, deadline, trace);
  }
}

function positiveInteger(name: string, value: unknown): number {
  if (typeof value !== "number" || !Number.isSafeInteger(value) || value <= 0) {
    throw new RangeError(
      `Cannot open consensus: ${name} must be a positive integer, got ${String(value)}`,
    );
  }
  return value;
}

// A scan of at most this many versions goes out as one row per version:
// packing costs the server a group and an ordered aggregate, which measured
// slower than rows for a single version (0.80) and level at 10; above that,
// packed wins (2.6 to 3.7 times the rate at 1,000 versions). BENCHMARKS.md,
// "Scans in one value".
const ROW_SCAN_MAX_LIMIT = 10;

/**
 * Decodes the rows of `Dialect.scanPacked`: each a bytea of (int8 seqno,
 * int4 length, data) entries. Each version's data is a view into its row's
 * bytes, not a copy.
 */
function unpackVersions(rows: readonly (readonly SqlValue[])[]): VersionedData[] {
  const versions: VersionedData[] = [];
  for (const row of rows) {
    const bytes = row[0] as Uint8Array;
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    for (let at = 0; at < bytes.byteLength;) {
      const seqno = view.getBigInt64(at);
      const length = view.getInt32(at + 8);
      at += 12;
      versions.push({ seqno, data: bytes.subarray(at, at + length) });
      at += length;
    }
  }
  return versions;
}
