import type { QueryOptions, SqlExecutor, SqlResult, SqlStatement, SqlValue } from "../executor.ts";

/** One statement the core sent to a {@linkcode ScriptedExecutor}. */
export interface ScriptedCall {
  /** The operation, from the statement's name: `head`, `cas_first`, `cas_next`, `probe`, ... */
  readonly op: string;
  /** The statement as sent. */
  readonly statement: SqlStatement;
  /** The bound values. */
  readonly params: readonly SqlValue[];
  /** The cancellation signal the core passed, if any. */
  readonly options: QueryOptions | undefined;
}

/** Answers one statement: a result, or a thrown `SqlError`; may wait. */
export type ScriptedHandler = (call: ScriptedCall) => SqlResult | Promise<SqlResult>;

/** Options for {@linkcode ScriptedExecutor}. */
export interface ScriptedExecutorOptions {
  /**
   * What `version()` answers at open.
   *
   * @default {"PostgreSQL 16.0 (scripted)"}
   */
  version?: string;
  /**
   * The session's isolation level at open.
   *
   * @default {"read committed"}
   */
  isolation?: string;
}

// The table shape open reads: Materialize's layout, in schema "public".
function tableShape(table: string): SqlResult {
  const row = (name: string, type: string, key: bigint) =>
    ["public", table, name, type, key, "true", "true", 0n] as SqlValue[];
  return {
    rows: [
      row("shard", "text", 1n),
      row("sequence_number", "bigint", 2n),
      row("data", "bytea", 0n),
    ],
    rowCount: 3,
  };
}

/**
 * An executor that answers from a script instead of a server, for unit tests
 * of what the core decides by itself: batching, queueing, caches, retries and
 * deadlines. It never stands in for what a server decides (the statements'
 * semantics are tested against a real Postgres).
 *
 * Each statement is routed by its operation (the statement name without the
 * `persist_consensus_` prefix and hash) to the handler given with `on`; open's
 * own statements are answered by default (a Postgres server at READ
 * COMMITTED, a table of the right shape). A statement with no handler fails
 * the test with a plain `Error`. Every call is recorded in `calls`.
 *
 * @example Count the statements a head read sends
 * ```ts
 * import { PostgresConsensus } from "@persist/consensus";
 * import { ScriptedExecutor } from "@persist/consensus/testing";
 *
 * const executor = new ScriptedExecutor();
 * executor.on("head", () => ({ rows: [[4n, new Uint8Array([1])]], rowCount: 1 }));
 * const store = await PostgresConsensus.open(executor, { create: false });
 * await Promise.all([store.head("k"), store.head("k"), store.head("k")]);
 * if (executor.sent("head") !== 1) throw new Error("three reads in one turn share one statement");
 * await store.close();
 * ```
 */
export class ScriptedExecutor implements SqlExecutor {
  /** Every statement sent, in order. */
  readonly calls: ScriptedCall[] = [];
  /** Whether `close()` was called. */
  closed = false;
  readonly target = "postgres://scripted@127.0.0.1:5432/test";
  readonly #handlers = new Map<string, ScriptedHandler>();

  /**
   * Creates an executor with open's statements answered.
   *
   * @param options What open reads: the version and the isolation level.
   */
  constructor(options: ScriptedExecutorOptions = {}) {
    const version = options.version ?? "PostgreSQL 16.0 (scripted)";
    const isolation = options.isolation ?? "read committed";
    this.on("probe", () => ({ rows: [[version, isolation]], rowCount: 1 }));
    this.on("table_shape", (call) => {
      const last = /"((?:[^"]|"")*)"$/.exec(String(call.params[0]));
      return tableShape((last?.[1] ?? "consensus").replaceAll('""', '"'));
    });
  }

  /**
   * Sets the handler of an operation, replacing any before it.
   *
   * @param op The operation: `head`, `cas_first`, `cas_next`, `cas_many`, `scan` (answered as one row per version, also for the packed scan), `truncate`, `list_keys`, `probe`, `table_shape`.
   * @param handler Answers each call.
   * @returns This executor, for chaining.
   */
  on(op: string, handler: ScriptedHandler): this {
    this.#handlers.set(op, handler);
    return this;
  }

  /**
   * How many statements of `op` were sent.
   *
   * @param op The operation.
   * @returns The count.
   */
  sent(op: string): number {
    return this.calls.filter((call) => call.op === op).length;
  }

  /** {@inheritDoc SqlExecutor.query} */
  query(
    statement: SqlStatement,
    params: readonly SqlValue[],
    options?: QueryOptions,
  ): Promise<SqlResult> {
    const name = statement.name.replace(/^persist_consensus_/, "").replace(/_[0-9a-f]{8}$/, "");
    // Scripts answer both scans with (seqno, data) rows; the packed one is
    // packed here, so a script does not depend on which one the store sends.
    const packed = name === "scan_packed";
    const op = packed ? "scan" : name;
    const call: ScriptedCall = { op, statement, params, options };
    this.calls.push(call);
    const handler = this.#handlers.get(op);
    if (handler === undefined) {
      return Promise.reject(new Error(`ScriptedExecutor: no handler for ${JSON.stringify(op)}`));
    }
    try {
      const result = Promise.resolve(handler(call));
      return packed ? result.then(packVersions) : result;
    } catch (error) {
      return Promise.reject(error);
    }
  }

  /** {@inheritDoc SqlExecutor.ddl} */
  ddl(_text: string): Promise<void> {
    return Promise.resolve();
  }

  /** {@inheritDoc SqlExecutor.close} */
  close(): Promise<void> {
    this.closed = true;
    return Promise.resolve();
  }
}

/** Packs (seqno, data) rows as the Postgres packed scan returns them: one bytea. */
function packVersions(result: SqlResult): SqlResult {
  const size = result.rows.reduce((n, row) => n + 12 + (row[1] as Uint8Array).byteLength, 0);
  const bytes = new Uint8Array(size);
  const view = new DataView(bytes.buffer);
  let at = 0;
  for (const [seqno, data] of result.rows as readonly (readonly [bigint, Uint8Array])[]) {
    view.setBigInt64(at, seqno);
    view.setInt32(at + 8, data.byteLength);
    bytes.set(data, at + 12);
    at += 12 + data.byteLength;
  }
  const rows = size === 0 ? [] : [[bytes]];
  return { ...result, rows, rowCount: rows.length };
}
