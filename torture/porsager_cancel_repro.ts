/**
 * Reproducer, found by the torture campaign: porsager's `postgres` 3.4.9
 * hands a cancelled query's result to the next query on the connection when
 * the cancelled query was pipelined (sent, not yet running). Its
 * ReadyForQuery handler skips a cancelled query in `sent` without waiting
 * for its response, which the server still sends.
 *
 * `fromPostgresJs` calls `cancel()` when an operation times out, so a
 * store whose connections pipeline (porsager's default, `max_pipeline: 100`,
 * whenever every pooled connection is busy) can answer a head with another
 * statement's row, or a compareAndSet with another one's row count.
 *
 * Usage: `deno run -A tools/with_postgres.ts deno run -A torture/porsager_cancel_repro.ts`
 * prints `q3 (asked for 3) -> [[2]]`; with `MAX_PIPELINE=0` it prints `[[3]]`.
 *
 * @module
 */
import postgres from "postgres";
// `max_pipeline` is a real option that porsager's types leave out.
const pipeline = { max_pipeline: Number(Deno.env.get("MAX_PIPELINE") ?? 100) };
const sql = postgres(Deno.env.get("DATABASE_URL")!, {
  max: 1,
  onnotice: () => {},
  ...pipeline as postgres.Options<Record<string, never>>,
});
const slow = "select pg_sleep(0.3)::text, $1::int as v";
const fast = "select $1::int as v";
await sql.unsafe(slow, [0], { prepare: true });
await sql.unsafe(fast, [0], { prepare: true });
const q1 = sql.unsafe(slow, [1], { prepare: true }).values();
const q2 = sql.unsafe(fast, [2], { prepare: true }).values();
const q3 = sql.unsafe(fast, [3], { prepare: true }).values();
// Awaiting starts a query (they are lazy): all three go out on the one connection.
const r1 = Promise.resolve(q1), r2 = Promise.resolve(q2).catch((e) => `rejected: ${e.message}`);
const r3 = Promise.resolve(q3);
setTimeout(() => q2.cancel(), 50);
const timeout = (p: PromiseLike<unknown>) =>
  Promise.race([p, new Promise((r) => setTimeout(r, 2000, "(never settles)"))]);
console.log("q1 ->", JSON.stringify(await r1));
console.log("q3 (asked for 3) ->", JSON.stringify(await timeout(r3)));
console.log("q2 (cancelled) ->", await timeout(r2));
await sql.end({ timeout: 1 });
