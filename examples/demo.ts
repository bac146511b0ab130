/**
 * `deno task demo`: several concurrent writers advance shared counters
 * through compare-and-set on a real Postgres (`DATABASE_URL`, or a throwaway
 * local server started by `deno task demo`), then the demo checks that no
 * update was lost and prints a summary.
 *
 * Environment: `DEMO_WRITERS` (default 8), `DEMO_KEYS` (4), `DEMO_SECONDS` (3).
 *
 * @module
 */
import postgres from "postgres";
import { PostgresConsensus, redactSecrets, type VersionedData } from "../mod.ts";
import { fromPostgresJs } from "../src/adapters/postgres_js.ts";
import { dropAndRecreate } from "../src/testing/mod.ts";
import { helpAndExit } from "../tools/_usage.ts";

helpAndExit(`Usage: deno task demo

Several concurrent writers advance shared counters through compare-and-set
on a real Postgres (DATABASE_URL, or a throwaway server the task starts),
then the demo checks that no update was lost and prints a summary.

Environment: DEMO_WRITERS (default 8), DEMO_KEYS (4), DEMO_SECONDS (3).

  -h, --help   print this and exit
`);

const url = Deno.env.get("DATABASE_URL");
if (!url) {
  console.error(
    "DATABASE_URL is not set: run `deno task demo`, which starts a throwaway Postgres.",
  );
  Deno.exit(2);
}
const writers = Number(Deno.env.get("DEMO_WRITERS") ?? 8);
const keyCount = Number(Deno.env.get("DEMO_KEYS") ?? 4);
const seconds = Number(Deno.env.get("DEMO_SECONDS") ?? 3);

const counter = (version: VersionedData | undefined) =>
  version ? new DataView(version.data.buffer, version.data.byteOffset, 8).getBigUint64(0) : 0n;
const encode = (value: bigint) => {
  const data = new Uint8Array(8);
  new DataView(data.buffer).setBigUint64(0, value);
  return data;
};

console.log(`@persist/consensus demo on ${redactSecrets(url)}`);
const store = await PostgresConsensus.open(
  fromPostgresJs(postgres(url, { max: writers, onnotice: () => {} }), { owned: true }),
  { table: "demo_consensus" },
);
await dropAndRecreate(store);
console.log(
  `engine: ${store.engine}; ${writers} writers incrementing ${keyCount} shared counters for ${seconds} s`,
);

const keys = Array.from({ length: keyCount }, (_, i) => `counter-${i}`);
const increments = new Map(keys.map((key) => [key, 0n]));
const mismatches = new Map(keys.map((key) => [key, 0]));
let errors = 0;
const deadline = Date.now() + seconds * 1000;

async function writer(id: number): Promise<void> {
  let n = id;
  while (Date.now() < deadline) {
    const key = keys[n++ % keys.length];
    // The read-modify-write loop: read the head, write head + 1 with the
    // new value, retry on "mismatch" (another writer got there first).
    for (;;) {
      const head = await store.head(key);
      const next = { seqno: head ? head.seqno + 1n : 0n, data: encode(counter(head) + 1n) };
      try {
        if (await store.compareAndSet(key, next) === "committed") {
          increments.set(key, increments.get(key)! + 1n);
          break;
        }
        mismatches.set(key, mismatches.get(key)! + 1);
      } catch (error) {
        errors++;
        console.error(`writer ${id}: ${error instanceof Error ? error.message : error}`);
        break;
      }
    }
  }
}

const progress = setInterval(() => {
  const total = [...increments.values()].reduce((a, b) => a + b, 0n);
  const left = Math.max(0, Math.ceil((deadline - Date.now()) / 1000));
  console.log(`  ... ${total} increments committed, ${left} s left`);
}, 1000);
const started = Date.now();
await Promise.all(Array.from({ length: writers }, (_, id) => writer(id)));
clearInterval(progress);
const elapsed = (Date.now() - started) / 1000;

console.log(
  "\n| key | increments acknowledged | counter stored | head seqno | mismatches | chain |",
);
console.log("| --- | ---: | ---: | ---: | ---: | --- |");
let lost = 0;
for (const key of keys) {
  const head = await store.head(key);
  const chain = await store.scan(key, 0n);
  const gapless = chain.every((v, i) => v.seqno === BigInt(i) && counter(v) === BigInt(i + 1));
  const ok = counter(head) === increments.get(key) && gapless;
  if (!ok) lost++;
  console.log(
    `| ${key} | ${increments.get(key)} | ${counter(head)} | ${head?.seqno ?? "-"} | ${
      mismatches.get(key)
    } | ${gapless ? "gapless" : "BROKEN"} |`,
  );
}
const total = [...increments.values()].reduce((a, b) => a + b, 0n);
console.log(
  `\n${total} increments in ${elapsed.toFixed(1)} s (${(Number(total) / elapsed).toFixed(0)}/s), ` +
    `${errors} errors, ${lost === 0 ? "no update lost" : `${lost} keys LOST UPDATES`}.`,
);
await store.close();
Deno.exit(lost === 0 && errors === 0 ? 0 : 1);
