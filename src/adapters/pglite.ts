/**
 * Adapter for PGlite (`npm:@electric-sql/pglite`), Postgres compiled to WASM
 * and run in-process: the embedded backend that needs no server.
 *
 * @module
 */
import {
  type QueryOptions,
  SqlError,
  type SqlExecutor,
  type SqlResult,
  type SqlStatement,
  type SqlValue,
} from "../executor.ts";
import { abandoned, convertRows, messageOf, SQLSTATE } from "./_convert.ts";

/**
 * The subset of a `PGlite` instance the adapter uses, written here so that
 * importing this module never loads the WASM build.
 *
 * @example Usage
 * ```ts
 * import type { PgliteDatabase } from "@persist/consensus/pglite";
 *
 * // A database that has been shut down, as a stand-in in a unit test.
 * const closed: PgliteDatabase = {
 *   query: () => Promise.reject(new Error("PGlite is closed")),
 *   close: () => Promise.resolve(),
 * };
 * ```
 */
export interface PgliteDatabase {
  /** Runs one statement with parameters (extended protocol). */
  query(
    text: string,
    params?: unknown[],
    options?: { rowMode?: "array" },
  ): Promise<PgliteResult>;
  /** Shuts the database down. */
  close(): Promise<void>;
  /**
   * LISTENs on `channel`; resolves to the function that stops it. Optional:
   * without it the executor cannot listen.
   */
  listen?(channel: string, callback: (payload: string) => void): Promise<() => Promise<void>>;
}

/** The subset of PGlite's query result the adapter uses. *
 * @example Usage
 * ```ts
 * import type { PgliteResult } from "@persist/consensus/pglite";
 *
 * const result: PgliteResult = { rows: [], affectedRows: 1, command: "INSERT" };
 * ```
 */
export interface PgliteResult {
  /** The rows, as arrays (`rowMode: "array"`). */
  readonly rows: ArrayLike<ArrayLike<unknown>>;
  /** Rows inserted, updated or deleted; absent for other statements. */
  readonly affectedRows?: number;
  /** The command tag's verb (`"SELECT"`, `"INSERT"`, ...). */
  readonly command?: string;
}

/**
 * Options for {@linkcode fromPglite}.
 *
 * @example Usage
 * ```ts
 * import type { FromPgliteOptions } from "@persist/consensus/pglite";
 *
 * const options: FromPgliteOptions = { owned: true };
 * ```
 */
export interface FromPgliteOptions {
  /**
   * Whether closing the executor (and so the store) closes the database.
   * Leave it `false` when the instance is shared.
   *
   * @default {false}
   */
  owned?: boolean;
}

const DML = new Set(["INSERT", "UPDATE", "DELETE", "MERGE"]);

function normalise(error: unknown): SqlError {
  if (error instanceof SqlError) return error;
  const code = (error as { code?: unknown } | null)?.code;
  if (typeof code === "string" && SQLSTATE.test(code)) {
    return new SqlError(messageOf(error), { code, cause: error });
  }
  // No socket to lose; a closed (or crashed) instance is the nearest thing,
  // and whether a statement in flight when it went away landed is unknown.
  const lost = /closed|aborted|unreachable/i.test(messageOf(error));
  return new SqlError(messageOf(error), { connectionLost: lost, cause: error });
}

/**
 * Wraps a `PGlite` instance as a {@linkcode SqlExecutor}. PGlite returns
 * int8 as `bigint` and bytea as `Uint8Array` already; the adapter still
 * converts, so a PGlite configured with other parsers keeps the contract.
 *
 * PGlite is one connection in one process: statements run one at a time
 * (correct, but not a measure of contention), and a statement cannot be
 * cancelled once it started. When the core gives up on a call (its
 * timeout) the call is reported indeterminate and the statement finishes on
 * its own.
 *
 * @param db The caller's `PGlite` instance.
 * @param options Whether the executor owns (and so closes) the database.
 * @returns The executor.
 *
 * @example Usage
 * ```ts ignore
 * import { PGlite } from "@electric-sql/pglite";
 * import { PostgresConsensus } from "@persist/consensus";
 * import { fromPglite } from "@persist/consensus/pglite";
 *
 * const db = await PGlite.create(); // in memory; PGlite.create("./data") persists
 * await using store = await PostgresConsensus.open(fromPglite(db, { owned: true }));
 * await store.compareAndSet("orders", { seqno: 0n, data: new Uint8Array([1]) });
 * ```
 */
export function fromPglite(db: PgliteDatabase, options: FromPgliteOptions = {}): SqlExecutor {
  const owned = options.owned ?? false;
  return {
    async query(
      statement: SqlStatement,
      params: readonly SqlValue[],
      queryOptions?: QueryOptions,
    ): Promise<SqlResult> {
      if (queryOptions?.signal?.aborted) {
        throw abandoned();
      }
      try {
        const result = await db.query(statement.text, params as unknown[], { rowMode: "array" });
        const rows = statement.columnTypes.length === 0 ? [] : convertRows(result.rows, statement);
        const rowCount = DML.has(result.command ?? "")
          ? result.affectedRows ?? 0
          : result.rows.length;
        return { rows, rowCount };
      } catch (error) {
        throw normalise(error);
      }
    },
    async ddl(text: string): Promise<void> {
      try {
        await db.query(text, [], { rowMode: "array" });
      } catch (error) {
        throw normalise(error);
      }
    },
    // In process: no connection to lose, so no reconnects to report. Every
    // store on the instance shares its one session, which receives its own
    // notifications too.
    ...typeof db.listen === "function" && {
      async listen(channel: string, onNotify: (payload: string) => void) {
        let closed = false;
        let unlisten: () => Promise<void>;
        try {
          unlisten = await db.listen!(channel, (payload) => {
            if (!closed) onNotify(payload);
          });
        } catch (error) {
          throw normalise(error);
        }
        return {
          async close() {
            if (closed) return;
            closed = true;
            await unlisten().catch(() => {});
          },
        };
      },
    },
    async close(): Promise<void> {
      if (owned) await db.close();
    },
  };
}
