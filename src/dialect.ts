// The SQL of each engine, as data. Each statement carries the argument for
// why it is correct at the isolation levels that engine runs it at:
// - the Postgres statements at READ COMMITTED, REPEATABLE READ and
//   SERIALIZABLE (whatever the session's level, nothing to configure);
// - the CockroachDB statements at SERIALIZABLE only. They rely on the
//   engine's serializability and are wrong at weaker levels, so
//   `PostgresConsensus.open` reads the session's level and refuses them
//   anywhere else (CockroachDB's READ COMMITTED included).
//
// Schema (shared, and the same as Materialize persist's `consensus` table, so
// an existing table can be opened as it is):
//   shard text, sequence_number bigint, data bytea,
//   PRIMARY KEY (shard, sequence_number)
// Rows with sequence_number >= 0 are versions. The Postgres statements add
// one more row per shard, the first-write marker at sequence_number -1,
// written in the same transaction as version 0 (see CAS_FIRST_POSTGRES) and
// never deleted; every read, truncate and key listing skips it.
// The invariants every statement keeps, per shard:
//   I1. at most one row per (shard, sequence_number): the primary key;
//   I2. the versions form a contiguous range [low, head]: a row N + 1 is only
//       inserted while row N is the head, and truncate only removes a prefix;
//   I3. the head is never deleted: truncate deletes below a bound that is at
//       most a sequence number that exists. Together with I2: once a shard
//       has a version, it has one forever (through this library);
//   I4. the marker is inserted at most once and never deleted, and version 0
//       is only ever inserted by the transaction that inserted the marker
//       (Postgres statements), so version 0 is committed at most once even
//       after it was truncated.
// A compare-and-set commits iff its insert lands (the store reads
// "committed" iff rowCount === 1); `ON CONFLICT DO NOTHING`
// turns the loser of a race on the same (shard, seqno) into zero rows, a
// "mismatch", instead of a unique violation (23505). Under REPEATABLE READ
// and SERIALIZABLE, Postgres raises 40001 instead when the conflicting row
// was committed after the statement's snapshot; that rolled back, and the
// core runs the statement again on a fresh snapshot.
import type { SqlStatement, SqlType } from "./executor.ts";
import { utf8ByteLength } from "./_runtime.ts";

/** The statements one engine runs, for one table. */
export interface Dialect {
  /** `"postgres"` or `"cockroach"`. */
  readonly engine: Engine;
  /** The quoted, possibly schema-qualified, table name the statements use. */
  readonly table: string;
  /**
   * The notification channel of this table: compare-and-sets notify on it
   * when `notify` is set, and watchers LISTEN on it. `undefined` for
   * CockroachDB, which has no LISTEN/NOTIFY.
   */
  readonly channel: string | undefined;
  /** Whether the compare-and-set statements notify `channel` when they commit. */
  readonly notify: boolean;
  /** Creates the table if it is missing. */
  readonly createTable: string;
  /** Engine-specific tuning after creation; each may fail for want of privilege. */
  readonly tune: readonly string[];
  /** Drops the table (tests only). */
  readonly dropTable: string;
  /** ($1 shard) -> (seqno, data) of the head. */
  readonly head: SqlStatement;
  /** ($1 shard, $2 data) -> rowCount 1 iff version 0 was inserted (and notified). */
  readonly casFirst: SqlStatement;
  /** ($1 shard, $2 seqno, $3 data) -> rowCount 1 iff version $2 was inserted (and notified). */
  readonly casNext: SqlStatement;
  /**
   * ($1 entries as JSON [{k, s, d: hex}], sorted by key; $2 their count) ->
   * one row iff every entry was appended; fails with 22012 (nothing
   * appended, nothing left behind) when any entry's condition failed.
   */
  readonly casMany: SqlStatement;
  /**
   * ($1 keys as a JSON array of strings) -> (position from 1, seqno, data)
   * of the head of each key that has one. Cross-key batching (src/_batch.ts).
   */
  readonly headBatch: SqlStatement;
  /**
   * ($1 entries as JSON [{k, s, d: hex}], distinct keys sorted) -> one row:
   * the JSON array of the keys whose entry was appended; each entry commits
   * or mismatches on its own. Cross-key batching (src/_batch.ts).
   */
  readonly casBatch: SqlStatement;
  /** ($1 shard, $2 from, $3 limit) -> (seqno, data) ascending. */
  readonly scan: SqlStatement;
  /**
   * ($1 shard, $2 from, $3 limit) -> the rows of `scan`, packed: one bytea
   * per row holding (int8 seqno, int4 length, data) of one or more versions,
   * ascending across rows; undefined where the engine lacks it.
   */
  readonly scanPacked: SqlStatement | undefined;
  /** ($1 shard, $2 seqno) -> one row (head or null, deleted count). */
  readonly truncate: SqlStatement;
  /** ($1 after, $2 limit) -> distinct shards above `after`, ascending. */
  readonly listKeys: SqlStatement;
}

