// The conformance suite under Bun through porsager's `postgres` (resolved
// from node_modules), with the Postgres and the CockroachDB statements (the
// latter on connections that start at SERIALIZABLE, the only level open
// accepts them at).
import { PostgresConsensus, type VersionedData } from "../../mod.ts";
import { fromPostgresJs } from "../../src/adapters/postgres_js.ts";
import { runConformance } from "../../src/testing/mod.ts";
import { dbTest, porsager, seedTable, sessionFor, STATEMENT_SETS } from "./_db.ts";

for (const { mode, notify, label, suffix } of STATEMENT_SETS) {
  const table = `conformance_bun_postgres_js_${suffix}`;
  runConformance(dbTest, `bun postgres-js (${label})`, {
    writers: 8,
    raceUntil: 150n,
    async open(initial?: ReadonlyMap<string, readonly VersionedData[]>) {
      await seedTable(table, initial);
      return await PostgresConsensus.open(
        fromPostgresJs(porsager(20, sessionFor(mode)), { owned: true }),
        {
          mode,
          notify,
          table,
          create: false,
          listKeysPageSize: 7,
        },
      );
    },
  });
}
