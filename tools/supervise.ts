/**
 * Runs a command so that an interrupt leaves nothing behind: its temporary
 * files go to a directory of the run (its `TMPDIR`), removed when it ends,
 * and Ctrl-C or SIGTERM is passed on to it, then every process below is
 * stopped and the directory removed. For commands that start their own
 * servers (`deno task torture`); `tools/with_postgres.ts` does the same and
 * also provides a server.
 *
 * Usage: `deno run -A tools/supervise.ts <command> [args...]`
 *
 * @module
 */
import { runChild, startRun } from "./_run.ts";
import { exit } from "./_interrupt.ts";

if (Deno.args.length === 0) {
  console.error("usage: supervise.ts <command> [args...]");
  Deno.exit(2);
}

const run = await startRun();
const [cmd, ...args] = Deno.args;
let code = 1;
try {
  code = (await runChild(cmd, args, run.env)).code;
} finally {
  await run.close();
}
await exit(code);
