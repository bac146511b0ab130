/**
 * A throwaway primary and standby on loopback, with streaming replication,
 * for the failover torture mode (`torture/failover.ts`).
 *
 * The primary is initialised with `wal_level=replica`, a `replicator` role
 * with the REPLICATION attribute and a `pg_hba.conf` line that lets it (and
 * only it) replicate from 127.0.0.1; the standby is a `pg_basebackup -R` of
 * it. Every node runs with `cluster_name=standby`, which a walreceiver sends
 * as its `application_name`: with `synchronous: true` the primary lists that
 * name in `synchronous_standby_names` (and `synchronous_commit=on`), so a
 * commit is acknowledged only once the standby has flushed it.
 *
 * The two nodes keep two fixed ports, so one multi-host URL reaches the
 * pair whatever happened: {@linkcode ReplicatedPair.failover} kills the
 * primary (immediate shutdown: SIGQUIT to the postmaster, no checkpoint, the
 * walsender sends nothing more), promotes the standby (`pg_ctl promote`),
 * and builds a new standby from the new primary (`pg_basebackup -R`) on the
 * dead primary's port, so that the next failover can happen.
 *
 * Needs installed binaries with `pg_basebackup` and `pg_ctl` (`$PG_BIN`,
 * else the newest `/usr/lib/postgresql/<major>/bin`). As root the servers
 * run as `postgres` (or `nobody`). SIGINT and SIGTERM stop the servers and
 * remove the directory (`tools/_interrupt.ts`).
 *
 * @module
 */
import { onInterrupt, removeAtInterrupt } from "../tools/_interrupt.ts";

/** Options for {@linkcode startReplicatedPair}. */
export interface ReplicatedPairOptions {
  /** Synchronous replication (`synchronous_standby_names`), else asynchronous. */
  synchronous: boolean;
  /** Receives progress lines. */
  log?: (line: string) => void;
}

/** Timings of one failover, in milliseconds. */
export interface FailoverTimings {
  /** From the kill to the promoted standby accepting writes. */
  promoteMs: number;
  /** From then to the new standby streaming (and, if synchronous, chosen as synchronous). */
  rebuildMs: number;
}

/** A running primary and standby. */
export interface ReplicatedPair {
  /** `postgres://postgres@127.0.0.1:P1,127.0.0.1:P2/postgres?target_session_attrs=primary`. */
  readonly url: string;
  /** The two ports, fixed for the pair's life. */
  readonly ports: readonly [number, number];
  /** The primary's port now. */
  readonly primaryPort: number;
  /** Kills the primary, promotes the standby, rebuilds a standby from it. */
  failover(): Promise<FailoverTimings>;
  /** Stops both servers and removes the directory. */
  stop(): Promise<void>;
}

interface Node {
  port: number;
  dataDir: string;
  child: Deno.ChildProcess;
  exited: Promise<Deno.CommandStatus>;
}

/**
 * The directory of installed binaries with `pg_basebackup` and `pg_ctl`
 * (`$PG_BIN`, else the newest `/usr/lib/postgresql/<major>/bin`), or
 * undefined when there are none.
 */
export async function findReplicationBinaries(): Promise<string | undefined> {
  const candidates: string[] = [];
  const fromEnv = Deno.env.get("PG_BIN");
  if (fromEnv) candidates.push(fromEnv);
  const versions: number[] = [];
  try {
    for await (const entry of Deno.readDir("/usr/lib/postgresql")) {
      if (entry.isDirectory && /^\d+$/.test(entry.name)) versions.push(Number(entry.name));
    }
  } catch {
    // no Debian layout
  }
  for (const version of versions.sort((a, b) => b - a)) {
    candidates.push(`/usr/lib/postgresql/${version}/bin`);
  }
  for (const dir of candidates) {
    const all = await Promise.all(
      ["initdb", "postgres", "pg_ctl", "pg_basebackup"].map((bin) =>
        Deno.stat(`${dir}/${bin}`).then(() => true, () => false)
      ),
    );
    if (all.every(Boolean)) return dir;
  }
  return undefined;
}

function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  return port;
}

