// The linearizability checker on handcrafted histories whose verdict is
// known, and on histories recorded from the in-memory reference store (always
// linearizable) and from deliberately broken stores (never, under load).
import { assert, assertEquals } from "@std/assert";
import { checkHistory, describeEntries } from "../torture/checker.ts";
import {
  type Entry,
  History,
  type Op,
  type Outcome,
  payloadText,
  type Version,
} from "../torture/history.ts";
import {
  LaggyReadConsensus,
  NonAtomicManyConsensus,
  SnapshotManyConsensus,
  SnapshotManyPostgres,
  SplitStatementConsensus,
  YieldingMemoryConsensus,
} from "../torture/broken.ts";
import { connect, dbTest } from "./_db.ts";
import { type Consensus, MemoryConsensus, PostgresConsensus } from "../mod.ts";
import { fromPostgresJs } from "../src/adapters/postgres_js.ts";
import { checkManyDurable, type DurableRow } from "../torture/multi_key.ts";
import { runTransfers, seededRandom } from "../torture/transfers.ts";
import { runWorkload } from "../torture/workload.ts";

// A tiny builder: [process, op, call, ret, outcome]; ret null = unknown.
type Row = [number, Op, number, number | null, Outcome];
function history(rows: Row[], key = "k"): Entry[] {
  return rows.map(([process, op, call, ret, outcome], id) => ({
    id,
    process,
    key,
    op,
    call,
    ret: ret ?? Infinity,
    outcome,
  }));
}
const cas = (seqno: number, data: string): Op => ({ kind: "cas", seqno: BigInt(seqno), data });
const head: Op = { kind: "head" };
const scan = (from: number, limit?: number): Op => ({ kind: "scan", from: BigInt(from), limit });
const truncate = (seqno: number): Op => ({ kind: "truncate", seqno: BigInt(seqno) });
const ok = (value: unknown): Outcome => ({ type: "ok", value: value as Version });
const v = (seqno: number, data: string): Version => ({ seqno: BigInt(seqno), data });
const unknown: Outcome = { type: "unknown", message: "connection lost" };
const failed: Outcome = { type: "fail", message: "permission denied" };
const range: Outcome = { type: "range" };
const committed = ok("committed");
const mismatch = ok("mismatch");

function verdict(rows: Row[]): string {
  return checkHistory(history(rows)).status;
}

Deno.test("checker: sequential and overlapping histories that are linearizable", () => {
  assertEquals(
    verdict([
      [0, head, 0, 1, ok(undefined)],
      [0, cas(0, "a"), 2, 3, committed],
      [0, cas(0, "b"), 4, 5, mismatch],
      [0, head, 6, 7, ok(v(0, "a"))],
      [0, cas(1, "c"), 8, 9, committed],
      [0, scan(0), 10, 11, ok([v(0, "a"), v(1, "c")])],
      [0, truncate(1), 12, 13, ok(1)],
      [0, truncate(1), 14, 15, ok(0)],
      [0, scan(0, 5), 16, 17, ok([v(1, "c")])],
      [0, truncate(5), 18, 19, range],
      [0, head, 20, 21, ok(v(1, "c"))],
    ]),
    "ok",
  );
  // Two racers for seqno 0 overlap a read that sees the winner; the read
  // and the loser's mismatch both fit after the winner's commit point.
  assertEquals(
    verdict([
      [0, cas(0, "a"), 0, 10, committed],
      [1, cas(0, "b"), 1, 9, mismatch],
      [2, head, 2, 3, ok(v(0, "a"))],
    ]),
    "ok",
  );
  // A read that overlaps a write may see it or not.
  assertEquals(
    verdict([
      [0, cas(0, "a"), 0, 10, committed],
      [1, head, 1, 2, ok(undefined)],
      [2, head, 3, 4, ok(v(0, "a"))],
    ]),
    "ok",
  );
});

