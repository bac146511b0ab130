// The CLI without a server: the parser, the formats, the commands over
// MemoryConsensus, and runCli end to end over a scripted executor.
// tests/cli_test.ts runs the executable against a real Postgres.
import { assert, assertEquals, assertRejects, assertStringIncludes } from "@std/assert";
import { MemoryConsensus, SqlError, TruncatedError, type VersionedData } from "@persist/consensus";
import { ScriptedExecutor } from "@persist/consensus/testing";
import { parseArgs, type Parsed, UsageError } from "../src/cli/_args.ts";
import { type CommandContext, Output, runCommand } from "../src/cli/_commands.ts";
import {
  humanBytes,
  Progress,
  showData,
  showKey,
  toBase64,
  versionJson,
} from "../src/cli/_format.ts";
import { type CliHost, runCli } from "../src/cli/run.ts";

const text = (s: string) => new TextEncoder().encode(s);
const v = (seqno: bigint, data: string | Uint8Array): VersionedData => ({
  seqno,
  data: typeof data === "string" ? text(data) : data,
});

function usageError(args: string[], message: string): void {
  let caught: unknown;
  try {
    parseArgs(args);
  } catch (error) {
    caught = error;
  }
  assert(caught instanceof UsageError, `${args.join(" ")}: expected a UsageError, got ${caught}`);
  assertStringIncludes(caught.message, message);
}

Deno.test("parseArgs: commands, options before and after, --name=value, --", () => {
  assertEquals(parseArgs(["--json", "head", "--table=t", "k", "--schema", "s"]), {
    command: "head",
    help: false,
    json: true,
    full: false,
    url: undefined,
    table: "t",
    schema: "s",
    key: "k",
  });
  const scan = parseArgs(["scan", "k", "--from", "3", "--limit=10", "--progress", "5", "--full"]);
  assertEquals([scan.from, scan.limit, scan.progress, scan.full], [3n, 10, 5, true]);
  assertEquals(parseArgs(["truncate", "--", "-k", "9223372036854775807"]).seqno, 2n ** 63n - 1n);
  assertEquals(parseArgs(["truncate", "--", "-k", "7"]).key, "-k");
  assertEquals(parseArgs(["keys", "--url", "postgres://x@h/db"]).url, "postgres://x@h/db");
});

Deno.test("parseArgs: help wins, per command or general", () => {
  assertEquals(parseArgs(["--help"]).command, undefined);
  assertEquals(parseArgs(["scan", "-h"]).command, "scan");
  assertEquals(parseArgs(["scan", "--bogus", "--help"]).help, true);
  assertEquals(parseArgs(["nosuch", "--help"]).command, undefined);
});

Deno.test("parseArgs: usage errors say what is wrong", () => {
  usageError([], "Missing command");
  usageError(["frob"], 'Unknown command "frob"');
  usageError(["keys", "--frob"], 'Unknown option "--frob"');
  usageError(["keys", "-x"], 'Unknown option "-x"');
  usageError(["head"], "Missing <key>; usage: head <key>");
  usageError(["truncate", "k"], "Missing <seqno>");
  usageError(["head", "a", "b"], 'Unexpected argument "b"');
  usageError(["truncate", "k", "-1"], 'Unknown option "-1"');
  usageError(["truncate", "k", "x"], 'Invalid <seqno> "x"');
  usageError(["truncate", "k", "9223372036854775808"], "from 0 to 9223372036854775807");
  usageError(["scan", "k", "--from", "1.5"], 'Invalid --from "1.5"');
  usageError(["scan", "k", "--limit", "-3"], 'Invalid --limit "-3"');
  usageError(["scan", "k", "--limit=x"], 'Invalid --limit "x"');
  usageError(["keys", "--progress", "0"], "at least 1");
  usageError(["head", "k", "--from", "1"], "Option --from does not apply to head");
  usageError(["keys", "--json=yes"], "Option --json takes no value");
  usageError(["keys", "--table", "a", "--table", "b"], "Option --table is given twice");
  usageError(["keys", "--table"], "Option --table needs a value");
  usageError(["head", ""], "Cannot read head: key must not be empty");
  usageError(["head", "a\u0000b"], "contains U+0000");
  usageError(["keys", "--table", "x".repeat(64)], "Invalid table");
});

