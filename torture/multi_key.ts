/**
 * What the checker does with compare-and-sets of several keys (`casMany`
 * entries in a history), before and after the per-key search of
 * `torture/checker.ts`.
 *
 * A full search over every key at once is exponential in the keys as well
 * as the operations, so the checker does what is sound (every violation it
 * reports is real) and can still fail.
 *
 * ## What it proves
 *
 * For the recorded history H, with every `casMany` of outcome O over keys
 * k1..kn:
 *
 * 1. **Per-key projection.** For every key k, the sub-history of k, where
 *    each `casMany` that touches k stands as a compare-and-set of k with its
 *    seqno and payload, the same invocation and completion times and:
 *    - "committed": committed;
 *    - "unknown": unknown, unless another key settles it (rule 3);
 *    - "mismatch": no write at all (it is left out), except when only one of
 *      its keys can explain the mismatch (rule 2): there it is a mismatch,
 *      which the search must place at a moment when that key's head was not
 *      seqno - 1;
 *    - determinate failure: left out, like any determinate failure;
 *    is linearizable under the single-key model. So every committed
 *    `casMany` appears in every key's order at a point inside its call, and
 *    no read returns a payload of a mismatched or failed one.
 * 2. **Mismatches are explainable.** For each mismatched `casMany`, at least
 *    one entry's condition (head = seqno - 1) could have been false at some
 *    moment inside its call. An entry's condition surely held throughout
 *    the call, in every linearization, when both: the head was already at
 *    least seqno - 1 when the call began (seqno 0, or an operation that
 *    completed before the call committed, read or truncated at seqno - 1 or
 *    above), and was still at most seqno - 1 when it ended (no write of that
 *    seqno that may have committed was invoked before the call completed, or
 *    a head read invoked after it saw seqno - 1 or less). Heads only grow,
 *    one seqno per write, so nothing in between can move them. If every
 *    entry's condition surely held, the mismatch is a violation. If all but
 *    one surely held, that one must be where the conjunction failed, and its
 *    key checks the `casMany` as a mismatch (rule 1).
 * 3. **Unknown outcomes are all or nothing across keys.** An indeterminate
 *    `casMany` whose payload some read returned, on any key, surely
 *    committed, so it is checked as committed on every key; one of whose
 *    (key, seqno) another payload was committed or read surely did not, so
 *    it is left out on every key. Both at once is a violation.
 * 4. **One instant for every committed `casMany`, as far as reads and
 *    writes pin it.** For a committed (or surely committed) `casMany`, an
 *    operation on any of its keys that saw the head below the entry's seqno
 *    (a head read, or a committed write of a lower seqno) places its instant
 *    after that operation's invocation; one that saw the head at or past it
 *    (a read of it or above, a committed write above it, a truncate at it
 *    or above) places it before that operation's completion. If the latest
 *    such invocation, over all its keys, comes after the earliest such
 *    completion, no single instant fits: a violation. This catches a reader
 *    that sees one key written and, strictly later, another key not yet.
 * 5. **Atomic in the durable state** ({@linkcode checkManyDurable}): after
 *    the run, for every committed or unknown `casMany`, either all or none
 *    of its versions are in the table (rows below seqno 0 left out; an
 *    entry truncated away since counts as either); a committed one has all;
 *    no payload of a mismatched or failed one is anywhere in the table.
 *
 * ## What it does not prove
 *
 * - Rule 4 alone does not show that one total order of every key's
 *   operations exists in which each committed `casMany` is a single point;
 *   `torture/global_order.ts` does, after the per-key search.
 * - For a mismatch with two or more keys that could explain it, that one of
 *   them does: rule 2 uses the bounds that hold in every linearization;
 *   `torture/global_order.ts` checks it against the order of all keys.
 * - That an indeterminate `casMany` committed on every key or on none,
 *   when nothing read or overwrote it: each key decides alone here;
 *   `torture/checker.ts` decides it jointly when the keys disagree, and the
 *   final table (rule 5) ties what is still there.
 *
 * @module
 */
import type { Entry, Version } from "./history.ts";

/** A verdict that spans the keys of one `casMany` (from rules 2 to 5). */
export interface ManyViolation {
  /** The keys of the operation. */
  readonly keys: readonly string[];
  readonly reason: string;
  readonly witness: readonly Entry[];
}

