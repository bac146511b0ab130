// The conformance suite on PGlite, Postgres in-process (WASM): needs no
// server and no DATABASE_URL. One PGlite instance serves every case (its
// start-up takes seconds); each case drops and recreates its table. Its one
// connection runs the CockroachDB statements at SERIALIZABLE (open refuses
// them anywhere else) and everything else at the default, READ COMMITTED.
import { PGlite } from "@electric-sql/pglite";
import { assertEquals, assertRejects, assertStringIncludes } from "@std/assert";
import { ConsensusError, PostgresConsensus, SqlError } from "../mod.ts";
import { fromPglite } from "../src/adapters/pglite.ts";
import { openSeeded, runConformance } from "../src/testing/mod.ts";
import { conformanceOptions, STATEMENT_SETS } from "./_db.ts";

let shared: Promise<PGlite> | undefined;
const database = () => shared ??= PGlite.create();

// PGlite is one session: set its isolation level for the statements about
// to run, rather than inherit it from the case before.
async function sessionFor(db: PGlite, mode: "postgres" | "cockroach"): Promise<void> {
  await db.query(
    mode === "cockroach"
      ? "SET default_transaction_isolation TO 'serializable'"
      : "RESET default_transaction_isolation",
  );
}

function pgliteTest(name: string, fn: () => Promise<void>): void {
  // PGlite keeps its WASM instance and timers alive between statements.
  Deno.test({ name, sanitizeOps: false, sanitizeResources: false, fn });
}

for (const { mode, notify, label, suffix } of STATEMENT_SETS) {
  const table = `conformance_pglite_${suffix}`;
  runConformance(pgliteTest, `pglite (${label})`, {
    writers: 8,
    raceUntil: 150n,
    async open(initial) {
      const db = await database();
      await sessionFor(db, mode);
      return await openSeeded(fromPglite(db), {
        ...conformanceOptions(mode, notify, table),
        initial,
      });
    },
  });
}

pgliteTest("pglite: opens with defaults, detects Postgres and creates the table", async () => {
  const db = await database();
  await sessionFor(db, "postgres");
  await db.query("DROP TABLE IF EXISTS consensus");
  await using store = await PostgresConsensus.open(fromPglite(db));
  assertEquals(store.engine, "postgres");
  assertEquals(
    await store.compareAndSet("k", { seqno: 0n, data: new Uint8Array([1]) }),
    "committed",
  );
  assertEquals(await store.head("k"), { seqno: 0n, data: new Uint8Array([1]) });
});

pgliteTest("pglite: server errors carry their SQLSTATE", async () => {
  const executor = fromPglite(await database());
  const statement = {
    name: "pglite_test_missing",
    text: "SELECT 1::int8 FROM pglite_no_such_table WHERE $1::text = ''",
    paramTypes: ["text"],
    columnTypes: ["int8"],
  } as const;
  const missing = await assertRejects(() => executor.query(statement, ["k"]), SqlError) as SqlError;
  assertEquals(missing.code, "42P01");
  await executor.ddl("DROP TABLE IF EXISTS pglite_dup");
  await executor.ddl("CREATE TABLE pglite_dup (id int8 PRIMARY KEY)");
  await executor.ddl("INSERT INTO pglite_dup VALUES (1)");
  const duplicate = await assertRejects(
    () => executor.ddl("INSERT INTO pglite_dup VALUES (1)"),
    SqlError,
  ) as SqlError;
  assertEquals(duplicate.code, "23505");
});

pgliteTest(
  "pglite: a closed database is indeterminate to operations, refuses open, and owned closes it",
  async () => {
    const db = await PGlite.create();
    const borrowed = await PostgresConsensus.open(fromPglite(db));
    const store = await PostgresConsensus.open(fromPglite(db, { owned: true }));
    await store.close();
    assertEquals(db.closed, true, "closing the owning store closed the database");
    // A write on a closed instance may have been cut off mid-way: indeterminate.
    const error = await assertRejects(
      () => borrowed.compareAndSet("k", { seqno: 0n, data: new Uint8Array([1]) }),
      ConsensusError,
      "may have taken effect",
    ) as ConsensusError;
    assertEquals(error.determinate, false);
    // Open only reads before it serves: its failure changed nothing.
    const refused = await assertRejects(
      () => PostgresConsensus.open(fromPglite(db), { timeoutMs: 2000 }),
      ConsensusError,
      "Cannot open consensus store: ",
    ) as ConsensusError;
    assertEquals(refused.determinate, true);
    assertStringIncludes(refused.message, "nothing was changed");
  },
);

// Registered last: Deno runs a file's tests in order.
pgliteTest("pglite: close the shared instance", async () => {
  if (shared) await (await shared).close();
});