/** The engines with a dialect. */
export type Engine = "postgres" | "cockroach";

/** Statement that tells the engines apart; CockroachDB's version() names itself. */
export const VERSION_QUERY = "SELECT version()";

/** A statement named after its operation and a hash of its text. */
export function statement(
  op: string,
  text: string,
  params: readonly SqlType[],
  columns: readonly SqlType[],
): SqlStatement {
  // The name identifies the exact text, so two stores on different tables
  // sharing one connection never collide on a prepared-statement name.
  return {
    name: `persist_consensus_${op}_${fnv1a(text)}`,
    text,
    paramTypes: params,
    columnTypes: columns,
  };
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
// before it started, and under REPEATABLE READ and SERIALIZABLE so does the
// single statement's own transaction: a read never misses an acknowledged
// write (the real-time order linearizability needs). `sequence_number >= 0`
// skips the marker.
const HEAD = (t: string) =>
  `SELECT sequence_number, data FROM ${t} WHERE shard = $1::text AND sequence_number >= 0 ` +
  `ORDER BY sequence_number DESC LIMIT 1`;

// $2 is never negative (the core checks it), so the marker is never read.
const SCAN = (t: string) =>
  `SELECT sequence_number, data FROM ${t} WHERE shard = $1::text AND sequence_number >= $2::int8 ORDER BY sequence_number ASC LIMIT $3::int8`;

// The same rows as SCAN, packed server-side into a few bytea values, each
// the concatenation, ascending, of (int8 seqno, int4 byte length, data) of
// up to 48 versions: one protocol value per 48 versions instead of one row
// per version, which the JavaScript drivers parse far faster (BENCHMARKS.md,
// "Scans in one value"). One statement, so one snapshot, as SCAN. Groups
// are `sequence_number / 48`: seqnos are unique, so a group holds at most
// 48 versions of at most MAX_DATA_BYTES each, 768 MiB, under Postgres' 1 GiB
// limit on one value, however many versions the scan returns. $2 >= 0, so
// the marker is never read and no group spans zero. Postgres only: int8send
// and int4send do not exist on CockroachDB, which keeps SCAN.
const SCAN_PACKED_POSTGRES = (t: string) =>
  `SELECT string_agg(int8send(sequence_number) || int4send(octet_length(data)) || data, ` +
  `''::bytea ORDER BY sequence_number) FROM (${SCAN(t)}) v ` +
  `GROUP BY sequence_number / 48 ORDER BY sequence_number / 48`;

// Truncate reads the head and deletes below the bound in one statement, and
// returns both, so "above the head" is told apart from "nothing left to
// delete" without a second round trip.
// - I3: rows deleted are below $2 <= head at the statement's snapshot <=
//   head now (heads only grow), so the head survives at every level.
// - I4: the marker (-1) is outside `sequence_number >= 0`.
// - READ COMMITTED: a row that a concurrent truncate deleted first is
//   skipped after waiting for it, so two truncates never count a row twice;
//   rows inserted after the snapshot are above the head and untouched.
// - REPEATABLE READ and SERIALIZABLE: a row deleted by a truncate committed
//   after the snapshot raises 40001; nothing was deleted, and the retry
//   runs on a fresh snapshot.
// - A compare-and-set holding the row below its new version FOR KEY SHARE
//   makes this wait (see CAS_NEXT_POSTGRES); a cycle is a deadlock (40P01),
//   which rolls one side back to be retried.
const TRUNCATE = (t: string) =>
  `WITH head AS (SELECT max(sequence_number) AS seqno FROM ${t} ` +
  `WHERE shard = $1::text AND sequence_number >= 0), ` +
  `deleted AS (DELETE FROM ${t} WHERE shard = $1::text AND sequence_number >= 0 ` +
  `AND sequence_number < $2::int8 AND $2::int8 <= (SELECT seqno FROM head) RETURNING 1) ` +
  `SELECT (SELECT seqno FROM head), (SELECT count(*) FROM deleted)`;

// Keyset pagination: each page starts after the last key of the previous
// one, so memory stays bounded by the page size however many keys exist.
// A shard with a marker always has a version (I3, I4), so listing by
// version or by any row is the same; the filter keeps it so if rows were
// deleted outside the library.
const LIST_KEYS = (t: string) =>
  `SELECT DISTINCT shard FROM ${t} WHERE shard > $1::text AND sequence_number >= 0 ` +
  `ORDER BY shard LIMIT $2::int8`;

// Postgres compare-and-set of version 0, at every isolation level.
// Version 0 may only be written to a shard that never had a version. A
// check on the statement's snapshot alone cannot say that: between the
// snapshot and the insert, other clients may commit version 0, version 1,
// and a truncate that deletes version 0, and the insert would land again
// (seen under READ COMMITTED and REPEATABLE READ). So the statement first
// inserts the shard's marker (-1), and inserts version 0 only from the
// marker's RETURNING row:
// 1. The marker insert's ON CONFLICT check runs against the latest
//    committed state, not the snapshot: if another transaction inserted the
//    marker, this one waits for it to end; if that committed, this inserts
//    nothing (READ COMMITTED) or fails with 40001 (REPEATABLE READ,
//    SERIALIZABLE: the marker is not in its snapshot), rolled back and
//    retried, and the retry inserts nothing. Markers are never deleted, so
//    at most one transaction per shard ever inserts one (I4).
// 2. Version 0 is inserted only by the transaction whose marker insert
//    landed, and only if the snapshot holds no version of the shard: that
//    covers shards written before markers existed (an existing table of
//    Materialize's layout, or versions seeded outside the library), whose
//    versions, once there, never all go (I3).
// 3. Committed (one row): the marker was new, so nobody else ever inserted
//    version 0 through this statement, and the snapshot (taken after the
//    call began) held no version; no version > 0 can appear without a
//    version 0 below it (I2). The shard was empty up to this commit, the
//    linearization point.
// 4. Mismatch (no row): either a committed marker was found during the
//    call (the shard had a version then, forever: I3), or the snapshot held
//    a version (same), or version 0 exists (ON CONFLICT, latest state).
//    Each is a moment inside the call when the head was >= 0.
// A marker inserted while the snapshot held versions (case 2's mismatch)
// stays, harmless: that shard had a version already.
// Every process writing the table must use these statements: a writer of
// version 0 without a marker (an older release of this library, or
// Materialize itself) reopens the window.
const FIRST_MARKER = (t: string) =>
  `marker AS (INSERT INTO ${t} (shard, sequence_number, data) ` +
  `VALUES ($1::text, -1, ''::bytea) ON CONFLICT DO NOTHING RETURNING 1)`;
const FIRST_INSERT = (t: string) =>
  `INSERT INTO ${t} (shard, sequence_number, data) SELECT $1::text, 0, $2::bytea FROM marker ` +
  `WHERE NOT EXISTS (SELECT 1 FROM ${t} WHERE shard = $1::text AND sequence_number >= 0) ` +
  `ON CONFLICT DO NOTHING`;
const CAS_FIRST_POSTGRES = (t: string) => `WITH ${FIRST_MARKER(t)} ${FIRST_INSERT(t)}`;

// CockroachDB compare-and-set of version 0, at SERIALIZABLE only (open
// refuses the CockroachDB statements at any other level): the NOT EXISTS
// read and the insert commit atomically; a concurrent first write makes one
// transaction retry (CockroachDB internally, or 40001 to the core), and the
// retry sees the row and inserts nothing. A truncate of version 0 needs a
// version 1, which conflicts with the read just the same. A marker row left
// by the Postgres statements counts as a version here (a shard with a
// marker had a version). On a Postgres table these statements are safe only
// while every writer of it runs them at SERIALIZABLE: this one writes no
// marker, and Postgres' serializable checks do not cover a READ COMMITTED
// writer of the Postgres statements (open warns when it runs them there).
// Not used on Postgres below SERIALIZABLE: there the read is a snapshot and
// the window of CAS_FIRST_POSTGRES is open.
const CAS_FIRST_COCKROACH = (t: string) =>
  `INSERT INTO ${t} (shard, sequence_number, data) SELECT $1::text, 0, $2::bytea ` +
  `WHERE NOT EXISTS (SELECT 1 FROM ${t} WHERE shard = $1::text) ON CONFLICT DO NOTHING`;

// Postgres compare-and-set of version $2 > 0 over head $2 - 1, at every
// isolation level. The head row is locked FOR KEY SHARE, which writers share
// with each other but which blocks a DELETE of that row:
// - two writers racing for $2 both find head $2 - 1; the second insert waits
//   on the first's uncommitted row $2 and does nothing once it commits
//   (READ COMMITTED), or fails with 40001 when that row is not in its
//   snapshot (REPEATABLE READ, SERIALIZABLE) and the retry finds head $2:
//   exactly one winner, and the loser sees 0 rows, a mismatch;
// - a writer whose snapshot is stale (the head moved past $2 - 1) inserts
//   nothing: row $2 already exists, and ON CONFLICT sees the latest
//   committed state, not the snapshot (or raises 40001, as above);
// - a truncate cannot make row $2 insertable again: deleting row $2 needs a
//   head above $2 and deletes row $2 - 1 too, which this statement either
//   holds locked (the truncate waits) or finds deleted when it takes the
//   lock: READ COMMITTED re-checks a locked row, skips it and takes the next
//   one below in its snapshot (deleted too, or not $2 - 1), so this inserts
//   nothing; REPEATABLE READ and SERIALIZABLE raise 40001 and the retry
//   sees the new head. A truncate that deleted row $2 first and then waits
//   on our lock is a deadlock; Postgres aborts one side with 40P01, which
//   surely did not commit and is retried;
// - the marker (-1) is never the head while a version exists (I3), and
//   $2 - 1 >= 0, so it never satisfies the condition.
// Without the lock, the CockroachDB statement can, under READ COMMITTED,
// re-insert a version that a concurrent truncate removed.
const NEXT_HEAD = (t: string) =>
  `head AS (SELECT sequence_number FROM ${t} WHERE shard = $1::text ` +
  `ORDER BY sequence_number DESC LIMIT 1 FOR KEY SHARE)`;
const NEXT_INSERT = (t: string) =>
  `INSERT INTO ${t} (shard, sequence_number, data) SELECT $1::text, $2::int8, $3::bytea ` +
  `FROM head WHERE head.sequence_number = $2::int8 - 1 ON CONFLICT DO NOTHING`;
const CAS_NEXT_POSTGRES = (t: string) => `WITH ${NEXT_HEAD(t)} ${NEXT_INSERT(t)}`;

// CockroachDB compare-and-set, at SERIALIZABLE only: the head read and the
// insert are one serializable transaction, so the insert lands only if the
// head is still $2 - 1 at commit. Concurrent writers conflict on the shard's
// rows; CockroachDB retries the implicit transaction itself or returns
// 40001, which the core retries; either way the retry reads the new head and
// inserts nothing. ON CONFLICT keeps a duplicate a mismatch, not a 23505.
// No row lock: under SERIALIZABLE it would only add contention.
const CAS_NEXT_COCKROACH = (t: string) =>
  `INSERT INTO ${t} (shard, sequence_number, data) SELECT $1::text, $2::int8, $3::bytea ` +
  `WHERE (SELECT sequence_number FROM ${t} WHERE shard = $1::text ` +
  `ORDER BY sequence_number DESC LIMIT 1) = $2::int8 - 1 ON CONFLICT DO NOTHING`;

// Notifying compare-and-sets (Postgres statements, `notify: true`): the
// INSERT of CAS_FIRST_POSTGRES or CAS_NEXT_POSTGRES becomes a data-modifying
// CTE whose RETURNING row feeds pg_notify, one row per inserted version:
//   WITH <same CTEs>, inserted AS (<same INSERT> RETURNING 1)
//   SELECT pg_notify('<channel>', '<seqno>:<shard>') FROM inserted
// - When it commits is unchanged: the reads, the FOR KEY SHARE lock, the
//   marker insert, the insert and its ON CONFLICT check are the same, on the
//   same snapshot, in the same order (a data-modifying CTE runs exactly once,
//   whether or not the outer query reads all of its rows). So every argument
//   above holds as it is, at every isolation level.
// - rowCount stays right: the outer SELECT returns one row iff the insert
//   returned one, so rowCount (rows returned) is 1 iff the version was
//   inserted, as it was for the bare INSERT.
// - A notification is sent only by a committed write: NOTIFY is
//   transactional. pg_notify queues it in the transaction; Postgres delivers
//   it after the commit, and drops it when the transaction rolls back (a
//   40001 or 40P01 before the core's retry, any error, a lost connection).
//   A listener receives it only once the transaction is visible to new
//   snapshots, so a read started after the notification sees the version.
// - One new way to fail, and it is determinate: at commit, Postgres takes a
//   database-wide lock and appends the notification to its queue before it
//   writes the commit record; if the queue is full (listeners far behind:
//   8 GB by default) the transaction fails with 54000 and rolls back. Class
//   54 is determinate in src/_classify.ts.
// - The cost: that lock is held until the commit record is flushed, so
//   notifying commits are serialised, and group commit no longer merges
//   their WAL flushes. Measured with 16 concurrent writers: 0.39 of the
//   plain rate at the server (pgbench), 0.70 through the library; one
//   writer: no measurable cost (BENCHMARKS.md, "Watch"). It is why
//   `notify` is off by default.
// No round trip is added: the notification rides in the statement. The
// CockroachDB statements never notify: CockroachDB has no LISTEN/NOTIFY.
const CAS_FIRST_POSTGRES_NOTIFY = (t: string, channel: string) =>
  `WITH ${FIRST_MARKER(t)}, inserted AS (${FIRST_INSERT(t)} RETURNING 1) ` +
  `SELECT pg_notify('${channel}', '0:' || $1::text) FROM inserted`;

const CAS_NEXT_POSTGRES_NOTIFY = (t: string, channel: string) =>
  `WITH ${NEXT_HEAD(t)}, inserted AS (${NEXT_INSERT(t)} RETURNING 1) ` +
  `SELECT pg_notify('${channel}', $2::int8::text || ':' || $1::text) FROM inserted`;

/**
 * The notification channel of `table` (a quoted, schema-qualified name):
 * channels are per database, so each table has its own, named by a hash of
 * its name (lower case, so it needs no quoting and matches pg_notify's
 * argument exactly). Two tables whose names collide only share wake-ups,
 * which watchers treat as hints.
 */
export function channelFor(table: string): string {
  return `persist_consensus_${fnv1a(table)}`;
}

// The SQLSTATE (division_by_zero) a compare-and-set of several keys fails
// with when any entry's condition does not hold: the error rolls back the
// whole statement, markers included, and the core reads it as "mismatch".
// Nothing else in those statements divides.
export const CAS_MANY_MISMATCH = "22012";

// The entries, unpacked from one JSON text parameter (see src/executor.ts).
const CAS_MANY_INPUT = `input AS (SELECT e->>'k' AS k, (e->>'s')::int8 AS s, ` +
  `decode(e->>'d', 'hex') AS d FROM jsonb_array_elements($1::text::jsonb) AS e)`;

// The last step of both engines' statements: fail (22012) unless every entry
// was inserted, so a partial insert never commits. `count / $2` is 1 when all
// $2 rows landed and 0 otherwise; the divisor is computed at run time, so the
// planner cannot fold the division early.
const CAS_MANY_ALL_OR_NOTHING = `SELECT 1 / ((SELECT count(*) FROM ins) / $2::int8)`;

// Postgres compare-and-set of several keys, at every isolation level: the
// single-key arguments (CAS_FIRST_POSTGRES, CAS_NEXT_POSTGRES) applied per
// entry inside one statement, and then all or nothing:
// - entries with seqno > 0 lock their key's head FOR KEY SHARE (keys in
//   sorted order) and count as ready iff it is seqno - 1, exactly as
//   CAS_NEXT_POSTGRES (a head deleted under us is skipped to rows below,
//   which are deleted too or older: not ready);
// - entries with seqno 0 insert their key's marker and count as ready iff
//   it landed and the snapshot holds no version, exactly as
//   CAS_FIRST_POSTGRES;
// - the rows are inserted only if all entries are ready, and the statement
//   fails unless every one landed (ON CONFLICT may skip one when another
//   writer committed the same version after our lock, or raise 40001 under
//   REPEATABLE READ / SERIALIZABLE, which is retried). The failure rolls
//   back every marker and row this statement wrote, so a mismatch leaves
//   nothing behind: a marker without its version 0 would make the key
//   unwritable.
// Committed: every head was seqno - 1 and held so until commit (the locks
// stop truncates, the inserted rows stop competing writers, markers stop
// first writes), so all conditions hold at the commit, the linearization
// point. Mismatch: one condition failed at a moment inside the call (the
// same moments as in the single-key arguments), where the conjunction was
// false. Two such statements that wait on each other's rows deadlock
// (40P01), roll back and are retried; sorted keys make that rare.
const CAS_MANY_POSTGRES_CTES = (t: string, returning: string) =>
  `WITH ${CAS_MANY_INPUT}, ` +
  `heads AS (SELECT i.s, h.sequence_number AS head FROM input i CROSS JOIN LATERAL ` +
  `(SELECT sequence_number FROM ${t} WHERE shard = i.k AND sequence_number >= 0 ` +
  `ORDER BY sequence_number DESC LIMIT 1 FOR KEY SHARE) h WHERE i.s > 0), ` +
  `markers AS (INSERT INTO ${t} (shard, sequence_number, data) ` +
  `SELECT k, -1, ''::bytea FROM input WHERE s = 0 ON CONFLICT DO NOTHING RETURNING shard), ` +
  `ready AS (SELECT (SELECT count(*) FROM heads WHERE head = s - 1) + ` +
  `(SELECT count(*) FROM input i WHERE i.s = 0 ` +
  `AND EXISTS (SELECT 1 FROM markers WHERE markers.shard = i.k) ` +
  `AND NOT EXISTS (SELECT 1 FROM ${t} v WHERE v.shard = i.k AND v.sequence_number >= 0)) AS n), ` +
  `ins AS (INSERT INTO ${t} (shard, sequence_number, data) SELECT k, s, d FROM input ` +
  `WHERE (SELECT n FROM ready) = $2::int8 ON CONFLICT DO NOTHING RETURNING ${returning})`;
const CAS_MANY_POSTGRES = (t: string) =>
  `${CAS_MANY_POSTGRES_CTES(t, "1")} ${CAS_MANY_ALL_OR_NOTHING}`;

// CockroachDB compare-and-set of several keys, at SERIALIZABLE only: every
// entry's condition is read (head = seqno - 1, or no row for seqno 0) and
// the rows inserted in one serializable transaction, so the conditions still
// hold at commit; conflicts retry (internally or 40001). The statement fails
// unless every row landed. One INSERT only: CockroachDB refuses two
// modifications of one table in a statement.
const CAS_MANY_COCKROACH = (t: string) =>
  `WITH ${CAS_MANY_INPUT}, ` +
  `ready AS (SELECT count(*) AS n FROM input i WHERE ` +
  `(i.s = 0 AND NOT EXISTS (SELECT 1 FROM ${t} WHERE shard = i.k)) OR (i.s > 0 AND ` +
  `(SELECT sequence_number FROM ${t} WHERE shard = i.k ORDER BY sequence_number DESC LIMIT 1) ` +
  `= i.s - 1)), ` +
  `ins AS (INSERT INTO ${t} (shard, sequence_number, data) SELECT k, s, d FROM input ` +
  `WHERE (SELECT n FROM ready) = $2::int8 ON CONFLICT DO NOTHING RETURNING 1) ` +
  CAS_MANY_ALL_OR_NOTHING;

// Notifying compare-and-set of several keys (Postgres statements, `notify:
// true`): CAS_MANY_POSTGRES with the inserted rows returned, one pg_notify
// per inserted row in a CTE over them, and the same final division, over
// that CTE's count so that it runs:
//   <same CTEs, ins RETURNING shard, sequence_number>,
//   notified AS (SELECT pg_notify('<channel>', '<seqno>:<shard>') FROM ins)
//   SELECT 1 / ((SELECT count(*) FROM ins) / $2) FROM (SELECT count(*) FROM notified) n
// The locks, markers, inserts and the all-or-nothing failure are the same,
// so the argument above holds as it is, and the result is still one row iff
// every entry was appended. The notifications are transactional, as for
// the single-key statements: a mismatch fails the statement (22012), which
// rolls them back with the rows; a commit sends one per key. (A CTE with a
// volatile function is not inlined, and counting its rows evaluates each.)
const CAS_MANY_POSTGRES_NOTIFY = (t: string, channel: string) =>
  `${CAS_MANY_POSTGRES_CTES(t, "shard, sequence_number")}, ` +
  `notified AS (SELECT pg_notify('${channel}', sequence_number::text || ':' || shard) FROM ins) ` +
  `${CAS_MANY_ALL_OR_NOTHING} FROM (SELECT count(*) FROM notified) AS n`;

// ---- Cross-key batching (src/_batch.ts). Operations on different keys
// issued together go out as one statement; each keeps its own result and
// its own argument, below. What the batch adds to the single-key arguments:
// - One statement, one transaction, one snapshot for every entry. An entry
//   is linearized inside its own call: the statement starts after every
//   batched invocation (the batch is sent only once all were made) and ends
//   before any of their responses.
// - Keys in one batch are distinct (src/_batch.ts holds a second operation
//   on a key back until the first one's statement has ended), so entries
//   never race each other inside the statement; what one entry reads and
//   writes is its own key's rows, and another entry's outcome cannot change
//   its condition.
// - A statement-level failure is one outcome for all entries: 40001/40P01
//   rolled every entry back (the core retries the batch on a fresh snapshot,
//   then, if that keeps failing, each operation on its own single-key
//   statement); any other error is reported to every operation of the batch,
//   as determinate or indeterminate as the error itself.

// Head of each key in $1, on one snapshot: per key, exactly HEAD's
// argument (the snapshot is taken after every batched invocation and
// before any response, so a read never misses an acknowledged write).
// `WITH ORDINALITY` numbers the keys so that the results are told apart
// without comparing strings; a key with no version returns no row.
// Both engines: a read needs no more than a snapshot, at any level.
const HEAD_BATCH = (t: string) =>
  `SELECT i.n, h.sequence_number, h.data FROM jsonb_array_elements_text($1::text::jsonb) ` +
  `WITH ORDINALITY AS i(k, n) CROSS JOIN LATERAL (SELECT sequence_number, data FROM ${t} ` +
  `WHERE shard = i.k AND sequence_number >= 0 ORDER BY sequence_number DESC LIMIT 1) h`;

// The entries of a batch, unpacked from one JSON text parameter.
const CAS_BATCH_INPUT = CAS_MANY_INPUT;

// The result of a batched compare-and-set: ONE row, the JSON array of the
// keys inserted, computed after every insert ran. Not one row per insert:
// rows returned as the inserts go are sent before a later entry can still
// fail the statement (40001, a cancel), and porsager 3.4.9 then misplaces
// the next result's rows on that connection (seen: the next statement's
// row at index 1 of an array with a hole at 0; fromPostgresJs repairs
// that now, and one row keeps any other driver off that path).
const CAS_BATCH_RESULT = (from: string) =>
  `SELECT coalesce(jsonb_agg(shard), '[]'::jsonb)::text FROM ${from}`;

// Postgres compare-and-set of several keys, each entry on its own, at every
// isolation level. Per entry, the statement does exactly what the
// single-key statement of its seqno does, and the entry is "committed" iff
// its row is among the RETURNING rows:
// - seqno > 0 (CAS_NEXT_POSTGRES): the key's head row is locked FOR KEY
//   SHARE, and the version is inserted iff that head is seqno - 1, ON
//   CONFLICT DO NOTHING. Every case of CAS_NEXT_POSTGRES's argument holds
//   per key: a competing writer of the same seqno makes our insert do
//   nothing (READ COMMITTED) or raise 40001 (REPEATABLE READ,
//   SERIALIZABLE); a stale snapshot inserts nothing (the row exists); a
//   truncate waits on our lock, or deleted the head first and our lock
//   skips to rows below (deleted too, or not seqno - 1), or deadlocks
//   (40P01). `sequence_number >= 0` keeps the marker out of the head,
//   though it is never the head while a version exists (I3).
// - seqno 0 (CAS_FIRST_POSTGRES): the key's marker is inserted ON CONFLICT
//   DO NOTHING, per row, and version 0 is inserted only for keys whose
//   marker landed and whose snapshot holds no version. A marker committed
//   by a racing first write elsewhere makes this entry's marker insert
//   nothing (READ COMMITTED: the other entries go on, this one is a
//   mismatch, as in step 4 of CAS_FIRST_POSTGRES) or raises 40001
//   (REPEATABLE READ, SERIALIZABLE), which rolls the whole batch back,
//   every entry surely not done, to be retried: the unique conflict never
//   aborts the other entries' writes into a commit. Two first writes in
//   one batch are two distinct keys: two markers, two independent
//   arguments. A marker that landed while the snapshot held a version
//   (a mismatch) stays, harmless, as in CAS_FIRST_POSTGRES.
// Committed (row returned): the entry's single-key argument says its
// condition held until the commit, which is the batch's commit, inside the
// call. Mismatch (no row): a moment inside the call, given by the same
// argument, when the head was not seqno - 1. No entry's result depends on
// another's: their rows, locks and markers are on different keys.
// The snapshot check of a first write is `fresh`: per key, the highest
// version >= 0 in the statement's snapshot, by the same index probe as
// `heads` (no lock), and a key is fresh when there is none. It reads what
// a NOT EXISTS in `ins` would read (one statement, one snapshot; neither
// sees the rows `markers` inserts), and its shape keeps the plan on the
// primary key: a correlated NOT EXISTS there was planned, on a table never
// analyzed, as a hashed subplan over a sequential scan of the whole table
// (measured: a young table's first writes fell to 0.03 of an analyzed
// table's, 50,000 sequential scans per 100,000 first writes; BENCHMARKS.md,
// "First writes on a growing table"). MATERIALIZED keeps it a CTE of its
// own rather than folded into `ins`'s condition.
// Keys are locked in input order, sorted: two batches lock shared keys in
// the same order; a cycle with other writers is a deadlock (40P01), which
// rolls this batch back to be retried.
const CAS_BATCH_POSTGRES_CTES = (t: string, returning: string) =>
  `WITH ${CAS_BATCH_INPUT}, ` +
  `heads AS (SELECT i.k FROM input i CROSS JOIN LATERAL ` +
  `(SELECT sequence_number FROM ${t} WHERE shard = i.k AND sequence_number >= 0 ` +
  `ORDER BY sequence_number DESC LIMIT 1 FOR KEY SHARE) h ` +
  `WHERE i.s > 0 AND h.sequence_number = i.s - 1), ` +
  `fresh AS MATERIALIZED (SELECT i.k FROM input i LEFT JOIN LATERAL ` +
  `(SELECT sequence_number FROM ${t} WHERE shard = i.k AND sequence_number >= 0 ` +
  `ORDER BY sequence_number DESC LIMIT 1) v ON true ` +
  `WHERE i.s = 0 AND v.sequence_number IS NULL), ` +
  `markers AS (INSERT INTO ${t} (shard, sequence_number, data) ` +
  `SELECT k, -1, ''::bytea FROM input WHERE s = 0 ON CONFLICT DO NOTHING RETURNING shard), ` +
  `ins AS (INSERT INTO ${t} (shard, sequence_number, data) SELECT i.k, i.s, i.d FROM input i ` +
  `WHERE (i.s > 0 AND i.k IN (SELECT k FROM heads)) OR (i.s = 0 ` +
  `AND i.k IN (SELECT shard FROM markers) AND i.k IN (SELECT k FROM fresh)) ` +
  `ON CONFLICT DO NOTHING RETURNING ${returning})`;
const CAS_BATCH_POSTGRES = (t: string) =>
  `${CAS_BATCH_POSTGRES_CTES(t, "shard")} ${CAS_BATCH_RESULT("ins")}`;

// Notifying batch (`notify: true`): the same CTEs, the inserted rows
// returned with their seqno, one pg_notify per inserted row in a CTE that
// the result reads in full (a CTE with a volatile function is materialised
// and not inlined, so every row is notified): exactly the committed
// entries notify, once each, and only if the statement commits (NOTIFY is
// transactional). The argument above is unchanged: the reads, locks and
// inserts are the same.
const CAS_BATCH_POSTGRES_NOTIFY = (t: string, channel: string) =>
  `${CAS_BATCH_POSTGRES_CTES(t, "shard, sequence_number")}, ` +
  `notified AS (SELECT shard, pg_notify('${channel}', sequence_number::text || ':' || shard) ` +
  `FROM ins) ${CAS_BATCH_RESULT("notified")}`;

// CockroachDB compare-and-set of several keys, each entry on its own, at
// SERIALIZABLE only: each entry's condition (no row at all for seqno 0, as
// CAS_FIRST_COCKROACH; head = seqno - 1 for seqno > 0, as
// CAS_NEXT_COCKROACH) is read and its row inserted in the one serializable
// transaction of the statement, so every condition that let a row in still
// holds at the commit; an entry whose condition read false was false in
// the serializable state the commit is ordered at, which is inside every
// batched call. A conflict on any key restarts the whole statement
// (internally, or 40001 to the core): every entry surely not done. ON
// CONFLICT DO NOTHING keeps a duplicate a mismatch, per row.
const CAS_BATCH_COCKROACH = (t: string) =>
  `WITH ${CAS_BATCH_INPUT}, ins AS (` +
  `INSERT INTO ${t} (shard, sequence_number, data) SELECT i.k, i.s, i.d FROM input i WHERE ` +
  `(i.s = 0 AND NOT EXISTS (SELECT 1 FROM ${t} WHERE shard = i.k)) OR (i.s > 0 AND ` +
  `(SELECT sequence_number FROM ${t} WHERE shard = i.k ORDER BY sequence_number DESC LIMIT 1) ` +
  `= i.s - 1) ON CONFLICT DO NOTHING RETURNING shard) ${CAS_BATCH_RESULT("ins")}`;

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
 * @param notify Whether the Postgres compare-and-sets notify the table's
 * channel when they commit (ignored for CockroachDB, which cannot).
 * @returns The dialect.
 */
export function dialectFor(engine: Engine, table: string, notify = false): Dialect {
  const cockroach = engine === "cockroach";
  const channel = cockroach ? undefined : channelFor(table);
  const notifying = channel !== undefined && notify;
  const casFirst = cockroach
    ? CAS_FIRST_COCKROACH(table)
    : notifying
    ? CAS_FIRST_POSTGRES_NOTIFY(table, channel)
    : CAS_FIRST_POSTGRES(table);
  const casNext = cockroach
    ? CAS_NEXT_COCKROACH(table)
    : notifying
    ? CAS_NEXT_POSTGRES_NOTIFY(table, channel)
    : CAS_NEXT_POSTGRES(table);
  const casMany = cockroach
    ? CAS_MANY_COCKROACH(table)
    : notifying
    ? CAS_MANY_POSTGRES_NOTIFY(table, channel)
    : CAS_MANY_POSTGRES(table);
  const casBatch = cockroach
    ? CAS_BATCH_COCKROACH(table)
    : notifying
    ? CAS_BATCH_POSTGRES_NOTIFY(table, channel)
    : CAS_BATCH_POSTGRES(table);
  return {
    engine,
    table,
    channel,
    notify: notifying,
    createTable: cockroach ? CREATE_COCKROACH(table) : CREATE_POSTGRES(table),
    tune: cockroach ? TUNE_COCKROACH(table) : [],
    dropTable: `DROP TABLE IF EXISTS ${table}`,
    head: statement("head", HEAD(table), ["text"], ["int8", "bytea"]),
    casFirst: statement("cas_first", casFirst, ["text", "bytea"], []),
    casNext: statement("cas_next", casNext, ["text", "int8", "bytea"], []),
    casMany: statement("cas_many", casMany, ["text", "int8"], ["int8"]),
    headBatch: statement("head_batch", HEAD_BATCH(table), ["text"], ["int8", "int8", "bytea"]),
    casBatch: statement("cas_batch", casBatch, ["text"], ["text"]),
    scan: statement("scan", SCAN(table), ["text", "int8", "int8"], ["int8", "bytea"]),
    scanPacked: cockroach ? undefined : statement(
      "scan_packed",
      SCAN_PACKED_POSTGRES(table),
      ["text", "int8", "int8"],
      ["bytea"],
    ),
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
