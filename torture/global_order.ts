/**
 * One order over every key: the check that turns per-key linearizability
 * into linearizability of the whole history once compare-and-sets of
 * several keys (`casMany`) are in it.
 *
 * Without multi-key operations, P-compositionality makes the per-key checks
 * the whole proof. With them it does not: a `casMany` is one instant in the
 * order of each of its keys, and two keys' orders can each be fine while no
 * single order of all operations holds both (two transfers applied in
 * opposite orders on two keys; a reader that sees one key written and,
 * strictly later, another key not yet).
 *
 * ## How it decides
 *
 * The per-key search (`torture/checker.ts`) hands over, for every key, the
 * linearization it found, as two chains of the operations that changed the
 * key's state: its writes in order (they change the head and its log), and
 * its truncates that raised the low watermark in order (they change that
 * alone; a write never depends on it), each truncate after the write of its
 * seqno (it needed the head there). For every other operation: the range of
 * write segments (segment j lies after the j-th write) in which it is legal,
 * widened from the one the search chose by replaying the model there, and,
 * when it depends on the low watermark (a scan, a truncate that removed
 * nothing), the truncate segment the search put it in.
 *
 * One graph over every operation (a `casMany` is ONE node on all its keys):
 * - real time: A precedes B when A completed before B was invoked (through
 *   a chain of nodes, one per completion time, so the edges stay linear);
 * - per key, each write precedes the next, each truncate the next, and the
 *   write of a truncate's seqno precedes it;
 * - per key, an operation that changes nothing sits after the write that
 *   opens its range of segments and before the one that closes it (and
 *   likewise between two truncates when it depends on the low watermark).
 *
 * **Acyclic: linearizable.** Take any topological order T. On each key, T
 * keeps the writes in the search's order, so the head and log before each
 * write are what the search had, and every write is legal; it keeps the
 * truncates in the search's order, each after the write of its seqno, so
 * each finds the head at or past its seqno and the low watermark the search
 * had, and removes what it said. Every other operation lies in its range of
 * write segments (and in its truncate segment when it reads the low
 * watermark), where replaying the model showed it legal, and changes
 * nothing, so the order among those is free. T respects real time by its
 * edges, and places each `casMany` at one point for all its keys. So T is a legal
 * sequential history of the whole store that respects real time. Operations
 * with an unknown outcome that took no effect are left out (a pending
 * operation may be taken as never having happened). An unknown `casMany`
 * that took effect on some of its keys and not on others has no single
 * point: `torture/checker.ts` first searches its keys again with it
 * committed on all, else left out of all; one that fits neither stays split,
 * and the verdict is "unknown".
 *
 * **Cyclic: a violation, or undecided.** The search chose one of possibly
 * many linearizations per key, so a cycle through its choices may be an
 * artefact. The graph is checked again with the precedences every
 * linearization shares: real time, the order of the writes told
 * "committed" (by seqno: heads only grow, one seqno per write), and every
 * read after the write it returned and, when it read the head (a head read,
 * or a scan shorter than its limit), before the next write told
 * "committed" above it. A cycle there is a violation, reported with the
 * cycle; otherwise the verdict is "unknown", never "ok".
 *
 * A `casMany` told "mismatch" that two or more of its keys could explain
 * (`torture/multi_key.ts`, rule 2) is in no key's search; it changes
 * nothing, so it is checked against T: it needs a point inside its call
 * where the head of one of its keys is not that entry's seqno - 1. When T
 * has none, the verdict is "unknown" (another order might).
 *
 * Cost: O(n log n) in the operations (sorts by time, and a topological
 * sort that takes the earliest free node first), plus, per operation that
 * changes nothing, a replay for each write that overlaps it in real time.
 *
 * @module
 */
import type { Entry } from "./history.ts";
import type { KeyVerdict } from "./checker.ts";