Deno.test("checker: histories that are not linearizable", () => {
  // A read after an acknowledged write misses it (a stale read).
  assertEquals(
    verdict([
      [0, cas(0, "a"), 0, 1, committed],
      [1, head, 2, 3, ok(undefined)],
    ]),
    "violation",
  );
  // Two writers told they committed the same seqno.
  assertEquals(
    verdict([
      [0, cas(0, "a"), 0, 10, committed],
      [1, cas(0, "b"), 1, 9, committed],
    ]),
    "violation",
  );
  // A mismatch when the head was surely the expected one.
  assertEquals(
    verdict([
      [0, cas(0, "a"), 0, 1, committed],
      [1, cas(1, "b"), 2, 3, mismatch],
      [1, head, 4, 5, ok(v(0, "a"))],
    ]),
    "violation",
  );
  // A read that goes backwards: a later read sees an older head.
  assertEquals(
    verdict([
      [0, cas(0, "a"), 0, 10, committed],
      [0, cas(1, "b"), 11, 20, committed],
      [1, head, 12, 13, ok(v(1, "b"))],
      [2, head, 14, 15, ok(v(0, "a"))],
    ]),
    "violation",
  );
  // Truncate deleted the head, or returned a wrong count.
  assertEquals(
    verdict([
      [0, cas(0, "a"), 0, 1, committed],
      [0, truncate(1), 2, 3, ok(1)],
    ]),
    "violation",
  );
  assertEquals(
    verdict([
      [0, cas(0, "a"), 0, 1, committed],
      [0, cas(1, "b"), 2, 3, committed],
      [0, truncate(1), 4, 5, ok(1)],
      [0, scan(0), 6, 7, ok([v(0, "a"), v(1, "b")])],
    ]),
    "violation",
  );
  // RangeError from truncate while the seqno was at or below the head.
  assertEquals(
    verdict([
      [0, cas(0, "a"), 0, 1, committed],
      [0, truncate(0), 2, 3, range],
    ]),
    "violation",
  );
  // A read of a payload nobody wrote.
  assertEquals(verdict([[0, head, 0, 1, ok(v(0, "ghost"))]]), "violation");
});

Deno.test("checker: an unknown outcome that must be assumed applied", () => {
  // The write's connection died, but a later read shows it landed.
  assertEquals(
    verdict([
      [0, cas(0, "a"), 0, null, unknown],
      [1, head, 5, 6, ok(v(0, "a"))],
      [1, cas(1, "b"), 7, 8, committed],
    ]),
    "ok",
  );
  // Without seeing the payload, a committed seqno 1 proves seqno 0 landed.
  assertEquals(
    verdict([
      [0, cas(0, "a"), 0, null, unknown],
      [1, cas(1, "b"), 7, 8, committed],
    ]),
    "ok",
  );
  // It may take effect long after its invocation: after this read.
  assertEquals(
    verdict([
      [0, cas(0, "a"), 0, null, unknown],
      [1, head, 5, 6, ok(undefined)],
      [1, head, 7, 8, ok(v(0, "a"))],
    ]),
    "ok",
  );
  // But not before its invocation.
  assertEquals(
    verdict([
      [1, head, 0, 1, ok(v(0, "a"))],
      [0, cas(0, "a"), 2, null, unknown],
    ]),
    "violation",
  );
  // Once observed, it cannot be undone.
  assertEquals(
    verdict([
      [0, cas(0, "a"), 0, null, unknown],
      [1, head, 5, 6, ok(v(0, "a"))],
      [1, head, 7, 8, ok(undefined)],
    ]),
    "violation",
  );
  // An unknown truncate that a later scan shows happened.
  assertEquals(
    verdict([
      [0, cas(0, "a"), 0, 1, committed],
      [0, cas(1, "b"), 2, 3, committed],
      [1, truncate(1), 4, null, unknown],
      [0, scan(0), 10, 11, ok([v(1, "b")])],
    ]),
    "ok",
  );
});

Deno.test("checker: an unknown outcome that must be assumed not applied", () => {
  // The write never landed: a later write took its seqno.
  assertEquals(
    verdict([
      [0, cas(0, "a"), 0, null, unknown],
      [1, cas(0, "b"), 5, 6, committed],
      [1, head, 7, 8, ok(v(0, "b"))],
    ]),
    "ok",
  );
  // It never happens at all: reads keep seeing the key empty.
  assertEquals(
    verdict([
      [0, cas(0, "a"), 0, null, unknown],
      [1, head, 5, 6, ok(undefined)],
      [1, head, 9, 10, ok(undefined)],
    ]),
    "ok",
  );
  // Determinate failures surely did not happen: a read of one is a violation.
  assertEquals(
    verdict([
      [0, cas(0, "a"), 0, 1, failed],
      [1, head, 5, 6, ok(v(0, "a"))],
    ]),
    "violation",
  );
  // An unknown truncate that did not happen.
  assertEquals(
    verdict([
      [0, cas(0, "a"), 0, 1, committed],
      [0, cas(1, "b"), 2, 3, committed],
      [1, truncate(1), 4, null, unknown],
      [0, scan(0), 10, 11, ok([v(0, "a"), v(1, "b")])],
    ]),
    "ok",
  );
});

