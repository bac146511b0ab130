/**
 * Deno runtime helpers. The core and the driver adapters are
 * runtime-neutral; what only Deno needs lives here.
 *
 * **Experimental.** {@linkcode enableTcpNoDelay} replaces the globals
 * `Deno.connect` and `Deno.startTls` and patches the connections they hand
 * out; it exists for deno-postgres 0.19, which offers no hook into its
 * sockets. Its options and behaviour may change, or it may go away once the
 * driver sets TCP_NODELAY itself, in any release; pin the version if you use
 * it. The coalescing wrapper is `CoalescingConn` in `./_coalescing.ts`.
 *
 * ## Why deno-postgres needs help over TCP
 *
 * deno-postgres 0.19 offers no hook into its sockets. It writes each message
 * of a parameterised statement (Parse, Bind, Describe, Execute, Sync) as its
 * own socket write, reads each reply message as two socket reads (header,
 * then body), and leaves Nagle's algorithm on. {@linkcode enableTcpNoDelay}
 * fixes that from the outside, for the connections it is told about:
 *
 * - TCP_NODELAY (always): without it each statement waits for the server's
 *   delayed ACK.
 * - `coalesce: true` (opt-in): writes are gathered in memory and sent as one
 *   write when the connection next reads (or on the next macrotask, on
 *   close, or past 64 KiB), and reads are served from 64 KiB read-ahead
 *   chunks. A statement then costs one socket write and usually one read.
 *
 * What each costs and saves, measured: BENCHMARKS.md, "deno-postgres over
 * TCP".
 *
 * @module
 */

import { CoalescingConn } from "./_coalescing.ts";

const STATE = Symbol.for("@persist/consensus/deno-tcp-tuning");

type Connect = typeof Deno.connect;
type StartTls = typeof Deno.startTls;

/**
 * Options for {@linkcode enableTcpNoDelay}: which connections it tunes, and
 * how.
 *
 * @experimental
 *
 * @example Only the database's connections, with coalescing
 * ```ts
 * import type { TcpTuningOptions } from "@persist/consensus/deno";
 *
 * const options: TcpTuningOptions = { hostnames: ["db.internal"], ports: [5432], coalesce: true };
 * ```
 */
export interface TcpTuningOptions {
  /**
   * Tune only TCP connections opened to one of these hostnames, compared
   * case-insensitively with the `hostname` given to `Deno.connect` (which
   * defaults to `"127.0.0.1"`). Every hostname when omitted.
   *
   * @default {undefined}
   */
  hostnames?: readonly string[];
  /**
   * Tune only TCP connections opened to one of these ports. Every port when
   * omitted.
   *
   * @default {undefined}
   */
  ports?: readonly number[];
  /**
   * Also coalesce the connection's writes and read ahead on it (see
   * {@linkcode enableTcpNoDelay}). Meant for request-response clients such
   * as deno-postgres that write a request in pieces and then read the
   * reply.
   *
   * @default {false}
   */
  coalesce?: boolean;
}

interface Rule {
  readonly hostnames?: ReadonlySet<string>;
  readonly ports?: ReadonlySet<number>;
  readonly coalesce: boolean;
}

interface Installed {
  readonly rules: Set<Rule>;
  readonly connect: Connect;
  readonly startTls: StartTls;
  readonly originalConnect: Connect;
  readonly originalStartTls: StartTls;
}

/** What a coalesced connection needs to be handed to `Deno.startTls`. */
interface Coalesced {
  /** Flushes, then removes the instance's patches; throws if bytes were read ahead. */
  detach(): Promise<void>;
}

const coalesced = new WeakMap<object, Coalesced>();

type Deno_ = { connect: Connect; startTls: StartTls; [STATE]?: Installed };

