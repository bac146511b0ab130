/**
 * Leases across real processes on a real Postgres: several contender
 * processes (torture/lease_worker.ts, under Deno, and under Bun when `bun`
 * is on the PATH) compete for one key while this process pauses them with
 * SIGSTOP for longer than the ttl (a GC pause that freezes everything, the
 * lease's own timers included) and kills some with SIGKILL (they stop
 * renewing and never release; a replacement starts). Their reports become
 * tenures for the lease checker.
 *
 * @module
 */
import { PostgresConsensus } from "../mod.ts";
import { fromPostgresJs } from "../src/adapters/postgres_js.ts";
import postgres from "postgres";
import { checkTenures, type LeaseVerdict, type Tenure } from "./lease_checker.ts";

/** Knobs of a run. */
export interface ProcessRunOptions {
  url: string;
  /** Flags for `deno run` (the import map, when JSR is unreachable). */
  denoArgs?: string[];
  /** @default {4} */
  workers?: number;
  /** @default {300} */
  ttlMs?: number;
  /** @default {8000} */
  durationMs?: number;
  /** Run every other worker under Bun when it is on the PATH. @default {true} */
  bun?: boolean;
  /** @default {"lease_processes"} */
  table?: string;
}

/** What a run did and what the checker found. */
export interface ProcessRunReport {
  readonly verdict: LeaseVerdict;
  readonly tenures: readonly Tenure[];
  readonly endings: Record<string, number>;
  readonly pauses: number;
  readonly kills: number;
  readonly runtimes: Record<string, number>;
  /** Lines a worker wrote that were not reports (errors), by worker. */
  readonly noise: readonly string[];
}

type MutableTenure = { -readonly [K in keyof Tenure]: Tenure[K] };

interface Worker {
  name: string;
  child: Deno.ChildProcess;
  tenure?: MutableTenure;
  stops: [number, number][];
  done: Promise<void>;
}

const now = () => performance.timeOrigin + performance.now();

async function hasBun(): Promise<boolean> {
  try {
    return (await new Deno.Command("bun", { args: ["--version"], stdout: "null" }).output())
      .success;
  } catch {
    return false;
  }
}

