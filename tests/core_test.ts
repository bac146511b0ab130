// The core's own decisions, without a server: a scripted executor answers,
// and each test counts what the store sent. Runs in milliseconds.
import { assert, assertEquals, assertInstanceOf, assertRejects } from "@std/assert";
import { ConsensusError, MemoryConsensus, PostgresConsensus, SqlError } from "../mod.ts";
import { dropAndRecreate, ScriptedExecutor } from "../src/testing/mod.ts";

const data = new Uint8Array([1]);
const row = (seqno: bigint) => ({ rows: [[seqno, data]], rowCount: 1 });
const inserted = { rows: [], rowCount: 1 };
const nothing = { rows: [], rowCount: 0 };

function deferred<T>() {
  let resolve!: (value: T) => void;
  const promise = new Promise<T>((r) => resolve = r);
  return { promise, resolve };
}

async function open(executor: ScriptedExecutor, options = {}) {
  return await PostgresConsensus.open(executor, { create: false, ...options });
}

Deno.test("core: head reads of one key in one turn share one statement; later turns send again", async () => {
  const executor = new ScriptedExecutor().on("head", () => row(3n));
  const store = await open(executor);
  const reads = await Promise.all([store.head("k"), store.head("k"), store.head("k")]);
  assertEquals(reads.map((r) => r?.seqno), [3n, 3n, 3n]);
  assertEquals(executor.sent("head"), 1);
  // Each caller gets its own bytes.
  reads[0]!.data[0] = 9;
  assertEquals(reads[1]!.data[0], 1);
  await store.head("k");
  assertEquals(executor.sent("head"), 2, "a later turn sends again");
  await store.close();
});

Deno.test("core: heads of other keys in one turn go as one statement (batch: true), or one each (batch: false)", async () => {
  const executor = new ScriptedExecutor()
    .on("head", () => row(3n))
    .on("head_batch", (call) => {
      const keys = JSON.parse(call.params[0] as string) as string[];
      // "b" has no version: no row for it.
      return {
        rows: keys.flatMap((k, i) => k === "b" ? [] : [[BigInt(i + 1), BigInt(k.length), data]]),
        rowCount: 2,
      };
    });
  const store = await open(executor);
  const reads = await Promise.all([store.head("a"), store.head("b"), store.head("ccc")]);
  assertEquals(reads.map((r) => r?.seqno), [1n, undefined, 3n]);
  assertEquals([executor.sent("head_batch"), executor.sent("head")], [1, 0]);
  await store.close();
  const unbatched = new ScriptedExecutor().on("head", () => row(3n));
  const plain = await open(unbatched, { batch: false });
  await Promise.all([plain.head("a"), plain.head("b")]);
  assertEquals(unbatched.sent("head"), 2);
  await plain.close();
});

Deno.test("core: compareAndSets on other keys in one turn go as one statement, each with its own result", async () => {
  const executor = new ScriptedExecutor().on("cas_batch", (call) => {
    const entries = JSON.parse(call.params[0] as string) as { k: string; s: string }[];
    assertEquals(entries.map((e) => e.k), ["a", "b", "c"], "sorted, distinct");
    // "b" lost its race: only a and c come back.
    return { rows: [['["a","c"]']], rowCount: 1 };
  });
  const store = await open(executor);
  const results = await Promise.all([
    store.compareAndSet("c", { seqno: 4n, data }),
    store.compareAndSet("a", { seqno: 0n, data }),
    store.compareAndSet("b", { seqno: 2n, data }),
  ]);
  assertEquals(results, ["committed", "committed", "mismatch"]);
  assertEquals(executor.sent("cas_batch"), 1);
  assertEquals(executor.sent("cas_next") + executor.sent("cas_first"), 0);
  await store.close();
});

Deno.test("core: a compareAndSet of more than 64 KiB goes alone; the others still share one statement", async () => {
  const executor = new ScriptedExecutor()
    .on("cas_batch", (call) => {
      const entries = JSON.parse(call.params[0] as string) as { k: string }[];
      return { rows: [[JSON.stringify(entries.map((e) => e.k))]], rowCount: 1 };
    })
    .on("cas_next", () => inserted);
  const store = await open(executor);
  const results = await Promise.all([
    store.compareAndSet("a", { seqno: 1n, data }),
    store.compareAndSet("big", { seqno: 1n, data: new Uint8Array(64 * 1024 + 1) }),
    store.compareAndSet("c", { seqno: 1n, data }),
  ]);
  assertEquals(results, ["committed", "committed", "committed"]);
  assertEquals([executor.sent("cas_batch"), executor.sent("cas_next")], [1, 1]);
  const alone = executor.calls.find((c) => c.op === "cas_next")!;
  assertEquals(alone.params[0], "big");
  await store.close();
});

