/**
 * The torture campaign: rounds of the recorded workload against a real,
 * throwaway Postgres (started here, because the restart faults need to own
 * its process and data directory), with faults injected throughout, each
 * round's history checked for linearizability and every acknowledged write
 * checked to have survived the crashes.
 *
 * Clients are spread over four pools, so that every fault has someone to
 * hit: a direct pool; a pool through the TCP proxy (short store timeout);
 * a pool whose connections set `statement_timeout`; and a two-connection
 * pool that the pool-exhaustion fault fills (short store timeout).
 *
 * A share of the rounds are fresh-key storms instead (`torture/storm.ts`):
 * no faults, four stores on four pools whose connections all run at one
 * isolation level (`default_transaction_isolation`, a startup parameter),
 * racing first writes on a new key every few milliseconds under truncation.
 * They cycle through Postgres' statements at READ COMMITTED, REPEATABLE
 * READ and SERIALIZABLE, then CockroachDB's statements (`engine:
 * "cockroach"`) at the same three; a store that refuses to open at a level
 * is reported as "refused at open".
 * Besides the checker's verdict, each storm round counts double commits:
 * a (key, seqno) acknowledged as committed to two different writes.
 *
 * Transfer rounds (`torture/transfers.ts`) race compare-and-sets of several
 * keys against single-key writers and truncators: without faults on four
 * stores at one isolation level, cycling through the same variants as the
 * storms; and, when `faultWorkloads` says so, as the workload of fault
 * rounds. Besides the checker's verdict, each checks that every
 * compareAndSetMany is all or nothing in the table at the end (and after
 * each immediate shutdown), and that the accounts' balances still add up.
 *
 * Fault rounds also run watchers and lease contenders beside their workload
 * when `watchers` and `leaseContenders` ask for them (`torture/coordination.ts`),
 * on the same table and the same faulty paths; after the round the
 * watchers' histories go through the watch checker and the contenders'
 * tenures through the lease checker.
 *
 * @module
 */
import postgres from "postgres";
import { PostgresConsensus } from "../mod.ts";
import { fromPostgresJs } from "../src/adapters/postgres_js.ts";
import { startThrowawayPostgres, type ThrowawayPostgres } from "../tools/postgres_server.ts";
import { importMapArgs } from "../tools/_jsr.ts";
import { checkHistory, describeEntries } from "./checker.ts";
import { type CoordinationResult, startCoordination } from "./coordination.ts";
import { FAULT_KINDS, type FaultKind, runFaults } from "./faults.ts";
import {
  type Entry,
  History,
  keysOf,
  parseHistory,
  payloadText,
  serializeHistory,
} from "./history.ts";
import { checkManyDurable, type DurableRow, type ManyStats } from "./multi_key.ts";
import { ChaosProxy, type ProxyStats } from "./proxy.ts";
import { findDoubleCommits, runStorm } from "./storm.ts";
import { balance, runTransfers, type TransferResult } from "./transfers.ts";
import { runWorkload } from "./workload.ts";

/** Options for {@linkcode runCampaign}. */
export interface CampaignOptions {
  /** Total workload time across rounds, in milliseconds. */
  durationMs: number;
  /** Workload time per round. @default {60_000} */
  roundMs?: number;
  /** Concurrent clients (at least 16). @default {16} */
  clients?: number;
  /** Keys per round, cycled through. @default {[1, 8]} */
  keys?: readonly number[];
  /** Operations per round at most (bounds each check). @default {60_000} */
  maxOpsPerRound?: number;
  /** Pause between faults, in milliseconds. @default {[250, 900]} */
  faultIntervalMs?: [number, number];
  /** Progress lines. @default {console.error} */
  log?: (line: string) => void;
  /** Where to save the history of a round with a violation. @default {".tmp"} */
  saveDir?: string;
  /**
   * Let porsager pipeline statements on a busy connection (its default).
   * Off by default: with pipelining, porsager 3.4.9 misattributes results
   * after the adapter cancels a timed-out statement (see
   * `torture/porsager_cancel_repro.ts`), which this campaign reports as
   * violations.
   *
   * @default {false}
   */
  pipeline?: boolean;
  /**
   * Runtimes whose rounds to cycle through: `"deno"` runs the workload in
   * process on porsager; `"bun"` runs it in a `bun` child on Bun.SQL
   * (`torture/bun_client.ts`), with the same faults but pool exhaustion
   * (the exhausted pool is a porsager one) and without the mid-round
   * durability check (the history is in the child until it ends).
   *
   * @default {["deno"]}
   */
  runtimes?: readonly ("deno" | "bun")[];
  /**
   * The share of rounds that are fresh-key storms (0 to 1): with 0.25,
   * every fourth round.
   *
   * @default {0.25}
   */
  stormShare?: number;
  /** Workload time per storm round. @default {20_000} */
  stormRoundMs?: number;
  /** Operations per storm round at most. @default {1_500_000} */
  stormMaxOps?: number;
  /** Storm variants, cycled through. @default {STORM_VARIANTS} */
  stormVariants?: readonly StormVariant[];
  /**
   * The share of rounds that are transfer rounds without faults (0 to 1),
   * scheduled between the storms; where both fall on one round, the storm
   * runs.
   *
   * @default {0}
   */
  transferShare?: number;
  /** Workload time per transfer round. @default {20_000} */
  transferRoundMs?: number;
  /** Operations per transfer round at most. @default {300_000} */
  transferMaxOps?: number;
  /** Transfer round variants, cycled through. @default {STORM_VARIANTS} */
  transferVariants?: readonly StormVariant[];
  /**
   * The workloads fault rounds cycle through: `"mix"` is
   * `torture/workload.ts` (keys and runtimes cycle within it), `"transfers"`
   * is `torture/transfers.ts` on the same four pools (Deno only).
   *
   * @default {["mix"]}
   */
  faultWorkloads?: readonly ("mix" | "transfers")[];
  /**
   * Watchers per key on each of the two watcher stores of every fault round
   * (`torture/coordination.ts`); 0 for none.
   *
   * @default {0}
   */
  watchers?: number;
  /** Live lease contender processes in every fault round; 0 for none. @default {0} */
  leaseContenders?: number;
  /** The contenders' lease ttl, in milliseconds. @default {1000} */
  leaseTtlMs?: number;
  /** Run every other lease contender under Bun (when on the PATH). @default {false} */
  leaseBun?: boolean;
}

/** An isolation level, as `default_transaction_isolation` spells it. */
export type Isolation = "read committed" | "repeatable read" | "serializable";

/** Whose statements a storm round's stores run, and at which isolation level. */
export interface StormVariant {
  /** The store's `engine` option: whose statements it runs. */
  readonly engine: "postgres" | "cockroach";
  readonly isolation: Isolation;
}

/**
 * The storm variants, in the order rounds cycle through them: Postgres'
 * statements at each level, then CockroachDB's, which assume SERIALIZABLE
 * and whose store may refuse to open at the other levels (taking no time).
 */
export const STORM_VARIANTS: readonly StormVariant[] = [
  { engine: "postgres", isolation: "read committed" },
  { engine: "postgres", isolation: "repeatable read" },
  { engine: "postgres", isolation: "serializable" },
  { engine: "cockroach", isolation: "read committed" },
  { engine: "cockroach", isolation: "repeatable read" },
  { engine: "cockroach", isolation: "serializable" },
];

/** A storm variant's name in reports, e.g. `postgres statements, read committed`. */
export function stormVariantName(variant: StormVariant): string {
  return `${variant.engine} statements, ${variant.isolation}`;
}