Deno.test("formats: data as text or 0x hex, cut unless full; keys quoted when unprintable", () => {
  assertEquals(showData(text("hello"), false), "hello");
  assertEquals(showData(Uint8Array.of(0, 1, 255), false), "0x0001ff");
  assertEquals(showData(text("0x12"), false), "0x30783132"); // a "0x" cell is always hex
  assertEquals(showData(text("a\tb"), false), "0x610962");
  assertEquals(showData(text("\u202eevil"), false), "0xe280ae6576696c");
  assertEquals(showData(Uint8Array.of(0xc3), false), "0xc3"); // not UTF-8
  assertEquals(showData(new Uint8Array(), false), "");
  assertEquals(showData(text("é".repeat(80)), false), `${"é".repeat(59)}…`);
  assertEquals(showData(text("é".repeat(80)), true), "é".repeat(80));
  assertEquals(showData(new Uint8Array(100), false), `0x${"00".repeat(28)}…`);
  assertEquals(showKey("orders/7"), "orders/7");
  assertEquals(showKey('"quoted'), '"\\"quoted"');
  assertEquals(showKey("a\tb\u202ec"), '"a\\tb\\u202ec"');
  assertEquals(JSON.parse(showKey("a\tb\u202ec")), "a\tb\u202ec");
  assertEquals(humanBytes(512), "512 bytes");
  assertEquals(humanBytes(49152), "48 KiB");
  assertEquals(humanBytes(1.5 * 1024 ** 3), "1.5 GiB");
});

Deno.test("formats: base64 matches btoa at every length", () => {
  for (let n = 0; n < 300; n++) {
    const bytes = Uint8Array.from({ length: n }, (_, i) => (i * 37 + n) & 255);
    assertEquals(toBase64(bytes), btoa(String.fromCharCode(...bytes)));
  }
  assertEquals(versionJson(v(12n, "hi")), '{"seqno":"12","data":"aGk="}');
});

Deno.test("Progress: a line every N, a live line only when asked, nothing otherwise", async () => {
  const lines: string[] = [];
  const write = (t: string) => Promise.resolve(void lines.push(t));
  const every = new Progress(write, true, 2, "keys");
  for (let i = 0; i < 5; i++) await every.add(1);
  await every.done();
  assertEquals(lines, ["2 keys\n", "4 keys\n"]);
  lines.length = 0;
  const quiet = new Progress(write, false, undefined, "keys");
  await quiet.add(1000);
  await quiet.done();
  assertEquals(lines, []);
  const live = new Progress(write, true, undefined, "keys");
  await live.add(3);
  await live.done();
  assertEquals(lines, ["\r\x1b[2K3 keys…", "\r\x1b[2K"]);
});

interface Run {
  out: string;
  err: string;
}

async function command(
  args: string[],
  store: MemoryConsensus,
  extra: Partial<CommandContext> = {},
): Promise<Run> {
  const run: Run = { out: "", err: "" };
  const parsed: Parsed = parseArgs(args);
  await runCommand(parsed, {
    store,
    out: new Output((t) => {
      run.out += t;
      return Promise.resolve(true);
    }),
    err: (t) => Promise.resolve(void (run.err += t)),
    live: false,
    stderrIsTerminal: false,
    pollIntervalMs: 5,
    ...extra,
  });
  return run;
}

function seeded(): MemoryConsensus {
  return new MemoryConsensus({
    initial: [
      ["orders", [v(3n, '{"v":3}'), v(4n, '{"v":4}'), v(5n, Uint8Array.of(0, 255))]],
      ["a\tb", [v(0n, "x")]],
    ],
  });
}

Deno.test("commands: keys, head, scan, truncate in both outputs", async () => {
  const store = seeded();
  assertEquals((await command(["keys"], store)).out, '"a\\tb"\norders\n');
  assertEquals((await command(["keys", "--json"], store)).out, '[\n  "a\\tb",\n  "orders"\n]\n');
  assertEquals(JSON.parse((await command(["keys", "--json"], store)).out), ["a\tb", "orders"]);
  assertEquals(
    (await command(["head", "orders"], store)).out,
    "seqno  bytes  data\n    5      2  0x00ff\n",
  );
  assertEquals(JSON.parse((await command(["head", "orders", "--json"], store)).out), {
    seqno: "5",
    data: "AP8=",
  });
  assertEquals((await command(["head", "none", "--json"], store)).out, "null\n");
  assertEquals((await command(["head", "none"], store)).out, '"none" has no data\n');
  assertEquals(
    (await command(["scan", "orders", "--from", "4"], store)).out,
    'seqno  bytes  data\n    4      7  {"v":4}\n    5      2  0x00ff\n',
  );
  assertEquals(
    JSON.parse((await command(["scan", "orders", "--limit", "2", "--json"], store)).out),
    [{ seqno: "3", data: "eyJ2IjozfQ==" }, { seqno: "4", data: "eyJ2Ijo0fQ==" }],
  );
  assertEquals((await command(["scan", "none", "--json"], store)).out, "[]\n");
  assertEquals(
    (await command(["scan", "orders", "--from", "9"], store)).out,
    '"orders" has no versions from seqno 9\n',
  );
  assertEquals(
    (await command(["truncate", "orders", "5"], store)).out,
    'Deleted 2 versions of "orders" below seqno 5\n',
  );
  assertEquals(
    (await command(["truncate", "orders", "5", "--json"], store)).out,
    '{"deleted":0}\n',
  );
  await assertRejects(() => command(["truncate", "orders", "6"], store), RangeError, "above head");
});

