// A lease holder for bench/lease_report.ts: acquires the lease, prints
// "held <token>", and renews it until the process is killed.
// Environment: DATABASE_URL, LEASE_TABLE, LEASE_KEY, LEASE_TTL_MS.
import postgres from "postgres";
import { acquireLease, PostgresConsensus } from "../mod.ts";
import { fromPostgresJs } from "../src/adapters/postgres_js.ts";

const store = await PostgresConsensus.open(
  fromPostgresJs(postgres(Deno.env.get("DATABASE_URL")!, { max: 2, onnotice: () => {} }), {
    owned: true,
  }),
  { table: Deno.env.get("LEASE_TABLE")!, create: false },
);
const lease = await acquireLease(store, Deno.env.get("LEASE_KEY")!, {
  holder: `holder-${Deno.pid}`,
  ttlMs: Number(Deno.env.get("LEASE_TTL_MS")),
});
console.log(`held ${lease.token}`);
await new Promise(() => {}); // renews until killed
