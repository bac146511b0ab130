import { MAX_DATA_BYTES, MAX_KEY_BYTES, MAX_MANY_ENTRIES, MAX_SEQNO } from "../limits.ts";
import type { CasEntry, CasResult, Consensus, VersionedData } from "../types.ts";
import { host, sleep } from "../_runtime.ts";
import { acquireLease } from "../lease.ts";
import { assert, assertEquals, assertRejects, ConformanceFailure } from "./_assert.ts";
import { raceOnOneKey } from "./race.ts";
import { update } from "../update.ts";
import { watch } from "../watch.ts";
import { TruncatedError } from "../errors.ts";
import type { AbortSignalLike } from "../executor.ts";

/**
 * How the conformance suite reaches one backend.
 */
export interface ConformanceHarness {
  /**
   * Opens a store with no data, or holding exactly `initial` (each list
   * contiguous and ascending; it may start above 0, as after truncation).
   * Seeding is how the suite reaches seqnos near the top of the range, which
   * no chain of compare-and-sets could reach in a test's lifetime.
   */
  open(initial?: ReadonlyMap<string, readonly VersionedData[]>): Promise<Consensus>;
  /**
   * Concurrent writers in the race case.
   *
   * @default {8}
   */
  writers?: number;
  /**
   * How far the race case advances its key.
   *
   * @default {150n}
   */
  raceUntil?: bigint;
  /**
   * Whether the backend implements the optional `compareAndSetMany`. When
   * `true` (the default) and it is missing, its cases fail; set `false` to
   * skip them (they then pass without running).
   *
   * @default {true}
   */
  many?: boolean;
}

/** One case of the suite. */
export interface ConformanceCase {
  /** A short name, for the test runner. */
  readonly name: string;
  /** Runs the case against the harness; throws on failure. */
  readonly run: (harness: ConformanceHarness) => Promise<void>;
}

const encoder = new host.TextEncoder();
const bytes = (text: string) => encoder.encode(text);
const v = (seqno: bigint, text: string): VersionedData => ({ seqno, data: bytes(text) });

async function writeChain(store: Consensus, key: string, count: number): Promise<void> {
  for (let i = 0; i < count; i++) {
    assertEquals(
      await store.compareAndSet(key, v(BigInt(i), `${key}#${i}`)),
      "committed",
      `write ${i} of ${key}`,
    );
  }
}

async function keysOf(store: Consensus): Promise<string[]> {
  const keys: string[] = [];
  for await (const key of store.listKeys()) keys.push(key);
  return keys.sort();
}

async function snapshot(store: Consensus): Promise<Map<string, VersionedData[]>> {
  const state = new Map<string, VersionedData[]>();
  for (const key of await keysOf(store)) state.set(key, await store.scan(key, 0n));
  return state;
}

async function withStore(
  harness: ConformanceHarness,
  fn: (store: Consensus) => Promise<void>,
  initial?: ReadonlyMap<string, readonly VersionedData[]>,
): Promise<void> {
  const store = await harness.open(initial);
  try {
    await fn(store);
  } finally {
    await store.close();
  }
}

// deno-lint-ignore no-explicit-any
type Loose = any;

// Every wait in the watch case is bounded: a watcher that never delivers
// fails the case instead of hanging the runner.
const WATCH_WAIT_MS = 10_000;

function within<T>(promise: Promise<T>, what: string): Promise<T> {
  let timer: unknown;
  const late = new Promise<never>((_, reject) => {
    timer = host.setTimeout(
      () => reject(new ConformanceFailure(`${what}: nothing after ${WATCH_WAIT_MS} ms`)),
      WATCH_WAIT_MS,
    );
  });
  return Promise.race([promise, late]).finally(() => host.clearTimeout(timer));
}

// A minimal AbortSignal, so the suite needs no runtime's AbortController.
function abortable(): { signal: AbortSignalLike; abort(): void } {
  const listeners = new Set<() => void>();
  const signal = {
    aborted: false,
    addEventListener: (_type: "abort", listener: () => void) => listeners.add(listener),
    removeEventListener: (_type: "abort", listener: () => void) => listeners.delete(listener),
  };
  return {
    signal,
    abort() {
      signal.aborted = true;
      for (const listener of [...listeners]) listener();
    },
  };
}

