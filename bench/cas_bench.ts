/**
 * `deno task bench:micro` (or `deno bench -A bench/` with `DATABASE_URL`
 * set): per-operation latency of the library beside the raw driver running
 * the identical statement, one operation at a time, so that `deno bench`
 * reports the library's overhead directly as a ratio to its baseline.
 *
 * Throughput under concurrency, contention and the pgbench ceiling are in
 * `bench/report.ts` (`deno task bench`).
 *
 * @module
 */
import { postgresJsTarget, TABLE, type Target } from "./_targets.ts";

const url = Deno.env.get("DATABASE_URL");
const target: Target | undefined = url ? await postgresJsTarget(url, 4) : undefined;
if (!target) {
  console.error(
    "DATABASE_URL is not set: the benchmarks are skipped (run `deno task bench:micro`)",
  );
}
const ignore = target === undefined;
const payload = new Uint8Array(8);
const run = `${Date.now().toString(36)}`;

if (target) {
  const postgres = (await import("postgres")).default;
  const admin = postgres(url!, { max: 1, onnotice: () => {} });
  await admin.unsafe(
    `INSERT INTO ${TABLE} (shard, sequence_number, data) VALUES ($1, 0, '\\x00'), ($2, 0, '\\x00')`,
    [`lib-${run}`, `raw-${run}`],
  );
  await admin.end();
}

let libHead = 0n;
let rawHead = 0n;

Deno.bench({
  name: "raw driver: head then CAS",
  group: "head+CAS",
  baseline: true,
  ignore,
  async fn() {
    const key = `raw-${run}`;
    await target!.rawHead(key);
    await target!.rawCas(key, ++rawHead, payload);
  },
});

Deno.bench({
  name: "library: head then compareAndSet",
  group: "head+CAS",
  ignore,
  async fn() {
    const key = `lib-${run}`;
    await target!.store.head(key);
    await target!.store.compareAndSet(key, { seqno: ++libHead, data: payload });
  },
});

Deno.bench({
  name: "raw driver: head",
  group: "head",
  baseline: true,
  ignore,
  async fn() {
    await target!.rawHead(`raw-${run}`);
  },
});

Deno.bench({
  name: "library: head",
  group: "head",
  ignore,
  async fn() {
    await target!.store.head(`lib-${run}`);
  },
});

globalThis.addEventListener("unload", () => {
  target?.close();
});
