// The coalescing half of `enableTcpNoDelay({ coalesce: true })` (./deno.ts):
// one connection's write buffer and read-ahead buffer, as a class whose
// state a test can read, over the few raw operations of a Deno.Conn. The
// measurements that motivate it are in ./deno.ts's module documentation.

/** The connection's own operations, which the buffers sit in front of. */
export interface RawConn {
  write(p: Uint8Array): Promise<number>;
  read(p: Uint8Array): Promise<number | null>;
  close(): void;
  closeWrite(): Promise<void>;
}

/** Sizes of the buffers; a test makes them small. */
export interface CoalescingOptions {
  /** Bytes read from the socket at once into the read-ahead buffer. @default {65536} */
  readAhead?: number;
  /** Buffered bytes that trigger a send at once. @default {65536} */
  flushAt?: number;
}

const DEFAULT_SIZE = 64 * 1024;

/**
 * Writes are copied into a buffer and reported as written at once; the
 * buffer goes out as one raw write before the next read, on the next
 * macrotask, on close, and as soon as it holds `flushAt` bytes. A failed
 * send is thrown by the next read, write or flush. Reads are served from a
 * `readAhead` buffer filled by one raw read, so a driver that reads a
 * message as header then body costs one system call, and no byte is lost:
 * reads run one at a time, in call order.
 */
export class CoalescingConn {
  readonly #raw: RawConn;
  readonly #readAhead: number;
  readonly #flushAt: number;

  #pending = new Uint8Array(4096);
  #pendingLength = 0;
  #sending: Promise<void> = Promise.resolve();
  #inFlight = 0;
  #failure: { error: unknown } | undefined;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #closed = false;

  #ahead: Uint8Array;
  #aheadStart = 0;
  #aheadEnd = 0;
  #reading: Promise<unknown> = Promise.resolve();

  #writable: WritableStream<Uint8Array> | undefined;
  #readable: ReadableStream<Uint8Array> | undefined;

  constructor(raw: RawConn, options: CoalescingOptions = {}) {
    this.#raw = raw;
    this.#readAhead = options.readAhead ?? DEFAULT_SIZE;
    this.#flushAt = options.flushAt ?? DEFAULT_SIZE;
    this.#ahead = new Uint8Array(this.#readAhead);
  }

  /** Bytes written but not yet handed to the socket. */
  get pendingBytes(): number {
    return this.#pendingLength;
  }

  /** Bytes read from the socket that no read has taken yet. */
  get readAheadBytes(): number {
    return this.#aheadEnd - this.#aheadStart;
  }

  /** Whether a flush timer is armed. */
  get flushScheduled(): boolean {
    return this.#timer !== undefined;
  }

  /** Whether `close()` was called. */
  get closed(): boolean {
    return this.#closed;
  }

  #checkUsable(): void {
    if (this.#failure) throw this.#failure.error;
    if (this.#closed) throw new Deno.errors.BadResource("Cannot use a closed connection");
  }

  async #writeAll(bytes: Uint8Array): Promise<void> {
    let offset = 0;
    while (offset < bytes.length) offset += await this.#raw.write(bytes.subarray(offset));
  }