/** How the history's `casMany` operations were projected, for the per-key search. */
export interface ManyPlan {
  /** Per key, the compare-and-sets standing for the `casMany`s that touch it. */
  readonly projected: ReadonlyMap<string, Entry[]>;
  /** Projected unknowns that another key proved committed (rule 3). */
  readonly mustCommit: ReadonlySet<Entry>;
  /** Violations found before the search. */
  readonly violations: readonly ManyViolation[];
  readonly stats: ManyStats;
}

/** Counts, for reports. */
export interface ManyStats {
  /** `casMany` operations by outcome. */
  committed: number;
  mismatched: number;
  unknown: number;
  failed: number;
  /** Mismatches with exactly one key that could explain them, checked there as a mismatch. */
  mismatchOnOneKey: number;
  /** Unknown ones settled across keys: surely committed, surely not. */
  settledCommitted: number;
  settledNot: number;
}

/** A projected compare-and-set remembers the `casMany` it stands for. */
export interface Projected extends Entry {
  readonly part: Entry;
}

/** Whether `entry` stands for part of a `casMany`. */
export function isProjected(entry: Entry): entry is Projected {
  return (entry as Partial<Projected>).part !== undefined;
}

// Per key: bounds on the head that single operations prove, for rules 2
// and 4. `after`: the head was at least `value` by `time` (the completion).
// `before`: at the operation's own instant, before its effect, the head was
// at least `value`; `time` is its completion. `upper`: at its instant the
// head was at most `value`; `time` is its invocation.
interface Bound {
  readonly value: number;
  readonly time: number;
  readonly entry: Entry;
}

// Answers "the earliest completion among bounds with value >= x" (or "the
// latest invocation among bounds with value <= x") in O(log n).
class BoundIndex {
  readonly #values: number[];
  readonly #best: Bound[];
  readonly #ascending: boolean;

  // ascending: for `upper` (value <= x, latest time); else `after`/`before`
  // (value >= x, earliest time).
  constructor(bounds: Bound[], ascending: boolean) {
    this.#ascending = ascending;
    bounds.sort((a, b) => ascending ? a.value - b.value : b.value - a.value);
    this.#values = bounds.map((b) => b.value);
    this.#best = [];
    for (const bound of bounds) {
      const last = this.#best.at(-1);
      const better = last === undefined ||
        (ascending ? bound.time > last.time : bound.time < last.time);
      this.#best.push(better ? bound : last);
    }
  }

  // The best bound among those whose value is on the right side of x.
  query(x: number): Bound | undefined {
    // The number of leading values that qualify.
    let lo = 0, hi = this.#values.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      const ok = this.#ascending ? this.#values[mid] <= x : this.#values[mid] >= x;
      if (ok) lo = mid + 1;
      else hi = mid;
    }
    return lo === 0 ? undefined : this.#best[lo - 1];
  }
}

interface KeyFacts {
  /** Payloads written at a seqno by writes told "committed". */
  readonly told: Map<number, Set<string>>;
  /** Payloads reads returned at a seqno. */
  readonly read: Map<number, Set<string>>;
  readonly after: Bound[];
  readonly before: Bound[];
  readonly upper: Bound[];
  /** Writes that may have committed (told so, or unknown), by seqno. */
  readonly writers: Map<number, { data: string; entry: Entry }[]>;
}

interface Indexed {
  readonly after: BoundIndex;
  readonly before: BoundIndex;
  readonly upper: BoundIndex;
  /** The earliest invocation of a write of each seqno that may have committed. */
  readonly firstWriter: Map<number, Entry>;
}

const committedOk = (entry: Entry) =>
  entry.outcome.type === "ok" && entry.outcome.value === "committed";
const mismatchOk = (entry: Entry) =>
  entry.outcome.type === "ok" && entry.outcome.value === "mismatch";

/**
 * Projects every `casMany` of `entries` onto its keys (rules 1 to 4 of the
 * module comment) and returns what the per-key search needs, with the
 * violations found on the way.
 */
