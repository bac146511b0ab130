// The update() workload body, isolated so the benchmarks run before update()
// exists (it then reports "n/a").
import type { Consensus } from "../mod.ts";

const payload = new Uint8Array(8);

/** Runs one update; returns the CAS attempts it took. Replaced once update() lands. */
export function updateWithCounter(_store: Consensus, _key: string): Promise<number> {
  void payload;
  return Promise.reject(new Error("update() is not implemented yet"));
}

export const UPDATE_AVAILABLE = false;
