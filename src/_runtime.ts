// The few host functions the core uses that ECMAScript itself does not
// define. Every runtime this library targets (Deno, Bun, Node, browsers)
// provides them; typing them here keeps the core checkable against a plain
// ES lib, with no runtime's type definitions in scope.
interface Host {
  setTimeout(callback: () => void, ms: number): unknown;
  clearTimeout(id: unknown): void;
  setInterval(callback: () => void, ms: number): unknown;
  clearInterval(id: unknown): void;
  queueMicrotask(callback: () => void): void;
  console?: { warn(message: string): void };
  TextEncoder: new () => { encode(text: string): Uint8Array };
  TextDecoder: new () => { decode(bytes: Uint8Array): string };
  // Leases: a monotonic clock, their signals, and a unique id per attempt.
  // `AbortSignal` is declared for the plain-ES check in tools/core_web.d.ts.
  performance: { now(): number };
  AbortController: new () => { readonly signal: AbortSignal; abort(reason?: unknown): void };
  crypto: { randomUUID(): string };
}

export const host = globalThis as unknown as Host;

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => host.setTimeout(resolve, ms));
}

/**
 * The UTF-8 length of a well-formed string, without encoding it: one byte
 * below U+0080, two below U+0800, four for a surrogate pair, three otherwise.
 */
export function utf8ByteLength(text: string): number {
  let bytes = 0;
  for (let i = 0; i < text.length; i++) {
    const unit = text.charCodeAt(i);
    if (unit < 0x80) bytes += 1;
    else if (unit < 0x800) bytes += 2;
    else if (unit >= 0xd800 && unit <= 0xdbff && i + 1 < text.length) {
      bytes += 4;
      i++;
    } else bytes += 3;
  }
  return bytes;
}
