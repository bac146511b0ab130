// Shared by the Bun suites that need a real Postgres. `deno task test`
// (and `deno run -A tools/with_postgres.ts bun test tests/bun`) provide
// DATABASE_URL; without it these tests are registered as skipped, and say so.
import { test } from "bun:test";
import { SQL } from "bun";
import postgres from "postgres";
import type { VersionedData } from "../../mod.ts";
import { dialectFor, quoteIdentifier } from "../../src/dialect.ts";

export const DATABASE_URL: string | undefined = process.env.DATABASE_URL;

let warned = false;

/** Registers a test that needs Postgres; skipped, loudly, without DATABASE_URL. */
export function dbTest(name: string, fn: () => Promise<void>): void {
  if (!DATABASE_URL) {
    if (!warned) {
      warned = true;
      console.error(
        "\n*** DATABASE_URL is not set: the Bun Postgres tests are SKIPPED. Run them with " +
          "`deno run -A tools/with_postgres.ts bun test tests/bun`. ***\n",
      );
    }
    test.skip(`${name} (skipped: DATABASE_URL is not set)`, fn);
    return;
  }
  // The race case runs hundreds of round trips; Bun's default is 5 s.
  test(name, fn, 60_000);
}

/**
 * The session settings a run of `mode`'s statements needs: the CockroachDB
 * statements are correct only at SERIALIZABLE, and open refuses them at any
 * other level; the Postgres statements run at the server's default.
 */
export function sessionFor(mode: "postgres" | "cockroach"): Record<string, string> {
  return mode === "cockroach" ? { default_transaction_isolation: "serializable" } : {};
}

/**
 * A Bun SQL pool on DATABASE_URL; `connection` holds startup parameters,
 * which Bun sends on every connection of the pool.
 */
export function bunSql(max = 20, connection: Record<string, string> = {}): SQL {
  return new SQL(DATABASE_URL!, { max, connection });
}

/** A porsager pool on DATABASE_URL, quiet about notices; `connection` as for bunSql. */
export function porsager(max = 20, connection: Record<string, string> = {}): postgres.Sql {
  return postgres(DATABASE_URL!, { max, onnotice: () => {}, connection });
}

/**
 * Drops and creates `table` with the Postgres DDL and seeds it with raw SQL,
 * through a short-lived porsager connection.
 */
export async function seedTable(
  table: string,
  initial?: ReadonlyMap<string, readonly VersionedData[]>,
): Promise<void> {
  const ddl = dialectFor("postgres", quoteIdentifier(table, "table"));
  const sql = porsager(1);
  try {
    await sql.unsafe(ddl.dropTable);
    await sql.unsafe(ddl.createTable);
    for (const [key, versions] of initial ?? []) {
      for (const { seqno, data } of versions) {
        await sql`INSERT INTO ${sql(table)} (shard, sequence_number, data)
                  VALUES (${key}, ${seqno}, ${data})`;
      }
    }
  } finally {
    await sql.end();
  }
}

/**
 * The statement sets every adapter's conformance run covers: the Postgres
 * statements bare and notifying (`notify: true`: pg_notify in the
 * compare-and-set, a different statement shape whose rowCount must read the
 * same), and the CockroachDB statements.
 */
export const STATEMENT_SETS = [
  { mode: "postgres", notify: false, label: "postgres statements", suffix: "postgres" },
  {
    mode: "postgres",
    notify: true,
    label: "postgres statements, notify",
    suffix: "postgres_notify",
  },
  { mode: "cockroach", notify: false, label: "cockroach statements", suffix: "cockroach" },
] as const;
