/**
 * The failover torture mode: the recorded workload and the fresh-key storm
 * against a primary and a streaming standby on loopback
 * (`torture/replication.ts`), while the harness kills the primary
 * (immediate shutdown), promotes the standby and builds a new standby from
 * it, again and again. Clients are porsager pools on the library's public
 * API, connected through one multi-host URL
 * (`target_session_attrs=primary`), so they find the new primary
 * themselves.
 *
 * At the end, the final primary is read: the histories are checked for
 * linearizability (`torture/checker.ts`), and every write acknowledged as
 * "committed" must be in the table or legitimately truncated. With
 * synchronous replication both must hold; with asynchronous replication the
 * loss is what is measured.
 *
 * @module
 */
import postgres from "postgres";
import { type Consensus, PostgresConsensus } from "../mod.ts";
import { fromPostgresJs } from "../src/adapters/postgres_js.ts";
import { isAcknowledgedCommit, verifyDurable } from "./campaign.ts";
import { checkHistory } from "./checker.ts";
import { type Entry, History, tally } from "./history.ts";
import { startReplicatedPair } from "./replication.ts";
import { findDoubleCommits, runStorm } from "./storm.ts";
import { runWorkload } from "./workload.ts";

/** Options for {@linkcode runFailoverCampaign}. */
export interface FailoverOptions {
  /** Synchronous replication (`synchronous_standby_names`), else asynchronous. */
  synchronous: boolean;
  /** Failovers to run. */
  failovers: number;
  /** Workload time before each failover and after the last, in milliseconds. @default {3_000} */
  intervalMs?: number;
  /** Workload clients (over two pools), on 8 keys. @default {8} */
  clients?: number;
  /** Storm stores (one pool each), 3 writers and a truncator each. @default {2} */
  stormStores?: number;
  /** Operations recorded at most, per workload and per storm. @default {1_500_000} */
  maxOps?: number;
  /** Each store operation's timeout (`timeoutMs`). @default {5_000} */
  storeTimeoutMs?: number;
  /** Receives progress lines. */
  log?: (line: string) => void;
}

/** What {@linkcode runFailoverCampaign} found. */
export interface FailoverReport {
  synchronous: boolean;
  failoversPlanned: number;
  /** Failovers that ran (kill, promote, new standby streaming). */
  failovers: number;
  /** Kill to promoted, per failover, in milliseconds. */
  promoteMs: number[];
  /** Promoted to the new standby streaming, per failover, in milliseconds. */
  rebuildMs: number[];
  workloadMs: number;
  ops: number;
  stormOps: number;
  stormKeys: number;
  stormFirstWrites: number;
  outcomes: Record<Entry["outcome"]["type"], number>;
  opsChecked: number;
  violations: number;
  undecided: number;
  doubleCommits: number;
  writesAcknowledged: number;
  writesVerified: number;
  writesTruncated: number;
  writesLost: number;
  /** Indeterminate errors clients saw, by message (digits replaced by N). */
  unknownMessages: Record<string, number>;
  unexpectedErrors: number;
  checkMs: number;
  failures: string[];
}

const TABLE = "failover";

/**
 * Runs the failover campaign: a fresh replicated pair, the workload and the
 * storm on it, `failovers` failovers, then the checks.
 */