Deno.test("commands: scan pages through long logs, with progress every N", async () => {
  const versions = Array.from({ length: 250 }, (_, i) => v(BigInt(i), `v${i}`));
  const store = new MemoryConsensus({ initial: [["k", versions]] });
  const all = await command(["scan", "k", "--json", "--progress", "100"], store);
  assertEquals(JSON.parse(all.out).length, 250);
  assertEquals(all.err, "100 versions\n200 versions\n");
  const some = await command(["scan", "k", "--from", "10", "--limit", "120"], store);
  const lines = some.out.trimEnd().split("\n");
  assertEquals(lines.length, 121);
  assertEquals(lines[1].trim().split(/\s+/), ["10", "3", "v10"]);
  assertEquals(lines[120].trim().split(/\s+/), ["129", "4", "v129"]);
});

Deno.test("commands: watch prints the head, then each version as it is committed", async () => {
  const store = seeded();
  const running = command(["watch", "orders", "--json", "--limit", "3"], store);
  await new Promise((resolve) => setTimeout(resolve, 20));
  await store.compareAndSet("orders", v(6n, "six"));
  await store.compareAndSet("orders", v(7n, "seven"));
  const lines = (await running).out.trimEnd().split("\n").map((line) => JSON.parse(line));
  assertEquals(lines.map((l) => l.seqno), ["5", "6", "7"]);
  assertEquals(atob(lines[2].data), "seven");
  const human = await command(["watch", "orders", "--from", "6", "--limit", "2"], store);
  assertEquals(human.out, "seqno  bytes  data\n    6      3  six\n    7      5  seven\n");
});

Deno.test("commands: watch stops when its signal aborts", async () => {
  const store = seeded();
  const controller = new AbortController();
  const running = command(["watch", "orders"], store, { signal: controller.signal });
  await new Promise((resolve) => setTimeout(resolve, 20));
  controller.abort();
  await assertRejects(() => running, Error, "interrupted");
});

Deno.test("commands: watch reports versions truncated before it read them", async () => {
  const store = seeded();
  await assertRejects(
    () => command(["watch", "orders", "--from", "1"], store),
    TruncatedError,
    'Cannot watch "orders": versions from seqno 1 were truncated before they were read ' +
      "(the log now starts at seqno 3)",
  );
});

Deno.test("commands: watch on an empty key prints version 0 once it is written", async () => {
  const store = seeded();
  const running = command(["watch", "fresh", "--json", "--limit", "1"], store);
  await new Promise((resolve) => setTimeout(resolve, 20));
  await store.compareAndSet("fresh", v(0n, "zero"));
  const [line] = (await running).out.trimEnd().split("\n").map((l) => JSON.parse(l));
  assertEquals(line.seqno, "0");
});

interface Captured {
  code: number;
  out: string;
  err: string;
}

async function cli(args: string[], executor?: ScriptedExecutor, env = {}): Promise<Captured> {
  const captured = { code: -1, out: "", err: "" };
  const vars: Record<string, string> = {
    DATABASE_URL: "postgres://u:s3cret-pw@db:5432/app",
    ...env,
  };
  const host: CliHost = {
    env: (name) => vars[name],
    stdout: (t) => Promise.resolve(void (captured.out += t)).then(() => true),
    stderr: (t) => Promise.resolve(void (captured.err += t)),
    stdoutIsTerminal: false,
    stderrIsTerminal: false,
    connect: (url) => {
      if (!url.startsWith("postgres://")) throw new TypeError(`Invalid URL: '${url}'`);
      return executor ?? new ScriptedExecutor();
    },
  };
  captured.code = await runCli(args, host);
  return captured;
}

