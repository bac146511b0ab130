import { recreateOf } from "../_schema.ts";
import type { Consensus } from "../types.ts";

/**
 * Drops a `PostgresConsensus` store's table and creates it again, empty,
 * through the store's own executor; the store stays open and forgets what it
 * knew of the old rows. For tests: it deletes every key's history.
 *
 * @param store A store opened by `PostgresConsensus.open`.
 * @returns When the table is empty.
 * @throws {TypeError} When `store` is not a `PostgresConsensus`.
 * @throws {ConsensusError} When a statement failed.
 *
 * @example Start a test from an empty table
 * ```ts ignore
 * import postgres from "postgres";
 * import { PostgresConsensus } from "@persist/consensus";
 * import { fromPostgresJs } from "@persist/consensus/postgres-js";
 * import { dropAndRecreate } from "@persist/consensus/testing";
 *
 * const sql = postgres(Deno.env.get("DATABASE_URL")!);
 * await using store = await PostgresConsensus.open(fromPostgresJs(sql, { owned: true }), {
 *   table: "my_test",
 * });
 * await dropAndRecreate(store);
 * ```
 */
export async function dropAndRecreate(store: Consensus): Promise<void> {
  const recreate = recreateOf(store);
  if (recreate === undefined) {
    throw new TypeError("Cannot drop and recreate the table: the store is not a PostgresConsensus");
  }
  await recreate();
}
