// The conformance suite on a real Postgres through deno-postgres
// (jsr:@db/postgres 0.19), once with the Postgres statements and once with
// the CockroachDB statements (created with the Postgres DDL and opened with
// `create: false`, as in postgres_js_test.ts, on connections that start at
// SERIALIZABLE, the only level open accepts them at), then what is specific
// to this driver: SQLSTATEs from `fields.code`, connection failures, exact int8, no
// leaked pool connection after a timeout, and TCP_NODELAY. Then the same
// with `enableTcpNoDelay({ coalesce: true })`: the conformance suite, TLS
// (a second throwaway server with `ssl=on`), and bytes the driver writes
// without reading afterwards (Terminate on `pool.end()`). The coalescing
// transport itself is tested on a loopback socket, without the driver.
//
// The driver lives on JSR. It is imported dynamically from a specifier built
// at run time, so this file type-checks and loads where JSR cannot be
// reached; there every test here is reported as ignored, with the reason.
import {
  assert,
  assertEquals,
  assertInstanceOf,
  assertRejects,
  assertStringIncludes,
} from "@std/assert";
import { ConsensusError, PostgresConsensus, SqlError } from "../mod.ts";
import { type DenoPostgresPool, fromDenoPostgres } from "../src/adapters/deno_postgres.ts";
import { enableTcpNoDelay } from "../src/runtime/deno.ts";
import { openSeeded, recreateTable, runConformance } from "../src/testing/mod.ts";
import { startThrowawayPostgres } from "../tools/postgres_server.ts";
import { conformanceOptions, DATABASE_URL, STATEMENT_SETS } from "./_db.ts";

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
  await recreateTable(fromDenoPostgres(pool), { table });
}

for (const { mode, notify, label, suffix } of STATEMENT_SETS) {
  const table = `conformance_deno_postgres_${suffix}`;
  runConformance(test, `deno-postgres (${label})`, {
    writers: 8,
    raceUntil: 150n,
    open(initial) {
      // The driver reads startup options from the URL's `options` parameter.
      const pool = newPool(
        10,
        mode === "cockroach"
          ? withParam(DATABASE_URL!, "options", "-c default_transaction_isolation=serializable")
          : DATABASE_URL!,
      );
      return openSeeded(fromDenoPostgres(pool, { owned: true }), {
        ...conformanceOptions(mode, notify, table),
        initial,
      });
    },
  });
}

