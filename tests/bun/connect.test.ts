// The Bun entry point: connect() opens a store on a Bun.SQL client it owns.
import { expect, test } from "bun:test";
import { ConsensusError } from "../../mod.ts";
import { connect } from "../../src/runtime/bun.ts";
import { dropAndRecreate } from "../../src/testing/mod.ts";
import { DATABASE_URL, dbTest } from "./_db.ts";

dbTest("bun connect: opens, creates its table, round-trips, closes its client", async () => {
  const store = await connect(DATABASE_URL!, { table: "bun_connect_test", max: 4 });
  try {
    await dropAndRecreate(store);
    expect(store.engine).toBe("postgres");
    const data = new Uint8Array([1, 2, 3]);
    expect(await store.compareAndSet("k", { seqno: 0n, data })).toBe("committed");
    expect(await store.head("k")).toEqual({ seqno: 0n, data });
  } finally {
    await store.close();
  }
  // The client is closed with the store: further calls reject as closed.
  await expect(store.head("k")).rejects.toThrow("closed");
});

test("bun connect: a password in the URL never appears in the error", async () => {
  const server = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
  const port = server.port;
  server.stop(true);
  const url = `postgres://app:hunter2-secret@127.0.0.1:${port}/app`;
  const error = await connect(url, { timeoutMs: 3000, connectionTimeout: 2 }).catch((e) => e);
  expect(error).toBeInstanceOf(ConsensusError);
  // Open only reads before it serves: its failure changed nothing.
  expect(error.determinate).toBe(true);
  expect(error.message).toStartWith("Cannot open consensus store");
  let chain = "";
  for (let e = error; e; e = e.cause) chain += `${String(e)} ${e.message ?? ""}\n`;
  expect(chain).not.toContain("hunter2");
});

dbTest("bun connect: a wrong password fails without echoing it", async () => {
  const url = new URL(DATABASE_URL!);
  url.username = "no_such_role_here";
  url.password = "hunter2-secret";
  const error = await connect(url.href, { timeoutMs: 5000 }).catch((e) => e);
  expect(error).toBeInstanceOf(ConsensusError);
  let chain = "";
  for (let e = error; e; e = e.cause) chain += `${String(e)} ${e.message ?? ""}\n`;
  expect(chain).not.toContain("hunter2");
});

test("bun connect: bad arguments are TypeError and RangeError", async () => {
  await expect(connect(42 as unknown as string)).rejects.toThrow(TypeError);
  await expect(connect("postgres://localhost/x", { max: 0 })).rejects.toThrow(RangeError);
});
