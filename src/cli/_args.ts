// The CLI's command line: what each command takes, the parser, and the usage
// text. Runtime-neutral: it sees an array of strings and nothing else.
import { checkKey } from "../_validate.ts";
import { quoteIdentifier } from "../dialect.ts";
import { MAX_SEQNO } from "../limits.ts";

/** A command line the user got wrong: exit status 2, one line, no stack. */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "UsageError";
  }
}

export type CommandName = "keys" | "head" | "scan" | "truncate" | "stats" | "watch";

/** A parsed command line. */
export interface Parsed {
  /** The command, or undefined with `help` (the general usage). */
  command?: CommandName;
  help: boolean;
  url?: string;
  table?: string;
  schema?: string;
  json: boolean;
  full: boolean;
  key?: string;
  seqno?: bigint;
  from?: bigint;
  limit?: number;
  progress?: number;
}

interface CommandSpec {
  /** Positional arguments, in order. */
  args: readonly ("key" | "seqno")[];
  /** Options beyond the common ones. */
  options: readonly OptionName[];
  synopsis: string;
  summary: string;
  details: readonly string[];
}

type OptionName = "from" | "limit" | "progress" | "full";

const COMMON = "[--url <url>] [--table <name>] [--schema <name>] [--json]";

export const COMMANDS: Readonly<Record<CommandName, CommandSpec>> = {
  keys: {
    args: [],
    options: ["progress"],
    synopsis: "keys [--progress N]",
    summary: "list every key that has data, one per line",
    details: [
      "Keys are read in pages of 1000 (bounded memory on any table). A key that is not",
      'printable, or starts with a double quote, is shown as a JSON string ("a\\tb").',
      "--json: a JSON array of strings, one element per line.",
    ],
  },
  head: {
    args: ["key"],
    options: ["full"],
    synopsis: "head <key> [--full]",
    summary: "show the latest version of a key",
    details: [
      '--json: {"seqno": "<decimal>", "data": "<base64>"}, or null when the key has no data.',
    ],
  },
  scan: {
    args: ["key"],
    options: ["from", "limit", "progress", "full"],
    synopsis: "scan <key> [--from N] [--limit N] [--progress N] [--full]",
    summary: "show the versions of a key from seqno N (default 0), ascending",
    details: [
      "Versions are read in pages of 1000; --limit N stops after N versions.",
      '--json: an array of {"seqno", "data"} objects, one element per line.',
    ],
  },
  truncate: {
    args: ["key", "seqno"],
    options: [],
    synopsis: "truncate <key> <seqno>",
    summary: "delete the versions of a key below <seqno> (never the head)",
    details: [
      "Fails, deleting nothing, when <seqno> is above the head or the key has no data.",
      '--json: {"deleted": <number>}.',
    ],
  },
  stats: {
    args: [],
    options: [],
    synopsis: "stats",
    summary: "count the keys and versions, and the table's size on disk",
    details: [
      "Counts every row (one pass over the table). Markers (one row per key at",
      "sequence_number -1, written with version 0, never deleted) are counted apart;",
      "the size is pg_total_relation_size (indexes and TOAST included).",
      "--json: an object with schema, table, engine, keys, versions, markers, tableBytes.",
    ],
  },
  watch: {
    args: ["key"],
    options: ["from", "limit", "full"],
    synopsis: "watch <key> [--from N] [--limit N] [--full]",
    summary: "print versions of a key as they are committed, until interrupted",
    details: [
      "Starts at the current head (or version 0 of an empty key), or at --from N;",
      "--limit N stops after N versions. Fails when versions it must print were",
      "truncated before it read them.",
      '--json: one {"seqno", "data"} object per line.',
    ],
  },
};

const PROGRAM = "persist-consensus";

const COMMON_OPTIONS = [
  "  --url <url>       postgres:// URL of the database (default: $DATABASE_URL)",
  "  --table <name>    the table (default: consensus)",
  "  --schema <name>   its schema (default: resolved through the search_path)",
  "  --json            machine-readable output: seqnos as decimal strings, data as base64",
  "  -h, --help        show usage (also after a command: `head --help`)",
];