export function planMany(entries: readonly Entry[]): ManyPlan {
  const stats: ManyStats = {
    committed: 0,
    mismatched: 0,
    unknown: 0,
    failed: 0,
    mismatchOnOneKey: 0,
    settledCommitted: 0,
    settledNot: 0,
  };
  const projected = new Map<string, Entry[]>();
  const mustCommit = new Set<Entry>();
  const violations: ManyViolation[] = [];
  const many = entries.filter((e) => e.op.kind === "casMany");
  if (many.length === 0) return { projected, mustCommit, violations, stats };

  // Facts per key, from every operation but the unknown casMany (settled
  // below) and the mismatched ones (which wrote nothing).
  const facts = new Map<string, KeyFacts>();
  const factsOf = (key: string) => {
    let f = facts.get(key);
    if (f === undefined) {
      facts.set(
        key,
        f = {
          told: new Map(),
          read: new Map(),
          after: [],
          before: [],
          upper: [],
          writers: new Map(),
        },
      );
    }
    return f;
  };
  const add = <T>(map: Map<number, T[]>, seqno: number, item: T) => {
    const list = map.get(seqno);
    if (list === undefined) map.set(seqno, [item]);
    else list.push(item);
  };
  const addSet = (map: Map<number, Set<string>>, seqno: number, data: string) => {
    const set = map.get(seqno);
    if (set === undefined) map.set(seqno, new Set([data]));
    else set.add(data);
  };
  const write = (entry: Entry, key: string, seqno: number, data: string) => {
    const f = factsOf(key);
    if (entry.outcome.type === "unknown") {
      add(f.writers, seqno, { data, entry });
      return;
    }
    if (!committedOk(entry)) return;
    add(f.writers, seqno, { data, entry });
    addSet(f.told, seqno, data);
    f.after.push({ value: seqno, time: entry.ret, entry });
    f.before.push({ value: seqno - 1, time: entry.ret, entry });
    f.upper.push({ value: seqno - 1, time: entry.call, entry });
  };
  for (const entry of entries) {
    const { op, outcome } = entry;
    if (op.kind === "casMany") {
      if (outcome.type === "ok" && outcome.value === "committed") {
        for (const e of op.entries) write(entry, e.key, Number(e.seqno), e.data);
      }
      continue;
    }
    if (op.kind === "cas") {
      write(entry, entry.key, Number(op.seqno), op.data);
      continue;
    }
    if (outcome.type === "range" && op.kind === "truncate") {
      // The key was empty or its head below the seqno.
      factsOf(entry.key).upper.push({ value: Number(op.seqno) - 1, time: entry.call, entry });
      continue;
    }
    if (outcome.type !== "ok") continue;
    const f = factsOf(entry.key);
    if (op.kind === "truncate") {
      const seqno = Number(op.seqno);
      f.after.push({ value: seqno, time: entry.ret, entry });
      f.before.push({ value: seqno, time: entry.ret, entry });
      continue;
    }
    const versions = op.kind === "head"
      ? (outcome.value === undefined ? [] : [outcome.value as Version])
      : outcome.value as readonly Version[];
    for (const v of versions) addSet(f.read, Number(v.seqno), v.data);
    const top = versions.at(-1);
    if (top !== undefined) {
      f.after.push({ value: Number(top.seqno), time: entry.ret, entry });
      f.before.push({ value: Number(top.seqno), time: entry.ret, entry });
    }
    // The head itself: a head read, or a scan that stopped short of its limit
    // with something in it (it ran to the head).
    const whole = op.kind === "head" ||
      (top !== undefined && versions.length < ((op.kind === "scan" && op.limit) || Infinity));
    if (whole) {
      f.upper.push({ value: top === undefined ? -1 : Number(top.seqno), time: entry.call, entry });
    }
  }

  // Rule 3: settle the unknown casMany across keys.
  const dropped = new Set<Entry>();
  const surely = new Set<Entry>();
  for (const entry of many) {
    if (entry.op.kind !== "casMany" || entry.outcome.type !== "unknown") continue;
    let seen: string | undefined, other: string | undefined;
    for (const e of entry.op.entries) {
      const f = facts.get(e.key);
      const s = Number(e.seqno);
      for (const data of [...(f?.told.get(s) ?? []), ...(f?.read.get(s) ?? [])]) {
        if (data !== e.data) other ??= `${e.key} seqno ${s} holds ${JSON.stringify(data)}`;
      }
      if (f?.read.get(s)?.has(e.data)) seen ??= `a read of ${e.key} returned its seqno ${s}`;
    }
    if (seen !== undefined && other !== undefined) {
      violations.push({
        keys: keysOf(entry),
        reason: `indeterminate compareAndSetMany #${entry.id} applied to some keys only: ` +
          `${seen}, yet ${other}`,
        witness: [entry],
      });
      dropped.add(entry); // reported; the per-key search need not see it again
    } else if (seen !== undefined) {
      stats.settledCommitted++;
      surely.add(entry);
    } else if (other !== undefined) {
      stats.settledNot++;
      dropped.add(entry);
    }
  }
  // The unknown casMany that may have committed count as writers; those that
  // surely did are known writes from here on.
  for (const entry of many) {
    if (entry.op.kind !== "casMany" || entry.outcome.type !== "unknown" || dropped.has(entry)) {
      continue;
    }
    for (const e of entry.op.entries) write(entry, e.key, Number(e.seqno), e.data);
  }

  const indexed = new Map<string, Indexed>();
  for (const [key, f] of facts) {
    const firstWriter = new Map<number, Entry>();
    for (const [seqno, list] of f.writers) {
      // A write whose seqno holds another payload surely did not commit.
      const taken = [...(f.told.get(seqno) ?? []), ...(f.read.get(seqno) ?? [])];
      for (const { data, entry } of list) {
        if (taken.some((d) => d !== data)) continue;
        const first = firstWriter.get(seqno);
        if (first === undefined || entry.call < first.call) firstWriter.set(seqno, entry);
      }
    }
    indexed.set(key, {
      after: new BoundIndex(f.after, false),
      before: new BoundIndex(f.before, false),
      upper: new BoundIndex(f.upper, true),
      firstWriter,
    });
  }

  const project = (entry: Entry, key: string, seqno: bigint, data: string): Projected => {
    const part: Projected = { ...entry, key, op: { kind: "cas", seqno, data }, part: entry };
    let list = projected.get(key);
    if (list === undefined) projected.set(key, list = []);
    list.push(part);
    return part;
  };

  for (const entry of many) {
    if (entry.op.kind !== "casMany") continue;
    const { op, outcome } = entry;
    if (outcome.type === "fail") {
      stats.failed++;
      continue;
    }
    if (mismatchOk(entry)) {
      stats.mismatched++;
      // Rule 2: the entries whose condition may have failed inside the call.
      const open = op.entries.filter((e) => {
        const at = indexed.get(e.key);
        const s = Number(e.seqno);
        const reached = s === 0 || (at?.after.query(s - 1)?.time ?? Infinity) < entry.call;
        const writer = at?.firstWriter.get(s);
        const notPast = writer === undefined || writer.call >= entry.ret ||
          (at?.upper.query(s - 1)?.time ?? -Infinity) > entry.ret;
        return !(reached && notPast);
      });
      if (open.length === 0) {
        violations.push({
          keys: keysOf(entry),
          reason: `compareAndSetMany #${entry.id} was told "mismatch", but every entry's ` +
            `condition held throughout its call (each head was already seqno - 1 when it ` +
            `began, and no write of the seqno could have landed before it ended)`,
          witness: [entry, ...witnessesFor(entry, indexed)],
        });
      } else if (open.length === 1) {
        stats.mismatchOnOneKey++;
        project(entry, open[0].key, open[0].seqno, open[0].data);
      }
      continue;
    }
    if (outcome.type === "unknown") {
      stats.unknown++;
      if (dropped.has(entry)) continue;
    } else {
      stats.committed++;
    }
    const parts = op.entries.map((e) => project(entry, e.key, e.seqno, e.data));
    if (outcome.type === "unknown") {
      if (!surely.has(entry)) continue;
      for (const part of parts) mustCommit.add(part);
    }
    // Rule 4: one instant for all its keys.
    let lo: Bound | undefined, hi: Bound | undefined;
    for (const e of op.entries) {
      const at = indexed.get(e.key);
      const s = Number(e.seqno);
      const below = at?.upper.query(s - 1);
      if (
        below !== undefined && below.entry !== entry && (lo === undefined || below.time > lo.time)
      ) {
        lo = below;
      }
      const above = at?.before.query(s);
      if (above !== undefined && (hi === undefined || above.time < hi.time)) hi = above;
    }
    if (lo !== undefined && hi !== undefined && hi.time < lo.time) {
      violations.push({
        keys: keysOf(entry),
        reason: `compareAndSetMany #${entry.id} has no single instant: #${hi.entry.id} (on ` +
          `${hi.entry.key}) saw it applied and completed before #${lo.entry.id} (on ` +
          `${lo.entry.key}) was invoked and saw it not yet applied`,
        witness: [entry, hi.entry, lo.entry],
      });
    }
  }
  return { projected, mustCommit, violations, stats };
}

