/**
 * A counter service on Bun: `bun run examples/bun_service.ts`.
 *
 * Environment: `DATABASE_URL` (required), `PORT` (default 0: any free port),
 * `DRIVER` (`bun-sql`, the default, through `connect()` from the Bun entry
 * point; or `postgres-js` for porsager's client). Prints
 * `listening on http://127.0.0.1:<port>` once it serves.
 *
 *   curl -X POST http://127.0.0.1:<port>/counter/visits
 *   curl http://127.0.0.1:<port>/counter/visits
 *
 * @module
 */
import postgres from "postgres";
import { PostgresConsensus } from "../mod.ts";
import { fromPostgresJs } from "../src/adapters/postgres_js.ts";
import { connect } from "../src/runtime/bun.ts";
import { counterHandler } from "./_counter.ts";

const url = process.env.DATABASE_URL;
if (!url) {
  console.error("DATABASE_URL is not set");
  process.exit(2);
}
const table = "example_counters";
const store = process.env.DRIVER === "postgres-js"
  ? await PostgresConsensus.open(
    fromPostgresJs(postgres(url, { max: 10, onnotice: () => {} }), { owned: true }),
    { table },
  )
  : await connect(url, { table, max: 10 });

const server = Bun.serve({
  hostname: "127.0.0.1",
  port: Number(process.env.PORT ?? 0),
  fetch: counterHandler(store),
});
console.log(`listening on http://127.0.0.1:${server.port} (engine ${store.engine})`);

for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.on(signal, async () => {
    await server.stop();
    await store.close();
    process.exit(0);
  });
}
