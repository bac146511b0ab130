import { assert, assertEquals, assertStringIncludes } from "@std/assert";
import { ConsensusError, redactSecrets, SqlError } from "../mod.ts";
import { classify } from "../src/_classify.ts";

Deno.test("redactSecrets removes passwords from URLs and keyword strings", () => {
  const cases: [string, string][] = [
    ["postgres://app:hunter2@db:5432/x", "postgres://app:***@db:5432/x"],
    ["postgresql://app:p%40ss@db/x failed", "postgresql://app:***@db/x failed"],
    ["host=db password=hunter2 user=app", "host=db password=*** user=app"],
    ["host=db password='a b c' user=app", "host=db password=*** user=app"],
    [
      "postgres://db/x?user=app&password=hunter2&ssl=1",
      "postgres://db/x?user=app&password=***&ssl=1",
    ],
    ["postgres://app@db/x", "postgres://app@db/x"],
  ];
  for (const [input, expected] of cases) assertEquals(redactSecrets(input), expected);
});

Deno.test("ConsensusError redacts its message", () => {
  const error = new ConsensusError("cannot reach postgres://u:secret@h/db", { determinate: false });
  assert(!error.message.includes("secret"));
  assertStringIncludes(error.message, "u:***@h");
});

Deno.test("classify: retryable, determinate and indeterminate failures", () => {
  const table: [SqlError | Error, boolean, boolean][] = [
    [new SqlError("serialization", { code: "40001" }), true, true],
    [new SqlError("deadlock", { code: "40P01" }), true, true],
    [new SqlError("unique", { code: "23505" }), false, true],
    [new SqlError("permission", { code: "42501" }), false, true],
    [new SqlError("no table", { code: "42P01" }), false, true],
    [new SqlError("admin shutdown", { code: "57P01" }), false, false],
    [new SqlError("crash shutdown", { code: "57P02" }), false, false],
    [new SqlError("cancelled", { code: "57014" }), false, false],
    [new SqlError("cockroach ambiguous", { code: "40003" }), false, false],
    [new SqlError("internal", { code: "XX000" }), false, false],
    [new SqlError("reset", { connectionLost: true }), false, false],
    [new SqlError("no code"), false, false],
    [new Error("not normalised"), false, false],
  ];
  for (const [error, retry, determinate] of table) {
    const result = classify(error);
    assertEquals(result.retry, retry, `${error.message}: retry`);
    assertEquals(result.determinate, determinate, `${error.message}: determinate`);
  }
});
