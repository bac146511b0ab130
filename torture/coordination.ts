/**
 * Coordination beside a fault round's workload: watchers and lease
 * contenders on the round's table, on the paths the round's faults break,
 * checked after the round.
 *
 * Watch (`torture/watch_round.ts`): two writer stores (one direct, one
 * through the chaos proxy) race read-then-write and two-key
 * compareAndSetMany commits on two keys while a truncator keeps each key 8
 * to 10 versions long; watchers on two more stores (one through the proxy,
 * one direct) record every version, from 0, from the head, slowly (so the
 * truncator overtakes them), and late ones from an old `from`. Whether the
 * writers notify cycles from round to round: both, one, neither (then the
 * watchers only poll). Besides the round's faults (which kill any of these
 * backends, restart the server, lock the table, stall and cut the proxy),
 * the listening connections (`query ILIKE 'listen %'` in `pg_stat_activity`)
 * are terminated every 1.5 s, so the reconnect and its re-read run. A
 * watcher that fails with a `ConsensusError` watches again from the next
 * seqno it expected. After the round the writes go through the
 * linearizability checker (with the round's) and the watchers through
 * `checkWatches`.
 *
 * Leases (`torture/lease_contenders.ts`): contender processes on one key of
 * the round's table, alternately through the proxy and direct, paused past
 * the ttl, stalling, releasing, dying and killed; their tenures go through
 * `checkTenures`.
 *
 * @module
 */
import postgres from "postgres";
import { PostgresConsensus } from "../mod.ts";
import { fromPostgresJs } from "../src/adapters/postgres_js.ts";
import { History } from "./history.ts";
import { LeaseContenders, type LeaseContendersReport } from "./lease_contenders.ts";
import { checkWatches, type WatchCheckResult } from "./watch_checker.ts";
import { runWatchRound, type WatchRoundResult } from "./watch_round.ts";

/** Which watch writers notify, cycled through by round. */
export const NOTIFY_MODES = [
  "both writers notify",
  "one writer notifies",
  "no writer notifies",
] as const;

/** Options for {@linkcode startCoordination}. */
export interface CoordinationOptions {
  /** The server, straight. */
  serverUrl: string;
  /** The server through the round's chaos proxy. */
  proxyUrl: string;
  /** The round's table (unquoted; it exists). */
  table: string;
  /** For the listening connections' terminations. */
  admin: postgres.Sql;
  /** The `application_name` of every connection here (the round's kills hit them). */
  applicationName: string;
  /** Watchers per key on each of the two watcher stores; 0 for no watch part. */
  watchers: number;
  /** Live lease contender processes; 0 for no lease part. */
  leaseContenders: number;
  /** @default {1000} */
  leaseTtlMs?: number;
  /** Index into {@linkcode NOTIFY_MODES}. */
  notifyMode: number;
  /** The longest the watch writers run; `stopWriting` ends them sooner. */
  durationMs: number;
  /** Aborted when the round's workload ends. */
  stopWriting: AbortSignal;
  /** Settles when the round's faults have stopped: watchers catch up after it. */
  faultsEnded: Promise<unknown>;
  /** Flags for `deno run` of the contenders. */
  denoArgs?: readonly string[];
  /** Every other contender under Bun. */
  bun?: boolean;
}

/** What the watch part did and what the checker found. */
export interface WatchPart {
  readonly result: WatchRoundResult;
  readonly check: WatchCheckResult;
  readonly notify: string;
  /** Listening connections terminated. */
  readonly listenKills: number;
}

/** What {@linkcode Coordination.finish} returns. */
export interface CoordinationResult {
  readonly watch?: WatchPart;
  readonly lease?: LeaseContendersReport;
}

