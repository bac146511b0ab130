/**
 * A linearizability checker for the {@linkcode Consensus} model, after Wing &
 * Gong's search as improved by Lowe and used by Porcupine (re-implemented
 * here from the papers' description).
 *
 * The model, per key: a log of versions, contiguous from a low watermark to
 * the head. `compareAndSet(s, d)` appends iff the head is `s - 1` (no head
 * counts as `-1`); `head` returns the last version; `scan(from, limit)` the
 * versions from `max(from, low)`; `truncate(s)` raises the low watermark to
 * `s` and returns how many versions that removed, or is a `RangeError` when
 * the key is empty or `s` is above the head.
 *
 * How it decides:
 * 1. P-compositionality: a history of single-key operations is
 *    linearizable iff each key's sub-history is, so keys are checked one by
 *    one.
 * 2. Facts the model gives for free are used first: a seqno is committed at
 *    most once (heads only grow, so `s - 1` is the head only once), so two
 *    "committed" answers for one seqno, or a read of a version no write
 *    produced, are violations at once. An indeterminate write whose payload
 *    a read returned surely committed; one whose seqno another write
 *    surely committed surely did not, and is dropped. Determinate failures
 *    and indeterminate reads have no effect and are dropped too.
 * 3. The rest is the search: invocations and completions sorted by time in a
 *    linked list; repeatedly the earliest pending invocation whose effect
 *    the model allows is linearized (taken out of the list) and the search
 *    moves on; reaching a completion whose operation is still pending means
 *    the last choice was wrong, and it is undone. Each (set of linearized
 *    operations, model state) pair is tried once (memoised). Operations with
 *    an unknown outcome complete at +Infinity, so they may take effect at
 *    any point after their invocation, or, linearized after everything else,
 *    in effect never.
 *
 * Compare-and-sets of several keys are projected onto their keys before the
 * search, and checked across keys before and after it; what that proves and
 * what it does not is beside the code, in `torture/multi_key.ts`. With them,
 * P-compositionality no longer suffices: once every key passes, one order
 * over all keys is sought from the keys' linearizations
 * (`torture/global_order.ts`).
 *
 * The memo keys hash the linearized set (64-bit Zobrist) and the log's
 * contents (64-bit chain hash). A hash collision can only prune a branch,
 * so it could only turn a linearizable verdict into a false violation,
 * never hide one; every violation is therefore re-checked with exact keys
 * (when the key's history is small enough to afford it).
 *
 * @module
 */
import type { Entry, Version } from "./history.ts";
import { checkGlobalOrder, type KeyOrder, type OrderedOp } from "./global_order.ts";
import { isProjected, type ManyStats, planMany } from "./multi_key.ts";

/** Bounds on the search. */
export interface CheckOptions {
  /** Search steps per key before giving up with `"unknown"`. @default {20_000_000} */
  maxSteps?: number;
  /** Wall-clock budget for the whole check, in milliseconds. @default {60_000} */
  timeoutMs?: number;
  /** Memo keys without hashing (slower, for small histories). @default {false} */
  exact?: boolean;
}

/** The verdict on one key. */
export interface KeyVerdict {
  /** The key; for a verdict on a compareAndSetMany, its keys joined by "+". */
  readonly key: string;
  /** For a verdict on a compareAndSetMany: every key it touches. */
  readonly keys?: readonly string[];
  /** `"unknown"`: the search ran out of budget (too hard, not a verdict). */
  readonly status: "ok" | "violation" | "unknown";
  /** Operations in the key's history, before any were dropped. */
  readonly ops: number;
  /** Operations the search had to place. */
  readonly searched: number;
  readonly steps: number;
  /** Why it is a violation, or why the search gave up. */
  readonly reason?: string;
  /** Operations involved in the violation. */
  readonly witness?: readonly Entry[];
}

/** The verdict on a history. */
export interface CheckResult {
  readonly status: "ok" | "violation" | "unknown";
  readonly ops: number;
  readonly keys: readonly KeyVerdict[];
  /** What was done with the compare-and-sets of several keys. */
  readonly many: ManyStats;
  readonly elapsedMs: number;
}

