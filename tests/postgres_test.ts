// Postgres-specific behaviour of PostgresConsensus, against a real server
// through porsager's driver: races at every isolation level (and open's
// refusal of the CockroachDB statements below SERIALIZABLE), what open
// checks and how it fails, close and the head floor, the error model under
// real failures, privileges, identifiers and round trips.
import {
  assert,
  assertEquals,
  assertInstanceOf,
  assertRejects,
  assertStrictEquals,
  assertStringIncludes,
} from "@std/assert";
import postgres from "postgres";
import {
  ConsensusError,
  MAX_SEQNO,
  PostgresConsensus,
  type PostgresConsensusOptions,
} from "../mod.ts";
import { dialectFor, quoteIdentifier } from "../src/dialect.ts";
import { fromPostgresJs } from "../src/adapters/postgres_js.ts";
import { dropAndRecreate, openSeeded, raceOnOneKey } from "../src/testing/mod.ts";
import {
  connect,
  type ConnectOptions,
  DATABASE_URL,
  dbTest,
  freshTable,
  sessionFor,
  withPasswordServer,
} from "./_db.ts";
import { recording } from "./_recording.ts";

const encoder = new TextEncoder();
const bytes = (text: string) => encoder.encode(text);

// A store on a new, empty table. The table is made with the Postgres DDL,
// so a store in either mode (CockroachDB's DDL is not Postgres) can use it.
async function fresh(
  table: string,
  options: PostgresConsensusOptions & {
    connection?: Record<string, string>;
    max?: number;
    maxPipeline?: number;
  } = {},
) {
  const { connection, max, maxPipeline, ...storeOptions } = options;
  const sql = connect({ max: max ?? 20, connection, max_pipeline: maxPipeline });
  const store = await openSeeded(fromPostgresJs(sql, { owned: true }), { table, ...storeOptions });
  return { sql, store };
}

// Writers in one store queue behind each other's in-flight compare-and-set
// of the same seqno; writers in separate stores (separate processes) race on
// the server. Both must hold: one winner per seqno, no gaps, no errors.
async function stores(table: string, count: number, options: Parameters<typeof fresh>[1] = {}) {
  const first = await fresh(table, options);
  const { connection, max, ...storeOptions } = options;
  const rest = await Promise.all(
    Array.from({ length: count - 1 }, () =>
      PostgresConsensus.open(
        fromPostgresJs(connect({ max: max ?? 20, connection }), { owned: true }),
        { table, create: false, ...storeOptions },
      )),
  );
  return [first.store, ...rest];
}

for (const mode of ["postgres", "cockroach"] as const) {
  for (const processes of [1, 4]) {
    dbTest(
      `race (${mode} statements): 16 writers on one key for 5 s, ${processes} store(s)`,
      async () => {
        const all = await stores(`race_16_${mode}_${processes}`, processes, {
          mode,
          max: 16 / processes,
          connection: sessionFor(mode),
        });
        try {
          const report = await raceOnOneKey(all, "hot", { writers: 16, durationMs: 5_000 });
          console.log(
            `  ${mode} statements, 16 writers in ${processes} store(s), 5 s: ` +
              `${report.committed} committed, ${report.mismatched} mismatched, ` +
              `${report.errors} errors, head ${report.head}`,
          );
          assertEquals(report.errors, 0);
          assert(report.committed > 100, `only ${report.committed} commits in 5 s`);
        } finally {
          for (const store of all) await store.close();
        }
      },
    );
  }
}

// The Postgres statements race at every level. The CockroachDB statements
// are correct only at SERIALIZABLE: there they race; below it open refuses
// them, before it touches the table.
for (const isolation of ["read committed", "repeatable read", "serializable"] as const) {
  for (const mode of ["postgres", "cockroach"] as const) {
    if (mode === "cockroach" && isolation !== "serializable") {
      dbTest(
        `open refuses the cockroach statements at ${isolation}: determinate, says to set ` +
          "serializable, writes nothing",
        async () => {
          const table = `refused_${isolation.replace(" ", "_")}`;
          const admin = connect({ max: 1 });
          const open = () =>
            PostgresConsensus.open(
              fromPostgresJs(
                connect({ max: 2, connection: { default_transaction_isolation: isolation } }),
                { owned: true },
              ),
              { mode, table },
            );
          const refused = async () => {
            const error = await assertRejects(
              open,
              ConsensusError,
              `the session runs at "${isolation}" isolation`,
            ) as ConsensusError;
            assertEquals(error.determinate, true);
            assertStringIncludes(error.message, "Cannot open consensus store on postgres://");
            assertStringIncludes(
              error.message,
              "set default_transaction_isolation to 'serializable'",
            );
            assertStringIncludes(error.message, "nothing was changed");
          };
          try {
            // No table: open, had it gone on, would have created one.
            await admin.unsafe(`DROP TABLE IF EXISTS ${table}`);
            await refused();
            const [{ missing }] = await admin`SELECT to_regclass(${table}) IS NULL AS missing`;
            assertEquals(missing, true, "no table was created");
            // An existing table is left as it was, rows and all.
            const ddl = dialectFor("postgres", quoteIdentifier(table, "table"));
            await admin.unsafe(ddl.createTable);
            await admin.unsafe(`INSERT INTO ${table} VALUES ('k', 0, '\\x00')`);
            await refused();
            const rows = await admin.unsafe(
              `SELECT shard, sequence_number::text AS seqno FROM ${table}`,
            );
            assertEquals(rows.map((r) => `${r.shard}:${r.seqno}`), ["k:0"]);
          } finally {
            await admin.unsafe(`DROP TABLE IF EXISTS ${table}`);
            await admin.end();
          }
        },
      );
      continue;
    }
    dbTest(`race at ${isolation} (${mode} statements): lost races are mismatches`, async () => {
      const table = `race_${mode}_${isolation.replace(" ", "_")}`;
      const all = await stores(table, 4, {
        mode,
        connection: { default_transaction_isolation: isolation },
        maxAttempts: 50,
        max: 2,
      });
      try {
        const report = await raceOnOneKey(all, "k", { writers: 8, untilSeqno: 120n });
        assertEquals(report.errors, 0);
        assertEquals(report.head, 120n);
      } finally {
        for (const store of all) await store.close();
      }
    });
  }
}