/** A running coordination part; see the module doc. */
export interface Coordination {
  /** The watch writes, recorded as they happen (for durability checks at crashes). */
  readonly history: History;
  /** Waits for the watchers to settle, stops the contenders, checks both. */
  finish(): Promise<CoordinationResult>;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Starts the watch and lease parts beside a round's workload. */
export async function startCoordination(options: CoordinationOptions): Promise<Coordination> {
  const history = new History(30_000);
  const pools: postgres.Sql[] = [];
  const stores: PostgresConsensus[] = [];
  const pool = (url: string) => {
    const sql = postgres(url, {
      max: 3,
      onnotice: () => {},
      connect_timeout: 5,
      max_pipeline: 0,
      connection: { application_name: options.applicationName },
    } as postgres.Options<Record<string, never>>);
    pools.push(sql);
    return sql;
  };
  // The round's faults may already be running: open with retries (bounded).
  const open = async (url: string, notify: boolean, timeoutMs: number) => {
    const sql = pool(url);
    for (let attempt = 1;; attempt++) {
      try {
        const store = await PostgresConsensus.open(fromPostgresJs(sql), {
          table: options.table,
          create: false,
          notify,
          timeoutMs,
        });
        stores.push(store);
        return store;
      } catch (error) {
        if (attempt >= 100) throw error;
        await sleep(100);
      }
    }
  };

  let watching: Promise<WatchRoundResult> | undefined;
  let listenKills = 0;
  const notify = NOTIFY_MODES[options.notifyMode % NOTIFY_MODES.length];
  if (options.watchers > 0) {
    const flags = [
      [true, true],
      [true, false],
      [false, false],
    ][options.notifyMode % NOTIFY_MODES.length];
    const writers = [
      await open(options.serverUrl, flags[0], 2_000),
      await open(options.proxyUrl, flags[1], 1_000),
    ];
    const watchers = [
      await open(options.proxyUrl, false, 1_000),
      await open(options.serverUrl, false, 2_000),
    ];
    watching = runWatchRound(writers, watchers, {
      history,
      prefix: "watch",
      keys: 2,
      writersPerStore: 2,
      watchersPerKey: options.watchers,
      durationMs: options.durationMs,
      stopWriting: options.stopWriting,
      keep: 8,
      manyShare: 0.2,
      // Long enough that a notification (or its loss) matters.
      pollIntervalMs: 500,
      lateEveryMs: 400,
      settleMs: 15_000,
      faultEveryMs: 1_500,
      fault: async () => {
        const [row] = await options.admin.unsafe(
          `SELECT count(pg_terminate_backend(pid))::int AS killed FROM pg_stat_activity ` +
            `WHERE application_name = $1::text AND query ILIKE 'listen %' ` +
            `AND pid <> pg_backend_pid()`,
          [options.applicationName],
        );
        listenKills += row.killed;
      },
      beforeSettle: () => options.faultsEnded.then(() => {}),
    });
  }

  const contenders = options.leaseContenders > 0
    ? await LeaseContenders.start({
      urls: [options.proxyUrl, options.serverUrl],
      table: options.table,
      key: "lease",
      contenders: options.leaseContenders,
      ttlMs: options.leaseTtlMs ?? 1_000,
      applicationName: options.applicationName,
      denoArgs: options.denoArgs,
      bun: options.bun,
    })
    : undefined;

  return {
    history,
    async finish() {
      // The contenders stop even if the watch part failed.
      const stopping = Promise.allSettled([watching ?? Promise.resolve(undefined)])
        .then(() => contenders?.stop());
      try {
        let watch: WatchPart | undefined;
        if (watching !== undefined) {
          const result = await watching;
          const check = checkWatches(result.history.entries, result.watches, result.finalHeads);
          watch = { result, check, notify, listenKills };
        }
        const lease = await stopping;
        return { watch, lease };
      } finally {
        await stopping.catch(() => {});
        for (const store of stores) await store.close().catch(() => {});
        await Promise.all(pools.map((sql) => sql.end({ timeout: 1 }).catch(() => {})));
      }
    },
  };
}
