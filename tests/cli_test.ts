// The operator CLI as a user runs it: the executable in a subprocess, under
// Deno (and under Bun when `bun` is on the PATH), against a real Postgres.
// The parser, the formats and the commands' edge cases are unit-tested
// without a server in tests/cli_unit_test.ts.
import { assert, assertEquals, assertStringIncludes } from "@std/assert";
import { PostgresConsensus } from "@persist/consensus";
import { fromPostgresJs } from "@persist/consensus/postgres-js";
import { connect, DATABASE_URL, dbTest, withPasswordServer } from "./_db.ts";

const CLI = new URL("../src/runtime/cli.ts", import.meta.url).pathname;

interface Result {
  code: number;
  stdout: string;
  stderr: string;
}

type Runtime = "deno" | "bun";

function command(runtime: Runtime, args: string[], env: Record<string, string> = {}) {
  const [bin, pre] = runtime === "deno"
    ? [Deno.execPath(), ["run", "-A", CLI]]
    : ["bun", ["run", CLI]];
  return new Deno.Command(bin, {
    args: [...pre, ...args],
    env: { DATABASE_URL: DATABASE_URL ?? "", NO_COLOR: "1", ...env },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  });
}

async function cli(
  args: string[],
  env: Record<string, string> = {},
  runtime: Runtime = "deno",
): Promise<Result> {
  const { code, stdout, stderr } = await command(runtime, args, env).output();
  const decoder = new TextDecoder();
  return { code, stdout: decoder.decode(stdout), stderr: decoder.decode(stderr) };
}

/** Exactly one line on stderr, no stack trace, and nothing of `secret`. */
function assertOneLineError(result: Result, code: number, includes: string, secret?: string) {
  assertEquals(result.code, code, result.stderr);
  const lines = result.stderr.split("\n");
  assertEquals(lines.length, 2, `one line: ${JSON.stringify(result.stderr)}`);
  assertEquals(lines[1], "");
  assert(lines[0].startsWith("error: "), lines[0]);
  assert(!/\n\s+at /.test(result.stderr), "no stack trace");
  assertStringIncludes(lines[0], includes);
  if (secret !== undefined) assert(!result.stderr.includes(secret), result.stderr);
}

const enc = new TextEncoder();

/** A fresh table of the test's own, seeded; dropped by the returned function. */
async function seededTable(): Promise<{ table: string; drop: () => Promise<void> }> {
  const table = `cli_test_${crypto.randomUUID().slice(0, 8)}`;
  const store = await PostgresConsensus.open(fromPostgresJs(connect({ max: 2 }), { owned: true }), {
    table,
  });
  try {
    for (let i = 0n; i < 5n; i++) {
      await store.compareAndSet("orders", { seqno: i, data: enc.encode(`{"v":${i}}`) });
    }
    await store.truncate("orders", 2n);
    await store.compareAndSet("bin", { seqno: 0n, data: Uint8Array.of(0, 1, 254, 255) });
    await store.compareAndSet("tab\tkey", { seqno: 0n, data: enc.encode("t") });
  } finally {
    await store.close();
  }
  return {
    table,
    drop: async () => {
      const sql = connect({ max: 1 });
      await sql.unsafe(`DROP TABLE IF EXISTS "${table}"`);
      await sql.end();
    },
  };
}

Deno.test("cli: --help prints usage and exits 0, per command too", async () => {
  const general = await cli(["--help"]);
  assertEquals([general.code, general.stderr], [0, ""]);
  for (const name of ["keys", "head", "scan", "truncate", "stats", "watch"]) {
    assertStringIncludes(general.stdout, `  ${name}`);
  }
  assertStringIncludes(general.stdout, "DATABASE_URL");
  for (const name of ["keys", "head", "scan", "truncate", "stats", "watch"]) {
    const one = await cli([name, "-h"]);
    assertEquals(one.code, 0, one.stderr);
    assertStringIncludes(one.stdout, `Usage: persist-consensus ${name}`);
  }
});

Deno.test("cli: bad usage exits 2 with one line and nothing on stdout", async () => {
  const cases: [string[], string][] = [
    [[], "Missing command"],
    [["frob"], 'Unknown command "frob"'],
    [["keys", "--frob"], 'Unknown option "--frob"'],
    [["head"], "Missing <key>"],
    [["truncate", "k", "x"], 'Invalid <seqno> "x"'],
    [["scan", "k", "--limit", "many"], 'Invalid --limit "many"'],
    [["head", "k", "--limit", "1"], "Option --limit does not apply to head"],
    [["keys", "extra"], 'Unexpected argument "extra"'],
  ];
  for (const [args, message] of cases) {
    const result = await cli(args);
    assertOneLineError(result, 2, message);
    assertEquals(result.stdout, "");
  }
  assertOneLineError(await cli(["keys"], { DATABASE_URL: "" }), 2, "set DATABASE_URL");
});