dbTest(
  "serialization failures that outlast the retries are determinate: nothing landed",
  async () => {
    // Eight stores, as eight processes: one store would queue its own
    // writers of a key locally and never conflict on the server.
    const options = {
      connection: { default_transaction_isolation: "serializable" as const },
      maxAttempts: 1,
      max: 1,
    };
    const { store } = await fresh("determinate_40001", options);
    const others = await Promise.all(
      Array.from({ length: 7 }, () =>
        PostgresConsensus.open(
          fromPostgresJs(connect({ max: 1, connection: options.connection }), { owned: true }),
          { table: "determinate_40001", create: false, maxAttempts: 1 },
        )),
    );
    const stores = [store, ...others];
    const failed: string[] = [];
    const codes = new Set<string | undefined>();
    let n = 0;
    try {
      await Promise.all(Array.from({ length: 8 }, async (_, w) => {
        const deadline = Date.now() + 4_000;
        while (Date.now() < deadline && failed.length < 40) {
          const head = await stores[w].head("k").catch(() => undefined);
          const payload = `${w}:${n++}`;
          try {
            await stores[w].compareAndSet("k", {
              seqno: head ? head.seqno + 1n : 0n,
              data: bytes(payload),
            });
          } catch (error) {
            assertInstanceOf(error, ConsensusError);
            assert(error.determinate, `expected determinate, got ${error.message}`);
            codes.add(error.code);
            failed.push(payload);
          }
        }
      }));
      const stored = new Set(
        (await store.scan("k", 0n)).map((v) => new TextDecoder().decode(v.data)),
      );
      console.log(`  ${failed.length} determinate failures (codes ${[...codes].join(", ")})`);
      assert(failed.length > 0, "no serialization failure happened; the test proved nothing");
      for (const payload of failed) assert(!stored.has(payload), `${payload} failed yet landed`);
      for (const code of codes) assert(code === "40001" || code === "40P01", `code ${code}`);
    } finally {
      for (const s of stores) await s.close();
    }
  },
);

dbTest("a blocked operation times out as indeterminate and is cancelled", async () => {
  // Cancelling needs a pool that does not pipeline (see fromPostgresJs).
  const { store } = await fresh("timeout_lock", { timeoutMs: 300, maxPipeline: 0 });
  const locker = connect({ max: 1 });
  try {
    await store.compareAndSet("k", { seqno: 0n, data: bytes("v0") });
    const reserved = await locker.reserve();
    await reserved.unsafe("BEGIN");
    await reserved.unsafe('LOCK TABLE "timeout_lock" IN ACCESS EXCLUSIVE MODE');
    const started = Date.now();
    const error = await assertRejects(
      () => store.compareAndSet("k", { seqno: 1n, data: bytes("v1") }),
      ConsensusError,
      "timed out after 300 ms and may have taken effect",
    );
    const elapsed = Date.now() - started;
    assert(elapsed < 2_000, `took ${elapsed} ms`);
    assertEquals((error as ConsensusError).determinate, false);
    // The statement was cancelled on the server: once the lock is released,
    // nothing lands.
    await new Promise((r) => setTimeout(r, 200));
    await reserved.unsafe("COMMIT");
    reserved.release();
    await new Promise((r) => setTimeout(r, 200));
    assertEquals((await store.head("k"))?.seqno, 0n);
  } finally {
    await store.close();
    await locker.end();
  }
});

dbTest("waiting for a pooled connection counts against the timeout", async () => {
  const { sql, store } = await fresh("timeout_pool", { timeoutMs: 300, max: 1 });
  try {
    const reserved = await sql.reserve(); // the only connection
    const started = Date.now();
    const error = await assertRejects(
      () => store.head("k"),
      ConsensusError,
      "timed out",
    );
    assert(Date.now() - started < 2_000);
    assertEquals((error as ConsensusError).determinate, false);
    reserved.release();
    assertEquals(await store.head("k"), undefined, "usable once a connection is free");
  } finally {
    await store.close();
  }
});

