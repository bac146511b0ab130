// The conformance suite on a real Postgres through node-postgres (`pg`),
// with the Postgres and the CockroachDB statements (see
// postgres_js_test.ts for why the CockroachDB run uses the Postgres DDL, and
// opens its connections at SERIALIZABLE),
// and what is particular to this adapter: error normalisation, destroying a
// broken client, exact int8.
import pg from "pg";
import {
  assert,
  assertEquals,
  assertInstanceOf,
  assertRejects,
  assertStringIncludes,
} from "@std/assert";
import { ConsensusError, PostgresConsensus, SqlError } from "../mod.ts";
import { fromNodePostgres, type NodePostgresPool } from "../src/adapters/node_postgres.ts";
import { openSeeded, recreateTable, runConformance } from "../src/testing/mod.ts";
import { conformanceOptions, DATABASE_URL, dbTest, STATEMENT_SETS } from "./_db.ts";

// pg ships no types (they are in @types/pg, which would pull @types/node
// into every type-check); the tests use this much of its Pool.
interface Pool extends NodePostgresPool {
  query(text: string, values?: unknown[]): Promise<{ rows: Record<string, number>[] }>;
  readonly totalCount: number;
  /** Set once `end()` has closed every client. */
  readonly ended: boolean;
  /** Set as soon as `end()` is called. */
  readonly ending: boolean;
}
const PgPool: new (config: Record<string, unknown>) => Pool = pg.Pool;

function pool(options: Record<string, unknown> = {}): Pool {
  return new PgPool({ connectionString: DATABASE_URL, max: 20, ...options });
}

for (const { mode, notify, label, suffix } of STATEMENT_SETS) {
  const table = `conformance_node_postgres_${suffix}`;
  runConformance(dbTest, `node-postgres (${label})`, {
    writers: 8,
    raceUntil: 150n,
    open(initial) {
      // The CockroachDB statements need SERIALIZABLE: as a startup option,
      // every connection of the pool runs at it.
      const p = pool(
        mode === "cockroach" ? { options: "-c default_transaction_isolation=serializable" } : {},
      );
      return openSeeded(fromNodePostgres(p, { owned: true }), {
        ...conformanceOptions(mode, notify, table),
        initial,
      });
    },
  });
}

const HEAD = {
  name: "node_postgres_test_head",
  text: "SELECT sequence_number, data FROM node_postgres_errors WHERE shard = $1::text",
  paramTypes: ["text"],
  columnTypes: ["int8", "bytea"],
} as const;

dbTest("node-postgres: a missing table is SQLSTATE 42P01", async () => {
  const executor = fromNodePostgres(pool({ max: 2 }), { owned: true });
  try {
    await executor.ddl("DROP TABLE IF EXISTS node_postgres_errors");
    const error = await assertRejects(() => executor.query(HEAD, ["k"]), SqlError) as SqlError;
    assertEquals(error.code, "42P01");
    assertEquals(error.connectionLost, false);
  } finally {
    await executor.close();
  }
});

dbTest("node-postgres: a duplicate key is SQLSTATE 23505, and the client survives", async () => {
  const p = pool({ max: 1 });
  const executor = fromNodePostgres(p, { owned: true });
  try {
    await executor.ddl("DROP TABLE IF EXISTS node_postgres_dup");
    await executor.ddl("CREATE TABLE node_postgres_dup (id int8 PRIMARY KEY)");
    const insert = {
      name: "node_postgres_test_insert",
      text: "INSERT INTO node_postgres_dup VALUES ($1::int8)",
      paramTypes: ["int8"],
      columnTypes: [],
    } as const;
    await executor.query(insert, [1n]);
    const pid = (await p.query("SELECT pg_backend_pid() AS pid")).rows[0].pid;
    const error = await assertRejects(() => executor.query(insert, [1n]), SqlError) as SqlError;
    assertEquals(error.code, "23505");
    // An error response leaves the connection usable: the pool keeps it.
    assertEquals((await p.query("SELECT pg_backend_pid() AS pid")).rows[0].pid, pid);
  } finally {
    await executor.close();
  }
});

