// What PostgresConsensus decides by itself about watchers, without a server:
// a scripted executor answers the statements from a tiny in-memory log, and
// a scripted `listen` lets the test deliver notifications and reconnects.
// (What the server decides, that a notification is sent by a committed
// write only, is tested against Postgres in tests/window_test.ts and
// tests/watch_test.ts.)
import { assert, assertEquals } from "@std/assert";
import {
  type ListenOptions,
  PostgresConsensus,
  type SqlExecutor,
  type SqlSubscription,
  type VersionedData,
  watch,
} from "../mod.ts";
import { ScriptedExecutor } from "../src/testing/scripted.ts";
import { channelFor } from "../src/dialect.ts";

interface Listening {
  channel: string;
  notify: (payload: string) => void;
  options: ListenOptions | undefined;
  closed: boolean;
}

// A store over a scripted executor whose log lives here, with a listen the
// test drives. `events` records the order of LISTEN, UNLISTEN and close.
function harness(options: { listen?: "ok" | "fail" | "none"; engine?: "cockroach" } = {}) {
  const logs = new Map<string, VersionedData[]>();
  const scripted = new ScriptedExecutor(
    options.engine === "cockroach" ? { isolation: "serializable" } : {},
  );
  const subscriptions: Listening[] = [];
  const events: string[] = [];
  const append = (key: string, seqno: bigint, data: Uint8Array) => {
    const log = logs.get(key) ?? [];
    const head = log.at(-1)?.seqno ?? -1n;
    if (seqno !== head + 1n) return { rows: [], rowCount: 0 };
    log.push({ seqno, data });
    logs.set(key, log);
    return { rows: [], rowCount: 1 };
  };
  scripted
    .on("head", (c) => {
      const head = logs.get(c.params[0] as string)?.at(-1);
      return { rows: head ? [[head.seqno, head.data]] : [], rowCount: head ? 1 : 0 };
    })
    .on("scan", (c) => {
      const [key, from, limit] = c.params as [string, bigint, bigint];
      const rows = (logs.get(key) ?? []).filter((v) => v.seqno >= from).slice(0, Number(limit))
        .map((v) => [v.seqno, v.data]);
      return { rows, rowCount: rows.length };
    })
    .on("cas_first", (c) => append(c.params[0] as string, 0n, c.params[1] as Uint8Array))
    .on(
      "cas_next",
      (c) => append(c.params[0] as string, c.params[1] as bigint, c.params[2] as Uint8Array),
    );
  const executor: SqlExecutor = {
    query: (statement, params, queryOptions) => scripted.query(statement, params, queryOptions),
    ddl: (text) => scripted.ddl(text),
    close: () => {
      events.push("executor closed");
      return scripted.close();
    },
  };
  if (options.listen !== "none") {
    executor.listen = (channel, notify, listenOptions): Promise<SqlSubscription> => {
      events.push("LISTEN");
      if (options.listen === "fail") return Promise.reject(new Error("LISTEN refused"));
      const subscription: Listening = { channel, notify, options: listenOptions, closed: false };
      subscriptions.push(subscription);
      return Promise.resolve({
        close: () => {
          subscription.closed = true;
          events.push("UNLISTEN");
          return Promise.resolve();
        },
      });
    };
  }
  // Another process's commit: in the log, but this store hears of it only
  // through a notification (or a read).
  const commitElsewhere = (key: string, seqno: bigint) => {
    assertEquals(append(key, seqno, new Uint8Array([Number(seqno)])).rowCount, 1);
  };
  return { scripted, executor, subscriptions, events, logs, commitElsewhere };
}

const scans = (h: ReturnType<typeof harness>, key: string) =>
  h.scripted.calls.filter((c) => c.op === "scan" && c.params[0] === key).length;
const tick = (ms = 5) => new Promise((resolve) => setTimeout(resolve, ms));
const NEVER_POLL = { pollIntervalMs: 600_000 };

