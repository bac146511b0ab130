// Window tests of the batched compare-and-set (`casBatch` in
// src/dialect.ts, sent by src/_batch.ts): several keys in one statement,
// each committing or mismatching on its own. The statement is parked
// mid-flight (tests/_park.ts) while another store (another process)
// commits and truncates on some of its keys; then it goes on, and every
// operation must get its own linearizable result: no version committed
// twice, and a lost race on one key is that key's "mismatch" only. Every
// case runs with the Postgres statements at READ COMMITTED, REPEATABLE
// READ and SERIALIZABLE (bare and notifying) and with the CockroachDB
// statements at SERIALIZABLE, as tests/window_test.ts does for the
// single-key statements.
import { assert, assertEquals } from "@std/assert";
import { ConsensusError, PostgresConsensus, type SqlExecutor, type VersionedData } from "../mod.ts";
import { fromPostgresJs } from "../src/adapters/postgres_js.ts";
import { channelFor, dialectFor, quoteIdentifier } from "../src/dialect.ts";
import { connect, dbTest } from "./_db.ts";
import { installPark, type Park, PARKED_APP } from "./_park.ts";

const LEVELS = ["read committed", "repeatable read", "serializable"] as const;
type Level = typeof LEVELS[number];
type Mode = "postgres" | "cockroach";

const encoder = new TextEncoder();
const decoder = new TextDecoder();
const bytes = (text: string) => encoder.encode(text);
const show = (versions: readonly VersionedData[]) =>
  versions.map((v) => `${v.seqno}:${decoder.decode(v.data)}`).join(" ");

interface Window {
  slow: PostgresConsensus;
  fast: PostgresConsensus;
  park: Park;
  /** Names of the statements the slow store sent. */
  sent: string[];
}

async function open(
  table: string,
  mode: Mode,
  level: Level,
  parked: boolean,
  notify: boolean,
  sent?: string[],
) {
  const connection: Record<string, string> = { default_transaction_isolation: level };
  if (parked) connection.application_name = PARKED_APP;
  const sql = connect({ max: parked ? 1 : 4, connection });
  const inner = fromPostgresJs(sql, { owned: true });
  const executor: SqlExecutor = sent === undefined ? inner : {
    ...inner,
    query(statement, params, options) {
      sent.push(statement.name.replace(/^persist_consensus_/, "").replace(/_[0-9a-f]{8}$/, ""));
      return inner.query(statement, params, options);
    },
  };
  return await PostgresConsensus.open(executor, { mode, table, create: false, notify });
}

