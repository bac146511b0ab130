/**
 * Faults injected while the workload runs, one at a time, each bounded:
 *
 * - `kill`: `pg_terminate_backend` on 1 to 4 random backends of the
 *   workload (whatever they are doing: idle, mid-statement, mid-commit);
 * - `restart-fast`: fast shutdown (SIGINT: running statements are rolled
 *   back, a checkpoint is written), then start again on the same data
 *   directory and port;
 * - `restart-immediate`: immediate shutdown (SIGQUIT: a crash, no
 *   checkpoint; the restart replays the WAL). Acknowledged writes are then
 *   checked to have survived;
 * - `statement-timeout`: the table is locked for 0.3 to 0.7 s, so the
 *   clients whose connections set `statement_timeout` (150 ms) are cancelled
 *   by the server, and those with a short store `timeoutMs` give up and
 *   cancel themselves;
 * - `pool-exhaustion`: long statements (`pg_sleep`) hold every connection
 *   of a 2-connection pool that other clients' stores (300 ms timeout)
 *   wait on;
 * - `proxy-stall`: the TCP proxy stops forwarding for 0.2 to 0.9 s;
 * - `proxy-cut`: the proxy cuts the connections of the next 1 to 3
 *   statements, after sending them whole or half.
 *
 * @module
 */
import type postgres from "postgres";
import type { ThrowawayPostgres } from "../tools/postgres_server.ts";
import type { ChaosProxy } from "./proxy.ts";

/** The kinds of fault, in the order the scheduler cycles through them. */
export const FAULT_KINDS = [
  "kill",
  "proxy-cut",
  "statement-timeout",
  "restart-fast",
  "pool-exhaustion",
  "proxy-stall",
  "restart-immediate",
] as const;

/** One kind of fault. */
export type FaultKind = typeof FAULT_KINDS[number];

/** What the faults act on. */
export interface FaultTargets {
  server: ThrowawayPostgres;
  /** A direct connection (not through the proxy) for the fault's own statements. */
  admin: postgres.Sql;
  /** The pool that `pool-exhaustion` fills. */
  smallPool: postgres.Sql;
  /** How many connections `smallPool` has. */
  smallPoolSize: number;
  proxy: ChaosProxy;
  /** The quoted table the workload uses. */
  table: string;
  /** The workload's `application_name`, so kills hit only its backends. */
  applicationName: string;
  /**
   * Clients that do not set `application_name` (Bun.SQL) are in this server
   * too: kill any client backend but the admin's.
   */
  otherClients?: boolean;
  /** The `application_name` of `admin`, never killed. */
  adminApplicationName: string;
  /** Called just before a crash, and after the server is back. */
  onCrash?: () => void;
  onRestarted?: (mode: "fast" | "immediate") => Promise<void>;
  /** Something a fault saw that is not a consensus violation but is wrong. */
  onAnomaly?: (text: string) => void;
}

/** Options for {@linkcode runFaults}. */
export interface FaultOptions {
  /** Stop injecting once this is aborted. */
  signal: AbortSignal;
  /** Pause between faults, in milliseconds: a random value in this range. */
  intervalMs: [number, number];
  /** Kinds to inject. @default {FAULT_KINDS} */
  kinds?: readonly FaultKind[];
  /**
   * Index in `kinds` of the first fault, so that rounds too short for a
   * full cycle still inject every kind over a campaign. @default {0}
   */
  firstKind?: number;
  /** Called after each fault, with what happened. */
  log?: (line: string) => void;
}

