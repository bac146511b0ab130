// One process of a multi-process contended run: waits for the common start
// time, runs its writers, prints its RunResult as JSON on stdout.
import postgres from "postgres";
import { PostgresConsensus } from "../mod.ts";
import { fromPostgresJs } from "../src/adapters/postgres_js.ts";
import { contended, type ContendedMode } from "./_contended.ts";
import { TABLE } from "./_targets.ts";
import { updateWithCounter } from "./_update.ts";

const [url, key, writersText, msText, mode, startAtText] = Deno.args;
const writers = Number(writersText);
const store = await PostgresConsensus.open(
  fromPostgresJs(postgres(url, { max: writers, onnotice: () => {} }), { owned: true }),
  { table: TABLE, mode: "postgres", create: false },
);
await store.head(key); // connect and prepare before the start
await new Promise((r) => setTimeout(r, Math.max(0, Number(startAtText) - Date.now())));
const result = await contended(
  store,
  key,
  writers,
  Number(msText),
  mode as ContendedMode,
  updateWithCounter,
);
await store.close();
console.log(
  JSON.stringify({ ...result, latencies: result.latencies.filter((_, i) => i % 4 === 0) }),
);
