// Cross-key batching (src/_batch.ts), measured: head then CAS(head + 1),
// W workers each on its own key, porsager on Deno, in one interleaved run:
// the library with batching on, with batching off, the raw driver running
// the single-key statements, and pgbench running the seed's statements.
// Runs inside `deno task bench` (report.ts), or alone:
//   deno run -A tools/with_postgres.ts deno run -A bench/_batching.ts [--seconds N] [--rounds N]
import postgres from "postgres";
import { PostgresConsensus } from "../mod.ts";
import { fromPostgresJs } from "../src/adapters/postgres_js.ts";
import { findPgBin, pgbench } from "./_pgbench.ts";
import {
  benchArgs,
  casScript,
  fmt,
  freshKey,
  mean,
  rate,
  ratio,
  type RunResult,
  timeBoxed,
} from "./_measure.ts";
import { benchDialect, TABLE } from "./_targets.ts";

export interface BatchingOptions {
  url: string;
  ms: number;
  rounds: number;
  workers: readonly number[];
  out: (line: string) => void;
  progress: (text: string) => void;
}

export interface BatchingRow {
  workers: number;
  batched: number;
  unbatched: number;
  raw: number;
  pgbench: number;
}

/** Runs the comparison and prints one markdown table; the table must exist. */
export async function batching(options: BatchingOptions): Promise<BatchingRow[]> {
  const { url, ms, rounds, out, progress } = options;
  const dialect = benchDialect();
  const binDir = await findPgBin();
  const admin = postgres(url, { max: 1, onnotice: () => {} });
  const open = (batch: boolean) =>
    PostgresConsensus.open(
      fromPostgresJs(postgres(url, { max: 20, onnotice: () => {} }), { owned: true }),
      { table: TABLE, mode: "postgres", batch },
    );
  const batched = await open(true);
  const unbatched = await open(false);
  const rawSql = postgres(url, { max: 20, onnotice: () => {} });
  const prepared = { prepare: true };
  const data = new Uint8Array(8).map((_, i) => i);
  const seed = (keys: string[]) =>
    admin.unsafe(
      `INSERT INTO ${TABLE} (shard, sequence_number, data) SELECT unnest($1::text[]), 0, '\\x00'::bytea`,
      [keys],
    );
  const loop = (store: PostgresConsensus, keys: string[]) => async (w: number) => {
    const startedAt = performance.now();
    const head = await store.head(keys[w]);
    const outcome = await store.compareAndSet(keys[w], { seqno: head!.seqno + 1n, data });
    return { ok: outcome === "committed", attempts: 1, startedAt };
  };
  out(
    "## Cross-key batching (head, then CAS head + 1; each worker its own key; postgres-js on Deno)\n",
  );
  out(
    "| workers | batch on CAS/s | batch off CAS/s | raw driver CAS/s | pgbench CAS/s | on / off | on / pgbench | off / raw | errors | on / off per round |",
  );
  out("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |");
  const rows: BatchingRow[] = [];
  for (const workers of options.workers) {
    const on: RunResult[] = [], off: RunResult[] = [], raw: RunResult[] = [], pgb: number[] = [];
    for (let round = 0; round < rounds; round++) {
      const keys = (label: string) => Array.from({ length: workers }, () => freshKey(label));
      // Alternate the order, so neither side always runs on a warmer server.
      const sides: [string, () => Promise<void>][] = [
        ["batch on", async () => {
          const k = keys("b-on");
          await seed(k);
          on.push(await timeBoxed(workers, ms, loop(batched, k)));
        }],
        ["batch off", async () => {
          const k = keys("b-off");
          await seed(k);
          off.push(await timeBoxed(workers, ms, loop(unbatched, k)));
        }],
        ["raw driver", async () => {
          const k = keys("b-raw");
          await seed(k);
          raw.push(
            await timeBoxed(workers, ms, async (w) => {
              const startedAt = performance.now();
              const head = await rawSql.unsafe(dialect.head.text, [k[w]], prepared).values();
              const result = await rawSql.unsafe(
                dialect.casNext.text,
                [k[w], BigInt(head[0][0] as string) + 1n, data] as never[],
                prepared,
              );
              return { ok: result.count === 1, attempts: 1, startedAt };
            }),
          );
        }],
        ["pgbench", async () => {
          const prefix = freshKey("b-pgb");
          await seed(Array.from({ length: workers }, (_, i) => `${prefix}-${i}`));
          const script = casScript(dialect, `'${prefix}-' || :client_id`, data);
          pgb.push((await pgbench(binDir, url, script, workers, ms / 1000)).tps);
        }],
      ];
      if (round % 2 === 1) sides.reverse();
      for (const [label, run] of sides) {
        progress(`batching, ${workers} workers, round ${round + 1}: ${label}`);
        await run();
      }
    }
    const row = {
      workers,
      batched: mean(on.map(rate)),
      unbatched: mean(off.map(rate)),
      raw: mean(raw.map(rate)),
      pgbench: mean(pgb),
    };
    const errors = [...on, ...off].reduce((a, r) => a + r.errors, 0);
    rows.push(row);
    out(
      `| ${workers} | ${fmt(row.batched)} | ${fmt(row.unbatched)} | ${fmt(row.raw)} | ${
        fmt(row.pgbench)
      } | ${ratio(row.batched, row.unbatched)} | ${ratio(row.batched, row.pgbench)} | ${
        ratio(row.unbatched, row.raw)
      } | ${errors} | ${on.map((r, i) => ratio(rate(r), rate(off[i]))).join(" ")} |`,
    );
  }
  out("");
  await Promise.all([batched.close(), unbatched.close(), rawSql.end({ timeout: 1 })]);
  await admin.end({ timeout: 1 });
  return rows;
}

if (import.meta.main) {
  const { seconds, rounds, option } = benchArgs(Deno.args);
  const url = Deno.env.get("DATABASE_URL");
  if (!url) {
    console.error("DATABASE_URL is not set: run it through tools/with_postgres.ts");
    Deno.exit(2);
  }
  const admin = postgres(url, { max: 1, onnotice: () => {} });
  const dialect = benchDialect();
  await admin.unsafe(dialect.dropTable);
  await admin.unsafe(dialect.createTable);
  await admin.end();
  const workers = option("workers", 0);
  await batching({
    url,
    ms: seconds * 1000,
    rounds,
    workers: workers > 0 ? [workers] : [1, 16],
    out: (line) => console.log(line),
    progress: (text) => console.error(`  [bench] ${text}`),
  });
}