Deno.test("core: a second compareAndSet on a key never shares the first's batch statement", async () => {
  const gate = deferred<void>();
  const executor = new ScriptedExecutor()
    .on("cas_batch", async (call) => {
      await gate.promise;
      const entries = JSON.parse(call.params[0] as string) as { k: string }[];
      return { rows: [[JSON.stringify(entries.map((e) => e.k))]], rowCount: 1 };
    })
    .on("cas_next", () => inserted);
  const store = await open(executor);
  const all = Promise.all([
    store.compareAndSet("a", { seqno: 1n, data }),
    store.compareAndSet("b", { seqno: 1n, data }),
    store.compareAndSet("a", { seqno: 2n, data }),
  ]);
  await new Promise((resolve) => setTimeout(resolve, 5));
  assertEquals(executor.sent("cas_batch"), 1);
  assertEquals(executor.sent("cas_next"), 0, "a's second waits for the first");
  gate.resolve();
  assertEquals(await all, ["committed", "committed", "committed"]);
  assertEquals(executor.sent("cas_next"), 1, "then runs alone");
  const keys = executor.calls.filter((c) => c.op === "cas_batch")
    .map((c) => (JSON.parse(c.params[0] as string) as { k: string }[]).map((e) => e.k).join());
  assertEquals(keys, ["a,b"]);
  await store.close();
});

Deno.test("core: a batch that keeps failing to serialize runs each compareAndSet alone; a lost connection fails each, indeterminate", async () => {
  const executor = new ScriptedExecutor()
    .on("cas_batch", () => {
      throw new SqlError("could not serialize access", { code: "40001" });
    })
    .on("cas_next", (call) => call.params[0] === "a" ? inserted : nothing);
  const store = await open(executor, { maxAttempts: 2 });
  const results = await Promise.all([
    store.compareAndSet("a", { seqno: 1n, data }),
    store.compareAndSet("b", { seqno: 1n, data }),
  ]);
  assertEquals(results, ["committed", "mismatch"]);
  assertEquals([executor.sent("cas_batch"), executor.sent("cas_next")], [2, 2]);
  await store.close();

  const lost = new ScriptedExecutor().on("cas_batch", () => {
    throw new SqlError("connection lost", { connectionLost: true });
  });
  const broken = await open(lost);
  const errors = await Promise.all([
    broken.compareAndSet("a", { seqno: 1n, data }).catch((e) => e),
    broken.compareAndSet("b", { seqno: 1n, data }).catch((e) => e),
  ]);
  for (const [i, error] of errors.entries()) {
    assertInstanceOf(error, ConsensusError);
    assertEquals(error.determinate, false);
    assert(
      error.message.startsWith(`compareAndSet "${"ab"[i]}", sent in one statement with 1 other`),
    );
    assert(error.message.includes("may have taken effect"), error.message);
  }
  await broken.close();
});

Deno.test("core: a compareAndSet queued behind the same seqno in flight loses without a round trip", async () => {
  const gate = deferred<void>();
  const executor = new ScriptedExecutor().on("cas_next", async () => {
    await gate.promise;
    return inserted;
  });
  const store = await open(executor);
  const first = store.compareAndSet("k", { seqno: 5n, data });
  const second = store.compareAndSet("k", { seqno: 5n, data });
  await new Promise((resolve) => setTimeout(resolve, 5));
  assertEquals(executor.sent("cas_next"), 1, "the second waits for the first");
  gate.resolve();
  assertEquals(await first, "committed");
  assertEquals(await second, "mismatch");
  assertEquals(executor.sent("cas_next"), 1, "the loser sent nothing");
  await store.close();
});

Deno.test("core: a queued compareAndSet runs itself when the one ahead lost", async () => {
  let calls = 0;
  const executor = new ScriptedExecutor().on("cas_next", () => ++calls === 1 ? nothing : inserted);
  const store = await open(executor);
  const [a, b] = await Promise.all([
    store.compareAndSet("k", { seqno: 5n, data }),
    store.compareAndSet("k", { seqno: 5n, data }),
  ]);
  assertEquals([a, b], ["mismatch", "committed"]);
  assertEquals(executor.sent("cas_next"), 2);
  await store.close();
});

