// Hostile input against a real Postgres, beyond what postgres_test.ts ("bad
// input sends nothing and leaves the table unchanged", quoted table and
// schema names) and the conformance suite (argument types and ranges, SQL
// characters in keys) cover: SQL in the table-name option and in keys,
// checked byte for byte on the server; keys and payloads at their limits;
// and the same store and pool still working after every rejection.
import { assert, assertEquals, assertRejects } from "@std/assert";
import { MAX_DATA_BYTES, MAX_KEY_BYTES, PostgresConsensus } from "../mod.ts";
import { fromPostgresJs } from "../src/adapters/postgres_js.ts";
import { dropAndRecreate } from "../src/testing/mod.ts";
import { connect, dbTest } from "./_db.ts";

const encoder = new TextEncoder();
const bytes = (text: string) => encoder.encode(text);

// The table names an attacker would try in a configurable option: each is
// either refused with a RangeError before any SQL, or taken as one literal
// identifier, leaving every other table alone.
const HOSTILE_TABLES = [
  `x"; DROP TABLE hostile_canary; --`,
  `x'; DROP TABLE hostile_canary; --`,
  `hostile_canary" (shard text); --`,
  `$1`,
  `x\\"y`,
  `"`,
  `""`,
  `a.b`,
  `pg_catalog.pg_class`,
  `hostile ${"\u{1F511}"} table`,
];

dbTest(
  "hostile input: SQL in the table-name option is one literal identifier, or refused",
  async () => {
    const admin = connect({ max: 1 });
    try {
      await admin.unsafe("DROP TABLE IF EXISTS hostile_canary");
      await admin.unsafe("CREATE TABLE hostile_canary (n int)");
      await admin.unsafe("INSERT INTO hostile_canary VALUES (42)");
      for (const table of HOSTILE_TABLES) {
        const store = await PostgresConsensus.open(
          fromPostgresJs(connect({ max: 1 }), { owned: true }),
          { table },
        );
        try {
          await dropAndRecreate(store);
          assertEquals(
            await store.compareAndSet("k", { seqno: 0n, data: bytes(table) }),
            "committed",
          );
          assertEquals((await store.head("k"))?.data, bytes(table));
          const rows = await admin`SELECT count(*)::int AS n FROM information_schema.tables
                                 WHERE table_schema = current_schema() AND table_name = ${table}`;
          assertEquals(
            rows[0].n,
            1,
            `table ${JSON.stringify(table)} exists under its literal name`,
          );
        } finally {
          await dropAndRecreate(store).catch(() => {});
          await admin.unsafe(`DROP TABLE IF EXISTS "${table.replaceAll('"', '""')}"`);
          await store.close();
        }
      }
      assertEquals((await admin`SELECT n FROM hostile_canary`)[0].n, 42, "canary untouched");

      for (const table of ["", "a\u0000b", "\ud800", "x".repeat(64), "\u00e9".repeat(32)]) {
        const sql = connect({ max: 1 });
        try {
          await assertRejects(
            () => PostgresConsensus.open(fromPostgresJs(sql), { table }),
            RangeError,
            "Cannot open consensus",
          );
          // The caller's pool is still usable.
          assertEquals((await sql`SELECT 1 AS one`)[0].one, 1);
        } finally {
          await sql.end();
        }
      }
    } finally {
      await admin.unsafe("DROP TABLE IF EXISTS hostile_canary");
      await admin.end();
    }
  },
);

