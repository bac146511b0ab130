/**
 * A counter service on Deno with porsager's `postgres`:
 * `deno run -A examples/deno_service.ts`.
 *
 * Environment: `DATABASE_URL` (required), `PORT` (default 0: any free
 * port). Prints `listening on http://127.0.0.1:<port>` once it serves.
 *
 *   curl -X POST http://127.0.0.1:<port>/counter/visits
 *   curl http://127.0.0.1:<port>/counter/visits
 *
 * @module
 */
import postgres from "postgres";
import { PostgresConsensus } from "../mod.ts";
import { fromPostgresJs } from "../src/adapters/postgres_js.ts";
import { counterHandler } from "./_counter.ts";

const url = Deno.env.get("DATABASE_URL");
if (!url) {
  console.error("DATABASE_URL is not set");
  Deno.exit(2);
}
const store = await PostgresConsensus.open(
  fromPostgresJs(postgres(url, { max: 10, onnotice: () => {} }), { owned: true }),
  { table: "example_counters" },
);

const server = Deno.serve({
  hostname: "127.0.0.1",
  port: Number(Deno.env.get("PORT") ?? 0),
  onListen: ({ port }) =>
    console.log(`listening on http://127.0.0.1:${port} (engine ${store.engine})`),
}, counterHandler(store));

for (const signal of ["SIGINT", "SIGTERM"] as const) {
  Deno.addSignalListener(signal, async () => {
    await server.shutdown();
    await store.close();
    Deno.exit(0);
  });
}
