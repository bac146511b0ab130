// Offline stand-in for the parts of jsr:@std/assert these tests use, over
// node:assert/strict. It exists because the machines this project is built
// and tested on reach the npm registry but not JSR; tools/test.ts maps
// "@std/assert" here only when jsr:@std/assert cannot be resolved, and says
// so loudly. Everywhere JSR is reachable the real @std/assert runs.
import assert from "node:assert/strict";

export function assertEquals<T>(actual: T, expected: T, msg?: string): void {
  assert.deepStrictEqual(actual, expected, msg);
}

export function assertNotEquals<T>(actual: T, expected: T, msg?: string): void {
  assert.notDeepStrictEqual(actual, expected, msg);
}

export function assert_(expr: unknown, msg = ""): asserts expr {
  assert.ok(expr, msg);
}
export { assert_ as assert };

export function assertStrictEquals<T>(actual: T, expected: T, msg?: string): void {
  assert.strictEqual(actual, expected, msg);
}

export function assertMatch(actual: string, expected: RegExp, msg?: string): void {
  assert.match(actual, expected, msg);
}

export function assertStringIncludes(actual: string, expected: string, msg?: string): void {
  assert.ok(
    actual.includes(expected),
    msg ?? `Expected ${JSON.stringify(actual)} to include ${JSON.stringify(expected)}`,
  );
}

export function assertInstanceOf<T extends abstract new (...args: never[]) => unknown>(
  actual: unknown,
  expectedType: T,
  msg?: string,
): asserts actual is InstanceType<T> {
  assert.ok(actual instanceof expectedType, msg ?? `Expected an instance of ${expectedType.name}`);
}

export function assertThrows(
  fn: () => unknown,
  // deno-lint-ignore no-explicit-any
  errorClass?: abstract new (...args: any[]) => Error,
  msgIncludes?: string,
): Error {
  try {
    fn();
  } catch (error) {
    check(error, errorClass, msgIncludes);
    return error as Error;
  }
  throw new assert.AssertionError({ message: "Expected function to throw" });
}

export async function assertRejects(
  fn: () => PromiseLike<unknown>,
  // deno-lint-ignore no-explicit-any
  errorClass?: abstract new (...args: any[]) => Error,
  msgIncludes?: string,
): Promise<Error> {
  try {
    await fn();
  } catch (error) {
    check(error, errorClass, msgIncludes);
    return error as Error;
  }
  throw new assert.AssertionError({ message: "Expected function to reject" });
}

function check(
  error: unknown,
  // deno-lint-ignore no-explicit-any
  errorClass?: abstract new (...args: any[]) => Error,
  msgIncludes?: string,
): void {
  if (errorClass && !(error instanceof errorClass)) {
    throw new assert.AssertionError({
      message: `Expected error to be instance of "${errorClass.name}", but was "${
        (error as Error)?.name
      }": ${(error as Error)?.message}`,
    });
  }
  if (msgIncludes !== undefined && !(error as Error).message.includes(msgIncludes)) {
    throw new assert.AssertionError({
      message: `Expected error message to include ${JSON.stringify(msgIncludes)}, but got ${
        JSON.stringify((error as Error).message)
      }`,
    });
  }
}
