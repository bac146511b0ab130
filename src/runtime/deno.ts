/**
 * Deno runtime helpers. The core and the driver adapters are
 * runtime-neutral; what only Deno needs lives here.
 *
 * @module
 */

const INSTALLED = Symbol.for("@persist/consensus/tcp-no-delay");

type Connect = typeof Deno.connect;

/**
 * Makes `Deno.connect` set TCP_NODELAY on every TCP connection it opens from
 * now on, including those later upgraded with `Deno.startTls`, until the
 * returned handle is disposed.
 *
 * Why: deno-postgres 0.19 writes each message of a parameterised query as
 * its own socket write and offers no hook into its sockets. With Nagle's
 * algorithm on (Deno's default) every such query waits for the server's
 * delayed ACK, about 40 ms on Linux: measured 44 ms per statement over TCP,
 * 0.4 ms with this helper (Deno 2.9.6, local Postgres 15). Go and Node's
 * HTTP client turn Nagle off by default for the same reason; the cost is
 * more, smaller packets for programs that write in small pieces without
 * waiting for a reply, which a database client does not.
 *
 * It changes a global, so it is opt-in: call it once at start-up, before the
 * pool opens its connections. Calling it again while it is on changes
 * nothing. Connections reached over a Unix socket are not affected (and do
 * not need it).
 *
 * @returns A handle whose disposal puts the original `Deno.connect` back
 * (connections already open keep the option).
 * @throws {TypeError} When `Deno.connect` cannot be replaced.
 *
 * @example Turn it on for the lifetime of a scope
 * ```ts
 * import { enableTcpNoDelay } from "@persist/consensus/deno";
 *
 * {
 *   using _noDelay = enableTcpNoDelay();
 *   // new Pool(...) and PostgresConsensus.open(fromDenoPostgres(pool)) here
 * }
 * ```
 */
export function enableTcpNoDelay(): Disposable {
  const current = Deno.connect as Connect & { [INSTALLED]?: true };
  if (current[INSTALLED]) return { [Symbol.dispose]() {} };
  const original = current;
  const connect = async function connect(
    options: Parameters<Connect>[0],
  ): Promise<Deno.Conn> {
    const conn = await (original as (options: unknown) => Promise<Deno.Conn>)(options);
    const tcp = conn as Partial<Deno.TcpConn>;
    if (conn.remoteAddr.transport === "tcp" && typeof tcp.setNoDelay === "function") {
      tcp.setNoDelay(true);
    }
    return conn;
  } as unknown as Connect & { [INSTALLED]?: true };
  connect[INSTALLED] = true;
  const deno = Deno as { connect: Connect };
  try {
    deno.connect = connect;
  } catch (error) {
    throw new TypeError("Cannot enable TCP_NODELAY: Deno.connect cannot be replaced", {
      cause: error,
    });
  }
  if (deno.connect !== connect) {
    throw new TypeError("Cannot enable TCP_NODELAY: Deno.connect cannot be replaced");
  }
  return {
    [Symbol.dispose]() {
      if (deno.connect === connect) deno.connect = original;
    },
  };
}