dbTest(
  "a backend killed mid-statement is an indeterminate error, and the store recovers",
  async () => {
    const { store } = await fresh("killed_backend", { timeoutMs: 5_000 });
    const admin = connect({ max: 2 });
    // porsager 3.4.9 can write to the terminated backend's socket once more
    // and raise "This socket has been ended by the other party" from the
    // socket itself, outside any promise the store holds (seen once under
    // load). That is the driver's, not the store's: swallow exactly that,
    // for this test only; the store's own outcome is asserted below.
    const driverNoise = (event: ErrorEvent) => {
      if (/socket has been ended by the other party/.test(String(event.error?.message))) {
        event.preventDefault();
      }
    };
    globalThis.addEventListener("error", driverNoise);
    try {
      await store.compareAndSet("k", { seqno: 0n, data: bytes("v0") });
      const reserved = await admin.reserve();
      await reserved.unsafe("BEGIN");
      await reserved.unsafe('LOCK TABLE "killed_backend" IN ACCESS EXCLUSIVE MODE');
      const pending = store.compareAndSet("k", { seqno: 1n, data: bytes("v1") });
      // It may reject while the loop below still waits for the kill to
      // return: handled from now on, so that is not an unhandled rejection.
      pending.catch(() => {});
      let killed = 0;
      for (let i = 0; i < 50 && killed === 0; i++) {
        await new Promise((r) => setTimeout(r, 50));
        const rows = await admin.unsafe(
          "SELECT pg_terminate_backend(pid) FROM pg_stat_activity " +
            "WHERE wait_event_type = 'Lock' AND query LIKE 'WITH head AS%'",
        );
        killed = rows.length;
      }
      assertEquals(killed, 1, "the blocked statement was found and killed");
      const started = Date.now();
      const error = await assertRejects(() => pending, ConsensusError, "may have taken effect");
      console.log(`  rejected after ${Date.now() - started} ms: ${error.message}`);
      assertEquals((error as ConsensusError).determinate, false);
      await reserved.unsafe("ROLLBACK");
      reserved.release();
      assertEquals((await store.head("k"))?.seqno, 0n);
      assertEquals(await store.compareAndSet("k", { seqno: 1n, data: bytes("v1") }), "committed");
    } finally {
      await store.close();
      // A pool that handed out a reserved connection waits for its own
      // timeout on end(); the test does not need to.
      await admin.end({ timeout: 0 });
      globalThis.removeEventListener("error", driverNoise);
    }
  },
);

dbTest("every operation is one prepared statement, one round trip", async () => {
  const sql = connect({ max: 2 });
  const rec = recording(fromPostgresJs(sql, { owned: true }));
  const store = await PostgresConsensus.open(rec.executor, { table: "round_trips" });
  await dropAndRecreate(store);
  try {
    const ops: [string, number, () => Promise<unknown>][] = [
      ["head", 1, () => store.head("k")],
      ["cas_first", 1, () => store.compareAndSet("k", { seqno: 0n, data: bytes("a") })],
      ["cas_next", 1, () => store.compareAndSet("k", { seqno: 1n, data: bytes("b") })],
      // This store saw seqno 1 commit, so the head is at least 1: a sure
      // mismatch, answered without a round trip.
      ["cas_next", 0, () => store.compareAndSet("k", { seqno: 1n, data: bytes("c") })],
      ["scan", 1, () => store.scan("k", 0n, 10)],
      ["scan", 1, () => store.scan("k", 0n)],
      ["truncate", 1, () => store.truncate("k", 1n)],
      ["list_keys", 1, async () => {
        for await (const _ of store.listKeys()) { /* one page */ }
      }],
    ];
    for (const [name, statements, op] of ops) {
      rec.queries.length = 0;
      await op();
      assertEquals(rec.queries.length, statements, `${name}: statements sent`);
      if (statements) assertStringIncludes(rec.queries[0].name, `persist_consensus_${name}_`);
    }
    // The statement name is stable per text: prepared once, reused.
    rec.queries.length = 0;
    await store.head("a");
    await store.head("b");
    assertEquals(rec.queries[0].name, rec.queries[1].name);
  } finally {
    await store.close();
  }
});

