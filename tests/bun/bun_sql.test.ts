// The conformance suite under Bun through Bun's built-in SQL client, with
// the Postgres and the CockroachDB statements (see tests/postgres_js_test.ts
// for why the CockroachDB run uses the Postgres DDL; it runs on connections
// that start at SERIALIZABLE, the only level open accepts those statements
// at), and what is particular to this adapter.
import { expect } from "bun:test";
import { ConsensusError, PostgresConsensus, SqlError } from "../../mod.ts";
import { fromBunSql } from "../../src/adapters/bun_sql.ts";
import { openSeeded, runConformance } from "../../src/testing/mod.ts";
import { bunSql, conformanceOptions, dbTest, sessionFor, STATEMENT_SETS } from "./_db.ts";

for (const { mode, notify, label, suffix } of STATEMENT_SETS) {
  const table = `conformance_bun_sql_${suffix}`;
  runConformance(dbTest, `bun-sql (${label})`, {
    writers: 8,
    raceUntil: 150n,
    open: (initial) =>
      openSeeded(fromBunSql(bunSql(20, sessionFor(mode)), { owned: true }), {
        ...conformanceOptions(mode, notify, table),
        initial,
      }),
  });
}

const statement = (name: string, text: string, columns: ("int8" | "bytea")[] = []) => ({
  name,
  text,
  paramTypes: [] as const,
  columnTypes: columns,
});

dbTest("bun-sql: server errors carry the SQLSTATE from errno", async () => {
  const executor = fromBunSql(bunSql(2), { owned: true });
  try {
    const missing = await executor.query(statement("m", "SELECT * FROM bun_no_such_table"), [])
      .catch((error) => error);
    expect(missing).toBeInstanceOf(SqlError);
    expect(missing.code).toBe("42P01");
    expect(missing.connectionLost).toBe(false);
    await executor.ddl("DROP TABLE IF EXISTS bun_sql_dup");
    await executor.ddl("CREATE TABLE bun_sql_dup (id int8 PRIMARY KEY)");
    await executor.ddl("INSERT INTO bun_sql_dup VALUES (1)");
    const duplicate = await executor.ddl("INSERT INTO bun_sql_dup VALUES (1)").catch((e) => e);
    expect(duplicate).toBeInstanceOf(SqlError);
    expect(duplicate.code).toBe("23505");
  } finally {
    await executor.close();
  }
});

dbTest(
  "bun-sql: connection refused is connectionLost; open refuses it determinately and closes the owned client",
  async () => {
    const server = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
    const port = server.port;
    server.stop(true); // nothing listens there now
    const { SQL } = await import("bun");
    const sql = new SQL(`postgres://app:hunter2@127.0.0.1:${port}/app`, {
      max: 1,
      connectionTimeout: 2,
    });
    const close = sql.close.bind(sql);
    let closes = 0;
    sql.close = (options?: { timeout?: number }) => {
      closes++;
      return close(options);
    };
    const executor = fromBunSql(sql, { owned: true });
    // A statement may or may not have reached the server: the adapter says
    // the connection was lost.
    const error = await executor.query(statement("r", "SELECT 1"), []).catch((e) => e);
    expect(error).toBeInstanceOf(SqlError);
    expect(error.connectionLost).toBe(true);
    expect(error.code).toBeUndefined();
    // Open only reads before it serves: its failure changed nothing.
    const opened = await PostgresConsensus.open(executor, { timeoutMs: 3000 }).catch((e) => e);
    expect(opened).toBeInstanceOf(ConsensusError);
    expect(opened.determinate).toBe(true);
    expect(opened.message).toStartWith("Cannot open consensus store");
    expect(opened.message).toContain("nothing was changed");
    expect(opened.message).not.toContain("hunter2");
    // The failed open closed the executor it was handed, which owns the client.
    expect(closes).toBe(1);
  },
);

dbTest("bun-sql: startup parameters in `connection` reach every pooled connection", async () => {
  // The CockroachDB runs above rely on it: open checks one connection only.
  const sql = bunSql(5, { default_transaction_isolation: "serializable" });
  try {
    const rows = await Promise.all(
      Array.from({ length: 10 }, () =>
        sql`SELECT pg_backend_pid() AS pid,
                   current_setting('transaction_isolation') AS isolation
            FROM pg_sleep(0.05)`),
    );
    const byBackend = new Map(rows.map(([row]) => [row.pid, row.isolation]));
    expect(byBackend.size).toBe(5);
    expect([...byBackend.values()]).toEqual(Array(5).fill("serializable"));
  } finally {
    await sql.close();
  }
});

dbTest("bun-sql: the core's timeout cancels the statement on the server", async () => {
  const executor = fromBunSql(bunSql(2), { owned: true });
  try {
    const controller = new AbortController();
    const started = Date.now();
    const pending = executor.query(
      statement("s", "SELECT 1::int8 FROM pg_sleep(5)", ["int8"]),
      [],
      { signal: controller.signal },
    ).catch((e) => e);
    setTimeout(() => controller.abort(), 200);
    const error = await pending;
    expect(error).toBeInstanceOf(SqlError);
    expect(error.code).toBe("57014");
    expect(Date.now() - started).toBeLessThan(3000);
  } finally {
    await executor.close();
  }
});

dbTest("bun-sql: int8 beyond 2^53 and bytea views round-trip exactly", async () => {
  for (const bigint of [false, true]) {
    const { SQL } = await import("bun");
    const executor = fromBunSql(new SQL(process.env.DATABASE_URL!, { max: 1, bigint }), {
      owned: true,
    });
    try {
      const echo = {
        name: "bun_sql_test_echo",
        text: "SELECT $1::int8, $2::bytea, $3::int8, $4::int8",
        paramTypes: ["int8", "bytea", "int8", "int8"],
        columnTypes: ["int8", "bytea", "int8", "int8"],
      } as const;
      const backing = new Uint8Array([9, 1, 2, 3, 9]);
      const { rows } = await executor.query(echo, [
        2n ** 53n + 1n,
        backing.subarray(1, 4),
        -(2n ** 63n),
        2n ** 52n + 1n, // a whole number Bun would send as float8 if it were a number
      ]);
      expect(rows[0][0]).toBe(2n ** 53n + 1n);
      expect((rows[0][1] as Uint8Array).constructor).toBe(Uint8Array);
      expect(Array.from(rows[0][1] as Uint8Array)).toEqual([1, 2, 3]);
      expect(rows[0][2]).toBe(-(2n ** 63n));
      expect(rows[0][3]).toBe(2n ** 52n + 1n);
    } finally {
      await executor.close();
    }
  }
});