Deno.test("checker: keys are independent, and the search budget is reported", () => {
  const a = history([[0, cas(0, "a"), 0, 1, committed], [0, head, 2, 3, ok(v(0, "a"))]], "a");
  const b = history([[1, cas(0, "b"), 0, 1, committed], [1, head, 2, 3, ok(undefined)]], "b")
    .map((e) => ({ ...e, id: e.id + 2 }));
  const result = checkHistory([...a, ...b]);
  assertEquals(result.status, "violation");
  assertEquals(result.keys.find((k) => k.key === "a")?.status, "ok");
  assertEquals(result.keys.find((k) => k.key === "b")?.status, "violation");

  // Many overlapping unknown writes with nothing to pin them down, and a
  // budget far too small: "unknown", not a hang and not a verdict.
  const rows: Row[] = [];
  for (let i = 0; i < 40; i++) rows.push([i, cas(i % 5, `w${i}`), i, null, unknown]);
  rows.push([99, head, 100, 101, ok(v(4, "w39"))]);
  rows.push([99, head, 102, 103, ok(undefined)]);
  const hard = checkHistory(history(rows), { maxSteps: 50 });
  assertEquals(hard.status, "unknown");
});

Deno.test("checker: the reference store's histories are linearizable", async () => {
  for (const keys of [1, 8]) {
    await using store = new MemoryConsensus();
    const { history } = await runWorkload(store, { clients: 16, keys, operations: 6_000 });
    const result = checkHistory(history.entries);
    assertEquals(result.status, "ok", JSON.stringify(result.keys.filter((k) => k.reason)));
    assert(result.ops >= 6_000);
  }
});

Deno.test("checker: deliberately broken stores are caught", async () => {
  {
    await using store = new YieldingMemoryConsensus();
    const { history } = await runWorkload(store, { clients: 16, keys: 1, operations: 3_000 });
    assertEquals(checkHistory(history.entries).status, "violation");
  }
  {
    // Reads served from a copy refreshed every few milliseconds: no two
    // writers ever both commit, only the real-time order is broken, so it
    // takes the search (not the shortcut) to see it.
    await using store = new LaggyReadConsensus(new MemoryConsensus(), 3);
    const { history } = await runWorkload(store, { clients: 16, keys: 1, operations: 3_000 });
    const result = checkHistory(history.entries);
    assertEquals(result.status, "violation");
    assert(
      result.keys.some((k) => k.reason?.startsWith("not linearizable")),
      result.keys[0].reason,
    );
  }
});

dbTest("checker: a Postgres store that reads the head, then inserts, is caught", async () => {
  const sql = connect({ max: 16 });
  try {
    const store = await SplitStatementConsensus.open(sql, "broken_split_statements");
    const { history } = await runWorkload(store, { clients: 16, keys: 1, operations: 3_000 });
    const result = checkHistory(history.entries);
    assertEquals(result.status, "violation");
    console.log(`  ${result.keys[0].reason?.split("\n")[0]}`);
    await sql.unsafe("DROP TABLE broken_split_statements");
  } finally {
    await sql.end();
  }
});

// ---- Compare-and-sets of several keys (torture/multi_key.ts).

// [process, key, op, call, ret, outcome]; ret null = unknown. A casMany's key
// is its first entry's key.
type KeyedRow = [number, string, Op, number, number | null, Outcome];
function keyed(rows: KeyedRow[]): Entry[] {
  return rows.map(([process, key, op, call, ret, outcome], id) => ({
    id,
    process,
    key,
    op,
    call,
    ret: ret ?? Infinity,
    outcome,
  }));
}
const many = (...entries: [string, number, string][]): Op => ({
  kind: "casMany",
  entries: entries.map(([key, seqno, data]) => ({ key, seqno: BigInt(seqno), data })),
});
function verdictOf(rows: KeyedRow[]): { status: string; reasons: string[] } {
  const result = checkHistory(keyed(rows));
  return {
    status: result.status,
    reasons: result.keys.filter((k) => k.reason).map((k) => k.reason!.split("\n")[0]),
  };
}
// Version 0 of a and b, committed by one call before anything else.
const setup: KeyedRow = [9, "a", many(["a", 0, "a0"], ["b", 0, "b0"]), 0, 1, committed];

