/**
 * `deno task bench`: the benchmark campaign. Every workload runs the library
 * beside its ceilings, interleaved in one run on one server: the raw driver
 * executing the identical SQL without the library, and pgbench executing the
 * identical statements with the same concurrency. Figures are printed as
 * markdown tables (ratios beside absolute numbers: on a noisy machine only
 * the ratios carry over) and written as JSON to `bench/results/`.
 *
 * Workloads: the same read-then-compare-and-set loops through Deno KV and
 * etcd when available, uncontended and contended compare-and-set (and under Bun),
 * cross-key batching on against off (`bench/_batching.ts`),
 * two-key transfers with compareAndSetMany beside single-key
 * compare-and-set, scan, truncate and listKeys.
 *
 * Flags: `--seconds N` per run (default 3), `--rounds N` interleaved rounds
 * (default 2; at least 2 for the first-write growth), `--quick` (1 s, 1 round,
 * fewer sizes, first writes up to 5,000 keys instead of 100,000: a smoke run),
 * `--write` (also rewrite the tables in BENCHMARKS.md, save the run's JSON as
 * `bench/results/benchmarks.json` and draw `throughput.svg` and
 * `contended.svg` from it, `bench/_charts.ts`), `--peers-only` (only the
 * comparison with Deno KV and etcd, written to `bench/results/peers.md` and
 * `peers.json`; with `--write`, `peers-throughput.svg` too).
 *
 * @module
 */
import postgres from "postgres";
import { PostgresConsensus } from "../mod.ts";
import { fromPostgresJs } from "../src/adapters/postgres_js.ts";
import { dialectFor } from "../src/dialect.ts";
import { batching } from "./_batching.ts";
import { contended, type ContendedMode } from "./_contended.ts";
import {
  benchArgs,
  casScript,
  fmt,
  freshKey,
  mean,
  percentile,
  rate,
  ratio,
  type RunResult,
  timeBoxed,
  usageOrProblem,
} from "./_measure.ts";
import { writeCharts } from "./_charts.ts";
import { firstWrites } from "./_first_writes.ts";
import { peers } from "./_peers.ts";
import { findPgBin, pgbench } from "./_pgbench.ts";
import {
  benchDialect,
  denoPostgresTarget,
  nodePostgresTarget,
  postgresJsTarget,
  TABLE,
  type Target,
} from "./_targets.ts";
import { transfers } from "./_transfers.ts";
import { updateWithCounter } from "./_update.ts";

const args = Deno.args;
const lines: string[] = [];
/** Prints a report line and keeps it for BENCHMARKS.md. */
function out(line: string): void {
  console.log(line);
  lines.push(line);
}
/** Embeds a chart `--write` renders from this run into BENCHMARKS.md, below the table it charts. */
function chart(file: string, alt: string): void {
  if (flag("write")) lines.push("", `![${alt}](bench/results/${file})`);
}
const USAGE = `Usage: deno task bench [--quick] [--seconds N] [--rounds N] [--write] [--peers-only]

Every workload beside its ceilings (raw driver, pgbench) and beside Deno KV and
etcd, in one interleaved run against DATABASE_URL, or a throwaway local Postgres
when it is unset. Tables go to stdout, progress to stderr; results to
bench/results/latest.json and latest.md.

  --quick        a smoke run: 1 s per case, 1 round, fewer sizes
  --seconds N    seconds per case (default 3)
  --rounds N     interleaved rounds (default 2)
  --write        also rewrite the tables in BENCHMARKS.md, keep the run's JSON as
                 bench/results/benchmarks.json and draw throughput.svg, contended.svg
  --peers-only   only the comparison with Deno KV and etcd (bench/results/peers.md)
  --help, -h     this text`;
const parsed = benchArgs(args, { flags: ["write", "peers-only"] });
usageOrProblem(parsed, USAGE, Deno.exit);
const { flag, quick, seconds, rounds } = parsed;
const ms = seconds * 1000;
const url = Deno.env.get("DATABASE_URL");
if (!url) {
  console.error(
    "DATABASE_URL is not set: run `deno task bench`, which starts a throwaway Postgres",
  );
  Deno.exit(2);
}
const binDir = await findPgBin();
const admin = postgres(url, { max: 1, onnotice: () => {} });
const dialect = benchDialect();
await admin.unsafe(dialect.dropTable);
await admin.unsafe(dialect.createTable);

