/**
 * The operator CLI's logic, runtime-neutral: it parses a command line, opens
 * the table (never creating it), runs one command and returns the exit
 * status. Everything that belongs to a runtime (arguments, environment,
 * standard streams, signals, the driver) comes in through a
 * {@linkcode CliHost}; `src/runtime/cli.ts` is the executable that builds
 * one for Deno and Bun.
 *
 * @module
 */
import { quoteIdentifier } from "../dialect.ts";
import { redactSecrets } from "../errors.ts";
import type { AbortSignalLike, SqlExecutor } from "../executor.ts";
import { PostgresConsensus } from "../postgres.ts";
import { commandUsage, parseArgs, type Parsed, usage, UsageError } from "./_args.ts";
import { Interrupted, Output, runCommand, StdoutClosed } from "./_commands.ts";
import { readStats } from "./_stats.ts";

/**
 * What the CLI needs from its runtime. The executable builds one from
 * `Deno` or `process`; tests and embedders can build their own.
 *
 * @example A host that collects output in memory
 * ```ts
 * import type { CliHost } from "@persist/consensus/cli";
 *
 * const out: string[] = [];
 * const host: CliHost = {
 *   env: () => undefined,
 *   stdout: (text) => (out.push(text), Promise.resolve(true)),
 *   stderr: (text) => (out.push(text), Promise.resolve()),
 *   stdoutIsTerminal: false,
 *   stderrIsTerminal: false,
 *   connect: () => {
 *     throw new Error("no database here");
 *   },
 * };
 * ```
 */
export interface CliHost {
  /** Reads an environment variable (`DATABASE_URL`). */
  env(name: string): string | undefined;
  /**
   * Writes to standard output; resolves `false` when its reader went away
   * (a closed pipe), which ends the command quietly.
   */
  stdout(text: string): Promise<boolean>;
  /** Writes to standard error. */
  stderr(text: string): Promise<void>;
  /** Whether standard output is a terminal. */
  readonly stdoutIsTerminal: boolean;
  /** Whether standard error is a terminal (live progress is shown there). */
  readonly stderrIsTerminal: boolean;
  /**
   * Creates an executor for `url` that the store owns (closing the store
   * closes it). It may throw on a malformed URL.
   */
  connect(url: string): SqlExecutor;
  /** Aborted on an interrupt (Ctrl-C): listings and `watch` stop, with status 130. */
  readonly signal?: AbortSignalLike;
}

/** Exit statuses: done, failed, usage error, interrupted. */
const OK = 0, FAILED = 1, USAGE = 2, INTERRUPTED = 130;

/**
 * Runs the operator CLI once: `args` are the arguments after the program
 * name (`["head", "orders", "--json"]`). Output goes to `host.stdout`,
 * progress and errors to `host.stderr`; an error is one line, without a
 * stack trace or a password.
 *
 * @param args The command line, without the program.
 * @param host The runtime's streams, environment and driver.
 * @returns The exit status: 0 done, 1 failed, 2 usage error, 130 interrupted.
 *
 * @example Usage errors need no database
 * ```ts
 * import { type CliHost, runCli } from "@persist/consensus/cli";
 *
 * const lines: string[] = [];
 * const host: CliHost = {
 *   env: () => undefined,
 *   stdout: (text) => (lines.push(text), Promise.resolve(true)),
 *   stderr: (text) => (lines.push(text), Promise.resolve()),
 *   stdoutIsTerminal: false,
 *   stderrIsTerminal: false,
 *   connect: () => {
 *     throw new Error("not reached");
 *   },
 * };
 * if (await runCli(["scan"], host) !== 2) throw new Error("expected a usage error");
 * if (await runCli(["--help"], host) !== 0) throw new Error("expected usage");
 * ```
 */
export async function runCli(args: readonly string[], host: CliHost): Promise<number> {
  let parsed: Parsed;
  try {
    parsed = parseArgs(args);
  } catch (error) {
    if (!(error instanceof UsageError)) throw error;
    // It may quote an argument, and a URL typed in the wrong place is one.
    await host.stderr(`error: ${oneLine(redactSecrets(error.message))}\n`);
    return USAGE;
  }
  if (parsed.help) {
    await host.stdout(parsed.command === undefined ? usage() : commandUsage(parsed.command));
    return OK;
  }
  const url = parsed.url ?? host.env("DATABASE_URL");
  if (url === undefined || url === "") {
    await host.stderr(
      "error: No database given: pass --url or set DATABASE_URL; run with --help for usage\n",
    );
    return USAGE;
  }
  const hide = secretsOf(url);
  const out = new Output((text) => host.stdout(text));
  let executor: SqlExecutor;
  try {
    // Only builds the client (it connects at the first statement), so what
    // fails here is the URL: the caller's input, a usage error.
    executor = host.connect(url);
  } catch (error) {
    await host.stderr(`error: Invalid database URL: ${oneLine(hide(messageOf(error)))}\n`);
    return USAGE;
  }
  let store: PostgresConsensus | undefined;
  try {
    store = await PostgresConsensus.open(executor, {
      create: false,
      table: parsed.table,
      schema: parsed.schema,
      onWarning: (message) => {
        host.stderr(`warning: ${oneLine(hide(message))}\n`).catch(() => {});
      },
    });
    const quoted = parsed.schema === undefined
      ? quoteIdentifier(parsed.table ?? "consensus", "table")
      : `${quoteIdentifier(parsed.schema, "schema")}.${
        quoteIdentifier(parsed.table ?? "consensus", "table")
      }`;
    const engine = store.engine;
    await runCommand(parsed, {
      store,
      out,
      err: (text) => host.stderr(text),
      live: host.stderrIsTerminal && !host.stdoutIsTerminal,
      stderrIsTerminal: host.stderrIsTerminal,
      signal: host.signal,
      stats: async (signal) => ({ ...await readStats(executor, quoted, signal), engine }),
    });
    await out.flush();
    return host.signal?.aborted ? INTERRUPTED : OK;
  } catch (error) {
    if (error instanceof StdoutClosed) return OK;
    if (error instanceof Interrupted || host.signal?.aborted) return INTERRUPTED;
    // What was printed before the failure goes out first, then one line.
    await out.flush().catch(() => {});
    await host.stderr(`error: ${oneLine(hide(messageOf(error)))}\n`);
    return FAILED;
  } finally {
    await store?.close().catch(() => {});
  }
}

function messageOf(error: unknown): string {
  const message = (error as { message?: unknown } | null)?.message;
  return typeof message === "string" && message !== "" ? message : String(error);
}

function oneLine(text: string): string {
  return text.replace(/\s*[\r\n]+\s*/g, " ").trim();
}

// Hides the URL's password wherever it shows up, on top of the library's
// redaction (which knows URLs and key=value forms, not a bare password a
// driver might quote). Passwords shorter than four characters are left to
// the library: replacing every "pg" would garble the message instead.
function secretsOf(url: string): (text: string) => string {
  const secrets = new Set<string>();
  // Up to the last "@" before the path: a password may hold an unencoded "@".
  const password = /^[a-z][a-z0-9+.-]*:\/\/[^:/?#@]*:([^/?#]*)@/i.exec(url)?.[1];
  if (password !== undefined) {
    secrets.add(password);
    try {
      secrets.add(decodeURIComponent(password));
    } catch {
      // not validly percent-encoded: the raw form is the one to hide
    }
  }
  const hidden = [...secrets].filter((secret) => secret.length >= 4);
  return (text) => {
    let out = redactSecrets(text);
    for (const secret of hidden) out = out.replaceAll(secret, "***");
    return out;
  };
}