/**
 * Makes `Deno.connect` set TCP_NODELAY on the TCP connections it opens from
 * now on, to the given hostnames and ports (every TCP connection when none
 * are given), including those later upgraded with `Deno.startTls`, until
 * the returned handle is disposed. With `coalesce: true` it also coalesces
 * their writes and reads ahead on them; a connection upgraded to TLS keeps
 * that on its TLS stream.
 *
 * Why: deno-postgres 0.19 writes each message of a parameterised statement
 * as its own socket write and offers no hook into its sockets; see the
 * module documentation for the measurements. TCP_NODELAY is what Go and
 * Node's HTTP client use by default; its cost is more, smaller packets for
 * programs that write in small pieces without waiting for a reply, which a
 * database client does not.
 *
 * Coalescing keeps the connection object itself (so `Deno.startTls(conn)`
 * still works) and patches its `write`, `writable`, `read`, `readable`,
 * `close`, `closeWrite` and `[Symbol.dispose]`:
 * - writes are copied into a buffer and reported as fully written at once;
 *   the buffer is sent as one write before the connection's next read, on
 *   the next macrotask (a timer, so that writes chained through `await` go
 *   out together), on close, and as soon as it holds 64 KiB;
 * - a failed send is thrown by the next read, write or flush;
 * - reads are served from a 64 KiB read-ahead buffer, and `readable` reads
 *   through it, so no byte is lost;
 * - while the handle is live, `Deno.startTls` flushes a coalesced
 *   connection before the handshake and refuses (`TypeError`) one on which
 *   bytes arrived ahead of it (as libpq refuses unencrypted data after the
 *   server's SSL response).
 *
 * It changes globals (`Deno.connect`, `Deno.startTls`), so it is opt-in: call
 * it at start-up, before the pool opens its connections. Calls nest: each
 * handle adds its own selection, a connection takes the union of those that
 * match it, calling it twice with the same options changes nothing more,
 * and the original functions come back when the last handle is disposed.
 * Connections already open keep their tuning. Unix-socket connections are
 * never touched (and do not need it).
 *
 * Experimental: it patches globals, and may change or go away in any
 * release (see the module documentation).
 *
 * @experimental
 * @param options Which TCP connections to tune, and whether to coalesce.
 * @returns A handle whose disposal withdraws this call's selection.
 * @throws {TypeError} When `Deno.connect` or `Deno.startTls` cannot be
 * replaced, or an option is malformed.
 *
 * @example TCP_NODELAY on every new TCP connection, for a scope
 * ```ts
 * import { enableTcpNoDelay } from "@persist/consensus/deno";
 *
 * {
 *   using _noDelay = enableTcpNoDelay();
 *   // new Pool(...) and PostgresConsensus.open(fromDenoPostgres(pool)) here
 * }
 * ```
 *
 * @example deno-postgres with TCP_NODELAY and coalescing, only for the database
 * ```ts ignore
 * import { Pool } from "jsr:@db/postgres@^0.19.5";
 * import { PostgresConsensus } from "@persist/consensus";
 * import { enableTcpNoDelay } from "@persist/consensus/deno";
 * import { fromDenoPostgres } from "@persist/consensus/deno-postgres";
 *
 * const url = new URL(Deno.env.get("DATABASE_URL")!);
 * using _tuned = enableTcpNoDelay({
 *   hostnames: [url.hostname],
 *   ports: [Number(url.port || 5432)],
 *   coalesce: true,
 * });
 * const pool = new Pool(url.href, 10, true);
 * await using store = await PostgresConsensus.open(fromDenoPostgres(pool, { owned: true }));
 * console.log(await store.head("orders"));
 * ```
 */
export function enableTcpNoDelay(options: TcpTuningOptions = {}): Disposable {
  const rule = toRule(options);
  const installed = install();
  installed.rules.add(rule);
  let disposed = false;
  return {
    [Symbol.dispose]() {
      if (disposed) return;
      disposed = true;
      installed.rules.delete(rule);
      if (installed.rules.size > 0) return;
      const deno = Deno as unknown as Deno_;
      if (deno[STATE] === installed) delete deno[STATE];
      if (deno.connect === installed.connect) deno.connect = installed.originalConnect;
      if (deno.startTls === installed.startTls) deno.startTls = installed.originalStartTls;
    },
  };
}

function toRule(options: TcpTuningOptions): Rule {
  const { hostnames, ports, coalesce = false } = options;
  if (hostnames !== undefined) {
    for (const hostname of hostnames) {
      if (typeof hostname !== "string" || hostname === "") {
        throw new TypeError(`Cannot tune TCP connections: invalid hostname ${String(hostname)}`);
      }
    }
  }
  if (ports !== undefined) {
    for (const port of ports) {
      if (!Number.isInteger(port) || port < 0 || port > 65535) {
        throw new TypeError(`Cannot tune TCP connections: invalid port ${String(port)}`);
      }
    }
  }
  return {
    hostnames: hostnames && new Set(hostnames.map((h) => h.toLowerCase())),
    ports: ports && new Set(ports),
    coalesce: coalesce === true,
  };
}