const serverVersion = (await admin`SHOW server_version`)[0].server_version as string;
const machine = {
  date: new Date().toISOString(),
  deno: Deno.version.deno,
  postgres: serverVersion,
  cpus: navigator.hardwareConcurrency,
  os: `${Deno.build.os} ${Deno.build.arch}`,
  seconds,
  rounds,
};
out(`# Benchmarks (${machine.date})`);
out(
  `Deno ${machine.deno}, Postgres ${machine.postgres} on loopback TCP, ${machine.cpus} cores, ` +
    `${seconds} s per run, ${rounds} interleaved round(s).\n`,
);

const progress = (text: string) => console.error(`  [bench] ${text}`);

async function seed(shards: string[]): Promise<void> {
  await admin.unsafe(
    `INSERT INTO ${TABLE} (shard, sequence_number, data) SELECT unnest($1::text[]), 0, '\\x00'::bytea`,
    [shards],
  );
}

async function headOf(key: string): Promise<bigint> {
  const rows = await admin.unsafe(
    `SELECT coalesce(max(sequence_number), -1)::text AS h FROM ${TABLE} WHERE shard = $1`,
    [key],
  );
  return BigInt(rows[0].h);
}

const results: Record<string, unknown[]> = {
  uncontended: [],
  contended: [],
  transfers: [],
  reads: [],
  peers: [],
  batching: [],
};
const target: Target = await postgresJsTarget(url, 20);

// ---- Deno KV and etcd through the library's loops, interleaved with it.
results.peers.push(...await peers({ store: target.store, ms, rounds, out, progress }));
if (flag("peers-only")) {
  await target.close();
  await admin.end({ timeout: 1 });
  await Deno.mkdir("bench/results", { recursive: true });
  await Deno.writeTextFile("bench/results/peers.md", lines.join("\n") + "\n");
  await Deno.writeTextFile("bench/results/peers.json", JSON.stringify({ machine, ...results }));
  console.error("\n  [bench] wrote bench/results/peers.md and peers.json");
  if (flag("write")) {
    for (const path of await writeCharts({ machine, ...results }, "bench/results", "peers-")) {
      console.error(`  [bench] wrote ${path}`);
    }
  }
  Deno.exit(0);
}
out("");

