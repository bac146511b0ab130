/**
 * `deno task bench:lease`: how long a lease takes to change hands on a real
 * Postgres (porsager's driver, loopback):
 *
 * - after `release()`: a contender already waiting acquires; the time from
 *   the call to the contender's grant. Without `notify` the contender sees
 *   the release on its next poll (default interval, and 10 ms); with
 *   `notify: true` on both stores a notification wakes it (default interval,
 *   and a poll as long as the ttl, to show the poll is not what hands over);
 * - after the holder dies: the holder runs in a child process that is
 *   killed with SIGKILL at a random moment of its tenure (it never
 *   releases); the time from the kill to the contender's grant.
 *
 * Flags: `--quick` (fewer samples), `--samples N`. Prints a markdown table.
 *
 * @module
 */
import postgres from "postgres";
import { acquireLease, PostgresConsensus } from "../mod.ts";
import { fromPostgresJs } from "../src/adapters/postgres_js.ts";
import { importMapArgs } from "../tools/_jsr.ts";
import { benchArgs, usageOrProblem } from "./_measure.ts";

const parsed = benchArgs(Deno.args, { options: ["samples"] });
usageOrProblem(
  parsed,
  `Usage: deno task bench:lease [--quick] [--samples N]

How long a lease takes to change hands (after release, after the holder dies),
against DATABASE_URL or a throwaway local Postgres. Prints a markdown table.

  --quick        fewer samples
  --samples N    samples after release (default 30)
  --help, -h     this text`,
  Deno.exit,
);

const url = Deno.env.get("DATABASE_URL");
if (!url) {
  console.error("DATABASE_URL is not set: run `deno task bench:lease`, which starts a Postgres");
  Deno.exit(2);
}
const quick = parsed.quick;
const samples = parsed.option("samples", quick ? 5 : 30);
const deathSamples = quick ? 3 : Math.max(3, Math.round(samples / 3));
const table = "lease_bench";
const TTL = 1000;
const DEFAULT_POLL = TTL / 10;

const open = (notify = false) =>
  PostgresConsensus.open(
    fromPostgresJs(postgres(url, { max: 4, onnotice: () => {} }), { owned: true }),
    { table, notify },
  );
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const percentile = (values: number[], p: number) => {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
};

// Two stores, as two processes would have; and two that notify.
const holderStore = await open();
const contenderStore = await open();
const notifyingHolder = await open(true);
const notifyingContender = await open(true);

async function afterRelease(
  pollIntervalMs: number | undefined,
  notify = false,
): Promise<number[]> {
  const holders = notify ? notifyingHolder : holderStore;
  const contenders = notify ? notifyingContender : contenderStore;
  const key = `release-${crypto.randomUUID()}`;
  const times: number[] = [];
  let holder = await acquireLease(holders, key, { holder: "a", ttlMs: TTL });
  for (let i = 0; i < samples; i++) {
    const waiting = acquireLease(contenders, key, { holder: "b", ttlMs: TTL, pollIntervalMs });
    // Let the contender settle into its polling, at a random phase of it.
    await sleep(50 + Math.random() * (pollIntervalMs ?? DEFAULT_POLL));
    const started = performance.now();
    await holder.release();
    const next = await waiting;
    times.push(performance.now() - started);
    // Back to the first store for the next sample.
    const back = acquireLease(holders, key, { holder: "a", ttlMs: TTL, pollIntervalMs: 10 });
    await next.release();
    holder = await back;
  }
  await holder.release();
  return times;
}

async function afterDeath(): Promise<number[]> {
  const times: number[] = [];
  const importMap = await importMapArgs();
  for (let i = 0; i < deathSamples; i++) {
    const key = `death-${crypto.randomUUID()}`;
    const child = new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", ...importMap, "bench/_lease_holder.ts"],
      env: { DATABASE_URL: url!, LEASE_TABLE: table, LEASE_KEY: key, LEASE_TTL_MS: String(TTL) },
      stdout: "piped",
    }).spawn();
    const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
    const guard = setTimeout(() => child.kill("SIGKILL"), 30_000);
    const first = await reader.read();
    if (!first.value?.startsWith("held")) throw new Error(`holder said ${first.value}`);
    const waiting = acquireLease(contenderStore, key, { holder: "b", ttlMs: TTL });
    await sleep(TTL * Math.random());
    const started = performance.now();
    child.kill("SIGKILL");
    const lease = await waiting;
    times.push(performance.now() - started);
    clearTimeout(guard);
    await child.status;
    reader.releaseLock();
    await child.stdout.cancel().catch(() => {});
    await lease.release();
  }
  return times;
}

const rows: string[][] = [];
const row = (what: string, poll: string, times: number[], bound: string, notify = "no") =>
  rows.push([
    what,
    String(TTL),
    poll,
    notify,
    String(times.length),
    percentile(times, 50).toFixed(1),
    percentile(times, 90).toFixed(1),
    Math.max(...times).toFixed(1),
    bound,
  ]);
row(
  "after `release()`",
  `${DEFAULT_POLL} (default)`,
  await afterRelease(undefined),
  "a poll interval and two round trips",
);
row("after `release()`", "10", await afterRelease(10), "a poll interval and two round trips");
row(
  "after `release()`",
  `${DEFAULT_POLL} (default)`,
  await afterRelease(undefined, true),
  "a notification and two round trips",
  "yes",
);
row(
  "after `release()`",
  String(TTL),
  await afterRelease(TTL, true),
  "a notification and two round trips",
  "yes",
);
row(
  "after the holder dies (SIGKILL)",
  `${DEFAULT_POLL} (default)`,
  await afterDeath(),
  "ttl + a poll interval after its last renewal; renewals every ttl / 3",
);
await holderStore.close();
await contenderStore.close();
await notifyingHolder.close();
await notifyingContender.close();

const header = [
  "handover",
  "ttl ms",
  "poll ms",
  "notify",
  "samples",
  "p50 ms",
  "p90 ms",
  "max ms",
  "bound",
];
const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
const line = (cells: string[]) =>
  `| ${
    cells.map((c, i) => i > 0 && i < 8 ? c.padStart(widths[i]) : c.padEnd(widths[i])).join(" | ")
  } |`;
console.log(
  `Deno ${Deno.version.deno}, ${navigator.hardwareConcurrency} cores, ${
    new Date().toISOString()
  }\n`,
);
console.log(line(header));
console.log(
  `| ${
    widths.map((w, i) => i > 0 && i < 8 ? "-".repeat(w - 1) + ":" : "-".repeat(w)).join(" | ")
  } |`,
);
for (const r of rows) console.log(line(r));