dbTest("bad input sends nothing and leaves the table unchanged", async () => {
  const sql = connect({ max: 2 });
  const rec = recording(fromPostgresJs(sql, { owned: true }));
  const store = await PostgresConsensus.open(rec.executor, { table: "bad_input" });
  await dropAndRecreate(store);
  const raw = connect({ max: 1 });
  try {
    await store.compareAndSet("k", { seqno: 0n, data: bytes("v0") });
    const dump = () =>
      raw.unsafe(
        "SELECT shard, sequence_number::text, encode(data, 'hex') FROM bad_input ORDER BY 1, 2",
      ).values();
    const before = await dump();
    rec.queries.length = 0;
    // deno-lint-ignore no-explicit-any
    const loose = store as any;
    const bad: [() => Promise<unknown>, ErrorConstructor][] = [
      [() => loose.compareAndSet("k", { seqno: 1, data: bytes("x") }), TypeError],
      [() => loose.compareAndSet("k", { seqno: -1n, data: bytes("x") }), RangeError],
      [() => loose.compareAndSet("k", { seqno: MAX_SEQNO + 1n, data: bytes("x") }), RangeError],
      [() => loose.compareAndSet("", { seqno: 1n, data: bytes("x") }), RangeError],
      [() => loose.compareAndSet("a\u0000", { seqno: 1n, data: bytes("x") }), RangeError],
      [() => loose.compareAndSet("\udc00", { seqno: 1n, data: bytes("x") }), RangeError],
      [() => loose.compareAndSet("k".repeat(1025), { seqno: 1n, data: bytes("x") }), RangeError],
      [() => loose.compareAndSet("k", { seqno: 1n, data: "x" }), TypeError],
      [
        () => loose.compareAndSet("k", { seqno: 1n, data: new Uint8Array(16 * 1024 * 1024 + 1) }),
        RangeError,
      ],
      [() => loose.truncate("k", 5), TypeError],
      [() => loose.truncate("k", -1n), RangeError],
      [() => loose.scan("k", 0n, -1), RangeError],
      [() => loose.scan("k", 0n, 2.5), RangeError],
      [() => loose.head(42), TypeError],
    ];
    for (const [call, errorClass] of bad) await assertRejects(call, errorClass, "Cannot ");
    assertEquals(rec.queries.length, 0, "no statement was sent");
    assertEquals(await dump(), before, "table unchanged");
  } finally {
    await store.close();
    await raw.end();
  }
});

dbTest("truncate above the head is a RangeError that deletes nothing", async () => {
  const { store } = await fresh("truncate_above");
  try {
    for (let i = 0n; i < 3n; i++) await store.compareAndSet("k", { seqno: i, data: bytes("x") });
    await assertRejects(
      () => store.truncate("k", 3n),
      RangeError,
      'Cannot truncate "k": seqno 3 is above head 2',
    );
    assertEquals((await store.scan("k", 0n)).length, 3);
  } finally {
    await store.close();
  }
});

dbTest("table and schema names are quoted identifiers, taken literally", async () => {
  const admin = connect({ max: 1 });
  const schema = 'odd "schema"';
  const table = 'we"ird; DROP TABLE consensus; --';
  try {
    await admin.unsafe(`DROP SCHEMA IF EXISTS "odd ""schema""" CASCADE`);
    await admin.unsafe(`CREATE SCHEMA "odd ""schema"""`);
    const store = await PostgresConsensus.open(
      fromPostgresJs(connect({ max: 2 }), { owned: true }),
      {
        schema,
        table,
      },
    );
    assertEquals(await store.compareAndSet("k", { seqno: 0n, data: bytes("x") }), "committed");
    await store.close();
    const rows = await admin`SELECT count(*)::int AS n FROM information_schema.tables
                             WHERE table_schema = ${schema} AND table_name = ${table}`;
    assertEquals(rows[0].n, 1);
    // Reopening finds the existing table instead of creating another.
    const again = await PostgresConsensus.open(
      fromPostgresJs(connect({ max: 1 }), { owned: true }),
      {
        schema,
        table,
      },
    );
    assertEquals((await again.head("k"))?.seqno, 0n);
    await again.close();
    await assertRejects(
      () =>
        PostgresConsensus.open(fromPostgresJs(connect({ max: 1 }), { owned: true }), {
          table: "x".repeat(64),
        }),
      RangeError,
      "longer than 63 bytes",
    );
  } finally {
    await admin.unsafe(`DROP SCHEMA IF EXISTS "odd ""schema""" CASCADE`);
    await admin.end();
  }
});

dbTest(
  "a read-only role opens an existing store and reads; writes fail determinately",
  async () => {
    const admin = connect({ max: 1 });
    try {
      const { store } = await fresh("privileges");
      await store.compareAndSet("k", { seqno: 0n, data: bytes("v0") });
      await store.close();
      await admin.unsafe("DROP ROLE IF EXISTS consensus_reader");
      await admin.unsafe("CREATE ROLE consensus_reader LOGIN");
      await admin.unsafe("GRANT SELECT ON privileges TO consensus_reader");
      await admin.unsafe("REVOKE CREATE ON SCHEMA public FROM PUBLIC");
      const reader = await PostgresConsensus.open(
        fromPostgresJs(connect({ max: 2, username: "consensus_reader" }), { owned: true }),
        { table: "privileges" },
      );
      assertEquals((await reader.head("k"))?.seqno, 0n);
      assertEquals(await reader.scan("k", 0n), [{ seqno: 0n, data: bytes("v0") }]);
      const error = await assertRejects(
        () => reader.compareAndSet("k", { seqno: 1n, data: bytes("v1") }),
        ConsensusError,
        "did not take effect",
      );
      assertEquals((error as ConsensusError).code, "42501");
      assertEquals((error as ConsensusError).determinate, true);
      // A missing table with no right to create it is a clear, determinate error.
      const denied = await assertRejects(
        () =>
          PostgresConsensus.open(
            fromPostgresJs(connect({ max: 1, username: "consensus_reader" }), { owned: true }),
            { table: "not_there" },
          ),
        ConsensusError,
        "create the table failed",
      );
      assertEquals((denied as ConsensusError).code, "42501");
      await reader.close();
    } finally {
      await admin.unsafe("GRANT CREATE ON SCHEMA public TO PUBLIC");
      await admin.unsafe("DROP TABLE IF EXISTS privileges");
      await admin.unsafe("DROP ROLE IF EXISTS consensus_reader");
      await admin.end();
    }
  },
);