// ---- Uncontended: W workers, each on its own key, head then CAS(head + 1),
// for every adapter that runs under Deno, each beside its raw driver and
// beside pgbench (measured once per configuration and round, interleaved).
const targets: Target[] = [target, await nodePostgresTarget(url, 20)];
const denoPostgres = await denoPostgresTarget(url, 20);
if (denoPostgres) targets.push(denoPostgres);
out("## Uncontended compare-and-set (head, then CAS head + 1; each worker its own key)\n");
out(
  "| adapter | workers | payload | library CAS/s | raw driver CAS/s | pgbench CAS/s | library / raw | library / pgbench | p50 ms | p99 ms | errors |",
);
out("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
if (!denoPostgres) {
  lines.push("<!-- deno-postgres rows skipped: jsr:@db/postgres could not be loaded -->");
}
for (const payloadSize of quick ? [8] : [8, 1024]) {
  const data = new Uint8Array(payloadSize).map((_, i) => i & 0xff);
  for (const workers of quick ? [1, 16] : [1, 4, 16]) {
    const lib = new Map<Target, RunResult[]>(), raw = new Map<Target, RunResult[]>();
    const bench: number[] = [];
    for (let round = 0; round < rounds; round++) {
      const pgbPrefix = freshKey("u-pgb");
      await seed(Array.from({ length: workers }, (_, i) => `${pgbPrefix}-${i}`));
      progress(`uncontended ${workers} workers, ${payloadSize} B, round ${round + 1}: pgbench`);
      bench.push(
        (await pgbench(
          binDir,
          url,
          casScript(dialect, `'${pgbPrefix}-' || :client_id`, data),
          workers,
          seconds,
        ))
          .tps,
      );
      for (const t of targets) {
        progress(`uncontended ${workers} workers, ${payloadSize} B, round ${round + 1}: ${t.name}`);
        const libKeys = Array.from({ length: workers }, () => freshKey("u-lib"));
        const rawKeys = Array.from({ length: workers }, () => freshKey("u-raw"));
        await seed([...libKeys, ...rawKeys]);
        const l = await timeBoxed(workers, ms, async (w) => {
          const startedAt = performance.now();
          const head = await t.store.head(libKeys[w]);
          const outcome = await t.store.compareAndSet(libKeys[w], {
            seqno: head!.seqno + 1n,
            data,
          });
          return { ok: outcome === "committed", attempts: 1, startedAt };
        });
        const r = await timeBoxed(workers, ms, async (w) => {
          const startedAt = performance.now();
          const head = await t.rawHead(rawKeys[w]);
          const ok = await t.rawCas(rawKeys[w], head![0] + 1n, data);
          return { ok, attempts: 1, startedAt };
        });
        lib.set(t, [...(lib.get(t) ?? []), l]);
        raw.set(t, [...(raw.get(t) ?? []), r]);
      }
    }
    const pgbRate = mean(bench);
    for (const t of targets) {
      const libRate = mean(lib.get(t)!.map(rate)), rawRate = mean(raw.get(t)!.map(rate));
      const latencies = lib.get(t)!.flatMap((r) => r.latencies).sort((a, b) => a - b);
      const errors = lib.get(t)!.reduce((a, r) => a + r.errors, 0);
      const row = {
        adapter: t.name,
        runtime: "deno",
        workers,
        payload: payloadSize,
        library: libRate,
        raw: rawRate,
        pgbench: pgbRate,
        p50: percentile(latencies, 50),
        p99: percentile(latencies, 99),
        errors,
      };
      results.uncontended.push(row);
      out(
        `| ${t.name} (Deno) | ${workers} | ${payloadSize} B | ${fmt(libRate)} | ${fmt(rawRate)} | ${
          fmt(pgbRate)
        } | ${ratio(libRate, rawRate)} | ${ratio(libRate, pgbRate)} | ${fmt(row.p50, 2)} | ${
          fmt(row.p99, 2)
        } | ${errors} |`,
      );
    }
  }
}
for (const t of targets.slice(1)) await t.close();

// ---- Cross-key batching on against off (src/_batch.ts), same loop.
results.batching = await batching({
  url,
  ms,
  rounds: Math.max(2, rounds),
  workers: quick ? [1, 16] : [1, 4, 16],
  out,
  progress,
});

// ---- The same workload under Bun (Bun.SQL and porsager), when bun is here.
{
  const bunArgs = [
    "run",
    "bench/bun_report.ts",
    "--seconds",
    String(seconds),
    "--rounds",
    String(rounds),
  ];
  if (quick) bunArgs.push("--quick");
  progress("uncontended under Bun: bun run bench/bun_report.ts");
  const bun = await new Deno.Command("bun", { args: bunArgs, stdout: "piped", stderr: "inherit" })
    .output()
    .catch((error: Error) => ({ success: false, stdout: new Uint8Array(), error }));
  if (bun.success) {
    for (const line of new TextDecoder().decode(bun.stdout).split("\n")) {
      if (line.trim() !== "" || lines.at(-1) !== "") out(line);
    }
    results.uncontended.push(
      ...JSON.parse(await Deno.readTextFile("bench/results/latest-bun.json")) as unknown[],
    );
  } else {
    out("\n*Under Bun: SKIPPED (bun is not on the PATH or its runner failed; see stderr).*");
  }
}

chart("throughput.svg", "Uncontended head+CAS/s against workers, per adapter, pgbench and peer");

// ---- Contended: W writers on one key.
out("\n## Contended compare-and-set (W writers on one key)\n");
out(
  "| mode | writers | committed/s | attempts/s | mismatch % | p50 ms | p99 ms | errors | vs. 1 writer |",
);
out("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");

async function multiProcess(
  key: string,
  writers: number,
  mode: ContendedMode,
): Promise<RunResult> {
  const processes = 4;
  const perProcess = Math.max(1, Math.round(writers / processes));
  const startAt = Date.now() + 1500;
  const children = Array.from({ length: processes }, () =>
    new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "-A",
        "bench/_contended_worker.ts",
        url!,
        key,
        String(perProcess),
        String(ms),
        mode,
        String(startAt),
      ],
      stdout: "piped",
      stderr: "inherit",
    }).output());
  const outputs = await Promise.all(children);
  const merged: RunResult = { ops: 0, attempts: 0, errors: 0, seconds: 0, latencies: [] };
  for (const out of outputs) {
    if (!out.success) throw new Error("a contended worker process failed");
    const r = JSON.parse(new TextDecoder().decode(out.stdout)) as RunResult;
    merged.ops += r.ops;
    merged.attempts += r.attempts;
    merged.errors += r.errors;
    merged.seconds = Math.max(merged.seconds, r.seconds);
    merged.latencies.push(...r.latencies);
  }
  merged.latencies.sort((a, b) => a - b);
  return merged;
}

