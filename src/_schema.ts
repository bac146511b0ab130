// Schema setup at open: what the server is, whether the table exists and
// has a shape every statement is correct on, and creating it when allowed.
// Runs through the store's StatementRunner, so open's statements have the
// same timeout, retry and error handling as every operation.
import type { StatementRunner } from "./_runner.ts";
import {
  type Dialect,
  dialectFor,
  type Engine,
  quoteIdentifier,
  VERSION_QUERY,
} from "./dialect.ts";
import { ConsensusError, redactSecrets } from "./errors.ts";
import type { SqlResult, SqlStatement, SqlValue } from "./executor.ts";

// What open learns about the server and session in one round trip: the
// engine (CockroachDB's version() names itself) and the isolation level the
// session's implicit transactions run at.
const PROBE: SqlStatement = {
  name: "persist_consensus_probe",
  text: `${VERSION_QUERY}, current_setting('transaction_isolation')`,
  paramTypes: [],
  columnTypes: ["text", "text"],
};

// The table, resolved by the same rules as the statements' own (unqualified)
// name, through to_regclass: schema and name, then per column its type, its
// position in the primary key (0 when not in it), whether an insert must
// give it a value, whether its collation is deterministic (to_jsonb, so a
// catalog without collisdeterministic reads as deterministic), and per
// table the unique indexes besides an immediate primary key. pg_catalog
// rather than information_schema, whose constraint views hide the key from a
// role that may only read.
const TABLE_SHAPE: SqlStatement = {
  name: "persist_consensus_table_shape",
  text: "SELECT n.nspname::text, c.relname::text, a.attname::text, " +
    "format_type(a.atttypid, a.atttypmod)::text, " +
    "coalesce((SELECT k.position FROM pg_catalog.pg_index i, " +
    "unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, position) " +
    "WHERE i.indrelid = c.oid AND i.indisprimary AND k.attnum = a.attnum), 0)::int8, " +
    "(a.attnotnull AND NOT a.atthasdef)::text, " +
    "coalesce((SELECT to_jsonb(co) ->> 'collisdeterministic' FROM pg_catalog.pg_collation co " +
    "WHERE co.oid = a.attcollation), 'true'), " +
    "(SELECT count(*) FROM pg_catalog.pg_index i WHERE i.indrelid = c.oid AND i.indisunique " +
    "AND NOT (i.indisprimary AND i.indimmediate))::int8 " +
    "FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace " +
    "JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped " +
    "WHERE c.oid = to_regclass($1::text) AND c.relkind IN ('r', 'p') ORDER BY a.attnum",
  paramTypes: ["text"],
  columnTypes: ["text", "text", "text", "text", "int8", "text", "text", "int8"],
};

const REQUIRED_COLUMNS = [["shard", "text"], ["sequence_number", "bigint"], ["data", "bytea"]];
// Emptying a store's table is for tests only, so it is not a method of the
// store: the store registers how, and `./testing` looks it up.
const recreators = new WeakMap<object, () => Promise<void>>();

/** Registers how `dropAndRecreate` in `./testing` empties `store`'s table. */
export function provideRecreate(store: object, recreate: () => Promise<void>): void {
  recreators.set(store, recreate);
}

/** How to empty `store`'s table, when it is a store that registered one. */
export function recreateOf(store: object): (() => Promise<void>) | undefined {
  return recreators.get(store);
}

/** The table as open names it: quoted, with its schema when one is given. */
export function quotedTable(table: string, schema: string | undefined): string {
  return schema === undefined
    ? quoteIdentifier(table, "table")
    : `${quoteIdentifier(schema, "schema")}.${quoteIdentifier(table, "table")}`;
}

/** What open was asked for, validated. */
export interface SchemaOptions {
  mode: "auto" | Engine;
  /** The table as the user named it, quoted (schema-qualified or not). */
  quoted: string;
  create: boolean;
  notify: boolean;
}

/** Sets up and checks a store's table; its refusals name the server. */
export class Schema {
  readonly #runner: StatementRunner;
  readonly #target: string;
  readonly #warn: (message: string) => void;