dbTest("mode auto detects Postgres from version()", async () => {
  const store = await PostgresConsensus.open(fromPostgresJs(connect({ max: 1 }), { owned: true }), {
    table: "auto_mode",
  });
  assertEquals(store.engine, "postgres");
  await store.close();
});

dbTest(
  "CockroachDB mode sends its tuning, and a role without the privilege still opens",
  async () => {
    // CockroachDB's CREATE TABLE ... WITH (sql_stats_automatic_collection_enabled)
    // and CONFIGURE ZONE are not Postgres: here the table exists already and the
    // tuning is exercised through dropAndRecreate against a recording executor
    // whose DDL Postgres rejects, as a CockroachDB role without ZONECONFIG would.
    // The CockroachDB statements need a session at SERIALIZABLE.
    const sql = connect({ max: 2, connection: sessionFor("cockroach") });
    // Open with create: false checks the existing table: make it first, so
    // that the tuning is sent once, by dropAndRecreate.
    await freshTable("cockroach_tuning");
    const inner = fromPostgresJs(sql, { owned: true });
    const sent: string[] = [];
    const warnings: string[] = [];
    const executor = {
      ...inner,
      async ddl(text: string) {
        sent.push(text);
        if (text.startsWith("CREATE TABLE")) {
          // Postgres cannot parse the storage parameter; create the equivalent.
          return await inner.ddl(text.replace(/ WITH \(.*\)$/, ""));
        }
        return await inner.ddl(text);
      },
      query: inner.query,
      close: inner.close,
    };
    const store = await PostgresConsensus.open(executor, {
      mode: "cockroach",
      table: "cockroach_tuning",
      create: false,
      onWarning: (message) => warnings.push(message),
    });
    await dropAndRecreate(store);
    assert(sent.some((t) => t.includes("WITH (sql_stats_automatic_collection_enabled = false)")));
    assert(sent.some((t) => t.includes("CONFIGURE ZONE USING gc.ttlseconds = 600")));
    // Only the tuning's warnings: open may warn of other things.
    const tuning = warnings.filter((w) => w.includes("could not run"));
    assertEquals(tuning.length, 1, "the zone change failed and was reported once");
    assertStringIncludes(tuning[0], "gc.ttlseconds");
    assertEquals(await store.compareAndSet("k", { seqno: 0n, data: bytes("x") }), "committed");
    await store.close();
  },
);

dbTest(
  "a timed-out statement pipelined behind another never hands its result to the next one",
  async () => {
    // porsager 3.4.9 with its default pipelining: cancelling a pipelined
    // statement made the next statement on the connection receive its result
    // (found by the torture campaign). One connection, three reads queued on
    // it behind a lock; the middle one times out. Each must get its own key.
    const sql = connect({ max: 1 });
    await freshTable("pipelined_cancel");
    await sql.unsafe(
      `INSERT INTO pipelined_cancel SELECT k, g, '\\x00'::bytea
       FROM (VALUES ('a', 0), ('b', 1), ('c', 2)) AS keys(k, top), generate_series(0, top) g`,
    );
    const open = (timeoutMs: number) =>
      PostgresConsensus.open(fromPostgresJs(sql), {
        table: "pipelined_cancel",
        create: false,
        timeoutMs,
      });
    const patient = await open(10_000);
    const hasty = await open(200);
    const locker = connect({ max: 1 });
    try {
      // Prepared on the connection already: porsager pipelines only
      // statements it need not describe first.
      await patient.head("warm-up");
      const reserved = await locker.reserve();
      await reserved.unsafe("BEGIN");
      await reserved.unsafe("LOCK TABLE pipelined_cancel IN ACCESS EXCLUSIVE MODE");
      const a = patient.head("a");
      await new Promise((r) => setTimeout(r, 20));
      const b = hasty.head("b").then(() => "resolved", (e) => (e as Error).message);
      await new Promise((r) => setTimeout(r, 20));
      const c = patient.head("c");
      assertStringIncludes(await b, "timed out");
      await new Promise((r) => setTimeout(r, 100));
      await reserved.unsafe("COMMIT");
      reserved.release();
      assertEquals((await a)?.seqno, 0n, "a's own head");
      assertEquals((await c)?.seqno, 2n, "c's own head, not b's");
      assertEquals((await patient.head("b"))?.seqno, 1n, "the connection is still in step");
    } finally {
      await locker.end({ timeout: 0 });
      await sql.end({ timeout: 1 });
    }
  },
);

// What open checks, how it fails and what it leaves behind; then close and
// the head floor. Each of these failed on the release before marker rows.

