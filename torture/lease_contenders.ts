/**
 * Lease contenders for the campaign's fault rounds: contender processes
 * (`torture/lease_contender.ts`, under Deno, every other one under Bun when
 * asked and `bun` is on the PATH) compete for one key of the round's table,
 * some through the chaos proxy, some straight to the server, with the
 * workload's `application_name`, so the round's faults (kills, restarts,
 * the table locked past the statement timeouts, proxy stalls and cuts) hit
 * their grants, renewals and releases. Meanwhile this process pauses them
 * with SIGSTOP for longer than the ttl and kills some with SIGKILL (a
 * replacement starts); the contenders also stall their own event loops past
 * the ttl, release, and die without releasing. Their reports become tenures
 * for the lease checker.
 *
 * Start with {@linkcode LeaseContenders.start}; {@linkcode LeaseContenders.stop}
 * ends them and returns the verdict.
 *
 * @module
 */
import { checkTenures, type LeaseVerdict, type Tenure } from "./lease_checker.ts";

/** Options for {@linkcode LeaseContenders.start}. */
export interface LeaseContendersOptions {
  /** Where contenders connect, cycled through (say, the proxy and the server). */
  urls: readonly string[];
  table: string;
  key: string;
  /** Live contenders at any time (a killed or dead one is replaced). */
  contenders: number;
  /** @default {1000} */
  ttlMs?: number;
  /** The `application_name` the contenders' connections set. */
  applicationName: string;
  /** Flags for `deno run` (the import map, when JSR is unreachable). */
  denoArgs?: readonly string[];
  /** Run every other contender under Bun when it is on the PATH. @default {false} */
  bun?: boolean;
}

/** What the contenders did and what the checker found. */
export interface LeaseContendersReport {
  readonly verdict: LeaseVerdict;
  readonly tenures: readonly Tenure[];
  /** Tenures by how they ended. */
  readonly endings: Record<string, number>;
  /** SIGSTOPs longer than the ttl. */
  readonly pauses: number;
  /** Busy-waits past the ttl the contenders ran on their own. */
  readonly stalls: number;
  /** SIGKILLs (each followed by a replacement). */
  readonly kills: number;
  /** acquireLease rejections, determinate and not (store failures under the faults). */
  readonly acquireErrors: { determinate: number; indeterminate: number };
  /** release() failures (the lease was over already; handed over after the ttl). */
  readonly releaseErrors: number;
  /** Contenders that exited on their own, not by a planned death (with their last words). */
  readonly crashes: readonly string[];
  /** Contenders started, per runtime. */
  readonly runtimes: Record<string, number>;
  /** Lines that were not reports, and stray rejections. */
  readonly noise: readonly string[];
}

type MutableTenure = { -readonly [K in keyof Tenure]: Tenure[K] };

interface Contender {
  name: string;
  child: Deno.ChildProcess;
  tenure?: MutableTenure;
  stops: [number, number][];
  killed: boolean;
  stderr: string[];
  done: Promise<void>;
}

const now = () => performance.timeOrigin + performance.now();
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function hasBun(): Promise<boolean> {
  try {
    return (await new Deno.Command("bun", { args: ["--version"], stdout: "null" }).output())
      .success;
  } catch {
    return false;
  }
}

/** Running contenders; see the module doc. */
export class LeaseContenders {
  readonly #options: LeaseContendersOptions;
  readonly #ttlMs: number;
  readonly #withBun: boolean;
  readonly #tenures: MutableTenure[] = [];
  readonly #noise: string[] = [];
  readonly #crashes: string[] = [];
  readonly #runtimes: Record<string, number> = {};
  readonly #live = new Set<Contender>();
  readonly #all: Contender[] = [];
  readonly #stopping = new AbortController();
  #chaos: Promise<void> = Promise.resolve();
  #spawned = 0;
  #pauses = 0;
  #stalls = 0;
  #kills = 0;
  #releaseErrors = 0;
  readonly #acquireErrors = { determinate: 0, indeterminate: 0 };

  private constructor(options: LeaseContendersOptions, withBun: boolean) {
    this.#options = options;
    this.#ttlMs = options.ttlMs ?? 1_000;
    this.#withBun = withBun;
  }

  /** Starts the contenders and the pauses and kills. */
  static async start(options: LeaseContendersOptions): Promise<LeaseContenders> {
    const contenders = new LeaseContenders(options, (options.bun ?? false) && await hasBun());
    for (let i = 0; i < options.contenders; i++) contenders.#spawn();
    contenders.#chaos = contenders.#disturb();
    return contenders;
  }