/**
 * Decides whether `entries` is linearizable.
 *
 * @param entries A recorded history (any order).
 * @param options Search bounds.
 * @returns The verdict, per key and overall (`"violation"` beats `"unknown"`).
 */
export function checkHistory(entries: readonly Entry[], options: CheckOptions = {}): CheckResult {
  const started = performance.now();
  const deadline = started + (options.timeoutMs ?? 60_000);
  const plan = planMany(entries);
  const byKey = new Map<string, Entry[]>();
  const file = (key: string, entry: Entry) => {
    let list = byKey.get(key);
    if (list === undefined) byKey.set(key, list = []);
    list.push(entry);
  };
  for (const entry of entries) if (entry.op.kind !== "casMany") file(entry.key, entry);
  for (const [key, parts] of plan.projected) for (const part of parts) file(key, part);
  const keys: KeyVerdict[] = [];
  // Each key's linearization, for the check of one order over all keys;
  // only needed when some operation spans keys (otherwise P-compositionality
  // is the whole proof).
  const orders: KeyOrder[] | undefined = plan.projected.size > 0 ? [] : undefined;
  for (const [key, list] of byKey) {
    let verdict = checkKey(key, list, options, deadline, plan.mustCommit, orders);
    if (verdict.status === "violation" && !options.exact && verdict.searched <= 4_000) {
      // Rule out a hash collision before calling it a violation.
      const exact = checkKey(
        key,
        list,
        { ...options, exact: true },
        Infinity,
        plan.mustCommit,
        orders,
      );
      if (exact.status !== "violation") verdict = exact;
    }
    keys.push(verdict);
  }
  for (const violation of plan.violations) {
    keys.push({
      key: violation.keys.join("+"),
      keys: violation.keys,
      status: "violation",
      ops: violation.witness.length,
      searched: 0,
      steps: 0,
      reason: violation.reason,
      witness: violation.witness,
    });
  }
  if (orders !== undefined && keys.every((k) => k.status === "ok")) {
    const settled = settleSplitMany(orders, byKey, plan.mustCommit, options, deadline);
    // Mismatches no key's search placed (two or more keys could explain them).
    const placed = new Set<Entry>();
    for (const parts of plan.projected.values()) {
      for (const part of parts) if (isProjected(part)) placed.add(part.part);
    }
    const mismatches = entries.filter((e) =>
      e.op.kind === "casMany" && e.outcome.type === "ok" && e.outcome.value === "mismatch" &&
      !placed.has(e)
    );
    keys.push(checkGlobalOrder(settled, entries.length, mismatches));
  }
  const status = keys.some((k) => k.status === "violation")
    ? "violation"
    : keys.some((k) => k.status === "unknown")
    ? "unknown"
    : "ok";
  return {
    status,
    ops: entries.length,
    keys,
    many: plan.stats,
    elapsedMs: performance.now() - started,
  };
}