export async function runFailoverCampaign(options: FailoverOptions): Promise<FailoverReport> {
  const log = options.log ?? (() => {});
  const interval = options.intervalMs ?? 3_000;
  const maxOps = options.maxOps ?? 1_500_000;
  const report: FailoverReport = {
    synchronous: options.synchronous,
    failoversPlanned: options.failovers,
    failovers: 0,
    promoteMs: [],
    rebuildMs: [],
    workloadMs: 0,
    ops: 0,
    stormOps: 0,
    stormKeys: 0,
    stormFirstWrites: 0,
    outcomes: { ok: 0, range: 0, fail: 0, unknown: 0 },
    opsChecked: 0,
    violations: 0,
    undecided: 0,
    doubleCommits: 0,
    writesAcknowledged: 0,
    writesVerified: 0,
    writesTruncated: 0,
    writesLost: 0,
    unknownMessages: {},
    unexpectedErrors: 0,
    checkMs: 0,
    failures: [],
  };
  const pair = await startReplicatedPair({ synchronous: options.synchronous, log });
  const pools: postgres.Sql[] = [];
  const stores: PostgresConsensus[] = [];
  const pool = (max: number) => {
    const sql = postgres(pair.url, {
      max,
      onnotice: () => {},
      connect_timeout: 5,
      max_pipeline: 0,
      connection: { application_name: "torture-failover" },
    } as postgres.Options<Record<string, never>>);
    pools.push(sql);
    return sql;
  };
  try {
    const admin = pool(1);
    await (await PostgresConsensus.open(fromPostgresJs(admin), { table: TABLE })).close();
    const open = async (max: number) => {
      const store = await PostgresConsensus.open(fromPostgresJs(pool(max), { owned: true }), {
        table: TABLE,
        create: false,
        timeoutMs: options.storeTimeoutMs ?? 5_000,
      });
      stores.push(store);
      return store;
    };
    const clients = options.clients ?? 8;
    const workloadStores = [await open(clients), await open(clients)];
    const stormStores: Consensus[] = [];
    for (let i = 0; i < (options.stormStores ?? 2); i++) {
      stormStores.push(pausingOnError(await open(4), 10));
    }

    const stop = new AbortController();
    // Bounded in time whatever happens: each failover is bounded by the
    // harness's own timeouts (60 s per wait).
    const bound = (options.failovers + 1) * (interval + 150_000);
    const workloadHistory = new History(30_000);
    const stormHistory = new History(30_000);
    const started = performance.now();
    const workload = runWorkload((client) => workloadStores[client % 2], {
      clients,
      keys: 8,
      operations: maxOps,
      durationMs: bound,
      prefix: "k",
      signal: stop.signal,
      history: workloadHistory,
    });
    const storm = runStorm(stormStores, {
      writersPerStore: 3,
      operations: maxOps,
      durationMs: bound,
      prefix: "s",
      signal: stop.signal,
      history: stormHistory,
    });

    try {
      for (let i = 1; i <= options.failovers; i++) {
        await sleep(interval);
        const before = workloadHistory.entries.length + stormHistory.entries.length;
        const timings = await pair.failover();
        report.failovers++;
        report.promoteMs.push(timings.promoteMs);
        report.rebuildMs.push(timings.rebuildMs);
        log(
          `failover ${i}/${options.failovers}: primary now on ${pair.primaryPort}, promoted in ${
            timings.promoteMs.toFixed(0)
          } ms, new standby streaming ${
            timings.rebuildMs.toFixed(0)
          } ms later (${before} ops so far)`,
        );
      }
      await sleep(interval);
    } catch (error) {
      report.failures.push(
        `failover ${report.failovers + 1} failed: ${
          error instanceof Error ? error.message : String(error)
        }`,
      );
    } finally {
      stop.abort();
    }
    const [done, stormDone] = await Promise.all([workload, storm]);
    report.workloadMs = performance.now() - started;
    report.stormKeys = stormDone.keys;
    report.stormFirstWrites = stormDone.firstWrites;

    let lostShown = 0;
    const logLost = (line: string) => {
      if (lostShown++ < 10) log(line);
    };
    for (const entries of [done.history.entries, stormDone.history.entries]) {
      const acknowledged = entries.filter(isAcknowledgedCommit);
      report.writesAcknowledged += acknowledged.length;
      const found = await verifyDurable(admin, `"${TABLE}"`, acknowledged, logLost);
      report.writesVerified += found.verified;
      report.writesTruncated += found.truncated;
      report.writesLost += found.lost;
      report.doubleCommits += findDoubleCommits(entries).length;
      const counts = tally(entries);
      for (const type of Object.keys(counts) as (keyof typeof counts)[]) {
        report.outcomes[type] += counts[type];
      }
      for (const entry of entries) {
        if (entry.outcome.type !== "unknown") continue;
        const message = entry.outcome.message.replace(/\d+/g, "N").slice(0, 160);
        report.unknownMessages[message] = (report.unknownMessages[message] ?? 0) + 1;
        if (message.startsWith("unexpected")) report.unexpectedErrors++;
      }
      const result = checkHistory(entries, { timeoutMs: 120_000 });
      report.checkMs += result.elapsedMs;
      const notOk = new Set(result.keys.filter((k) => k.status !== "ok").map((k) => k.key));
      report.opsChecked += entries.filter((e) => !notOk.has(e.key)).length;
      for (const verdict of result.keys) {
        if (verdict.status === "violation") {
          report.violations++;
          if (report.failures.length < 20) {
            report.failures.push(`key ${verdict.key}: ${verdict.reason}`);
          }
        }
        if (verdict.status === "unknown") report.undecided++;
      }
    }
    report.ops = done.history.entries.length;
    report.stormOps = stormDone.history.entries.length;
    if (report.writesLost > 0) {
      report.failures.push(`${report.writesLost} acknowledged writes lost`);
    }
    return report;
  } finally {
    for (const store of stores) await store.close().catch(() => {});
    await Promise.all(pools.map((sql) => sql.end({ timeout: 1 }).catch(() => {})));
    await pair.stop();
  }
}