Deno.test("checker: compareAndSetMany histories that are linearizable", () => {
  // Committed, then seen on both keys.
  assertEquals(
    verdictOf([
      setup,
      [0, "a", head, 2, 3, ok(v(0, "a0"))],
      [0, "a", many(["a", 1, "ma"], ["b", 1, "mb"]), 4, 5, committed],
      [1, "b", head, 6, 7, ok(v(1, "mb"))],
      [1, "a", scan(0), 8, 9, ok([v(0, "a0"), v(1, "ma")])],
    ]).status,
    "ok",
  );
  // A mismatch that one key explains: b's seqno 1 was taken during the call.
  assertEquals(
    verdictOf([
      setup,
      [1, "b", cas(1, "x"), 2, 6, committed],
      [0, "a", many(["a", 1, "ma"], ["b", 1, "mb"]), 3, 5, mismatch],
      [1, "b", head, 7, 8, ok(v(1, "x"))],
      [1, "a", head, 9, 10, ok(v(0, "a0"))],
    ]).status,
    "ok",
  );
  // A mismatch on a stale seqno: a was at 1 before the call.
  assertEquals(
    verdictOf([
      setup,
      [1, "a", cas(1, "y"), 2, 3, committed],
      [0, "a", many(["a", 1, "ma"], ["b", 1, "mb"]), 4, 5, mismatch],
    ]).status,
    "ok",
  );
  // An unknown outcome a read of one key shows, then a read of the other.
  assertEquals(
    verdictOf([
      setup,
      [0, "a", many(["a", 1, "ma"], ["b", 1, "mb"]), 2, null, unknown],
      [1, "b", head, 3, 4, ok(v(0, "b0"))],
      [1, "a", head, 5, 6, ok(v(1, "ma"))],
      [1, "b", head, 7, 8, ok(v(1, "mb"))],
    ]).status,
    "ok",
  );
  // An unknown outcome that never happened: another write took b's seqno, so
  // it is left out on a too.
  assertEquals(
    verdictOf([
      setup,
      [0, "a", many(["a", 1, "ma"], ["b", 1, "mb"]), 2, null, unknown],
      [1, "b", cas(1, "x"), 3, 4, committed],
      [1, "a", cas(1, "y"), 5, 6, committed],
    ]).status,
    "ok",
  );
  // A first write of a fresh key inside a call.
  assertEquals(
    verdictOf([
      setup,
      [0, "a", many(["a", 1, "ma"], ["fresh", 0, "f0"]), 2, 3, committed],
      [1, "fresh", cas(0, "g0"), 4, 5, mismatch],
      [1, "fresh", head, 6, 7, ok(v(0, "f0"))],
    ]).status,
    "ok",
  );
});

Deno.test("checker: compareAndSetMany histories that are not linearizable", () => {
  // A read after the call completed misses one of its keys.
  assertEquals(
    verdictOf([
      setup,
      [0, "a", many(["a", 1, "ma"], ["b", 1, "mb"]), 2, 3, committed],
      [1, "b", head, 4, 5, ok(v(0, "b0"))],
    ]).status,
    "violation",
  );
  // It and a single-key write were both told they committed b's seqno 1.
  const double = verdictOf([
    setup,
    [0, "a", many(["a", 1, "ma"], ["b", 1, "mb"]), 2, 5, committed],
    [1, "b", cas(1, "x"), 3, 4, committed],
  ]);
  assertEquals(double.status, "violation");
  assert(double.reasons.some((r) => r.includes("seqno 1 committed")), double.reasons.join("; "));
  // Told "mismatch" while every condition held throughout the call.
  const held = verdictOf([
    setup,
    [0, "a", many(["a", 1, "ma"], ["b", 1, "mb"]), 2, 3, mismatch],
  ]);
  assertEquals(held.status, "violation");
  assert(held.reasons.some((r) => r.includes("every entry's")), held.reasons.join("; "));
  // Only b's condition could have failed (an unknown write of its seqno 1
  // was in flight), but a mismatch of b's seqno 2 after the call shows b
  // was still at 0 then: that write had not landed, so b cannot explain it.
  const explained: KeyedRow[] = [
    setup,
    [1, "b", cas(1, "w"), 2, null, unknown],
    [0, "a", many(["a", 1, "ma"], ["b", 1, "mb"]), 3, 10, mismatch],
  ];
  assertEquals(verdictOf(explained).status, "ok");
  assertEquals(
    verdictOf([...explained, [2, "b", cas(2, "z"), 11, 12, mismatch]]).status,
    "violation",
  );
  // A read of a payload of a call told "mismatch".
  assertEquals(
    verdictOf([
      setup,
      [1, "b", cas(1, "x"), 2, 6, committed],
      [0, "a", many(["a", 1, "ma"], ["b", 1, "mb"]), 3, 5, mismatch],
      [1, "a", head, 7, 8, ok(v(1, "ma"))],
    ]).status,
    "violation",
  );
  // An unknown outcome a read of a shows, while b's seqno went to another write.
  const half = verdictOf([
    setup,
    [0, "a", many(["a", 1, "ma"], ["b", 1, "mb"]), 2, null, unknown],
    [1, "b", cas(1, "x"), 3, 4, committed],
    [1, "a", head, 5, 6, ok(v(1, "ma"))],
  ]);
  assertEquals(half.status, "violation");
  assert(half.reasons.some((r) => r.includes("some keys only")), half.reasons.join("; "));
  // No single instant: a read of a saw it and completed before a read of b,
  // invoked later, saw b without it. Each key alone is linearizable.
  const skew: KeyedRow[] = [
    setup,
    [0, "a", many(["a", 1, "ma"], ["b", 1, "mb"]), 2, 20, committed],
    [1, "a", head, 5, 6, ok(v(1, "ma"))],
  ];
  assertEquals(verdictOf([...skew, [1, "b", head, 7, 8, ok(v(1, "mb"))]]).status, "ok");
  const skewed = verdictOf([...skew, [1, "b", head, 7, 8, ok(v(0, "b0"))]]);
  assertEquals(skewed.status, "violation");
  assert(skewed.reasons.some((r) => r.includes("no single instant")), skewed.reasons.join("; "));
});

