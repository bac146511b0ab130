// The update() workload body: an 8-byte counter incremented through update().
import { type Consensus, update } from "../mod.ts";

const increment = (current: { data: Uint8Array } | undefined) => {
  const data = new Uint8Array(8);
  const view = new DataView(data.buffer);
  const value = current && current.data.byteLength === 8
    ? new DataView(current.data.buffer, current.data.byteOffset, 8).getBigUint64(0)
    : 0n;
  view.setBigUint64(0, value + 1n);
  return data;
};

/** Runs one update; returns the CAS attempts it took. */
export async function updateWithCounter(store: Consensus, key: string): Promise<number> {
  const { attempts } = await update(store, key, increment);
  return attempts;
}