/** Runs the contenders; see the module doc. */
export async function runLeaseProcesses(options: ProcessRunOptions): Promise<ProcessRunReport> {
  const workers = options.workers ?? 4;
  const ttlMs = options.ttlMs ?? 300;
  const durationMs = options.durationMs ?? 8000;
  const table = options.table ?? "lease_processes";
  const key = `lease-${crypto.randomUUID()}`;
  const withBun = (options.bun ?? true) && await hasBun();
  {
    const setup = await PostgresConsensus.open(
      fromPostgresJs(postgres(options.url, { max: 1, onnotice: () => {} }), { owned: true }),
      { table },
    );
    await setup.close();
  }
  const tenures: MutableTenure[] = [];
  const noise: string[] = [];
  const runtimes: Record<string, number> = {};
  let pauses = 0, kills = 0, spawned = 0;
  const live = new Set<Worker>();
  const all: Worker[] = [];

  function spawn(): Worker {
    const name = `w${spawned}`;
    const bun = withBun && spawned % 2 === 1;
    spawned++;
    runtimes[bun ? "bun" : "deno"] = (runtimes[bun ? "bun" : "deno"] ?? 0) + 1;
    const child = new Deno.Command(bun ? "bun" : Deno.execPath(), {
      args: bun
        ? ["run", "torture/lease_worker.ts"]
        : ["run", "-A", ...options.denoArgs ?? [], "torture/lease_worker.ts"],
      env: {
        DATABASE_URL: options.url,
        LEASE_TABLE: table,
        LEASE_KEY: key,
        LEASE_TTL_MS: String(ttlMs),
        WORKER_NAME: name,
      },
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const worker: Worker = { name, child, stops: [], done: Promise.resolve() };
    worker.done = Promise.all([
      readLines(child.stdout, (line) => report(worker, line)),
      readLines(child.stderr, (line) => noise.push(`${name}: ${line}`)),
    ]).then(() => {});
    live.add(worker);
    all.push(worker);
    return worker;
  }

  function report(worker: Worker, line: string): void {
    let event: { e: string; t: number; token?: string; how?: string; stalled?: boolean };
    try {
      event = JSON.parse(line);
    } catch {
      noise.push(`${worker.name}: ${line}`);
      return;
    }
    const tenure = worker.tenure;
    switch (event.e) {
      case "grant":
        worker.tenure = {
          holder: worker.name,
          token: BigInt(event.token!),
          grantedAt: event.t,
          lastValidAt: event.t,
          endedAt: Infinity,
          how: "held at the end",
        };
        tenures.push(worker.tenure);
        break;
      case "valid":
        if (tenure) tenure.lastValidAt = event.t;
        break;
      case "end":
        if (tenure && tenure.endedAt === Infinity) {
          tenure.endedAt = event.t;
          tenure.how = event.how;
          tenure.pausedBeforeEnd = event.stalled ||
            pausedSince(worker, tenure.lastValidAt, event.t);
        }
        break;
    }
  }

  function kill(worker: Worker): void {
    try {
      worker.child.kill("SIGKILL");
    } catch { /* already gone */ }
    const at = now();
    live.delete(worker);
    const tenure = worker.tenure;
    if (tenure && tenure.endedAt === Infinity) {
      tenure.endedAt = at;
      tenure.how = "killed";
      // A killed process acted as the holder last at lastValidAt; the kill
      // time says nothing about when its lease ended for it. Its timers may
      // not have run for a while before the kill (a SIGSTOP, or a process
      // starved of CPU on a loaded machine, which is a pause in all but
      // name, and which CI showed: a holder starved past its deadline was
      // counted valid until its kill 1.3 s later). So its interval ends at
      // its last act; an act after another's grant is still a violation.
      tenure.pausedBeforeEnd = true;
    }
  }

  for (let i = 0; i < workers; i++) spawn();
  const started = now();
  const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
  try {
    while (now() - started < durationMs) {
      await sleep(ttlMs * (1 + 2 * Math.random()));
      // Workers that exited on their own ("died") are replaced.
      for (const worker of live) {
        if (worker.tenure?.how === "died") {
          live.delete(worker);
          spawn();
        }
      }
      // Mostly the holder: that is where a pause or a death matters.
      const list = [...live];
      const holder = list.find((worker) => worker.tenure?.endedAt === Infinity);
      const victim = holder && Math.random() < 0.7
        ? holder
        : list[Math.floor(Math.random() * list.length)];
      if (!victim) continue;
      if (Math.random() < 0.2) {
        kill(victim);
        kills++;
        spawn();
        continue;
      }
      // A pause longer than the ttl, timers included.
      const from = now();
      victim.child.kill("SIGSTOP");
      pauses++;
      await sleep(ttlMs * (1.2 + 1.3 * Math.random()));
      victim.child.kill("SIGCONT");
      victim.stops.push([from, now()]);
    }
  } finally {
    for (const worker of all) kill(worker);
    await Promise.all(all.map((worker) => worker.child.status));
    await Promise.all(all.map((worker) => worker.done));
  }
  const endings: Record<string, number> = {};
  for (const tenure of tenures) endings[tenure.how!] = (endings[tenure.how!] ?? 0) + 1;
  return { verdict: checkTenures(tenures), tenures, endings, pauses, kills, runtimes, noise };
}

/** Whether `worker` was stopped at some moment in `(from, to]`. */
function pausedSince(worker: Worker, from: number, to: number): boolean {
  return worker.stops.some(([start, end]) => start < to && end > from);
}

async function readLines(
  stream: ReadableStream<Uint8Array>,
  onLine: (line: string) => void,
): Promise<void> {
  let buffer = "";
  for await (const chunk of stream.pipeThrough(new TextDecoderStream())) {
    buffer += chunk;
    let newline;
    while ((newline = buffer.indexOf("\n")) >= 0) {
      const line = buffer.slice(0, newline).trim();
      buffer = buffer.slice(newline + 1);
      if (line) onLine(line);
    }
  }
  if (buffer.trim()) onLine(buffer.trim());
}
