/**
 * Runs a command with `DATABASE_URL` set: the caller's when given, otherwise
 * a throwaway local Postgres started for the command and removed after it.
 * The command's temporary files go to a directory of the run (its
 * `TMPDIR`), removed after it too; Ctrl-C or SIGTERM stops the command, the
 * server and every process below, and removes both.
 *
 * When the command's arguments ask for help (`--help` or `-h`), it runs with
 * no server: a usage text needs none, and starting one takes seconds.
 *
 * Usage: `deno run -A tools/with_postgres.ts <command> [args...]`
 *
 * @module
 */
import { startThrowawayPostgres } from "./postgres_server.ts";
import { runChild, startRun } from "./_run.ts";
import { exit } from "./_interrupt.ts";

if (Deno.args.length === 0) {
  console.error("usage: with_postgres.ts <command> [args...]");
  Deno.exit(2);
}

const run = await startRun();
let env: Record<string, string> = { ...run.env };
let stop = async () => {};
const wantsHelp = Deno.args.slice(1).some((arg) => arg === "--help" || arg === "-h");
if (wantsHelp) {
  // No server: the command prints its usage and exits.
} else if (!Deno.env.get("DATABASE_URL")) {
  const server = await startThrowawayPostgres({
    log: (line) => console.error(`[with_postgres] ${line}`),
    tmpDir: run.tmpDir,
  });
  env = {
    ...env,
    DATABASE_URL: server.url,
    PG_SOCKET_DIR: server.socketDir,
    PG_PORT: String(server.port),
    PG_BIN: server.binDir,
  };
  stop = () => server.stop();
} else {
  console.error("[with_postgres] using DATABASE_URL from the environment");
}

const [cmd, ...args] = Deno.args;
let code = 1;
try {
  code = (await runChild(cmd, args, env)).code;
} finally {
  await stop();
  await run.close();
}
await exit(code);
