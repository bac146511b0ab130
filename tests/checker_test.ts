// The linearizability checker on handcrafted histories whose verdict is
// known, and on histories recorded from the in-memory reference store (always
// linearizable) and from deliberately broken stores (never, under load).
import { assert, assertEquals } from "@std/assert";
import { checkHistory } from "../torture/checker.ts";
import type { Entry, Op, Outcome, Version } from "../torture/history.ts";
import {
  LaggyReadConsensus,
  SplitStatementConsensus,
  YieldingMemoryConsensus,
} from "../torture/broken.ts";
import { connect, dbTest } from "./_db.ts";
import { MemoryConsensus } from "../mod.ts";
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