// Takes `count` items from a watcher, each within the bound.
async function take(
  iterator: AsyncIterator<VersionedData>,
  count: number,
  what: string,
): Promise<VersionedData[]> {
  const items: VersionedData[] = [];
  for (let i = 0; i < count; i++) {
    const item = await within(iterator.next(), `${what}, item ${i}`);
    assert(item.done !== true, `${what}: ended after ${i} items`);
    items.push(item.value);
  }
  return items;
}

/** Bad inputs, each with the error it must raise before any I/O. */
const BAD_INPUTS: ReadonlyArray<{
  what: string;
  call: (store: Consensus) => Promise<unknown>;
  error: typeof TypeError | typeof RangeError;
  includes: string;
}> = [
  {
    what: "key as number",
    call: (s) => s.head(1 as Loose),
    error: TypeError,
    includes: "key must be a string",
  },
  {
    what: "key undefined",
    call: (s) => s.head(undefined as Loose),
    error: TypeError,
    includes: "key must be a string",
  },
  {
    what: "empty key",
    call: (s) => s.head(""),
    error: RangeError,
    includes: "key must not be empty",
  },
  {
    what: "key with U+0000",
    call: (s) => s.compareAndSet("a\u0000b", v(0n, "x")),
    error: RangeError,
    includes: "U+0000",
  },
  {
    what: "key with lone surrogate",
    call: (s) => s.compareAndSet("a\ud800", v(0n, "x")),
    error: RangeError,
    includes: "lone surrogate",
  },
  {
    what: "key too long (ASCII)",
    call: (s) => s.compareAndSet("k".repeat(MAX_KEY_BYTES + 1), v(0n, "x")),
    error: RangeError,
    includes: `above the limit of ${MAX_KEY_BYTES}`,
  },
  {
    what: "key too long (UTF-8 bytes)",
    call: (s) => s.compareAndSet("é".repeat(MAX_KEY_BYTES / 2 + 1), v(0n, "x")),
    error: RangeError,
    includes: `above the limit of ${MAX_KEY_BYTES}`,
  },
  {
    what: "seqno as number",
    call: (s) => s.compareAndSet("k", { seqno: 0 as Loose, data: bytes("x") }),
    error: TypeError,
    includes: "next.seqno must be a bigint",
  },
  {
    what: "negative seqno",
    call: (s) => s.compareAndSet("k", v(-1n, "x")),
    error: RangeError,
    includes: "next.seqno -1n is outside",
  },
  {
    what: "seqno above range",
    call: (s) => s.compareAndSet("k", v(MAX_SEQNO + 1n, "x")),
    error: RangeError,
    includes: "is outside",
  },
  {
    what: "next null",
    call: (s) => s.compareAndSet("k", null as Loose),
    error: TypeError,
    includes: "next must be an object",
  },
  {
    what: "data as string",
    call: (s) => s.compareAndSet("k", { seqno: 0n, data: "x" as Loose }),
    error: TypeError,
    includes: "next.data must be a Uint8Array",
  },
  {
    what: "data as array",
    call: (s) => s.compareAndSet("k", { seqno: 0n, data: [1, 2] as Loose }),
    error: TypeError,
    includes: "next.data must be a Uint8Array",
  },
  {
    what: "data too large",
    call: (s) => s.compareAndSet("k", { seqno: 0n, data: new Uint8Array(MAX_DATA_BYTES + 1) }),
    error: RangeError,
    includes: `above the limit of ${MAX_DATA_BYTES}`,
  },
  {
    what: "scan from number",
    call: (s) => s.scan("k", 0 as Loose),
    error: TypeError,
    includes: "from must be a bigint",
  },
  {
    what: "scan from negative",
    call: (s) => s.scan("k", -5n),
    error: RangeError,
    includes: "from -5n is outside",
  },
  {
    what: "scan limit negative",
    call: (s) => s.scan("k", 0n, -1),
    error: RangeError,
    includes: "limit -1 is not a non-negative integer",
  },
  {
    what: "scan limit fractional",
    call: (s) => s.scan("k", 0n, 1.5),
    error: RangeError,
    includes: "limit 1.5",
  },
  {
    what: "scan limit NaN",
    call: (s) => s.scan("k", 0n, NaN),
    error: RangeError,
    includes: "limit NaN",
  },
  {
    what: "scan limit bigint",
    call: (s) => s.scan("k", 0n, 2n as Loose),
    error: TypeError,
    includes: "limit must be a number",
  },
  {
    what: "scan limit string",
    call: (s) => s.scan("k", 0n, "3" as Loose),
    error: TypeError,
    includes: "limit must be a number",
  },
  {
    what: "truncate seqno number",
    call: (s) => s.truncate("k", 1 as Loose),
    error: TypeError,
    includes: "seqno must be a bigint",
  },
  {
    what: "truncate seqno negative",
    call: (s) => s.truncate("k", -1n),
    error: RangeError,
    includes: "seqno -1n is outside",
  },
  {
    what: "truncate seqno above range",
    call: (s) => s.truncate("k", MAX_SEQNO + 1n),
    error: RangeError,
    includes: "is outside",
  },
];

