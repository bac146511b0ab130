// The SQL of each engine, as data. Each statement carries the argument for
// why it is correct at the isolation level that engine runs it at:
// Postgres' default READ COMMITTED, CockroachDB's SERIALIZABLE.
//
// Schema (shared, and the same as Materialize persist's `consensus` table, so
// an existing table can be opened as it is):
//   shard text, sequence_number bigint, data bytea,
//   PRIMARY KEY (shard, sequence_number)
// The invariants every statement keeps, per shard:
//   I1. at most one row per (shard, sequence_number): the primary key;
//   I2. the rows form a contiguous range [low, head]: a row N + 1 is only
//       inserted while row N is the head, and truncate only removes a prefix;
//   I3. the head is never deleted: truncate deletes below a bound that is at
//       most a sequence number that exists.
// A compare-and-set commits iff its insert lands; `ON CONFLICT DO NOTHING`
// turns the loser of a race on the same (shard, seqno) into zero rows, a
// "mismatch", instead of a unique violation (23505), at every isolation level.
import type { SqlStatement, SqlType } from "./executor.ts";
import { utf8ByteLength } from "./_runtime.ts";

/** The statements one engine runs, for one table. */
export interface Dialect {
  /** `"postgres"` or `"cockroach"`. */
  readonly engine: Engine;
  /** Creates the table if it is missing. */
  readonly createTable: string;
  /** Engine-specific tuning after creation; each may fail for want of privilege. */
  readonly tune: readonly string[];
  /** Drops the table (tests only). */
  readonly dropTable: string;
  /** ($1 shard) -> (seqno, data) of the head. */
  readonly head: SqlStatement;
  /** ($1 shard, $2 data) -> rowCount 1 iff version 0 was inserted. */
  readonly casFirst: SqlStatement;
  /** ($1 shard, $2 seqno, $3 data) -> rowCount 1 iff version $2 was inserted. */
  readonly casNext: SqlStatement;
  /** ($1 shard, $2 from, $3 limit) -> (seqno, data) ascending. */
  readonly scan: SqlStatement;
  /** ($1 shard, $2 seqno) -> one row (head or null, deleted count). */
  readonly truncate: SqlStatement;
  /** ($1 after, $2 limit) -> distinct shards above `after`, ascending. */
  readonly listKeys: SqlStatement;
}

/** The engines with a dialect. */
export type Engine = "postgres" | "cockroach";

/** Statement that tells the engines apart; CockroachDB's version() names itself. */
export const VERSION_QUERY = "SELECT version()";

function statement(
  op: string,
  text: string,
  params: readonly SqlType[],
  columns: readonly SqlType[],
): SqlStatement {
  // The name identifies the exact text, so two stores on different tables
  // sharing one connection never collide on a prepared-statement name.
  return { name: `persist_consensus_${op}_${fnv1a(text)}`, text, params, columns };
}

function fnv1a(text: string): string {
  let hash = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    hash ^= text.charCodeAt(i);
    hash = Math.imul(hash, 0x01000193);
  }
  return (hash >>> 0).toString(16).padStart(8, "0");
}

// Reads see one snapshot; head and scan need nothing more. Under READ
// COMMITTED each statement takes a snapshot after every commit acknowledged
// before it started, so a read never misses an acknowledged write (the
// real-time order linearizability needs).
const HEAD = (t: string) =>
  `SELECT sequence_number, data FROM ${t} WHERE shard = $1::text ORDER BY sequence_number DESC LIMIT 1`;

const SCAN = (t: string) =>
  `SELECT sequence_number, data FROM ${t} WHERE shard = $1::text AND sequence_number >= $2::int8 ORDER BY sequence_number ASC LIMIT $3::int8`;

