/**
 * A linearizable versioned store on Postgres or CockroachDB: per key, an
 * append-only log of versions advanced by compare-and-set. The consensus
 * half of a blob + consensus storage design, as Materialize's persist layer
 * runs it, for Deno and Bun services.
 *
 * The core depends only on {@linkcode SqlExecutor}; drivers plug in through
 * adapters exported from subpaths (`@persist/consensus/postgres-js`, ...).
 *
 * @example In memory
 * ```ts
 * import { MemoryConsensus } from "@persist/consensus";
 *
 * await using store = new MemoryConsensus();
 * await store.compareAndSet("k", { seqno: 0n, data: new Uint8Array([1]) });
 * const head = await store.head("k");
 * if (head?.seqno !== 0n) throw new Error("unexpected");
 * ```
 *
 * @module
 */
export type { CasEntry, CasResult, Consensus, VersionedData } from "./src/types.ts";
export {
  ConsensusError,
  type ConsensusErrorOptions,
  redactSecrets,
  TruncatedError,
} from "./src/errors.ts";
export { MAX_DATA_BYTES, MAX_KEY_BYTES, MAX_MANY_ENTRIES, MAX_SEQNO } from "./src/limits.ts";
export { MemoryConsensus, type MemoryConsensusOptions } from "./src/memory.ts";
export { PostgresConsensus, type PostgresConsensusOptions } from "./src/postgres.ts";
export { acquireLease, type Lease, type LeaseOptions } from "./src/lease.ts";
export { update, type UpdateFn, type UpdateOptions, type UpdateResult } from "./src/update.ts";
export { watch, type WatchOptions } from "./src/watch.ts";
export type { Engine } from "./src/dialect.ts";
export {
  type AbortSignalLike,
  type ListenOptions,
  type QueryOptions,
  SqlError,
  type SqlErrorOptions,
  type SqlExecutor,
  type SqlResult,
  type SqlStatement,
  type SqlSubscription,
  type SqlType,
  type SqlValue,
} from "./src/executor.ts";