/** Injects faults until `signal` aborts; returns how many of each kind it injected. */
export async function runFaults(
  targets: FaultTargets,
  options: FaultOptions,
): Promise<Record<FaultKind, number>> {
  const kinds = options.kinds ?? FAULT_KINDS;
  const counts = Object.fromEntries(FAULT_KINDS.map((k) => [k, 0])) as Record<FaultKind, number>;
  const log = options.log ?? (() => {});
  const [low, high] = options.intervalMs;
  for (let i = 0; !options.signal.aborted; i++) {
    await sleep(low + Math.random() * (high - low), options.signal);
    if (options.signal.aborted) break;
    const kind = kinds[((options.firstKind ?? 0) + i) % kinds.length];
    try {
      // Every fault is bounded, even if a driver never answers.
      const detail = await Promise.race([
        inject(kind, targets),
        sleep(45_000).then(() => {
          throw new Error("did not finish within 45 s (abandoned)");
        }),
      ]);
      counts[kind]++;
      log(`fault ${kind}${detail ? `: ${detail}` : ""}`);
    } catch (error) {
      log(`fault ${kind} could not be injected: ${String(error)}`);
      targets.onAnomaly?.(`fault ${kind} could not be injected: ${String(error)}`);
    }
  }
  targets.proxy.disarm();
  return counts;
}

async function inject(kind: FaultKind, targets: FaultTargets): Promise<string> {
  const { admin, proxy } = targets;
  switch (kind) {
    case "kill": {
      // With other clients about, any client backend but this one's pool.
      const whose = targets.otherClients
        ? `backend_type = 'client backend' AND application_name <> $1::text`
        : `application_name = $1::text`;
      const [row] = await admin.unsafe(
        `SELECT count(pg_terminate_backend(pid))::int AS killed FROM (SELECT pid FROM pg_stat_activity ` +
          `WHERE ${whose} AND pid <> pg_backend_pid() ORDER BY random() LIMIT $2) AS victims`,
        [
          targets.otherClients ? targets.adminApplicationName : targets.applicationName,
          1 + Math.floor(Math.random() * 4),
        ],
      );
      return `${row.killed} backends terminated`;
    }
    case "restart-fast":
    case "restart-immediate": {
      const mode = kind === "restart-fast" ? "fast" : "immediate";
      if (mode === "immediate") targets.onCrash?.();
      await targets.server.restart(mode);
      await targets.onRestarted?.(mode);
      return "";
    }
    case "statement-timeout": {
      const seconds = 0.3 + Math.random() * 0.4;
      await admin.begin(async (tx) => {
        await tx.unsafe(`LOCK TABLE ${targets.table} IN ACCESS EXCLUSIVE MODE`);
        await tx.unsafe(`SELECT pg_sleep($1)`, [seconds]);
      });
      return `table locked for ${seconds.toFixed(2)} s`;
    }
    case "pool-exhaustion": {
      const seconds = 0.4 + Math.random() * 0.4;
      const holders = Array.from(
        { length: targets.smallPoolSize },
        () => targets.smallPool.unsafe(`SELECT pg_sleep($1)`, [seconds]),
      );
      // Bounded even if the driver never answers (seen with porsager after
      // a restart): the holders are then abandoned and it is reported.
      const settled = await Promise.race([
        Promise.allSettled(holders).then(() => true),
        sleep(seconds * 1000 + 10_000).then(() => false),
      ]);
      if (!settled) {
        targets.onAnomaly?.(
          `pool-exhaustion: the driver did not answer pg_sleep(${
            seconds.toFixed(2)
          }) within 10 s of its end`,
        );
      }
      return `${targets.smallPoolSize} connections held for ${seconds.toFixed(2)} s${
        settled ? "" : " (holders never answered: abandoned)"
      }`;
    }
    case "proxy-stall": {
      const ms = 200 + Math.random() * 700;
      proxy.stall(ms);
      await sleep(ms);
      return `${Math.round(ms)} ms`;
    }
    case "proxy-cut": {
      const count = 1 + Math.floor(Math.random() * 3);
      proxy.cutMidStatement(count);
      // Give the armed cuts a bounded window to hit statements.
      for (let waited = 0; proxy.pendingCuts > 0 && waited < 2_000; waited += 20) await sleep(20);
      const missed = proxy.pendingCuts;
      proxy.disarm();
      return `${count - missed} statements cut`;
    }
  }
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(done, ms);
    signal?.addEventListener("abort", done, { once: true });
    function done() {
      clearTimeout(timer);
      signal?.removeEventListener("abort", done);
      resolve();
    }
  });
}
