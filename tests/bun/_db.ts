// Shared by the Bun suites that need a real Postgres. `deno task test`
// (and `deno run -A tools/with_postgres.ts bun test tests/bun`) provide
// DATABASE_URL; without it these tests are registered as skipped, and say so.
import { test } from "bun:test";
import { SQL } from "bun";
import postgres from "postgres";
import { fromPostgresJs } from "../../src/adapters/postgres_js.ts";
import { recreateTable } from "../../src/testing/mod.ts";

export { conformanceOptions, sessionFor, STATEMENT_SETS } from "../_sets.ts";

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

/** Drops and creates `table`, empty, through a short-lived porsager connection. */
export async function freshTable(table: string): Promise<void> {
  const executor = fromPostgresJs(porsager(1), { owned: true });
  try {
    await recreateTable(executor, { table });
  } finally {
    await executor.close();
  }
}