async function output(cmd: string, args: string[], cwd?: string): Promise<string> {
  const result = await new Deno.Command(cmd, { args, cwd, stdout: "piped", stderr: "piped" })
    .output();
  if (!result.success) {
    throw new Error(`${cmd} ${args.join(" ")} failed: ${new TextDecoder().decode(result.stderr)}`);
  }
  return new TextDecoder().decode(result.stdout).trim();
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Starts a primary and a streaming standby.
 *
 * @param options Synchronous or asynchronous replication, progress lines.
 * @returns The running pair.
 */
export async function startReplicatedPair(options: ReplicatedPairOptions): Promise<ReplicatedPair> {
  const log = options.log ?? (() => {});
  const binDir = await findReplicationBinaries();
  if (binDir === undefined) {
    throw new Error(
      "No Postgres binaries with pg_basebackup and pg_ctl found (looked in $PG_BIN and " +
        "/usr/lib/postgresql/*/bin): the failover mode needs an installed Postgres",
    );
  }
  const root = await Deno.makeTempDir({ prefix: "persist-consensus-ha-" });
  let prefix: string[] = [];
  let owner: { uid: number; gid: number } | undefined;
  if (Deno.uid() === 0) {
    const user = await output("id", ["-u", "postgres"]).then(() => "postgres", () => "nobody");
    owner = {
      uid: Number(await output("id", ["-u", user])),
      gid: Number(await output("id", ["-g", user])),
    };
    await Deno.chown(root, owner.uid, owner.gid);
    prefix = ["runuser", "-u", user, "--"];
  }
  const run = (bin: string, args: string[]) =>
    prefix.length
      ? output(prefix[0], [...prefix.slice(1), `${binDir}/${bin}`, ...args], root)
      : output(`${binDir}/${bin}`, args, root);

  const nodes: Node[] = [];
  let generation = 0;
  let stopping: Promise<void> | undefined;
  const stop = () =>
    stopping ??= (async () => {
      for (const node of nodes.splice(0)) await kill(node, "SIGINT");
      await Deno.remove(root, { recursive: true }).catch(() => {});
      unregister();
      unremove();
    })();
  const unregister = onInterrupt(stop);
  const unremove = removeAtInterrupt(root);

  const settings = (port: number): Record<string, string> => ({
    listen_addresses: "127.0.0.1",
    port: String(port),
    unix_socket_directories: root,
    max_connections: "200",
    shared_buffers: "64MB",
    wal_level: "replica",
    max_wal_senders: "10",
    wal_keep_size: "256MB",
    hot_standby: "on",
    cluster_name: "standby",
    synchronous_commit: "on",
    // A standby notices a dead primary quickly (not that the harness waits for it).
    wal_receiver_timeout: "5s",
  });

  // Waits for the status line of postmaster.pid to read "ready": accepting
  // connections (a hot standby's too, in Postgres 15).
  async function spawn(dataDir: string, port: number): Promise<Node> {
    const args = ["-D", dataDir];
    for (const [name, value] of Object.entries(settings(port))) args.push("-c", `${name}=${value}`);
    const [cmd, ...rest] = [...prefix, `${binDir}/postgres`, ...args];
    const child = new Deno.Command(cmd, {
      args: rest,
      cwd: root,
      stdout: "null",
      stderr: "piped",
    }).spawn();
    const logFile = await Deno.open(`${root}/server-${port}.log`, { append: true, create: true });
    child.stderr.pipeTo(logFile.writable).catch(() => {});
    const node: Node = { port, dataDir, child, exited: child.status };
    let exited = false;
    node.exited.then(() => exited = true);
    const started = Date.now();
    for (;;) {
      const pidFile = await Deno.readTextFile(`${dataDir}/postmaster.pid`).catch(() => "");
      if (pidFile.split("\n")[7]?.trim() === "ready") break;
      if (exited || Date.now() - started > 60_000) {
        await kill(node, "SIGKILL");
        const text = await Deno.readTextFile(`${root}/server-${port}.log`).catch(() => "");
        throw new Error(
          `Postgres on port ${port} ${exited ? "exited while starting" : "did not start"}:\n` +
            text.slice(-2000),
        );
      }
      await sleep(50);
    }
    return node;
  }

  // Signals the postmaster itself (runuser need not forward signals) and
  // waits for the spawned process to exit.
  async function kill(node: Node, signal: "SIGINT" | "SIGQUIT" | "SIGKILL"): Promise<void> {
    const pid = Number(
      (await Deno.readTextFile(`${node.dataDir}/postmaster.pid`).catch(() => "")).split("\n")[0],
    );
    const send = (s: Deno.Signal) => {
      try {
        if (pid > 0) Deno.kill(pid, s);
        else node.child.kill(s);
      } catch {
        // already gone
      }
    };
    send(signal);
    const timer = setTimeout(() => {
      send("SIGKILL");
      try {
        node.child.kill("SIGKILL");
      } catch {
        // already gone
      }
    }, 10_000);
    await node.exited;
    clearTimeout(timer);
  }

  const newDataDir = () => `${root}/data${generation++}`;

  const sql = (port: number, statement: string) =>
    run("psql", [
      "-X",
      "-q",
      "-A",
      "-t",
      "-h",
      "127.0.0.1",
      "-p",
      String(port),
      "-U",
      "postgres",
      "-d",
      "postgres",
      "-v",
      "ON_ERROR_STOP=1",
      "-c",
      statement,
    ]);

  // Builds a standby of the primary on `port` and waits until it streams
  // (and, when synchronous, until the primary counts it as synchronous).
  async function buildStandby(primary: Node, port: number): Promise<Node> {
    const dataDir = newDataDir();
    await run("pg_basebackup", [
      "-h",
      "127.0.0.1",
      "-p",
      String(primary.port),
      "-U",
      "replicator",
      "-D",
      dataDir,
      "-R",
      "-X",
      "stream",
      "-c",
      "fast",
      "--no-sync",
    ]);
    const standby = await spawn(dataDir, port);
    const want = options.synchronous ? "sync" : "async";
    const started = Date.now();
    for (;;) {
      const state = await sql(
        primary.port,
        "SELECT sync_state FROM pg_stat_replication WHERE state = 'streaming' " +
          "AND application_name = 'standby'",
      ).catch(() => "");
      if (state.split("\n").includes(want)) break;
      if (Date.now() - started > 60_000) {
        throw new Error(`The standby on port ${port} did not stream (${want}) within 60 s`);
      }
      await sleep(50);
    }
    return standby;
  }

  try {
    const ports: [number, number] = [freePort(), freePort()];
    while (ports[1] === ports[0]) ports[1] = freePort();
    const first = newDataDir();
    log(`initdb ${first} (binaries: ${binDir})`);
    await run("initdb", [
      "-D",
      first,
      "-U",
      "postgres",
      "--auth=trust",
      "-E",
      "UTF8",
      "--locale=C",
      "--no-sync",
    ]);
    // Loopback only; replication only for the replicator role.
    await Deno.writeTextFile(
      `${first}/pg_hba.conf`,
      [
        "local all all trust",
        "host all all 127.0.0.1/32 trust",
        "host replication replicator 127.0.0.1/32 trust",
        "",
      ].join("\n"),
    );
    if (owner) await Deno.chown(`${first}/pg_hba.conf`, owner.uid, owner.gid);
    nodes.push(await spawn(first, ports[0]));
    await sql(ports[0], "CREATE ROLE replicator WITH REPLICATION LOGIN");
    // Only now (a commit would wait for the standby that does not exist yet),
    // and in postgresql.conf, which every standby's base backup copies.
    if (options.synchronous) {
      await Deno.writeTextFile(
        `${first}/postgresql.conf`,
        "\nsynchronous_standby_names = 'standby'\n",
        { append: true },
      );
      await sql(ports[0], "SELECT pg_reload_conf()");
    }
    log(
      `primary on 127.0.0.1:${ports[0]}, building a ${
        options.synchronous ? "synchronous" : "asynchronous"
      } standby on 127.0.0.1:${ports[1]}`,
    );
    nodes.push(await buildStandby(nodes[0], ports[1]));

    return {
      url: `postgres://postgres@127.0.0.1:${ports[0]},127.0.0.1:${
        ports[1]
      }/postgres?target_session_attrs=primary`,
      ports,
      get primaryPort() {
        return nodes[0].port;
      },
      async failover() {
        const [primary, standby] = nodes;
        const killed = performance.now();
        await kill(primary, "SIGQUIT");
        // -w: returns once the standby left recovery and takes writes.
        await run("pg_ctl", ["promote", "-w", "-t", "60", "-D", standby.dataDir]);
        const promoted = performance.now();
        await Deno.remove(primary.dataDir, { recursive: true });
        nodes.splice(0, 2, standby);
        nodes.push(await buildStandby(standby, primary.port));
        return { promoteMs: promoted - killed, rebuildMs: performance.now() - promoted };
      },
      stop,
    };
  } catch (error) {
    await stop();
    throw error;
  }
}