// ---- One order over all keys (torture/global_order.ts): histories that are
// linearizable key by key, where only a single order of every key decides.

function globalVerdict(rows: KeyedRow[]) {
  const result = checkHistory(keyed(rows));
  const perKey = result.keys.filter((k) => k.key !== "(global order)");
  const global = result.keys.find((k) => k.key === "(global order)");
  return { status: result.status, perKey: perKey.map((k) => k.status), global };
}
// Version 0 of a, b and c, committed by one call before anything else.
const setup3: KeyedRow = [
  9,
  "a",
  many(["a", 0, "a0"], ["b", 0, "b0"], ["c", 0, "c0"]),
  0,
  1,
  committed,
];

Deno.test("checker: two transfers applied in opposite orders on two keys are not linearizable", () => {
  // a: A then B; b: B then A. Each key alone is fine, and no single read's
  // bounds cross (rule 4 of multi_key.ts passes): only one order of both
  // keys shows it.
  const { status, perKey, global } = globalVerdict([
    setup,
    [0, "a", many(["a", 1, "Aa"], ["b", 2, "Ab"]), 2, 10, committed],
    [1, "a", many(["a", 2, "Ba"], ["b", 1, "Bb"]), 2, 10, committed],
    [2, "a", head, 11, 12, ok(v(2, "Ba"))],
    [2, "b", head, 13, 14, ok(v(2, "Ab"))],
  ]);
  assertEquals(perKey, ["ok", "ok"], "each key alone is linearizable");
  assertEquals(status, "violation");
  assertEquals(global?.status, "violation");
  assert(global?.reason?.startsWith("no single order"), global?.reason);
  assertEquals(global?.witness?.map((e) => e.id).sort(), [1, 2]);
  assertEquals(global?.keys, ["a", "b"]);
});

Deno.test("checker: a cycle through real time and two transfers is not linearizable", () => {
  // A (a, b) precedes B (b, c) on b; a read of c sees B, and a read of a
  // that starts after it ends does not see A yet: B, the reads, A, B.
  const { status, perKey, global } = globalVerdict([
    setup3,
    [0, "a", many(["a", 1, "Aa"], ["b", 1, "Ab"]), 2, 20, committed],
    [1, "b", many(["b", 2, "Bb"], ["c", 1, "Bc"]), 2, 20, committed],
    [2, "c", head, 3, 4, ok(v(1, "Bc"))],
    [2, "a", head, 5, 6, ok(v(0, "a0"))],
  ]);
  assertEquals(perKey, ["ok", "ok", "ok"], "each key alone is linearizable");
  assertEquals(status, "violation");
  assertEquals(global?.status, "violation");
  assertEquals(global?.witness?.map((e) => e.id).sort(), [1, 2, 3, 4]);
  // The same with the two reads overlapping: the read of a can come first,
  // then A, B and the read of c, all inside the calls.
  const overlapping = globalVerdict([
    setup3,
    [0, "a", many(["a", 1, "Aa"], ["b", 1, "Ab"]), 2, 20, committed],
    [1, "b", many(["b", 2, "Bb"], ["c", 1, "Bc"]), 2, 20, committed],
    [2, "c", head, 3, 5, ok(v(1, "Bc"))],
    [3, "a", head, 4, 6, ok(v(0, "a0"))],
  ]);
  assertEquals(overlapping.global?.status, "ok", overlapping.global?.reason);
  assertEquals(overlapping.status, "ok");
});

