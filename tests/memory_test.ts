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