type ContendedRunner = {
  label: string;
  run: (writers: number) => Promise<RunResult>;
};
const contendedRunners: ContendedRunner[] = [
  {
    label: "library read-then-CAS, 1 process",
    run: (w) => contended(target.store, freshKey("c-lib"), w, ms, "loop"),
  },
  {
    label: "library update(), 1 process",
    run: (w) => contended(target.store, freshKey("c-upd"), w, ms, "update", updateWithCounter),
  },
  {
    label: "raw driver read-then-CAS, 1 process",
    run: (w) => {
      const key = freshKey("c-raw");
      return timeBoxed(w, ms, async () => {
        const startedAt = performance.now();
        let attempts = 0;
        for (;;) {
          const head = await target.rawHead(key);
          attempts++;
          if (await target.rawCas(key, head ? head[0] + 1n : 0n, new Uint8Array(8))) {
            return { ok: true, attempts, startedAt };
          }
        }
      });
    },
  },
  {
    label: "pgbench read-then-CAS",
    run: async (w) => {
      const key = freshKey("c-pgb");
      await seed([key]);
      const before = await headOf(key);
      const pgb = await pgbench(
        binDir,
        url!,
        casScript(dialect, `'${key}'`, new Uint8Array(8)),
        w,
        seconds,
      );
      const committed = Number((await headOf(key)) - before);
      return {
        ops: committed,
        attempts: pgb.transactions,
        errors: pgb.failed,
        seconds,
        latencies: [],
      };
    },
  },
  {
    label: "library read-then-CAS, 4 processes",
    run: (w) => multiProcess(freshKey("c-mp"), w, "loop"),
  },
  {
    label: "library update(), 4 processes",
    run: (w) => multiProcess(freshKey("c-mpu"), w, "update"),
  },
];
const contendedWriters = quick ? [1, 16] : [1, 4, 16];
const contendedRates = new Map<string, Map<number, RunResult[]>>();
for (let round = 0; round < rounds; round++) {
  for (const writers of contendedWriters) {
    for (const runner of contendedRunners) {
      if (runner.label.includes("4 processes") && writers < 4) continue;
      progress(`contended ${runner.label}, ${writers} writers, round ${round + 1}`);
      const r = await runner.run(writers);
      const byWriters = contendedRates.get(runner.label) ?? new Map();
      byWriters.set(writers, [...(byWriters.get(writers) ?? []), r]);
      contendedRates.set(runner.label, byWriters);
    }
  }
}
const singleWriter = mean(
  (contendedRates.get("library read-then-CAS, 1 process")?.get(1) ?? []).map(rate),
);
for (const runner of contendedRunners) {
  for (const writers of contendedWriters) {
    const runs = contendedRates.get(runner.label)?.get(writers);
    if (!runs) continue;
    const committed = mean(runs.map(rate));
    const attempts = mean(runs.map((r) => r.attempts / r.seconds));
    const latencies = runs.flatMap((r) => r.latencies).sort((a, b) => a - b);
    const errors = runs.reduce((a, r) => a + r.errors, 0);
    const base = runner.label.startsWith("library")
      ? singleWriter
      : mean(contendedRates.get(runner.label)?.get(1)?.map(rate) ?? []);
    const row = {
      mode: runner.label,
      writers,
      committed,
      attempts,
      mismatchPercent: attempts > 0 ? 100 * (1 - committed / attempts) : NaN,
      p50: percentile(latencies, 50),
      p99: percentile(latencies, 99),
      errors,
      vsSingleWriter: committed / base,
    };
    results.contended.push(row);
    out(
      `| ${runner.label} | ${writers} | ${fmt(committed)} | ${fmt(attempts)} | ${
        fmt(row.mismatchPercent, 1)
      } | ${fmt(row.p50, 2)} | ${fmt(row.p99, 2)} | ${errors} | ${ratio(committed, base)} |`,
    );
  }
}
out(
  "\n`vs. 1 writer`: committed/s over the single-writer read-then-CAS rate of the library in one process " +
    "(for raw and pgbench rows: over their own single-writer rate).",
);
chart("contended.svg", "Contended committed CAS/s against writers on one key");

