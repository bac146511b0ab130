// Starts examples/deno_service.ts as a child process on a free loopback
// port, makes a few requests, and stops it; every wait is bounded.
import { assertEquals, assertMatch } from "@std/assert";
import { DATABASE_URL, dbTest } from "./_db.ts";
import { importMapArgs } from "../tools/_jsr.ts";

const STARTUP_MS = 30_000;

async function firstLine(stream: ReadableStream<Uint8Array>, ms: number): Promise<string> {
  const reader = stream.pipeThrough(new TextDecoderStream()).getReader();
  let text = "";
  const deadline = Date.now() + ms;
  try {
    while (!text.includes("\n")) {
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`no output within ${ms} ms`);
      let timer: ReturnType<typeof setTimeout> | undefined;
      const timeout = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`no output within ${ms} ms`)), left);
      });
      const { value, done } = await Promise.race([reader.read(), timeout]).finally(() =>
        clearTimeout(timer)
      );
      if (done) throw new Error(`the service exited before it listened: ${text}`);
      text += value;
    }
  } finally {
    reader.releaseLock();
  }
  return text.split("\n")[0];
}

dbTest("examples/deno_service.ts serves counters over HTTP", async () => {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", ...await importMapArgs(), "examples/deno_service.ts"],
    env: { DATABASE_URL: DATABASE_URL!, PORT: "0" },
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const kill = setTimeout(() => child.kill("SIGKILL"), 60_000);
  try {
    const line = await firstLine(child.stdout, STARTUP_MS);
    assertMatch(line, /^listening on http:\/\/127\.0\.0\.1:\d+/);
    const base = line.split(" ")[2];
    const key = `deno-${crypto.randomUUID()}`;
    const get = async () => (await (await fetch(`${base}/counter/${key}`)).json()).value;
    assertEquals(await get(), "0");
    // Concurrent increments: the compare-and-set loop loses no update.
    const responses = await Promise.all(
      Array.from({ length: 8 }, () => fetch(`${base}/counter/${key}`, { method: "POST" })),
    );
    for (const response of responses) {
      assertEquals(response.status, 200);
      await response.body?.cancel();
    }
    assertEquals(await get(), "8");
    const missing = await fetch(`${base}/nowhere`);
    assertEquals(missing.status, 404);
    await missing.body?.cancel();
  } finally {
    child.kill("SIGTERM");
    const status = await child.status;
    clearTimeout(kill);
    await child.stdout.cancel().catch(() => {});
    assertEquals(status.success || status.signal === "SIGTERM", true, `exit: ${status.code}`);
  }
});