async function windowed(
  table: string,
  mode: Mode,
  level: Level,
  notify: boolean,
  fn: (w: Window) => Promise<void>,
) {
  const admin = connect({ max: 1 });
  const ddl = dialectFor("postgres", quoteIdentifier(table, "table"));
  await admin.unsafe(ddl.dropTable);
  await admin.unsafe(ddl.createTable);
  await admin.end();
  const park = await installPark(table);
  const sent: string[] = [];
  const slow = await open(table, mode, level, true, notify, sent);
  const fast = await open(table, mode, level, false, notify);
  const listener = connect({ max: 1 });
  const payloads: string[] = [];
  const committed: string[] = [];
  if (notify) {
    await listener.listen(channelFor(`"public".${quoteIdentifier(table, "table")}`), (payload) => {
      payloads.push(payload);
    });
    for (const store of [slow, fast]) {
      const compareAndSet = store.compareAndSet.bind(store);
      store.compareAndSet = async (key, next) => {
        const result = await compareAndSet(key, next);
        if (result === "committed") committed.push(`${next.seqno}:${key}`);
        return result;
      };
    }
  }
  try {
    await fn({ slow, fast, park, sent });
    if (notify) {
      for (let i = 0; i < 100 && payloads.length < committed.length; i++) {
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      await new Promise((resolve) => setTimeout(resolve, 50));
      assertEquals(payloads.toSorted(), committed.toSorted(), "notifications vs commits");
    }
  } finally {
    await park.release();
    await Promise.all([slow.close(), fast.close(), listener.end()]);
    await park.close();
  }
}

async function stillPending(promise: Promise<unknown>, ms: number): Promise<boolean> {
  const timer = new Promise((resolve) => setTimeout(() => resolve("pending"), ms));
  return await Promise.race([promise.then(() => "settled", () => "settled"), timer]) ===
    "pending";
}

const cases: [Mode, Level, boolean][] = [
  ...LEVELS.map((level): [Mode, Level, boolean] => ["postgres", level, false]),
  ...LEVELS.map((level): [Mode, Level, boolean] => ["postgres", level, true]),
  ["cockroach", "serializable", false],
];

for (const [mode, level, notify] of cases) {
  const tag = `${mode} statements${notify ? ", notify," : ""} at ${level}`;
  const name = (n: string) =>
    `wbatch_${n}_${mode}${notify ? "_notify" : ""}_${level.replace(" ", "_")}`;

  // Next writes: x's entry parks before its insert (its head locked, for
  // the Postgres statements); another process commits x 2 and 3 and
  // truncates below 3. x must lose alone; y, in the same statement,
  // commits.
  dbTest(
    `window batch (${tag}): batched next writes parked while another commits and truncates one of the keys`,
    async () => {
      await windowed(name("next"), mode, level, notify, async ({ slow, fast, park, sent }) => {
        for (const seqno of [0n, 1n]) {
          const result = await fast.compareAndSet("x", { seqno, data: bytes(`X${seqno}`) });
          assertEquals(result, "committed");
        }
        assertEquals(await fast.compareAndSet("y", { seqno: 0n, data: bytes("Y0") }), "committed");
        await park.arm({ op: "INSERT", seqno: 2n });
        const parked = Promise.all([
          slow.compareAndSet("y", { seqno: 1n, data: bytes("SLOW-Y") }),
          slow.compareAndSet("x", { seqno: 2n, data: bytes("SLOW-X") }),
        ]);
        parked.catch(() => {});
        await park.parked();
        assertEquals(await fast.compareAndSet("x", { seqno: 2n, data: bytes("B2") }), "committed");
        assertEquals(await fast.compareAndSet("x", { seqno: 3n, data: bytes("B3") }), "committed");
        const truncated = fast.truncate("x", 3n);
        truncated.catch(() => {});
        if (mode === "postgres") {
          assert(await stillPending(truncated, 200), "truncate deleted a row under a batch's lock");
        }
        await park.release();
        assertEquals(await parked, ["committed", "mismatch"], "y commits; x alone loses");
        assertEquals(await truncated, 3);
        assertEquals(show(await fast.scan("x", 0n)), "3:B3");
        assertEquals(show(await fast.scan("y", 0n)), "0:Y0 1:SLOW-Y");
        assert(sent.includes("cas_batch"), `the slow store sent ${sent.join()}`);
      });
    },
  );

  // First writes: two first writes (a, b) and a next write (c) in one
  // statement, parked before the first row it inserts (a's marker for the
  // Postgres statements, a's version 0 for the CockroachDB ones); another
  // process commits a 0 and 1 and truncates a's 0. a must lose (no version
  // 0 twice), and the racing marker must not cost b or c their commits.
  dbTest(
    `window batch (${tag}): two batched first writes parked while another writes and truncates one of them`,
    async () => {
      await windowed(name("first"), mode, level, notify, async ({ slow, fast, park, sent }) => {
        assertEquals(await fast.compareAndSet("c", { seqno: 0n, data: bytes("C0") }), "committed");
        await park.arm({ op: "INSERT", seqno: -1n }, { op: "INSERT", seqno: 0n });
        const parked = Promise.all([
          slow.compareAndSet("a", { seqno: 0n, data: bytes("SLOW-A") }),
          slow.compareAndSet("b", { seqno: 0n, data: bytes("SLOW-B") }),
          slow.compareAndSet("c", { seqno: 1n, data: bytes("SLOW-C") }),
        ]);
        parked.catch(() => {});
        await park.parked();
        assertEquals(await fast.compareAndSet("a", { seqno: 0n, data: bytes("A0") }), "committed");
        assertEquals(await fast.compareAndSet("a", { seqno: 1n, data: bytes("A1") }), "committed");
        assertEquals(await fast.truncate("a", 1n), 1);
        await park.release();
        assertEquals(await parked, ["mismatch", "committed", "committed"]);
        assertEquals(show(await fast.scan("a", 0n)), "1:A1", "version 0 of a committed twice");
        assertEquals(show(await fast.scan("b", 0n)), "0:SLOW-B");
        assertEquals(show(await fast.scan("c", 0n)), "0:C0 1:SLOW-C");
        assert(sent.includes("cas_batch"), `the slow store sent ${sent.join()}`);
      });
    },
  );

  if (mode === "postgres") {
    // A batch parked after its markers landed: a competing first write on
    // one of its keys must wait for the batch, and then lose.
    dbTest(
      `window batch (${tag}): batched first writes parked after their markers; a competing first write waits and loses`,
      async () => {
        await windowed(name("marker"), mode, level, notify, async ({ slow, fast, park }) => {
          await park.arm({ op: "INSERT", seqno: 0n });
          const parked = Promise.all([
            slow.compareAndSet("a", { seqno: 0n, data: bytes("SLOW-A") }),
            slow.compareAndSet("b", { seqno: 0n, data: bytes("SLOW-B") }),
          ]);
          parked.catch(() => {});
          await park.parked();
          const competing = fast.compareAndSet("b", { seqno: 0n, data: bytes("B0") });
          competing.catch(() => {});
          assert(await stillPending(competing, 200), "a first write passed an uncommitted marker");
          await park.release();
          assertEquals(await parked, ["committed", "committed"]);
          assertEquals(await competing, "mismatch", "version 0 of b was committed twice");
          assertEquals(show(await fast.scan("b", 0n)), "0:SLOW-B");
        });
      },
    );
  }
}

// A batch whose connection is lost mid-statement: every operation in it is
// told "may have taken effect" (indeterminate), each naming its own key and
// the shared statement, and none of them is reported committed or mismatched
// by guess. Here the server rolled the statement back, which reads confirm.
dbTest(
  "window batch: a batch whose connection dies mid-statement fails every operation, indeterminate",
  async () => {
    const table = "wbatch_killed";
    await windowed(
      table,
      "postgres",
      "read committed",
      false,
      async ({ slow, fast, park, sent }) => {
        assertEquals(await fast.compareAndSet("y", { seqno: 0n, data: bytes("Y0") }), "committed");
        await park.arm({ op: "INSERT", seqno: 0n }, { op: "INSERT", seqno: 1n });
        const parked = Promise.all([
          slow.compareAndSet("x", { seqno: 0n, data: bytes("SLOW-X") }).catch((e) => e),
          slow.compareAndSet("y", { seqno: 1n, data: bytes("SLOW-Y") }).catch((e) => e),
        ]);
        await park.parked();
        const admin = connect({ max: 1 });
        await admin.unsafe(
          `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1`,
          [PARKED_APP],
        );
        await admin.end();
        const errors = await parked;
        for (const [i, error] of errors.entries()) {
          assert(error instanceof ConsensusError, `operation ${i} got ${error}`);
          assertEquals(error.determinate, false);
          const key = "xy"[i];
          assert(
            error.message.startsWith(`compareAndSet "${key}", sent in one statement with 1 other`),
            error.message,
          );
          assert(error.message.includes("may have taken effect"), error.message);
        }
        assert(sent.includes("cas_batch"), `the slow store sent ${sent.join()}`);
        // The statement never committed: neither write is there.
        assertEquals(await fast.head("x"), undefined);
        assertEquals(show(await fast.scan("y", 0n)), "0:Y0");
      },
    );
  },
);