  constructor(runner: StatementRunner, target: string, warn: (message: string) => void) {
    this.#runner = runner;
    this.#target = target;
    this.#warn = warn;
  }

  /**
   * Detects the engine, creates the table when missing and allowed, checks
   * its shape, and returns the dialect of the table that was checked.
   */
  async open(options: SchemaOptions): Promise<Dialect> {
    const { mode, quoted, notify } = options;
    const warn = this.#warn;
    const { server, isolation } = await this.probe();
    const engine: Engine = mode === "auto" ? server : mode;
    if (engine === "postgres" && server === "cockroach") {
      throw this.#refuse(
        'the server is CockroachDB, and the "postgres" statements are proven on Postgres only; ' +
          'open it with engine "auto" or "cockroach"',
      );
    }
    // The CockroachDB statements lean on serializability (see
    // src/dialect.ts); at any weaker level they commit a seqno twice.
    if (engine === "cockroach" && isolation !== "serializable") {
      throw this.#refuse(
        `the session runs at ${JSON.stringify(isolation)} isolation, and the CockroachDB ` +
          `statements are correct only at "serializable"; set default_transaction_isolation ` +
          `to 'serializable' for this role or connection` +
          (server === "postgres" ? ', or open it with engine "auto" on Postgres' : ""),
      );
    }
    if (engine === "cockroach" && server === "postgres") {
      warn(
        "@persist/consensus: running the CockroachDB statements on Postgres, which is for " +
          "testing them: they are linearizable only while every writer of the table runs them " +
          "at SERIALIZABLE (a writer with the Postgres statements, or below SERIALIZABLE, breaks " +
          'that); use engine "auto" in production',
      );
    }
    const unresolved = dialectFor(engine, quoted);
    let shape = await this.#tableShape(quoted);
    if (shape.length === 0) {
      if (!options.create) {
        throw this.#refuse(`table ${quoted} does not exist (and create is false)`, "42P01");
      }
      await this.#createTableAtOpen(unresolved);
      shape = await this.#tableShape(quoted);
      if (shape.length === 0) {
        throw this.#refuse(`${quoted} exists but is not a table`, "42809");
      }
    }
    const problem = shapeProblem(shape);
    if (problem !== undefined) {
      throw this.#refuse(
        `table ${quoted} ${problem}; the store needs (shard text, sequence_number bigint, ` +
          `data bytea, PRIMARY KEY (shard, sequence_number)) and no other unique index`,
      );
    }
    // From here on the statements name the table that was checked, schema
    // and all, so a search_path that changes later (a schema created ahead
    // of it, a pooled connection set up differently) cannot move them to
    // another table.
    const resolved = `${quoteIdentifier(shape[0][0] as string, "schema")}.${
      quoteIdentifier(shape[0][1] as string, "table")
    }`;
    if (notify && engine === "cockroach") {
      warn(
        "@persist/consensus: notify is ignored with the CockroachDB statements (CockroachDB has " +
          "no LISTEN/NOTIFY); watchers poll",
      );
    }
    return dialectFor(engine, resolved, notify);
  }

  /** Which engine the server is, and the isolation level of its implicit transactions. */
  async probe(): Promise<{ server: Engine; isolation: string }> {
    const { rows } = await this.#setupRun("connect", PROBE, []);
    const server: Engine = /cockroach/i.test(String(rows[0]?.[0] ?? "")) ? "cockroach" : "postgres";
    const isolation = String(rows[0]?.[1] ?? "").toLowerCase();
    return { server, isolation };
  }

  /** Drops the dialect's table and creates it again, empty. */
  async dropAndRecreate(dialect: Dialect): Promise<void> {
    await this.#runner.ddl("drop the table", dialect.dropTable);
    await this.createTable(dialect);
  }

  async #tableShape(quoted: string): Promise<readonly (readonly SqlValue[])[]> {
    const { rows } = await this.#setupRun("look up the table", TABLE_SHAPE, [quoted]);
    return rows;
  }

  // Runs a read during open: it changes nothing, so any failure is
  // determinate, and it reads as the user's action on the server they named.
  async #setupRun(
    what: string,
    statement: SqlStatement,
    params: readonly SqlValue[],
  ): Promise<SqlResult> {
    try {
      return await this.#runner.run(what, "", statement, params);
    } catch (error) {
      if (!(error instanceof ConsensusError)) throw error;
      const cause = error.cause instanceof Error
        ? error.cause.message
        : `${what} did not answer within ${this.#runner.timeoutMs} ms`;
      throw this.#refuse(cause, error.code, error);
    }
  }

  #refuse(reason: string, code?: string, cause?: unknown): ConsensusError {
    const on = this.#target && ` on ${this.#target}`;
    const state = code === undefined ? "" : ` (SQLSTATE ${code})`;
    return new ConsensusError(
      `Cannot open consensus store${on}: ${reason}${state}; nothing was changed`,
      { determinate: true, code, cause },
    );
  }

  // Creating the table is open's one write: a failure that surely rolled
  // back is refused like the reads; any other may have created it.
  async #createTableAtOpen(dialect: Dialect): Promise<void> {
    try {
      await this.createTable(dialect);
    } catch (error) {
      if (!(error instanceof ConsensusError)) throw error;
      const cause = error.cause instanceof Error ? redactSecrets(error.cause.message) : "";
      if (error.determinate) {
        throw this.#refuse(`create the table failed: ${cause}`, error.code, error);
      }
      const on = this.#target && ` on ${this.#target}`;
      throw new ConsensusError(
        `Cannot open consensus store${on}: ${error.message}`,
        { determinate: false, code: error.code, cause: error },
      );
    }
  }

  /** Creates the dialect's table unless it exists, and tunes it; a failed tuning only warns. */
  async createTable(dialect: Dialect): Promise<void> {
    try {
      await this.#runner.ddl("create the table", dialect.createTable);
    } catch (error) {
      // Two processes opening a new store at once: Postgres may report the
      // loser of CREATE TABLE IF NOT EXISTS as a duplicate (23505 on its
      // catalog, or 42P07). The table exists either way.
      if (
        error instanceof ConsensusError && (error.code === "23505" || error.code === "42P07") &&
        (await this.#tableShape(dialect.table)).length > 0
      ) return;
      throw error;
    }
    for (const statement of dialect.tune) {
      try {
        await this.#runner.ddl("tune the table", statement);
      } catch (error) {
        this.#warn(
          `@persist/consensus: could not run ${JSON.stringify(statement)}; the store works, ` +
            `but without this tuning: ${error instanceof Error ? error.message : String(error)}`,
        );
      }
    }
  }
}

