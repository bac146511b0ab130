// The HTTP handler both example services share (runtime-neutral: a fetch
// handler over any Consensus). A counter per key, stored as the key's log:
// version N holds the value N + 1 as 8 big-endian bytes.
//
//   POST /counter/:key  increments (read the head, compare-and-set head + 1,
//                       retry on "mismatch"), answers the new value
//   GET  /counter/:key  answers the current value (0 for a new key)
import { type Consensus, ConsensusError, type VersionedData } from "../mod.ts";

const MAX_ATTEMPTS = 100;

function decode(version: VersionedData | undefined): bigint {
  if (version === undefined) return 0n;
  return new DataView(version.data.buffer, version.data.byteOffset, 8).getBigUint64(0);
}

function encode(value: bigint): Uint8Array {
  const data = new Uint8Array(8);
  new DataView(data.buffer).setBigUint64(0, value);
  return data;
}

function json(body: Record<string, unknown>, status = 200): Response {
  return new Response(JSON.stringify(body), {
    status,
    headers: { "content-type": "application/json" },
  });
}

/** A fetch handler serving counters from `store`. */
export function counterHandler(store: Consensus): (request: Request) => Promise<Response> {
  return async (request) => {
    const match = /^\/counter\/([^/]+)$/.exec(new URL(request.url).pathname);
    if (!match) return json({ error: "not found" }, 404);
    const key = decodeURIComponent(match[1]);
    try {
      if (request.method === "GET") {
        const head = await store.head(key);
        return json({ key, value: String(decode(head)), seqno: head ? String(head.seqno) : null });
      }
      if (request.method !== "POST") return json({ error: "method not allowed" }, 405);
      for (let attempt = 1; attempt <= MAX_ATTEMPTS; attempt++) {
        const head = await store.head(key);
        const next = { seqno: head ? head.seqno + 1n : 0n, data: encode(decode(head) + 1n) };
        if (await store.compareAndSet(key, next) === "committed") {
          return json({ key, value: String(decode(next)), seqno: String(next.seqno), attempt });
        }
      }
      return json({ error: `gave up after ${MAX_ATTEMPTS} lost races` }, 503);
    } catch (error) {
      if (error instanceof TypeError || error instanceof RangeError) {
        return json({ error: error.message }, 400);
      }
      // An indeterminate failure: the increment may have landed.
      const indeterminate = error instanceof ConsensusError && !error.determinate;
      return json({ error: String(error), indeterminate }, 503);
    }
  };
}