Deno.test("core: a queued compareAndSet runs itself when the one ahead failed", async () => {
  let calls = 0;
  const executor = new ScriptedExecutor().on("cas_next", () => {
    if (++calls === 1) throw new SqlError("connection reset", { connectionLost: true });
    return inserted;
  });
  const store = await open(executor);
  const [a, b] = await Promise.allSettled([
    store.compareAndSet("k", { seqno: 5n, data }),
    store.compareAndSet("k", { seqno: 5n, data }),
  ]);
  assertEquals(a.status, "rejected", "the first may have committed: an error, not a guess");
  assertEquals(b.status === "fulfilled" && b.value, "committed", "the second asked the server");
  assertEquals(executor.sent("cas_next"), 2);
  await store.close();
});

Deno.test("core: dropAndRecreate from ./testing empties the table and forgets every floor", async () => {
  const executor = new ScriptedExecutor().on("cas_first", () => inserted);
  const store = await open(executor);
  assertEquals(await store.compareAndSet("k", { seqno: 0n, data }), "committed");
  assertEquals(await store.compareAndSet("k", { seqno: 0n, data }), "mismatch");
  assertEquals(executor.sent("cas_first"), 1);
  await dropAndRecreate(store);
  assertEquals(await store.compareAndSet("k", { seqno: 0n, data }), "committed");
  assertEquals(executor.sent("cas_first"), 2, "after the drop, version 0 goes to the server");
  await assertRejects(
    () => dropAndRecreate(new MemoryConsensus()),
    TypeError,
    "not a PostgresConsensus",
  );
  await store.close();
});

Deno.test("core: the floor answers sure mismatches locally, and a head read corrects it, even downward", async () => {
  let head = 7n;
  const executor = new ScriptedExecutor()
    .on("cas_next", () => inserted)
    .on("head", () => row(head));
  const store = await open(executor);
  assertEquals(await store.compareAndSet("k", { seqno: 7n, data }), "committed");
  assertEquals(await store.compareAndSet("k", { seqno: 7n, data }), "mismatch");
  assertEquals(await store.compareAndSet("k", { seqno: 3n, data }), "mismatch");
  assertEquals(executor.sent("cas_next"), 1, "at or below the floor: nothing sent");
  head = 1n; // rows rewritten outside the library
  assertEquals((await store.head("k"))?.seqno, 1n);
  assertEquals(await store.compareAndSet("k", { seqno: 2n, data }), "committed");
  assertEquals(executor.sent("cas_next"), 2, "after the read, the store asks the server");
  await store.close();
});

Deno.test("core: an empty head read forgets the floor", async () => {
  const executor = new ScriptedExecutor()
    .on("cas_first", () => inserted)
    .on("head", () => nothing);
  const store = await open(executor);
  assertEquals(await store.compareAndSet("k", { seqno: 0n, data }), "committed");
  assertEquals(await store.compareAndSet("k", { seqno: 0n, data }), "mismatch");
  assertEquals(executor.sent("cas_first"), 1);
  assertEquals(await store.head("k"), undefined); // the key was deleted outside
  assertEquals(await store.compareAndSet("k", { seqno: 0n, data }), "committed");
  assertEquals(executor.sent("cas_first"), 2);
  await store.close();
});

Deno.test("core: floors are bounded and evict the least recently set key", async () => {
  const executor = new ScriptedExecutor().on("cas_first", () => inserted);
  const store = await open(executor);
  for (let i = 0; i <= 10_000; i++) await store.compareAndSet(`k${i}`, { seqno: 0n, data });
  assertEquals(executor.sent("cas_first"), 10_001);
  // k0 was evicted by the 10,001st key: its sure mismatch now asks the server.
  await store.compareAndSet("k0", { seqno: 0n, data });
  assertEquals(executor.sent("cas_first"), 10_002);
  // k10000 is remembered.
  await store.compareAndSet("k10000", { seqno: 0n, data });
  assertEquals(executor.sent("cas_first"), 10_002);
  await store.close();
});

Deno.test("core: serialization failures are retried until maxAttempts, then determinate", async () => {
  const executor = new ScriptedExecutor().on("cas_next", () => {
    throw new SqlError("could not serialize access", { code: "40001" });
  });
  const store = await open(executor, { maxAttempts: 4 });
  const error = await assertRejects(
    () => store.compareAndSet("k", { seqno: 1n, data }),
    ConsensusError,
  ) as ConsensusError;
  assertEquals(executor.sent("cas_next"), 4);
  assertEquals(error.determinate, true);
  assertEquals(error.code, "40001");
  assert(error.message.includes("after 4 attempts"), error.message);
  await store.close();
});