  /** Stops the pauses, kills every contender, and checks their tenures. */
  async stop(): Promise<LeaseContendersReport> {
    this.#stopping.abort();
    await this.#chaos;
    for (const contender of this.#all) this.#kill(contender);
    await Promise.all(this.#all.map((contender) => contender.child.status));
    await Promise.all(this.#all.map((contender) => contender.done));
    const endings: Record<string, number> = {};
    for (const tenure of this.#tenures) endings[tenure.how!] = (endings[tenure.how!] ?? 0) + 1;
    return {
      verdict: checkTenures(this.#tenures),
      tenures: this.#tenures,
      endings,
      pauses: this.#pauses,
      stalls: this.#stalls,
      kills: this.#kills,
      acquireErrors: { ...this.#acquireErrors },
      releaseErrors: this.#releaseErrors,
      crashes: this.#crashes,
      runtimes: this.#runtimes,
      noise: this.#noise,
    };
  }

  #spawn(): void {
    const name = `c${this.#spawned}`;
    const bun = this.#withBun && this.#spawned % 2 === 1;
    const url = this.#options.urls[this.#spawned % this.#options.urls.length];
    this.#spawned++;
    const runtime = bun ? "bun" : "deno";
    this.#runtimes[runtime] = (this.#runtimes[runtime] ?? 0) + 1;
    const child = new Deno.Command(bun ? "bun" : Deno.execPath(), {
      args: bun
        ? ["run", "torture/lease_contender.ts"]
        : ["run", "-A", ...this.#options.denoArgs ?? [], "torture/lease_contender.ts"],
      env: {
        DATABASE_URL: url,
        LEASE_TABLE: this.#options.table,
        LEASE_KEY: this.#options.key,
        LEASE_TTL_MS: String(this.#ttlMs),
        WORKER_NAME: name,
        APPLICATION_NAME: this.#options.applicationName,
      },
      // Held open and never written: the contender exits when it closes.
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const contender: Contender = {
      name,
      child,
      stops: [],
      killed: false,
      stderr: [],
      done: Promise.resolve(),
    };
    contender.done = Promise.all([
      readLines(child.stdout, (line) => this.#report(contender, line)),
      readLines(child.stderr, (line) => {
        if (contender.stderr.length < 20) contender.stderr.push(line);
      }),
    ]).then(() => {});
    // A contender that exits on its own: its open tenure ends at its last
    // act; a planned death or a crash is replaced while the round runs.
    child.status.then(async (status) => {
      await contender.done;
      if (contender.killed) return;
      this.#live.delete(contender);
      this.#endOpen(contender, "died");
      if (status.code !== 3) {
        this.#crashes.push(
          `${name} exited with ${status.code}: ${contender.stderr.slice(-5).join(" | ")}`,
        );
      }
      if (!this.#stopping.signal.aborted) this.#spawn();
    });
    this.#live.add(contender);
    this.#all.push(contender);
  }

  #report(contender: Contender, line: string): void {
    let event: {
      e: string;
      t: number;
      token?: string;
      how?: string;
      stalled?: boolean;
      from?: number;
      to?: number;
      determinate?: boolean;
      message?: string;
    };
    try {
      event = JSON.parse(line);
    } catch {
      this.#noise.push(`${contender.name}: ${line}`);
      return;
    }
    const tenure = contender.tenure;
    switch (event.e) {
      case "grant":
        contender.tenure = {
          holder: contender.name,
          token: BigInt(event.token!),
          grantedAt: event.t,
          lastValidAt: event.t,
          endedAt: Infinity,
          how: "held at the end",
        };
        this.#tenures.push(contender.tenure);
        break;
      case "valid":
        if (tenure) tenure.lastValidAt = event.t;
        break;
      case "stall":
        this.#stalls++;
        contender.stops.push([event.from!, event.to!]);
        break;
      case "end":
        if (tenure && tenure.endedAt === Infinity) {
          tenure.endedAt = event.t;
          tenure.how = event.how;
          tenure.pausedBeforeEnd = event.stalled ||
            pausedSince(contender, tenure.lastValidAt, event.t);
        }
        break;
      case "acquire-error":
        if (event.determinate === false) this.#acquireErrors.indeterminate++;
        else this.#acquireErrors.determinate++;
        break;
      case "release-error":
        this.#releaseErrors++;
        break;
      case "anomaly":
        this.#noise.push(`${contender.name}: ${event.message}`);
        break;
    }
  }

  // A tenure still open when its process ended: its holder acted last at
  // lastValidAt, and its timers may not have run for a while before (a
  // SIGSTOP, a busy-wait, or a process starved of CPU), so its interval
  // ends at its last act.
  #endOpen(contender: Contender, how: string): void {
    const tenure = contender.tenure;
    if (tenure && tenure.endedAt === Infinity) {
      tenure.endedAt = now();
      tenure.how = how;
      tenure.pausedBeforeEnd = true;
    }
  }

  #kill(contender: Contender): void {
    contender.killed = true;
    try {
      contender.child.kill("SIGKILL");
    } catch { /* already gone */ }
    this.#live.delete(contender);
    this.#endOpen(contender, "killed");
  }

  // Every 1 to 3 ttl: mostly the holder, a SIGKILL one time in five (and a
  // replacement), else a SIGSTOP for 1.2 to 2.5 ttl.
  async #disturb(): Promise<void> {
    const ttl = this.#ttlMs;
    const signal = this.#stopping.signal;
    while (!signal.aborted) {
      await abortableSleep(ttl * (1 + 2 * Math.random()), signal);
      if (signal.aborted) return;
      const list = [...this.#live];
      const holder = list.find((contender) => contender.tenure?.endedAt === Infinity);
      const victim = holder && Math.random() < 0.7
        ? holder
        : list[Math.floor(Math.random() * list.length)];
      if (!victim) continue;
      if (Math.random() < 0.2) {
        this.#kill(victim);
        this.#kills++;
        this.#spawn();
        continue;
      }
      const from = now();
      try {
        victim.child.kill("SIGSTOP");
      } catch {
        continue; // gone meanwhile
      }
      this.#pauses++;
      await sleep(ttl * (1.2 + 1.3 * Math.random()));
      try {
        victim.child.kill("SIGCONT");
      } catch { /* gone meanwhile */ }
      victim.stops.push([from, now()]);
    }
  }
}

/** Whether `contender` was stopped at some moment in `(from, to]`. */
function pausedSince(contender: Contender, from: number, to: number): boolean {
  return contender.stops.some(([start, end]) => start < to && end > from);
}

function abortableSleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(done, ms);
    signal.addEventListener("abort", done, { once: true });
    function done() {
      clearTimeout(timer);
      signal.removeEventListener("abort", done);
      resolve();
    }
  });
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
