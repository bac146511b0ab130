/**
 * `deno task bench:micro` (or `deno bench -A bench/` with `DATABASE_URL`
 * set): per-operation latency of the library beside the raw driver running
 * the identical statement, one operation at a time, so that `deno bench`
 * reports the library's overhead directly as a ratio to its baseline.
 *
 * The `contended, W writers` groups time whole contended rounds: each
 * iteration, W writers race to commit {@linkcode ROUND_VERSIONS} versions
 * (0 up to {@linkcode ROUND_VERSIONS} - 1) of one fresh key, with the plain
 * read-then-CAS loop and with `update()`, beside the raw driver running the
 * same statements in the same loop.
 *
 * Throughput under concurrency, across processes and against the pgbench
 * ceiling and other stores is in `bench/report.ts` (`deno task bench`).
 *
 * @module
 */
import { update } from "../mod.ts";
import { postgresJsTarget, TABLE, type Target } from "./_targets.ts";

const url = Deno.env.get("DATABASE_URL");
const target: Target | undefined = url ? await postgresJsTarget(url, 16) : undefined;
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

/** Versions each contended round commits on its key. */
const ROUND_VERSIONS = 32n;
/**
 * Compare-and-sets one writer may send in one round: far above what a fair
 * race needs (at most ROUND_VERSIONS per writer and loss), so a hit means a
 * livelock or a bug, reported as a failed iteration rather than a hang.
 */
const MAX_ATTEMPTS_PER_WRITER = 4096;
let round = 0;
const roundKey = (label: string) => `${label}-${run}-${round++}`;

async function race(
  writers: number,
  label: string,
  step: (key: string) => Promise<"done" | "committed" | "lost">,
): Promise<void> {
  const key = roundKey(label);
  await Promise.all(Array.from({ length: writers }, async () => {
    for (let attempts = 0; attempts < MAX_ATTEMPTS_PER_WRITER; attempts++) {
      if ((await step(key)) === "done") return;
    }
    throw new Error(`Contended round on "${key}" took over ${MAX_ATTEMPTS_PER_WRITER} attempts`);
  }));
}

const last = ROUND_VERSIONS - 1n;
const next = (head: bigint | undefined) => head === undefined ? 0n : head + 1n;

for (const writers of [1, 4, 16]) {
  const group = `contended, ${writers} writer${
    writers === 1 ? "" : "s"
  }, ${ROUND_VERSIONS} versions`;
  Deno.bench({
    name: `raw driver: read-then-CAS x${writers}`,
    group,
    baseline: true,
    ignore,
    async fn() {
      await race(writers, "c-raw", async (key) => {
        const head = (await target!.rawHead(key))?.[0];
        if (head !== undefined && head >= last) return "done";
        return (await target!.rawCas(key, next(head), payload)) ? "committed" : "lost";
      });
    },
  });
  Deno.bench({
    name: `library: read-then-CAS x${writers}`,
    group,
    ignore,
    async fn() {
      await race(writers, "c-lib", async (key) => {
        const head = (await target!.store.head(key))?.seqno;
        if (head !== undefined && head >= last) return "done";
        const outcome = await target!.store.compareAndSet(key, {
          seqno: next(head),
          data: payload,
        });
        return outcome === "committed" ? "committed" : "lost";
      });
    },
  });
  Deno.bench({
    name: `library: update() x${writers}`,
    group,
    ignore,
    async fn() {
      await race(writers, "c-upd", async (key) => {
        const { committed } = await update(
          target!.store,
          key,
          (current) => current !== undefined && current.seqno >= last ? undefined : payload,
        );
        return committed ? "committed" : "done";
      });
    },
  });
}

globalThis.addEventListener("unload", () => {
  target?.close();
});