Deno.test("checker: transfers that fit one order over all keys are accepted", () => {
  const accepted = (rows: KeyedRow[]) => {
    const { status, global } = globalVerdict(rows);
    assertEquals(global?.status, "ok", global?.reason);
    assertEquals(status, "ok");
  };
  // A then B, seen in that order on every key.
  accepted([
    setup3,
    [0, "a", many(["a", 1, "Aa"], ["b", 1, "Ab"]), 2, 10, committed],
    [1, "b", many(["b", 2, "Bb"], ["c", 1, "Bc"]), 3, 12, committed],
    [2, "c", head, 4, 5, ok(v(0, "c0"))],
    [2, "a", head, 6, 7, ok(v(1, "Aa"))],
    [2, "c", head, 13, 14, ok(v(1, "Bc"))],
    [3, "b", scan(0), 15, 16, ok([v(0, "b0"), v(1, "Ab"), v(2, "Bb")])],
  ]);
  // A transfer and a concurrent write of another key, each seen by one
  // reader before the other's.
  accepted([
    setup3,
    [0, "a", many(["a", 1, "Aa"], ["b", 1, "Ab"]), 2, 10, committed],
    [1, "c", many(["c", 1, "Cc"]), 2, 10, committed],
    [2, "a", head, 3, 4, ok(v(1, "Aa"))],
    [2, "c", head, 5, 6, ok(v(0, "c0"))],
    [3, "c", head, 7, 8, ok(v(1, "Cc"))],
    [3, "b", head, 11, 12, ok(v(1, "Ab"))],
  ]);
  // A truncate of a invoked just after a transfer and placed after it by a's
  // search, which real time through a read of b puts before it: truncates
  // need only the write of their seqno before them, not the order chosen.
  accepted([
    setup,
    [1, "a", cas(1, "a1"), 2, 3, committed],
    [0, "a", many(["a", 2, "Ca"], ["b", 1, "Cb"]), 10, 20, committed],
    [2, "a", truncate(1), 10.5, 12, ok(1)],
    [3, "b", head, 13, 14, ok(v(0, "b0"))],
    [3, "a", head, 21, 22, ok(v(2, "Ca"))],
  ]);
  // An unknown call that a's search must apply (a blind write of a's seqno
  // 2 committed) and b's search had no need for (an unknown write of b
  // took its place): decided jointly, it committed on both.
  accepted([
    setup,
    [1, "b", cas(1, "y"), 1.5, null, unknown],
    [0, "a", many(["a", 1, "Ca"], ["b", 1, "Cb"]), 2, null, unknown],
    [2, "a", cas(2, "x"), 3, 4, committed],
  ]);
  // A mismatch that one key explains, with a single-key write between two
  // transfers, and a truncate.
  accepted([
    setup,
    [0, "a", many(["a", 1, "Aa"], ["b", 1, "Ab"]), 2, 4, committed],
    [1, "b", cas(2, "x"), 5, 8, committed],
    [0, "a", many(["a", 2, "Ba"], ["b", 2, "Bb"]), 6, 7, mismatch],
    [2, "a", truncate(1), 9, 10, ok(1)],
    [2, "b", head, 11, 12, ok(v(2, "x"))],
  ]);
});

Deno.test("checker: a mismatch two keys could explain needs a point of the order where one does", () => {
  // Setup of a, b, c and d at version 0.
  const setup4: KeyedRow = [
    9,
    "a",
    many(["a", 0, "a0"], ["b", 0, "b0"], ["c", 0, "c0"], ["d", 0, "d0"]),
    0,
    1,
    committed,
  ];
  // Explained: a's seqno 1 was taken inside the call.
  const explained = globalVerdict([
    setup4,
    [0, "a", many(["a", 1, "Ma"], ["b", 1, "Mb"]), 2, 10, mismatch],
    [1, "a", cas(1, "x"), 3, 4, committed],
    [2, "b", cas(1, "y"), 3, 11, committed],
  ]);
  assertEquals(explained.global?.status, "ok", explained.global?.reason);
  // Not explained: a's and b's seqno 1 were taken by calls that reads of c
  // and d, invoked after the mismatch returned, show had not happened yet.
  // Each key alone could explain it (nothing read a or b), so only the order
  // of all keys shows both heads at seqno - 1 throughout the call.
  const unexplained = globalVerdict([
    setup4,
    [0, "a", many(["a", 1, "Ma"], ["b", 1, "Mb"]), 2, 10, mismatch],
    [1, "a", many(["a", 1, "Ca"], ["c", 1, "Cc"]), 5, 20, committed],
    [2, "b", many(["b", 1, "Yb"], ["d", 1, "Yd"]), 5, 20, committed],
    [3, "c", head, 11, 12, ok(v(0, "c0"))],
    [4, "d", head, 11, 12, ok(v(0, "d0"))],
  ]);
  assertEquals(unexplained.perKey, ["ok", "ok", "ok", "ok"]);
  assertEquals(unexplained.global?.status, "unknown", "never ok");
  assert(unexplained.global?.reason?.includes("#1 was told"), unexplained.global?.reason);
});

