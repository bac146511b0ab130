// Window tests: each correctness argument in src/dialect.ts, attacked at its
// weakest step. One statement is parked mid-flight (tests/_park.ts) while
// another store (another process) commits, truncates and writes; then it
// goes on, and the outcome must be linearizable. Every case runs at READ
// COMMITTED, REPEATABLE READ and SERIALIZABLE with the Postgres statements,
// and at SERIALIZABLE with the CockroachDB statements (open refuses them
// below it, which is tested too). The Postgres statements run twice: bare,
// and notifying (`notify: true`, pg_notify in the compare-and-set), where a
// raw LISTEN on the table's channel also checks that exactly the
// compare-and-sets told "committed" notified, each once.
import { assert, assertEquals, assertRejects, assertStringIncludes } from "@std/assert";
import { ConsensusError, PostgresConsensus, type VersionedData } from "../mod.ts";
import { fromPostgresJs } from "../src/adapters/postgres_js.ts";
import { channelFor, quoteIdentifier } from "../src/dialect.ts";
import { connect, dbTest, freshTable } from "./_db.ts";
import { installPark, type Park, PARKED_APP } from "./_park.ts";

const LEVELS = ["read committed", "repeatable read", "serializable"] as const;
type Level = typeof LEVELS[number];
type Mode = "postgres" | "cockroach";

const encoder = new TextEncoder();
const decoder = new TextDecoder();
const bytes = (text: string) => encoder.encode(text);
const show = (versions: readonly VersionedData[]) =>
  versions.map((v) => `${v.seqno}:${decoder.decode(v.data)}`).join(" ");

function open(table: string, mode: Mode, level: Level, parked: boolean, notify = false) {
  const connection: Record<string, string> = { default_transaction_isolation: level };
  if (parked) connection.application_name = PARKED_APP;
  // One connection for the parked store: its statement is the only one.
  const sql = connect({ max: parked ? 1 : 4, connection });
  return PostgresConsensus.open(fromPostgresJs(sql, { owned: true }), {
    mode,
    table,
    create: false,
    notify,
  });
}

interface Window {
  /** The store whose statement parks. */
  slow: PostgresConsensus;
  /** Another process's store, never parked. */
  fast: PostgresConsensus;
  park: Park;
}

// A fresh table with the park trigger, and the two stores on it. With
// `notify`, every payload sent on the table's channel is collected, and at
// the end they must be exactly one per compare-and-set told "committed".
async function windowed(
  table: string,
  mode: Mode,
  level: Level,
  notify: boolean,
  fn: (w: Window) => Promise<void>,
) {
  await freshTable(table);
  const park = await installPark(table);
  const slow = await open(table, mode, level, true, notify);
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
      const compareAndSetMany = store.compareAndSetMany.bind(store);
      store.compareAndSetMany = async (entries) => {
        const result = await compareAndSetMany(entries);
        if (result === "committed") {
          for (const { key, next } of entries) committed.push(`${next.seqno}:${key}`);
        }
        return result;
      };
    }
  }
  try {
    await fn({ slow, fast, park });
    if (notify) {
      // Notifications arrive after their commits: wait for them, bounded.
      for (let i = 0; i < 100 && payloads.length < committed.length; i++) {
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      await new Promise((resolve) => setTimeout(resolve, 50)); // and for any extra one
      assertEquals(payloads.toSorted(), committed.toSorted(), "notifications vs commits");
    }
  } finally {
    await park.release();
    await Promise.all([slow.close(), fast.close(), listener.end()]);
    await park.close();
  }
}

