// The conformance suite on a real Postgres through porsager's driver, once
// with the Postgres statements and once with the CockroachDB statements. The
// CockroachDB DML is valid Postgres and runs here as it is; its CREATE TABLE
// has a CockroachDB-only storage parameter, so for that run the table is
// created with the Postgres DDL and opened with `create: false` (README,
// "CockroachDB", says what only CockroachDB can confirm). The CockroachDB
// statements are correct only at SERIALIZABLE, so that run's connections
// start at SERIALIZABLE (open refuses them anywhere else).
import type { VersionedData } from "../mod.ts";
import { PostgresConsensus } from "../mod.ts";
import { fromPostgresJs } from "../src/adapters/postgres_js.ts";
import { dialectFor, quoteIdentifier } from "../src/dialect.ts";
import { runConformance } from "../src/testing/mod.ts";
import { connect, dbTest, sessionFor, STATEMENT_SETS } from "./_db.ts";

// Cross-key batching is on by default; the Postgres statements run once
// more with it off, so both paths pass the same suite.
const SETS = [
  ...STATEMENT_SETS.map((set) => ({ ...set, batch: true })),
  {
    ...STATEMENT_SETS[0],
    label: "postgres statements, batch off",
    suffix: "nobatch",
    batch: false,
  },
];

for (const { mode, notify, label, suffix, batch } of SETS) {
  const table = `conformance_postgres_js_${suffix}`;
  const postgresDdl = dialectFor("postgres", quoteIdentifier(table, "table"));
  runConformance(dbTest, `postgres-js (${label})`, {
    writers: 8,
    raceUntil: 150n,
    async open(initial?: ReadonlyMap<string, readonly VersionedData[]>) {
      const sql = connect({ connection: sessionFor(mode) });
      await sql.unsafe(postgresDdl.dropTable);
      await sql.unsafe(postgresDdl.createTable);
      for (const [key, versions] of initial ?? []) {
        for (const { seqno, data } of versions) {
          await sql`INSERT INTO ${sql(table)} (shard, sequence_number, data)
                    VALUES (${key}, ${seqno}, ${data})`;
        }
      }
      return await PostgresConsensus.open(fromPostgresJs(sql, { owned: true }), {
        mode,
        notify,
        batch,
        table,
        create: false,
        listKeysPageSize: 7, // several pages in the listKeys case
      });
    },
  });
}
