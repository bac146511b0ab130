// The conformance suite on a real Postgres through porsager's driver, once
// with the Postgres statements and once with the CockroachDB statements. The
// CockroachDB DML is valid Postgres and runs here as it is; its CREATE TABLE
// has a CockroachDB-only storage parameter, so for that run the table is
// created with the Postgres DDL and opened with `create: false` (README,
// "CockroachDB", says what only CockroachDB can confirm). The CockroachDB
// statements are correct only at SERIALIZABLE, so that run's connections
// start at SERIALIZABLE (open refuses them anywhere else).
import { fromPostgresJs } from "../src/adapters/postgres_js.ts";
import { openSeeded, runConformance } from "../src/testing/mod.ts";
import { conformanceOptions, connect, dbTest, sessionFor, STATEMENT_SETS } from "./_db.ts";

for (const { mode, notify, label, suffix } of STATEMENT_SETS) {
  const table = `conformance_postgres_js_${suffix}`;
  runConformance(dbTest, `postgres-js (${label})`, {
    writers: 8,
    raceUntil: 150n,
    open: (initial) =>
      openSeeded(fromPostgresJs(connect({ connection: sessionFor(mode) }), { owned: true }), {
        ...conformanceOptions(mode, notify, table),
        initial,
      }),
  });
}