// Says what is wrong with a table's shape, or undefined when it fits.
// Each refusal is a table on which some statement would be wrong: without
// that primary key two writers commit one seqno; with another unique index,
// ON CONFLICT DO NOTHING turns its conflicts into false mismatches (every
// marker has the same empty data); a deferrable key is not checked by
// ON CONFLICT at all; a nondeterministic collation makes distinct keys one
// log; a required column the statements do not fill fails every write.
function shapeProblem(rows: readonly (readonly SqlValue[])[]): string | undefined {
  const columns = new Map(rows.map((row) => [row[2] as string, row]));
  for (const [name, type] of REQUIRED_COLUMNS) {
    const column = columns.get(name);
    if (column === undefined) return `has no column ${name}`;
    if (column[3] !== type) return `has column ${name} of type ${column[3]}, not ${type}`;
    if (column[6] === "false") return `has column ${name} with a nondeterministic collation`;
  }
  const key = rows.filter((row) => (row[4] as bigint) > 0n)
    .sort((a, b) => Number((a[4] as bigint) - (b[4] as bigint)))
    .map((row) => row[2] as string);
  if (key.length === 0) return "has no primary key";
  if (key.join() !== "shard,sequence_number") {
    return `has PRIMARY KEY (${key.join(", ")}), not (shard, sequence_number)`;
  }
  if ((rows[0][7] as bigint) > 0n) {
    return "has a unique index besides its primary key, or a deferrable primary key";
  }
  const extra = rows.find((row) =>
    row[5] === "true" && !REQUIRED_COLUMNS.some(([name]) => name === row[2])
  );
  if (extra !== undefined) return `has column ${extra[2]}, NOT NULL without a default`;
  return undefined;
}