/**
 * The cases every {@linkcode Consensus} must pass. Run them with
 * {@linkcode runConformance}, or one by one.
 */
export const conformanceCases: readonly ConformanceCase[] = [
  {
    name: "an empty key has no head, scans empty and rejects truncation",
    run: (h) =>
      withStore(h, async (store) => {
        assertEquals(await store.head("empty"), undefined, "head");
        assertEquals(await store.scan("empty", 0n), [], "scan");
        assertEquals(await store.scan("empty", 0n, 10), [], "scan with limit");
        await assertRejects(() => store.truncate("empty", 0n), RangeError, "has no data");
        assertEquals(await keysOf(store), [], "listKeys");
      }),
  },
  {
    name: "the first write must be seqno 0",
    run: (h) =>
      withStore(h, async (store) => {
        assertEquals(await store.compareAndSet("k", v(1n, "one")), "mismatch", "seqno 1 first");
        assertEquals(await store.compareAndSet("k", v(5n, "five")), "mismatch", "seqno 5 first");
        assertEquals(await store.head("k"), undefined, "no write landed");
        assertEquals(await store.compareAndSet("k", v(0n, "zero")), "committed", "seqno 0");
        assertEquals(await store.compareAndSet("k", v(0n, "again")), "mismatch", "seqno 0 again");
        assertEquals(await store.head("k"), v(0n, "zero"), "head");
      }),
  },
  {
    name: "writes at the wrong seqno mismatch and leave the head alone",
    run: (h) =>
      withStore(h, async (store) => {
        await writeChain(store, "k", 3);
        for (const seqno of [0n, 1n, 2n, 4n, 100n, MAX_SEQNO]) {
          assertEquals(
            await store.compareAndSet("k", v(seqno, "bad")),
            "mismatch",
            `seqno ${seqno}`,
          );
        }
        assertEquals(await store.head("k"), v(2n, "k#2"), "head");
        assertEquals(await store.compareAndSet("k", v(3n, "good")), "committed", "seqno 3");
        assertEquals(await store.head("k"), v(3n, "good"), "new head");
      }),
  },
  {
    name: "head, scan, from and limit after several writes",
    run: (h) =>
      withStore(h, async (store) => {
        await writeChain(store, "k", 10);
        const all = Array.from({ length: 10 }, (_, i) => v(BigInt(i), `k#${i}`));
        assertEquals(await store.head("k"), all[9], "head");
        assertEquals(await store.scan("k", 0n), all, "scan all");
        assertEquals(await store.scan("k", 5n), all.slice(5), "scan from 5");
        assertEquals(await store.scan("k", 3n, 2), all.slice(3, 5), "scan from 3, limit 2");
        assertEquals(await store.scan("k", 0n, 1), all.slice(0, 1), "limit 1");
        assertEquals(await store.scan("k", 0n, 0), [], "limit 0");
        assertEquals(await store.scan("k", 9n, 100), all.slice(9), "limit past the end");
        assertEquals(await store.scan("k", 10n), [], "from past the head");
        assertEquals(await store.scan("k", MAX_SEQNO), [], "from the top");
      }),
  },
  {
    name: "truncate counts, is idempotent and never removes the head",
    run: (h) =>
      withStore(h, async (store) => {
        await writeChain(store, "k", 5);
        assertEquals(await store.truncate("k", 0n), 0, "truncate below nothing");
        assertEquals(await store.truncate("k", 3n), 3, "truncate below 3");
        assertEquals(await store.truncate("k", 3n), 0, "again");
        assertEquals(await store.truncate("k", 2n), 0, "lower bound");
        assertEquals((await store.scan("k", 0n)).map((x) => x.seqno), [3n, 4n], "left");
        assertEquals(await store.truncate("k", 4n), 1, "truncate to the head");
        assertEquals(await store.head("k"), v(4n, "k#4"), "head survives");
        assertEquals(await store.scan("k", 0n), [v(4n, "k#4")], "only the head");
        await assertRejects(() => store.truncate("k", 5n), RangeError, "seqno 5 is above head 4");
        await assertRejects(() => store.truncate("k", MAX_SEQNO), RangeError, "is above head 4");
        assertEquals(await store.head("k"), v(4n, "k#4"), "head after rejected truncate");
        assertEquals(
          await store.compareAndSet("k", v(0n, "zero")),
          "mismatch",
          "the key still has data",
        );
        assertEquals(
          await store.compareAndSet("k", v(4n, "dup")),
          "mismatch",
          "the head seqno is taken",
        );
        assertEquals(
          await store.compareAndSet("k", v(5n, "five")),
          "committed",
          "append after truncate",
        );
        assertEquals(await store.scan("k", 0n), [v(4n, "k#4"), v(5n, "five")], "log after append");
      }),
  },
  {
    name: "keys are independent",
    run: (h) =>
      withStore(h, async (store) => {
        const keys = ["a", "b", "ключ", "🔑 key", "a'b\"c;-- DROP TABLE consensus", "%_\\"];
        for (const key of keys) await writeChain(store, key, 3);
        assertEquals(await store.truncate("a", 2n), 2, "truncate a");
        assertEquals(await store.compareAndSet("b", v(3n, "b3")), "committed", "advance b");
        assertEquals((await store.scan("a", 0n)).length, 1, "a truncated");
        assertEquals((await store.scan("b", 0n)).length, 4, "b advanced");
        for (const key of keys.slice(2)) {
          assertEquals(
            await store.scan(key, 0n),
            [0, 1, 2].map((i) => v(BigInt(i), `${key}#${i}`)),
            key,
          );
        }
        assertEquals(await store.head("c"), undefined, "an unwritten key");
        assertEquals(await store.head("A"), undefined, "keys are case sensitive");
      }),
  },
  {
    name: "operations on many keys at once each keep their own result",
    run: (h) =>
      withStore(h, async (store) => {
        // Issued together, so a store that batches across keys sends them
        // in shared statements: every result must still be its own.
        const keys = Array.from({ length: 24 }, (_, i) => `many-${i}`);
        for (const key of keys.slice(12)) await writeChain(store, key, 2);
        const firsts = await Promise.all(
          keys.map((key, i) => store.compareAndSet(key, v(i < 12 && i % 3 !== 2 ? 0n : 5n, "x"))),
        );
        assertEquals(
          firsts,
          keys.map((_, i) => i < 12 && i % 3 !== 2 ? "committed" : "mismatch"),
          "first writes commit; writes at a wrong seqno mismatch, each on its own",
        );
        // Three racers per key for the same next seqno: one winner per key.
        const written = keys.filter((_, i) => i < 12 ? i % 3 !== 2 : true);
        const next = await Promise.all(
          written.flatMap((key, i) => {
            const seqno = i < 8 ? 1n : 2n;
            return [0, 1, 2].map((r) => store.compareAndSet(key, v(seqno, `${key}/${r}`)));
          }),
        );
        for (let i = 0; i < written.length; i++) {
          const won = next.slice(i * 3, i * 3 + 3).filter((r) => r === "committed").length;
          assertEquals(won, 1, `one winner on ${written[i]}`);
        }
        const heads = await Promise.all(keys.map((key) => store.head(key)));
        for (const [i, key] of keys.entries()) {
          const expected = i < 12 ? (i % 3 !== 2 ? 1n : undefined) : 2n;
          assertEquals(heads[i]?.seqno, expected, `head of ${key}`);
        }
      }),
  },
  {
    name: "a 10 KiB payload and an empty payload round-trip exactly",
    run: (h) =>
      withStore(h, async (store) => {
        const big = new Uint8Array(10 * 1024);
        for (let i = 0; i < big.length; i++) big[i] = (i * 7919 + (i >> 8)) & 0xff;
        const empty = new Uint8Array(0);
        assertEquals(await store.compareAndSet("big", { seqno: 0n, data: big }), "committed");
        assertEquals(await store.compareAndSet("empty", { seqno: 0n, data: empty }), "committed");
        const gotBig = await store.head("big");
        const gotEmpty = await store.head("empty");
        assertEquals(gotBig, { seqno: 0n, data: big }, "10 KiB");
        assertEquals(gotEmpty, { seqno: 0n, data: empty }, "empty");
        assert(gotBig?.data.constructor === Uint8Array, "data is a plain Uint8Array");
        assertEquals(typeof gotBig?.seqno, "bigint", "seqno is a bigint");
        big[0] ^= 0xff; // the store must hold its own copy
        assertEquals((await store.head("big"))?.data[0], big[0] ^ 0xff, "stored bytes unchanged");
      }),
  },
  {
    name: "seqnos near 2^63 - 1 and above 2^53 round-trip exactly",
    run: (h) =>
      withStore(
        h,
        async (store) => {
          assertEquals(
            await store.compareAndSet("top", v(MAX_SEQNO, "last")),
            "committed",
            "write 2^63 - 1",
          );
          assertEquals(await store.head("top"), v(MAX_SEQNO, "last"), "head at 2^63 - 1");
          assertEquals(
            await store.scan("top", MAX_SEQNO),
            [v(MAX_SEQNO, "last")],
            "scan from the top",
          );
          assertEquals(await store.truncate("top", MAX_SEQNO), 1, "truncate to the top");
          await assertRejects(
            () => store.compareAndSet("top", v(MAX_SEQNO + 1n, "over")),
            RangeError,
            "is outside",
          );
          const above53 = 2n ** 53n + 1n; // not representable as a double
          assertEquals(
            await store.compareAndSet("mid", v(above53, "exact")),
            "committed",
            "write 2^53 + 1",
          );
          assertEquals((await store.head("mid"))?.seqno, above53, "2^53 + 1 exactly");
          assertEquals(
            await store.compareAndSet("mid", v(2n ** 53n + 2n, "next")),
            "committed",
            "write 2^53 + 2",
          );
          assertEquals((await store.scan("mid", 0n)).map((x) => x.seqno), [
            2n ** 53n,
            above53,
            above53 + 1n,
          ]);
        },
        new Map([
          ["top", [v(MAX_SEQNO - 1n, "penultimate")]],
          ["mid", [v(2n ** 53n, "seed")]],
        ]),
      ),
  },
  {
    name: "bad input rejects before any I/O and leaves the store unchanged",
    run: (h) =>
      withStore(h, async (store) => {
        await writeChain(store, "k", 2);
        const before = await snapshot(store);
        for (const bad of BAD_INPUTS) {
          const error = await assertRejects(
            () => bad.call(store),
            bad.error,
            bad.includes,
            bad.what,
          );
          assert(
            error.message.startsWith("Cannot "),
            `${bad.what}: message names the action: ${error.message}`,
          );
        }
        assertEquals(await snapshot(store), before, "store unchanged");
        assertEquals(
          await store.compareAndSet("k", v(2n, "after")),
          "committed",
          "store still usable",
        );
      }),
  },
  {
    name: "listKeys lists exactly the keys with data",
    run: (h) =>
      withStore(h, async (store) => {
        assertEquals(await keysOf(store), [], "empty store");
        const keys = Array.from({ length: 25 }, (_, i) => `key-${String(i).padStart(2, "0")}`);
        for (const key of keys) await writeChain(store, key, 2);
        await store.compareAndSet("never", v(3n, "x")); // mismatch: no data
        await store.truncate("key-00", 1n); // still has its head
        assertEquals(await keysOf(store), keys, "every key once");
      }),
  },
  {
    name: "concurrent writers on one key: one winner per seqno, no gaps, no errors",
    run: (h) =>
      withStore(h, async (store) => {
        const report = await raceOnOneKey(store, "contended", {
          writers: h.writers ?? 8,
          untilSeqno: h.raceUntil ?? 150n,
        });
        assertEquals(report.head, h.raceUntil ?? 150n, "reached the target");
        assertEquals(report.errors, 0, "errors");
      }),
  },
  {
    name: "update() from many concurrent callers loses no increment",
    run: (h) =>
      withStore(h, async (store) => {
        const increment = (current: VersionedData | undefined) =>
          bytes(String(Number(current ? new host.TextDecoder().decode(current.data) : "0") + 1));
        const results = await Promise.all(
          Array.from({ length: 40 }, () => update(store, "counter", increment)),
        );
        assert(results.every((r) => r.committed), "every update committed");
        const head = await store.head("counter");
        assertEquals(head?.seqno, 39n, "one version per update");
        assertEquals(new host.TextDecoder().decode(head!.data), "40", "no lost increment");
        const skipped = await update(store, "counter", () => undefined);
        assertEquals(skipped.committed, false, "fn declined");
        assertEquals(skipped.version?.seqno, 39n, "the head it saw");
        assertEquals((await store.head("counter"))?.seqno, 39n, "nothing written");
      }),
  },
  {
    name:
      "watch yields each version from `from` once, in order, then new ones, and ends on break, abort and close",
    run: (h) =>
      withStore(h, async (store) => {
        const poll = { pollIntervalMs: 20 };
        await writeChain(store, "w", 5);
        const replay = watch(store, "w", { from: 2n, ...poll });
        assertEquals(
          await take(replay, 3, "replay from 2"),
          [2, 3, 4].map((i) => v(BigInt(i), `w#${i}`)),
        );
        const pending = replay.next();
        assertEquals(await store.compareAndSet("w", v(5n, "five")), "committed", "write 5");
        assertEquals(await within(pending, "version 5 after it committed"), {
          done: false,
          value: v(5n, "five"),
        });
        assertEquals(await replay.return!(), { done: true, value: undefined }, "return()");
        assertEquals(await replay.next(), { done: true, value: undefined }, "after return()");

        const fromHead = watch(store, "w", poll);
        assertEquals(await take(fromHead, 1, "default from"), [v(5n, "five")], "head first");
        await store.compareAndSet("w", v(6n, "six"));
        assertEquals(await take(fromHead, 1, "after the head"), [v(6n, "six")]);
        await fromHead.return!();

        // Whether the watcher reads the empty head before or after version 0
        // commits, version 0 comes first.
        const empty = watch(store, "fresh", poll);
        const first = empty.next();
        await writeChain(store, "fresh", 1);
        assertEquals(await within(first, "a watcher of an empty key"), {
          done: false,
          value: v(0n, "fresh#0"),
        }, "an empty key starts at version 0");
        await store.compareAndSet("fresh", v(1n, "fresh#1"));
        assertEquals(await take(empty, 1, "after version 0"), [v(1n, "fresh#1")]);
        await empty.return!();

        await writeChain(store, "cut", 6);
        await store.truncate("cut", 4n);
        const truncated = await assertRejects(
          async () => {
            for await (const _ of watch(store, "cut", { from: 1n, ...poll })) {
              throw new ConformanceFailure("yielded a version after a truncated one");
            }
          },
          TruncatedError,
          "versions from seqno 1 were truncated",
        ) as TruncatedError;
        assertEquals([truncated.seqno, truncated.available], [1n, 4n], "first missing, available");
        const seen: VersionedData[] = [];
        for await (const version of watch(store, "cut", { from: 4n, ...poll })) {
          seen.push(version);
          if (version.seqno === 5n) break;
        }
        assertEquals(seen.map((x) => x.seqno), [4n, 5n], "from the first version kept");

        const aborter = abortable();
        const aborted = watch(store, "w", { from: 7n, signal: aborter.signal, ...poll });
        const waiting = aborted.next();
        await new Promise<void>((resolve) => host.setTimeout(resolve, 30));
        aborter.abort();
        assertEquals(await within(waiting, "a watcher after abort"), {
          done: true,
          value: undefined,
        });
        const before = abortable();
        before.abort();
        assertEquals(
          await watch(store, "w", { signal: before.signal }).next(),
          { done: true, value: undefined },
          "a signal aborted before the first next()",
        );

        assert(
          (() => {
            try {
              watch(store, "", poll);
              return false;
            } catch (error) {
              return error instanceof RangeError;
            }
          })(),
          "an empty key throws a RangeError at the call",
        );
        assert(
          (() => {
            try {
              watch(store, "w", { pollIntervalMs: 0 });
              return false;
            } catch (error) {
              return error instanceof RangeError;
            }
          })(),
          "pollIntervalMs 0 throws a RangeError at the call",
        );
      }),
  },
  {
    name: "compareAndSetMany appends to every key or to none",
    run: (h) =>
      withMany(h, async (store, many) => {
        await writeChain(store, "a", 2); // head 1
        await writeChain(store, "b", 1); // head 0
        assertEquals(
          await many([{ key: "a", next: v(2n, "a2") }, { key: "b", next: v(1n, "b1") }]),
          "committed",
          "both conditions hold",
        );
        assertEquals((await store.head("a"))?.seqno, 2n, "a advanced");
        assertEquals((await store.head("b"))?.seqno, 1n, "b advanced");
        assertEquals(
          await many([
            { key: "a", next: v(3n, "a3") },
            { key: "b", next: v(1n, "stale") },
            { key: "fresh", next: v(0n, "f0") },
          ]),
          "mismatch",
          "b's condition fails",
        );
        assertEquals(await store.head("a"), v(2n, "a2"), "a untouched");
        assertEquals(await store.head("b"), v(1n, "b1"), "b untouched");
        assertEquals(await store.head("fresh"), undefined, "fresh untouched");
        // Nothing of the failed call stays behind: the fresh key still takes version 0.
        assertEquals(await store.compareAndSet("fresh", v(0n, "f0")), "committed", "fresh later");
        assertEquals(
          await many([{ key: "new1", next: v(0n, "n") }, { key: "new2", next: v(0n, "m") }]),
          "committed",
          "first writes of two keys",
        );
        assertEquals(
          await many([{ key: "new1", next: v(0n, "again") }, { key: "c", next: v(0n, "c") }]),
          "mismatch",
          "a first write of a key with data",
        );
        assertEquals(await store.head("c"), undefined, "c untouched");
        assertEquals(await many([{ key: "solo", next: v(0n, "s") }]), "committed", "one entry");
        assertEquals(await keysOf(store), ["a", "b", "fresh", "new1", "new2", "solo"], "keys");
      }),
  },
  {
    name: "compareAndSetMany rejects bad input before any I/O",
    run: (h) =>
      withMany(h, async (store, many) => {
        await writeChain(store, "k", 1);
        const before = await snapshot(store);
        const tooMany = Array.from(
          { length: MAX_MANY_ENTRIES + 1 },
          (_, i): CasEntry => ({ key: `k${i}`, next: v(0n, "x") }),
        );
        const bad: [string, () => Promise<CasResult>, new (...args: never[]) => Error, string][] = [
          ["empty list", () => many([]), RangeError, "must not be empty"],
          ["too many", () => many(tooMany), RangeError, "above the limit"],
          [
            "a key twice",
            () => many([{ key: "k", next: v(1n, "x") }, { key: "k", next: v(1n, "y") }]),
            RangeError,
            "appears twice",
          ],
          [
            "a bad entry",
            () => many([{ key: "k", next: v(1n, "x") }, { key: "", next: v(0n, "y") }]),
            RangeError,
            "must not be empty",
          ],
          [
            "payloads too large together",
            () =>
              many([
                { key: "k", next: { seqno: 1n, data: new Uint8Array(MAX_DATA_BYTES / 2 + 1) } },
                { key: "j", next: { seqno: 0n, data: new Uint8Array(MAX_DATA_BYTES / 2 + 1) } },
              ]),
            RangeError,
            "together",
          ],
          ["not an array", () => many("k" as unknown as CasEntry[]), TypeError, "an array"],
        ];
        for (const [what, call, type, includes] of bad) {
          const error = await assertRejects(call, type, includes, what);
          assert(error.message.startsWith("Cannot "), `${what}: ${error.message}`);
        }
        assertEquals(await snapshot(store), before, "store unchanged");
      }),
  },
  {
    name: "compareAndSetMany transfers under contention conserve the total",
    run: (h) =>
      withMany(h, async (store, many) => {
        // Four accounts of 100 each; writers move one unit between two of
        // them with compareAndSetMany, or touch one alone with
        // compareAndSet (a no-op rewrite), racing. Any partial commit
        // breaks the total.
        const accounts = ["acc0", "acc1", "acc2", "acc3"];
        for (const key of accounts) {
          assertEquals(await store.compareAndSet(key, v(0n, "100")), "committed", key);
        }
        const value = (version: VersionedData | undefined) =>
          Number(new host.TextDecoder().decode(version!.data));
        let committed = 0;
        const writer = async (w: number) => {
          for (let i = 0; i < 25; i++) {
            const from = accounts[(w + i) % 4];
            const to = accounts[(w + i + 1 + (i % 3)) % 4];
            const [a, b] = [await store.head(from), await store.head(to)];
            if (i % 5 === 4) {
              await store.compareAndSet(from, v(a!.seqno + 1n, String(value(a))));
              continue;
            }
            const result = await many([
              { key: from, next: v(a!.seqno + 1n, String(value(a) - 1)) },
              { key: to, next: v(b!.seqno + 1n, String(value(b) + 1)) },
            ]);
            if (result === "committed") committed++;
          }
        };
        await Promise.all(Array.from({ length: h.writers ?? 8 }, (_, w) => writer(w)));
        let total = 0;
        for (const key of accounts) total += value(await store.head(key));
        assertEquals(total, 400, "units created or destroyed");
        assert(committed > 0, "no transfer committed");
      }),
  },
  {
    name: "acquireLease: exclusive while renewed, handed over on release, tokens rise",
    run: (h) =>
      withStore(h, async (store) => {
        const ttlMs = 300;
        const a = await acquireLease(store, "lease", { holder: "a", ttlMs });
        const giveUp = new host.AbortController();
        const timer = host.setTimeout(() => giveUp.abort(new Error("b waited 10 s")), 10_000);
        let held = false;
        const waiting = acquireLease(store, "lease", {
          holder: "b",
          ttlMs,
          pollIntervalMs: 20,
          signal: giveUp.signal,
        });
        waiting.then(() => held = true, () => {});
        try {
          await sleep(2 * ttlMs);
          assert(!held, "b acquired while a renewed its lease");
          assert(!a.signal.aborted, `a lost its lease: ${String(a.signal.reason)}`);
          await a.release();
          assert(a.signal.aborted, "release aborts the holder's signal");
          const b = await waiting;
          assert(b.token > a.token, `token ${b.token} after ${a.token}`);
          assertEquals(b.holder, "b", "holder");
          await b.release();
        } finally {
          host.clearTimeout(timer);
        }
        // The signal reads the clock: after a pause no timer could run in,
        // it reads aborted (a runtime whose AbortSignal cannot be extended
        // would fail here).
        const c = await acquireLease(store, "lease", { holder: "c", ttlMs: 100 });
        const until = host.performance.now() + 150;
        while (host.performance.now() < until) { /* a pause */ }
        assert(c.signal.aborted, "the signal reads aborted after its deadline");
        await c.release();
        await store.compareAndSet("foreign", v(0n, "not a lease"));
        await assertRejects(
          () => acquireLease(store, "foreign", { holder: "a", ttlMs }),
          TypeError,
          'Cannot acquire lease "foreign": version 0 is not a lease record',
        );
      }),
  },
  {
    name: "watch ends when the store closes",
    run: async (h) => {
      const store = await h.open();
      const watcher = watch(store, "k", { pollIntervalMs: 20 });
      const first = watcher.next();
      await store.compareAndSet("k", v(0n, "zero"));
      assertEquals(await within(first, "version 0"), { done: false, value: v(0n, "zero") });
      const waiting = watcher.next();
      await within(store.close(), "close");
      assertEquals(await within(waiting, "a watcher after close"), {
        done: true,
        value: undefined,
      });
    },
  },
  {
    name: "a closed store rejects further operations",
    run: async (h) => {
      const store = await h.open();
      await store.close();
      await assertRejects(() => store.head("k"), TypeError, "closed");
      await assertRejects(() => store.compareAndSet("k", v(0n, "x")), TypeError, "closed");
      await store.close(); // idempotent
    },
  },
];

