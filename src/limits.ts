/**
 * The largest sequence number: the top of Postgres' `int8`.
 *
 * @example Usage
 * ```ts
 * import { MAX_SEQNO } from "@persist/consensus";
 *
 * if (MAX_SEQNO !== 9223372036854775807n) throw new Error("unexpected");
 * ```
 */
export const MAX_SEQNO: bigint = 2n ** 63n - 1n;

/**
 * The longest key, in UTF-8 bytes. Keys are the leading column of a B-tree
 * primary key, whose entries Postgres caps at about 2,700 bytes; 1,024 leaves
 * room for the sequence number and index overhead on Postgres and
 * CockroachDB alike.
 *
 * @example Usage
 * ```ts
 * import { MAX_KEY_BYTES } from "@persist/consensus";
 *
 * const key = "shard-" + "x".repeat(MAX_KEY_BYTES - 6); // the longest accepted
 * ```
 */
export const MAX_KEY_BYTES = 1024;

/**
 * The largest payload, in bytes (16 MiB). Consensus state is meant to be
 * small (the blob half of the design holds the bulk); the cap keeps every
 * write well inside Postgres' and CockroachDB's limits on a row and on a
 * Raft command, including the doubling of text-encoded `bytea`.
 *
 * @example Usage
 * ```ts
 * import { MAX_DATA_BYTES } from "@persist/consensus";
 *
 * if (MAX_DATA_BYTES !== 16 * 1024 * 1024) throw new Error("unexpected");
 * ```
 */
export const MAX_DATA_BYTES: number = 16 * 1024 * 1024;

/**
 * The most entries one {@linkcode Consensus.compareAndSetMany} may hold. The
 * payloads of all of them together are bounded by {@linkcode MAX_DATA_BYTES}.
 *
 * @example Usage
 * ```ts
 * import { MAX_MANY_ENTRIES } from "@persist/consensus";
 *
 * if (MAX_MANY_ENTRIES !== 128) throw new Error("unexpected");
 * ```
 */
export const MAX_MANY_ENTRIES = 128;