Deno.test("core: each failure is retried or reported as the runner classifies it", async () => {
  // [error, attempts the store sends, determinate, code]
  const cases: [unknown, number, boolean, string | undefined][] = [
    [new SqlError("could not serialize access", { code: "40001" }), 3, true, "40001"],
    [new SqlError("deadlock detected", { code: "40P01" }), 3, true, "40P01"],
    [new SqlError("read only transaction", { code: "40002" }), 1, true, "40002"],
    [new SqlError("duplicate key", { code: "23505" }), 1, true, "23505"],
    [new SqlError("no such table", { code: "42P01" }), 1, true, "42P01"],
    [new SqlError("admin shutdown", { code: "57P01" }), 1, false, "57P01"],
    [new SqlError("connection reset", { connectionLost: true }), 1, false, undefined],
    [new SqlError("no SQLSTATE"), 1, false, undefined],
    [new TypeError("driver bug"), 1, false, undefined],
  ];
  for (const [thrown, attempts, determinate, code] of cases) {
    const executor = new ScriptedExecutor().on("cas_next", () => {
      throw thrown;
    });
    const store = await open(executor, { maxAttempts: 3 });
    const error = await assertRejects(
      () => store.compareAndSet("k", { seqno: 1n, data }),
      ConsensusError,
    ) as ConsensusError;
    const what = String(thrown);
    assertEquals(executor.sent("cas_next"), attempts, what);
    assertEquals(error.determinate, determinate, what);
    assertEquals(error.code, code, what);
    assertEquals(error.cause, thrown, what);
    const outcome = determinate ? "did not take effect" : "may have taken effect";
    assert(error.message.startsWith(`compareAndSet "k" failed and ${outcome}`), error.message);
    await store.close();
  }
});

Deno.test("core: a retried failure that then succeeds is the operation's result", async () => {
  let calls = 0;
  const executor = new ScriptedExecutor().on("cas_next", () => {
    if (++calls < 3) throw new SqlError("deadlock detected", { code: "40P01" });
    return inserted;
  });
  const store = await open(executor, { maxAttempts: 3 });
  assertEquals(await store.compareAndSet("k", { seqno: 1n, data }), "committed");
  assertEquals(executor.sent("cas_next"), 3);
  await store.close();
});

Deno.test("core: retries stop at the deadline, not at maxAttempts", async () => {
  const executor = new ScriptedExecutor().on("cas_next", () => {
    throw new SqlError("deadlock detected", { code: "40P01" });
  });
  const store = await open(executor, { maxAttempts: 1_000_000, timeoutMs: 150 });
  const error = await assertRejects(
    () => store.compareAndSet("k", { seqno: 1n, data }),
    ConsensusError,
  ) as ConsensusError;
  // Backoff of at least ~2 ms on average per attempt within 150 ms: far
  // fewer attempts than maxAttempts (no wall-clock assertion).
  assert(executor.sent("cas_next") < 1_000, `${executor.sent("cas_next")} attempts`);
  assert(error.message.includes(`after ${executor.sent("cas_next")} attempts`), error.message);
  assertEquals(error.determinate, true, "every attempt surely rolled back");
  await store.close();
});

Deno.test("core: a statement that outlives the timeout is an indeterminate error, and its signal aborts", async () => {
  const never = new Promise<never>(() => {});
  let aborted = false;
  const executor = new ScriptedExecutor().on("cas_next", (call) => {
    call.options?.signal?.addEventListener("abort", () => aborted = true);
    return never;
  });
  const store = await open(executor, { timeoutMs: 60 });
  const error = await assertRejects(
    () => store.compareAndSet("k", { seqno: 1n, data }),
    ConsensusError,
  ) as ConsensusError;
  assertEquals(error.determinate, false);
  assert(error.message.includes("timed out after 60 ms and may have taken effect"), error.message);
  assert(aborted, "the executor was told to cancel");
  await store.close();
});