/** What the storm rounds of one variant found. */
export interface StormFigures {
  readonly variant: StormVariant;
  /** Rounds whose stores opened and ran. */
  rounds: number;
  /** Rounds whose stores refused to open at this isolation level. */
  refusedAtOpen: number;
  /** The refusal, as the store said it (the last one). */
  refusal?: string;
  workloadMs: number;
  ops: number;
  /** Keys written to. */
  keys: number;
  /** Compare-and-sets that opened a key for their writer (blind or after a read). */
  firstWrites: number;
  /** Of those, blind compare-and-sets of seqno 0. */
  blindFirstWrites: number;
  /** Determinate failures (serialization failures past the store's retries). */
  failed: number;
  /** (key, seqno) pairs acknowledged as committed to two different writes (must be 0). */
  doubleCommits: number;
  /** The first few keys with a double commit. */
  doubleCommitKeys: string[];
  /** Keys whose history is not linearizable (must be 0). */
  violations: number;
  /** Acknowledged commits missing or changed (must be 0). */
  writesLost: number;
}

/** What the transfer rounds of one kind found. */
export interface TransferFigures {
  /** `faults` for transfers under faults, else the variant's name. */
  readonly label: string;
  /** Rounds whose stores opened and ran. */
  rounds: number;
  /** Rounds whose stores refused to open at this isolation level. */
  refusedAtOpen: number;
  /** The refusal, as the store said it (the last one). */
  refusal?: string;
  workloadMs: number;
  ops: number;
  /** compareAndSetMany calls by outcome. */
  many: { committed: number; mismatched: number; unknown: number; failed: number };
  /** Of those, calls that carried a first write of a fresh key. */
  manyFirstWrites: number;
  /** Mismatches only one key could explain, checked there as mismatches. */
  mismatchOnOneKey: number;
  /** Keys or calls whose history is not linearizable (must be 0). */
  violations: number;
  /** compareAndSetMany calls not all or nothing in the table (must be 0). */
  atomicity: number;
  /** Rounds whose balances did not add up to the start's (must be 0). */
  conservation: number;
  /** Acknowledged single-key commits missing or changed (must be 0). */
  writesLost: number;
}

/** What the watchers of the fault rounds delivered and the watch checker found. */
export interface WatchFigures {
  /** Fault rounds with watchers. */
  rounds: number;
  /** Watcher runs (a watcher that failed or was truncated goes on as a new run). */
  watchers: number;
  /** Late watchers started from an old `from`. */
  late: number;
  /** Versions yielded, all watchers. */
  versions: number;
  /** Runs that ended with a store failure (a ConsensusError) and watched on. */
  failed: number;
  /** Listening connections terminated on purpose. */
  listenKills: number;
  /** Seqnos skipped (must be 0). */
  gaps: number;
  /** Versions yielded twice (must be 0). */
  duplicates: number;
  /** Versions yielded below one already yielded (must be 0). */
  outOfOrder: number;
  /** TruncatedErrors naming the expected seqno after a truncate above it began. */
  truncationsLegal: number;
  /** Other TruncatedErrors (must be 0). */
  truncationsIllegal: number;
  /** Every broken promise, those above included (must be 0). */
  violations: number;
  /** Rounds per notify mode. */
  notify: Record<string, number>;
}

/** What the lease contenders of the fault rounds did and the lease checker found. */
export interface LeaseFigures {
  /** Fault rounds with contenders. */
  rounds: number;
  /** Contender processes started, per runtime. */
  started: Record<string, number>;
  /** Tenures (grants acted on). */
  grants: number;
  /** Tenures by how they ended. */
  endings: Record<string, number>;
  pauses: number;
  stalls: number;
  kills: number;
  acquireErrors: { determinate: number; indeterminate: number };
  releaseErrors: number;
  /** Grants while another tenure was valid (must be 0). */
  overlaps: number;
  /** Tokens not above the previous grant's (must be 0). */
  tokenRegressions: number;
  /** Every violation, those above included (must be 0). */
  violations: number;
  /** Contenders that exited on their own but by a planned death (must be 0). */
  crashes: number;
  /** The smallest gap between one tenure's end and the next grant, ms. */
  minGapMs: number;
}

/** The figures a campaign reports. */
export interface CampaignReport {
  rounds: number;
  /** Rounds per runtime (`storm` for fresh-key storm rounds). */
  roundsByRuntime: Record<string, number>;
  workloadMs: number;
  opsRecorded: number;
  opsChecked: number;
  outcomes: { ok: number; range: number; fail: number; unknown: number };
  /** Errors that were not a ConsensusError or RangeError (bugs; must be 0). */
  unexpectedErrors: number;
  faults: Record<FaultKind, number>;
  proxy: ProxyStats;
  /** Keys whose history is not linearizable (must be 0). */
  violations: number;
  /** Keys the checker could not decide within its budget. */
  undecided: number;
  checkMs: number;
  /** Acknowledged commits checked after crashes and at the end of rounds. */
  writesVerified: number;
  /** Acknowledged commits whose version was since truncated, so not checkable. */
  writesTruncated: number;
  /** Acknowledged commits missing or changed (must be 0). */
  writesLost: number;
  settings: { fsync: string; synchronousCommit: string };
  /** Wrong things that are not violations (a driver that never answered). */
  anomalies: string[];
  failures: string[];
  /** Storm rounds' figures, per variant that had a round. */
  storm: StormFigures[];
  /** Double commits in storm rounds, all variants (must be 0). */
  doubleCommits: number;
  /** Transfer rounds' figures, per kind that had a round. */
  transfers: TransferFigures[];
  /** compareAndSetMany calls not all or nothing in the table, all rounds (must be 0). */
  manyAtomicity: number;
  /** Transfer rounds whose balances did not add up (must be 0). */
  conservationErrors: number;
  /** The watchers of the fault rounds. */
  watch: WatchFigures;
  /** The lease contenders of the fault rounds. */
  lease: LeaseFigures;
}

const APPLICATION_NAME = "torture";
// A backstop on the number of rounds, whatever their durations.
const MAX_ROUNDS = 10_000;
// Histories saved per round, for the first keys with a violation.
const MAX_SAVED_PER_ROUND = 10;
const ADMIN_APPLICATION_NAME = "torture-admin";

