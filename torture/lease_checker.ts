/**
 * Checks a history of lease tenures: that the validity intervals of
 * different tenures never overlap in real time, and that fencing tokens
 * rise from one tenure to the next.
 *
 * A tenure is one grant as its holder lived it:
 * - it starts when `acquireLease` resolved (`grantedAt`);
 * - it ends when the holder's `lease.signal` aborted, when the holder
 *   called `release()`, or when its process was killed, whichever came
 *   first (`endedAt`);
 * - `lastValidAt` is the last time the holder read `lease.signal.aborted`
 *   as `false` and acted as the holder.
 *
 * A paused process runs nothing, its abort listener included, so when the
 * abort of a tenure was dispatched only after a pause (`pausedBeforeEnd`),
 * `endedAt` says when the process woke up, not when the lease ended for it:
 * the last moment it acted as the holder, `lastValidAt`, ends that interval
 * instead. (A signal that reads the clock makes every read after the
 * deadline say "aborted", so that moment is before the deadline.)
 *
 * All times are on one clock for the whole history: the simulation's
 * virtual time, or wall-clock milliseconds when tenures come from several
 * processes on one machine.
 *
 * @module
 */

/** One tenure of a lease. */
export interface Tenure {
  /** Who held it (process or contender name). */
  readonly holder: string;
  /** The fencing token the grant carried. */
  readonly token: bigint;
  /** When `acquireLease` resolved. */
  readonly grantedAt: number;
  /** The last time the holder saw `signal.aborted === false`; at least `grantedAt`. */
  readonly lastValidAt: number;
  /** When the signal aborted, `release()` was called or the process was killed; `Infinity` if still held. */
  readonly endedAt: number;
  /** The abort was only dispatched after a pause of the holder's process. */
  readonly pausedBeforeEnd?: boolean;
  /** How it ended, for reports. */
  readonly how?: string;
}

/** What {@linkcode checkTenures} found. */
export interface LeaseVerdict {
  readonly ok: boolean;
  readonly tenures: number;
  /** One line per problem. */
  readonly violations: readonly string[];
  /** Grants made while an earlier tenure was still valid. */
  readonly overlaps: number;
  /**
   * Grants whose token is not above the previous grant's, plus tokens
   * granted twice (a duplicate next to its twin counts in both).
   */
  readonly tokenRegressions: number;
  /** The smallest real-time gap between one tenure's end and the next one's grant. */
  readonly minGapMs: number;
}

/** The end of a tenure's validity interval, as argued in the module doc. */
export function validUntil(tenure: Tenure): number {
  return tenure.pausedBeforeEnd ? tenure.lastValidAt : tenure.endedAt;
}

const show = (t: Tenure) =>
  `${t.holder} (token ${t.token}, ${t.grantedAt.toFixed(1)} to ${validUntil(t).toFixed(1)}${
    t.how ? `, ${t.how}` : ""
  })`;

/**
 * Checks that the tenures' validity intervals are disjoint and ordered by
 * their tokens.
 *
 * @param tenures Every tenure of one key, in any order.
 * @returns The verdict, with every violation found.
 */
export function checkTenures(tenures: readonly Tenure[]): LeaseVerdict {
  const violations: string[] = [];
  let overlaps = 0, tokenRegressions = 0;
  const sorted = [...tenures].sort((a, b) => a.grantedAt - b.grantedAt);
  const tokens = new Set<bigint>();
  for (const tenure of sorted) {
    if (tokens.has(tenure.token)) {
      tokenRegressions++;
      violations.push(`token ${tenure.token} granted twice`);
    }
    tokens.add(tenure.token);
    if (tenure.lastValidAt < tenure.grantedAt) {
      violations.push(`${show(tenure)}: valid before it was granted`);
    }
    if (!tenure.pausedBeforeEnd && tenure.lastValidAt > tenure.endedAt) {
      violations.push(`${show(tenure)}: acted as holder after its end at ${tenure.endedAt}`);
    }
  }
  let minGapMs = Infinity;
  // Sorted by grant, a later grant must come after every earlier tenure's
  // end, and carry a greater token: tracking the latest end so far covers
  // every pair, not just neighbours.
  let latest: Tenure | undefined;
  for (let i = 0; i < sorted.length; i++) {
    const tenure = sorted[i];
    if (latest !== undefined) {
      const gap = tenure.grantedAt - validUntil(latest);
      if (gap <= 0) {
        overlaps++;
        violations.push(`${show(tenure)} granted while ${show(latest)} was valid`);
      } else minGapMs = Math.min(minGapMs, gap);
    }
    if (i > 0 && sorted[i - 1].token >= tenure.token) {
      tokenRegressions++;
      violations.push(`token fell from ${show(sorted[i - 1])} to ${show(tenure)}`);
    }
    if (latest === undefined || validUntil(tenure) > validUntil(latest)) latest = tenure;
  }
  return {
    ok: violations.length === 0,
    tenures: tenures.length,
    violations,
    overlaps,
    tokenRegressions,
    minGapMs,
  };
}