// An unknown compareAndSetMany that the per-key searches applied on some of
// its keys and not on others has no single point; each key decided alone,
// by where its search happened to need it. Decide it jointly: search its
// keys again with it committed on all of them, or else left out of all of
// them (an operation whose outcome is unknown may be taken as never run).
// Either is a real choice of outcome, so the orders returned stay sound; a
// call neither fits is left split, and the global check says "unknown".
function settleSplitMany(
  orders: readonly KeyOrder[],
  byKey: Map<string, Entry[]>,
  mustCommit: ReadonlySet<Entry>,
  options: CheckOptions,
  deadline: number,
): KeyOrder[] {
  const split = new Map<Entry, { yes: boolean; no: boolean }>();
  for (const { ops } of orders) {
    for (const op of ops) {
      if (op.entry.op.kind !== "casMany" || op.entry.outcome.type !== "unknown") continue;
      let seen = split.get(op.entry);
      if (seen === undefined) split.set(op.entry, seen = { yes: false, no: false });
      if (op.changes) seen.yes = true;
      else seen.no = true;
    }
  }
  const calls = [...split].filter(([, seen]) => seen.yes && seen.no).map(([entry]) => entry);
  if (calls.length === 0) return [...orders];
  const byOrderKey = new Map(orders.map((o) => [o.key, o]));
  const forced = new Set(mustCommit);
  for (const call of calls) {
    const keys = [...new Set(keysOfMany(call))].filter((k) => byKey.has(k));
    const partOf = (e: Entry) => isProjected(e) && e.part === call;
    const attempt = (lists: Map<string, Entry[]>, force: Set<Entry>) => {
      const out: KeyOrder[] = [];
      for (const key of keys) {
        if (checkKey(key, lists.get(key)!, options, deadline, force, out).status !== "ok") {
          return undefined;
        }
      }
      return out;
    };
    const parts = keys.flatMap((k) => byKey.get(k)!.filter(partOf));
    const withIt = new Set([...forced, ...parts]);
    let out = attempt(byKey, withIt);
    if (out !== undefined) {
      for (const part of parts) forced.add(part);
    } else {
      const without = new Map(keys.map((k) => [k, byKey.get(k)!.filter((e) => !partOf(e))]));
      out = attempt(without, forced);
      if (out !== undefined) { for (const [k, list] of without) byKey.set(k, list); }
    }
    for (const order of out ?? []) byOrderKey.set(order.key, order);
  }
  return [...byOrderKey.values()];
}

function keysOfMany(entry: Entry): string[] {
  return entry.op.kind === "casMany" ? entry.op.entries.map((e) => e.key) : [entry.key];
}

// Operation kinds, as small integers for the hot loop.
const HEAD = 0, CAS = 1, SCAN = 2, TRUNCATE = 3;
// What the operation's outcome requires of the model.
const OK = 0, MISMATCH = 1, RANGE = 2, UNKNOWN = 3;

interface Prepared {
  readonly entry: Entry;
  readonly kind: number;
  readonly expect: number;
  /** Never changes the state, wherever it is placed. */
  readonly pure: boolean;
  /** cas/truncate seqno, scan from. */
  readonly seqno: number;
  /** cas payload id. */
  readonly data: number;
  readonly limit: number;
  /** head: seqno read (-1 for none) and payload id; truncate: count. */
  readonly readSeqno: number;
  readonly readData: number;
  /** scan: versions read. */
  readonly versions: readonly { seqno: number; data: number }[];
}

interface Chain {
  readonly seqno: number;
  readonly data: number;
  readonly prev: Chain | null;
}

interface State {
  readonly head: number;
  readonly low: number;
  readonly chain: Chain | null;
  readonly h1: number;
  readonly h2: number;
}

const EMPTY: State = { head: -1, low: 0, chain: null, h1: 0, h2: 0 };

function append(state: State, seqno: number, data: number): State {
  return {
    head: seqno,
    low: state.low,
    chain: { seqno, data, prev: state.chain },
    h1: Math.imul(state.h1 ^ data, 0x01000193) ^ (seqno * 0x9e3779b1),
    h2: Math.imul((state.h2 + data) | 0, 0x5bd1e995) ^ Math.imul(seqno + 1, 0x85ebca6b),
  };
}