/** One operation of a key's linearization, as the global check needs it. */
export interface OrderedOp {
  /** The operation; a `casMany` is the same entry on each of its keys. */
  readonly entry: Entry;
  /** Whether it changed the key's state: a write, or a truncate that removed versions. */
  readonly changes: boolean;
  /**
   * A write: its place among the key's writes (from 1), as `lo` and `hi`.
   * Anything but a change: the writes' segments in which it is legal
   * (segment j lies after the j-th write).
   */
  readonly lo: number;
  readonly hi: number;
  /**
   * A truncate that removed versions: its place among those (from 1).
   * Anything but a change that depends on the low watermark: the segment of
   * those truncates it must lie in.
   */
  readonly truncate?: number;
  /** A truncate that removed versions: the place of the write of its seqno. */
  readonly follows?: number;
  /** A write told "committed" (every linearization has it): its seqno. */
  readonly write?: number;
  /** A write: its seqno. */
  readonly seqno?: number;
  /** A read: the top seqno it returned (-1: none), and whether that was the head. */
  readonly read?: { readonly top: number; readonly whole: boolean };
}

/** A key's linearization, from the per-key search. */
export interface KeyOrder {
  readonly key: string;
  /** In the order the search placed them. */
  readonly ops: readonly OrderedOp[];
  /** How many writes, and truncates that removed versions, it has. */
  readonly writes: number;
  readonly truncates: number;
}

/**
 * Decides whether one order of every operation fits every key's
 * linearization and real time (see the module comment).
 *
 * @param orders Every key's linearization (every key of the history).
 * @param total Operations in the history, for the verdict.
 * @param mismatches The `casMany`s told "mismatch" that no key's search
 *   placed (two or more keys could explain them): each must find a point of
 *   the order, inside its call, where one of its conditions fails.
 * @returns A verdict on the whole history, keyed "(global order)".
 */