// Truncate reads the head and deletes below the bound in one statement, and
// returns both, so "above the head" is told apart from "nothing left to
// delete" without a second round trip. Rows deleted are below $2 <= head at
// the statement's snapshot <= head now (heads only grow), so I3 holds. Under
// READ COMMITTED a row that a concurrent truncate deleted first is skipped
// after waiting for it, so two truncates never count a row twice; rows
// inserted after the snapshot are above the head and untouched.
const TRUNCATE = (t: string) =>
  `WITH head AS (SELECT max(sequence_number) AS seqno FROM ${t} WHERE shard = $1::text), ` +
  `deleted AS (DELETE FROM ${t} WHERE shard = $1::text AND sequence_number < $2::int8 ` +
  `AND $2::int8 <= (SELECT seqno FROM head) RETURNING 1) ` +
  `SELECT (SELECT seqno FROM head), (SELECT count(*) FROM deleted)`;

// Keyset pagination: each page starts after the last key of the previous
// one, so memory stays bounded by the page size however many keys exist.
const LIST_KEYS = (t: string) =>
  `SELECT DISTINCT shard FROM ${t} WHERE shard > $1::text ORDER BY shard LIMIT $2::int8`;

// Version 0 may only be written to a shard with no rows.
// CockroachDB (SERIALIZABLE): the NOT EXISTS read and the insert commit
// atomically; a concurrent first write makes one transaction retry, and the
// retry sees the row and inserts nothing.
// Postgres (READ COMMITTED): two first writers both pass NOT EXISTS on their
// snapshots; the second insert then waits on the first's uncommitted row 0
// and, once that commits, does nothing. Residual window, documented in the
// README: if, during this one statement, other clients commit version 0,
// version 1 and a truncate that deletes version 0, the insert finds no live
// row 0 and lands. That needs three commits inside one statement's execution
// on a key that was empty when it started.
const CAS_FIRST = (t: string) =>
  `INSERT INTO ${t} (shard, sequence_number, data) SELECT $1::text, 0, $2::bytea ` +
  `WHERE NOT EXISTS (SELECT 1 FROM ${t} WHERE shard = $1::text) ON CONFLICT DO NOTHING`;

// Postgres (READ COMMITTED) compare-and-set of version $2 over head $2 - 1.
// The head row is locked FOR KEY SHARE, which writers share with each other
// but which blocks a DELETE of that row:
// - two writers racing for $2 both find head $2 - 1; the second insert waits
//   on the first's uncommitted row $2 and does nothing once it commits:
//   exactly one winner, and the loser sees 0 rows, a mismatch;
// - a writer whose snapshot is stale (the head moved past $2 - 1) inserts
//   nothing: row $2 already exists, and ON CONFLICT sees the latest
//   committed state, not the snapshot;
// - a truncate cannot make row $2 insertable again: deleting row $2 needs a
//   head above $2 and deletes row $2 - 1 too, which this statement either
//   holds locked (the truncate waits) or finds deleted when it takes the lock
//   (READ COMMITTED re-checks a locked row, skips it, and this inserts
//   nothing). A truncate that deleted row $2 first and then waits on our
//   lock is a deadlock; Postgres aborts one side with 40P01, which surely did
//   not commit and is retried.
// Without the lock, the statement Materialize uses on CockroachDB can, under
// READ COMMITTED, re-insert a version that a concurrent truncate removed.
// Without ON CONFLICT, the "tuned" Postgres statement raises 23505 for every
// loser whose snapshot predates the winner's commit.
const CAS_NEXT_POSTGRES = (t: string) =>
  `WITH head AS (SELECT sequence_number FROM ${t} WHERE shard = $1::text ` +
  `ORDER BY sequence_number DESC LIMIT 1 FOR KEY SHARE) ` +
  `INSERT INTO ${t} (shard, sequence_number, data) SELECT $1::text, $2::int8, $3::bytea ` +
  `FROM head WHERE head.sequence_number = $2::int8 - 1 ON CONFLICT DO NOTHING`;

