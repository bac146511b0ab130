// The conformance suite under Bun through porsager's `postgres` (resolved
// from node_modules), with the Postgres and the CockroachDB statements (the
// latter on connections that start at SERIALIZABLE, the only level open
// accepts them at).
import { fromPostgresJs } from "../../src/adapters/postgres_js.ts";
import { openSeeded, runConformance } from "../../src/testing/mod.ts";
import { conformanceOptions, dbTest, porsager, sessionFor, STATEMENT_SETS } from "./_db.ts";

for (const { mode, notify, label, suffix } of STATEMENT_SETS) {
  const table = `conformance_bun_postgres_js_${suffix}`;
  runConformance(dbTest, `bun postgres-js (${label})`, {
    writers: 8,
    raceUntil: 150n,
    open: (initial) =>
      openSeeded(fromPostgresJs(porsager(20, sessionFor(mode)), { owned: true }), {
        ...conformanceOptions(mode, notify, table),
        initial,
      }),
  });
}
