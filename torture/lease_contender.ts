/**
 * One lease contender process for the campaign's fault rounds
 * (`torture/lease_contenders.ts`), under Deno or Bun: competes for one lease
 * on Postgres through porsager's driver, on a path the campaign breaks
 * (through its chaos proxy or straight to a server it kills and restarts),
 * forever, and reports what it lives through as JSON lines on stdout, each
 * stamped with wall-clock milliseconds (`performance.timeOrigin +
 * performance.now()`, comparable across processes on one machine):
 *
 * - `{"e":"grant","token":"7"}`: acquireLease resolved and the signal read
 *   not aborted;
 * - `{"e":"valid"}`: it read `lease.signal.aborted` as false and acted as
 *   the holder (every 5 ms while it holds); stamped with the time read just
 *   before that check, a moment the lease was surely valid for it;
 * - `{"e":"stall","from":..,"to":..}`: its event loop was busy-waiting
 *   (nothing else ran: timers, the renewal, the abort) from `from` to `to`;
 * - `{"e":"end","how":..,"stalled":bool}`: the tenure ended; `stalled` when
 *   more than 25 ms passed since its last act (it was paused, busy or
 *   starved of CPU, so the abort ran late);
 * - `{"e":"acquire-error","determinate":bool,"message":..}`: acquireLease
 *   rejected (a store failure under the faults); it tries again;
 * - `{"e":"release-error","message":..}`: release() failed to write the
 *   released version (the lease was over for it already);
 * - `{"e":"anomaly","message":..}`: a stray rejection from the driver.
 *
 * Each tenure it holds for 0.5 to 3.5 ttl and then releases, or (one in
 * eight) exits without releasing (death), or (one in five) busy-waits for
 * 1.2 to 2.5 ttl somewhere in the middle, past its lease's deadline, and
 * carries on, checking the signal before each act. The campaign pauses
 * (SIGSTOP) and kills it from outside too.
 *
 * Environment: `DATABASE_URL`, `LEASE_TABLE`, `LEASE_KEY`, `LEASE_TTL_MS`,
 * `WORKER_NAME`, `APPLICATION_NAME`.
 *
 * @module
 */
import postgres from "postgres";
import { acquireLease, ConsensusError, PostgresConsensus } from "../mod.ts";
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
  console.log(JSON.stringify({ t: now(), ...event }));
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const message = (error: unknown) => error instanceof Error ? error.message : String(error);

// A driver's stray rejection (a cancel on a connection the campaign cut)
// must not end the contender: reported, and the contender goes on.
if (runtime.Deno) {
  globalThis.addEventListener("unhandledrejection", (event) => {
    event.preventDefault();
    emit({ e: "anomaly", message: message(event.reason) });
  });
} else {
  runtime.process.on(
    "unhandledRejection",
    (reason: unknown) => emit({ e: "anomaly", message: message(reason) }),
  );
}

// The campaign holds this process's stdin open: when it ends (the campaign
// exited, even killed), so does the contender, rather than contend forever.
if (runtime.Deno) {
  (async () => {
    for await (const _ of runtime.Deno.stdin.readable) { /* nothing is sent */ }
    exit(0);
  })();
} else {
  runtime.process.stdin.on("end", () => exit(0));
  runtime.process.stdin.resume();
}

const ttlMs = Number(env("LEASE_TTL_MS"));
const key = env("LEASE_KEY");
const holder = env("WORKER_NAME");
const sql = postgres(env("DATABASE_URL"), {
  max: 3,
  onnotice: () => {},
  connect_timeout: 5,
  connection: { application_name: env("APPLICATION_NAME") },
  max_pipeline: 0,
} as postgres.Options<Record<string, never>>);
// The server may be restarting: open with retries (bounded).
let store: PostgresConsensus | undefined;
for (let attempt = 1; store === undefined; attempt++) {
  try {
    store = await PostgresConsensus.open(fromPostgresJs(sql), {
      table: env("LEASE_TABLE"),
      create: false,
      timeoutMs: 2_000,
    });
  } catch (error) {
    if (attempt >= 100) throw error;
    await sleep(100);
  }
}
emit({ e: "ready" });

for (;;) {
  let lease;
  try {
    lease = await acquireLease(store, key, { holder, ttlMs, pollIntervalMs: 20 });
  } catch (error) {
    emit({
      e: "acquire-error",
      determinate: error instanceof ConsensusError ? error.determinate : undefined,
      message: message(error),
    });
    await sleep(ttlMs * Math.random());
    continue;
  }
  // A process starved of CPU (or paused) between the grant and this line may
  // find its lease already over: it never acted as the holder, so it reports
  // no tenure.
  if (lease.signal.aborted) continue;
  emit({ e: "grant", token: String(lease.token) });
  let lastAct = now();
  lease.signal.addEventListener("abort", () => {
    const reason = message(lease.signal.reason);
    const how = /released/.test(reason)
      ? "released"
      : /expired/.test(reason)
      ? "expired"
      : /lost/.test(reason)
      ? "lost"
      : reason;
    emit({ e: "end", how, stalled: now() - lastAct > 25 });
  });
  const plan = Math.random();
  const until = now() + ttlMs * (0.5 + 3 * Math.random());
  // One in five stalls its event loop past the deadline, once, mid-tenure.
  let stallAt = plan >= 0.125 && plan < 0.325 ? now() + ttlMs * 0.5 * Math.random() : Infinity;
  while (now() < until) {
    if (now() >= stallAt) {
      stallAt = Infinity;
      const from = now();
      const to = from + ttlMs * (1.2 + 1.3 * Math.random());
      while (now() < to) { /* busy: no timer, no renewal, no abort runs */ }
      emit({ e: "stall", from, to: now() });
    }
    const at = now();
    if (lease.signal.aborted) break;
    lastAct = at;
    emit({ e: "valid", t: at });
    await sleep(5);
  }
  if (lease.signal.aborted) continue;
  if (plan < 0.125) {
    emit({ e: "end", how: "died" });
    exit(3);
  }
  emit({ e: "end", how: "released" });
  await lease.release().catch((error) => emit({ e: "release-error", message: message(error) }));
  await sleep(ttlMs * Math.random());
}