export function checkGlobalOrder(
  orders: readonly KeyOrder[],
  total: number,
  mismatches: readonly Entry[] = [],
): KeyVerdict {
  const nodeOf = new Map<Entry, number>();
  const entries: Entry[] = [];
  const keysOf: string[][] = [];
  // Unknown casMany: on how many of its keys it changed the state, and not.
  const applied = new Map<Entry, { yes: string[]; no: string[] }>();
  const node = (entry: Entry, key: string): number => {
    let id = nodeOf.get(entry);
    if (id === undefined) {
      nodeOf.set(entry, id = entries.length);
      entries.push(entry);
      keysOf.push([]);
    }
    keysOf[id].push(key);
    return id;
  };
  for (const { key, ops } of orders) {
    for (const op of ops) {
      if (op.entry.outcome.type !== "unknown") continue;
      let seen = applied.get(op.entry);
      if (seen === undefined) applied.set(op.entry, seen = { yes: [], no: [] });
      (op.changes ? seen.yes : seen.no).push(key);
    }
  }
  for (const [entry, { yes, no }] of applied) {
    if (yes.length > 0 && no.length > 0) {
      return verdict("unknown", total, [...yes, ...no], {
        reason: `indeterminate compareAndSetMany #${entry.id} took effect on ${yes.join(", ")} ` +
          `but not on ${no.join(", ")} in the linearizations found key by key; no order of ` +
          `all keys was sought with it decided jointly`,
        witness: [entry],
      });
    }
  }

  // Per key, the node of the write of each seqno.
  const writtenAt = new Map<string, Map<number, number>>();
  // Edges, chosen (from the search's choices) or forced (in every linearization).
  const from: number[] = [], to: number[] = [], forced: boolean[] = [];
  const edge = (a: number, b: number, isForced: boolean) => {
    from.push(a);
    to.push(b);
    forced.push(isForced);
  };
  for (const { key, ops } of orders) {
    const written: number[] = [], truncated: number[] = [];
    const writes: { seqno: number; id: number }[] = [];
    const pending: { id: number; op: OrderedOp }[] = [];
    const follows: { id: number; write: number }[] = [];
    const bySeqno = new Map<number, number>();
    writtenAt.set(key, bySeqno);
    for (const op of ops) {
      // An unknown operation that took no effect may be taken as never run.
      if (!op.changes && op.entry.outcome.type === "unknown") continue;
      const id = node(op.entry, key);
      if (op.changes && op.truncate === undefined) {
        if (written.length > 0) edge(written.at(-1)!, id, false);
        written.push(id);
        if (op.seqno !== undefined) bySeqno.set(op.seqno, id);
        if (op.write !== undefined) {
          if (writes.length > 0) edge(writes.at(-1)!.id, id, true);
          writes.push({ seqno: op.write, id });
        }
      } else if (op.changes) {
        if (truncated.length > 0) edge(truncated.at(-1)!, id, false);
        truncated.push(id);
        if (op.follows !== undefined) follows.push({ id, write: op.follows });
      } else {
        pending.push({ id, op });
      }
    }
    for (const { id, write } of follows) edge(written[write - 1], id, false);
    const writer = new Map(writes.map((w) => [w.seqno, w.id]));
    // The first write told "committed" above `seqno`.
    const above = (seqno: number) => {
      let lo = 0, hi = writes.length;
      while (lo < hi) {
        const mid = (lo + hi) >>> 1;
        if (writes[mid].seqno > seqno) hi = mid;
        else lo = mid + 1;
      }
      return writes[lo]?.id;
    };
    for (const { id, op } of pending) {
      if (op.lo >= 1) edge(written[op.lo - 1], id, false);
      if (op.hi < written.length) edge(id, written[op.hi], false);
      if (op.truncate !== undefined) {
        if (op.truncate >= 1) edge(truncated[op.truncate - 1], id, false);
        if (op.truncate < truncated.length) edge(id, truncated[op.truncate], false);
      }
      if (op.read === undefined) continue;
      const after = writer.get(op.read.top);
      if (after !== undefined) edge(after, id, true);
      if (op.read.whole) {
        const before = above(op.read.top);
        if (before !== undefined) edge(id, before, true);
      }
    }
  }

  // Real time, through one node per completion, in time order: A reaches
  // B through them iff A completed before B was invoked.
  const n = entries.length;
  const done = entries.map((_, i) => i).filter((i) => entries[i].ret !== Infinity);
  done.sort((a, b) => entries[a].ret - entries[b].ret);
  const times = done.map((i) => entries[i].ret);
  for (let r = 0; r < done.length; r++) {
    edge(done[r], n + r, true);
    if (r + 1 < done.length) edge(n + r, n + r + 1, true);
  }
  for (let i = 0; i < n; i++) {
    // The last completion strictly before the invocation.
    const call = entries[i].call;
    let lo = 0, hi = times.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (times[mid] < call) lo = mid + 1;
      else hi = mid;
    }
    if (lo > 0) edge(n + lo - 1, i, true);
  }

  const size = n + done.length;
  const key = new Float64Array(size);
  for (let i = 0; i < n; i++) key[i] = entries[i].call;
  for (let r = 0; r < times.length; r++) key[n + r] = times[r];
  const sorted = topological(size, from, to, () => true, key);
  if (sorted.left.length === 0) {
    const unplaced = placeMismatches(mismatches, sorted.order, entries, writtenAt);
    if (unplaced === undefined) {
      return verdict("ok", total, [], { searched: n, steps: from.length });
    }
    return verdict("unknown", total, keysOfMany(unplaced), {
      searched: n,
      steps: from.length,
      reason: `compareAndSetMany #${unplaced.id} was told "mismatch", and no point inside its ` +
        `call in the order found for all keys has one of its conditions failing`,
      witness: [unplaced],
    });
  }
  const all = sorted.left;
  const left = topological(size, from, to, (e) => forced[e], key).left;
  const cycle = findCycle(
    left.length > 0 ? left : all,
    size,
    from,
    to,
    (e) => left.length > 0 ? forced[e] : true,
  );
  const witness = cycle.filter((id) => id < n).map((id) => entries[id]);
  const keys = [...new Set(cycle.filter((id) => id < n).flatMap((id) => keysOf[id]))].sort();
  const list = witness.map((e) => `#${e.id}`).join(" -> ");
  if (left.length > 0) {
    return verdict("violation", total, keys, {
      searched: n,
      steps: from.length,
      reason:
        `no single order of all keys' operations exists: ${list} -> #${
          witness[0]?.id
        } is a cycle of precedences every linearization has (real time, each key's writes ` +
        `told "committed" in seqno order, reads after the write they returned and before ` +
        `the next), although each key is linearizable alone`,
      witness,
    });
  }
  return verdict("unknown", total, keys, {
    searched: n,
    steps: from.length,
    reason:
      `the linearizations found key by key do not fit one order (${list} -> #${
        witness[0]?.id
      } is a cycle through the search's choices), and the precedences every ` +
      `linearization has do not decide it`,
    witness,
  });
}

