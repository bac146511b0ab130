/**
 * A randomized round of lease contention in simulated time, checked by the
 * lease checker: several contender processes with drifting clocks compete
 * for one key; holders hold for a while and then release, or are killed
 * (they stop renewing and never release), or are paused for longer than the
 * ttl (a stop-the-world GC pause: their timers and replies wait too); pauses
 * also strike any process at random moments; the network delays messages,
 * sometimes by a good part of the ttl, and fails some calls, determinately
 * or not, some writes landing after their error was reported.
 *
 * Every tenure is recorded as its holder lived it and checked with
 * {@linkcode checkTenures}. Deterministic for a seed.
 *
 * @module
 */
import { MemoryConsensus } from "../mod.ts";
import { acquireLeaseWith, DRIFT_BOUND } from "../src/_lease.ts";
import type { Lease } from "../src/lease.ts";
import { checkTenures, type LeaseVerdict, type Tenure } from "./lease_checker.ts";
import { seededRandom, SimProcess, SimStore, VirtualTime } from "./lease_sim.ts";

/** Knobs of a round. */
export interface RoundOptions {
  seed: number;
  /** Live contender processes at any time (a killed one is replaced). @default {4} */
  contenders?: number;
  /** @default {100} */
  ttlMs?: number;
  /** @default {10} */
  pollIntervalMs?: number;
  /** Simulated duration. @default {20_000} */
  durationMs?: number;
  /** Clock rates are drawn from [1 - drift, 1 + drift]. @default {just under DRIFT_BOUND} */
  drift?: number;
  /** Inject network failures. @default {true} */
  faults?: boolean;
}

/** What a round did and what the checker found. */
export interface RoundReport {
  readonly verdict: LeaseVerdict;
  readonly tenures: readonly Tenure[];
  /** Tenures by how they ended. */
  readonly endings: Record<string, number>;
  readonly pauses: number;
  /** Holders cut off from the store while they kept running. */
  readonly partitions: number;
  readonly kills: number;
  /** Versions left in the key's log at the end (truncation keeps it short). */
  readonly logLength: number;
  /** Real time from a release to the next grant, ms. */
  readonly afterRelease: readonly number[];
  /** Real time from a kill to the next grant, ms. */
  readonly afterKill: readonly number[];
  /** Errors acquireLease rejected with (store failures it could not hide). */
  readonly acquireErrors: number;
  /** Errors that escaped a contender's loop: bugs. */
  readonly unexpected: readonly unknown[];
}

type MutableTenure = { -readonly [K in keyof Tenure]: Tenure[K] };

const KEY = "lease";