Deno.test("checker: compareAndSetMany in the durable state, all or nothing", () => {
  const entries = keyed([
    setup,
    [0, "a", many(["a", 1, "ma"], ["b", 1, "mb"]), 2, 3, committed],
    [1, "a", many(["a", 2, "ua"], ["b", 2, "ub"]), 4, null, unknown],
    [2, "a", many(["a", 2, "xa"], ["c", 0, "xc"]), 5, 6, mismatch],
  ]);
  const row = (key: string, seqno: number, data: string) => ({ key, seqno: BigInt(seqno), data });
  const check = (rows: ReturnType<typeof row>[]) =>
    checkManyDurable(entries, rows).map((v) => v.reason);
  // Whole: the unknown one landed on both keys, or on neither.
  const base = [row("a", 0, "a0"), row("a", 1, "ma"), row("b", 0, "b0"), row("b", 1, "mb")];
  assertEquals(check([...base, row("a", 2, "ua"), row("b", 2, "ub")]), []);
  assertEquals(check(base), []);
  // Markers (seqno -1) are not versions.
  assertEquals(check([...base, row("c", -1, "")]), []);
  // Truncated away since: either way.
  assertEquals(check([row("a", 2, "ua"), row("b", 3, "other")]), []);
  // Half of the unknown one.
  assert(check([...base, row("a", 2, "ua")])[0].includes("lacks b seqno 2"));
  // A committed one lost an entry.
  assert(check([row("a", 0, "a0"), row("a", 1, "ma"), row("b", 0, "b0")])[0].includes("told"));
  // A payload of the mismatched one, anywhere.
  assert(check([...base, row("c", 0, "xc")])[0].includes("mismatch"));
});

// A store's rows, as the durable check reads them.
async function rowsOf(store: Consensus): Promise<DurableRow[]> {
  const rows: DurableRow[] = [];
  for await (const key of store.listKeys()) {
    for (const v of await store.scan(key, 0n)) {
      rows.push({ key, seqno: v.seqno, data: payloadText(v.data) });
    }
  }
  return rows;
}

// Records the setup call (version 0 of a and b) and one compareAndSetMany of
// a and b at seqno 1, with `between` recording what the test runs inside it.
async function oneCall(
  store: Consensus,
  history: History,
): Promise<Outcome> {
  const setupCall = await history.runMany(store, 9, [
    { key: "a", seqno: 0n, data: "a0" },
    { key: "b", seqno: 0n, data: "b0" },
  ]);
  assertEquals(setupCall, committed);
  return await history.runMany(store, 0, [
    { key: "a", seqno: 1n, data: "ma" },
    { key: "b", seqno: 1n, data: "mb" },
  ]);
}

Deno.test("checker: a compareAndSetMany applied one entry at a time is caught", async () => {
  {
    // Between a and b, a reader sees a written, then b not yet.
    const history = new History();
    const inner = new MemoryConsensus();
    const store = new NonAtomicManyConsensus(inner, async () => {
      await history.run(inner, 1, "a", { kind: "head" });
      await history.run(inner, 1, "b", { kind: "head" });
    });
    assertEquals(await oneCall(store, history), committed);
    const result = checkHistory(history.entries);
    assertEquals(result.status, "violation");
    assert(
      result.keys.some((k) => k.reason?.includes("no single instant")),
      describeEntries(history.entries),
    );
  }
  {
    // Between a and b, another writer takes b's seqno: a mismatch that left
    // a written, in reads and in the table.
    const history = new History();
    const inner = new MemoryConsensus();
    const store = new NonAtomicManyConsensus(inner, async () => {
      await history.run(inner, 1, "b", { kind: "cas", seqno: 1n, data: "x" });
      await history.run(inner, 1, "a", { kind: "head" });
    });
    assertEquals(await oneCall(store, history), mismatch);
    assertEquals(checkHistory(history.entries).status, "violation");
    const durable = checkManyDurable(history.entries, await rowsOf(inner));
    assert(
      durable.some((v) => v.reason.includes('"mismatch"')),
      durable.map((v) => v.reason).join("; "),
    );
  }
});