// The model: the state after `op` when its recorded outcome is possible in
// `state`, otherwise null.
function step(state: State, op: Prepared): State | null {
  switch (op.kind) {
    case CAS: {
      const applies = state.head === op.seqno - 1;
      if (op.expect === OK) return applies ? append(state, op.seqno, op.data) : null;
      if (op.expect === MISMATCH) return applies ? null : state;
      return applies ? append(state, op.seqno, op.data) : state; // UNKNOWN
    }
    case HEAD:
      if (op.readSeqno !== state.head) return null;
      if (state.head === -1) return state;
      return state.chain!.data === op.readData ? state : null;
    case SCAN: {
      if (state.head === -1) return op.versions.length === 0 ? state : null;
      const start = Math.max(op.seqno, state.low);
      const count = Math.max(0, Math.min(op.limit, state.head - start + 1));
      if (op.versions.length !== count) return null;
      if (count === 0) return state;
      // Walk down from the head to the last version returned, then compare.
      let node = state.chain;
      while (node !== null && node.seqno > start + count - 1) node = node.prev;
      for (let i = count - 1; i >= 0; i--) {
        const v = op.versions[i];
        if (node === null || v.seqno !== start + i || node.data !== v.data) return null;
        node = node.prev;
      }
      return state;
    }
    default: { // TRUNCATE
      const valid = state.head !== -1 && op.seqno <= state.head;
      if (op.expect === RANGE) return valid ? null : state;
      if (!valid) return op.expect === UNKNOWN ? state : null;
      const count = Math.max(0, op.seqno - state.low);
      if (op.expect === OK && count !== op.readSeqno) return null;
      return count === 0 ? state : { ...state, low: op.seqno };
    }
  }
}

function exactStateKey(state: State): string {
  const parts: number[] = [];
  for (let node = state.chain; node !== null && node.seqno >= state.low; node = node.prev) {
    parts.push(node.data);
  }
  return `${state.head}:${state.low}:${parts.join(",")}`;
}

