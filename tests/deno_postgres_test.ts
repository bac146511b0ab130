// The conformance suite on a real Postgres through deno-postgres
// (jsr:@db/postgres 0.19), once with the Postgres statements and once with
// the CockroachDB statements (created with the Postgres DDL and opened with
// `create: false`, as in postgres_js_test.ts), then what is specific to this
// driver: SQLSTATEs from `fields.code`, connection failures, exact int8, no
// leaked pool connection after a timeout, and TCP_NODELAY.
//
// The driver lives on JSR. It is imported dynamically from a specifier built
// at run time, so this file type-checks and loads where JSR cannot be
// reached; there every test here is reported as ignored, with the reason.
import { assert, assertEquals, assertInstanceOf, assertRejects } from "@std/assert";
import { ConsensusError, PostgresConsensus, SqlError, type VersionedData } from "../mod.ts";
import { type DenoPostgresPool, fromDenoPostgres } from "../src/adapters/deno_postgres.ts";
import { dialectFor, quoteIdentifier } from "../src/dialect.ts";
import { enableTcpNoDelay } from "../src/runtime/deno.ts";
import { runConformance } from "../src/testing/mod.ts";
import { DATABASE_URL } from "./_db.ts";

/** The subset of deno-postgres' `Pool` these tests use besides the adapter's. */
interface Pool extends DenoPostgresPool {
  /** Clients ready to be taken. */
  readonly available: number;
}

interface Driver {
  Pool: new (options: string | Record<string, unknown>, size: number, lazy?: boolean) => Pool;
}

// Built at run time so that neither `deno check` nor module loading tries to
// resolve it where JSR is unreachable.
const SPECIFIER = ["jsr:@db", "postgres@^0.19.5"].join("/");

let driver: Driver | undefined;
let skipReason: string | undefined;
if (!DATABASE_URL) {
  skipReason = "DATABASE_URL is not set (run `deno task test`)";
} else {
  try {
    driver = await import(SPECIFIER) as Driver;
  } catch (error) {
    skipReason = `${SPECIFIER} cannot be loaded (${
      error instanceof Error ? error.message : String(error)
    })`;
  }
}
if (skipReason) {
  console.error(`\n*** deno-postgres tests are IGNORED: ${skipReason}. ***\n`);
} else {
  // The fix the adapter documents: without it every parameterised statement
  // over TCP waits ~40 ms for a delayed ACK.
  enableTcpNoDelay();
}

function test(name: string, fn: () => Promise<void>): void {
  Deno.test({
    name,
    ignore: driver === undefined,
    // Driver pools keep sockets between statements by design.
    sanitizeOps: false,
    sanitizeResources: false,
    fn,
  });
}

function newPool(size: number, url = DATABASE_URL!): Pool {
  return new driver!.Pool(url, size, true);
}

async function runRaw(pool: Pool, text: string, args?: unknown[]): Promise<void> {
  const client = await pool.connect();
  try {
    await client.queryArray(args === undefined ? { text } : { text, args });
  } finally {
    client.release();
  }
}

async function freshTable(pool: Pool, table: string): Promise<void> {
  const ddl = dialectFor("postgres", quoteIdentifier(table, "table"));
  await runRaw(pool, ddl.dropTable);
  await runRaw(pool, ddl.createTable);
}

for (const mode of ["postgres", "cockroach"] as const) {
  const table = `conformance_deno_postgres_${mode}`;
  runConformance(test, `deno-postgres (${mode} statements)`, {
    writers: 8,
    raceUntil: 150n,
    async open(initial?: ReadonlyMap<string, readonly VersionedData[]>) {
      const pool = newPool(10);
      await freshTable(pool, table);
      for (const [key, versions] of initial ?? []) {
        for (const { seqno, data } of versions) {
          await runRaw(
            pool,
            `INSERT INTO ${
              quoteIdentifier(table, "table")
            } (shard, sequence_number, data) VALUES ($1::text, $2::int8, $3::bytea)`,
            [key, seqno, data],
          );
        }
      }
      return await PostgresConsensus.open(fromDenoPostgres(pool, { owned: true }), {
        mode,
        table,
        create: false,
        listKeysPageSize: 7, // several pages in the listKeys case
      });
    },
  });
}

