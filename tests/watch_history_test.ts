// Watch histories: the checker catches each way a watcher can break its
// promise (on hand-made histories), and short bounded rounds, in memory and
// on Postgres under terminated listening connections and truncation, leave
// it nothing to find, with the writes linearizable too.
import pg from "pg";
import { assert, assertEquals } from "@std/assert";
import { type Consensus, MemoryConsensus, PostgresConsensus } from "../mod.ts";
import { fromNodePostgres, type NodePostgresPool } from "../src/adapters/node_postgres.ts";
import { fromPostgresJs } from "../src/adapters/postgres_js.ts";
import { checkHistory } from "../torture/checker.ts";
import type { Entry, Op, Outcome } from "../torture/history.ts";
import { checkWatches, type WatchRecord } from "../torture/watch_checker.ts";
import { runWatchRound } from "../torture/watch_round.ts";
import { connect, DATABASE_URL, dbTest, freshTable } from "./_db.ts";

let id = 0;
function entry(op: Op, outcome: Outcome, call: number, ret: number, key = "k"): Entry {
  return { id: id++, process: 0, key, op, call, ret, outcome };
}
const committed: Outcome = { type: "ok", value: "committed" };
const cas = (seqno: bigint, data: string, at: number, outcome: Outcome = committed) =>
  entry({ kind: "cas", seqno, data }, outcome, at, at + 1);
// Versions 0..4, written at times 0, 10, 20, 30, 40, payloads "d0".."d4".
const writes = [0n, 1n, 2n, 3n, 4n].map((s) => cas(s, `d${s}`, Number(s) * 10));
const seen = (...seqnos: bigint[]) =>
  seqnos.map((seqno) => ({ seqno, data: `d${seqno}`, at: 100 + Number(seqno) }));
function record(overrides: Partial<WatchRecord>): WatchRecord {
  return {
    watcher: 0,
    key: "k",
    from: 0n,
    started: 5,
    versions: seen(0n, 1n, 2n, 3n, 4n),
    end: { type: "stopped" },
    ...overrides,
  };
}
const heads = new Map([["k", 4n]]);

Deno.test("watch checker: a faithful watcher passes", () => {
  const result = checkWatches(writes, [record({})], heads);
  assertEquals(result.violations, []);
  assertEquals(result.versions, 5);
});

Deno.test("watch checker: catches every broken promise", () => {
  const cases: [string, Entry[], Partial<WatchRecord>, string][] = [
    ["a gap", writes, { versions: seen(0n, 1n, 3n, 4n) }, "yielded 3 after 1"],
    ["a duplicate", writes, { versions: seen(0n, 1n, 1n, 2n, 3n, 4n) }, "yielded 1 after 1"],
    ["out of order", writes, { versions: seen(0n, 2n, 1n, 3n, 4n) }, "yielded 2 after 0"],
    ["the wrong start", writes, { from: 1n }, "started at 0, not at from 1"],
    [
      "an old head as the start",
      writes,
      { from: undefined, started: 25, versions: seen(1n, 2n, 3n, 4n) },
      "below version 2 committed before it started",
    ],
    [
      "a phantom payload",
      writes,
      { versions: [...seen(0n, 1n, 2n, 3n), { seqno: 4n, data: "zz", at: 104 }] },
      "a payload no write of that seqno sent",
    ],
    [
      "a version that lost its race",
      [...writes.slice(0, 4), cas(4n, "d4", 40, { type: "ok", value: "mismatch" })],
      {},
      'a write told "mismatch"',
    ],
    [
      "a version before its write",
      writes,
      { versions: seen(0n, 1n, 2n, 3n).concat({ seqno: 4n, data: "d4", at: 30 }) },
      "before its write was invoked",
    ],
    [
      "stopping short of the head",
      writes,
      { versions: seen(0n, 1n, 2n) },
      "short of the final head 4",
    ],
    [
      "a truncation that never happened",
      writes,
      { versions: seen(0n, 1n), end: { type: "truncated", seqno: 2n, at: 150 } },
      "no truncate above it began",
    ],
    [
      "a truncation naming the wrong seqno",
      [...writes, entry({ kind: "truncate", seqno: 4n }, { type: "ok", value: 3 }, 45, 46)],
      { versions: seen(0n, 1n), end: { type: "truncated", seqno: 3n, at: 150 } },
      "named 3 as truncated, expected 2",
    ],
    ["an error", writes, { end: { type: "error", message: "boom" } }, "ended with an error: boom"],
  ];
  for (const [what, entries, overrides, reason] of cases) {
    const result = checkWatches(entries, [record(overrides)], heads);
    assertEquals(result.status, "violation", what);
    assert(
      result.violations.some((v) => v.reason.includes(reason)),
      `${what}: ${JSON.stringify(result.violations)}`,
    );
  }
  // Two watchers disagreeing on one seqno: only possible with two writes.
  const two = [...writes, cas(4n, "e4", 41, { type: "unknown", message: "lost" })];
  const other = record({
    watcher: 1,
    versions: [...seen(0n, 1n, 2n, 3n), { seqno: 4n, data: "e4", at: 104 }],
  });
  const result = checkWatches(two, [record({}), other], heads);
  assert(
    result.violations.some((v) => v.reason.includes("another watcher saw differently")),
    JSON.stringify(result.violations),
  );
  // A version appended by a compareAndSetMany counts when the call committed, not otherwise.
  const many = (outcome: Outcome) =>
    entry(
      {
        kind: "casMany",
        entries: [{ key: "k", seqno: 4n, data: "d4" }, { key: "j", seqno: 0n, data: "j0" }],
      },
      outcome,
      40,
      41,
    );
  assertEquals(
    checkWatches([...writes.slice(0, 4), many(committed)], [record({})], heads).violations,
    [],
  );
  assert(
    checkWatches(
      [...writes.slice(0, 4), many({ type: "ok", value: "mismatch" })],
      [record({})],
      heads,
    )
      .violations.some((v) => v.reason.includes('told "mismatch"')),
    "a version from a compareAndSetMany that did not commit",
  );
  // A truncation that did happen is no violation.
  const truncated = [
    ...writes,
    entry({ kind: "truncate", seqno: 4n }, { type: "ok", value: 4 }, 45, 46),
  ];
  assertEquals(
    checkWatches(truncated, [
      record({ versions: seen(0n, 1n), end: { type: "truncated", seqno: 2n, at: 150 } }),
    ])
      .violations,
    [],
  );
});