// CockroachDB (SERIALIZABLE) compare-and-set: the head read and the insert
// are one serializable transaction, so the insert lands only if the head is
// still $2 - 1 at commit. Concurrent writers conflict on the shard's rows;
// CockroachDB retries the implicit transaction itself or returns 40001,
// which the core retries; either way the retry reads the new head and
// inserts nothing. ON CONFLICT keeps a duplicate a mismatch, not a 23505.
// No row lock: under SERIALIZABLE it would only add contention.
const CAS_NEXT_COCKROACH = (t: string) =>
  `INSERT INTO ${t} (shard, sequence_number, data) SELECT $1::text, $2::int8, $3::bytea ` +
  `WHERE (SELECT sequence_number FROM ${t} WHERE shard = $1::text ` +
  `ORDER BY sequence_number DESC LIMIT 1) = $2::int8 - 1 ON CONFLICT DO NOTHING`;

const CREATE_POSTGRES = (t: string) =>
  `CREATE TABLE IF NOT EXISTS ${t} (shard text NOT NULL, sequence_number bigint NOT NULL, ` +
  `data bytea NOT NULL, PRIMARY KEY (shard, sequence_number))`;

// Automatic statistics on a table this hot only add load and churn; Materialize
// runs its consensus table with them off.
const CREATE_COCKROACH = (t: string) =>
  `CREATE TABLE IF NOT EXISTS ${t} (shard text NOT NULL, sequence_number bigint NOT NULL, ` +
  `data bytea NOT NULL, PRIMARY KEY (shard, sequence_number)) ` +
  `WITH (sql_stats_automatic_collection_enabled = false)`;

// Truncation leaves MVCC tombstones that every head and scan of the shard
// must skip until garbage collection; the default TTL keeps them for hours.
const TUNE_COCKROACH = (t: string) => [
  `ALTER TABLE ${t} CONFIGURE ZONE USING gc.ttlseconds = 600`,
];

/**
 * Builds the statements of `engine` for the quoted table name `table`.
 *
 * @param engine Which engine's statements.
 * @param table A quoted, possibly schema-qualified, table name.
 * @returns The dialect.
 */
export function dialectFor(engine: Engine, table: string): Dialect {
  const cockroach = engine === "cockroach";
  const casNext = cockroach ? CAS_NEXT_COCKROACH : CAS_NEXT_POSTGRES;
  return {
    engine,
    createTable: cockroach ? CREATE_COCKROACH(table) : CREATE_POSTGRES(table),
    tune: cockroach ? TUNE_COCKROACH(table) : [],
    dropTable: `DROP TABLE IF EXISTS ${table}`,
    head: statement("head", HEAD(table), ["text"], ["int8", "bytea"]),
    casFirst: statement("cas_first", CAS_FIRST(table), ["text", "bytea"], []),
    casNext: statement(`cas_next`, casNext(table), ["text", "int8", "bytea"], []),
    scan: statement("scan", SCAN(table), ["text", "int8", "int8"], ["int8", "bytea"]),
    truncate: statement("truncate", TRUNCATE(table), ["text", "int8"], ["int8", "int8"]),
    listKeys: statement("list_keys", LIST_KEYS(table), ["text", "int8"], ["text"]),
  };
}

/**
 * Quotes an identifier for both engines: wraps it in double quotes and
 * doubles any inside.
 *
 * @param name The identifier, as the user wrote it.
 * @returns The quoted identifier.
 * @throws {TypeError | RangeError} When `name` is empty, holds U+0000, or is longer than Postgres' 63-byte limit.
 */
export function quoteIdentifier(name: string, what: string): string {
  if (typeof name !== "string") {
    throw new TypeError(`Cannot open consensus: ${what} must be a string, got ${typeof name}`);
  }
  if (name.length === 0) throw new RangeError(`Cannot open consensus: ${what} must not be empty`);
  if (name.includes("\u0000") || !name.isWellFormed()) {
    throw new RangeError(
      `Cannot open consensus: ${what} ${JSON.stringify(name)} contains U+0000 or a lone surrogate`,
    );
  }
  // Postgres silently truncates longer names, which could alias two tables.
  if (utf8ByteLength(name) > 63) {
    throw new RangeError(
      `Cannot open consensus: ${what} ${JSON.stringify(name)} is longer than 63 bytes`,
    );
  }
  return `"${name.replaceAll('"', '""')}"`;
}
