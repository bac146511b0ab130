// Minimal assertions for the conformance suite, with no dependencies, so the
// suite runs unchanged under Deno, Bun and Node test runners.

/**
 * An assertion in the conformance suite failed.
 *
 * @example Usage
 * ```ts
 * import { ConformanceFailure } from "@persist/consensus/testing";
 *
 * const failure = new ConformanceFailure("head: expected 2n, got 1n");
 * if (failure.name !== "ConformanceFailure") throw new Error("unexpected");
 * ```
 */
export class ConformanceFailure extends Error {
  /**
   * Creates a failure.
   *
   * @param message What was expected and what happened.
   */
  constructor(message: string) {
    super(message);
    this.name = "ConformanceFailure";
  }
}

function show(value: unknown): string {
  if (typeof value === "bigint") return `${value}n`;
  if (value instanceof Uint8Array) {
    const head = Array.from(value.subarray(0, 16)).join(",");
    return `Uint8Array(${value.byteLength})[${head}${value.byteLength > 16 ? ",..." : ""}]`;
  }
  if (Array.isArray(value)) return `[${value.map(show).join(", ")}]`;
  if (value && typeof value === "object") {
    return `{ ${Object.entries(value).map(([k, v]) => `${k}: ${show(v)}`).join(", ")} }`;
  }
  return JSON.stringify(value) ?? String(value);
}

function equal(a: unknown, b: unknown): boolean {
  if (Object.is(a, b)) return true;
  if (a instanceof Uint8Array && b instanceof Uint8Array) {
    if (a.byteLength !== b.byteLength) return false;
    for (let i = 0; i < a.byteLength; i++) if (a[i] !== b[i]) return false;
    return true;
  }
  if (Array.isArray(a) && Array.isArray(b)) {
    return a.length === b.length && a.every((item, i) => equal(item, b[i]));
  }
  if (a && b && typeof a === "object" && typeof b === "object") {
    const keysA = Object.keys(a);
    const keysB = Object.keys(b);
    return keysA.length === keysB.length &&
      keysA.every((k) =>
        equal((a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k])
      );
  }
  return false;
}

export function assertEquals(actual: unknown, expected: unknown, message = ""): void {
  if (!equal(actual, expected)) {
    throw new ConformanceFailure(
      `${message ? message + ": " : ""}expected ${show(expected)}, got ${show(actual)}`,
    );
  }
}

export function assert(condition: unknown, message: string): asserts condition {
  if (!condition) throw new ConformanceFailure(message);
}

export async function assertRejects(
  fn: () => Promise<unknown>,
  errorClass: abstract new (...args: never[]) => Error,
  includes: string,
  message = "",
): Promise<Error> {
  let thrown: unknown;
  try {
    await fn();
  } catch (error) {
    thrown = error;
  }
  const label = message ? `${message}: ` : "";
  if (thrown === undefined) {
    throw new ConformanceFailure(`${label}expected ${errorClass.name}, but it resolved`);
  }
  if (!(thrown instanceof errorClass)) {
    throw new ConformanceFailure(
      `${label}expected ${errorClass.name}, got ${(thrown as Error)?.name}: ${
        (thrown as Error)?.message
      }`,
    );
  }
  if (!thrown.message.includes(includes)) {
    throw new ConformanceFailure(
      `${label}expected the message to include ${JSON.stringify(includes)}, got ${
        JSON.stringify(thrown.message)
      }`,
    );
  }
  return thrown;
}
