/**
 * Runs a command with `DATABASE_URL` set: the caller's when given, otherwise
 * a throwaway local Postgres started for the command and removed after it.
 *
 * Usage: `deno run -A tools/with_postgres.ts <command> [args...]`
 *
 * @module
 */
import { startThrowawayPostgres } from "./postgres_server.ts";

if (Deno.args.length === 0) {
  console.error("usage: with_postgres.ts <command> [args...]");
  Deno.exit(2);
}

let env: Record<string, string> = {};
let stop = async () => {};
if (!Deno.env.get("DATABASE_URL")) {
  const server = await startThrowawayPostgres({
    log: (line) => console.error(`[with_postgres] ${line}`),
  });
  env = {
    DATABASE_URL: server.url,
    PG_SOCKET_DIR: server.socketDir,
    PG_PORT: String(server.port),
    PG_BIN: server.binDir,
  };
  stop = () => server.stop();
  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    Deno.addSignalListener(signal, () => {
      stop().finally(() => Deno.exit(130));
    });
  }
} else {
  console.error("[with_postgres] using DATABASE_URL from the environment");
}

const [cmd, ...args] = Deno.args;
let code = 1;
try {
  const status = await new Deno.Command(cmd, { args, env, stdin: "inherit" }).spawn().status;
  code = status.code;
} finally {
  await stop();
}
Deno.exit(code);
