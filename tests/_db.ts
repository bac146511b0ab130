// Shared by the tests that need a real Postgres. `deno task test` always
// provides DATABASE_URL (a throwaway server when none is given); a bare
// `deno test` without it reports these tests as ignored, with the reason.
import postgres from "postgres";
import { startThrowawayPostgres } from "../tools/postgres_server.ts";
import { fromPostgresJs } from "../src/adapters/postgres_js.ts";
import { recreateTable } from "../src/testing/mod.ts";

export { conformanceOptions, sessionFor, STATEMENT_SETS } from "./_sets.ts";

export const DATABASE_URL = Deno.env.get("DATABASE_URL");

let warned = false;

/** Registers a test that needs Postgres; ignored, loudly, without DATABASE_URL. */
export function dbTest(name: string, fn: () => Promise<void>): void {
  if (!DATABASE_URL && !warned) {
    warned = true;
    console.error(
      "\n*** DATABASE_URL is not set: the Postgres tests are IGNORED. " +
        "Run `deno task test`, which starts a throwaway server. ***\n",
    );
  }
  Deno.test({
    name,
    ignore: !DATABASE_URL,
    // Driver pools keep sockets and timers between statements by design.
    sanitizeOps: false,
    sanitizeResources: false,
    fn,
  });
}

/** Drops and creates `table`, empty, with the harness of `./testing`, on a short-lived connection. */
export async function freshTable(table: string): Promise<void> {
  const executor = fromPostgresJs(connect({ max: 1 }), { owned: true });
  try {
    await recreateTable(executor, { table });
  } finally {
    await executor.close();
  }
}

/** porsager options, plus `max_pipeline`, a real option its types leave out. */
export type ConnectOptions = postgres.Options<Record<string, never>> & { max_pipeline?: number };

/** A porsager pool on DATABASE_URL, quiet about notices. */
export function connect(options: ConnectOptions = {}) {
  return postgres(DATABASE_URL!, {
    max: 20,
    onnotice: () => {},
    ...options as postgres.Options<Record<string, never>>,
  });
}

/** A role on a server that asks for passwords, as {@linkcode withPasswordServer} hands it over. */
export interface PasswordServer {
  /** The server's port. */
  port: number;
  /** A URL for `role` whose password is `wrong`. */
  wrongUrl: URL;
  /** The same URL with the right password. */
  rightUrl: URL;
}

/**
 * Runs `fn` against a throwaway server of its own whose pg_hba.conf asks
 * loopback logins other than `postgres` for a password (the shared server
 * trusts them all), with `role` created; stops and removes it afterwards.
 * When no server can be started, says so loudly and skips `fn`.
 */
export async function withPasswordServer(
  what: string,
  role: string,
  fn: (server: PasswordServer) => Promise<void>,
): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "persist-consensus-hba-" });
  await Deno.chmod(dir, 0o755);
  const hba = `${dir}/pg_hba.conf`;
  await Deno.writeTextFile(
    hba,
    "local all all trust\nhost all postgres 127.0.0.1/32 trust\n" +
      "host all all 127.0.0.1/32 scram-sha-256\n",
  );
  await Deno.chmod(hba, 0o644);
  let server: Awaited<ReturnType<typeof startThrowawayPostgres>> | undefined;
  try {
    try {
      server = await startThrowawayPostgres({ settings: { hba_file: hba } });
    } catch (error) {
      console.error(
        `\n*** SKIPPED ${what}: no throwaway Postgres could be started ` +
          `(${error instanceof Error ? error.message : String(error)}) ***\n`,
      );
      return;
    }
    const admin = postgres(server.url, { max: 1, onnotice: () => {} });
    await admin.unsafe(`CREATE ROLE ${role} LOGIN PASSWORD 'the-right-one'`);
    await admin.end();
    const wrongUrl = new URL(server.url);
    wrongUrl.username = role;
    wrongUrl.password = "hunter2-secret";
    const rightUrl = new URL(wrongUrl.href);
    rightUrl.password = "the-right-one";
    await fn({ port: server.port, wrongUrl, rightUrl });
  } finally {
    await server?.stop();
    await Deno.remove(dir, { recursive: true });
  }
}