function keysOf(entry: Entry): string[] {
  return entry.op.kind === "casMany" ? entry.op.entries.map((e) => e.key) : [entry.key];
}

// The operations that pinned each entry's condition, for a report.
function witnessesFor(entry: Entry, indexed: ReadonlyMap<string, Indexed>): Entry[] {
  if (entry.op.kind !== "casMany") return [];
  const out: Entry[] = [];
  for (const e of entry.op.entries) {
    const bound = Number(e.seqno) > 0
      ? indexed.get(e.key)?.after.query(Number(e.seqno) - 1)
      : undefined;
    if (bound !== undefined && !out.includes(bound.entry)) out.push(bound.entry);
  }
  return out;
}

/** A row of the table after a run: a version (seqno >= 0) of a key. */
export interface DurableRow {
  readonly key: string;
  readonly seqno: bigint;
  readonly data: string;
}

/**
 * Rule 5 of the module comment: checks every `casMany` of `entries` against
 * the table's final rows (pass versions only: rows below seqno 0 are the
 * store's own).
 *
 * @returns One violation per operation that breaks it.
 */
export function checkManyDurable(
  entries: readonly Entry[],
  rows: readonly DurableRow[],
): ManyViolation[] {
  const logs = new Map<string, Map<bigint, string>>();
  const low = new Map<string, bigint>();
  const where = new Map<string, string[]>(); // payload -> "key seqno"
  for (const row of rows) {
    if (row.seqno < 0n) continue;
    let log = logs.get(row.key);
    if (log === undefined) logs.set(row.key, log = new Map());
    log.set(row.seqno, row.data);
    const l = low.get(row.key);
    if (l === undefined || row.seqno < l) low.set(row.key, row.seqno);
    const list = where.get(row.data);
    if (list === undefined) where.set(row.data, [`${row.key} seqno ${row.seqno}`]);
    else list.push(`${row.key} seqno ${row.seqno}`);
  }
  const violations: ManyViolation[] = [];
  for (const entry of entries) {
    if (entry.op.kind !== "casMany") continue;
    const keys = entry.op.entries.map((e) => e.key);
    const wrote = !(mismatchOk(entry) || entry.outcome.type === "fail");
    if (!wrote) {
      for (const e of entry.op.entries) {
        const found = where.get(e.data);
        if (found !== undefined) {
          violations.push({
            keys,
            reason: `compareAndSetMany #${entry.id} ended in ${
              entry.outcome.type === "fail" ? "a determinate failure" : '"mismatch"'
            }, yet its payload ${JSON.stringify(e.data)} is in the table at ${found.join(", ")}`,
            witness: [entry],
          });
          break;
        }
      }
      continue;
    }
    const present: string[] = [], absent: string[] = [];
    for (const e of entry.op.entries) {
      const data = logs.get(e.key)?.get(e.seqno);
      if (data === e.data) present.push(e.key);
      else if (data === undefined && logs.has(e.key) && e.seqno < low.get(e.key)!) continue;
      else {absent.push(
          `${e.key} seqno ${e.seqno} (${data === undefined ? "no row" : "another payload"})`,
        );}
    }
    if (committedOk(entry) && absent.length > 0) {
      violations.push({
        keys,
        reason: `compareAndSetMany #${entry.id} was told "committed", but the table lacks ` +
          `${absent.join(", ")}`,
        witness: [entry],
      });
    } else if (present.length > 0 && absent.length > 0) {
      violations.push({
        keys,
        reason: `indeterminate compareAndSetMany #${entry.id} is in the table on ` +
          `${present.join(", ")} only: it lacks ${absent.join(", ")}`,
        witness: [entry],
      });
    }
  }
  return violations;
}