function verdict(
  status: KeyVerdict["status"],
  ops: number,
  keys: readonly string[],
  rest: { searched?: number; steps?: number; reason?: string; witness?: readonly Entry[] },
): KeyVerdict {
  return {
    key: "(global order)",
    keys: keys.length > 0 ? keys : undefined,
    status,
    ops,
    searched: rest.searched ?? 0,
    steps: rest.steps ?? 0,
    reason: rest.reason,
    witness: rest.witness,
  };
}

// Kahn's algorithm over the edges `use` keeps: a topological order, and the
// nodes left over (on or after a cycle; none when the graph is acyclic).
// Among the nodes free to go next it takes the smallest key (an operation's
// invocation, a completion node's time), so the order follows real time as
// far as the edges let it: a write that overlaps a mismatch then tends to
// land inside the mismatch's window (see placeMismatches).
function topological(
  size: number,
  from: readonly number[],
  to: readonly number[],
  use: (edge: number) => boolean,
  key: Float64Array,
): { order: Int32Array; left: number[] } {
  const degree = new Int32Array(size);
  const count = new Int32Array(size + 1);
  for (let e = 0; e < from.length; e++) {
    if (!use(e)) continue;
    degree[to[e]]++;
    count[from[e] + 1]++;
  }
  for (let i = 0; i < size; i++) count[i + 1] += count[i];
  const out = new Int32Array(count[size]);
  const fill = count.slice(0, size);
  for (let e = 0; e < from.length; e++) if (use(e)) out[fill[from[e]]++] = to[e];
  // The available node with the smallest key first (a binary heap).
  const heap = new Int32Array(size);
  let length = 0;
  const less = (a: number, b: number) => key[a] < key[b] || (key[a] === key[b] && a < b);
  const push = (v: number) => {
    let i = length++;
    heap[i] = v;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!less(heap[i], heap[parent])) break;
      [heap[i], heap[parent]] = [heap[parent], heap[i]];
      i = parent;
    }
  };
  const pop = () => {
    const top = heap[0];
    heap[0] = heap[--length];
    for (let i = 0;;) {
      const l = 2 * i + 1, r = l + 1;
      let m = i;
      if (l < length && less(heap[l], heap[m])) m = l;
      if (r < length && less(heap[r], heap[m])) m = r;
      if (m === i) break;
      [heap[i], heap[m]] = [heap[m], heap[i]];
      i = m;
    }
    return top;
  };
  const queue = new Int32Array(size);
  let tail = 0;
  for (let i = 0; i < size; i++) if (degree[i] === 0) push(i);
  while (length > 0) {
    const v = pop();
    queue[tail++] = v;
    for (let k = count[v]; k < count[v + 1]; k++) if (--degree[out[k]] === 0) push(out[k]);
  }
  const left: number[] = [];
  if (tail < size) { for (let i = 0; i < size; i++) if (degree[i] > 0) left.push(i); }
  return { order: queue, left };
}

