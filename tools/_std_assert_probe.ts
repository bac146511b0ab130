// Resolved by tools/test.ts to learn whether jsr:@std/assert is reachable.
export { assert } from "@std/assert";