function describe(entry: Entry): string {
  const { op, outcome } = entry;
  const args = op.kind === "cas"
    ? `(${op.seqno}, ${JSON.stringify(op.data)})${
      isProjected(entry) ? ` [on ${entry.key}, part of compareAndSetMany #${entry.id}]` : ""
    }`
    : op.kind === "casMany"
    ? `(${op.entries.map((e) => `${e.key}@${e.seqno} ${JSON.stringify(e.data)}`).join(", ")})`
    : op.kind === "scan"
    ? `(from ${op.from}${op.limit === undefined ? "" : `, limit ${op.limit}`})`
    : op.kind === "truncate"
    ? `(${op.seqno})`
    : "()";
  const show = (value: unknown): string =>
    JSON.stringify(value, (_, v) => typeof v === "bigint" ? Number(v) : v) ?? "undefined";
  const result = outcome.type === "ok" ? show(outcome.value) : outcome.type;
  const ret = entry.ret === Infinity ? "?" : entry.ret.toFixed(3);
  return `#${entry.id} p${entry.process} ${op.kind}${args} -> ${result} [${
    entry.call.toFixed(3)
  }, ${ret}]`;
}

/** One line per entry, for violation reports. */
export function describeEntries(entries: readonly Entry[]): string {
  return entries.map(describe).join("\n");
}

function checkKey(
  key: string,
  entries: readonly Entry[],
  options: CheckOptions,
  deadline: number,
  forced: ReadonlySet<Entry> = new Set(),
  orders?: KeyOrder[],
): KeyVerdict {
  const ops = entries.length;
  const violation = (reason: string, witness: Entry[]): KeyVerdict => ({
    key,
    status: "violation",
    ops,
    searched: 0,
    steps: 0,
    reason,
    witness,
  });

  // Payloads as small integers.
  const ids = new Map<string, number>();
  const intern = (data: string) => {
    let id = ids.get(data);
    if (id === undefined) ids.set(data, id = ids.size);
    return id;
  };

  // The shortcut facts (see the module comment).
  const committed = new Map<number, Entry>();
  const writers = new Map<string, Entry[]>(); // "seqno:data" -> writes that may have produced it
  for (const entry of entries) {
    const { op, outcome } = entry;
    if (op.kind !== "cas" || outcome.type === "fail" || outcome.type === "range") continue;
    if (outcome.type === "ok" && outcome.value === "mismatch") continue;
    const seqno = Number(op.seqno);
    if (outcome.type === "ok") {
      const other = committed.get(seqno);
      if (other !== undefined) {
        return violation(`two compare-and-sets were told seqno ${seqno} committed`, [
          other,
          entry,
        ]);
      }
      committed.set(seqno, entry);
    }
    const tag = `${seqno}:${op.data}`;
    const list = writers.get(tag);
    if (list === undefined) writers.set(tag, [entry]);
    else list.push(entry);
  }
  const mustCommit = new Set<Entry>();
  for (const entry of entries) {
    const { op, outcome } = entry;
    if (outcome.type !== "ok" || (op.kind !== "head" && op.kind !== "scan")) continue;
    const read = op.kind === "head"
      ? (outcome.value === undefined ? [] : [outcome.value as Version])
      : outcome.value as readonly Version[];
    for (const version of read) {
      const list = writers.get(`${Number(version.seqno)}:${version.data}`);
      if (list === undefined) {
        return violation(
          `a read returned seqno ${version.seqno} with a payload no write of that seqno ` +
            `may have produced (${JSON.stringify(version.data)})`,
          [entry],
        );
      }
      // Payloads are unique per write in the workloads; when two writes
      // share one, the search decides which of them landed.
      if (list.length !== 1) continue;
      const writer = list[0];
      const other = committed.get(Number(version.seqno));
      if (other !== undefined && other !== writer) {
        return violation(
          `a read returned seqno ${version.seqno} with a payload other than the committed one`,
          [other, writer, entry],
        );
      }
      if (writer.outcome.type === "unknown") mustCommit.add(writer);
      committed.set(Number(version.seqno), writer);
    }
  }
  // Unknown parts of a compareAndSetMany that a read of another key showed
  // committed (torture/multi_key.ts, rule 3).
  for (const entry of entries) {
    if (!forced.has(entry) || entry.op.kind !== "cas") continue;
    const seqno = Number(entry.op.seqno);
    const other = committed.get(seqno);
    if (other !== undefined && other !== entry) {
      return violation(
        `seqno ${seqno} was committed by another write, yet a read of another key shows ` +
          `compareAndSetMany #${entry.id} committed`,
        [other, entry],
      );
    }
    mustCommit.add(entry);
    committed.set(seqno, entry);
  }

  // The operations the search must place.
  const prepared: Prepared[] = [];
  for (const entry of entries) {
    const { op, outcome } = entry;
    if (outcome.type === "fail") continue;
    const known = outcome.type === "ok";
    if (!known && outcome.type === "unknown" && (op.kind === "head" || op.kind === "scan")) {
      continue;
    }
    const base = {
      entry,
      seqno: 0,
      data: -1,
      limit: Infinity,
      readSeqno: -1,
      readData: -1,
      versions: [] as { seqno: number; data: number }[],
    };
    switch (op.kind) {
      case "cas": {
        const seqno = Number(op.seqno);
        let expect = known ? (outcome.value === "committed" ? OK : MISMATCH) : UNKNOWN;
        if (expect === UNKNOWN) {
          if (mustCommit.has(entry)) expect = OK;
          else if (committed.has(seqno)) continue; // another write surely took this seqno
        }
        const data = intern(op.data);
        prepared.push({ ...base, kind: CAS, expect, pure: expect === MISMATCH, seqno, data });
        break;
      }
      case "head": {
        const value = outcome.type === "ok" ? outcome.value as Version | undefined : undefined;
        prepared.push({
          ...base,
          kind: HEAD,
          expect: OK,
          pure: true,
          readSeqno: value === undefined ? -1 : Number(value.seqno),
          readData: value === undefined ? -1 : intern(value.data),
        });
        break;
      }
      case "scan": {
        const value = outcome.type === "ok" ? outcome.value as readonly Version[] : [];
        prepared.push({
          ...base,
          kind: SCAN,
          expect: OK,
          pure: true,
          seqno: Number(op.from),
          limit: op.limit ?? Infinity,
          versions: value.map((v) => ({ seqno: Number(v.seqno), data: intern(v.data) })),
        });
        break;
      }
      case "truncate":
        {
          const expect = outcome.type === "ok" ? OK : outcome.type === "range" ? RANGE : UNKNOWN;
          const count = outcome.type === "ok" ? outcome.value as number : -1;
          prepared.push({
            ...base,
            kind: TRUNCATE,
            expect,
            pure: expect === RANGE || count === 0,
            seqno: Number(op.seqno),
            readSeqno: count,
          });
        }
        break;
    }
  }

  if (orders === undefined) return search(key, ops, prepared, options, deadline);
  const out: { order?: Placed[]; final?: State } = {};
  const verdict = search(key, ops, prepared, options, deadline, out);
  if (out.order !== undefined) orders.push(keyOrder(key, out.order, out.final!));
  return verdict;
}

