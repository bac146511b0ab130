// The conformance suite on a real Postgres through porsager's driver, once
// with the Postgres statements and once with the CockroachDB statements. The
// CockroachDB DML is valid Postgres and runs here as it is; its CREATE TABLE
// has a CockroachDB-only storage parameter, so for that run the table is
// created with the Postgres DDL and opened with `create: false` (README,
// "CockroachDB", says what only CockroachDB can confirm). The CockroachDB
// statements are correct only at SERIALIZABLE, so that run's connections
// start at SERIALIZABLE (open refuses them anywhere else).
import { assertEquals } from "@std/assert";
import { fromPostgresJs } from "../src/adapters/postgres_js.ts";
import { openSeeded, runConformance } from "../src/testing/mod.ts";
import { conformanceOptions, connect, dbTest, sessionFor, STATEMENT_SETS } from "./_db.ts";

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
  runConformance(dbTest, `postgres-js (${label})`, {
    writers: 8,
    raceUntil: 150n,
    open: (initial) =>
      openSeeded(fromPostgresJs(connect({ connection: sessionFor(mode) }), { owned: true }), {
        ...conformanceOptions(mode, notify, table),
        batch,
        initial,
      }),
  });
}

// porsager 3.4.9 misplaces the rows of the result after one that sent rows
// and then failed (its row index survives the error); the adapter puts
// them back. Seen as "Cannot read properties of undefined" on the next head
// after a batched head read failed with 40001 at SERIALIZABLE.
dbTest(
  "postgres-js adapter: a result after a statement that failed mid-rows has its rows in place",
  async () => {
    const executor = fromPostgresJs(connect({ max: 1 }), { owned: true });
    try {
      const failing = {
        name: "adapter_fails_mid_rows",
        text:
          "SELECT CASE WHEN g < 3 THEN g ELSE 1 / (g - g) END::int8 FROM generate_series(1, 5) g",
        paramTypes: [],
        columnTypes: ["int8"],
      } as const;
      const next = {
        name: "adapter_next",
        text: "SELECT $1::int8, 'x'::text",
        paramTypes: ["int8"],
        columnTypes: ["int8", "text"],
      } as const;
      for (let i = 0; i < 3; i++) {
        await executor.query(failing, []).then(
          () => Promise.reject(new Error("the division by zero did not fail")),
          () => {},
        );
        const result = await executor.query(next, [BigInt(i)]);
        assertEquals(result.rows, [[BigInt(i), "x"]]);
        assertEquals(result.rowCount, 1);
      }
    } finally {
      await executor.close();
    }
  },
);
