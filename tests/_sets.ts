// What the Deno and the Bun suites share, runtime-neutral: the statement
// sets every adapter runs the conformance suite with, and how it opens them.
import type { Engine } from "../mod.ts";
import type { OpenSeededOptions } from "../src/testing/mod.ts";

/**
 * The session settings a run of `mode`'s statements needs: the CockroachDB
 * statements are correct only at SERIALIZABLE, and open refuses them at any
 * other level; the Postgres statements run at the server's default.
 */
export function sessionFor(mode: Engine): Record<string, string> {
  return mode === "cockroach" ? { default_transaction_isolation: "serializable" } : {};
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

/**
 * How each adapter's conformance run opens a set's statements through
 * `openSeeded`. The table is created with the server's (Postgres) DDL, also
 * for the CockroachDB statements, whose CREATE TABLE is CockroachDB-only;
 * it is seeded without marker rows, as an older release left its tables,
 * which the statements must handle too (src/dialect.ts, I4).
 */
export function conformanceOptions(
  mode: Engine,
  notify: boolean,
  table: string,
): OpenSeededOptions {
  return { engine: mode, notify, table, markers: false, listKeysPageSize: 7 };
}
