// `stats`: what a table holds, read through the executor the store was
// opened on (the store has no operation for it). Runtime-neutral.
import { quoteIdentifier } from "../dialect.ts";
import { redactSecrets } from "../errors.ts";
import type { AbortSignalLike, SqlExecutor, SqlStatement, SqlValue } from "../executor.ts";

/** What `stats` reports. */
export interface TableStats {
  /** The table's schema, as open resolved it. */
  schema: string;
  /** The table's name. */
  table: string;
  /** Keys with at least one version (as `keys` lists them). */
  keys: number;
  /** Versions, markers not included. */
  versions: number;
  /** Marker rows (sequence_number -1): one per key ever written, never deleted. */
  markers: number;
  /** `pg_total_relation_size`: heap, indexes and TOAST; null where the server has none (CockroachDB). */
  tableBytes: number | null;
}

// The table as the store's statements resolve it (schema-qualified when
// --schema is given, else through the search_path, as open does).
const LOCATE: SqlStatement = {
  name: "persist_consensus_cli_locate",
  text: "SELECT n.nspname::text, c.relname::text FROM pg_catalog.pg_class c " +
    "JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace " +
    "WHERE c.oid = to_regclass($1::text)",
  paramTypes: ["text"],
  columnTypes: ["text", "text"],
};

const SIZE: SqlStatement = {
  name: "persist_consensus_cli_size",
  text: "SELECT pg_total_relation_size(to_regclass($1::text))::int8",
  paramTypes: ["text"],
  columnTypes: ["int8"],
};

// One pass over the table. Markers sit at sequence_number -1 and are not
// versions; a key's versions are >= 0 (see README, "Engines and isolation
// levels").
function counts(table: string): SqlStatement {
  const text = "SELECT count(DISTINCT shard) FILTER (WHERE sequence_number >= 0)::int8, " +
    "count(*) FILTER (WHERE sequence_number >= 0)::int8, " +
    `count(*) FILTER (WHERE sequence_number = -1)::int8 FROM ${table}`;
  // The text names the table, so the statement's name does too (a hash):
  // a driver that prepares by name must not reuse one table's for another.
  return {
    name: `persist_consensus_cli_counts_${hash(text)}`,
    text,
    paramTypes: [],
    columnTypes: ["int8", "int8", "int8"],
  };
}

function hash(text: string): string {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) h = Math.imul(h ^ text.charCodeAt(i), 0x01000193);
  return (h >>> 0).toString(16).padStart(8, "0");
}

/**
 * Reads the stats of the table `quoted` (a quoted, possibly
 * schema-qualified name, as open checked it).
 */
export async function readStats(
  executor: SqlExecutor,
  quoted: string,
  signal?: AbortSignalLike,
): Promise<TableStats> {
  const run = async (statement: SqlStatement, params: readonly SqlValue[]) => {
    try {
      return (await executor.query(statement, params, { signal })).rows;
    } catch (error) {
      const { message, code } = error as { message?: unknown; code?: unknown };
      const state = typeof code === "string" ? ` (SQLSTATE ${code})` : "";
      throw new Error(
        redactSecrets(`Cannot read the stats of ${quoted}: ${String(message ?? error)}${state}`),
        { cause: error },
      );
    }
  };
  const located = await run(LOCATE, [quoted]);
  if (located.length === 0) throw new Error(`Cannot read the stats of ${quoted}: it is gone`);
  const [schema, table] = located[0] as string[];
  const resolved = `${quoteIdentifier(schema, "schema")}.${quoteIdentifier(table, "table")}`;
  const [keys, versions, markers] = (await run(counts(resolved), []))[0] as bigint[];
  let tableBytes: number | null = null;
  try {
    const size = (await executor.query(SIZE, [resolved], { signal })).rows[0]?.[0];
    if (typeof size === "bigint") tableBytes = Number(size);
  } catch {
    // CockroachDB has no pg_total_relation_size: the size is unknown there.
  }
  return {
    schema,
    table,
    keys: Number(keys),
    versions: Number(versions),
    markers: Number(markers),
    tableBytes,
  };
}
