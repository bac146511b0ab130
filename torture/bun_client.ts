/**
 * The workload under Bun, through Bun.SQL (`fromBunSql`), for the campaign's
 * Bun rounds: `bun torture/bun_client.ts` with, in the environment,
 * `TORTURE_URL` (direct) and `TORTURE_PROXY_URL` (through the campaign's
 * proxy), `TORTURE_TABLE`, `TORTURE_CLIENTS`, `TORTURE_KEYS`,
 * `TORTURE_DURATION_MS`, `TORTURE_MAX_OPS` and `TORTURE_OUT`, the file the
 * recorded history is written to (JSON, bigints as strings ending in "n").
 * The Deno side injects the faults and checks the history.
 *
 * Clients 0-9 use a direct pool (5 s store timeout); 10-15 the proxy
 * (400 ms store timeout, so stalls time out).
 *
 * @module
 */
// @ts-ignore: "bun" resolves under Bun only; this file never runs under Deno.
import { SQL } from "bun";
import { PostgresConsensus } from "../mod.ts";
import { type BunSql, fromBunSql } from "../src/adapters/bun_sql.ts";
import { runWorkload } from "./workload.ts";
import { serializeHistory } from "./history.ts";

// deno-lint-ignore no-explicit-any
const env = (globalThis as any).process.env as Record<string, string | undefined>;
const need = (name: string) => {
  const value = env[name];
  if (value === undefined) throw new Error(`bun_client.ts: ${name} is not set`);
  return value;
};
const table = need("TORTURE_TABLE");
const open = async (url: string, max: number, timeoutMs: number) => {
  const sql = new SQL(url, { max, connectionTimeout: 5 }) as BunSql;
  return await PostgresConsensus.open(fromBunSql(sql, { owned: true }), { table, timeoutMs });
};
const direct = await open(need("TORTURE_URL"), 6, 5_000);
const proxied = await open(need("TORTURE_PROXY_URL"), 4, 400);
const { history } = await runWorkload((client) => (client % 16 < 10 ? direct : proxied), {
  clients: Number(need("TORTURE_CLIENTS")),
  keys: Number(need("TORTURE_KEYS")),
  operations: Number(need("TORTURE_MAX_OPS")),
  durationMs: Number(need("TORTURE_DURATION_MS")),
});
// deno-lint-ignore no-explicit-any
await (globalThis as any).Bun.write(need("TORTURE_OUT"), serializeHistory(history.entries));
await Promise.allSettled([direct.close(), proxied.close()]);
// deno-lint-ignore no-explicit-any
(globalThis as any).process.exit(0);