Deno.test("runCli: help on stdout with 0, usage errors as one line with 2", async () => {
  const help = await cli(["--help"]);
  assertEquals([help.code, help.err], [0, ""]);
  assertStringIncludes(help.out, "Usage: persist-consensus <command>");
  const scanHelp = await cli(["scan", "--help"]);
  assertStringIncludes(scanHelp.out, "Usage: persist-consensus scan <key> [--from N]");
  for (const args of [[], ["nosuch"], ["head"], ["keys", "--nope"]]) {
    const run = await cli(args);
    assertEquals(run.code, 2, args.join(" "));
    assertEquals(run.out, "");
    assertEquals(run.err.split("\n").length, 2, run.err); // one line and its newline
  }
  const misplaced = await cli(["keys", "postgres://u:hunter22@db/app"]);
  assertEquals(misplaced.code, 2);
  assertEquals(
    misplaced.err,
    'error: Unexpected argument "postgres://u:***@db/app"; usage: keys [--progress N]\n',
  );
  const noUrl = await cli(["keys"], undefined, { DATABASE_URL: "" });
  assertEquals(noUrl.code, 2);
  assertStringIncludes(noUrl.err, "pass --url or set DATABASE_URL");
  const badUrl = await cli(["keys", "--url", "mysql://root:hunter22@x"]);
  assertEquals(badUrl.code, 2);
  assertEquals(badUrl.err, "error: Invalid database URL: Invalid URL: 'mysql://root:***@x'\n");
});

Deno.test("runCli: stats over a scripted server, JSON and human", async () => {
  const executor = new ScriptedExecutor();
  executor.on("cli_locate", (call) => {
    assertEquals(call.params, ['"cli_t"']);
    return { rows: [["public", "cli_t"]], rowCount: 1 };
  });
  executor.on("cli_counts", (call) => {
    assertStringIncludes(call.statement.text, 'FROM "public"."cli_t"');
    return { rows: [[2n, 7n, 2n]], rowCount: 1 };
  });
  executor.on("cli_size", () => ({ rows: [[49152n]], rowCount: 1 }));
  const json = await cli(["stats", "--json", "--table", "cli_t"], executor);
  assertEquals(json.code, 0, json.err);
  assertEquals(JSON.parse(json.out), {
    schema: "public",
    table: "cli_t",
    engine: "postgres",
    keys: 2,
    versions: 7,
    markers: 2,
    tableBytes: 49152,
  });
  assert(executor.closed, "the store, and so the executor, is closed");
  executor.on("cli_size", () => {
    throw new SqlError("function pg_total_relation_size does not exist", { code: "42883" });
  });
  const human = await cli(["stats", "--table", "cli_t"], executor);
  assertEquals(human.code, 0, human.err);
  assertStringIncludes(human.out, "versions  7\n");
  assertStringIncludes(human.out, "size      unknown");
});

Deno.test("runCli: a failure is one line, status 1, password hidden even when a driver quotes it", async () => {
  const executor = new ScriptedExecutor();
  executor.on("list_keys", () => {
    throw new SqlError('connection to "db" failed:\n  password s3cret-pw rejected', {
      connectionLost: true,
    });
  });
  const run = await cli(["keys"], executor);
  assertEquals(run.code, 1);
  assertEquals(run.err.split("\n").length, 2, run.err);
  assert(!run.err.includes("s3cret"), run.err);
  assertStringIncludes(run.err, "error: list keys failed and may have taken effect");
  assertStringIncludes(run.err, "password *** rejected");
});

Deno.test("runCli: a reader that went away ends the listing quietly with 0", async () => {
  const executor = new ScriptedExecutor();
  let pages = 0;
  executor.on("list_keys", () => {
    pages++;
    const rows = Array.from({ length: 1000 }, (_, i) => [`k${pages}-${i}-${"x".repeat(80)}`]);
    return { rows, rowCount: rows.length };
  });
  let writes = 0;
  const host: CliHost = {
    env: () => "postgres://u@db/app",
    stdout: () => Promise.resolve(++writes < 2),
    stderr: () => Promise.resolve(),
    stdoutIsTerminal: false,
    stderrIsTerminal: false,
    connect: () => executor,
  };
  assertEquals(await runCli(["keys"], host), 0);
  assert(pages < 10, `stopped reading after the reader left (${pages} pages)`);
});
