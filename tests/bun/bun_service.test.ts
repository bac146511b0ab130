// Starts examples/bun_service.ts with `bun run` as a child process on a free
// loopback port (once with Bun.SQL through connect(), once with porsager),
// makes a few requests, and stops it; every wait is bounded.
import { expect } from "bun:test";
import { DATABASE_URL, dbTest } from "./_db.ts";

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

for (const driver of ["bun-sql", "postgres-js"]) {
  dbTest(`examples/bun_service.ts serves counters over HTTP (${driver})`, async () => {
    const child = Bun.spawn([process.execPath, "run", "examples/bun_service.ts"], {
      env: { ...process.env, DATABASE_URL: DATABASE_URL!, PORT: "0", DRIVER: driver },
      stdout: "pipe",
      stderr: "inherit",
    });
    const kill = setTimeout(() => child.kill("SIGKILL"), 50_000);
    try {
      const line = await firstLine(child.stdout, 20_000);
      expect(line).toMatch(/^listening on http:\/\/127\.0\.0\.1:\d+/);
      const base = line.split(" ")[2];
      const key = `bun-${driver}-${crypto.randomUUID()}`;
      const get = async () => (await (await fetch(`${base}/counter/${key}`)).json()).value;
      expect(await get()).toBe("0");
      const responses = await Promise.all(
        Array.from({ length: 8 }, () => fetch(`${base}/counter/${key}`, { method: "POST" })),
      );
      for (const response of responses) expect(response.status).toBe(200);
      expect(await get()).toBe("8");
      expect((await fetch(`${base}/nowhere`)).status).toBe(404);
    } finally {
      child.kill("SIGTERM");
      await child.exited;
      clearTimeout(kill);
    }
  });
}
