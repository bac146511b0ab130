// The counts the campaign reports for watchers and lease contenders
// (torture/coordination.ts): the watch checker tells gaps, duplicates and
// reordering apart and counts each, counts legal and illegal truncation
// errors, and takes store failures and early leaves as legal ends; the
// lease checker counts overlaps and falling tokens.
import { assert, assertEquals } from "@std/assert";
import type { Entry, Op, Outcome } from "../torture/history.ts";
import { checkTenures, type Tenure } from "../torture/lease_checker.ts";
import { checkWatches, type WatchRecord } from "../torture/watch_checker.ts";

let id = 0;
const committed: Outcome = { type: "ok", value: "committed" };
function entry(op: Op, outcome: Outcome, call: number): Entry {
  return { id: id++, process: 0, key: "k", op, call, ret: call + 1, outcome };
}
// Versions 0..5 written at times 0..50; a truncate to 3 at time 55.
const writes = [0n, 1n, 2n, 3n, 4n, 5n].map((s) =>
  entry({ kind: "cas", seqno: s, data: `d${s}` }, committed, Number(s) * 10)
);
const truncate = entry({ kind: "truncate", seqno: 3n }, { type: "ok", value: 3 }, 55);
const seen = (...seqnos: bigint[]) =>
  seqnos.map((seqno) => ({ seqno, data: `d${seqno}`, at: 100 + Number(seqno) }));
const watcher = (n: number, overrides: Partial<WatchRecord>): WatchRecord => ({
  watcher: n,
  key: "k",
  from: 0n,
  started: 5,
  versions: seen(0n, 1n, 2n, 3n, 4n, 5n),
  end: { type: "stopped" },
  ...overrides,
});
const heads = new Map([["k", 5n]]);

Deno.test("watch checker counts: gaps, duplicates and out-of-order apart", () => {
  const result = checkWatches(writes, [
    watcher(0, { versions: seen(0n, 1n, 4n, 5n) }), // 2 and 3 skipped
    watcher(1, { versions: seen(0n, 1n, 1n, 2n, 3n, 3n, 4n, 5n) }), // 1 and 3 twice
    watcher(2, { versions: seen(0n, 2n, 1n, 3n, 4n, 5n) }), // 1 after 2
    watcher(3, { from: 1n, versions: seen(2n, 3n, 4n, 5n) }), // 1 skipped at the start
  ], heads);
  assertEquals(
    [result.gaps, result.duplicates, result.outOfOrder],
    [3, 2, 1],
    JSON.stringify(result.violations),
  );
  assertEquals(result.violations.map((v) => [v.watcher, v.kind]), [
    [0, "gap"],
    [1, "duplicate"],
    [2, "out-of-order"],
    [3, "gap"],
  ]);
});

Deno.test("watch checker counts: legal and illegal truncation errors; failed and left are legal", () => {
  const result = checkWatches([...writes, truncate], [
    // Legal: expected 2, named 2, a truncate to 3 began before.
    watcher(0, { versions: seen(0n, 1n), end: { type: "truncated", seqno: 2n, at: 200 } }),
    // Illegal: named 1 while it expected 2.
    watcher(1, { versions: seen(0n, 1n), end: { type: "truncated", seqno: 1n, at: 200 } }),
    // Illegal: before any truncate began.
    watcher(2, { versions: seen(0n, 1n), end: { type: "truncated", seqno: 2n, at: 50 } }),
    // A store failure, then the next run from where it stopped: legal.
    watcher(3, { versions: seen(0n, 1n), end: { type: "failed", message: "timed out" } }),
    watcher(4, { from: 2n, versions: seen(2n, 3n, 4n, 5n) }),
    // Left early: no final head to reach.
    watcher(5, { versions: seen(0n, 1n), end: { type: "left" } }),
  ], heads);
  assertEquals([result.truncationsLegal, result.truncationsIllegal, result.failed], [1, 2, 1]);
  assertEquals(result.violations.map((v) => [v.watcher, v.kind]), [
    [1, "truncation"],
    [2, "truncation"],
  ]);
});

Deno.test("lease checker counts: overlaps and token regressions", () => {
  const t = (holder: string, token: bigint, grantedAt: number, endedAt: number): Tenure => ({
    holder,
    token,
    grantedAt,
    lastValidAt: grantedAt,
    endedAt,
  });
  assertEquals(
    checkTenures([t("a", 0n, 0, 10), t("b", 1n, 11, 20), t("c", 2n, 21, 30)]),
    { ok: true, tenures: 3, violations: [], overlaps: 0, tokenRegressions: 0, minGapMs: 1 },
  );
  const verdict = checkTenures([
    t("a", 0n, 0, 10),
    t("b", 2n, 5, 20), // granted while a was valid
    t("c", 1n, 21, 30), // its token fell
  ]);
  assertEquals([verdict.overlaps, verdict.tokenRegressions], [1, 1]);
  assertEquals(verdict.ok, false);
});

Deno.test("watch checker: a run restarted past the final head is complete", () => {
  // After a failure at 5 (the final head) the round watches again from 6.
  const result = checkWatches(writes, [
    watcher(0, { end: { type: "failed", message: "connection lost" } }),
    watcher(1, { from: 6n, versions: [] }),
  ], heads);
  assertEquals(result.violations, []);
  // From 5 with nothing yielded, it fell short of 5.
  const short = checkWatches(writes, [watcher(1, { from: 5n, versions: [] })], heads);
  assertEquals(short.violations.map((v) => v.kind), ["short"]);
});

Deno.test("watch checker: a TruncatedError's available must be where a truncate cut", () => {
  const truncated = (available: bigint) =>
    watcher(0, {
      versions: seen(0n, 1n),
      end: { type: "truncated", seqno: 2n, available, at: 200 },
    });
  // The truncate to 3 began at 55: the log began at 3.
  assertEquals(checkWatches([...writes, truncate], [truncated(3n)]).truncationsLegal, 1);
  // No truncate to 4 ever began; and a log that begins at the named seqno lost nothing.
  for (const available of [4n, 2n]) {
    const result = checkWatches([...writes, truncate], [truncated(available)]);
    assertEquals(result.truncationsIllegal, 1, `available ${available}`);
    assert(result.violations.length > 0 && result.violations.every((v) => v.kind === "truncation"));
  }
});
