/**
 * One contender process for the multi-process lease test
 * (tests/lease_postgres_test.ts), under Deno or Bun: competes for one lease
 * on Postgres through porsager's driver, forever, and reports what it lives
 * through as JSON lines on stdout, each stamped with wall-clock
 * milliseconds (`performance.timeOrigin + performance.now()`, comparable
 * across processes on one machine):
 *
 * - `{"e":"grant","token":"7"}`: acquireLease resolved;
 * - `{"e":"valid"}`: it read `lease.signal.aborted` as false and acted as
 *   the holder (every 5 ms while it holds);
 * - `{"e":"end","how":"released" | "expired" | "lost" | "died" | ...,
 *   "stalled":bool}`: the tenure ended; `stalled` when its event loop ran
 *   nothing for a while before (a pause);
 * - `{"e":"acquire-failed","message":...}`: acquireLease rejected (a store
 *   failure); it tries again (the test ignores these lines).
 *
 * It holds each lease for 0.5 to 3.5 ttl, then releases it, or (one time in
 * seven) exits without releasing. The test pauses (SIGSTOP) and kills it
 * from outside too.
 *
 * Environment: `DATABASE_URL`, `LEASE_TABLE`, `LEASE_KEY`, `LEASE_TTL_MS`,
 * `WORKER_NAME`.
 *
 * @module
 */
import postgres from "postgres";
import { acquireLease, PostgresConsensus } from "../mod.ts";
import { fromPostgresJs } from "../src/adapters/postgres_js.ts";

// deno-lint-ignore no-explicit-any
const runtime = globalThis as any;
const env = (name: string): string => {
  const value = runtime.Deno?.env.get(name) ?? runtime.process?.env[name];
  if (!value) throw new Error(`${name} is not set`);
  return value;
};
const exit = (code: number): never => {
  (runtime.Deno ?? runtime.process).exit(code);
  throw new Error("unreachable: exit returned");
};
const now = () => performance.timeOrigin + performance.now();
const emit = (event: Record<string, unknown>) =>
  console.log(JSON.stringify({ ...event, t: now() }));
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

const ttlMs = Number(env("LEASE_TTL_MS"));
const key = env("LEASE_KEY");
const holder = env("WORKER_NAME");
const store = await PostgresConsensus.open(
  fromPostgresJs(postgres(env("DATABASE_URL"), { max: 4, onnotice: () => {} }), { owned: true }),
  { table: env("LEASE_TABLE"), create: false },
);
emit({ e: "ready" });

for (;;) {
  // A failed read or write while contending (a backend killed, a statement
  // timed out under CPU starvation) ends that acquireLease; the contender
  // tries again rather than crash, as a real service would. Nothing was
  // granted to it: it reports no tenure.
  const lease = await acquireLease(store, key, { holder, ttlMs, pollIntervalMs: 10 }).catch(
    (error: unknown) => {
      emit({ e: "acquire-failed", message: String((error as Error)?.message ?? error) });
      return undefined;
    },
  );
  if (lease === undefined) {
    await sleep(20);
    continue;
  }
  // A process starved of CPU (or paused) between the grant and this line may
  // find its lease already over: it never acted as the holder, so it reports
  // no tenure (CI saw such a grant stamped after the next holder's). The
  // checker judges what holders do; every act below checks the signal first.
  if (lease.signal.aborted) continue;
  emit({ e: "grant", token: String(lease.token) });
  let tick = now();
  lease.signal.addEventListener("abort", () => {
    const message = String((lease.signal.reason as Error)?.message);
    const how = /released/.test(message)
      ? "released"
      : /expired/.test(message)
      ? "expired"
      : /lost/.test(message)
      ? "lost"
      : message;
    emit({ e: "end", how, stalled: now() - tick > 15 });
  });
  const until = now() + ttlMs * (0.5 + 3 * Math.random());
  const dies = Math.random() < 1 / 7;
  while (now() < until) {
    tick = now();
    if (lease.signal.aborted) break;
    emit({ e: "valid" });
    await sleep(5);
  }
  if (lease.signal.aborted) continue;
  if (dies) {
    emit({ e: "end", how: "died" });
    exit(3);
  }
  emit({ e: "end", how: "released" });
  await lease.release().catch(() => {});
  await sleep(ttlMs * Math.random());
}