function install(): Installed {
  const deno = Deno as unknown as Deno_;
  const existing = deno[STATE];
  if (existing && deno.connect === existing.connect && deno.startTls === existing.startTls) {
    return existing;
  }
  const originalConnect = deno.connect;
  const originalStartTls = deno.startTls;
  const rules = new Set<Rule>();

  const connect = async function connect(options: Deno.ConnectOptions): Promise<Deno.Conn> {
    const conn = await (originalConnect as (options: unknown) => Promise<Deno.Conn>)(options);
    if ((options.transport ?? "tcp") !== "tcp" || conn.remoteAddr.transport !== "tcp") return conn;
    const hostname = (options.hostname ?? "127.0.0.1").toLowerCase();
    let matched = false;
    let coalesce = false;
    for (const rule of rules) {
      if (rule.hostnames && !rule.hostnames.has(hostname)) continue;
      if (rule.ports && !rule.ports.has(options.port)) continue;
      matched = true;
      coalesce ||= rule.coalesce;
    }
    if (!matched) return conn;
    const tcp = conn as Partial<Deno.TcpConn>;
    if (typeof tcp.setNoDelay === "function") tcp.setNoDelay(true);
    if (coalesce) coalesceConn(conn);
    return conn;
  } as unknown as Connect;

  const startTls = async function startTls(
    conn: Deno.TcpConn,
    options?: Deno.StartTlsOptions,
  ): Promise<Deno.TlsConn> {
    const tuned = coalesced.get(conn);
    if (tuned === undefined) return await originalStartTls(conn, options);
    await tuned.detach();
    const tls = await originalStartTls(conn, options);
    coalesceConn(tls);
    return tls;
  } as StartTls;

  try {
    deno.connect = connect;
    deno.startTls = startTls;
  } catch (error) {
    deno.connect = originalConnect;
    throw new TypeError(
      "Cannot tune TCP connections: Deno.connect or Deno.startTls cannot be replaced",
      { cause: error },
    );
  }
  if (deno.connect !== connect || deno.startTls !== startTls) {
    throw new TypeError(
      "Cannot tune TCP connections: Deno.connect or Deno.startTls cannot be replaced",
    );
  }
  const installed = { rules, connect, startTls, originalConnect, originalStartTls };
  deno[STATE] = installed;
  return installed;
}

/**
 * Patches one connection instance so that its operations go through a
 * {@linkcode CoalescingConn} (`./_coalescing.ts`): writes are buffered until
 * its next read (or a timer, close, or 64 KiB), reads come from a read-ahead
 * buffer.
 */
function coalesceConn(conn: Deno.Conn): void {
  // The prototype's methods, bound to this instance; the patches below are
  // own properties, so deleting them restores the originals.
  const proto = Object.getPrototypeOf(conn);
  const buffers = new CoalescingConn({
    write: (p) => proto.write.call(conn, p),
    read: (p) => proto.read.call(conn, p),
    close: () => proto.close.call(conn),
    closeWrite: () => proto.closeWrite.call(conn),
  });
  const method = (value: unknown): PropertyDescriptor => ({
    configurable: true,
    writable: true,
    value,
  });
  const patches: PropertyDescriptorMap = {
    write: method((p: Uint8Array) => buffers.write(p)),
    read: method((p: Uint8Array) => buffers.read(p)),
    close: method(() => buffers.close()),
    // `using conn` closes through here, so it too sends what is buffered.
    [Symbol.dispose]: method(() => buffers.close()),
    closeWrite: method(() => buffers.closeWrite()),
    writable: { configurable: true, get: () => buffers.writable },
    readable: { configurable: true, get: () => buffers.readable },
  };
  Object.defineProperties(conn, patches);
  const target = conn as unknown as Record<PropertyKey, unknown>;
  coalesced.set(conn, {
    async detach() {
      await buffers.release();
      for (const key of Reflect.ownKeys(patches)) delete target[key];
      coalesced.delete(conn);
    },
  });
}
