// Postgres-specific behaviour of PostgresConsensus, against a real server
// through porsager's driver: races at every isolation level, the error
// model under real failures, privileges, identifiers and round trips.
import {
  assert,
  assertEquals,
  assertInstanceOf,
  assertRejects,
  assertStringIncludes,
} from "@std/assert";
import {
  ConsensusError,
  MAX_SEQNO,
  PostgresConsensus,
  type PostgresConsensusOptions,
} from "../mod.ts";
import { dialectFor, quoteIdentifier } from "../src/dialect.ts";
import { fromPostgresJs } from "../src/adapters/postgres_js.ts";
import { raceOnOneKey } from "../src/testing/mod.ts";
import { connect, dbTest } from "./_db.ts";
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
  const ddl = dialectFor("postgres", quoteIdentifier(table, "table"));
  await sql.unsafe(ddl.dropTable);
  await sql.unsafe(ddl.createTable);
  const store = await PostgresConsensus.open(fromPostgresJs(sql, { owned: true }), {
    table,
    create: false,
    ...storeOptions,
  });
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

for (const isolation of ["read committed", "repeatable read", "serializable"] as const) {
  for (const mode of ["postgres", "cockroach"] as const) {
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
    try {
      await store.compareAndSet("k", { seqno: 0n, data: bytes("v0") });
      const reserved = await admin.reserve();
      await reserved.unsafe("BEGIN");
      await reserved.unsafe('LOCK TABLE "killed_backend" IN ACCESS EXCLUSIVE MODE');
      const pending = store.compareAndSet("k", { seqno: 1n, data: bytes("v1") });
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
    }
  },
);

dbTest("every operation is one prepared statement, one round trip", async () => {
  const sql = connect({ max: 2 });
  const rec = recording(fromPostgresJs(sql, { owned: true }));
  const store = await PostgresConsensus.open(rec.executor, { table: "round_trips" });
  await store.dropAndRecreate();
  try {
    const ops: [string, number, () => Promise<unknown>][] = [
      ["head", 1, () => store.head("k")],
      ["cas_first", 1, () => store.compareAndSet("k", { seqno: 0n, data: bytes("a") })],
      ["cas_next", 1, () => store.compareAndSet("k", { seqno: 1n, data: bytes("b") })],
      // This store saw seqno 1 commit, so the head is at least 1: a sure
      // mismatch, answered without a round trip.
      ["cas_next", 0, () => store.compareAndSet("k", { seqno: 1n, data: bytes("c") })],
      ["scan", 1, () => store.scan("k", 0n, 10)],
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
  await store.dropAndRecreate();
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
    const sql = connect({ max: 2 });
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
    await store.dropAndRecreate();
    assert(sent.some((t) => t.includes("WITH (sql_stats_automatic_collection_enabled = false)")));
    assert(sent.some((t) => t.includes("CONFIGURE ZONE USING gc.ttlseconds = 600")));
    assertEquals(warnings.length, 1, "the zone change failed and was reported once");
    assertStringIncludes(warnings[0], "gc.ttlseconds");
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
    const ddl = dialectFor("postgres", quoteIdentifier("pipelined_cancel", "table"));
    await sql.unsafe(ddl.dropTable);
    await sql.unsafe(ddl.createTable);
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