const scalar = (text: string, type: "int8" | "bytea" | "text") => ({
  name: `deno_postgres_test_${type}`,
  text,
  params: [type],
  columns: [type],
});

test("deno-postgres: a server error becomes a SqlError with its SQLSTATE", async () => {
  const pool = newPool(1);
  const executor = fromDenoPostgres(pool, { owned: true });
  try {
    const error = await assertRejects(
      () => executor.query(scalar("SELECT $1::int8 / 0", "int8"), [1n]),
      SqlError,
    ) as SqlError;
    assertEquals(error.code, "22012"); // division_by_zero
    assertEquals(error.connectionLost, false);
    const syntax = await assertRejects(() => executor.ddl("SELEC 1"), SqlError) as SqlError;
    assertEquals(syntax.code, "42601");
    // The connection survives a server error and serves the next statement.
    const { rows } = await executor.query(scalar("SELECT $1::int8 + 1", "int8"), [41n]);
    assertEquals(rows, [[42n]]);
  } finally {
    await executor.close();
  }
});

test("deno-postgres: a missing table is reported with 42P01 and as not applied", async () => {
  const pool = newPool(1);
  await runRaw(pool, 'DROP TABLE IF EXISTS "deno_postgres_missing"');
  const store = await PostgresConsensus.open(fromDenoPostgres(pool, { owned: true }), {
    table: "deno_postgres_missing",
    create: false,
  });
  try {
    const error = await assertRejects(() => store.head("k"), ConsensusError) as ConsensusError;
    assertEquals(error.code, "42P01");
    assertEquals(error.determinate, true);
  } finally {
    await store.close();
  }
});

test("deno-postgres: a refused connection is reported as lost", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr;
  listener.close(); // nothing listens on `port` any more
  const pool = newPool(1, `postgres://postgres@127.0.0.1:${port}/postgres?sslmode=disable`);
  const executor = fromDenoPostgres(pool);
  const error = await assertRejects(
    () => executor.query(scalar("SELECT $1::int8", "int8"), [1n]),
    SqlError,
  ) as SqlError;
  assertEquals(error.connectionLost, true);
  assertEquals(error.code, undefined);
  // The store reports it as indeterminate, with the driver's error as cause.
  const pool2 = newPool(1, `postgres://postgres@127.0.0.1:${port}/postgres?sslmode=disable`);
  const failure = await assertRejects(
    () => PostgresConsensus.open(fromDenoPostgres(pool2), { mode: "postgres", timeoutMs: 2_000 }),
    ConsensusError,
  ) as ConsensusError;
  assertInstanceOf(failure.cause, SqlError);
  assertEquals(failure.cause.connectionLost, true);
});

test("deno-postgres: int8 above 2^53 round-trips exactly", async () => {
  const pool = newPool(2);
  const executor = fromDenoPostgres(pool, { owned: true });
  try {
    for (const value of [2n ** 53n + 1n, 2n ** 63n - 1n, -(2n ** 63n)]) {
      const { rows } = await executor.query(scalar("SELECT $1::int8", "int8"), [value]);
      assertEquals(rows, [[value]]);
    }
    const table = "deno_postgres_int8";
    await freshTable(pool, table);
    const above = 2n ** 53n + 1n;
    await runRaw(
      pool,
      `INSERT INTO ${table} (shard, sequence_number, data) VALUES ('k', $1::int8, '\\x01')`,
      [above],
    );
    const store = await PostgresConsensus.open(executor, { mode: "postgres", table });
    assertEquals((await store.head("k"))?.seqno, above);
    const next = { seqno: above + 1n, data: new Uint8Array([0, 255, 2]) };
    assertEquals(await store.compareAndSet("k", next), "committed");
    // 2^53 + 2 is a double too: a lossy path would have written over it.
    assertEquals(
      await store.compareAndSet("k", { seqno: above + 1n, data: next.data }),
      "mismatch",
    );
    const versions = await store.scan("k", above);
    assertEquals(versions.map((v) => v.seqno), [above, above + 1n]);
    assertEquals(versions[1].data, next.data);
    assertEquals(versions[1].data.constructor, Uint8Array);
    await store.close();
  } finally {
    await executor.close();
  }
});

