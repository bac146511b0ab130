/**
 * The conformance suite every {@linkcode Consensus} backend must pass,
 * runtime-neutral (no Deno, Bun or Node APIs, no dependencies), so that
 * anyone writing another backend or driver adapter runs the same cases.
 *
 * @example Run the suite with `deno test`
 * ```ts ignore
 * import { MemoryConsensus } from "@persist/consensus";
 * import { runConformance } from "@persist/consensus/testing";
 *
 * runConformance(Deno.test, "memory", {
 *   open: (initial) => Promise.resolve(new MemoryConsensus({ initial: initial?.entries() })),
 * });
 * ```
 *
 * @example Run it on a new adapter, through the SQL harness
 * ```ts ignore
 * import { openSeeded, runConformance } from "@persist/consensus/testing";
 * import { fromMyDriver } from "./my_adapter.ts";
 *
 * runConformance(Deno.test, "my-driver", {
 *   // Drops, creates and seeds the table through the adapter, then opens it.
 *   open: (initial) => openSeeded(fromMyDriver(Deno.env.get("DATABASE_URL")!), { initial }),
 * });
 * ```
 *
 * @module
 */
export {
  type ConformanceCase,
  conformanceCases,
  type ConformanceHarness,
  runConformance,
} from "./conformance.ts";
export { raceOnOneKey, type RaceOptions, type RaceReport } from "./race.ts";
export { ConformanceFailure } from "./_assert.ts";
export {
  createTable,
  type CreateTableOptions,
  dropAndRecreate,
  dropTable,
  openSeeded,
  type OpenSeededOptions,
  recreateTable,
  type SeedOptions,
  seedTable,
  type TableOptions,
} from "./harness.ts";
export {
  type ScriptedCall,
  ScriptedExecutor,
  type ScriptedExecutorOptions,
  type ScriptedHandler,
} from "./scripted.ts";
