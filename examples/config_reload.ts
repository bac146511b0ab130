/**
 * A service that reloads its configuration through `watch`, under Deno or Bun:
 *
 *   DATABASE_URL=postgres://... deno run -A examples/config_reload.ts
 *   DATABASE_URL=postgres://... bun run examples/config_reload.ts
 *
 * The configuration is one key; an operator's tool (here: a publisher on a
 * store of its own, opened with `notify: true`, as another process would be)
 * changes it with `update()`. Each service instance (each with its own
 * connection pool) starts from the current configuration and applies every
 * change as it is committed, in order, each once; an instance that falls
 * behind truncation would reload from where the log now starts (nothing
 * truncates here). On exit every instance must have
 * applied every version the publisher committed, in order.
 *
 * Environment: `DATABASE_URL` (required), `INSTANCES` (3), `CHANGES` (50),
 * `INTERVAL_MS` (20). Prints each reload of the first instance, then a
 * summary; exits with 1 if an instance missed, repeated or reordered a
 * version.
 *
 * @module
 */
import postgres from "postgres";
import { PostgresConsensus, TruncatedError, update, type VersionedData, watch } from "../mod.ts";
import { fromPostgresJs } from "../src/adapters/postgres_js.ts";

// deno-lint-ignore no-explicit-any
const runtime = globalThis as any;
const env = (name: string, fallback?: string): string | undefined =>
  runtime.Deno?.env.get(name) ?? runtime.process?.env[name] ?? fallback;
const exit = (code: number) => (runtime.Deno ?? runtime.process).exit(code);
const url = env("DATABASE_URL");
if (!url) {
  console.error("DATABASE_URL is not set");
  exit(2);
}
const instances = Number(env("INSTANCES", "3"));
const changes = Number(env("CHANGES", "50"));
const intervalMs = Number(env("INTERVAL_MS", "20"));
const key = `config/${crypto.randomUUID().slice(0, 8)}`;
const encoder = new TextEncoder();
const decoder = new TextDecoder();

interface Config {
  revision: number;
  featureFlags: string[];
}

const open = (notify: boolean) =>
  PostgresConsensus.open(
    fromPostgresJs(postgres(url!, { max: 4, onnotice: () => {} }), { owned: true }),
    { table: "watch_example", notify },
  );

/**
 * One service instance: applies the configuration as it changes until
 * `signal` aborts; returns the seqnos it applied.
 */
async function serve(id: number, signal: AbortSignal): Promise<bigint[]> {
  const store = await open(false);
  const applied: bigint[] = (progress[id] = []);
  let from: bigint | undefined; // the head first
  try {
    while (!signal.aborted) {
      try {
        for await (const version of watch(store, key, { from, signal })) {
          apply(id, version);
          applied.push(version.seqno);
          from = version.seqno + 1n;
        }
      } catch (error) {
        // Fell behind truncation: reload from where the log now starts.
        if (!(error instanceof TruncatedError)) throw error;
        from = error.available;
      }
    }
  } finally {
    await store.close();
  }
  return applied;
}

function apply(id: number, version: VersionedData): void {
  const config = JSON.parse(decoder.decode(version.data)) as Config;
  if (id === 0) {
    console.log(`instance 0: revision ${config.revision} (seqno ${version.seqno}) applied`);
  }
}

// What each instance applied so far, for the end of the run.
const progress: bigint[][] = [];
const publisher = await open(true);
await update(
  publisher,
  key,
  () => encoder.encode(JSON.stringify({ revision: 0, featureFlags: [] })),
);
const stop = new AbortController();
const serving = Array.from({ length: instances }, (_, id) => serve(id, stop.signal));
// Let the instances subscribe and read the current configuration.
await new Promise((resolve) => setTimeout(resolve, 300));
let last = 0n;
for (let revision = 1; revision <= changes; revision++) {
  const result = await update(publisher, key, (current) => {
    const config = JSON.parse(decoder.decode(current!.data)) as Config;
    return encoder.encode(JSON.stringify({
      revision,
      featureFlags: revision % 2 === 0 ? [...config.featureFlags, `flag-${revision}`] : [],
    }));
  });
  last = result.version!.seqno;
  await new Promise((resolve) => setTimeout(resolve, intervalMs));
}
// Bounded: give the instances up to 5 s to apply the last version.
const deadline = Date.now() + 5_000;
while (Date.now() < deadline && !progress.every((applied) => applied.at(-1) === last)) {
  await new Promise((resolve) => setTimeout(resolve, 20));
}
stop.abort();
const results = await Promise.all(serving);
await publisher.close();

let ok = true;
for (const [id, applied] of results.entries()) {
  const first = applied[0] ?? 0n;
  const inOrder = applied.every((seqno, i) => seqno === first + BigInt(i));
  if (!inOrder || applied.at(-1) !== last) {
    ok = false;
    console.error(`instance ${id} applied ${applied.join(",")}; expected ${first}..${last}`);
  }
}
console.log(
  ok
    ? `ok: ${instances} instances applied ${changes} changes, in order, each once, up to seqno ${last}`
    : "FAILED: an instance missed, repeated or reordered a version",
);
exit(ok ? 0 : 1);