test("deno-postgres: a connection that arrives after a timeout is released, unused", async () => {
  const table = "deno_postgres_pool_timeout";
  const pool = newPool(1);
  await freshTable(pool, table);
  const store = await PostgresConsensus.open(fromDenoPostgres(pool, { owned: true }), {
    mode: "postgres",
    table,
    timeoutMs: 300,
  });
  try {
    assertEquals(
      await store.compareAndSet("k", { seqno: 0n, data: new Uint8Array([1]) }),
      "committed",
    );
    const held = await pool.connect(); // the pool's only connection
    const error = await assertRejects(
      () => store.compareAndSet("k", { seqno: 1n, data: new Uint8Array([2]) }),
      ConsensusError,
    ) as ConsensusError;
    assertEquals(error.determinate, false);
    held.release(); // the adapter's pending connect() now receives it
    await new Promise((resolve) => setTimeout(resolve, 100));
    assertEquals(pool.available, 1, "the late connection went back to the pool");
    assertEquals((await store.head("k"))?.seqno, 0n, "the abandoned write never ran");
  } finally {
    await store.close();
  }
});

test("deno-postgres: a statement the store gave up on frees its connection when it ends", async () => {
  const table = "deno_postgres_lock_timeout";
  const pool = newPool(1);
  const locker = newPool(1);
  await freshTable(pool, table);
  const store = await PostgresConsensus.open(fromDenoPostgres(pool, { owned: true }), {
    mode: "postgres",
    table,
    timeoutMs: 300,
  });
  const lock = await locker.connect();
  try {
    await lock.queryArray("BEGIN");
    await lock.queryArray(`LOCK TABLE ${table} IN ACCESS EXCLUSIVE MODE`);
    await assertRejects(() => store.head("k"), ConsensusError, "timed out");
    await lock.queryArray("COMMIT");
    for (let i = 0; i < 50 && pool.available === 0; i++) {
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    assertEquals(pool.available, 1);
    assertEquals(await store.head("k"), undefined);
  } finally {
    lock.release();
    await locker.end();
    await store.close();
  }
});

test("deno-postgres: a terminated backend fails as lost and is not handed out again", async () => {
  const table = "deno_postgres_terminated";
  const victim = withParam(DATABASE_URL!, "application_name", "deno_postgres_victim");
  const pool = newPool(2, victim);
  const admin = newPool(1);
  await freshTable(pool, table);
  const store = await PostgresConsensus.open(fromDenoPostgres(pool, { owned: true }), {
    mode: "postgres",
    table,
  });
  try {
    assertEquals(await store.head("k"), undefined); // connects one of the two clients
    await runRaw(
      admin,
      "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1::text",
      ["deno_postgres_victim"],
    );
    await new Promise((resolve) => setTimeout(resolve, 50)); // let the FATAL message arrive
    const error = await assertRejects(() => store.head("k"), ConsensusError) as ConsensusError;
    assertInstanceOf(error.cause, SqlError);
    assertEquals(error.cause.connectionLost, true);
    assertEquals(error.determinate, false);
    // The broken client was revived or kept out of the pool, so the next
    // statements run on a working connection.
    for (let seqno = 0n; seqno < 3n; seqno++) {
      const next = { seqno, data: new Uint8Array([Number(seqno)]) };
      assertEquals(await store.compareAndSet("k", next), "committed");
    }
  } finally {
    await admin.end();
    await store.close();
  }
});

test("deno-postgres: with enableTcpNoDelay a statement over TCP takes no delayed ACK", async () => {
  assertEquals(new URL(DATABASE_URL!).hostname.startsWith("/"), false);
  const pool = newPool(1);
  const executor = fromDenoPostgres(pool, { owned: true });
  try {
    const statement = scalar("SELECT $1::int8 + 1", "int8");
    for (let i = 0; i < 5; i++) await executor.query(statement, [BigInt(i)]);
    const runs = 50;
    const start = performance.now();
    for (let i = 0; i < runs; i++) await executor.query(statement, [BigInt(i)]);
    const perStatement = (performance.now() - start) / runs;
    // Nagle plus delayed ACK costs ~40 ms per statement; without it, < 1 ms.
    assert(perStatement < 10, `${perStatement.toFixed(2)} ms per statement over TCP`);
  } finally {
    await executor.close();
  }
});

function withParam(url: string, key: string, value: string): string {
  const parsed = new URL(url);
  parsed.searchParams.set(key, value);
  return parsed.toString();
}