// Runs a compareAndSetMany case: fails when the backend should have the
// method and does not; passes without running when the harness says it has
// none.
async function withMany(
  h: ConformanceHarness,
  fn: (store: Consensus, many: (entries: CasEntry[]) => Promise<CasResult>) => Promise<void>,
): Promise<void> {
  if (h.many === false) return;
  await withStore(h, async (store) => {
    const method = store.compareAndSetMany;
    assert(
      typeof method === "function",
      "compareAndSetMany is missing; set `many: false` in the harness if the backend has none",
    );
    await fn(store, (entries) => method.call(store, entries));
  });
}

/**
 * Registers every conformance case with a test runner.
 *
 * @param test The runner's registration function (`Deno.test`, Bun's `test`, `node:test`'s `test`).
 * @param name A prefix naming the backend.
 * @param harness How to open the backend.
 *
 * @example With Deno
 * ```ts ignore
 * import { MemoryConsensus } from "@persist/consensus";
 * import { runConformance } from "@persist/consensus/testing";
 *
 * runConformance(Deno.test, "memory", {
 *   open: (initial) => Promise.resolve(new MemoryConsensus({ initial: initial?.entries() })),
 * });
 * ```
 */
export function runConformance(
  test: (name: string, fn: () => Promise<void>) => unknown,
  name: string,
  harness: ConformanceHarness,
): void {
  for (const testCase of conformanceCases) {
    test(`${name}: ${testCase.name}`, () => testCase.run(harness));
  }
}