/** Runs the campaign and returns its figures. */
export async function runCampaign(options: CampaignOptions): Promise<CampaignReport> {
  const log = options.log ?? ((line: string) => console.error(line));
  const roundMs = options.roundMs ?? 60_000;
  const clients = Math.max(16, options.clients ?? 16);
  const keysCycle = options.keys ?? [1, 8];
  const report: CampaignReport = {
    rounds: 0,
    roundsByRuntime: {},
    workloadMs: 0,
    opsRecorded: 0,
    opsChecked: 0,
    outcomes: { ok: 0, range: 0, fail: 0, unknown: 0 },
    unexpectedErrors: 0,
    faults: Object.fromEntries(FAULT_KINDS.map((k) => [k, 0])) as Record<FaultKind, number>,
    proxy: { connections: 0, stalls: 0, cutsAfterSend: 0, cutsHalfSent: 0 },
    violations: 0,
    undecided: 0,
    checkMs: 0,
    writesVerified: 0,
    writesTruncated: 0,
    writesLost: 0,
    settings: { fsync: "?", synchronousCommit: "?" },
    anomalies: [],
    failures: [],
    storm: [],
    doubleCommits: 0,
    transfers: [],
    manyAtomicity: 0,
    conservationErrors: 0,
    watch: {
      rounds: 0,
      watchers: 0,
      late: 0,
      versions: 0,
      failed: 0,
      listenKills: 0,
      gaps: 0,
      duplicates: 0,
      outOfOrder: 0,
      truncationsLegal: 0,
      truncationsIllegal: 0,
      violations: 0,
      notify: {},
    },
    lease: {
      rounds: 0,
      started: {},
      grants: 0,
      endings: {},
      pauses: 0,
      stalls: 0,
      kills: 0,
      acquireErrors: { determinate: 0, indeterminate: 0 },
      releaseErrors: 0,
      overlaps: 0,
      tokenRegressions: 0,
      violations: 0,
      crashes: 0,
      minGapMs: Infinity,
    },
  };
  const stormShare = options.stormShare ?? 0.25;
  if (!(stormShare >= 0 && stormShare <= 1)) {
    throw new RangeError(
      `Cannot run the campaign: stormShare must be in [0, 1], got ${stormShare}`,
    );
  }
  const variants = options.stormVariants ?? STORM_VARIANTS;
  const transferShare = options.transferShare ?? 0;
  if (!(transferShare >= 0 && transferShare <= 1)) {
    throw new RangeError(
      `Cannot run the campaign: transferShare must be in [0, 1], got ${transferShare}`,
    );
  }
  const transferVariants = options.transferVariants ?? STORM_VARIANTS;
  const faultWorkloads = options.faultWorkloads ?? ["mix"];
  const denoArgs = (options.leaseContenders ?? 0) > 0 ? await importMapArgs() : [];
  const server = await startThrowawayPostgres({ log: (line) => log(`[server] ${line}`) });
  // A driver's stray rejected promise (porsager's cancel() connection
  // reset during a fault, which the adapters discard with `void`) would end
  // the process: record it as an anomaly and go on.
  const stray = (event: PromiseRejectionEvent) => {
    event.preventDefault();
    const text = `unhandled rejection: ${
      event.reason instanceof Error ? event.reason.message : String(event.reason)
    }`;
    if (report.anomalies.length < 50) report.anomalies.push(text);
    log(`  ANOMALY: ${text}`);
  };
  globalThis.addEventListener("unhandledrejection", stray);
  // Interrupted: stop the server rather than leave it behind.
  const interrupted = () => void server.stop().finally(() => Deno.exit(130));
  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    Deno.addSignalListener(signal, interrupted);
  }
  try {
    const admin = postgres(server.url, {
      max: 2,
      onnotice: () => {},
      connection: { application_name: ADMIN_APPLICATION_NAME },
    });
    try {
      const [fsync] = await admin.unsafe("SHOW fsync");
      const [sync] = await admin.unsafe("SHOW synchronous_commit");
      report.settings = { fsync: fsync.fsync, synchronousCommit: sync.synchronous_commit };
      let faultRounds = 0;
      let mixRounds = 0;
      let stormRounds = 0;
      let transferRounds = 0;
      // Bounded in count too: a storm round refused at open takes no time.
      for (let i = 0; report.workloadMs < options.durationMs && i < MAX_ROUNDS; i++) {
        const remaining = options.durationMs - report.workloadMs;
        if (Math.floor((i + 1) * stormShare) > Math.floor(i * stormShare)) {
          const variant = variants[stormRounds++ % variants.length];
          await runStormRound(server, admin, report, {
            round: report.rounds,
            variant,
            ms: Math.min(options.stormRoundMs ?? 20_000, remaining),
            maxOps: options.stormMaxOps ?? 1_500_000,
            log,
            saveDir: options.saveDir ?? ".tmp",
          });
          report.rounds++;
          report.roundsByRuntime.storm = (report.roundsByRuntime.storm ?? 0) + 1;
          continue;
        }
        // Half a round out of step with the storms, so that equal shares interleave.
        if (Math.floor((i + 1) * transferShare + 0.5) > Math.floor(i * transferShare + 0.5)) {
          const variant = transferVariants[transferRounds++ % transferVariants.length];
          await runTransferRound(server, admin, report, {
            round: report.rounds,
            variant,
            ms: Math.min(options.transferRoundMs ?? 20_000, remaining),
            maxOps: options.transferMaxOps ?? 300_000,
            log,
            saveDir: options.saveDir ?? ".tmp",
          });
          report.rounds++;
          report.roundsByRuntime.transfers = (report.roundsByRuntime.transfers ?? 0) + 1;
          continue;
        }
        const workload = faultWorkloads[faultRounds++ % faultWorkloads.length];
        const keys = keysCycle[mixRounds % keysCycle.length];
        const runtimes = options.runtimes ?? ["deno"];
        // Cycle keys fastest, then runtimes, so each runtime sees each key count.
        const runtime = workload === "transfers"
          ? "deno"
          : runtimes[Math.floor(mixRounds / keysCycle.length) % runtimes.length];
        if (workload === "mix") mixRounds++;
        const ms = Math.min(roundMs, remaining);
        await runRound(server, admin, report, {
          round: report.rounds,
          keys,
          clients,
          ms,
          maxOps: options.maxOpsPerRound ?? 60_000,
          faultIntervalMs: options.faultIntervalMs ?? [250, 900],
          log,
          saveDir: options.saveDir ?? ".tmp",
          pipeline: options.pipeline ?? false,
          runtime,
          workload,
          watchers: options.watchers ?? 0,
          leaseContenders: options.leaseContenders ?? 0,
          leaseTtlMs: options.leaseTtlMs ?? 1_000,
          leaseBun: options.leaseBun ?? false,
          notifyMode: faultRounds - 1,
          denoArgs,
        });
        report.rounds++;
        const label = workload === "transfers" ? "deno transfers" : runtime;
        report.roundsByRuntime[label] = (report.roundsByRuntime[label] ?? 0) + 1;
      }
    } finally {
      await admin.end({ timeout: 1 });
    }
  } finally {
    for (const signal of ["SIGINT", "SIGTERM"] as const) {
      Deno.removeSignalListener(signal, interrupted);
    }
    globalThis.removeEventListener("unhandledrejection", stray);
    await server.stop();
  }
  return report;
}

interface RoundOptions {
  round: number;
  keys: number;
  clients: number;
  ms: number;
  maxOps: number;
  faultIntervalMs: [number, number];
  log: (line: string) => void;
  saveDir: string;
  pipeline: boolean;
  runtime: "deno" | "bun";
  workload: "mix" | "transfers";
  watchers: number;
  leaseContenders: number;
  leaseTtlMs: number;
  leaseBun: boolean;
  notifyMode: number;
  denoArgs: readonly string[];
}

