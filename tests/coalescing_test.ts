// The coalescing connection of `./deno` (src/runtime/_coalescing.ts) over an
// in-memory fake of a Deno.Conn's raw operations: no socket, no driver.
import { assert, assertEquals, assertRejects } from "@std/assert";
import { CoalescingConn, type RawConn } from "../src/runtime/_coalescing.ts";

/** A raw connection in memory: records every call; reads take what `deliver` queued. */
class FakeConn implements RawConn {
  readonly log: string[] = [];
  readonly writes: Uint8Array[] = [];
  /** Bytes one raw write accepts at most (a short write). */
  writeLimit = Infinity;
  failWrites: Error | undefined;
  #incoming: Uint8Array[] = [];
  #eof = false;
  #waiting: (() => void) | undefined;

  write(p: Uint8Array): Promise<number> {
    if (this.failWrites) return Promise.reject(this.failWrites);
    const n = Math.min(p.length, this.writeLimit);
    this.writes.push(p.slice(0, n));
    this.log.push(`write ${n}`);
    return Promise.resolve(n);
  }

  async read(p: Uint8Array): Promise<number | null> {
    this.log.push(`read ${p.length}`);
    while (this.#incoming.length === 0 && !this.#eof) {
      await new Promise<void>((resolve) => this.#waiting = resolve);
    }
    const chunk = this.#incoming.shift();
    if (chunk === undefined) return null;
    const n = Math.min(p.length, chunk.length);
    p.set(chunk.subarray(0, n));
    if (n < chunk.length) this.#incoming.unshift(chunk.subarray(n));
    return n;
  }

  close(): void {
    this.log.push("close");
  }

  closeWrite(): Promise<void> {
    this.log.push("closeWrite");
    return Promise.resolve();
  }

  /** Queues bytes for the raw reads; each chunk is at most one raw read's worth. */
  deliver(...chunks: number[][]): void {
    this.#incoming.push(...chunks.map((c) => new Uint8Array(c)));
    this.#waiting?.();
  }

  end(): void {
    this.#eof = true;
    this.#waiting?.();
  }

  get rawReads(): number {
    return this.log.filter((entry) => entry.startsWith("read")).length;
  }

  sent(): number[] {
    return this.writes.flatMap((w) => [...w]);
  }
}

const bytes = (...xs: number[]) => new Uint8Array(xs);
const macrotask = () => new Promise((resolve) => setTimeout(resolve, 0));

Deno.test("coalescing: writes are gathered and sent as one write before the next read", async () => {
  const raw = new FakeConn();
  const conn = new CoalescingConn(raw);
  assertEquals(await conn.write(bytes(1, 2)), 2);
  assertEquals(await conn.write(bytes(3)), 1);
  assertEquals(await conn.write(bytes(4, 5, 6)), 3);
  assertEquals(raw.writes.length, 0, "nothing sent yet");
  assertEquals(conn.pendingBytes, 6);
  raw.deliver([9]);
  const into = new Uint8Array(4);
  assertEquals(await conn.read(into), 1);
  assertEquals(raw.log.slice(0, 2), ["write 6", "read 65536"]);
  assertEquals(raw.sent(), [1, 2, 3, 4, 5, 6]);
  assertEquals(conn.pendingBytes, 0);
  assertEquals(conn.flushScheduled, false, "the read's flush cleared the timer");
  conn.close();
});

Deno.test("coalescing: writes left alone go out on the next macrotask, in one write", async () => {
  const raw = new FakeConn();
  const conn = new CoalescingConn(raw);
  await conn.write(bytes(1));
  await conn.write(bytes(2));
  assert(conn.flushScheduled);
  assertEquals(raw.writes.length, 0, "not on a microtask");
  await macrotask();
  await macrotask();
  assertEquals(raw.log, ["write 2"]);
  assertEquals(conn.flushScheduled, false);
  conn.close();
});

Deno.test("coalescing: close sends what is buffered, then closes; later use throws", async () => {
  const raw = new FakeConn();
  const conn = new CoalescingConn(raw);
  await conn.write(bytes(0x58, 0, 0, 0, 4)); // Terminate
  conn.close();
  assert(conn.closed);
  await macrotask();
  assertEquals(raw.log, ["write 5", "close"]);
  assertEquals(raw.sent(), [0x58, 0, 0, 0, 4]);
  await assertRejects(() => conn.write(bytes(1)), Deno.errors.BadResource);
  await assertRejects(() => conn.read(new Uint8Array(1)), Deno.errors.BadResource);
  conn.close(); // a second close does nothing
  assertEquals(raw.log.filter((e) => e === "close").length, 1);
});

Deno.test("coalescing: an idle connection closes at once", () => {
  const raw = new FakeConn();
  new CoalescingConn(raw).close();
  assertEquals(raw.log, ["close"]);
});

Deno.test("coalescing: past flushAt the buffer is sent without waiting, short writes completed", async () => {
  const raw = new FakeConn();
  raw.writeLimit = 1000; // the socket takes 1,000 bytes per write
  const conn = new CoalescingConn(raw);
  await conn.write(new Uint8Array(40 * 1024).fill(1));
  assertEquals(raw.writes.length, 0);
  await conn.write(new Uint8Array(30 * 1024).fill(2));
  // Awaiting the write that crossed 64 KiB awaited the send itself.
  assertEquals(conn.pendingBytes, 0);
  assertEquals(raw.sent().length, 70 * 1024);
  assertEquals(raw.writes.length, Math.ceil(70 * 1024 / 1000));
  assertEquals(raw.sent()[40 * 1024 - 1], 1);
  assertEquals(raw.sent()[40 * 1024], 2);
  conn.close();
});

Deno.test("coalescing: small reads are served from one read-ahead", async () => {
  const raw = new FakeConn();
  const conn = new CoalescingConn(raw);
  raw.deliver(Array.from({ length: 100 }, (_, i) => i));
  const seen: number[] = [];
  for (let i = 0; i < 20; i++) {
    const header = new Uint8Array(5);
    assertEquals(await conn.read(header), 5);
    seen.push(...header);
  }
  assertEquals(seen, Array.from({ length: 100 }, (_, i) => i));
  assertEquals(raw.rawReads, 1, "one raw read served twenty reads");
  assertEquals(conn.readAheadBytes, 0);
  conn.close();
});

Deno.test("coalescing: partial reads return what is there, in order, across raw reads", async () => {
  const raw = new FakeConn();
  const conn = new CoalescingConn(raw, { readAhead: 8 });
  raw.deliver([1, 2, 3], [4, 5, 6, 7, 8, 9, 10, 11, 12]);
  const a = new Uint8Array(5);
  assertEquals(await conn.read(a), 3, "only the first raw read's bytes");
  assertEquals([...a.subarray(0, 3)], [1, 2, 3]);
  const b = new Uint8Array(2);
  assertEquals(await conn.read(b), 2);
  assertEquals([...b], [4, 5]);
  assertEquals(conn.readAheadBytes, 6, "4..11 were read ahead, 4 and 5 taken");
  const c = new Uint8Array(7);
  assertEquals(await conn.read(c), 6, "what is ahead, without another raw read");
  assertEquals([...c.subarray(0, 6)], [6, 7, 8, 9, 10, 11]);
  // A read at least as large as the read-ahead goes straight to the socket.
  const big = new Uint8Array(8);
  assertEquals(await conn.read(big), 1);
  assertEquals(big[0], 12);
  assertEquals(raw.log.filter((e) => e.startsWith("read")), ["read 8", "read 8", "read 8"]);
  assertEquals(await conn.read(new Uint8Array(0)), 0);
  raw.end();
  assertEquals(await conn.read(new Uint8Array(3)), null);
  conn.close();
});

Deno.test("coalescing: concurrent reads run one at a time in call order", async () => {
  const raw = new FakeConn();
  const conn = new CoalescingConn(raw, { readAhead: 4 });
  const first = new Uint8Array(2), second = new Uint8Array(2), third = new Uint8Array(2);
  const reads = [conn.read(first), conn.read(second), conn.read(third)];
  raw.deliver([1, 2, 3, 4], [5, 6]);
  assertEquals(await Promise.all(reads), [2, 2, 2]);
  assertEquals([...first, ...second, ...third], [1, 2, 3, 4, 5, 6]);
  conn.close();
});

Deno.test("coalescing: a failed send is thrown by the next write, read and flush", async () => {
  const raw = new FakeConn();
  const conn = new CoalescingConn(raw);
  raw.failWrites = new Error("connection reset");
  await conn.write(bytes(1));
  await macrotask();
  await macrotask();
  await assertRejects(() => conn.write(bytes(2)), Error, "connection reset");
  await assertRejects(() => conn.read(new Uint8Array(1)), Error, "connection reset");
  await assertRejects(() => conn.flush(), Error, "connection reset");
});

Deno.test("coalescing: the streams go through the same buffers", async () => {
  const raw = new FakeConn();
  const conn = new CoalescingConn(raw);
  const writer = conn.writable.getWriter();
  await writer.write(bytes(1, 2));
  await writer.write(bytes(3));
  assertEquals(raw.writes.length, 0);
  assertEquals(conn.pendingBytes, 3);
  raw.deliver([7, 8, 9]);
  const reader = conn.readable.getReader();
  const { value } = await reader.read();
  assertEquals([...value!], [7, 8, 9]);
  assertEquals(raw.log.slice(0, 1), ["write 3"], "the read flushed the writes first");
  raw.end();
  assertEquals((await reader.read()).done, true);
  assert(conn.closed, "end of stream closes");
  writer.releaseLock();
});

Deno.test("coalescing: release flushes, and refuses when bytes were read ahead", async () => {
  const raw = new FakeConn();
  const conn = new CoalescingConn(raw);
  await conn.write(bytes(1));
  await conn.release();
  assertEquals(raw.log, ["write 1"]);

  const ahead = new CoalescingConn(raw);
  raw.deliver([1, 2, 3]);
  await ahead.read(new Uint8Array(1));
  assertEquals(ahead.readAheadBytes, 2);
  await assertRejects(() => ahead.release(), TypeError, "2 bytes arrived before the handshake");
});