// ---- Two-key transfers with compareAndSetMany beside single-key compare-and-set.
{
  const raw = postgres(url, { max: 16, onnotice: () => {} });
  results.transfers.push(
    ...await transfers({
      store: target.store,
      raw,
      dialect,
      seed,
      workers: 16,
      accounts: 8,
      ms,
      rounds,
      out,
      progress,
    }),
  );
  await raw.end({ timeout: 1 });
}

// ---- Reads and maintenance.
out("\n## scan, truncate, listKeys\n");
out("| workload | library | raw driver | pgbench | library / raw | library / pgbench |");
out("| --- | ---: | ---: | ---: | ---: | ---: |");
{
  const key = freshKey("scan");
  await admin.unsafe(
    `INSERT INTO ${TABLE} SELECT $1, g, '\\x0102030405060708'::bytea FROM generate_series(0, 999) g`,
    [key],
  );
  const lib: number[] = [], raw: number[] = [], pgb: number[] = [];
  for (let round = 0; round < rounds; round++) {
    progress(`scan 1,000 versions, round ${round + 1}`);
    lib.push(rate(
      await timeBoxed(4, ms, async () => {
        const startedAt = performance.now();
        const versions = await target.store.scan(key, 0n);
        return { ok: versions.length === 1000, attempts: 1, startedAt };
      }),
    ));
    raw.push(rate(
      await timeBoxed(4, ms, async () => {
        const startedAt = performance.now();
        return { ok: (await target.rawScan(key, 0n)) === 1000, attempts: 1, startedAt };
      }),
    ));
    const script = dialect.scan.text.replace("$1::text", `'${key}'::text`)
      .replace("$2::int8", "0::int8").replace("$3::int8", "4611686018427387904::int8") + ";\n";
    pgb.push((await pgbench(binDir, url, script, 4, seconds)).tps);
  }
  out(
    `| scan of 1,000 versions (8 B each), 4 workers, scans/s | ${fmt(mean(lib))} | ${
      fmt(mean(raw))
    } | ${fmt(mean(pgb))} | ${ratio(mean(lib), mean(raw))} | ${ratio(mean(lib), mean(pgb))} |`,
  );
  results.reads.push({
    workload: "scan1000",
    library: mean(lib),
    raw: mean(raw),
    pgbench: mean(pgb),
  });
}
{
  const keys = quick ? 50 : 200;
  const prepare = async (label: string) => {
    const prefix = freshKey(label);
    await admin.unsafe(
      `INSERT INTO ${TABLE} SELECT $1 || '-' || k, g, '\\x00'::bytea
       FROM generate_series(0, ${keys - 1}) k, generate_series(0, 999) g`,
      [prefix],
    );
    return Array.from({ length: keys }, (_, k) => `${prefix}-${k}`);
  };
  progress("truncate keeping the last 100 of 1,000 versions");
  const libKeys = await prepare("tr-lib");
  const rawKeys = await prepare("tr-raw");
  await admin.unsafe(`VACUUM ANALYZE ${TABLE}`);
  // Interleaved key by key, so neither side gets the warmer cache.
  const rawSql = postgres(url, { max: 1, onnotice: () => {} });
  let libMs = 0, rawMs = 0;
  // The order alternates too: whichever of a pair runs first is slower
  // (measured: library first for every pair gave 0.60; alternated, 1.00).
  for (let k = 0; k < keys; k++) {
    for (const side of k % 2 === 0 ? ["lib", "raw"] : ["raw", "lib"]) {
      const t = performance.now();
      if (side === "lib") {
        await target.store.truncate(libKeys[k], 900n);
        libMs += performance.now() - t;
      } else {
        await rawSql.unsafe(dialect.truncate.text, [rawKeys[k], 900n] as never[], {
          prepare: true,
        });
        rawMs += performance.now() - t;
      }
    }
  }
  const libRate = keys / (libMs / 1000);
  const rawRate = keys / (rawMs / 1000);
  out(
    `| truncate keeping the last 100 of 1,000 versions, 1 worker, truncates/s | ${fmt(libRate)} | ${
      fmt(rawRate)
    } | n/a | ${ratio(libRate, rawRate)} | n/a |`,
  );
  results.reads.push({ workload: "truncate900", library: libRate, raw: rawRate });

  progress("listKeys over 100,000 keys");
  const listTable = "bench_list_keys";
  const listDialect = dialectFor(
    "postgres",
    `"${listTable}"`,
  );
  await admin.unsafe(listDialect.dropTable);
  await admin.unsafe(listDialect.createTable);
  const total = quick ? 20_000 : 100_000;
  await admin.unsafe(
    `INSERT INTO ${listTable} SELECT 'key-' || lpad(k::text, 6, '0'), 0, '\\x00'::bytea FROM generate_series(1, ${total}) k`,
  );
  await admin.unsafe(`VACUUM ANALYZE ${listTable}`);
  let t: number;
  const listStore = await PostgresConsensus.open(
    fromPostgresJs(postgres(url, { max: 1, onnotice: () => {} }), { owned: true }),
    { table: listTable, mode: "postgres", create: false },
  );
  t = performance.now();
  let seen = 0;
  for await (const _ of listStore.listKeys()) seen++;
  const libKeysPerSecond = seen / ((performance.now() - t) / 1000);
  if (seen !== total) throw new Error(`listKeys saw ${seen} keys, expected ${total}`);
  t = performance.now();
  let after = "", rawSeen = 0;
  for (;;) {
    const rows = await rawSql.unsafe(listDialect.listKeys.text, [after, 1000n] as never[], {
      prepare: true,
    })
      .values();
    rawSeen += rows.length;
    if (rows.length < 1000) break;
    after = rows[rows.length - 1][0] as string;
  }
  const rawKeysPerSecond = rawSeen / ((performance.now() - t) / 1000);
  out(
    `| listKeys over ${fmt(total)} keys (pages of 1,000), keys/s | ${fmt(libKeysPerSecond)} | ${
      fmt(rawKeysPerSecond)
    } | n/a | ${ratio(libKeysPerSecond, rawKeysPerSecond)} | n/a |`,
  );
  results.reads.push({
    workload: "listKeys",
    keys: total,
    library: libKeysPerSecond,
    raw: rawKeysPerSecond,
  });
  await listStore.close();
  await rawSql.end({ timeout: 1 });
}