async function runRound(
  server: ThrowawayPostgres,
  admin: postgres.Sql,
  report: CampaignReport,
  options: RoundOptions,
): Promise<void> {
  const { round, log } = options;
  const table = `torture_${round}`;
  const quoted = `"${table}"`;
  const proxy = ChaosProxy.start(server.port);
  const pool = (url: string, max: number, connection: Record<string, string | number> = {}) =>
    postgres(url, {
      max,
      onnotice: () => {},
      connect_timeout: 5,
      // `max_pipeline` is a real option that porsager's types leave out.
      ...(options.pipeline ? {} : { max_pipeline: 0 } as postgres.Options<Record<string, never>>),
      connection: { application_name: APPLICATION_NAME, ...connection },
    });
  const proxyUrl = server.url.replace(`:${server.port}/`, `:${proxy.port}/`);
  const smallPoolSize = 2;
  const bun = options.runtime === "bun";
  const pools = {
    direct: pool(server.url, 6),
    proxied: pool(proxyUrl, 4),
    statementTimeout: pool(server.url, 3, { statement_timeout: 150 }),
    small: pool(server.url, smallPoolSize),
  };
  const open = (sql: postgres.Sql, timeoutMs: number) =>
    PostgresConsensus.open(fromPostgresJs(sql, { owned: true }), { table, timeoutMs });
  // The first store creates the table (for the Bun child too); the rest find it.
  const stores = [
    await open(pools.direct, 5_000),
    await open(pools.proxied, 400),
    await open(pools.statementTimeout, 5_000),
    await open(pools.small, 300),
  ];
  // Per 16 clients: 6 direct, 4 through the proxy, 3 with statement_timeout, 3 on the small pool.
  const layout = [0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 3, 3, 3];
  const storeFor = (client: number) => stores[layout[client % layout.length]];

  const history = new History();
  const transfers = options.workload === "transfers"
    ? transferFiguresFor(report, "faults")
    : undefined;
  let acknowledgedAtCrash: Entry[] = [];
  const controller = new AbortController();
  const workloadEnded = new AbortController();
  let faultsEnded = () => {};
  const coordinating = options.watchers > 0 || options.leaseContenders > 0;
  const coordination = coordinating
    ? await startCoordination({
      serverUrl: server.url,
      proxyUrl,
      table,
      admin,
      applicationName: APPLICATION_NAME,
      watchers: options.watchers,
      leaseContenders: options.leaseContenders,
      leaseTtlMs: options.leaseTtlMs,
      notifyMode: options.notifyMode,
      durationMs: options.ms,
      stopWriting: workloadEnded.signal,
      faultsEnded: new Promise<void>((resolve) => faultsEnded = resolve),
      denoArgs: options.denoArgs,
      bun: options.leaseBun,
    })
    : undefined;
  const watchEntries = () => coordination?.history.entries ?? [];
  const faults = runFaults({
    server,
    admin,
    smallPool: pools.small,
    smallPoolSize,
    proxy,
    table: quoted,
    applicationName: APPLICATION_NAME,
    otherClients: bun,
    onAnomaly: (text) => {
      report.anomalies.push(`round ${round}: ${text}`);
      log(`  ANOMALY: ${text}`);
    },
    adminApplicationName: ADMIN_APPLICATION_NAME,
    onCrash: () => {
      acknowledgedAtCrash = [...history.entries, ...watchEntries()].filter(isAcknowledgedCommit);
    },
    onRestarted: async (mode) => {
      if (mode !== "immediate") return;
      const found = await verifyDurable(admin, quoted, acknowledgedAtCrash, log);
      addDurability(report, found);
      if (options.workload === "transfers") {
        // Every compareAndSetMany recorded so far is all or nothing after the crash.
        const broken = checkManyDurable(history.entries, await readVersions(admin, quoted));
        reportAtomicity(report, round, broken, log);
        if (transfers !== undefined) transfers.atomicity += broken.length;
      }
    },
  }, {
    signal: controller.signal,
    intervalMs: options.faultIntervalMs,
    kinds: bun ? FAULT_KINDS.filter((k) => k !== "pool-exhaustion") : FAULT_KINDS,
    // Each round goes on where the last one's faults stopped: rounds that
    // end at their operation cap after two or three faults (faster scans
    // made them shorter) would otherwise only ever inject the first kinds.
    firstKind: FAULT_KINDS.reduce((sum, k) => sum + report.faults[k], 0),
    log: (l) => log(`  ${l}`),
  });

  const started = performance.now();
  const clientsNote = options.workload === "transfers"
    ? `transfers, 4 stores x (3 transferers, 1 writer, 1 truncator)`
    : `${options.clients} clients, ${options.keys} key(s)`;
  log(
    `round ${round} (${options.runtime}): ${clientsNote}, ${(options.ms / 1000).toFixed(0)} s, ` +
      `faults every ${options.faultIntervalMs.join("-")} ms`,
  );
  let transferred: TransferResult | undefined;
  if (bun) {
    history.entries.push(
      ...await runBunWorkload(server.url, proxyUrl, table, options),
    );
  } else if (options.workload === "transfers") {
    transferred = await runTransfers(stores, {
      operations: options.maxOps,
      durationMs: options.ms,
      history,
      transferersPerStore: 3,
      writersPerStore: 1,
      truncatorsPerStore: 1,
      errorPauseMs: 20,
    });
  } else {
    await runWorkload(storeFor, {
      clients: options.clients,
      keys: options.keys,
      operations: options.maxOps,
      durationMs: options.ms,
      history,
    });
  }
  workloadEnded.abort();
  controller.abort();
  const roundFaults = await faults;
  faultsEnded();
  report.workloadMs += performance.now() - started;
  const coordinated = await coordination?.finish();
  for (const kind of FAULT_KINDS) report.faults[kind] += roundFaults[kind];
  for (const [name, value] of Object.entries(proxy.stats)) {
    report.proxy[name as keyof ProxyStats] += value;
  }
  proxy.close();

  // Every write acknowledged in the round is still there (or truncated away).
  const final = await verifyDurable(
    admin,
    quoted,
    history.entries.filter(isAcknowledgedCommit),
    log,
  );
  addDurability(report, final);
  let coordinationNote = "";
  if (coordinated !== undefined) {
    const watchFinal = await verifyDurable(
      admin,
      quoted,
      watchEntries().filter(isAcknowledgedCommit),
      log,
    );
    addDurability(report, watchFinal);
    // The watch writes' two-key commits are all or nothing too.
    const broken = checkManyDurable(watchEntries(), await readVersions(admin, quoted));
    reportAtomicity(report, round, broken, log);
    const watchChecked = await checkRound(report, watchEntries(), round, options.saveDir);
    coordinationNote = addCoordination(report, round, coordinated, watchChecked.violations, log);
  }
  // compareAndSetMany calls are all or nothing in the table, and the balances add up.
  const rows = transferred !== undefined ? await readVersions(admin, quoted) : [];
  for (const store of stores) await store.close().catch(() => {});

  const result = await checkRound(report, history.entries, round, options.saveDir);
  let transferNote = "";
  if (transfers !== undefined && transferred !== undefined) {
    addTransfers(report, transfers, transferred, rows, result, final.lost, round, log);
    transferNote = `${describeMany(transferred)}; `;
  }
  const counts = Object.entries(roundFaults).map(([k, v]) => `${k} ${v}`).join(", ");
  log(
    `round ${round}: ${history.entries.length} ops, ${
      history.entries.filter((e) => e.outcome.type === "unknown").length
    } unknown; ${transferNote}faults: ${counts}; check ${result.status} in ${
      result.elapsedMs.toFixed(0)
    } ms${coordinationNote}`,
  );
  await admin.unsafe(`DROP TABLE IF EXISTS ${quoted}`).catch(() => {});
}

interface StormRoundOptions {
  round: number;
  variant: StormVariant;
  ms: number;
  maxOps: number;
  log: (line: string) => void;
  saveDir: string;
}

// Stores, and writers per store, in a storm round: four pools stand for four
// processes racing each other.
const STORM_STORES = 4;
const STORM_WRITERS = 4;