Deno.test("core: compareAndSetMany reads 22012 as a mismatch and raises every key's floor on commit", async () => {
  let result: "commit" | "mismatch" = "mismatch";
  const executor = new ScriptedExecutor().on("cas_many", () => {
    if (result === "mismatch") throw new SqlError("division by zero", { code: "22012" });
    return { rows: [[1n]], rowCount: 1 };
  });
  const store = await open(executor);
  const entries = [
    { key: "b", next: { seqno: 3n, data } },
    { key: "a", next: { seqno: 0n, data } },
  ];
  assertEquals(await store.compareAndSetMany(entries), "mismatch");
  result = "commit";
  assertEquals(await store.compareAndSetMany(entries), "committed");
  const sent = JSON.parse(String(executor.calls.at(-1)!.params[0]));
  assertEquals(sent.map((e: { k: string }) => e.k), ["a", "b"], "keys sorted");
  assertEquals(executor.calls.at(-1)!.params[1], 2n);
  assertEquals(await store.compareAndSet("b", { seqno: 3n, data }), "mismatch");
  assertEquals(await store.compareAndSetMany(entries), "mismatch", "below a floor");
  assertEquals(executor.sent("cas_many"), 2, "floors answered the last two");
  await store.close();
});

Deno.test("core: close waits for operations in flight, refuses later ones, returns one promise", async () => {
  const gate = deferred<void>();
  const executor = new ScriptedExecutor().on("cas_next", async () => {
    await gate.promise;
    return inserted;
  });
  const store = await open(executor);
  const pending = store.compareAndSet("k", { seqno: 1n, data });
  const closing = store.close();
  assert(store.close() === closing, "one promise");
  await assertRejects(() => store.head("k"), TypeError, "closed");
  assertEquals(executor.closed, false, "not before the operation ends");
  gate.resolve();
  assertEquals(await pending, "committed");
  await closing;
  assertEquals(executor.closed, true);
});

Deno.test("core: open refuses CockroachDB below SERIALIZABLE and closes the executor", async () => {
  const executor = new ScriptedExecutor({
    version: "CockroachDB CCL v24.1.0 (scripted)",
    isolation: "read committed",
  });
  const error = await assertRejects(() => open(executor), ConsensusError) as ConsensusError;
  assertInstanceOf(error, ConsensusError);
  assertEquals(error.determinate, true);
  assert(error.message.includes("postgres://scripted@127.0.0.1:5432/test"), error.message);
  assert(error.message.includes('"read committed"'), error.message);
  assertEquals(executor.closed, true);
  const serializable = new ScriptedExecutor({
    version: "CockroachDB CCL v24.1.0 (scripted)",
    isolation: "serializable",
  });
  const store = await open(serializable);
  assertEquals(store.engine, "cockroach");
  await store.close();
});

Deno.test("core: a compareAndSet that waited behind the same seqno in flight never shares a batch with fresh ones", async () => {
  // Its deadline runs from its own call, long before theirs; a batch runs to
  // its earliest deadline, so it would cut the fresh ones' time short.
  const gate = deferred<void>();
  let first = true;
  let hop = 0;
  const fresh: Promise<unknown>[] = [];
  // Fresh compare-and-sets on other keys, one per microtask for 30 hops, so
  // that a batch window is open when the waiting one goes on.
  const keepOpen = () => {
    if (hop >= 30) return;
    fresh.push(store.compareAndSet(`f${hop++}`, { seqno: 1n, data }));
    queueMicrotask(keepOpen);
  };
  const executor = new ScriptedExecutor()
    .on("cas_next", async (call) => {
      if (call.params[0] !== "x" || !first) return inserted;
      first = false;
      await gate.promise;
      keepOpen();
      return nothing;
    })
    .on("cas_batch", (call) => {
      const entries = JSON.parse(call.params[0] as string) as { k: string }[];
      return { rows: [[JSON.stringify(entries.map((e) => e.k))]], rowCount: 1 };
    });
  const store = await open(executor);
  const both = Promise.all([
    store.compareAndSet("x", { seqno: 1n, data }),
    store.compareAndSet("x", { seqno: 1n, data }),
  ]);
  await new Promise((resolve) => setTimeout(resolve, 5));
  gate.resolve();
  assertEquals(await both, ["mismatch", "committed"]);
  await Promise.all(fresh);
  const batched = executor.calls.filter((c) => c.op === "cas_batch")
    .flatMap((c) => (JSON.parse(c.params[0] as string) as { k: string }[]).map((e) => e.k));
  assert(batched.length > 0, "the fresh ones shared no batch: the window was not open");
  assert(!batched.includes("x"), `the waiting one shared a batch: ${batched.join()}`);
  assertEquals(executor.sent("cas_next"), 2);
  await store.close();
});
