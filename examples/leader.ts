/**
 * A leader-elected worker, under Deno or Bun:
 *
 *   DATABASE_URL=postgres://... deno run -A examples/leader.ts
 *   DATABASE_URL=postgres://... bun run examples/leader.ts
 *
 * Several workers (each with its own connection pool, as separate processes
 * would have) elect a leader with `acquireLease`. Only the leader appends to
 * a shared ledger key, and every append is fenced: it carries the lease's
 * token, and the ledger refuses a token below the highest it has seen. Each
 * leader steps down after a term (release() hands over at once); then,
 * like a leader that was paused and wakes up believing it still leads, it
 * tries one more append with its old token, which the ledger refuses once
 * the next leader has written.
 *
 * Environment: `DATABASE_URL` (required), `WORKERS` (3), `SECONDS` (4),
 * `TTL_MS` (1000), `TERM_MS` (800). Prints what happens, then a summary;
 * exits with 1 if two workers ever led at once or a token fell.
 *
 * @module
 */
import postgres from "postgres";
import { acquireLease, type Consensus, PostgresConsensus, update } from "../mod.ts";
import { fromPostgresJs } from "../src/adapters/postgres_js.ts";

// deno-lint-ignore no-explicit-any
const runtime = globalThis as any;
const env = (name: string, fallback?: string): string | undefined =>
  runtime.Deno?.env.get(name) ?? runtime.process?.env[name] ?? fallback;
const url = env("DATABASE_URL");
if (!url) {
  console.error("DATABASE_URL is not set");
  (runtime.Deno ?? runtime.process).exit(2);
}
const workers = Number(env("WORKERS", "3"));
const seconds = Number(env("SECONDS", "4"));
const ttlMs = Number(env("TTL_MS", "1000"));
const termMs = Number(env("TERM_MS", "800"));
const table = "lease_example";
const run = crypto.randomUUID().slice(0, 8);
const leaderKey = `leader/${run}`;
const ledgerKey = `ledger/${run}`;

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const encoder = new TextEncoder();
const decoder = new TextDecoder();

interface Ledger {
  /** The highest fencing token that has written. */
  token: string;
  entries: number;
  lastBy: string | null;
}

/**
 * Appends an entry written under `token`, unless a newer leader (a higher
 * token) has already written: then nothing is written and it returns false.
 * The check and the write are one compare-and-set, so a stale leader cannot
 * slip in between.
 */
async function fencedAppend(store: Consensus, token: bigint, by: string): Promise<boolean> {
  const result = await update(store, ledgerKey, (current) => {
    const ledger: Ledger = current
      ? JSON.parse(decoder.decode(current.data))
      : { token: "-1", entries: 0, lastBy: null };
    if (BigInt(ledger.token) > token) return undefined;
    return encoder.encode(
      JSON.stringify({ token: String(token), entries: ledger.entries + 1, lastBy: by }),
    );
  });
  // Keep the ledger's log short.
  const seqno = result.version?.seqno ?? 0n;
  if (result.committed && seqno % 32n === 0n && seqno > 0n) {
    await store.truncate(ledgerKey, seqno - 1n);
  }
  return result.committed;
}

let leader: string | undefined;
const violations: string[] = [];
let leaders = 0, appends = 0, staleRefused = 0;
const tokens: bigint[] = [];
const stop = new AbortController();

async function worker(name: string): Promise<void> {
  const store = await PostgresConsensus.open(
    fromPostgresJs(postgres(url!, { max: 2, onnotice: () => {} }), { owned: true }),
    { table },
  );
  const late: Promise<void>[] = [];
  try {
    while (!stop.signal.aborted) {
      let lease;
      try {
        lease = await acquireLease(store, leaderKey, {
          holder: name,
          ttlMs,
          pollIntervalMs: 20,
          signal: stop.signal,
        });
      } catch (error) {
        if (stop.signal.aborted) break;
        throw error;
      }
      if (leader !== undefined) violations.push(`${name} leads while ${leader} does`);
      if (tokens.length > 0 && lease.token <= tokens.at(-1)!) {
        violations.push(`token ${lease.token} after ${tokens.at(-1)}`);
      }
      leader = name;
      leaders++;
      tokens.push(lease.token);
      console.log(`${name} leads with token ${lease.token}`);
      const stepDown = () => {
        if (leader === name) leader = undefined;
      };
      lease.signal.addEventListener("abort", stepDown);
      const termEnds = performance.now() + termMs;
      while (!lease.signal.aborted && performance.now() < termEnds && !stop.signal.aborted) {
        if (await fencedAppend(store, lease.token, name)) appends++;
        else console.log(`${name}: append refused, a newer leader wrote`);
        await sleep(50);
      }
      stepDown();
      await lease.release();
      console.log(`${name} steps down`);
      // Like a leader that was paused and wakes up believing it leads.
      const token = lease.token;
      late.push(
        sleep(250).then(async () => {
          if (!await fencedAppend(store, token, `${name} (stale)`)) {
            staleRefused++;
            console.log(`${name} (stale, token ${token}): append refused, a newer token wrote`);
          } else if (tokens.some((t) => t > token)) {
            // Allowed only while no newer leader has written yet.
            console.log(`${name} (stale, token ${token}): appended before the next leader wrote`);
          }
        }),
      );
      await sleep(100);
    }
  } finally {
    await Promise.allSettled(late);
    await store.close();
  }
}

const setup = await PostgresConsensus.open(
  fromPostgresJs(postgres(url!, { max: 1, onnotice: () => {} }), { owned: true }),
  { table },
);
await setup.close();
setTimeout(() => stop.abort(), seconds * 1000);
await Promise.all(Array.from({ length: workers }, (_, i) => worker(`w${i + 1}`)));
const ok = violations.length === 0;
console.log(
  `${ok ? "ok" : "FAILED"}: ${leaders} terms, ${appends} fenced appends, ` +
    `${staleRefused} stale appends refused, tokens ${tokens.join(" < ")}` +
    (ok ? ", never two leaders at once" : `\n${violations.join("\n")}`),
);
if (!ok) (runtime.Deno ?? runtime.process).exit(1);