async function runStormRound(
  server: ThrowawayPostgres,
  admin: postgres.Sql,
  report: CampaignReport,
  options: StormRoundOptions,
): Promise<void> {
  const { round, variant, log } = options;
  const name = stormVariantName(variant);
  let figures = report.storm.find((f) => stormVariantName(f.variant) === name);
  if (figures === undefined) {
    report.storm.push(
      figures = {
        variant,
        rounds: 0,
        refusedAtOpen: 0,
        workloadMs: 0,
        ops: 0,
        keys: 0,
        firstWrites: 0,
        blindFirstWrites: 0,
        failed: 0,
        doubleCommits: 0,
        doubleCommitKeys: [],
        violations: 0,
        writesLost: 0,
      },
    );
  }
  const table = `torture_${round}`;
  const quoted = `"${table}"`;
  const { pools, stores, refusal } = await openAtLevel(
    server,
    admin,
    table,
    variant,
    STORM_STORES,
    STORM_WRITERS + 1,
    log,
  );
  try {
    if (refusal !== undefined) {
      figures.refusedAtOpen++;
      figures.refusal = refusal;
      log(`round ${round} (storm, ${name}): refused at open: ${figures.refusal}`);
      return;
    }
    log(
      `round ${round} (storm, ${name}): ${STORM_STORES} stores x ${STORM_WRITERS} writers + ` +
        `1 truncator each, a new key every 4 ms, ${(options.ms / 1000).toFixed(0)} s`,
    );
    const storm = await runStorm(stores, {
      writersPerStore: STORM_WRITERS,
      operations: options.maxOps,
      durationMs: options.ms,
    });
    const entries = storm.history.entries;
    report.workloadMs += storm.elapsedMs;
    const found = await verifyDurable(admin, quoted, entries.filter(isAcknowledgedCommit), log);
    addDurability(report, found);
    const doubles = findDoubleCommits(entries);
    const result = await checkRound(report, entries, round, options.saveDir);

    figures.rounds++;
    figures.workloadMs += storm.elapsedMs;
    figures.ops += entries.length;
    figures.keys += storm.keys;
    figures.firstWrites += storm.firstWrites;
    figures.blindFirstWrites += storm.blindFirstWrites;
    figures.failed += entries.filter((e) => e.outcome.type === "fail").length;
    figures.doubleCommits += doubles.length;
    for (const double of doubles) {
      if (figures.doubleCommitKeys.length < 5) figures.doubleCommitKeys.push(double.key);
    }
    figures.violations += result.violations;
    figures.writesLost += found.lost;
    report.doubleCommits += doubles.length;
    for (const double of doubles.slice(0, 5)) {
      report.failures.push(
        `round ${round} (storm, ${name}): double commit of ${double.key} seqno ${double.seqno}: ` +
          `acknowledged to ${double.payloads.map((p) => JSON.stringify(p)).join(" and ")}`,
      );
    }
    log(
      `round ${round} (storm, ${name}): ${entries.length} ops, ${storm.keys} keys, ` +
        `${storm.firstWrites} first writes, ${doubles.length} double commits, ` +
        `${result.violations} violations; check ${result.status} in ${
          result.elapsedMs.toFixed(0)
        } ms`,
    );
  } finally {
    for (const store of stores) await store.close().catch(() => {});
    await Promise.all(pools.map((sql) => sql.end({ timeout: 1 }).catch(() => {})));
    await admin.unsafe(`DROP TABLE IF EXISTS ${quoted}`).catch(() => {});
  }
}

// Stores, and clients per store, in a transfer round without faults: four
// pools stand for four processes.
const TRANSFER_STORES = 4;
const TRANSFERERS = 3;

async function runTransferRound(
  server: ThrowawayPostgres,
  admin: postgres.Sql,
  report: CampaignReport,
  options: StormRoundOptions,
): Promise<void> {
  const { round, variant, log } = options;
  const name = stormVariantName(variant);
  const figures = transferFiguresFor(report, name);
  const table = `torture_${round}`;
  const quoted = `"${table}"`;
  const { pools, stores, refusal } = await openAtLevel(
    server,
    admin,
    table,
    variant,
    TRANSFER_STORES,
    TRANSFERERS + 3,
    log,
  );
  try {
    if (refusal !== undefined) {
      figures.refusedAtOpen++;
      figures.refusal = refusal;
      log(`round ${round} (transfers, ${name}): refused at open: ${refusal}`);
      return;
    }
    log(
      `round ${round} (transfers, ${name}): ${TRANSFER_STORES} stores x (${TRANSFERERS} ` +
        `transferers, 1 writer, 1 truncator), ${(options.ms / 1000).toFixed(0)} s`,
    );
    const transferred = await runTransfers(stores, {
      operations: options.maxOps,
      durationMs: options.ms,
      transferersPerStore: TRANSFERERS,
      writersPerStore: 1,
      truncatorsPerStore: 1,
    });
    const entries = transferred.history.entries;
    report.workloadMs += transferred.elapsedMs;
    const found = await verifyDurable(admin, quoted, entries.filter(isAcknowledgedCommit), log);
    addDurability(report, found);
    const rows = await readVersions(admin, quoted);
    const result = await checkRound(report, entries, round, options.saveDir);
    addTransfers(report, figures, transferred, rows, result, found.lost, round, log);
    log(
      `round ${round} (transfers, ${name}): ${entries.length} ops; ${
        describeMany(transferred)
      }; ${result.violations} violations; check ${result.status} in ${
        result.elapsedMs.toFixed(0)
      } ms`,
    );
  } finally {
    for (const store of stores) await store.close().catch(() => {});
    await Promise.all(pools.map((sql) => sql.end({ timeout: 1 }).catch(() => {})));
    await admin.unsafe(`DROP TABLE IF EXISTS ${quoted}`).catch(() => {});
  }
}

function transferFiguresFor(report: CampaignReport, label: string): TransferFigures {
  let figures = report.transfers.find((f) => f.label === label);
  if (figures === undefined) {
    report.transfers.push(
      figures = {
        label,
        rounds: 0,
        refusedAtOpen: 0,
        workloadMs: 0,
        ops: 0,
        many: { committed: 0, mismatched: 0, unknown: 0, failed: 0 },
        manyFirstWrites: 0,
        mismatchOnOneKey: 0,
        violations: 0,
        atomicity: 0,
        conservation: 0,
        writesLost: 0,
      },
    );
  }
  return figures;
}

function describeMany(transferred: TransferResult): string {
  const m = transferred.many;
  return `compareAndSetMany committed ${m.committed}, mismatch ${m.mismatched}, ` +
    `unknown ${m.unknown}, failed ${m.failed} (${transferred.manyFirstWrites} with a first write)`;
}

// Adds a transfer round to its figures: the checker's, the table's (every
// compareAndSetMany all or nothing), and the balances' total, read from the
// heads of the accounts in `rows`.
function addTransfers(
  report: CampaignReport,
  figures: TransferFigures,
  transferred: TransferResult,
  rows: readonly DurableRow[],
  result: { violations: number; many: ManyStats },
  lost: number,
  round: number,
  log: (line: string) => void,
): void {
  const entries = transferred.history.entries;
  figures.rounds++;
  figures.workloadMs += transferred.elapsedMs;
  figures.ops += entries.length;
  for (const k of ["committed", "mismatched", "unknown", "failed"] as const) {
    figures.many[k] += transferred.many[k];
  }
  figures.manyFirstWrites += transferred.manyFirstWrites;
  figures.mismatchOnOneKey += result.many.mismatchOnOneKey;
  figures.violations += result.violations;
  figures.writesLost += lost;
  const broken = checkManyDurable(entries, rows);
  figures.atomicity += broken.length;
  reportAtomicity(report, round, broken, log);
  const heads = new Map<string, DurableRow>();
  for (const row of rows) {
    const head = heads.get(row.key);
    if (head === undefined || row.seqno > head.seqno) heads.set(row.key, row);
  }
  let total = 0;
  for (const account of transferred.accounts) {
    const head = heads.get(account);
    total += head === undefined ? NaN : balance(head);
  }
  if (total !== transferred.expectedTotal) {
    figures.conservation++;
    report.conservationErrors++;
    report.failures.push(
      `round ${round}: the balances add up to ${total}, not ${transferred.expectedTotal}`,
    );
    log(`  CONSERVATION: the balances add up to ${total}, not ${transferred.expectedTotal}`);
  }
}