// Each mismatch no key placed changes nothing, so it can go anywhere in the
// order that real time allows: after every operation that completed before
// it was invoked, before every one invoked after it completed. It fits if,
// somewhere in that window, one of its entries' conditions fails (the head
// of its key is not seqno - 1); the head of a key at a point of the order is
// the last of its writes before that point. Returns one that fits nowhere.
function placeMismatches(
  mismatches: readonly Entry[],
  order: Int32Array,
  entries: readonly Entry[],
  writtenAt: ReadonlyMap<string, ReadonlyMap<number, number>>,
): Entry | undefined {
  if (mismatches.length === 0) return undefined;
  const pos = new Int32Array(order.length);
  for (let i = 0; i < order.length; i++) pos[order[i]] = i;
  const ids = entries.map((_, i) => i);
  // Latest place among those completed before a time; earliest among those invoked after.
  const byRet = ids.filter((i) => entries[i].ret !== Infinity)
    .sort((a, b) => entries[a].ret - entries[b].ret);
  const upTo = new Int32Array(byRet.length);
  for (let k = 0, best = -1; k < byRet.length; k++) upTo[k] = best = Math.max(best, pos[byRet[k]]);
  const byCall = ids.sort((a, b) => entries[a].call - entries[b].call);
  const fromOn = new Int32Array(byCall.length + 1).fill(order.length);
  for (let k = byCall.length - 1; k >= 0; k--) fromOn[k] = Math.min(fromOn[k + 1], pos[byCall[k]]);
  const search = (list: number[], ok: (i: number) => boolean) => {
    let lo = 0, hi = list.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (ok(list[mid])) lo = mid + 1;
      else hi = mid;
    }
    return lo; // how many satisfy ok, from the start
  };
  for (const m of mismatches) {
    if (m.op.kind !== "casMany") continue;
    const before = search(byRet, (i) => entries[i].ret < m.call);
    const low = before === 0 ? -1 : upTo[before - 1];
    const high = fromOn[search(byCall, (i) => entries[i].call <= m.ret)];
    // Insertion points p with low < p <= high (before the node at p).
    const fails = m.op.entries.some(({ key, seqno }) => {
      const s = Number(seqno);
      const at = writtenAt.get(key);
      const reached = s === 0 ? -1 : at?.get(s - 1);
      const passed = at?.get(s);
      // The head is s - 1 from just after write s - 1 up to write s.
      const start = reached === undefined ? Infinity : reached === -1 ? -1 : pos[reached];
      const end = passed === undefined ? Infinity : pos[passed];
      return !(start <= low && end >= high);
    });
    if (!fails) return m;
  }
  return undefined;
}

function keysOfMany(entry: Entry): string[] {
  return entry.op.kind === "casMany" ? entry.op.entries.map((e) => e.key) : [entry.key];
}

// A cycle among `left` (every one of which has a predecessor in `left`):
// walk back from predecessor to predecessor until a node repeats.
function findCycle(
  left: readonly number[],
  size: number,
  from: readonly number[],
  to: readonly number[],
  use: (edge: number) => boolean,
): number[] {
  const inLeft = new Uint8Array(size);
  for (const v of left) inLeft[v] = 1;
  const pred = new Int32Array(size).fill(-1);
  for (let e = 0; e < from.length; e++) {
    if (use(e) && inLeft[from[e]] && inLeft[to[e]]) pred[to[e]] = from[e];
  }
  const seenAt = new Map<number, number>();
  const path: number[] = [];
  for (let v = left[0]; v !== -1 && !seenAt.has(v); v = pred[v]) {
    seenAt.set(v, path.length);
    path.push(v);
  }
  const start = path.length > 0 ? pred[path.at(-1)!] : -1;
  const cycle = start === -1 ? path : path.slice(seenAt.get(start));
  return cycle.reverse();
}