// Every wait is bounded: a watcher that is never woken fails the test.
async function bounded<T>(promise: Promise<T>, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: nothing after 2 s`)), 2_000);
  });
  try {
    return await Promise.race([promise, late]);
  } finally {
    clearTimeout(timer);
  }
}

Deno.test("watch unit: one LISTEN for every watcher of a store, from the first to the last", async () => {
  const h = harness();
  const warnings: string[] = [];
  const store = await PostgresConsensus.open(h.executor, {
    create: false,
    onWarning: (m) => warnings.push(m),
  });
  assertEquals(h.subscriptions.length, 0, "no LISTEN before anyone watches");
  const a = watch(store, "a", { from: 0n, ...NEVER_POLL });
  const b = watch(store, "b", { from: 0n, ...NEVER_POLL });
  const c = watch(store, "a", { from: 0n, ...NEVER_POLL });
  const pending = [a.next(), b.next(), c.next()];
  await tick();
  assertEquals(h.subscriptions.length, 1, "one LISTEN");
  assertEquals(h.subscriptions[0].channel, channelFor('"public"."consensus"'));
  await a.return!();
  await b.return!();
  assertEquals(h.subscriptions[0].closed, false, "c still watches");
  await c.return!();
  assertEquals(h.subscriptions[0].closed, true, "the last watcher's end releases it");
  for (const p of pending) assertEquals((await bounded(p, "return")).done, true);
  const again = watch(store, "a", NEVER_POLL);
  const next = again.next();
  await tick();
  assertEquals(h.subscriptions.length, 2, "a new watcher listens again");
  await store.close();
  assertEquals((await bounded(next, "close")).done, true, "close ends the watcher");
  assertEquals(h.events, ["LISTEN", "UNLISTEN", "LISTEN", "UNLISTEN", "executor closed"]);
  assertEquals(warnings, []);
});

Deno.test("watch unit: a notification wakes the watchers of its key that still expect it", async () => {
  const h = harness();
  const store = await PostgresConsensus.open(h.executor, { create: false });
  const a = watch(store, "a", { from: 0n, ...NEVER_POLL });
  const b = watch(store, "b", { from: 0n, ...NEVER_POLL });
  const nextA = a.next();
  const nextB = b.next();
  await tick();
  const [scansA, scansB] = [scans(h, "a"), scans(h, "b")];
  const { notify } = h.subscriptions[0];
  h.commitElsewhere("a", 0n);
  notify("0:a");
  assertEquals((await bounded(nextA, "a")).value?.seqno, 0n, "woken by its notification");
  assertEquals(scans(h, "a"), scansA + 1, "one read per wake-up");
  assertEquals(scans(h, "b"), scansB, "b was not woken");
  const again = a.next();
  await tick();
  const before = scans(h, "a");
  notify("0:a"); // a duplicate of a version already yielded
  notify("garbage");
  notify("x:a");
  notify(":a");
  await tick();
  assertEquals(scans(h, "a"), before, "stale and malformed payloads wake nobody");
  h.commitElsewhere("a", 1n);
  h.commitElsewhere("a", 2n);
  notify("2:a"); // 1's notification was lost: the read from 1 finds both
  assertEquals((await bounded(again, "1")).value?.seqno, 1n);
  assertEquals((await bounded(a.next(), "2")).value?.seqno, 2n);
  await a.return!();
  await b.return!();
  await bounded(nextB, "b");
  await store.close();
});

Deno.test("watch unit: a reconnect makes every watcher read, finding what was lost", async () => {
  const h = harness();
  const store = await PostgresConsensus.open(h.executor, { create: false });
  const watchers = ["a", "b"].map((key) => watch(store, key, { from: 0n, ...NEVER_POLL }));
  const pending = watchers.map((w) => w.next());
  await tick();
  h.commitElsewhere("a", 0n);
  h.commitElsewhere("b", 0n);
  await tick(20);
  // Committed while the connection was down: no notification came.
  h.subscriptions[0].options?.onReconnect?.();
  for (const p of pending) assertEquals((await bounded(p, "after reconnect")).value?.seqno, 0n);
  for (const w of watchers) await w.return!();
  await store.close();
});

Deno.test("watch unit: the store's own commits wake its watchers without a notification", async () => {
  const h = harness({ listen: "none" });
  const store = await PostgresConsensus.open(h.executor, { create: false });
  const w = watch(store, "k", { from: 0n, ...NEVER_POLL });
  const next = w.next();
  await tick();
  assertEquals(
    await store.compareAndSet("k", { seqno: 0n, data: new Uint8Array([7]) }),
    "committed",
  );
  assertEquals((await bounded(next, "own commit")).value?.data, new Uint8Array([7]));
  await w.return!();
  await store.close();
});

Deno.test("watch unit: LISTEN refused: open's onWarning says so, and watchers poll", async () => {
  const h = harness({ listen: "fail" });
  const warnings: string[] = [];
  const store = await PostgresConsensus.open(h.executor, {
    create: false,
    onWarning: (m) => warnings.push(m),
  });
  const w = watch(store, "k", { from: 0n, pollIntervalMs: 10 });
  const next = w.next();
  await tick(20);
  h.commitElsewhere("k", 0n);
  assertEquals((await bounded(next, "poll")).value?.seqno, 0n, "found by polling");
  assert(warnings.some((m) => m.includes("could not LISTEN") && m.includes("LISTEN refused")));
  await w.return!();
  await store.close();
});

Deno.test("watch unit: the CockroachDB statements never LISTEN and never notify", async () => {
  const h = harness({ engine: "cockroach" });
  const warnings: string[] = [];
  const store = await PostgresConsensus.open(h.executor, {
    create: false,
    engine: "cockroach",
    notify: true,
    onWarning: (m) => warnings.push(m),
  });
  assertEquals(store.notify, false);
  assert(warnings.some((m) => m.includes("notify is ignored")));
  const w = watch(store, "k", { from: 0n, pollIntervalMs: 10 });
  const next = w.next();
  await tick(20);
  h.commitElsewhere("k", 0n);
  assertEquals((await bounded(next, "poll")).value?.seqno, 0n);
  assertEquals(h.events.includes("LISTEN"), false);
  await store.compareAndSet("k", { seqno: 1n, data: new Uint8Array() });
  for (const call of h.scripted.calls) assert(!call.statement.text.includes("pg_notify"));
  await w.return!();
  await store.close();
});

Deno.test("watch unit: notify puts pg_notify on the table's channel into every compare-and-set", async () => {
  for (const notify of [false, true]) {
    const h = harness();
    const store = await PostgresConsensus.open(h.executor, { create: false, notify });
    assertEquals(store.notify, notify);
    await store.compareAndSet("k", { seqno: 0n, data: new Uint8Array() });
    await store.compareAndSet("k", { seqno: 1n, data: new Uint8Array() });
    const channel = channelFor('"public"."consensus"');
    for (const op of ["cas_first", "cas_next"]) {
      const text = h.scripted.calls.find((c) => c.op === op)!.statement.text;
      assertEquals(text.includes(`pg_notify('${channel}'`), notify, `${op}, notify ${notify}`);
    }
    await store.close();
  }
});

Deno.test("WakeHub: a feed that failed to start is started again while someone subscribes, and its subscribers are woken once it is in", async () => {
  const { WakeHub } = await import("../src/_wake.ts");
  let starts = 0;
  let closes = 0;
  let started!: () => void;
  const running = new Promise<void>((resolve) => started = resolve);
  const hub = new WakeHub(false, {
    start() {
      starts++;
      if (starts < 3) return Promise.resolve(undefined); // LISTEN failed (a restarting server)
      started();
      return Promise.resolve({ close: () => (closes++, Promise.resolve()) });
    },
  });
  const woken: (bigint | undefined)[] = [];
  const subscription = await hub.subscribe("k", (seqno) => woken.push(seqno));
  assertEquals(starts, 1);
  // Two failed starts, then a third after 0.5 s and 1 s of backoff.
  let timer: ReturnType<typeof setTimeout> | undefined;
  await Promise.race([
    running,
    new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(`only ${starts} starts`)), 20_000);
    }),
  ]).finally(() => clearTimeout(timer));
  await new Promise((resolve) => setTimeout(resolve, 0));
  assertEquals(starts, 3);
  assertEquals(woken, [undefined], "woken once the feed is in: commits in between woke nobody");
  await subscription.close();
  assertEquals(closes, 1, "the feed is released when the last subscriber leaves");
  await hub.close();
});

Deno.test("WakeHub: no start again once the last subscriber left", async () => {
  const { WakeHub } = await import("../src/_wake.ts");
  let starts = 0;
  const hub = new WakeHub(false, {
    start() {
      starts++;
      return Promise.resolve(undefined);
    },
  });
  const subscription = await hub.subscribe("k", () => {});
  await subscription.close();
  await new Promise((resolve) => setTimeout(resolve, WakeHub.FEED_RETRY_MIN_MS * 2));
  assertEquals(starts, 1);
  await hub.close();
});