dbTest("cli: keys, head and scan, human and JSON", async () => {
  const { table, drop } = await seededTable();
  try {
    const t = ["--table", table];
    const keys = await cli(["keys", ...t]);
    assertEquals([keys.code, keys.stderr], [0, ""]);
    assertEquals(keys.stdout, 'bin\norders\n"tab\\tkey"\n');
    const keysJson = await cli(["keys", "--json", ...t]);
    assertEquals(JSON.parse(keysJson.stdout), ["bin", "orders", "tab\tkey"]);

    const head = await cli(["head", "orders", ...t]);
    assertEquals(head.stdout, 'seqno  bytes  data\n    4      7  {"v":4}\n');
    assertEquals(JSON.parse((await cli(["head", "orders", "--json", ...t])).stdout), {
      seqno: "4",
      data: btoa('{"v":4}'),
    });
    assertEquals(
      (await cli(["head", "bin", ...t])).stdout,
      "seqno  bytes  data\n    0      4  0x0001feff\n",
    );
    assertEquals((await cli(["head", "nope", "--json", ...t])).stdout, "null\n");
    assertEquals((await cli(["head", "nope", ...t])).stdout, '"nope" has no data\n');

    const scan = await cli(["scan", "orders", ...t]);
    assertEquals(
      scan.stdout,
      'seqno  bytes  data\n    2      7  {"v":2}\n    3      7  {"v":3}\n    4      7  {"v":4}\n',
    );
    const scanJson = await cli(["scan", "orders", "--from", "3", "--limit", "1", "--json", ...t]);
    assertEquals(JSON.parse(scanJson.stdout), [{ seqno: "3", data: btoa('{"v":3}') }]);
    assertEquals(JSON.parse((await cli(["scan", "nope", "--json", ...t])).stdout), []);
  } finally {
    await drop();
  }
});

dbTest("cli: truncate and stats, human and JSON; markers are not versions", async () => {
  const { table, drop } = await seededTable();
  try {
    const t = ["--table", table];
    const stats = await cli(["stats", "--json", ...t]);
    assertEquals(stats.code, 0, stats.stderr);
    const parsed = JSON.parse(stats.stdout);
    assert(parsed.tableBytes > 0, stats.stdout);
    assertEquals({ ...parsed, tableBytes: 0 }, {
      schema: "public",
      table,
      engine: "postgres",
      keys: 3,
      versions: 5, // orders 2..4, bin 0, "tab\tkey" 0
      markers: 3,
      tableBytes: 0,
    });
    const human = await cli(["stats", ...t]);
    assertStringIncludes(human.stdout, `table     public.${table}\n`);
    assertStringIncludes(human.stdout, "keys      3\n");
    assertStringIncludes(human.stdout, "versions  5\n");
    assertMatch(human.stdout, /size {6}\d+ KiB \(\d+ bytes\)\n/);

    const truncated = await cli(["truncate", "orders", "4", ...t]);
    assertEquals(truncated.stdout, 'Deleted 2 versions of "orders" below seqno 4\n');
    assertEquals(
      (await cli(["truncate", "orders", "4", "--json", ...t])).stdout,
      '{"deleted":0}\n',
    );
    assertOneLineError(
      await cli(["truncate", "orders", "9", ...t]),
      1,
      'Cannot truncate "orders": seqno 9 is above head 4',
    );
    assertOneLineError(await cli(["truncate", "nope", "0", ...t]), 1, "the key has no data");
    const after = JSON.parse((await cli(["stats", "--json", ...t])).stdout);
    assertEquals([after.keys, after.versions, after.markers], [3, 3, 3]);
  } finally {
    await drop();
  }
});

function assertMatch(text: string, pattern: RegExp) {
  assert(pattern.test(text), `${JSON.stringify(text)} does not match ${pattern}`);
}

dbTest("cli: watch prints the head, then each version as it is committed", async () => {
  const { table, drop } = await seededTable();
  const store = await PostgresConsensus.open(fromPostgresJs(connect({ max: 2 }), { owned: true }), {
    table,
  });
  try {
    for (const json of [true, false]) {
      const seqno = (await store.head("orders"))!.seqno;
      const args = ["watch", "orders", "--limit", "3", "--table", table];
      const child = command("deno", json ? [...args, "--json"] : args).spawn();
      const lines = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
      let out = "";
      while (!out.includes(`${seqno}`)) {
        const { value, done } = await lines.read();
        if (done) break;
        out += value;
      }
      await store.compareAndSet("orders", { seqno: seqno + 1n, data: enc.encode("next") });
      await store.compareAndSet("orders", { seqno: seqno + 2n, data: Uint8Array.of(0) });
      for (;;) {
        const { value, done } = await lines.read();
        if (done) break;
        out += value;
      }
      const { code } = await child.status;
      const stderr = await new Response(child.stderr).text();
      assertEquals(code, 0, stderr);
      if (json) {
        assertEquals(out.trimEnd().split("\n").map((line) => JSON.parse(line)), [
          { seqno: `${seqno}`, data: btoa('{"v":4}') },
          { seqno: `${seqno + 1n}`, data: btoa("next") },
          { seqno: `${seqno + 2n}`, data: "AA==" },
        ]);
      } else {
        assertEquals(
          out,
          `seqno  bytes  data\n    ${seqno}      7  {"v":4}\n    ${seqno + 1n}      4  next\n` +
            `    ${seqno + 2n}      1  0x00\n`,
        );
      }
      // Versions 4 and 5 are the next round's: it starts at the new head.
      await store.truncate("orders", seqno + 2n);
      await store.compareAndSet("orders", {
        seqno: seqno + 3n,
        data: enc.encode('{"v":4}'),
      });
    }
  } finally {
    await store.close();
    await drop();
  }
});