// A store that waits a little before passing an error on: with both servers
// unreachable, a refused connection fails at once, and the storm (which has
// no pause of its own) would record failures as fast as it can loop.
function pausingOnError(store: Consensus, ms: number): Consensus {
  const wrapped = new Set(["head", "compareAndSet", "scan", "truncate", "compareAndSetMany"]);
  return new Proxy(store, {
    get(target, property) {
      const value = Reflect.get(target, property, target);
      if (typeof value !== "function") return value;
      if (!wrapped.has(String(property))) return value.bind(target);
      return async (...args: unknown[]) => {
        try {
          return await value.apply(target, args);
        } catch (error) {
          await sleep(ms * (0.5 + Math.random()));
          throw error;
        }
      };
    },
  });
}

/** Whether the campaign met its bar: synchronous runs must lose nothing and stay linearizable. */
export function failoverPassed(report: FailoverReport): boolean {
  const ran = report.failovers === report.failoversPlanned;
  if (!report.synchronous) return ran && report.unexpectedErrors === 0;
  return ran && report.violations === 0 && report.writesLost === 0 && report.undecided === 0 &&
    report.doubleCommits === 0 && report.unexpectedErrors === 0;
}

/** The report as the lines `deno task torture --failover` prints. */
export function formatFailoverReport(report: FailoverReport, command: string): string {
  const ms = (list: number[]) =>
    list.length === 0
      ? "-"
      : `median ${median(list).toFixed(0)} ms, max ${Math.max(...list).toFixed(0)} ms`;
  const messages = Object.entries(report.unknownMessages).sort((a, b) => b[1] - a[1]).slice(0, 6);
  return [
    `command:               ${command}`,
    `replication:           ${report.synchronous ? "synchronous" : "asynchronous"}`,
    `failovers:             ${report.failovers} of ${report.failoversPlanned}`,
    `  promote:             ${ms(report.promoteMs)}`,
    `  new standby:         ${ms(report.rebuildMs)}`,
    `workload time:         ${(report.workloadMs / 1000).toFixed(1)} s`,
    `ops recorded:          ${
      report.ops + report.stormOps
    } (workload ${report.ops}, storm ${report.stormOps} on ${report.stormKeys} keys, ${report.stormFirstWrites} first writes)`,
    `outcomes:              ok ${report.outcomes.ok}, range ${report.outcomes.range}, fail ${report.outcomes.fail}, unknown ${report.outcomes.unknown}`,
    `ops checked:           ${report.opsChecked} (check ${(report.checkMs / 1000).toFixed(1)} s)`,
    `violations:            ${report.violations}`,
    `undecided keys:        ${report.undecided}`,
    `double commits:        ${report.doubleCommits}`,
    `acknowledged commits:  ${report.writesAcknowledged}`,
    `  present:             ${report.writesVerified}`,
    `  truncated:           ${report.writesTruncated}`,
    `  lost:                ${report.writesLost}`,
    `unexpected errors:     ${report.unexpectedErrors}`,
    `indeterminate errors seen (top ${messages.length}):`,
    ...messages.map(([message, count]) => `  ${String(count).padStart(6)}  ${message}`),
  ].join("\n");
}

function median(list: readonly number[]): number {
  const sorted = [...list].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)];
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