const FOOTER = [
  "Human output shows data as UTF-8 when it is printable, otherwise as 0x-prefixed hex,",
  "cut at 60 characters unless --full. Progress goes to stderr, live when stderr is a",
  "terminal, or as a count every N items with --progress N.",
  "",
  "The table is opened as it is (create: false): a missing table is an error, never created.",
  "Exit status: 0 done, 1 failed, 2 usage error, 130 interrupted.",
];

/** The general usage text. */
export function usage(): string {
  const short = (c: CommandSpec) => c.synopsis.split(" [")[0];
  const width = Math.max(...Object.values(COMMANDS).map((c) => short(c).length)) + 2;
  return [
    `Usage: ${PROGRAM} <command> [arguments] ${COMMON}`,
    "",
    "Operate a @persist/consensus table on Postgres or CockroachDB.",
    "Run as: deno run -A jsr:@persist/consensus/cli <command> ...",
    "    or: bun run <path to @persist/consensus>/src/runtime/cli.ts <command> ...",
    "",
    "Commands:",
    ...Object.values(COMMANDS).map((c) => `  ${short(c).padEnd(width)}${c.summary}`),
    "",
    "Options:",
    ...COMMON_OPTIONS,
    "  --from N          scan, watch: start at seqno N",
    "  --limit N         scan, watch: stop after N versions",
    "  --progress N      keys, scan: print a count on stderr every N items",
    "  --full            head, scan, watch: show data in full",
    "",
    ...FOOTER,
    "",
  ].join("\n");
}

/** The usage text of one command. */
export function commandUsage(name: CommandName): string {
  const spec = COMMANDS[name];
  return [
    `Usage: ${PROGRAM} ${spec.synopsis} ${COMMON}`,
    "",
    `${spec.summary[0].toUpperCase()}${spec.summary.slice(1)}.`,
    ...spec.details,
    "",
    "Options:",
    ...COMMON_OPTIONS,
    ...(spec.options.includes("from") ? ["  --from N          start at seqno N"] : []),
    ...(spec.options.includes("limit") ? ["  --limit N         stop after N versions"] : []),
    ...(spec.options.includes("progress")
      ? ["  --progress N      print a count on stderr every N items"]
      : []),
    ...(spec.options.includes("full") ? ["  --full            show data in full"] : []),
    "",
  ].join("\n");
}

const VALUE_OPTIONS = new Set(["url", "table", "schema", "from", "limit", "progress"]);
const FLAG_OPTIONS = new Set(["json", "full", "help"]);

function isCommand(name: string): name is CommandName {
  return Object.hasOwn(COMMANDS, name);
}

const HINT = "; run with --help for usage";

// How a key check names the command's action ("Cannot read head: ...").
const ACTIONS: Readonly<Record<CommandName, string>> = {
  keys: "list keys",
  head: "read head",
  scan: "scan",
  truncate: "truncate",
  stats: "read stats",
  watch: "watch",
};

/**
 * Parses a command line (the arguments after the program). `--name value`
 * and `--name=value` both work, options go before or after the command, and
 * `--` ends the options (for a key that starts with "-").
 *
 * @throws {UsageError} When the command line is wrong, unless it asks for help.
 */
