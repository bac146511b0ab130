import { assertEquals, assertThrows } from "@std/assert";
import { MemoryConsensus } from "../mod.ts";
import { runConformance } from "../src/testing/mod.ts";

runConformance(Deno.test, "memory", {
  open: (initial) => Promise.resolve(new MemoryConsensus({ initial: initial?.entries() })),
  writers: 16,
  raceUntil: 500n,
});

Deno.test("memory: seeding rejects a log with a gap", () => {
  assertThrows(
    () =>
      new MemoryConsensus({
        initial: [["k", [{ seqno: 0n, data: new Uint8Array() }, {
          seqno: 2n,
          data: new Uint8Array(),
        }]]],
      }),
    RangeError,
    "jumps from seqno 0 to 2",
  );
});

Deno.test("memory: listKeys pages through a snapshot", async () => {
  const store = new MemoryConsensus();
  for (const key of ["b", "a", "c"]) {
    await store.compareAndSet(key, { seqno: 0n, data: new Uint8Array([1]) });
  }
  const keys: string[] = [];
  for await (const key of store.listKeys()) keys.push(key);
  assertEquals(keys, ["a", "b", "c"]);
});

Deno.test("memory: stores a copy of the bytes as they were at the call, and hands out copies", async () => {
  const data = Uint8Array.of(1, 2, 3);
  const seed = Uint8Array.of(7);
  const store = new MemoryConsensus({ initial: [["seeded", [{ seqno: 0n, data: seed }]]] });
  seed[0] = 0;
  // Changed before the promise is awaited: what counts is the call.
  const outcome = store.compareAndSet("k", { seqno: 0n, data });
  data[0] = 9;
  assertEquals(await outcome, "committed");
  data.fill(9);

  const head = await store.head("k");
  assertEquals(head?.data, Uint8Array.of(1, 2, 3));
  head!.data.fill(0);
  const [scanned] = await store.scan("k", 0n);
  assertEquals(scanned.data, Uint8Array.of(1, 2, 3));
  scanned.data.fill(0);
  assertEquals((await store.head("k"))?.data, Uint8Array.of(1, 2, 3));
  assertEquals((await store.scan("k", 0n))[0].data, Uint8Array.of(1, 2, 3));
  assertEquals((await store.head("seeded"))?.data, Uint8Array.of(7));
});
