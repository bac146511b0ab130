// A polling stand-in for `watch(store, key, options)` (issue 9), with its
// signature and what it yields, so that the CLI switches to the real one by
// changing one import (see WATCH in src/cli/_commands.ts).
import { host } from "../_runtime.ts";
import type { AbortSignalLike } from "../executor.ts";
import type { Consensus, VersionedData } from "../types.ts";

/** Options of {@linkcode pollWatch}, those of the library's `watch`. */
export interface WatchOptions {
  /** The first seqno to yield; the current head's when omitted (0 on an empty key). */
  from?: bigint;
  /** Ends the iteration when aborted. */
  signal?: AbortSignalLike;
  /** How long to wait between reads when nothing new was found. */
  pollIntervalMs?: number;
}

/** A function with the signature of the library's `watch`. */
export type WatchFn = (
  store: Consensus,
  key: string,
  options?: WatchOptions,
) => AsyncIterableIterator<VersionedData>;

const PAGE = 1000;

/**
 * Yields every version of `key` from `from` on, in ascending order, each
 * once, then polls for new ones every `pollIntervalMs` (one scan a poll);
 * ends when `signal` aborts or the loop breaks. Throws when versions it must
 * yield were truncated before it read them, naming the first missing seqno.
 */
export async function* pollWatch(
  store: Consensus,
  key: string,
  options: WatchOptions = {},
): AsyncIterableIterator<VersionedData> {
  const { signal, pollIntervalMs = 250 } = options;
  let next = options.from ?? (await store.head(key))?.seqno ?? 0n;
  while (!signal?.aborted) {
    const versions = await store.scan(key, next, PAGE);
    if (versions.length > 0 && versions[0].seqno !== next) {
      throw new Error(
        `Cannot watch ${JSON.stringify(key)}: seqno ${next} was truncated before it was read ` +
          `(the oldest version now is ${versions[0].seqno})`,
      );
    }
    for (const version of versions) {
      yield version;
      next = version.seqno + 1n;
    }
    if (versions.length < PAGE) await pause(pollIntervalMs, signal);
  }
}

function pause(ms: number, signal: AbortSignalLike | undefined): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const done = () => {
      // Timeouts and intervals share one pool of ids (HTML, Node, Bun): this
      // clears the timer, which the core's host type names clearInterval.
      host.clearInterval(timer);
      signal?.removeEventListener("abort", done);
      resolve();
    };
    signal?.addEventListener("abort", done, { once: true });
    const timer = host.setTimeout(done, ms);
  });
}
