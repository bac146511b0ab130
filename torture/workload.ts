/**
 * The workload: concurrent clients over a few keys, each running a random
 * mix of head, read-then-compare-and-set, blind compare-and-set at a seqno
 * near what it last saw, scan and truncate, every operation recorded.
 * Bounded by an operation count and a deadline; it stops by itself.
 *
 * @module
 */
import type { Consensus } from "../mod.ts";
import { History, type Op, type Outcome, type Version } from "./history.ts";

/** Options for {@linkcode runWorkload}. */
export interface WorkloadOptions {
  /** Concurrent clients. */
  clients: number;
  /** Keys; the clients pick one at random for every operation. */
  keys: number;
  /** Stop after this many recorded operations. */
  operations: number;
  /** Stop after this long, in milliseconds. @default {Infinity} */
  durationMs?: number;
  /** Key names start with this, so runs on one table do not mix. @default {"k"} */
  prefix?: string;
  /** Stop early when aborted (the operations in flight finish). */
  signal?: AbortSignal;
  /** Pause after an error, so a dead server is not flooded. @default {20} */
  errorPauseMs?: number;
  /** Record into this history (so others can watch it grow). @default {new History()} */
  history?: History;
}

/** What {@linkcode runWorkload} recorded. */
export interface WorkloadResult {
  history: History;
  elapsedMs: number;
}

/**
 * Runs the workload against `stores`: one store for all clients, or a
 * function picking each client's store (clients on different pools, proxies
 * and timeouts share one history).
 */
export async function runWorkload(
  stores: Consensus | ((client: number) => Consensus),
  options: WorkloadOptions,
): Promise<WorkloadResult> {
  const storeFor = typeof stores === "function" ? stores : () => stores;
  const history = options.history ?? new History();
  const started = performance.now();
  const deadline = started + (options.durationMs ?? Infinity);
  const keys = Array.from({ length: options.keys }, (_, i) => `${options.prefix ?? "k"}${i}`);
  const pause = options.errorPauseMs ?? 20;
  const done = () =>
    history.entries.length >= options.operations || performance.now() >= deadline ||
    (options.signal?.aborted ?? false);

  const client = async (process: number) => {
    const store = storeFor(process);
    const known = new Map<string, bigint>(); // the highest seqno this client saw, per key
    let writes = 0;
    const payload = () => `p${process}.${writes++}`;
    const run = async (key: string, op: Op): Promise<Outcome> => {
      const outcome = await history.run(store, process, key, op);
      if (outcome.type === "ok") learn(key, op, outcome.value);
      else if (outcome.type !== "range") await sleep(pause * (0.5 + Math.random()));
      return outcome;
    };
    const learn = (key: string, op: Op, value: unknown) => {
      let seen: bigint | undefined;
      if (op.kind === "head" && value !== undefined) seen = (value as Version).seqno;
      if (op.kind === "scan") seen = (value as Version[]).at(-1)?.seqno;
      if (op.kind === "cas" && value === "committed") seen = op.seqno;
      if (seen !== undefined && seen > (known.get(key) ?? -1n)) known.set(key, seen);
    };
    // Yield now and then: the in-memory store never does.
    let ops = 0;
    while (!done()) {
      if (++ops % 8 === 0) await sleep(0);
      const key = keys[Math.floor(Math.random() * keys.length)];
      const last = known.get(key) ?? -1n;
      const r = Math.random();
      if (r < 0.35) {
        const read = await run(key, { kind: "head" });
        if (read.type !== "ok" || done()) continue;
        const head = read.value as Version | undefined;
        const seqno = head === undefined ? 0n : head.seqno + 1n;
        await run(key, { kind: "cas", seqno, data: payload() });
      } else if (r < 0.45) {
        const seqno = clamp(last + BigInt(randomInt(-2, 2)));
        await run(key, { kind: "cas", seqno, data: payload() });
      } else if (r < 0.65) {
        await run(key, { kind: "head" });
      } else if (r < 0.82) {
        const from = Math.random() < 0.2 ? 0n : clamp(last - BigInt(randomInt(0, 8)));
        const limit = Math.random() < 0.5 ? undefined : randomInt(1, 10);
        await run(key, { kind: "scan", from, limit });
      } else {
        // Mostly well below the head (logs stay short, yet recent versions
        // stay checkable after a crash), sometimes at it or above it.
        const r2 = Math.random();
        const seqno = r2 < 0.15
          ? last + BigInt(randomInt(1, 3))
          : r2 < 0.3
          ? clamp(last - BigInt(randomInt(0, 3)))
          : clamp(last - BigInt(randomInt(10, 40)));
        await run(key, { kind: "truncate", seqno });
      }
    }
  };

  await Promise.all(Array.from({ length: options.clients }, (_, i) => client(i)));
  return { history, elapsedMs: performance.now() - started };
}

function clamp(seqno: bigint): bigint {
  return seqno < 0n ? 0n : seqno;
}

function randomInt(min: number, max: number): number {
  return min + Math.floor(Math.random() * (max - min + 1));
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