dbTest(
  "node-postgres: connection refused is connectionLost; open refuses it determinately and ends the owned pool",
  async () => {
    // A port that was free a moment ago: nothing listens there.
    const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const port = (listener.addr as Deno.NetAddr).port;
    listener.close();
    const p = new PgPool({
      connectionString: `postgres://app:hunter2@127.0.0.1:${port}/app`,
      connectionTimeoutMillis: 2000,
    });
    const executor = fromNodePostgres(p, { owned: true });
    try {
      // A statement may or may not have reached the server: indeterminate.
      const error = await assertRejects(() => executor.query(HEAD, ["k"]), SqlError) as SqlError;
      assertEquals(error.connectionLost, true);
      assertEquals(error.code, undefined);
      // Open only reads before it serves, so its failure changed nothing.
      const opened = await assertRejects(
        () => PostgresConsensus.open(executor, { timeoutMs: 3000 }),
        ConsensusError,
        `Cannot open consensus store on postgres://app@127.0.0.1:${port}/app: `,
      ) as ConsensusError;
      assertEquals(opened.determinate, true);
      assertStringIncludes(opened.message, "nothing was changed");
      assertInstanceOf(opened.cause, ConsensusError);
      assertInstanceOf(opened.cause.cause, SqlError);
      assertEquals(opened.cause.cause.connectionLost, true);
      assert(!opened.message.includes("hunter2"), opened.message);
      // The failed open closed the executor it was handed, which owns the pool.
      assert(p.ending, "the owned pool was ended");
    } finally {
      if (!p.ending) await executor.close();
    }
  },
);

dbTest("node-postgres: a terminated backend is destroyed, not returned to the pool", async () => {
  const p = pool({ max: 1 });
  const admin = pool({ max: 1 });
  const executor = fromNodePostgres(p, { owned: true });
  try {
    const sleep = {
      name: "node_postgres_test_sleep",
      text: "SELECT pg_backend_pid()::int8 FROM pg_sleep(30)",
      paramTypes: [],
      columnTypes: ["int8"],
    } as const;
    // Caught at once: it fails while the loop below is still polling.
    const pending = executor.query(sleep, []).then(
      () => undefined,
      (error: unknown) => error,
    );
    let victim: number | undefined;
    for (let i = 0; i < 100 && victim === undefined; i++) {
      const { rows } = await admin.query(
        "SELECT pid FROM pg_stat_activity WHERE query LIKE '%pg_sleep(30)' AND pid <> pg_backend_pid()",
      );
      victim = rows[0]?.pid;
      if (victim === undefined) await new Promise((r) => setTimeout(r, 50));
    }
    assert(victim !== undefined, "the sleeping backend showed up");
    await admin.query("SELECT pg_terminate_backend($1)", [victim]);
    const error = await pending;
    assertInstanceOf(error, SqlError);
    assertEquals(error.code, "57P01", error.message);
    // The only pooled client was destroyed: the next call gets a new backend.
    const pid = {
      name: "node_postgres_test_pid",
      text: "SELECT pg_backend_pid()::int8",
      paramTypes: [],
      columnTypes: ["int8"],
    } as const;
    const { rows } = await executor.query(pid, []);
    assert(rows[0][0] !== BigInt(victim), "a fresh connection");
    assertEquals(p.totalCount, 1);
  } finally {
    await executor.close();
    await admin.end();
  }
});

dbTest("node-postgres: the core's timeout cancels the statement on the server", async () => {
  const p = pool({ max: 2 });
  const executor = fromNodePostgres(p, { owned: true });
  try {
    const sleep = {
      name: "node_postgres_test_sleep5",
      text: "SELECT 1::int8 FROM pg_sleep(5)",
      paramTypes: [],
      columnTypes: ["int8"],
    } as const;
    const controller = new AbortController();
    const started = Date.now();
    const pending = executor.query(sleep, [], { signal: controller.signal });
    setTimeout(() => controller.abort(), 200);
    const error = await assertRejects(() => pending, SqlError) as SqlError;
    assertEquals(error.code, "57014", error.message); // query_canceled
    assert(Date.now() - started < 3000, `cancelled in ${Date.now() - started} ms`);
  } finally {
    await executor.close();
  }
});

