/**
 * What telemetry costs a head+CAS loop (BENCHMARKS.md, "Telemetry"):
 *
 *     deno run -A bench/telemetry_cost.ts [--before DIR] [--workers N] [--rounds N] [--ops N]
 *
 * Variants, run in one process with the order alternating round by round:
 * - `no provider`: this tree, no tracer or meter registered (no SDK);
 * - `recording`: this tree with a minimal in-memory tracer and meter
 *   registered through the API, as an SDK would be (a lower bound of what an
 *   SDK costs: no export, no sampling);
 * - `before`: the `mod.ts` of an older tree given with `--before` (for
 *   example `git archive <commit> src mod.ts | tar -x -C /tmp/before`).
 *
 * Against an instant executor (answers in memory: the library's own CPU),
 * and against Postgres through porsager when `DATABASE_URL` is set
 * (`deno run -A tools/with_postgres.ts deno run -A bench/telemetry_cost.ts`).
 * Progress goes to stderr; the table to stdout.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { createNoopMeter, type Histogram, type Meter, metrics, trace } from "@opentelemetry/api";
import postgres from "postgres";
import * as current from "../mod.ts";
import { fromPostgresJs } from "../src/adapters/postgres_js.ts";
import { recreateTable } from "../src/testing/mod.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    before: { type: "string" },
    workers: { type: "string", default: "1" },
    rounds: { type: "string", default: "6" },
    ops: { type: "string", default: "40000" },
    help: { type: "boolean", default: false },
  },
});
if (values.help) {
  console.log(
    "usage: deno run -A bench/telemetry_cost.ts [--before DIR] [--workers N] [--rounds N] [--ops N]",
  );
  Deno.exit(0);
}
const workers = Number(values.workers);
const rounds = Number(values.rounds);
const ops = Number(values.ops);

interface Store {
  head(key: string): Promise<{ seqno: bigint } | undefined>;
  compareAndSet(key: string, next: { seqno: bigint; data: Uint8Array }): Promise<string>;
  close(): Promise<void>;
}
type Open = (executor: unknown) => Promise<Store>;
const opener = (mod: typeof current): Open => (executor) =>
  mod.PostgresConsensus.open(executor as current.SqlExecutor, {
    table: "telemetry_cost",
    create: false,
  });

// An executor that answers from memory, as a server with the table would.
function instant() {
  const heads = new Map<string, bigint>();
  const data = new Uint8Array([1]);
  const op = (name: string) => name.replace(/^persist_consensus_/, "").replace(/_[0-9a-f]{8}$/, "");
  const row = (name: string, type: string, key: bigint) => [
    "public",
    "telemetry_cost",
    name,
    type,
    key,
    "true",
    "true",
    0n,
  ];
  return {
    query(statement: { name: string }, params: readonly unknown[]) {
      const key = params[0] as string;
      switch (op(statement.name)) {
        case "probe":
          return Promise.resolve({ rows: [["PostgreSQL 16", "read committed"]], rowCount: 1 });
        case "table_shape":
          return Promise.resolve({
            rows: [
              row("shard", "text", 1n),
              row("sequence_number", "bigint", 2n),
              row("data", "bytea", 0n),
            ],
            rowCount: 3,
          });
        case "head": {
          const head = heads.get(key);
          return Promise.resolve(
            head === undefined ? { rows: [], rowCount: 0 } : { rows: [[head, data]], rowCount: 1 },
          );
        }
        case "cas_first":
        case "cas_next": {
          const seqno = params.length === 3 ? params[1] as bigint : 0n;
          const head = heads.get(key);
          const fits = head === undefined ? seqno === 0n : seqno === head + 1n;
          if (fits) heads.set(key, seqno);
          return Promise.resolve({ rows: [], rowCount: fits ? 1 : 0 });
        }
      }
      return Promise.reject(new Error(`unexpected ${statement.name}`));
    },
    ddl: () => Promise.resolve(),
    close: () => Promise.resolve(),
  };
}

// A minimal tracer and meter that keep counts, registered as an SDK would.
let recorded = 0;
function register(): void {
  const span = {
    spanContext: () => ({ traceId: "1".repeat(32), spanId: "1".repeat(16), traceFlags: 1 }),
    setAttribute: () => span,
    setAttributes: () => span,
    addEvent: () => span,
    addLink: () => span,
    addLinks: () => span,
    setStatus: () => span,
    updateName: () => span,
    end: () => void recorded++,
    isRecording: () => true,
    recordException: () => {},
  };
  const meter: Meter = Object.create(createNoopMeter());
  meter.createCounter = () => ({ add: () => void recorded++ });
  meter.createHistogram = () => ({ record: () => void recorded++ }) as Histogram;
  trace.setGlobalTracerProvider({
    getTracer: () => ({
      startSpan: () => span,
      startActiveSpan: () => {
        throw new Error("not used");
      },
    }),
  });
  metrics.setGlobalMeterProvider({ getMeter: () => meter });
}
function unregister(): void {
  trace.disable();
  metrics.disable();
}

const url = Deno.env.get("DATABASE_URL");
const sql = url ? postgres(url, { max: workers, onnotice: () => {} }) : undefined;

async function round(open: Open, server: boolean, count: number): Promise<number> {
  const executor = server ? fromPostgresJs(sql!) : instant();
  if (server) await recreateTable(executor, { table: "telemetry_cost" });
  const store = await open(executor);
  const data = new Uint8Array([7]);
  const started = performance.now();
  await Promise.all(Array.from({ length: workers }, async (_, worker) => {
    const key = `k${worker}`;
    for (let i = 0; i < count / workers; i++) {
      const head = await store.head(key);
      await store.compareAndSet(key, { seqno: head === undefined ? 0n : head.seqno + 1n, data });
    }
  }));
  const rate = count / ((performance.now() - started) / 1000);
  await store.close();
  return rate;
}

const before = values.before
  ? opener(await import(new URL(`file://${Deno.realPathSync(values.before)}/mod.ts`).href))
  : undefined;
const variants: [string, Open, boolean][] = [
  ["no provider", opener(current), false],
  ["recording", opener(current), true],
  ...(before ? [["before", before, false] as [string, Open, boolean]] : []),
];
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

console.log(
  `| executor | workers | variant | head+CAS/s (median of ${rounds}) | / no provider | rounds |`,
);
console.log("| --- | ---: | --- | ---: | ---: | --- |");
for (const server of url ? [false, true] : [false]) {
  const count = server ? Math.max(workers * 50, Math.floor(ops / 20)) : ops;
  const rates = new Map<string, number[]>(variants.map(([name]) => [name, []]));
  for (let r = -1; r < rounds; r++) {
    const order = r % 2 === 0 ? variants : [...variants].reverse();
    for (const [name, open, recording] of order) {
      if (recording) register();
      const rate = await round(open, server, count);
      if (recording) unregister();
      if (r >= 0) rates.get(name)!.push(rate); // round -1 warms up
    }
    console.error(`  ${server ? "postgres" : "instant"}: round ${r + 1}/${rounds}`);
  }
  const base = median(rates.get("no provider")!);
  for (const [name] of variants) {
    const all = rates.get(name)!;
    console.log(
      `| ${server ? "Postgres (porsager)" : "instant"} | ${workers} | ${name} | ${
        median(all).toFixed(0)
      } | ${(median(all) / base).toFixed(3)} | ${all.map((x) => x.toFixed(0)).join(" ")} |`,
    );
  }
}
console.error(`  (${recorded} spans and measurements recorded)`);
await sql?.end();
