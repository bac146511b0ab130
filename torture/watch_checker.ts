/**
 * Checks what `watch` delivered against the recorded history of the writes
 * (`torture/history.ts`): every watcher must have seen a gapless, in-order
 * sequence of committed versions, each once.
 *
 * For each watcher, in order:
 * 1. Gapless and in order: the i-th version yielded has seqno `first + i`
 *    (so none twice, none skipped, none out of order).
 * 2. Where it starts: at `from` when given; otherwise at a version no older
 *    than one acknowledged as committed before the watcher started (the head
 *    "as it is when iteration starts").
 * 3. Only committed versions: each (seqno, payload) yielded is a
 *    compare-and-set of that seqno and payload, alone or as an entry of a
 *    compareAndSetMany (payloads are unique per write), whose outcome is
 *    "committed" or unknown, never one told
 *    "mismatch" or a determinate failure, and never a payload no write sent.
 *    Two watchers never see different payloads for one seqno.
 * 4. No version before its write: a version is yielded after the invocation
 *    of the compare-and-set that wrote it.
 * 5. Complete: a watcher that ended normally after the writes stopped saw
 *    every version up to the final head (when the round gives the heads);
 *    one that yielded nothing reached the version before its `from`.
 * 6. A truncation error names the version the watcher expected next, and a
 *    truncate above that seqno was invoked before the error (when the round
 *    recorded the error's `available`, where the log then began: a truncate
 *    to exactly there, above the named seqno), which makes it legal;
 *    otherwise it is counted illegal.
 * 7. How it ends: stopped by the round, left early by its consumer (`left`:
 *    no completeness asked), failed with a store error (`failed`, a
 *    `ConsensusError`: the round watches again from the next seqno, which
 *    rule 2 then checks), or truncated; any other error is a violation.
 *
 * Violations carry a kind, and the result counts the ordering faults one by
 * one: seqnos skipped (gaps), yielded again (duplicates), or yielded below
 * one already yielded (out of order).
 *
 * @module
 */
import type { Entry, Version } from "./history.ts";

/** What one watcher delivered, as the round recorded it. */
export interface WatchRecord {
  /** An id, for reports. */
  readonly watcher: number;
  readonly key: string;
  /** The `from` it was given; `undefined` to start at the head. */
  readonly from?: bigint;
  /** `performance.now()` of its first `next()`. */
  readonly started: number;
  /** The versions it yielded, in order, with when each was yielded. */
  readonly versions: readonly (Version & { readonly at: number })[];
  /**
   * How it ended: stopped by the round (abort or break), the store closed,
   * its consumer broke out early on purpose (`left`), a store failure
   * (`failed`: a `ConsensusError`), a {@linkcode TruncatedError} (with the
   * seqno it named and when), or any other error.
   */
  readonly end:
    | { readonly type: "stopped" }
    | { readonly type: "left" }
    | { readonly type: "failed"; readonly message: string }
    | {
      readonly type: "truncated";
      readonly seqno: bigint;
      /** The error's `available`: where the log began, when the round recorded it. */
      readonly available?: bigint;
      readonly at: number;
    }
    | { readonly type: "error"; readonly message: string };
}

/** What kind of promise a {@linkcode WatchViolation} broke. */
export type WatchViolationKind =
  | "gap"
  | "duplicate"
  | "out-of-order"
  | "start"
  | "uncommitted"
  | "early"
  | "disagreement"
  | "short"
  | "truncation"
  | "error";

/** One broken promise of `watch`. */
export interface WatchViolation {
  readonly watcher: number;
  readonly key: string;
  readonly kind: WatchViolationKind;
  readonly reason: string;
}