dbTest("hostile input: SQL and LIKE characters in keys are stored byte for byte", async () => {
  const sql = connect({ max: 2 });
  const store = await PostgresConsensus.open(fromPostgresJs(sql, { owned: true }), {
    table: "hostile_keys",
  });
  await dropAndRecreate(store);
  const admin = connect({ max: 1 });
  try {
    const keys = [
      "'; DROP TABLE hostile_keys; --",
      '"; DELETE FROM hostile_keys; --',
      "$1",
      "%",
      "_",
      "\\",
      "a%b_c\\d",
      "\u{1F511}\u200b\ufeff",
      " leading and trailing ",
      "line\nbreak\ttab\r",
    ];
    for (const key of keys) {
      assertEquals(await store.compareAndSet(key, { seqno: 0n, data: bytes(key) }), "committed");
    }
    const stored = await admin`SELECT shard, sequence_number::int AS seqno, data FROM hostile_keys
                               ORDER BY shard COLLATE "C", sequence_number`;
    // Each first write stored version 0 and the key's first-write marker
    // (seqno -1, empty), both under the key byte for byte, and nothing else.
    const versions = stored.filter((r) => r.seqno === 0);
    const markers = stored.filter((r) => r.seqno === -1);
    assertEquals(stored.length, versions.length + markers.length, "only versions and markers");
    assertEquals(versions.map((r) => r.shard), [...keys].sort());
    for (const row of versions) assertEquals(new Uint8Array(row.data), bytes(row.shard));
    assertEquals(markers.map((r) => r.shard), [...keys].sort());
    for (const row of markers) assertEquals(new Uint8Array(row.data), new Uint8Array());
    const listed: string[] = [];
    for await (const key of store.listKeys()) listed.push(key);
    assertEquals(listed.sort(), [...keys].sort());
    // "%" and "_" match only themselves, never as patterns.
    assertEquals((await store.head("%"))?.data, bytes("%"));
    assertEquals(await store.head("%%"), undefined);
    assertEquals(await store.truncate("_", 0n), 0);
    assertEquals((await store.scan("a%b_c\\d", 0n)).length, 1);
  } finally {
    await store.close();
    await admin.end();
  }
});

dbTest(
  "hostile input: keys and payloads at their limits round-trip; one past is refused; the pool lives on",
  async () => {
    const sql = connect({ max: 1 });
    const store = await PostgresConsensus.open(fromPostgresJs(sql, { owned: true }), {
      table: "hostile_limits",
    });
    await dropAndRecreate(store);
    try {
      // The longest key, in 4-byte characters, and the largest payload,
      // holding every byte value.
      const key = "\u{1F511}".repeat(MAX_KEY_BYTES / 4);
      assertEquals(encoder.encode(key).length, MAX_KEY_BYTES);
      const big = new Uint8Array(MAX_DATA_BYTES);
      for (let i = 0; i < big.length; i++) big[i] = (i * 7919) & 0xff;
      assertEquals(await store.compareAndSet(key, { seqno: 0n, data: big }), "committed");
      const head = await store.head(key);
      assertEquals(head?.seqno, 0n);
      assert(head !== undefined && head.data.length === big.length);
      assert(head.data.every((b, i) => b === big[i]), "payload round-trips byte for byte");

      // One past each limit is refused before any I/O, and the same store,
      // on its single connection, goes on working after each refusal.
      const refusals: (() => Promise<unknown>)[] = [
        () => store.compareAndSet(key + "x", { seqno: 1n, data: bytes("x") }),
        () => store.compareAndSet("k", { seqno: 0n, data: new Uint8Array(MAX_DATA_BYTES + 1) }),
        () => store.head("\u{1F511}".repeat(MAX_KEY_BYTES / 4) + "\u00e9"),
        () => store.scan("a\u0000", 0n),
        () => store.truncate("\udfff", 0n),
      ];
      for (const [i, refuse] of refusals.entries()) {
        await assertRejects(refuse, RangeError, "Cannot ");
        assertEquals(
          await store.compareAndSet("after", { seqno: BigInt(i), data: bytes(`after ${i}`) }),
          "committed",
        );
      }
      assertEquals((await store.head("after"))?.seqno, BigInt(refusals.length - 1));
      assertEquals((await store.scan(key, 0n)).length, 1, "the big version is still there");
    } finally {
      await store.close();
    }
  },
);
