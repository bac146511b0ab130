#!/usr/bin/env bun
/**
 * The operator CLI: list keys, read heads and ranges, truncate, count, and
 * watch a key of a `@persist/consensus` table, on Postgres or CockroachDB.
 *
 * ```sh
 * deno run -A jsr:@persist/consensus/cli keys --url postgres://app@db/app
 * bun run node_modules/@persist/consensus/src/runtime/cli.ts head orders --json
 * ```
 *
 * Run with `--help` for the commands and options. This file is the small
 * runtime layer (arguments, environment, standard streams, signals, and
 * porsager's `postgres` driver); the logic is runtime-neutral, in
 * {@linkcode runCli}.
 *
 * @module
 */
import process from "node:process";
import postgres from "postgres";
import { fromPostgresJs } from "../adapters/postgres_js.ts";
import { type CliHost, runCli } from "../cli/run.ts";

export { type CliHost, runCli };

/**
 * Runs the CLI in this process, on Deno, Bun or Node, with porsager's
 * `postgres` driver, and resolves its exit status (it does not exit).
 * The first Ctrl-C (or SIGTERM) stops listings and `watch` cleanly; a
 * second one exits at once.
 *
 * @param args The command line after the program; the process's own when omitted.
 * @returns The exit status: 0 done, 1 failed, 2 usage error, 130 interrupted.
 *
 * @example Embed the CLI in a script of your own
 * ```ts ignore
 * import { main } from "@persist/consensus/cli";
 *
 * const status = await main(["stats", "--json", "--table", "orders_consensus"]);
 * if (status !== 0) console.error("stats failed");
 * ```
 */
export async function main(args: readonly string[] = process.argv.slice(2)): Promise<number> {
  const interrupt = new AbortController();
  const onSignal = () => {
    if (interrupt.signal.aborted) process.exit(130);
    interrupt.abort();
  };
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);
  // A reader that went away (`| head`) is reported by write's callback; the
  // stream's own error event must not crash the process too.
  process.stdout.on("error", () => {});
  const host: CliHost = {
    env: (name) => process.env[name],
    stdout: (text) =>
      new Promise((resolve, reject) => {
        process.stdout.write(text, (error) => {
          if (!error) resolve(true);
          else if (isClosedPipe(error)) resolve(false);
          else reject(error);
        });
      }),
    stderr: (text) =>
      new Promise((resolve) => {
        process.stderr.write(text, () => resolve());
      }),
    stdoutIsTerminal: process.stdout.isTTY === true,
    stderrIsTerminal: process.stderr.isTTY === true,
    connect: (url) =>
      fromPostgresJs(
        postgres(url, {
          max: 2,
          // One statement at a time per connection, so a timed-out one can
          // be cancelled (see fromPostgresJs).
          max_pipeline: 0,
          connect_timeout: 10,
          onnotice: () => {},
        } as postgres.Options<Record<string, never>>),
        { owned: true },
      ),
    signal: interrupt.signal,
  };
  try {
    return await runCli(args, host);
  } finally {
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
  }
}

function isClosedPipe(error: unknown): boolean {
  const { code, name } = error as { code?: unknown; name?: unknown };
  return code === "EPIPE" || name === "BrokenPipe";
}

if (import.meta.main) process.exit(await main());