/** The verdict on a set of watchers. */
export interface WatchCheckResult {
  readonly status: "ok" | "violation";
  readonly watchers: number;
  /** Versions yielded, over all watchers. */
  readonly versions: number;
  /** Seqnos a watcher skipped (within what it yielded, or from its `from`). */
  readonly gaps: number;
  /** Versions a watcher yielded again (or below its `from`). */
  readonly duplicates: number;
  /** Versions yielded below one the watcher had already yielded (not duplicates). */
  readonly outOfOrder: number;
  /** TruncatedErrors naming the expected seqno after a truncate above it began. */
  readonly truncationsLegal: number;
  /** Other TruncatedErrors (each is also a violation). */
  readonly truncationsIllegal: number;
  /** Watchers that ended with a store failure (legal; the round watched on). */
  readonly failed: number;
  readonly violations: readonly WatchViolation[];
}

/**
 * Checks `watches` against the writes recorded in `entries`.
 *
 * @param entries The recorded history of the writers (and truncators).
 * @param watches What each watcher yielded.
 * @param finalHeads Per key, the head after the writers stopped: watchers
 *   that ended `stopped` must have reached it.
 * @returns The verdict, with every violation found.
 */
export function checkWatches(
  entries: readonly Entry[],
  watches: readonly WatchRecord[],
  finalHeads?: ReadonlyMap<string, bigint>,
): WatchCheckResult {
  const violations: WatchViolation[] = [];
  // Per key and seqno: the writes of that seqno, by payload.
  const writes = new Map<string, Map<bigint, Map<string, Entry>>>();
  const truncates = new Map<string, Entry[]>();
  for (const entry of entries) {
    if (entry.op.kind === "truncate") {
      let list = truncates.get(entry.key);
      if (list === undefined) truncates.set(entry.key, list = []);
      list.push(entry);
    }
    // A compareAndSetMany writes each of its entries, with its outcome.
    const appends = entry.op.kind === "cas"
      ? [{ key: entry.key, seqno: entry.op.seqno, data: entry.op.data }]
      : entry.op.kind === "casMany"
      ? entry.op.entries
      : [];
    for (const { key, seqno, data } of appends) {
      let bySeqno = writes.get(key);
      if (bySeqno === undefined) writes.set(key, bySeqno = new Map());
      let byPayload = bySeqno.get(seqno);
      if (byPayload === undefined) bySeqno.set(seqno, byPayload = new Map());
      byPayload.set(data, entry);
    }
  }
  const agreed = new Map<string, string>();
  let total = 0;
  let gaps = 0, duplicates = 0, outOfOrder = 0;
  let truncationsLegal = 0, truncationsIllegal = 0, failed = 0;
  for (const watch of watches) {
    const fail = (kind: WatchViolationKind, reason: string) =>
      violations.push({ watcher: watch.watcher, key: watch.key, kind, reason });
    const versions = watch.versions;
    total += versions.length;
    const first = versions[0]?.seqno;
    // 1. gapless, in order: each fault counted, the first one reported.
    const yielded = new Set<bigint>();
    let top: bigint | undefined;
    let reported = false;
    for (let i = 0; i < versions.length; i++) {
      const seqno = versions[i].seqno;
      let kind: WatchViolationKind | undefined;
      if (yielded.has(seqno)) {
        duplicates++;
        kind = "duplicate";
      } else if (top !== undefined && seqno < top) {
        outOfOrder++;
        kind = "out-of-order";
      } else if (top !== undefined && seqno > top + 1n) {
        // A jump: out of order if a skipped seqno comes later, else a gap.
        const later = new Set(versions.slice(i + 1).map((v) => v.seqno));
        kind = "gap";
        for (let s = top + 1n; s < seqno; s++) if (later.has(s)) kind = "out-of-order";
      }
      if (kind !== undefined && !reported) {
        reported = true;
        fail(kind, `yielded ${seqno} after ${versions[i - 1].seqno}`);
      }
      yielded.add(seqno);
      if (top === undefined || seqno > top) top = seqno;
    }
    if (first !== undefined && top !== undefined) {
      for (let s = first; s <= top; s++) if (!yielded.has(s)) gaps++;
    }
    // 2. where it starts
    if (watch.from !== undefined && first !== undefined && first !== watch.from) {
      if (first > watch.from) gaps += Number(first - watch.from);
      else duplicates++;
      fail(
        first > watch.from ? "gap" : "duplicate",
        `started at ${first}, not at from ${watch.from}`,
      );
    }
    if (watch.from === undefined && first !== undefined) {
      for (const [seqno, byPayload] of writes.get(watch.key) ?? []) {
        if (seqno <= first) continue;
        const before = [...byPayload.values()].find((e) =>
          e.outcome.type === "ok" && e.outcome.value === "committed" && e.ret < watch.started
        );
        if (before !== undefined) {
          fail("start", `started at ${first}, below version ${seqno} committed before it started`);
          break;
        }
      }
    }
    // 3 and 4. committed versions only, after their writes began
    for (const version of versions) {
      const write = writes.get(watch.key)?.get(version.seqno)?.get(version.data);
      if (write === undefined) {
        fail("uncommitted", `yielded ${version.seqno} with a payload no write of that seqno sent`);
        continue;
      }
      const { outcome } = write;
      const committed = (outcome.type === "ok" && outcome.value === "committed") ||
        outcome.type === "unknown";
      if (!committed) {
        fail("uncommitted", `yielded ${version.seqno} from a write told ${describe(outcome)}`);
      }
      if (version.at < write.call) {
        fail("early", `yielded ${version.seqno} before its write was invoked`);
      }
      const tag = `${version.seqno}\u0000${watch.key}`;
      const other = agreed.get(tag);
      if (other === undefined) agreed.set(tag, version.data);
      else if (other !== version.data) {
        fail(
          "disagreement",
          `yielded ${version.seqno} with a payload another watcher saw differently`,
        );
      }
    }
    // 5, 6 and 7. how it ended
    const next = first === undefined ? watch.from : versions.at(-1)!.seqno + 1n;
    const end = watch.end;
    if (end.type === "stopped") {
      const head = finalHeads?.get(watch.key);
      // A run that yielded nothing reached the version before its `from`
      // (a run restarted after a failure may start past the final head).
      const reached = versions.at(-1)?.seqno ??
        (watch.from !== undefined && watch.from > 0n ? watch.from - 1n : undefined);
      if (head !== undefined && (reached === undefined || reached < head)) {
        fail("short", `stopped at ${reached ?? "nothing"}, short of the final head ${head}`);
      }
    } else if (end.type === "truncated") {
      let legal = true;
      if (next !== undefined && end.seqno !== next) {
        legal = false;
        fail("truncation", `named ${end.seqno} as truncated, expected ${next}`);
      }
      // The log then began at `available`: the low watermark is the bound of
      // a truncate, so one to exactly there began before the error.
      const { available } = end;
      if (available !== undefined && available <= end.seqno) {
        legal = false;
        fail("truncation", `reported ${end.seqno} truncated, the log beginning at ${available}`);
      }
      const cause = (truncates.get(watch.key) ?? []).find((e) =>
        e.op.kind === "truncate" &&
        (available === undefined ? e.op.seqno > end.seqno : e.op.seqno === available) &&
        e.call <= end.at && e.outcome.type !== "fail" && e.outcome.type !== "range"
      );
      if (cause === undefined) {
        legal = false;
        fail(
          "truncation",
          available === undefined
            ? `reported ${end.seqno} truncated, but no truncate above it began before that`
            : `reported ${end.seqno} truncated up to ${available}, but no truncate to ${available} ` +
              `began before that`,
        );
      }
      if (legal) truncationsLegal++;
      else truncationsIllegal++;
    } else if (end.type === "failed") {
      failed++;
    } else if (end.type === "error") {
      fail("error", `ended with an error: ${end.message}`);
    }
  }
  return {
    status: violations.length === 0 ? "ok" : "violation",
    watchers: watches.length,
    versions: total,
    gaps,
    duplicates,
    outOfOrder,
    truncationsLegal,
    truncationsIllegal,
    failed,
    violations,
  };
}

function describe(outcome: Entry["outcome"]): string {
  return outcome.type === "ok" ? JSON.stringify(outcome.value) : outcome.type;
}