function verify(
  result: Awaited<ReturnType<typeof runWatchRound>>,
  what: string,
): void {
  const watches = checkWatches(result.history.entries, result.watches, result.finalHeads);
  const linear = checkHistory(result.history.entries, { timeoutMs: 60_000 });
  const many =
    result.history.entries.filter((e) =>
      e.op.kind === "casMany" && e.outcome.type === "ok" && e.outcome.value === "committed"
    ).length;
  console.log(
    `  ${what}: ${result.history.entries.length} operations, ${watches.watchers} watcher runs, ` +
      `${watches.versions} versions yielded, ${result.truncations} truncation restarts, ` +
      `${result.faults} faults, ${many} compareAndSetMany commits; heads ${
        [...result.finalHeads.values()].join(", ")
      }`,
  );
  for (const violation of watches.violations.slice(0, 10)) {
    console.log(`  VIOLATION ${JSON.stringify(violation)}`);
  }
  assertEquals(watches.violations.length, 0, "watch violations");
  assertEquals(linear.status, "ok", "the writes are linearizable");
  assert(watches.versions > 0, "watchers saw nothing");
  assert(many > 0, "no compareAndSetMany committed");
}

Deno.test("watch round (memory): 2 keys, 6 writers (a quarter of writes compareAndSetMany), 6 watchers, truncation", async () => {
  await using store = new MemoryConsensus();
  const result = await runWatchRound([store], [store], {
    durationMs: 1_500,
    keep: 8,
    writersPerStore: 6,
    watchersPerKey: 3,
    manyShare: 0.25,
  });
  verify(result, "memory");
  assert(result.truncations > 0, "no watcher fell behind the truncator");
});

const PgPool: new (config: Record<string, unknown>) => NodePostgresPool = pg.Pool;

dbTest(
  "watch round (Postgres): 3 writer stores (2 notifying, some compareAndSetMany), watchers on porsager and node-postgres, truncation, listening connections terminated",
  async () => {
    const table = "watch_round";
    const admin = connect({ max: 1 });
    await freshTable(table);
    const open = (executor: Parameters<typeof PostgresConsensus.open>[0], notify: boolean) =>
      PostgresConsensus.open(executor, { table, notify, create: false });
    const writers: Consensus[] = await Promise.all(
      [true, true, false].map((notify) =>
        open(fromPostgresJs(connect({ max: 4 }), { owned: true }), notify)
      ),
    );
    const app = "watch_round_watchers";
    const watchers: Consensus[] = [
      await open(
        fromPostgresJs(connect({ max: 4, connection: { application_name: app } }), { owned: true }),
        false,
      ),
      await open(
        fromNodePostgres(
          new PgPool({ connectionString: DATABASE_URL, max: 4, application_name: app }),
          { owned: true },
        ),
        false,
      ),
    ];
    try {
      const result = await runWatchRound(writers, watchers, {
        durationMs: 4_000,
        keep: 10,
        writersPerStore: 3,
        watchersPerKey: 3,
        manyShare: 0.25,
        // Terminated listening connections: only the reconnect's re-read and
        // the poll can find what was committed while they were down.
        pollIntervalMs: 1_000,
        faultEveryMs: 400,
        fault: async () => {
          await admin`SELECT pg_terminate_backend(pid) FROM pg_stat_activity
            WHERE application_name = ${app} AND query ILIKE 'listen %'`;
        },
      });
      verify(result, "postgres");
      assert(result.faults > 0, "no fault injected");
    } finally {
      for (const store of [...writers, ...watchers]) await store.close();
      await admin.end();
    }
  },
);