await target.close();

// ---- First writes on a table growing from empty (issue 8, item 6): the
// library on a young table beside the same on an analyzed one, and the old
// first-write statement, whose generic plan scanned the whole table.
const firstWriteKeys = quick ? 5_000 : 100_000;
const firstWriteResults = await firstWrites({
  url,
  admin,
  keys: firstWriteKeys,
  window: firstWriteKeys / 5,
  rounds: quick ? 1 : Math.max(2, rounds),
  targetKeys: 100_000,
  rawCapMs: quick ? 5_000 : 120_000,
  out,
  progress,
});

await admin.end({ timeout: 1 });
await Deno.mkdir("bench/results", { recursive: true });
const json = JSON.stringify({ machine, ...results, firstWrites: firstWriteResults }, null, 2);
await Deno.writeTextFile("bench/results/latest.json", json);
await Deno.writeTextFile("bench/results/latest.md", lines.join("\n") + "\n");
console.error("\n  [bench] wrote bench/results/latest.json and latest.md");
if (flag("write")) {
  // The figures behind BENCHMARKS.md and its charts, kept in git beside them.
  await Deno.writeTextFile("bench/results/benchmarks.json", json);
  for (const path of await writeCharts(JSON.parse(json), "bench/results")) {
    console.error(`  [bench] wrote ${path}`);
  }
  const doc = await Deno.readTextFile("BENCHMARKS.md");
  // Inside BENCHMARKS.md the run is one section among others: its title and
  // its tables' headings become level-3 headings.
  const nested = (line: string) =>
    line.startsWith("# Benchmarks (")
      ? `### Run of ${line.slice("# Benchmarks ".length)}`
      : line.startsWith("## ")
      ? `#${line}`
      : line;
  const start = doc.indexOf("<!-- results -->");
  const end = doc.indexOf("<!-- /results -->");
  if (start < 0 || end < 0) throw new Error("BENCHMARKS.md lacks the <!-- results --> markers");
  await Deno.writeTextFile(
    "BENCHMARKS.md",
    doc.slice(0, start + "<!-- results -->".length) + "\n" + lines.map(nested).join("\n") +
      "\n" + doc.slice(end),
  );
  console.error("  [bench] rewrote the results in BENCHMARKS.md");
}