// Tables a store must not open: on each, a compare-and-set of one seqno
// could land twice (no key over (shard, sequence_number)), or the bytes
// would not round-trip.
const WRONG_SHAPES: [string, string, string][] = [
  [
    "shape_no_primary_key",
    "(shard text, sequence_number bigint, data bytea)",
    "has no primary key",
  ],
  [
    "shape_key_reversed",
    "(shard text, sequence_number bigint, data bytea, PRIMARY KEY (sequence_number, shard))",
    "has PRIMARY KEY (sequence_number, shard), not (shard, sequence_number)",
  ],
  [
    "shape_key_shard_only",
    "(shard text PRIMARY KEY, sequence_number bigint, data bytea)",
    "has PRIMARY KEY (shard), not (shard, sequence_number)",
  ],
  [
    "shape_data_text",
    "(shard text, sequence_number bigint, data text, PRIMARY KEY (shard, sequence_number))",
    "has column data of type text, not bytea",
  ],
];

dbTest("open refuses a table of the wrong shape, naming the table and the difference", async () => {
  const admin = connect({ max: 1 });
  try {
    for (const [table, columns, difference] of WRONG_SHAPES) {
      await admin.unsafe(`DROP TABLE IF EXISTS ${table}`);
      await admin.unsafe(`CREATE TABLE ${table} ${columns}`);
      await admin.unsafe(`INSERT INTO ${table} VALUES ('k', 0, '')`);
      for (const create of [true, false]) {
        const error = await assertRejects(
          () =>
            PostgresConsensus.open(fromPostgresJs(connect({ max: 1 }), { owned: true }), {
              table,
              create,
            }),
          ConsensusError,
          `table "${table}" ${difference}; the store needs (shard text, sequence_number bigint, ` +
            "data bytea, PRIMARY KEY (shard, sequence_number))",
        ) as ConsensusError;
        assertEquals(error.determinate, true, table);
        assertStringIncludes(error.message, "Cannot open consensus store on postgres://");
        assertStringIncludes(error.message, "nothing was changed");
      }
      const rows = await admin.unsafe(`SELECT shard, sequence_number::text AS n FROM ${table}`);
      assertEquals(rows.map((r) => `${r.shard}:${r.n}`), ["k:0"], `${table} left as it was`);
      await admin.unsafe(`DROP TABLE ${table}`);
    }
  } finally {
    await admin.end();
  }
});

/** The whole chain of an error's messages, to look for a secret in. */
function chainOf(error: unknown): string {
  let text = "";
  for (let e = error; e !== undefined && e !== null; e = (e as Error).cause) {
    text += `${String(e)}\n${(e as Error).message ?? ""}\n${(e as Error).stack ?? ""}\n`;
  }
  return text;
}

dbTest(
  "open on a database that does not exist: determinate, in the user's words, no password",
  async () => {
    const url = new URL(DATABASE_URL!);
    url.password = "hunter2-secret";
    url.pathname = "/nosuchdb";
    const sql = postgres(url.href, { max: 1, onnotice: () => {} });
    const error = await assertRejects(
      () => PostgresConsensus.open(fromPostgresJs(sql, { owned: true })),
      ConsensusError,
    ) as ConsensusError;
    const where = `postgres://${url.username}@${url.hostname}:${url.port}/nosuchdb`;
    assertStringIncludes(
      error.message,
      `Cannot open consensus store on ${where}: database "nosuchdb" does not exist`,
    );
    assertStringIncludes(error.message, "nothing was changed");
    assertEquals(error.code, "3D000");
    assertEquals(error.determinate, true);
    assert(!chainOf(error).includes("hunter2"), chainOf(error));
  },
);

dbTest(
  "open in a schema that does not exist: determinate, in the user's words, no password",
  async () => {
    const url = new URL(DATABASE_URL!);
    url.password = "hunter2-secret";
    const sql = postgres(url.href, { max: 1, onnotice: () => {} });
    const error = await assertRejects(
      () =>
        PostgresConsensus.open(fromPostgresJs(sql, { owned: true }), {
          schema: "nosuch",
          create: true,
        }),
      ConsensusError,
      'schema "nosuch" does not exist',
    ) as ConsensusError;
    assertEquals(error.code, "3F000");
    assertEquals(error.determinate, true);
    assert(!chainOf(error).includes("hunter2"), chainOf(error));
    // Worded as every other open error: the server it tried, the outcome.
    const where = `postgres://${url.username}@${url.hostname}:${url.port}${url.pathname}`;
    assertStringIncludes(error.message, `Cannot open consensus store on ${where}: `);
    assertStringIncludes(error.message, "nothing was changed");
  },
);

dbTest(
  "open as a role that may not log in (28000): determinate, in the user's words, no password",
  async () => {
    const admin = connect({ max: 1 });
    try {
      await admin.unsafe("DROP ROLE IF EXISTS consensus_nologin");
      await admin.unsafe("CREATE ROLE consensus_nologin NOLOGIN");
      const url = new URL(DATABASE_URL!);
      url.username = "consensus_nologin";
      url.password = "hunter2-secret";
      const sql = postgres(url.href, { max: 1, onnotice: () => {} });
      const error = await assertRejects(
        () => PostgresConsensus.open(fromPostgresJs(sql, { owned: true })),
        ConsensusError,
        `Cannot open consensus store on postgres://consensus_nologin@${url.hostname}:${url.port}` +
          `${url.pathname}: role "consensus_nologin" is not permitted to log in`,
      ) as ConsensusError;
      assertEquals(error.code, "28000");
      assertEquals(error.determinate, true);
      assert(!chainOf(error).includes("hunter2"), chainOf(error));
    } finally {
      await admin.unsafe("DROP ROLE IF EXISTS consensus_nologin");
      await admin.end();
    }
  },
);

