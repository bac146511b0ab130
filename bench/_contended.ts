// The contended workload's loops, shared by the in-process runs and the
// worker processes of the multi-process runs.
import type { Consensus } from "../mod.ts";
import { type RunResult, timeBoxed } from "./_measure.ts";

/** How writers advance the shared key. */
export type ContendedMode = "loop" | "update";

const payload = new Uint8Array(8);

/**
 * `loop`: each writer reads the head and compare-and-sets head + 1, retrying
 * on mismatch; a successful update's latency runs from its first read.
 * `update`: each writer calls `update()` (one CAS in flight per key per
 * process), whose latency runs from the call.
 */
export function contended(
  store: Consensus,
  key: string,
  writers: number,
  ms: number,
  mode: ContendedMode,
  update?: (store: Consensus, key: string) => Promise<number>,
): Promise<RunResult> {
  if (mode === "update") {
    return timeBoxed(writers, ms, async () => {
      const startedAt = performance.now();
      const attempts = await update!(store, key);
      return { ok: true, attempts, startedAt };
    });
  }
  return timeBoxed(writers, ms, async () => {
    const startedAt = performance.now();
    let attempts = 0;
    for (;;) {
      const head = await store.head(key);
      attempts++;
      const outcome = await store.compareAndSet(key, {
        seqno: head ? head.seqno + 1n : 0n,
        data: payload,
      });
      if (outcome === "committed") return { ok: true, attempts, startedAt };
    }
  });
}