// The key's linearization as torture/global_order.ts needs it. Writes and
// truncates change different parts of the state (the head and its log; the
// low watermark), and a write never depends on the low watermark, so they
// form two chains: the writes, in seqno order, and the truncates that raised
// the low watermark, in the order of their seqnos, each after the write of
// its seqno (it needed the head there). Every other operation gets the
// range of write segments in which it is legal (segment j lies after the
// j-th write), widened from where the search put it by replaying the model,
// and, when it depends on the low watermark (a scan, a truncate that removed
// nothing), the truncate segment the search put it in. Widening stops where
// real time forbids going on anyway (a write that completed before the
// operation was invoked, or was invoked after it completed), so its cost is
// the writes that overlap the operation. A narrower range would only be a
// stronger constraint: it can cost completeness, never soundness.
function keyOrder(key: string, order: readonly Placed[], final: State): KeyOrder {
  const writes: State[] = [EMPTY];
  const writers: Entry[] = [];
  const lows: number[] = [0];
  const writeOf = new Map<number, number>(); // seqno -> place among the writes
  const ops: OrderedOp[] = [];
  const pure: { at: number; op: Prepared; t: number }[] = [];
  for (let i = 0; i < order.length; i++) {
    const { op, before } = order[i];
    const after = i + 1 < order.length ? order[i + 1].before : final;
    const entry = isProjected(op.entry) ? op.entry.part : op.entry;
    if (after !== before && op.kind === CAS) {
      writes.push(after);
      writers.push(entry);
      writeOf.set(op.seqno, writes.length - 1);
      ops.push({
        entry,
        changes: true,
        lo: writes.length - 1,
        hi: writes.length - 1,
        write: op.expect === OK && op.entry.outcome.type === "ok" ? op.seqno : undefined,
        seqno: op.seqno,
      });
    } else if (after !== before) {
      lows.push(after.low);
      ops.push({
        entry,
        changes: true,
        lo: 0,
        hi: 0,
        truncate: lows.length - 1,
        follows: writeOf.get(op.seqno),
      });
    } else {
      pure.push({ at: ops.length, op, t: lows.length - 1 });
      ops.push({ entry, changes: false, lo: writes.length - 1, hi: writes.length - 1 });
    }
  }
  const last = writes.length - 1;
  for (const { at, op, t } of pure) {
    const placed = ops[at];
    if (op.kind === CAS && op.expect === UNKNOWN) {
      // An unknown write that took no effect fits anywhere after its call.
      ops[at] = { ...placed, lo: 0, hi: last };
      continue;
    }
    // Heads, mismatches and RangeErrors read the head alone.
    const low = op.kind === SCAN || (op.kind === TRUNCATE && op.expect !== RANGE);
    const at_ = (j: number): State => low ? { ...writes[j], low: lows[t] } : writes[j];
    const { call, ret } = op.entry;
    let lo = placed.lo, hi = placed.hi;
    // Segment lo - 1 is before write lo; segment hi + 1 after write hi + 1.
    while (lo > 0 && writers[lo - 1].ret >= call && step(at_(lo - 1), op) !== null) lo--;
    while (hi < last && writers[hi].call <= ret && step(at_(hi + 1), op) !== null) hi++;
    const read = op.kind === HEAD
      ? { top: op.readSeqno, whole: true }
      : op.kind === SCAN && op.versions.length > 0
      ? { top: op.versions.at(-1)!.seqno, whole: op.versions.length < op.limit }
      : undefined;
    ops[at] = { ...placed, lo, hi, read, truncate: low ? t : undefined };
  }
  return { key, ops, writes: writes.length - 1, truncates: lows.length - 1 };
}