dbTest(
  "open with a wrong password (28P01): determinate, in the user's words, no password",
  async () => {
    await withPasswordServer("the 28P01 check", "consensus_pw", async (server) => {
      const sql = postgres(server.wrongUrl.href, { max: 1, onnotice: () => {} });
      const error = await assertRejects(
        () => PostgresConsensus.open(fromPostgresJs(sql, { owned: true })),
        ConsensusError,
        `Cannot open consensus store on postgres://consensus_pw@127.0.0.1:${server.port}` +
          `${server.wrongUrl.pathname}: password authentication failed for user "consensus_pw"`,
      ) as ConsensusError;
      assertEquals(error.code, "28P01");
      assertEquals(error.determinate, true);
      assertStringIncludes(error.message, "nothing was changed");
      assert(!chainOf(error).includes("hunter2"), chainOf(error));
      // The right password logs in: the refusal was the password's.
      const right = postgres(server.rightUrl.href, { max: 1, onnotice: () => {} });
      assertEquals((await right`SELECT current_user AS who`)[0].who, "consensus_pw");
      await right.end();
    });
  },
);

dbTest(
  "a failed open ends a porsager pool handed over as owned, and leaves one not owned alone",
  async () => {
    const admin = connect({ max: 1 });
    await admin.unsafe("DROP TABLE IF EXISTS open_failure_missing");
    await admin.end();
    // A failure to connect, one at the first statement (the session's
    // level) and one after the table lookup (create: false and no table).
    const failures: [string, ConnectOptions, PostgresConsensusOptions, string][] = [
      ["missing database", { database: "nosuchdb" }, {}, 'database "nosuchdb" does not exist'],
      ["isolation", {}, { mode: "cockroach" }, '"read committed" isolation'],
      ["missing table", {}, { create: false }, "does not exist"],
    ];
    for (const [what, connectOptions, options, message] of failures) {
      for (const owned of [true, false]) {
        const sql = connect({ max: 1, ...connectOptions });
        const end = sql.end;
        let ends = 0;
        sql.end = (options?: { timeout?: number }) => {
          ends++;
          return end(options);
        };
        await assertRejects(
          () =>
            PostgresConsensus.open(fromPostgresJs(sql, { owned }), {
              table: "open_failure_missing",
              ...options,
            }),
          ConsensusError,
          message,
        );
        assertEquals(ends, owned ? 1 : 0, `${what}, owned: ${owned}: sql.end() calls`);
        if (!owned && what !== "missing database") {
          assertEquals((await sql`SELECT 1 AS one`)[0].one, 1, "the caller's pool still works");
        }
        if (!owned) await end({ timeout: 1 });
      }
    }
  },
);

dbTest(
  "close lets the operations invoked before it finish, refuses later ones, returns one promise",
  async () => {
    // Two connections for 50 writes: most wait in the driver's queue when
    // close() is called.
    const { store } = await fresh("close_drains", { max: 2 });
    const raw = connect({ max: 1 });
    try {
      const writes = Array.from(
        { length: 50 },
        (_, i) => store.compareAndSet(`k${i}`, { seqno: 0n, data: bytes(`v${i}`) }),
      );
      const settled = Promise.allSettled(writes);
      const closing = store.close();
      const again = store.close();
      // Invoked after close: refused. (That it is refused by rejecting, not
      // by a synchronous throw, is the next test's business.)
      let late: unknown;
      try {
        await store.head("k0");
      } catch (error) {
        late = error;
      }
      assertEquals(
        (await settled).map((o) => o.status === "fulfilled" ? o.value : String(o.reason)),
        writes.map(() => "committed"),
        "each write invoked before close() got its real result",
      );
      assertInstanceOf(late, TypeError);
      assertStringIncludes(late.message, "closed");
      assertStrictEquals(again, closing, "a second close() returns the same promise");
      await closing;
      const [{ n }] = await raw`SELECT count(*)::int AS n FROM close_drains
                                WHERE sequence_number = 0`;
      assertEquals(n, 50, "every write landed");
    } finally {
      await raw.end();
    }
  },
);

dbTest(
  "a closed store and bad arguments are reported by rejecting, never by a synchronous throw",
  async () => {
    // The Consensus contract (README, "Lifecycle"; MemoryConsensus does
    // this): a caller that chains .catch() on the returned promise sees
    // every failure there.
    const { store } = await fresh("rejects_not_throws");
    const calls: [string, () => Promise<unknown>, ErrorConstructor][] = [
      ["head", () => store.head(""), RangeError],
      ["compareAndSet", () => store.compareAndSet("", { seqno: 0n, data: bytes("x") }), RangeError],
      ["scan", () => store.scan("k", -1n), RangeError],
      ["truncate", () => store.truncate("k", -1n), RangeError],
    ];
    const check = async (state: string, errorClass?: ErrorConstructor) => {
      for (const [name, call, badArgument] of calls) {
        let returned: Promise<unknown>;
        try {
          returned = call();
        } catch (error) {
          throw new Error(
            `${name} (${state}) threw synchronously instead of rejecting: ${
              (error as Error).message
            }`,
          );
        }
        await assertRejects(() => returned, errorClass ?? badArgument, "Cannot ");
      }
    };
    await check("bad argument");
    await store.close();
    await check("closed store", TypeError);
  },
);