// Adds a fault round's watchers and lease contenders to the report; returns
// the round's log note.
function addCoordination(
  report: CampaignReport,
  round: number,
  coordinated: CoordinationResult,
  writeViolations: number,
  log: (line: string) => void,
): string {
  const notes: string[] = [];
  const { watch, lease } = coordinated;
  if (watch !== undefined) {
    const w = report.watch;
    const c = watch.check;
    w.rounds++;
    w.watchers += c.watchers;
    w.late += watch.result.late;
    w.versions += c.versions;
    w.failed += c.failed;
    w.listenKills += watch.listenKills;
    w.gaps += c.gaps;
    w.duplicates += c.duplicates;
    w.outOfOrder += c.outOfOrder;
    w.truncationsLegal += c.truncationsLegal;
    w.truncationsIllegal += c.truncationsIllegal;
    w.violations += c.violations.length;
    w.notify[watch.notify] = (w.notify[watch.notify] ?? 0) + 1;
    for (const key of watch.result.headsUnread) {
      report.anomalies.push(
        `round ${round}: no store could read the final head of ${key}: its watchers were not ` +
          `checked for completeness`,
      );
    }
    for (const v of c.violations.slice(0, 10)) {
      const record = watch.result.watches.find((r) => r.watcher === v.watcher);
      const seen = record?.versions.map((x) => x.seqno).join(",") ?? "";
      report.failures.push(
        `round ${round}: watcher ${v.watcher} on ${v.key} (from ${
          record?.from ?? "the head"
        }): ${v.kind}: ${v.reason}; yielded ${
          seen.length > 300 ? `${seen.slice(0, 300)}...` : seen
        }`,
      );
      log(`  WATCH ${v.kind.toUpperCase()}: watcher ${v.watcher} on ${v.key}: ${v.reason}`);
    }
    notes.push(
      `watch (${watch.notify}): ${c.watchers} watchers (${watch.result.late} late), ${c.versions} ` +
        `versions, ${c.failed} store failures, truncation errors ${c.truncationsLegal} legal ` +
        `${c.truncationsIllegal} illegal, ${watch.listenKills} listen kills, ` +
        `${c.violations.length} watch violations, ${writeViolations} write violations`,
    );
  }
  if (lease !== undefined) {
    const l = report.lease;
    const v = lease.verdict;
    l.rounds++;
    for (const [k, n] of Object.entries(lease.runtimes)) l.started[k] = (l.started[k] ?? 0) + n;
    l.grants += lease.tenures.length;
    for (const [k, n] of Object.entries(lease.endings)) l.endings[k] = (l.endings[k] ?? 0) + n;
    l.pauses += lease.pauses;
    l.stalls += lease.stalls;
    l.kills += lease.kills;
    l.acquireErrors.determinate += lease.acquireErrors.determinate;
    l.acquireErrors.indeterminate += lease.acquireErrors.indeterminate;
    l.releaseErrors += lease.releaseErrors;
    l.overlaps += v.overlaps;
    l.tokenRegressions += v.tokenRegressions;
    l.violations += v.violations.length;
    l.crashes += lease.crashes.length;
    l.minGapMs = Math.min(l.minGapMs, v.minGapMs);
    for (const text of v.violations.slice(0, 10)) {
      report.failures.push(`round ${round}: lease: ${text}`);
      log(`  LEASE: ${text}`);
    }
    for (const text of lease.crashes.slice(0, 5)) {
      report.failures.push(`round ${round}: lease contender crashed: ${text}`);
      log(`  LEASE CONTENDER CRASHED: ${text}`);
    }
    for (const text of lease.noise.slice(0, 5)) {
      if (report.anomalies.length < 50) report.anomalies.push(`round ${round}: contender ${text}`);
    }
    notes.push(
      `lease: ${lease.tenures.length} grants ${JSON.stringify(lease.endings)}, ${lease.pauses} ` +
        `pauses, ${lease.stalls} stalls, ${lease.kills} kills, acquire errors ` +
        `${lease.acquireErrors.determinate + lease.acquireErrors.indeterminate}, ` +
        `${v.overlaps} overlaps, ${v.tokenRegressions} token regressions`,
    );
  }
  return notes.map((n) => `; ${n}`).join("");
}

function reportAtomicity(
  report: CampaignReport,
  round: number,
  broken: readonly { keys: readonly string[]; reason: string; witness: readonly Entry[] }[],
  log: (line: string) => void,
): void {
  report.manyAtomicity += broken.length;
  for (const violation of broken.slice(0, 5)) {
    const text = `round ${round}: ${violation.reason}\n${describeEntries(violation.witness)}`;
    report.failures.push(text);
    log(`  ATOMICITY: ${violation.reason}`);
  }
}

// Opens `count` stores of `variant` on pools of `connections` whose sessions
// run at its isolation level, on a new `table`. Postgres' statements must
// open at every level; CockroachDB's may refuse any level but SERIALIZABLE,
// which they assume: that refusal is returned, the stores opened so far
// with it. The caller closes the stores and ends the pools.
async function openAtLevel(
  server: ThrowawayPostgres,
  admin: postgres.Sql,
  table: string,
  variant: StormVariant,
  count: number,
  connections: number,
  log: (line: string) => void,
): Promise<{ pools: postgres.Sql[]; stores: PostgresConsensus[]; refusal?: string }> {
  // The table is created with Postgres' statements: CockroachDB's CREATE
  // TABLE carries a storage parameter Postgres does not know.
  const creator = await PostgresConsensus.open(fromPostgresJs(admin), {
    table,
    engine: "postgres",
  });
  await creator.close();
  const pools = Array.from({ length: count }, () =>
    postgres(server.url, {
      max: connections,
      onnotice: () => {},
      connect_timeout: 5,
      max_pipeline: 0,
      connection: {
        application_name: APPLICATION_NAME,
        default_transaction_isolation: variant.isolation,
      },
    } as postgres.Options<Record<string, never>>));
  const stores: PostgresConsensus[] = [];
  // Each store warns alike at open (CockroachDB's statements on Postgres): once is enough.
  const warned = new Set<string>();
  const warn = (message: string) => {
    if (!warned.has(message)) log(`  warning: ${message}`);
    warned.add(message);
  };
  for (const sql of pools) {
    const [row] = await sql.unsafe("SHOW transaction_isolation");
    if (row.transaction_isolation !== variant.isolation) {
      throw new Error(
        `Table ${table}: asked for ${variant.isolation}, the session runs at ${row.transaction_isolation}`,
      );
    }
  }
  for (const sql of pools) {
    const executor = fromPostgresJs(sql, { owned: true });
    try {
      stores.push(
        await PostgresConsensus.open(executor, {
          table,
          engine: variant.engine,
          create: false,
          onWarning: warn,
        }),
      );
    } catch (error) {
      if (variant.engine === "postgres" || variant.isolation === "serializable") throw error;
      return { pools, stores, refusal: error instanceof Error ? error.message : String(error) };
    }
  }
  return { pools, stores };
}