interface Node {
  readonly op: number; // index into prepared
  readonly call: boolean;
  match: Node | null; // a call's completion
  prev: Node | null;
  next: Node | null;
}

/** What a successful search placed, in order, and the state before each. */
interface Placed {
  readonly op: Prepared;
  readonly before: State;
}

function search(
  key: string,
  ops: number,
  prepared: readonly Prepared[],
  options: CheckOptions,
  deadline: number,
  out?: { order?: Placed[]; final?: State },
): KeyVerdict {
  const n = prepared.length;
  const maxSteps = options.maxSteps ?? 20_000_000;
  const exact = options.exact ?? false;

  // Invocations and completions in time order; at equal times invocations
  // first, which only widens the overlap (never a false violation).
  const events: { time: number; node: Node }[] = [];
  for (let i = 0; i < n; i++) {
    const call: Node = { op: i, call: true, match: null, prev: null, next: null };
    const ret: Node = { op: i, call: false, match: null, prev: null, next: null };
    call.match = ret;
    events.push({ time: prepared[i].entry.call, node: call });
    events.push({ time: prepared[i].entry.ret, node: ret });
  }
  events.sort((a, b) =>
    a.time - b.time || (a.node.call === b.node.call ? 0 : a.node.call ? -1 : 1) ||
    a.node.op - b.node.op
  );
  const root: Node = { op: -1, call: false, match: null, prev: null, next: null };
  let last = root;
  for (const { node } of events) {
    last.next = node;
    node.prev = last;
    last = node;
  }

  // Zobrist keys of the linearized set (deterministic, so runs repeat).
  let seed = 0x2545f491;
  const random = () => {
    seed ^= seed << 13;
    seed ^= seed >>> 17;
    seed ^= seed << 5;
    return seed >>> 0;
  };
  const z1 = new Uint32Array(n), z2 = new Uint32Array(n);
  for (let i = 0; i < n; i++) {
    z1[i] = random();
    z2[i] = random();
  }
  const bits = exact ? new Uint32Array((n >>> 5) + 1) : new Uint32Array(0);

  const seen = new Set<string>();
  const stack: { node: Node; state: State; pure: boolean; phase: number }[] = [];
  let state = EMPTY;
  let lin1 = 0, lin2 = 0;
  let steps = 0;
  let deepest = -1;
  let blocked: Node | null = null;
  let blockedPath: number[] = [];
  let blockedState = EMPTY;

  const memoKey = (i: number, next: State): string => {
    if (!exact) {
      return `${lin1 ^ z1[i]}:${lin2 ^ z2[i]}|${next.head}:${next.low}:${next.h1}:${next.h2}`;
    }
    bits[i >>> 5] ^= 1 << (i & 31);
    const key = `${bits.join(",")}|${exactStateKey(next)}`;
    bits[i >>> 5] ^= 1 << (i & 31);
    return key;
  };
  const place = (node: Node, next: State, pure: boolean, phase: number) => {
    const i = node.op;
    stack.push({ node, state, pure, phase });
    state = next;
    lin1 ^= z1[i];
    lin2 ^= z2[i];
    if (exact) bits[i >>> 5] ^= 1 << (i & 31);
    // Lift the call and its completion out of the list.
    const ret = node.match!;
    node.prev!.next = node.next;
    node.next!.prev = node.prev;
    ret.prev!.next = ret.next;
    if (ret.next !== null) ret.next.prev = ret.prev;
  };
  // Undoes placements back to the last free choice (see `pure`); returns it,
  // or null when there is none left: the history is not linearizable.
  const backtrack = (): { node: Node; phase: number } | null => {
    for (;;) {
      const top = stack.pop();
      if (top === undefined) return null;
      const i = top.node.op;
      state = top.state;
      lin1 ^= z1[i];
      lin2 ^= z2[i];
      if (exact) bits[i >>> 5] ^= 1 << (i & 31);
      // Put the completion back, then the call.
      const call = top.node, ret = call.match!;
      ret.prev!.next = ret;
      if (ret.next !== null) ret.next.prev = ret;
      call.prev!.next = call;
      call.next!.prev = call;
      if (!top.pure) return top;
    }
  };
  const notLinearizable = (): KeyVerdict => {
    const path = blockedPath.map((i) => prepared[i].entry);
    if (blocked === null) {
      return { key, status: "violation", ops, searched: n, steps, reason: "not linearizable" };
    }
    const op = prepared[blocked.op].entry;
    return {
      key,
      status: "violation",
      ops,
      searched: n,
      steps,
      reason: `not linearizable: after placing ${deepest} of ${n} operations (head ` +
        `${blockedState.head}, low ${blockedState.low}), #${op.id} could not be placed ` +
        `before it completed; the last operations placed were:\n${describeEntries(path)}`,
      witness: [...path, op],
    };
  };
  const noteBlocked = (node: Node) => {
    if (stack.length > deepest) {
      deepest = stack.length;
      blocked = node;
      blockedPath = stack.slice(-8).map((s) => s.node.op);
      blockedState = state;
    }
  };

  // An operation that can never change the state from here on: a pure one
  // that fits now, an unknown write of a seqno at or below the head (heads
  // only grow, so it can no longer commit), an unknown truncate at or below
  // the low watermark (which only grows).
  const inert = (op: Prepared): boolean => {
    if (op.pure) return step(state, op) !== null;
    if (op.expect !== UNKNOWN) return false;
    return op.kind === CAS ? state.head >= op.seqno : state.head >= 0 && op.seqno <= state.low;
  };

  // `fresh`: the cursor is back at the start of the list after a placement.
  // `phase`: candidates are tried known operations first (0), then unknown
  // ones (1), which may take effect any time and are best placed late.
  let fresh = true;
  let phase = 0;
  let node = root.next;
  const resume = (back: { node: Node; phase: number }) => {
    node = back.node.next;
    phase = back.phase;
  };
  search: while (root.next !== null) {
    if (++steps > maxSteps || ((steps & 0xffff) === 0 && performance.now() > deadline)) {
      return {
        key,
        status: "unknown",
        ops,
        searched: n,
        steps,
        reason: `search budget spent after ${steps} steps (${stack.length} of ${n} placed)`,
      };
    }
    if (fresh) {
      // Partial-order reduction: an inert operation (see above) is placed
      // now, without a choice point. Any linearization that places it later
      // can move it here: it is invoked before every pending completion, and
      // it changes nothing, here or later. So if placing it now fails, this
      // whole configuration fails.
      fresh = false;
      for (let c: Node | null = root.next; c !== null && c.call; c = c.next) {
        if (!inert(prepared[c.op])) continue;
        const memo = memoKey(c.op, state);
        if (seen.has(memo)) {
          const back = backtrack();
          if (back === null) return notLinearizable();
          resume(back);
          continue search;
        }
        seen.add(memo);
        place(c, state, true, 0);
        fresh = true;
        continue search;
      }
      node = root.next;
      phase = 0;
    }
    if (node === null) throw new Error("unreachable: ran off the event list");
    if (node.call) {
      const op = prepared[node.op];
      // Pure operations that fit were placed by the pass above.
      const eligible = !op.pure && (op.expect === UNKNOWN) === (phase === 1);
      const next = eligible ? step(state, op) : null;
      if (next !== null) {
        const memo = memoKey(node.op, next);
        if (!seen.has(memo)) {
          seen.add(memo);
          place(node, next, false, phase);
          fresh = true;
          continue;
        }
      }
      node = node.next;
    } else if (phase === 0) {
      phase = 1;
      node = root.next;
    } else {
      // A completion whose operation is not placed yet: undo the last choice.
      noteBlocked(node);
      const back = backtrack();
      if (back === null) return notLinearizable();
      resume(back);
    }
  }
  if (out !== undefined) {
    out.order = stack.map((s) => ({ op: prepared[s.node.op], before: s.state }));
    out.final = state;
  }
  return { key, status: "ok", ops, searched: n, steps };
}