export function parseArgs(args: readonly string[]): Parsed {
  const values = new Map<string, string>();
  const flags = new Set<string>();
  const positionals: string[] = [];
  let problem: string | undefined;
  for (let i = 0; i < args.length; i++) {
    const arg = args[i];
    if (arg === "--") {
      positionals.push(...args.slice(i + 1));
      break;
    }
    if (arg === "-h") {
      flags.add("help");
      continue;
    }
    if (!arg.startsWith("-") || arg === "-") {
      positionals.push(arg);
      continue;
    }
    const match = /^--([a-z-]+)(?:=([\s\S]*))?$/.exec(arg);
    const name = match?.[1];
    if (match === null || name === undefined) {
      problem ??= `Unknown option ${JSON.stringify(arg)}${HINT}`;
      continue;
    }
    if (FLAG_OPTIONS.has(name)) {
      if (match[2] !== undefined) problem ??= `Option --${name} takes no value${HINT}`;
      flags.add(name);
    } else if (VALUE_OPTIONS.has(name)) {
      let value = match[2];
      if (value === undefined) {
        if (i + 1 >= args.length) {
          problem ??= `Option --${name} needs a value${HINT}`;
          continue;
        }
        value = args[++i];
      }
      if (values.has(name)) problem ??= `Option --${name} is given twice${HINT}`;
      values.set(name, value);
    } else {
      problem ??= `Unknown option ${JSON.stringify(arg)}${HINT}`;
    }
  }

  const [first, ...rest] = positionals;
  const help = flags.has("help");
  if (help) {
    // Help wins over any other mistake on the line: it is what was asked.
    return {
      help: true,
      command: first !== undefined && isCommand(first) ? first : undefined,
      json: false,
      full: false,
    };
  }
  if (problem !== undefined) throw new UsageError(problem);
  if (first === undefined) throw new UsageError(`Missing command${HINT}`);
  if (!isCommand(first)) throw new UsageError(`Unknown command ${JSON.stringify(first)}${HINT}`);
  const spec = COMMANDS[first];
  for (const name of [...values.keys(), ...flags]) {
    if ((["from", "limit", "progress", "full"] as const).some((o) => o === name)) {
      if (!spec.options.includes(name as OptionName)) {
        throw new UsageError(`Option --${name} does not apply to ${first}${HINT}`);
      }
    }
  }
  if (rest.length < spec.args.length) {
    const missing = spec.args[rest.length];
    throw new UsageError(`Missing <${missing}>; usage: ${spec.synopsis}`);
  }
  if (rest.length > spec.args.length) {
    throw new UsageError(
      `Unexpected argument ${JSON.stringify(rest[spec.args.length])}; usage: ${spec.synopsis}`,
    );
  }

  const parsed: Parsed = {
    command: first,
    help: false,
    json: flags.has("json"),
    full: flags.has("full"),
    url: values.get("url"),
    table: values.get("table"),
    schema: values.get("schema"),
  };
  spec.args.forEach((kind, i) => {
    if (kind === "key") parsed.key = checked(() => checkKey(ACTIONS[first], rest[i]));
    else parsed.seqno = seqnoArgument("<seqno>", rest[i]);
  });
  if (parsed.table !== undefined) checked(() => quoteIdentifier(parsed.table!, "table"));
  if (parsed.schema !== undefined) checked(() => quoteIdentifier(parsed.schema!, "schema"));
  const from = values.get("from");
  if (from !== undefined) parsed.from = seqnoArgument("--from", from);
  const limit = values.get("limit");
  if (limit !== undefined) parsed.limit = countArgument("--limit", limit, 0);
  const progress = values.get("progress");
  if (progress !== undefined) parsed.progress = countArgument("--progress", progress, 1);
  return parsed;
}

// The library's own argument checks, reported as usage errors.
function checked<T>(check: () => T): T {
  try {
    return check();
  } catch (error) {
    if (error instanceof TypeError || error instanceof RangeError) {
      throw new UsageError(error.message.replace(/^Cannot open consensus: /, "Invalid "));
    }
    throw error;
  }
}

function seqnoArgument(name: string, text: string): bigint {
  if (!/^[0-9]+$/.test(text) || BigInt(text) > MAX_SEQNO) {
    throw new UsageError(
      `Invalid ${name} ${JSON.stringify(text)}: a seqno is a whole number from 0 to ${MAX_SEQNO}`,
    );
  }
  return BigInt(text);
}

function countArgument(name: string, text: string, min: number): number {
  const value = /^[0-9]+$/.test(text) ? Number(text) : NaN;
  if (!Number.isSafeInteger(value) || value < min) {
    throw new UsageError(
      `Invalid ${name} ${JSON.stringify(text)}: expected a whole number of at least ${min}`,
    );
  }
  return value;
}