// Tallies a round's outcomes into the report, checks its history, and saves
// the histories of the first few keys with a violation or no verdict.
async function checkRound(
  report: CampaignReport,
  entries: readonly Entry[],
  round: number,
  saveDir: string,
): Promise<{ status: string; elapsedMs: number; violations: number; many: ManyStats }> {
  for (const entry of entries) {
    report.outcomes[entry.outcome.type]++;
    if (entry.outcome.type === "unknown" && entry.outcome.message.startsWith("unexpected")) {
      report.unexpectedErrors++;
      if (report.failures.length < 20) {
        report.failures.push(`round ${round}: unexpected error: ${entry.outcome.message}`);
      }
    }
  }
  report.opsRecorded += entries.length;

  const result = checkHistory(entries, { timeoutMs: 120_000 });
  report.checkMs += result.elapsedMs;
  let violations = 0;
  let saved = 0;
  const save = async (what: string, keys: readonly string[]) => {
    if (saved++ >= MAX_SAVED_PER_ROUND) return "not saved: enough saved for this round";
    const file = `${saveDir}/torture-${what}-round${round}-${keys.join("+")}.json`;
    await Deno.mkdir(saveDir, { recursive: true });
    const touches = (e: Entry) => keysOf(e).some((k) => keys.includes(k));
    await Deno.writeTextFile(file, serializeHistory(entries.filter(touches)));
    return `history saved to ${file}`;
  };
  // Operations checked: those whose every key was found linearizable.
  const notOk = new Set(
    result.keys.filter((k) => k.status !== "ok").flatMap((k) => k.keys ?? [k.key]),
  );
  report.opsChecked += entries.filter((e) => keysOf(e).every((k) => !notOk.has(k))).length;
  for (const verdict of result.keys) {
    if (verdict.status === "violation") {
      report.violations++;
      violations++;
      const saving = await save("violation", verdict.keys ?? [verdict.key]);
      report.failures.push(
        `round ${round}, key ${verdict.key}: ${verdict.reason}\n${
          describeEntries(verdict.witness ?? [])
        }\n(${saving})`,
      );
    }
    if (verdict.status === "unknown") {
      report.undecided++;
      const saving = await save("undecided", verdict.keys ?? [verdict.key]);
      report.failures.push(
        `round ${round}, key ${verdict.key}: undecided: ${verdict.reason} (${saving})`,
      );
    }
  }
  return { status: result.status, elapsedMs: result.elapsedMs, violations, many: result.many };
}

// Runs the workload in a `bun` child on Bun.SQL and reads back its history.
async function runBunWorkload(
  url: string,
  proxyUrl: string,
  table: string,
  options: RoundOptions,
): Promise<Entry[]> {
  await Deno.mkdir(options.saveDir, { recursive: true });
  const out = `${options.saveDir}/torture-bun-round${options.round}.json`;
  const child = new Deno.Command("bun", {
    args: ["torture/bun_client.ts"],
    env: {
      TORTURE_URL: url,
      TORTURE_PROXY_URL: proxyUrl,
      TORTURE_TABLE: table,
      TORTURE_CLIENTS: String(options.clients),
      TORTURE_KEYS: String(options.keys),
      TORTURE_DURATION_MS: String(options.ms),
      TORTURE_MAX_OPS: String(options.maxOps),
      TORTURE_OUT: out,
    },
    stdout: "inherit",
    stderr: "inherit",
  }).spawn();
  // Bounded: the child stops itself after its duration; this is the backstop.
  const timer = setTimeout(() => child.kill("SIGKILL"), options.ms + 60_000);
  const status = await child.status;
  clearTimeout(timer);
  if (!status.success) throw new Error(`bun torture/bun_client.ts exited with ${status.code}`);
  const entries = parseHistory(await Deno.readTextFile(out));
  await Deno.remove(out);
  return entries;
}

export function isAcknowledgedCommit(entry: Entry): boolean {
  return entry.op.kind === "cas" && entry.outcome.type === "ok" &&
    entry.outcome.value === "committed";
}