Deno.test("checker: a compareAndSetMany checked on a snapshot, without locks, is caught", async () => {
  // Between the check and the writes, another writer takes a's seqno 1.
  const history = new History();
  const store: SnapshotManyConsensus = new SnapshotManyConsensus(async () => {
    await history.run(store, 1, "a", { kind: "cas", seqno: 1n, data: "x" });
  });
  assertEquals(await oneCall(store, history), committed);
  const result = checkHistory(history.entries);
  assertEquals(result.status, "violation");
  assert(result.keys.some((k) => k.reason?.includes("seqno 1 committed")), result.keys[0].reason);
});

Deno.test("checker: broken compareAndSetMany stores are caught under the transfer workload", async () => {
  // Fixed seeds: the same mix every run. The reference store passes the
  // same workload.
  const run = async (store: Consensus, seed: number) => {
    const { history } = await runTransfers([store], {
      operations: 3_000,
      durationMs: 10_000,
      random: seededRandom(seed),
      transferersPerStore: 8,
      writersPerStore: 4,
      truncatorsPerStore: 2,
    });
    return {
      verdict: checkHistory(history.entries).status,
      durable: checkManyDurable(history.entries, await rowsOf(store)).length,
    };
  };
  for (const seed of [1, 2, 3]) {
    assertEquals(await run(new MemoryConsensus(), seed), { verdict: "ok", durable: 0 }, "memory");
    const nonAtomic = await run(new NonAtomicManyConsensus(new MemoryConsensus()), seed);
    assertEquals(nonAtomic.verdict, "violation", "one entry at a time");
    assert(nonAtomic.durable > 0, "one entry at a time: the table shows it too");
    assertEquals((await run(new SnapshotManyConsensus(), seed)).verdict, "violation", "snapshot");
  }
});

dbTest("checker: a Postgres compareAndSetMany that trusts an unlocked read is caught", async () => {
  const sql = connect({ max: 16 });
  const table = "many_broken_snapshot";
  try {
    await sql.unsafe(`DROP TABLE IF EXISTS ${table}`);
    const open = () => PostgresConsensus.open(fromPostgresJs(sql), { table, engine: "postgres" });
    {
      // Between its read and its insert, another store commits a's seqno 1.
      const other = await open();
      const history = new History();
      const store = new SnapshotManyPostgres(await open(), sql, table, async () => {
        await history.run(other, 1, "a", { kind: "cas", seqno: 1n, data: "x" });
      });
      assertEquals(await oneCall(store, history), committed);
      const result = checkHistory(history.entries);
      assertEquals(result.status, "violation");
      const rows = await sql.unsafe(
        `SELECT shard, sequence_number, data FROM ${table} WHERE sequence_number >= 0`,
      );
      const durable = checkManyDurable(
        history.entries,
        rows.map((r) => ({
          key: r.shard,
          seqno: BigInt(r.sequence_number),
          data: payloadText(r.data),
        })),
      );
      assert(
        durable.some((v) => v.reason.includes("lacks a seqno 1")),
        durable.map((v) => v.reason).join("; "),
      );
      console.log(`  ${result.keys.find((k) => k.status === "violation")?.reason?.split("\n")[0]}`);
    }
    {
      // Racing, with no help: 4 stores of 4 transferers, writers and truncators.
      await sql.unsafe(`DROP TABLE IF EXISTS ${table}`);
      const stores = [];
      for (let i = 0; i < 4; i++) stores.push(new SnapshotManyPostgres(await open(), sql, table));
      const { history } = await runTransfers(stores, {
        operations: 2_000,
        durationMs: 20_000,
        transferersPerStore: 4,
        random: seededRandom(11),
      });
      const result = checkHistory(history.entries);
      assertEquals(result.status, "violation");
      console.log(`  ${result.keys.find((k) => k.status === "violation")?.reason?.split("\n")[0]}`);
    }
  } finally {
    await sql.unsafe(`DROP TABLE IF EXISTS ${table}`).catch(() => {});
    await sql.end();
  }
});
