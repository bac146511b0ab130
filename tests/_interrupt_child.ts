// A long-running command for tests/interrupt_test.ts, run under
// tools/with_postgres.ts: it starts a throwaway server of its own (as the
// torture campaign does), a grandchild process and a scratch directory,
// says where they are on one JSON line, and waits (bounded) to be
// interrupted.
import { startThrowawayPostgres } from "../tools/postgres_server.ts";

const server = await startThrowawayPostgres();
const sleeper = new Deno.Command("sleep", { args: ["120"] }).spawn();
const scratch = await Deno.makeTempDir({ prefix: "interrupt-scratch-" });
console.log(JSON.stringify({
  serverRoot: server.dataDir.slice(0, server.dataDir.lastIndexOf("/")),
  socketDir: server.socketDir,
  scratch,
  sleeper: sleeper.pid,
}));
await new Promise((resolve) => setTimeout(resolve, 120_000));
try {
  sleeper.kill();
} catch {
  // ended by itself
}
await server.stop();