dbTest("cli: Ctrl-C ends watch with status 130", async () => {
  const { table, drop } = await seededTable();
  try {
    const child = command("deno", ["watch", "orders", "--table", table]).spawn();
    const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
    const first = await reader.read();
    assertStringIncludes(first.value ?? "", '{"v":4}');
    child.kill("SIGINT");
    while (!(await reader.read()).done) { /* drain */ }
    const { code } = await child.status;
    assertEquals(await new Response(child.stderr).text(), "");
    assertEquals(code, 130);
  } finally {
    await drop();
  }
});

dbTest("cli: a missing table is one line, status 1, never created, no password", async () => {
  const url = new URL(DATABASE_URL!);
  url.password = "hunter2-secret"; // the test server trusts loopback, so this still logs in
  const table = `cli_missing_${crypto.randomUUID().slice(0, 8)}`;
  for (const args of [["keys"], ["stats", "--json"], ["head", "k"]]) {
    const result = await cli([...args, "--table", table, "--url", url.href]);
    assertOneLineError(result, 1, `table "${table}" does not exist`, "hunter2");
    assertEquals(result.stdout, "");
  }
  const sql = connect({ max: 1 });
  const [{ exists }] = await sql`SELECT to_regclass(${table}) IS NOT NULL AS exists`;
  await sql.end();
  assertEquals(exists, false, "the CLI never creates a table");
});

dbTest("cli: a reader that goes away ends a long listing quietly", async () => {
  const table = `cli_test_${crypto.randomUUID().slice(0, 8)}`;
  const sql = connect({ max: 1 });
  await sql.unsafe(
    `CREATE TABLE "${table}" (shard text, sequence_number bigint, data bytea, ` +
      "PRIMARY KEY (shard, sequence_number))",
  );
  await sql.unsafe(
    `INSERT INTO "${table}" SELECT 'key-' || lpad(i::text, 6, '0'), 0, '\\x00' ` +
      "FROM generate_series(1, 20000) i",
  );
  try {
    const progress = await cli(["keys", "--table", table, "--progress", "5000"]);
    assertEquals(progress.stdout.split("\n").length, 20001);
    assertEquals(progress.stderr, "5000 keys\n10000 keys\n15000 keys\n20000 keys\n");
    const child = command("deno", ["keys", "--table", table]).spawn();
    const reader = child.stdout.getReader();
    await reader.read();
    await reader.cancel();
    const { code } = await child.status;
    assertEquals(await new Response(child.stderr).text(), "");
    assertEquals(code, 0);
  } finally {
    await sql.unsafe(`DROP TABLE IF EXISTS "${table}"`);
    await sql.end();
  }
});

dbTest("cli: a wrong password is one line, status 1, and the password is not shown", async () => {
  await withPasswordServer("the CLI's wrong-password check", "cli_pw", async (server) => {
    const result = await cli(["keys", "--url", server.wrongUrl.href]);
    assertOneLineError(
      result,
      1,
      'password authentication failed for user "cli_pw"',
      "hunter2",
    );
    assertStringIncludes(result.stderr, `postgres://cli_pw@127.0.0.1:${server.port}`);
  });
});

// Under Bun: the same executable, the same output.
const bun = await new Deno.Command("bun", { args: ["--version"], stdout: "null", stderr: "null" })
  .output().then((o) => o.success, () => false);
if (!bun) {
  console.error(
    "\n" + "*".repeat(78) + "\n*** SKIPPED: the CLI under Bun (tests/cli_test.ts): " +
      "`bun` is not on the PATH ***\n" + "*".repeat(78) + "\n",
  );
}

Deno.test({
  name: "cli under Bun: keys, head and a missing table, as under Deno",
  ignore: !bun || !DATABASE_URL,
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const { table, drop } = await seededTable();
    try {
      for (const args of [["keys", "--json"], ["head", "orders", "--json"], ["scan", "bin"]]) {
        const underBun = await cli([...args, "--table", table], {}, "bun");
        const underDeno = await cli([...args, "--table", table]);
        assertEquals(underBun, underDeno, args.join(" "));
        assertEquals(underBun.code, 0);
      }
      assertEquals(
        JSON.parse((await cli(["keys", "--json", "--table", table], {}, "bun")).stdout),
        ["bin", "orders", "tab\tkey"],
      );
      const missing = await cli(["keys", "--table", `${table}_nope`], {}, "bun");
      assertOneLineError(missing, 1, "does not exist");
      assertEquals((await cli(["frob"], {}, "bun")).code, 2);
    } finally {
      await drop();
    }
  },
});