dbTest(
  "node-postgres: with a full pool, the core's timeout cancels the statement through a client of its own",
  async () => {
    // The store's only pooled client runs a first write that a trigger keeps
    // in pg_sleep(30). A cancel through pool.query would wait for that very
    // client: the statement would run its 30 s.
    const table = "node_postgres_cancel_full_pool";
    const admin = pool({ max: 1 });
    await recreateTable(fromNodePostgres(admin), { table, engine: "postgres" });
    await admin.query(`CREATE OR REPLACE FUNCTION node_postgres_sleepy() RETURNS trigger
      LANGUAGE plpgsql AS $$ BEGIN PERFORM pg_sleep(30); RETURN NEW; END $$`);
    await admin.query(
      `CREATE TRIGGER sleepy BEFORE INSERT ON ${table} FOR EACH ROW EXECUTE FUNCTION node_postgres_sleepy()`,
    );
    const p = pool({ max: 1 });
    const store = await PostgresConsensus.open(fromNodePostgres(p, { owned: true }), {
      table,
      create: false,
      timeoutMs: 500,
    });
    try {
      const error = await assertRejects(
        () => store.compareAndSet("k", { seqno: 0n, data: new Uint8Array([1]) }),
        ConsensusError,
      ) as ConsensusError;
      assertEquals(error.determinate, false, error.message);
      // Gone from the server within 5 s of polling, long before its sleep ends.
      const running = () =>
        admin.query(
          `SELECT count(*)::int AS n FROM pg_stat_activity
           WHERE state = 'active' AND query LIKE '%${table}%' AND pid <> pg_backend_pid()`,
        ).then(({ rows }) => rows[0].n);
      let active = await running();
      for (let i = 0; i < 100 && active > 0; i++) {
        await new Promise((resolve) => setTimeout(resolve, 50));
        active = await running();
      }
      assertEquals(active, 0, "the sleeping statement still runs on the server");
      // Nothing was written, and the store works again on a fresh connection.
      await admin.query(`DROP TRIGGER sleepy ON ${table}`);
      assertEquals(await store.head("k"), undefined);
      assertEquals(
        await store.compareAndSet("k", { seqno: 0n, data: new Uint8Array([2]) }),
        "committed",
      );
    } finally {
      await store.close();
      await admin.query(`DROP TABLE IF EXISTS ${table}`);
      await admin.query("DROP FUNCTION IF EXISTS node_postgres_sleepy()");
      await admin.end();
    }
  },
);

dbTest(
  "node-postgres: a pool without a Client constructor still cancels, through pool.query",
  async () => {
    const p = pool({ max: 2 });
    // The structural minimum: no `Client`, so the cancel takes a pooled client.
    const minimal: NodePostgresPool = {
      connect: () => p.connect(),
      query: (text, values) => p.query(text, values),
      end: () => p.end(),
      options: p.options,
    };
    const executor = fromNodePostgres(minimal, { owned: true });
    try {
      const sleep = {
        name: "node_postgres_test_sleep5_minimal",
        text: "SELECT 1::int8 FROM pg_sleep(5)",
        paramTypes: [],
        columnTypes: ["int8"],
      } as const;
      const controller = new AbortController();
      const pending = executor.query(sleep, [], { signal: controller.signal });
      setTimeout(() => controller.abort(), 200);
      const error = await assertRejects(() => pending, SqlError) as SqlError;
      assertEquals(error.code, "57014", error.message); // query_canceled
    } finally {
      await executor.close();
    }
  },
);

dbTest("node-postgres: int8 above 2^53 and bytea views round-trip exactly", async () => {
  const executor = fromNodePostgres(pool({ max: 1 }), { owned: true });
  try {
    const echo = {
      name: "node_postgres_test_echo",
      text: "SELECT $1::int8, $2::bytea, $3::int8",
      paramTypes: ["int8", "bytea", "int8"],
      columnTypes: ["int8", "bytea", "int8"],
    } as const;
    const backing = new Uint8Array([9, 1, 2, 3, 9]);
    const { rows } = await executor.query(echo, [
      2n ** 53n + 1n,
      backing.subarray(1, 4),
      -(2n ** 63n),
    ]);
    assertEquals(rows[0][0], 2n ** 53n + 1n);
    assertInstanceOf(rows[0][1], Uint8Array);
    assertEquals((rows[0][1] as Uint8Array).constructor, Uint8Array);
    assertEquals(rows[0][1], new Uint8Array([1, 2, 3]));
    assertEquals(rows[0][2], -(2n ** 63n));
  } finally {
    await executor.close();
  }
});