/** Runs one round; see the module doc. */
export async function runLeaseRound(options: RoundOptions): Promise<RoundReport> {
  const random = seededRandom(options.seed);
  const contenders = options.contenders ?? 4;
  const ttlMs = options.ttlMs ?? 100;
  const pollIntervalMs = options.pollIntervalMs ?? 10;
  const durationMs = options.durationMs ?? 20_000;
  const drift = options.drift ?? DRIFT_BOUND * 0.999;
  const faults = options.faults ?? true;
  const vt = new VirtualTime();
  const shared = new MemoryConsensus();
  const tenures: MutableTenure[] = [];
  let pauses = 0, partitions = 0, kills = 0, acquireErrors = 0, spawned = 0;
  const live = new Set<SimProcess>();
  const unexpected: unknown[] = [];

  const delay = () => random() < 0.02 ? 10 + 50 * random() : 0.1 + 1.9 * random();
  const rate = () => {
    const r = random();
    // Half the processes at the edges of the allowed range, where it is tightest.
    return r < 0.25 ? 1 - drift : r < 0.5 ? 1 + drift : 1 - drift + 2 * drift * random();
  };

  async function life(process: SimProcess, store: SimStore): Promise<void> {
    while (!process.dead && vt.now < durationMs) {
      const giveUp = new AbortController();
      vt.schedule(durationMs, () => giveUp.abort(new Error("round over")));
      let lease: Lease;
      try {
        lease = await acquireLeaseWith(
          store,
          KEY,
          { holder: process.name, ttlMs, pollIntervalMs, signal: giveUp.signal },
          process.clock,
        );
      } catch {
        if (giveUp.signal.aborted) return;
        acquireErrors++;
        await process.sleep(ttlMs * random());
        continue;
      }
      const tenure: MutableTenure = {
        holder: process.name,
        token: lease.token,
        grantedAt: vt.now,
        lastValidAt: vt.now,
        endedAt: Infinity,
        pausedBeforeEnd: false,
        how: "held at the end",
      };
      tenures.push(tenure);
      lease.signal.addEventListener("abort", () => {
        if (tenure.endedAt !== Infinity) return; // released or killed first
        tenure.endedAt = vt.now;
        tenure.pausedBeforeEnd = process.pausedBetween(tenure.lastValidAt, vt.now);
        const reason = String((lease.signal.reason as Error)?.message);
        tenure.how = reason.includes("expired")
          ? "expired"
          : reason.includes("lost")
          ? "lost"
          : "aborted";
      });
      const plan = random();
      const until = vt.now + ttlMs * (0.5 + 3 * random());
      let struck = false;
      // Each check of the signal is a moment the holder acts as the holder.
      while (vt.now < until && !lease.signal.aborted) {
        tenure.lastValidAt = vt.now;
        if (plan < 0.3 && !struck && random() < 0.3) {
          struck = true;
          if (plan < 0.15) {
            process.pause(ttlMs * (1.2 + 2 * random()));
            pauses++;
          } else {
            // Alive but cut off: renewals cannot get through, the holder keeps acting.
            partition(store, ttlMs * (1.2 + 2 * random()));
          }
        }
        await process.sleep(1 + (ttlMs / 10) * random());
      }
      if (lease.signal.aborted) continue; // lost or expired: the lease hands over itself
      if (plan >= 0.3 && plan < 0.45) {
        tenure.endedAt = vt.now;
        tenure.how = "killed";
        process.kill();
        kills++;
        live.delete(process);
        vt.schedule(vt.now + ttlMs * random(), spawn);
        return;
      }
      tenure.endedAt = vt.now;
      tenure.how = "released";
      await lease.release().catch(() => {});
      await process.sleep(ttlMs * random());
    }
  }

  function spawn(): void {
    if (vt.now >= durationMs) return;
    const process = new SimProcess(vt, `p${spawned++}`, rate(), 1e6 * random());
    const store = new SimStore(shared, process, vt, {
      random,
      delay,
      determinate: faults ? 0.01 : 0,
      indeterminate: faults ? 0.02 : 0,
      late: faults ? 0.3 : 0,
      timeoutMs: 3 * ttlMs,
    });
    live.add(process);
    life(process, store).catch((error) => unexpected.push(error));
  }

  function partition(store: SimStore, ms: number): void {
    store.partitioned = true;
    partitions++;
    vt.schedule(vt.now + ms, () => store.partitioned = false);
  }

  // Pauses that strike any live process at any moment, mid-call included.
  function chaos(): void {
    if (vt.now >= durationMs) return;
    const list = [...live];
    const victim = list[Math.floor(random() * list.length)];
    if (victim !== undefined) {
      victim.pause(ttlMs * (0.1 + 2.5 * random()));
      pauses++;
    }
    vt.schedule(vt.now + ttlMs * (1 + 10 * random()), chaos);
  }

  for (let i = 0; i < contenders; i++) spawn();
  vt.schedule(ttlMs * 5 * random(), chaos);
  try {
    await vt.runUntil(durationMs + 50 * ttlMs);
  } finally {
    vt.close();
  }

  const endings: Record<string, number> = {};
  for (const tenure of tenures) endings[tenure.how!] = (endings[tenure.how!] ?? 0) + 1;
  const sorted = [...tenures].sort((a, b) => a.grantedAt - b.grantedAt);
  const afterRelease: number[] = [];
  const afterKill: number[] = [];
  for (let i = 0; i + 1 < sorted.length; i++) {
    const gap = sorted[i + 1].grantedAt - sorted[i].endedAt;
    if (sorted[i].how === "released") afterRelease.push(gap);
    if (sorted[i].how === "killed") afterKill.push(gap);
  }
  return {
    verdict: checkTenures(tenures),
    tenures,
    endings,
    pauses,
    partitions,
    kills,
    logLength: (await shared.scan(KEY, 0n)).length,
    afterRelease,
    afterKill,
    acquireErrors,
    unexpected,
  };
}