dbTest(
  "a head read resets the store's floor, so rows changed outside heal in one read",
  async () => {
    const { store } = await fresh("floors_heal");
    const raw = connect({ max: 1 });
    try {
      for (let i = 0n; i <= 5n; i++) {
        assertEquals(
          await store.compareAndSet("k", { seqno: i, data: bytes(`v${i}`) }),
          "committed",
        );
      }
      // Outside the library: versions 0..5 replaced by 0..1 (a restore from
      // an older backup, say). The marker stays.
      await raw`DELETE FROM floors_heal WHERE shard = 'k' AND sequence_number >= 0`;
      await raw`INSERT INTO floors_heal VALUES ('k', 0, ${bytes("r0")}), ('k', 1, ${bytes("r1")})`;
      assertEquals(await store.head("k"), { seqno: 1n, data: bytes("r1") });
      // This store saw 5 committed; after the read it must ask the server.
      assertEquals(await store.compareAndSet("k", { seqno: 2n, data: bytes("v2") }), "committed");
      assertEquals((await store.scan("k", 0n)).map((v) => v.seqno), [0n, 1n, 2n]);
    } finally {
      await store.close();
      await raw.end();
    }
  },
);

dbTest("compareAndSet stores the bytes as they were at the call", async () => {
  // One connection, busy: the write waits in the driver's queue, which
  // serialises its parameters only when it sends them.
  const { sql, store } = await fresh("cas_copies", { max: 1 });
  try {
    for (const busy of [false, true]) {
      const key = busy ? "queued" : "sent";
      const blocker = busy ? sql`SELECT pg_sleep(0.2)`.execute() : undefined;
      const data = bytes("original");
      const pending = store.compareAndSet(key, { seqno: 0n, data });
      data.set(bytes("MUTATED!"));
      await blocker;
      assertEquals(await pending, "committed");
      assertEquals((await store.head(key))?.data, bytes("original"), key);
    }
  } finally {
    await store.close();
  }
});

dbTest(
  "scans packed in groups of 48 match the row-per-version statement (limits above 10)",
  async () => {
    const { sql, store } = await fresh("scan_packed");
    const { scan } = dialectFor("postgres", quoteIdentifier("scan_packed", "table"));
    try {
      // 130 versions over 2 full groups of 48 and part of a third, of 0 to
      // 300 bytes, written past the library (the marker included).
      await sql.unsafe(
        `INSERT INTO scan_packed SELECT 'k', g, CASE WHEN g < 0 THEN '\\x00'::bytea ` +
          `ELSE decode(repeat(lpad(to_hex(g % 256), 2, '0'), (g * 7) % 301), 'hex') END ` +
          `FROM generate_series(-1, 129) g`,
      );
      const cases: [bigint, number | undefined][] = [
        [0n, undefined],
        [0n, 1],
        [47n, 2],
        [47n, 11],
        [30n, 50],
        [129n, 11],
        [130n, 11],
      ];
      for (const [from, limit] of cases) {
        const packed = await store.scan("k", from, limit);
        const rows = await sql.unsafe(scan.text, [
          "k",
          String(from),
          String(limit ?? MAX_SEQNO),
        ]).values();
        const expected = rows.map(([seqno, data]) => ({
          seqno: BigInt(seqno as string),
          data: new Uint8Array(data as Uint8Array),
        }));
        assertEquals(packed, expected, `from ${from}, limit ${limit}`);
        assertEquals(packed.length, Math.min(limit ?? 130, Math.max(0, 130 - Number(from))));
        for (const version of packed) {
          assertEquals(version.data.byteLength, Number((version.seqno * 7n) % 301n));
          assertStrictEquals(version.data.constructor, Uint8Array);
        }
      }
    } finally {
      await store.close();
    }
  },
);

dbTest("harness: openSeeded seeds versions with marker rows, or without when told", async () => {
  const admin = connect({ max: 1 });
  try {
    for (const markers of [true, false]) {
      const table = `harness_markers_${markers}`;
      const store = await openSeeded(fromPostgresJs(connect({ max: 2 }), { owned: true }), {
        table,
        markers,
        initial: new Map([["k", [{ seqno: 0n, data: bytes("a") }, {
          seqno: 1n,
          data: bytes(""),
        }]]]),
      });
      try {
        const rows = await admin.unsafe(
          `SELECT sequence_number::int AS s, encode(data, 'escape') AS d FROM ${table} ORDER BY 1`,
        );
        assertEquals(
          rows.map((row) => `${row.s}:${row.d}`),
          [...(markers ? ["-1:"] : []), "0:a", "1:"],
        );
        assertEquals((await store.head("k"))?.seqno, 1n);
        assertEquals(await store.compareAndSet("k", { seqno: 0n, data: bytes("b") }), "mismatch");
        assertEquals(await store.compareAndSet("k", { seqno: 2n, data: bytes("c") }), "committed");
      } finally {
        await store.close();
      }
    }
  } finally {
    await admin.end();
  }
});
