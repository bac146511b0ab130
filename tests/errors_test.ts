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

// Each case list is checked as a whole, so a failure shows every case that leaks at once.
const redactAll = (cases: [string, string][]) =>
  assertEquals(cases.map(([input]) => redactSecrets(input)), cases.map(([, expected]) => expected));

Deno.test("redactSecrets hides a URL password with an unencoded @ up to the last @ of that URL", () => {
  redactAll([
    [
      "postgres://app:p@ss@w0rd@127.0.0.1:5432/app",
      "postgres://app:***@127.0.0.1:5432/app",
    ],
    ["cockroachdb://root:@@@db:26257/x", "cockroachdb://root:***@db:26257/x"],
    // Whitespace ends a URL: an address later in the message stays.
    [
      "cannot reach postgres://app:p@ss@db/app; mail admin@example.com",
      "cannot reach postgres://app:***@db/app; mail admin@example.com",
    ],
    // So does the next connection URL, with or without a space before it.
    [
      "postgres://a:x@y@h1/db postgresql://b:s@cr3t@h2/db",
      "postgres://a:***@h1/db postgresql://b:***@h2/db",
    ],
    [
      "postgres://a:x@y@h1/db,postgresql://b:s@cr3t@h2/db",
      "postgres://a:***@h1/db,postgresql://b:***@h2/db",
    ],
    // Already redacted text is left as it is.
    ["postgres://app:***@db/app", "postgres://app:***@db/app"],
  ]);
});

Deno.test("redactSecrets hides quoted keyword passwords, with spaces and escaped quotes", () => {
  redactAll([
    ["host=db password='a b' user=app", "host=db password=*** user=app"],
    ["host=db password = 'it\\'s a secret' user=app", "host=db password = *** user=app"],
    ['host=db password="a b c" user=app', "host=db password=*** user=app"],
    ['host=db password="say \\"hi\\" now" user=app', "host=db password=*** user=app"],
    ["host=db password=a\\ b user=app", "host=db password=*** user=app"],
    ["host=db sslpassword='key pass' user=app", "host=db sslpassword=*** user=app"],
    // A message cut inside a quoted password hides the rest of it.
    ["host=db password='a b", "host=db password=***"],
    ["host=db password='a b\\", "host=db password=***"],
    ["password authentication failed for user app", "password authentication failed for user app"],
  ]);
});

Deno.test("redactSecrets hides PGPASSWORD assignments, quoted or not", () => {
  redactAll([
    ["PGPASSWORD=secret psql -h db", "PGPASSWORD=*** psql -h db"],
    ["export PGPASSWORD=secret\npsql -h db", "export PGPASSWORD=***\npsql -h db"],
    ["export PGPASSWORD='a b'\npsql", "export PGPASSWORD=***\npsql"],
    ['PGPASSWORD="a b" psql', "PGPASSWORD=*** psql"],
    ["PGPASSWORD='it'\\''s' psql", "PGPASSWORD=*** psql"],
    ["env pgpassword=secret psql", "env pgpassword=*** psql"],
  ]);
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