// The table's versions (rows below seqno 0 are the store's markers), with
// retries: the admin pool's connections may have died with the server.
async function readVersions(admin: postgres.Sql, table: string): Promise<DurableRow[]> {
  for (let attempt = 1;; attempt++) {
    try {
      const rows = await admin.unsafe(
        `SELECT shard, sequence_number, data FROM ${table} WHERE sequence_number >= 0`,
      );
      return rows.map((row) => ({
        key: row.shard as string,
        seqno: BigInt(row.sequence_number),
        data: payloadText(row.data),
      }));
    } catch (error) {
      if (attempt >= 20) throw error;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }
}

export interface Durability {
  verified: number;
  truncated: number;
  lost: number;
}

function addDurability(report: CampaignReport, found: Durability): void {
  report.writesVerified += found.verified;
  report.writesTruncated += found.truncated;
  report.writesLost += found.lost;
  if (found.lost > 0) report.failures.push(`${found.lost} acknowledged writes lost`);
}

// Reads the whole table (logs stay short: the workload truncates) with
// retries (the admin pool's connections died with the server), and checks
// each acknowledged write: present with its payload, or below the key's
// lowest version (truncated). Heads are never deleted, so an acknowledged
// seqno above the head is lost. Rows below seqno 0 are the store's own
// (a key's never-deleted marker), not versions: they are left out.
export async function verifyDurable(
  admin: postgres.Sql,
  table: string,
  acknowledged: readonly Entry[],
  log: (line: string) => void,
): Promise<Durability> {
  let rows: postgres.RowList<postgres.Row[]> | undefined;
  for (let attempt = 1; rows === undefined; attempt++) {
    try {
      rows = await admin.unsafe(
        `SELECT shard, sequence_number, data FROM ${table} WHERE sequence_number >= 0`,
      );
    } catch (error) {
      if (attempt >= 20) throw error;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }
  const logs = new Map<string, Map<bigint, string>>();
  for (const row of rows) {
    let versions = logs.get(row.shard);
    if (versions === undefined) logs.set(row.shard, versions = new Map());
    versions.set(BigInt(row.sequence_number), payloadText(row.data));
  }
  const found: Durability = { verified: 0, truncated: 0, lost: 0 };
  for (const entry of acknowledged) {
    if (entry.op.kind !== "cas") continue;
    const versions = logs.get(entry.key);
    const seqnos = versions ? [...versions.keys()] : [];
    const low = seqnos.reduce((a, b) => (b < a ? b : a), seqnos[0] ?? 0n);
    const data = versions?.get(entry.op.seqno);
    if (data === entry.op.data) found.verified++;
    else if (data === undefined && versions !== undefined && entry.op.seqno < low) {
      found.truncated++;
    } else {
      found.lost++;
      log(`  LOST: ${describeEntries([entry])} (table has ${data ?? "nothing"})`);
    }
  }
  return found;
}

/** The report as the lines `deno task torture` prints. */
export function formatReport(report: CampaignReport, command: string): string {
  const faults = FAULT_KINDS.map((k) => `${k} ${report.faults[k]}`).join(", ");
  const total = FAULT_KINDS.reduce((sum, k) => sum + report.faults[k], 0);
  const perSecond = report.checkMs > 0 ? report.opsRecorded / (report.checkMs / 1000) : 0;
  return [
    `command:               ${command}`,
    `rounds:                ${report.rounds} (${
      Object.entries(report.roundsByRuntime).map(([k, v]) => `${k} ${v}`).join(", ")
    }; ${(report.workloadMs / 1000).toFixed(0)} s of workload)`,
    `operations recorded:   ${report.opsRecorded}`,
    `operations checked:    ${report.opsChecked} (linearizable)`,
    `outcomes:              ok ${report.outcomes.ok}, RangeError ${report.outcomes.range}, ` +
    `failed (determinate) ${report.outcomes.fail}, unknown (indeterminate) ${report.outcomes.unknown}`,
    `unexpected errors:     ${report.unexpectedErrors}`,
    `faults injected:       ${total} (${faults})`,
    `proxy:                 ${report.proxy.connections} connections, ${report.proxy.stalls} stalls, ` +
    `${report.proxy.cutsAfterSend} cut after sending a statement, ` +
    `${report.proxy.cutsHalfSent} cut mid-statement`,
    `server settings:       fsync ${report.settings.fsync}, synchronous_commit ${report.settings.synchronousCommit}`,
    `checker:               ${(report.checkMs / 1000).toFixed(1)} s (${
      Math.round(perSecond)
    } ops/s)`,
    `violations:            ${report.violations}`,
    `undecided keys:        ${report.undecided}`,
    `acknowledged writes:   ${report.writesVerified} verified present, ${report.writesTruncated} since truncated`,
    `acknowledged lost:     ${report.writesLost}`,
    `anomalies:             ${report.anomalies.length}${
      report.anomalies.map((a) => `\n  ${a}`).join("")
    }`,
    ...formatStorm(report.storm),
    ...formatTransfers(report),
    ...formatCoordination(report),
  ].join("\n");
}

// The watchers' and lease contenders' blocks, when fault rounds had them.
function formatCoordination(report: CampaignReport): string[] {
  const lines: string[] = [];
  const w = report.watch;
  if (w.rounds > 0) {
    lines.push(
      `watch:                 ${w.rounds} fault rounds (${
        Object.entries(w.notify).map(([k, v]) => `${k} ${v}`).join(", ")
      })`,
      `  watchers:            ${w.watchers} runs (${w.late} late, from an old seqno), ` +
        `${w.failed} ended by a store failure and watched on`,
      `  versions delivered:  ${w.versions}`,
      `  listen kills:        ${w.listenKills}`,
      `  truncation errors:   ${w.truncationsLegal} legal, ${w.truncationsIllegal} illegal`,
      `  gaps:                ${w.gaps}`,
      `  duplicates:          ${w.duplicates}`,
      `  out of order:        ${w.outOfOrder}`,
      `  watch violations:    ${w.violations}`,
    );
  }
  const l = report.lease;
  if (l.rounds > 0) {
    lines.push(
      `lease:                 ${l.rounds} fault rounds, contenders started ${
        Object.entries(l.started).map(([k, v]) => `${k} ${v}`).join(", ")
      }`,
      `  grants:              ${l.grants} (${
        Object.entries(l.endings).map(([k, v]) => `${k} ${v}`).join(", ")
      })`,
      `  disturbed:           ${l.pauses} SIGSTOP pauses, ${l.stalls} busy-wait stalls, ` +
        `${l.kills} SIGKILLs (all past the ttl)`,
      `  store failures:      acquire ${l.acquireErrors.determinate} determinate, ` +
        `${l.acquireErrors.indeterminate} indeterminate; release ${l.releaseErrors}`,
      `  smallest handover:   ${
        Number.isFinite(l.minGapMs) ? `${l.minGapMs.toFixed(1)} ms` : "none"
      }`,
      `  overlaps:            ${l.overlaps}`,
      `  token regressions:   ${l.tokenRegressions}`,
      `  lease violations:    ${l.violations}`,
      `  contender crashes:   ${l.crashes}`,
    );
  }
  return lines;
}

// One block per transfer round kind.
function formatTransfers(report: CampaignReport): string[] {
  if (report.transfers.length === 0) return [];
  const lines = [
    `transfers:             compareAndSetMany between 4 accounts (a third with a fresh key's ` +
    `first write) racing single-key writers and truncators; the rounds without faults on ` +
    `${TRANSFER_STORES} stores x (${TRANSFERERS} transferers, 1 writer, 1 truncator)`,
    `  not all or nothing:  ${report.manyAtomicity}`,
    `  balances off:        ${report.conservationErrors}`,
  ];
  for (const f of report.transfers) {
    lines.push(`  ${f.label}:`);
    if (f.refusedAtOpen > 0) {
      lines.push(`    refused at open:     ${f.refusedAtOpen} round(s): ${f.refusal}`);
    }
    if (f.rounds === 0) continue;
    const m = f.many;
    lines.push(
      `    rounds:              ${f.rounds} (${(f.workloadMs / 1000).toFixed(0)} s), ${f.ops} ops`,
      `    compareAndSetMany:   committed ${m.committed}, mismatch ${m.mismatched} (${f.mismatchOnOneKey} ` +
        `explained by one key only), unknown ${m.unknown}, failed (determinate) ${m.failed}; ` +
        `${f.manyFirstWrites} with a first write`,
      `    violations:          ${f.violations}`,
      `    not all or nothing:  ${f.atomicity}`,
      `    balances off:        ${f.conservation} round(s)`,
      `    acknowledged lost:   ${f.writesLost}`,
    );
  }
  return lines;
}

// One block per storm variant.
function formatStorm(storm: readonly StormFigures[]): string[] {
  if (storm.length === 0) return [];
  const lines = [
    `storm:                 ${STORM_STORES} stores x ${STORM_WRITERS} writers + 1 truncator each, ` +
    `a new key every 4 ms, no faults`,
  ];
  for (const f of storm) {
    lines.push(`  ${stormVariantName(f.variant)}:`);
    if (f.refusedAtOpen > 0) {
      lines.push(`    refused at open:     ${f.refusedAtOpen} round(s): ${f.refusal}`);
    }
    if (f.rounds === 0) continue;
    lines.push(
      `    rounds:              ${f.rounds} (${(f.workloadMs / 1000).toFixed(0)} s), ${f.ops} ops`,
      `    keys:                ${f.keys}`,
      `    first writes:        ${f.firstWrites} (${f.blindFirstWrites} blind)`,
      `    failed (determinate): ${f.failed}`,
      `    double commits:      ${f.doubleCommits}${
        f.doubleCommitKeys.length > 0 ? ` (keys ${f.doubleCommitKeys.join(", ")})` : ""
      }`,
      `    violations:          ${f.violations}`,
      `    acknowledged lost:   ${f.writesLost}`,
    );
  }
  return lines;
}

/**
 * Whether the campaign passed: no violation, double commit, loss, undecided
 * key, unexpected error, compareAndSetMany half in the table, balance off,
 * watch violation, lease violation or crashed lease contender.
 */
export function passed(report: CampaignReport): boolean {
  return report.violations === 0 && report.writesLost === 0 && report.undecided === 0 &&
    report.unexpectedErrors === 0 && report.doubleCommits === 0 &&
    report.manyAtomicity === 0 && report.conservationErrors === 0 &&
    report.watch.violations === 0 && report.lease.violations === 0 &&
    report.lease.crashes === 0;
}
