/**
 * A TCP proxy on 127.0.0.1 in front of the server, for network faults in
 * the middle of a statement:
 * - `stall(ms)`: stop forwarding in both directions (bytes wait in the
 *   kernel's buffers), then go on, as a congested or partitioned link does;
 * - `cutMidStatement(n)`: the next `n` messages a client sends that carry a
 *   statement (Parse, Bind, Execute or Query) are cut: either forwarded
 *   whole and then both sockets closed before the reply (the server may
 *   commit, the client cannot know), or only half forwarded (the server
 *   never runs it, the client cannot know either).
 *
 * Loopback only; every fault is bounded and the proxy stops with `close()`.
 *
 * @module
 */

/** What the proxy did, for reports. */
export interface ProxyStats {
  connections: number;
  stalls: number;
  cutsAfterSend: number;
  cutsHalfSent: number;
}

// Frontend message types that start or carry a statement.
const STATEMENT_MESSAGES = new Set([0x50, 0x42, 0x45, 0x51]); // P B E Q

/** The proxy; start it with {@linkcode ChaosProxy.start}. */
export class ChaosProxy {
  readonly port: number;
  readonly stats: ProxyStats = { connections: 0, stalls: 0, cutsAfterSend: 0, cutsHalfSent: 0 };
  readonly #listener: Deno.Listener;
  readonly #targetPort: number;
  readonly #pairs = new Set<{ client: Deno.Conn; server: Deno.Conn }>();
  #stalledUntil = 0;
  #armedCuts = 0;
  #closed = false;

  private constructor(listener: Deno.Listener, targetPort: number) {
    this.#listener = listener;
    this.port = (listener.addr as Deno.NetAddr).port;
    this.#targetPort = targetPort;
  }

  /** Listens on a free loopback port, forwarding to `127.0.0.1:targetPort`. */
  static start(targetPort: number): ChaosProxy {
    const proxy = new ChaosProxy(Deno.listen({ hostname: "127.0.0.1", port: 0 }), targetPort);
    proxy.#accept();
    return proxy;
  }

  async #accept(): Promise<void> {
    for (;;) {
      let client: Deno.Conn;
      try {
        client = await this.#listener.accept();
      } catch {
        return; // closed
      }
      this.#connect(client);
    }
  }

  async #connect(client: Deno.Conn): Promise<void> {
    let server: Deno.Conn;
    try {
      server = await Deno.connect({ hostname: "127.0.0.1", port: this.#targetPort });
    } catch {
      close(client);
      return;
    }
    const pair = { client, server };
    this.#pairs.add(pair);
    this.stats.connections++;
    const end = () => {
      this.#pairs.delete(pair);
      close(client);
      close(server);
    };
    this.#pump(client, server, true, end).finally(end);
    this.#pump(server, client, false, end).finally(end);
  }

  async #pump(from: Deno.Conn, to: Deno.Conn, upstream: boolean, end: () => void) {
    const buffer = new Uint8Array(64 * 1024);
    for (;;) {
      const n = await from.read(buffer).catch(() => null);
      if (n === null || this.#closed) return;
      while (performance.now() < this.#stalledUntil) {
        const wait = Math.max(1, this.#stalledUntil - performance.now());
        await new Promise((resolve) => setTimeout(resolve, wait));
      }
      let chunk = buffer.subarray(0, n);
      let cut = false;
      if (upstream && this.#armedCuts > 0 && STATEMENT_MESSAGES.has(chunk[0])) {
        this.#armedCuts--;
        cut = true;
        if (Math.random() < 0.5) {
          chunk = chunk.subarray(0, Math.max(1, n >> 1));
          this.stats.cutsHalfSent++;
        } else {
          this.stats.cutsAfterSend++;
        }
      }
      try {
        for (let written = 0; written < chunk.length;) {
          written += await to.write(chunk.subarray(written));
        }
      } catch {
        return;
      }
      if (cut) {
        end();
        return;
      }
    }
  }

  /** Stops forwarding for `ms` milliseconds. */
  stall(ms: number): void {
    this.stats.stalls++;
    this.#stalledUntil = Math.max(this.#stalledUntil, performance.now() + ms);
  }

  /** Cuts the connections carrying the next `count` statements. */
  cutMidStatement(count: number): void {
    this.#armedCuts += count;
  }

  /** Statements armed to be cut and not cut yet. */
  get pendingCuts(): number {
    return this.#armedCuts;
  }

  /** Disarms pending cuts (so a fault never outlives its window). */
  disarm(): void {
    this.#armedCuts = 0;
  }

  /** Stops listening and closes every connection. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#stalledUntil = 0;
    close(this.#listener);
    for (const { client, server } of this.#pairs) {
      close(client);
      close(server);
    }
    this.#pairs.clear();
  }
}

function close(resource: { close(): void }): void {
  try {
    resource.close();
  } catch {
    // already closed
  }
}