// True while `promise` has not settled after `ms`: the statement is blocked.
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
    `window_${n}_${mode}${notify ? "_notify" : ""}_${level.replace(" ", "_")}`;

  // CAS_FIRST, step 1: the snapshot saw an empty key, and before the
  // insert's conflict check another process commits version 0 and 1 and
  // truncates version 0 away. The parked first write must not land (it
  // did on 0.1.0 at read committed and repeatable read: two writers told
  // "committed" for version 0, and a truncated version back).
  dbTest(
    `window (${tag}): first write parked before its insert while another commits 0, 1 and truncates 0`,
    async () => {
      await windowed(name("first"), mode, level, notify, async ({ slow, fast, park }) => {
        // Parks before the first row the statement inserts: the marker (-1)
        // for the Postgres statement, version 0 for the CockroachDB one and
        // for 0.1.0's. Once past the park, the statement holds the lock
        // shared, so the second point does not stop it again.
        await park.arm({ op: "INSERT", seqno: -1n }, { op: "INSERT", seqno: 0n });
        const parked = slow.compareAndSet("k", { seqno: 0n, data: bytes("SLOW") });
        parked.catch(() => {});
        await park.parked();
        assertEquals(await fast.compareAndSet("k", { seqno: 0n, data: bytes("B0") }), "committed");
        assertEquals(await fast.compareAndSet("k", { seqno: 1n, data: bytes("B1") }), "committed");
        assertEquals(await fast.truncate("k", 1n), 1);
        await park.release();
        assertEquals(await parked, "mismatch", "version 0 was committed twice");
        assertEquals(show(await fast.scan("k", 0n)), "1:B1");
        assertEquals(show(await slow.scan("k", 0n)), "1:B1");
      });
    },
  );

  // CAS_NEXT: the head row is locked and the statement parks before its
  // insert; another process commits the same seqno, the next one, and
  // truncates below it (which must wait for the lock, or win a deadlock).
  dbTest(
    `window (${tag}): next write parked after reading its head while another commits it, the next, and truncates`,
    async () => {
      await windowed(name("next"), mode, level, notify, async ({ slow, fast, park }) => {
        for (const seqno of [0n, 1n]) {
          const result = await fast.compareAndSet("k", { seqno, data: bytes(`B${seqno}`) });
          assertEquals(result, "committed");
        }
        await park.arm({ op: "INSERT", seqno: 2n });
        const parked = slow.compareAndSet("k", { seqno: 2n, data: bytes("SLOW") });
        parked.catch(() => {});
        await park.parked();
        assertEquals(await fast.compareAndSet("k", { seqno: 2n, data: bytes("B2") }), "committed");
        assertEquals(await fast.compareAndSet("k", { seqno: 3n, data: bytes("B3") }), "committed");
        const truncated = fast.truncate("k", 3n);
        truncated.catch(() => {});
        if (mode === "postgres") {
          // The parked statement holds row 1 FOR KEY SHARE: the truncate waits.
          assert(await stillPending(truncated, 200), "truncate deleted a row under a CAS's lock");
        }
        await park.release();
        assertEquals(await parked, "mismatch", "version 2 was committed twice");
        assertEquals(await truncated, 3);
        assertEquals(show(await slow.scan("k", 0n)), "3:B3");
      });
    },
  );

  // TRUNCATE: parked in the middle of its deletes, after its snapshot;
  // another process commits two versions and truncates further, over rows
  // the parked truncate deletes. Counts must add up, the head must survive.
  dbTest(
    `window (${tag}): truncate parked mid-delete while another commits and truncates further`,
    async () => {
      await windowed(name("truncate"), mode, level, notify, async ({ slow, fast, park }) => {
        for (const seqno of [0n, 1n, 2n, 3n]) {
          const result = await fast.compareAndSet("k", { seqno, data: bytes(`B${seqno}`) });
          assertEquals(result, "committed");
        }
        await park.arm({ op: "DELETE", seqno: 1n });
        const parked = slow.truncate("k", 2n);
        parked.catch(() => {});
        await park.parked();
        assertEquals(await fast.compareAndSet("k", { seqno: 4n, data: bytes("B4") }), "committed");
        assertEquals(await fast.compareAndSet("k", { seqno: 5n, data: bytes("B5") }), "committed");
        const further = fast.truncate("k", 5n);
        further.catch(() => {});
        await park.release();
        const [first, second] = [await parked, await further];
        assertEquals(first + second, 5, `deleted ${first} + ${second}, expected 5 in all`);
        assertEquals(show(await fast.scan("k", 0n)), "5:B5");
        assertEquals((await slow.head("k"))?.seqno, 5n);
      });
    },
  );

  // CAS_MANY, first-write entry: the same window as the single first write,
  // with a second key in the same call that must stay untouched.
  dbTest(
    `window (${tag}): compareAndSetMany parked before its first write while another commits 0, 1 and truncates 0`,
    async () => {
      await windowed(name("many_first"), mode, level, notify, async ({ slow, fast, park }) => {
        assertEquals(await fast.compareAndSet("y", { seqno: 0n, data: bytes("Y0") }), "committed");
        await park.arm({ op: "INSERT", seqno: -1n }, { op: "INSERT", seqno: 0n });
        const parked = slow.compareAndSetMany!([
          { key: "x", next: { seqno: 0n, data: bytes("SLOW") } },
          { key: "y", next: { seqno: 1n, data: bytes("SLOW") } },
        ]);
        parked.catch(() => {});
        await park.parked();
        assertEquals(await fast.compareAndSet("x", { seqno: 0n, data: bytes("B0") }), "committed");
        assertEquals(await fast.compareAndSet("x", { seqno: 1n, data: bytes("B1") }), "committed");
        assertEquals(await fast.truncate("x", 1n), 1);
        await park.release();
        assertEquals(await parked, "mismatch", "version 0 of x was committed twice");
        assertEquals(show(await fast.scan("x", 0n)), "1:B1");
        assertEquals(show(await fast.scan("y", 0n)), "0:Y0", "y was written by a mismatch");
      });
    },
  );

  // CAS_MANY, next-write entries: parked before inserting x's version 2
  // with x's head locked; another process commits x 2 and 3 and truncates.
  dbTest(
    `window (${tag}): compareAndSetMany parked before its next write while another commits it and truncates`,
    async () => {
      await windowed(name("many_next"), mode, level, notify, async ({ slow, fast, park }) => {
        for (const seqno of [0n, 1n]) {
          assertEquals(
            await fast.compareAndSet("x", { seqno, data: bytes(`X${seqno}`) }),
            "committed",
          );
        }
        assertEquals(await fast.compareAndSet("y", { seqno: 0n, data: bytes("Y0") }), "committed");
        await park.arm({ op: "INSERT", seqno: 2n });
        const parked = slow.compareAndSetMany!([
          { key: "x", next: { seqno: 2n, data: bytes("SLOW") } },
          { key: "y", next: { seqno: 1n, data: bytes("SLOW") } },
        ]);
        parked.catch(() => {});
        await park.parked();
        assertEquals(await fast.compareAndSet("x", { seqno: 2n, data: bytes("B2") }), "committed");
        assertEquals(await fast.compareAndSet("x", { seqno: 3n, data: bytes("B3") }), "committed");
        const truncated = fast.truncate("x", 3n);
        truncated.catch(() => {});
        if (mode === "postgres") {
          assert(await stillPending(truncated, 200), "truncate deleted a row under a lock");
        }
        await park.release();
        assertEquals(await parked, "mismatch", "version 2 of x was committed twice");
        assertEquals(await truncated, 3);
        assertEquals(show(await slow.scan("x", 0n)), "3:B3");
        assertEquals(show(await slow.scan("y", 0n)), "0:Y0", "y was written by a mismatch");
      });
    },
  );

  if (mode === "postgres") {
    // CAS_FIRST, steps 1 and 3: parked after its marker is inserted; a
    // competing first write must wait for it and then lose.
    dbTest(
      `window (${tag}): first write parked after its marker; a competing first write waits and loses`,
      async () => {
        await windowed(name("marker"), mode, level, notify, async ({ slow, fast, park }) => {
          await park.arm({ op: "INSERT", seqno: 0n });
          const parked = slow.compareAndSet("k", { seqno: 0n, data: bytes("SLOW") });
          parked.catch(() => {});
          await park.parked();
          const competing = fast.compareAndSet("k", { seqno: 0n, data: bytes("B0") });
          competing.catch(() => {});
          assert(await stillPending(competing, 200), "a first write passed an uncommitted marker");
          await park.release();
          assertEquals(await parked, "committed");
          assertEquals(await competing, "mismatch", "version 0 was committed twice");
          assertEquals(show(await fast.scan("k", 0n)), "0:SLOW");
        });
      },
    );

    // CAS_FIRST, step 2: a key seeded without a marker (a table written
    // before markers, or by Materialize), its version 0 truncated away. A
    // first write must still see the key's versions and lose.
    dbTest(
      `window (${tag}): a first write on a key seeded without a marker mismatches`,
      async () => {
        await windowed(name("legacy"), mode, level, notify, async ({ slow }) => {
          const admin = connect({ max: 1 });
          await admin.unsafe(
            `INSERT INTO "${name("legacy")}" (shard, sequence_number, data) ` +
              `VALUES ('k', 3, '\\x33'), ('k', 4, '\\x34')`,
          );
          await admin.end();
          assertEquals(await slow.compareAndSet("k", { seqno: 0n, data: bytes("X") }), "mismatch");
          assertEquals(await slow.compareAndSet("k", { seqno: 5n, data: bytes("5") }), "committed");
          assertEquals(show(await slow.scan("k", 0n)), "3:3 4:4 5:5");
        });
      },
    );
  }
}

// The CockroachDB statements lean on SERIALIZABLE; below it open refuses
// them, whatever the server (on Postgres they commit a seqno twice there).
for (const level of ["read committed", "repeatable read"] as const) {
  dbTest(`window: the CockroachDB statements are refused at ${level}`, async () => {
    const table = `window_refused_${level.replace(" ", "_")}`;
    await freshTable(table);
    const error = await assertRejects(
      () => open(table, "cockroach", level, false),
      ConsensusError,
    ) as ConsensusError;
    assertEquals(error.determinate, true);
    assertStringIncludes(error.message, `"${level}"`);
    assertStringIncludes(error.message, "default_transaction_isolation");
  });
}