  /**
   * Hands what is buffered to the socket, after any earlier send; settles
   * when everything buffered so far is sent, and rejects with the first
   * send failure.
   */
  flush(): Promise<void> {
    if (this.#timer !== undefined) {
      clearTimeout(this.#timer);
      this.#timer = undefined;
    }
    if (this.#pendingLength > 0) {
      const bytes = this.#pending.subarray(0, this.#pendingLength);
      this.#pending = new Uint8Array(
        Math.max(4096, Math.min(this.#pending.length, this.#flushAt)),
      );
      this.#pendingLength = 0;
      this.#inFlight++;
      this.#sending = this.#sending
        .then(() => this.#failure ? undefined : this.#writeAll(bytes))
        .catch((error) => {
          this.#failure ??= { error };
        })
        .finally(() => {
          this.#inFlight--;
        });
    }
    return this.#sending.then(() => {
      if (this.#failure) throw this.#failure.error;
    });
  }

  // Copies `chunk` in; returns the flush when the buffer reached `flushAt`.
  #buffer(chunk: Uint8Array): Promise<void> | undefined {
    this.#checkUsable();
    if (this.#pendingLength + chunk.length > this.#pending.length) {
      const grown = new Uint8Array(
        Math.max(this.#pending.length * 2, this.#pendingLength + chunk.length),
      );
      grown.set(this.#pending.subarray(0, this.#pendingLength));
      this.#pending = grown;
    }
    this.#pending.set(chunk, this.#pendingLength);
    this.#pendingLength += chunk.length;
    if (this.#pendingLength >= this.#flushAt) return this.flush();
    // A macrotask, not a microtask: a driver that chains its writes through
    // `await` would otherwise see each one flushed on its own.
    this.#timer ??= setTimeout(() => {
      this.#timer = undefined;
      this.flush().catch(() => {}); // kept in #failure for the next operation
    }, 0);
    return undefined;
  }

  /** Buffers `p` and reports it written in full. */
  async write(p: Uint8Array): Promise<number> {
    await this.#buffer(p);
    return p.length;
  }

  /** Sends what is buffered, then reads into `p` from the read-ahead buffer. */
  read(p: Uint8Array): Promise<number | null> {
    const run = async (): Promise<number | null> => {
      this.#checkUsable();
      await this.flush();
      if (p.length === 0) return 0;
      if (this.#aheadStart === this.#aheadEnd && p.length < this.#readAhead) {
        const n = await this.#raw.read(this.#ahead);
        if (n === null) return null;
        this.#aheadStart = 0;
        this.#aheadEnd = n;
      }
      if (this.#aheadStart < this.#aheadEnd) {
        const n = Math.min(p.length, this.#aheadEnd - this.#aheadStart);
        p.set(this.#ahead.subarray(this.#aheadStart, this.#aheadStart + n));
        this.#aheadStart += n;
        return n;
      }
      // A read as large as the buffer gains nothing from it.
      return await this.#raw.read(p);
    };
    const result = this.#reading.then(run, run);
    this.#reading = result.catch(() => {});
    return result;
  }

  /** Closes the connection once what is buffered is sent. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    const idle = this.#pendingLength === 0 && this.#inFlight === 0;
    const done = this.flush().catch(() => {});
    if (idle) {
      this.#raw.close();
    } else {
      // Bytes a driver wrote just before closing (deno-postgres' Terminate)
      // go out first.
      done.then(() => {
        try {
          this.#raw.close();
        } catch {
          // closed by other means meanwhile
        }
      });
    }
  }

  /** Sends what is buffered, then closes the write side. */
  async closeWrite(): Promise<void> {
    await this.flush();
    await this.#raw.closeWrite();
  }

  /** A stream that writes through the buffer. */
  get writable(): WritableStream<Uint8Array> {
    return this.#writable ??= new WritableStream<Uint8Array>({
      write: (chunk) => this.#buffer(chunk),
      close: async () => {
        await this.flush();
        this.close();
      },
      abort: () => {
        this.#pendingLength = 0;
        this.close();
      },
    });
  }

  /** A stream that reads through the read-ahead buffer. */
  get readable(): ReadableStream<Uint8Array> {
    return this.#readable ??= new ReadableStream<Uint8Array>({
      type: "bytes",
      pull: async (controller) => {
        const chunk = new Uint8Array(this.#readAhead);
        const n = await this.read(chunk);
        if (n === null) {
          controller.close();
          this.close();
        } else {
          controller.enqueue(chunk.subarray(0, n));
        }
      },
      cancel: () => this.close(),
    });
  }

  /**
   * Sends what is buffered and waits for reads under way, so the raw
   * connection can be used directly (`Deno.startTls`). Throws (TypeError)
   * when bytes were read ahead: they belong to whoever reads next.
   */
  async release(): Promise<void> {
    await this.flush();
    await this.#reading;
    if (this.#aheadStart < this.#aheadEnd) {
      throw new TypeError(
        `Cannot start TLS: ${this.#aheadEnd - this.#aheadStart} bytes arrived before the handshake`,
      );
    }
    this.#ahead = new Uint8Array(0);
  }
}