const scalar = (text: string, type: "int8" | "bytea" | "text") => ({
  name: `deno_postgres_test_${type}`,
  text,
  paramTypes: [type],
  columnTypes: [type],
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

test("deno-postgres: a missing table is reported with 42P01 at open, as not applied", async () => {
  const pool = newPool(1);
  await runRaw(pool, 'DROP TABLE IF EXISTS "deno_postgres_missing"');
  const error = await assertRejects(
    () =>
      PostgresConsensus.open(fromDenoPostgres(pool, { owned: true }), {
        table: "deno_postgres_missing",
        create: false,
      }),
    ConsensusError,
    '"deno_postgres_missing" does not exist',
  ) as ConsensusError;
  assertEquals(error.code, "42P01");
  assertEquals(error.determinate, true);
  assertStringIncludes(error.message, "nothing was changed");
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
  // Open only reads before it serves, so it reports the failure as
  // determinate (nothing was changed), with the store's error, and under it
  // the driver's, as causes.
  const pool2 = newPool(1, `postgres://postgres@127.0.0.1:${port}/postgres?sslmode=disable`);
  const failure = await assertRejects(
    () => PostgresConsensus.open(fromDenoPostgres(pool2), { mode: "postgres", timeoutMs: 2_000 }),
    ConsensusError,
    "Cannot open consensus store",
  ) as ConsensusError;
  assertEquals(failure.determinate, true);
  assertInstanceOf(failure.cause, ConsensusError);
  assertInstanceOf(failure.cause.cause, SqlError);
  assertEquals(failure.cause.cause.connectionLost, true);
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

// --- Coalescing (`enableTcpNoDelay({ coalesce: true })`) -------------------

const TERMINATE = [0x58, 0, 0, 0, 4]; // the protocol's Terminate message

function isCoalesced(conn: Deno.Conn): boolean {
  return Object.hasOwn(conn, "read") && Object.hasOwn(conn, "writable");
}

/**
 * Runs `fn` while recording the connections `Deno.connect` and
 * `Deno.startTls` hand out (the tuning patches them in place, so what is
 * recorded shows whether they were coalesced).
 */
async function recordingConnections<T>(
  fn: (tcp: Deno.Conn[], tls: Deno.TlsConn[]) => Promise<T>,
): Promise<T> {
  const deno = Deno as { connect: typeof Deno.connect; startTls: typeof Deno.startTls };
  const connect = deno.connect;
  const startTls = deno.startTls;
  const tcp: Deno.Conn[] = [];
  const tls: Deno.TlsConn[] = [];
  deno.connect = (async (options: Deno.ConnectOptions) => {
    const conn = await connect(options);
    tcp.push(conn);
    return conn;
  }) as typeof Deno.connect;
  deno.startTls = async (conn, options) => {
    const upgraded = await startTls(conn, options);
    tls.push(upgraded);
    return upgraded;
  };
  try {
    return await fn(tcp, tls);
  } finally {
    deno.connect = connect;
    deno.startTls = startTls;
  }
}

// The conformance suite with every connection of each case coalesced.
function coalescedTest(name: string, fn: () => Promise<void>): void {
  test(name, async () => {
    using _coalesce = enableTcpNoDelay({ coalesce: true });
    await recordingConnections(async (tcp) => {
      await fn();
      assert(tcp.length > 0, "the case opened connections");
      assert(tcp.every(isCoalesced), "every connection was coalesced");
    });
  });
}

{
  const table = "conformance_deno_postgres_coalesced";
  runConformance(coalescedTest, "deno-postgres coalesced (postgres statements)", {
    writers: 8,
    raceUntil: 150n,
    open: (initial) =>
      openSeeded(fromDenoPostgres(newPool(10), { owned: true }), {
        ...conformanceOptions("postgres", false, table),
        initial,
      }),
  });
}

/** A loopback TCP proxy to `target` that records what each client sent, until its EOF. */
function recordingProxy(target: URL) {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const sessions: Promise<Uint8Array>[] = [];
  const accepting = (async () => {
    for await (const client of listener) {
      sessions.push((async () => {
        const server = await Deno.connect({
          hostname: target.hostname,
          port: Number(target.port || 5432),
        });
        server.readable.pipeTo(client.writable).catch(() => {});
        const sent: number[] = [];
        const buffer = new Uint8Array(65536);
        try {
          for (;;) {
            const n = await client.read(buffer);
            if (n === null) break;
            sent.push(...buffer.subarray(0, n));
            await server.write(buffer.slice(0, n));
          }
        } catch {
          // the client reset the connection: what arrived is what counts
        }
        try {
          server.close();
        } catch {
          // already closed
        }
        return Uint8Array.from(sent);
      })());
    }
  })();
  return {
    port: listener.addr.port,
    sessions,
    async close() {
      listener.close();
      await accepting.catch(() => {});
    },
  };
}

async function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    return await Promise.race([
      promise,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`${what} did not happen within ${ms} ms`)), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

test("deno-postgres coalesced: Terminate written just before close reaches the server", async () => {
  const proxy = recordingProxy(new URL(DATABASE_URL!));
  // Only the proxy's port is selected: its upstream connection stays as it is.
  using _coalesce = enableTcpNoDelay({
    hostnames: ["127.0.0.1"],
    ports: [proxy.port],
    coalesce: true,
  });
  try {
    const url = new URL(DATABASE_URL!);
    url.port = String(proxy.port);
    await recordingConnections(async (tcp) => {
      const pool = newPool(1, url.href);
      const executor = fromDenoPostgres(pool, { owned: true });
      const { rows } = await executor.query(scalar("SELECT $1::int8 * 2", "int8"), [21n]);
      assertEquals(rows, [[42n]]);
      // The driver's connection to the proxy, and the proxy's own upstream
      // connection (same process), which is not selected.
      const [toProxy, upstream] = [
        tcp.filter((conn) => (conn.remoteAddr as Deno.NetAddr).port === proxy.port),
        tcp.filter((conn) => (conn.remoteAddr as Deno.NetAddr).port !== proxy.port),
      ];
      assertEquals([toProxy.length, upstream.length], [1, 1]);
      assert(isCoalesced(toProxy[0]));
      assert(!isCoalesced(upstream[0]));
      // The driver writes Terminate and closes the socket without reading.
      await executor.close();
    });
    assertEquals(proxy.sessions.length, 1);
    const sent = await withTimeout(proxy.sessions[0], 5_000, "the client's EOF");
    assertEquals([...sent.subarray(sent.length - TERMINATE.length)], TERMINATE);
  } finally {
    await proxy.close();
  }
});

// A second throwaway server with ssl=on, its certificate signed by a CA made
// here, for the TLS paths. Started only when the driver is available.
async function startTlsServer() {
  const server = await startThrowawayPostgres();
  const dir = await Deno.makeTempDir({ prefix: "persist-consensus-tls-" });
  try {
    const openssl = async (...args: string[]) => {
      const out = await new Deno.Command("openssl", {
        args,
        cwd: dir,
        stdout: "null",
        stderr: "piped",
      })
        .output();
      if (!out.success) {
        throw new Error(`openssl ${args[0]} failed: ${new TextDecoder().decode(out.stderr)}`);
      }
    };
    await openssl(
      "req",
      "-x509",
      "-newkey",
      "rsa:2048",
      "-nodes",
      "-days",
      "2",
      "-subj",
      "/CN=test-ca",
      "-keyout",
      "ca.key",
      "-out",
      "ca.crt",
    ); // deno-fmt-ignore
    await openssl(
      "req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost",
      "-keyout", "server.key", "-out", "server.csr",
    ); // deno-fmt-ignore
    await Deno.writeTextFile(
      `${dir}/server.ext`,
      "basicConstraints=CA:FALSE\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n",
    );
    await openssl(
      "x509",
      "-req",
      "-in",
      "server.csr",
      "-CA",
      "ca.crt",
      "-CAkey",
      "ca.key",
      "-CAcreateserial",
      "-days",
      "2",
      "-extfile",
      "server.ext",
      "-out",
      "server.crt",
    ); // deno-fmt-ignore
    // Into the data directory, owned by the server's user (it runs as
    // `postgres` when we are root), key readable by it alone.
    const { uid, gid } = await Deno.stat(server.dataDir);
    for (const name of ["server.crt", "server.key"]) {
      const path = `${server.dataDir}/${name}`;
      await Deno.copyFile(`${dir}/${name}`, path);
      await Deno.chmod(path, 0o600);
      if (Deno.uid() === 0 && uid !== null && gid !== null) await Deno.chown(path, uid, gid);
    }
    const ca = await Deno.readTextFile(`${dir}/ca.crt`);
    // ssl can be turned on by a reload; new connections see it.
    const admin = new driver!.Pool(`${server.url}?sslmode=disable`, 1, true);
    await runRaw(admin, "ALTER SYSTEM SET ssl = on");
    await runRaw(admin, "SELECT pg_reload_conf()");
    await admin.end();
    for (let i = 0; i < 50; i++) {
      const probe = new driver!.Pool(`${server.url}?sslmode=disable`, 1, true);
      const client = await probe.connect();
      const { rows } = await client.queryArray("SHOW ssl");
      client.release();
      await probe.end();
      if (rows[0][0] === "on") return { server, ca };
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    throw new Error("ssl did not turn on after pg_reload_conf()");
  } catch (error) {
    await server.stop();
    throw error;
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

for (const tls of ["enforced", "disabled"] as const) {
  test(`deno-postgres coalesced: TLS ${tls}, compare-and-set works over it`, async () => {
    const { server, ca } = await startTlsServer();
    using _coalesce = enableTcpNoDelay({ ports: [server.port], coalesce: true });
    try {
      await recordingConnections(async (tcp, upgraded) => {
        const pool = new driver!.Pool(
          {
            hostname: "127.0.0.1",
            port: server.port,
            user: "postgres",
            database: "postgres",
            tls: tls === "enforced"
              ? { enabled: true, enforce: true, caCertificates: [ca] }
              : { enabled: false },
          },
          4,
          true,
        );
        const store = await PostgresConsensus.open(fromDenoPostgres(pool, { owned: true }), {
          mode: "postgres",
          table: "deno_postgres_tls",
        });
        try {
          for (let seqno = 0n; seqno < 20n; seqno++) {
            const next = { seqno, data: new Uint8Array(3000).fill(Number(seqno)) };
            assertEquals(await store.compareAndSet("k", next), "committed");
          }
          assertEquals((await store.head("k"))?.data, new Uint8Array(3000).fill(19));
          assertEquals((await store.scan("k", 0n)).length, 20);
          const client = await pool.connect();
          try {
            const { rows } = await client.queryArray(
              "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            );
            assertEquals(rows, [[tls === "enforced"]]);
          } finally {
            client.release();
          }
        } finally {
          await store.close();
        }
        assert(tcp.length > 0);
        if (tls === "enforced") {
          // The TCP connections were handed to startTls unpatched; the TLS
          // streams on top of them are coalesced.
          assertEquals(upgraded.length, tcp.length);
          assert(tcp.every((conn) => !isCoalesced(conn)));
          assert(upgraded.every(isCoalesced));
        } else {
          assertEquals(upgraded.length, 0);
          assert(tcp.every(isCoalesced));
        }
      });
    } finally {
      await server.stop();
    }
  });
}

// The transport on its own, against a loopback listener: no driver needed,
// so these run everywhere.

async function loopback(options: { coalesce: boolean; selectPort?: boolean }) {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = listener.addr.port;
  const handle = enableTcpNoDelay({
    ports: [options.selectPort === false ? port + 1 : port],
    coalesce: options.coalesce,
  });
  const [client, server] = await Promise.all([
    Deno.connect({ hostname: "127.0.0.1", port }),
    listener.accept(),
  ]);
  listener.close();
  return {
    client,
    server,
    [Symbol.dispose]() {
      handle[Symbol.dispose]();
      for (const conn of [client, server]) {
        try {
          conn.close();
        } catch {
          // closed by the test
        }
      }
    },
  };
}

async function readAll(conn: Deno.Conn, bytes: number): Promise<Uint8Array> {
  const out = new Uint8Array(bytes);
  let offset = 0;
  while (offset < bytes) {
    const n = await conn.read(out.subarray(offset));
    if (n === null) throw new Error(`EOF after ${offset} of ${bytes} bytes`);
    offset += n;
  }
  return out;
}

function transportTest(name: string, fn: () => Promise<void>): void {
  Deno.test({ name: `deno-postgres transport: ${name}`, sanitizeOps: false, fn });
}

transportTest("writes report their length and arrive in order", async () => {
  using io = await loopback({ coalesce: true });
  assert(isCoalesced(io.client));
  assertEquals(await io.client.write(Uint8Array.of(1, 2)), 2);
  const writer = io.client.writable.getWriter();
  await writer.write(Uint8Array.of(3));
  const reused = Uint8Array.of(4, 5, 6);
  assertEquals(await io.client.write(reused), 3);
  reused.fill(0); // the bytes were copied when written
  writer.releaseLock();
  // Nothing reads on the client: the timer sends them.
  assertEquals([...await withTimeout(readAll(io.server, 6), 2_000, "the flush")], [
    1,
    2,
    3,
    4,
    5,
    6,
  ]);
});

transportTest("a read sends what is buffered first, and reads ahead", async () => {
  using io = await loopback({ coalesce: true });
  await io.client.write(Uint8Array.of(7, 8));
  const reply = (async () => {
    assertEquals([...await readAll(io.server, 2)], [7, 8]);
    await io.server.write(Uint8Array.of(10, 11, 12, 13, 14));
  })();
  // One byte at a time, as the driver reads headers: served from read-ahead.
  assertEquals([...await readAll(io.client, 1)], [10]);
  await reply;
  assertEquals([...await readAll(io.client, 2)], [11, 12]);
  // The readable stream continues where read() stopped.
  const reader = io.client.readable.getReader();
  const { value } = await reader.read();
  assertEquals([...value!], [13, 14]);
  reader.releaseLock();
});

transportTest("close sends what is buffered, then closes", async () => {
  using io = await loopback({ coalesce: true });
  const writer = io.client.writable.getWriter();
  await writer.write(new Uint8Array(100_000).fill(9)); // past the 64 KiB threshold
  await writer.write(Uint8Array.of(...TERMINATE));
  io.client.close();
  const received = await withTimeout(readAll(io.server, 100_005), 2_000, "the flush on close");
  assertEquals([...received.subarray(100_000)], TERMINATE);
  assertEquals(await io.server.read(new Uint8Array(1)), null);
  await assertRejects(() => io.client.read(new Uint8Array(1)), Deno.errors.BadResource);
});

transportTest("disposal sends what is buffered, like close", async () => {
  using io = await loopback({ coalesce: true });
  {
    using client = io.client;
    await client.write(Uint8Array.of(...TERMINATE));
  }
  const received = await withTimeout(readAll(io.server, 5), 2_000, "the flush on dispose");
  assertEquals([...received], TERMINATE);
  assertEquals(await io.server.read(new Uint8Array(1)), null);
});

transportTest("a failed send is thrown by the next read and write", async () => {
  using io = await loopback({ coalesce: true });
  await io.client.write(Uint8Array.of(1));
  // Close the socket underneath the patches: the buffered byte cannot go out.
  Object.getPrototypeOf(io.client).close.call(io.client);
  await assertRejects(() => io.client.read(new Uint8Array(1)), Deno.errors.BadResource);
  await assertRejects(() => io.client.write(Uint8Array.of(2)), Deno.errors.BadResource);
});

transportTest("only selected ports are coalesced; disposal restores the globals", async () => {
  const connect = Deno.connect;
  const startTls = Deno.startTls;
  {
    using io = await loopback({ coalesce: true, selectPort: false });
    assertEquals(isCoalesced(io.client), false);
  }
  {
    using io = await loopback({ coalesce: false });
    assertEquals(isCoalesced(io.client), false);
  }
  // Back to what they were (the file's own enableTcpNoDelay() stays on when
  // the driver is loaded).
  assertEquals(Deno.connect, connect);
  assertEquals(Deno.startTls, startTls);
});

transportTest("startTls refuses a connection with bytes read ahead of the handshake", async () => {
  using io = await loopback({ coalesce: true });
  await io.server.write(Uint8Array.of(0x53, 0x16)); // 'S', then a stray byte
  assertEquals([...await readAll(io.client, 1)], [0x53]);
  await assertRejects(
    () => Deno.startTls(io.client as Deno.TcpConn, { hostname: "127.0.0.1" }),
    TypeError,
    "arrived before the handshake",
  );
});
