// The CLI's commands, over any Consensus: what each reads and how it prints
// it. Runtime-neutral, and testable on MemoryConsensus.
import type { AbortSignalLike } from "../executor.ts";
import { MAX_SEQNO } from "../limits.ts";
import type { Consensus, VersionedData } from "../types.ts";
import type { Parsed } from "./_args.ts";
import {
  humanBytes,
  pairs,
  Progress,
  quote,
  showKey,
  versionJson,
  VersionTable,
} from "./_format.ts";
import type { TableStats } from "./_stats.ts";
import { watch as libraryWatch } from "../watch.ts";

/** A function with the signature of the library's `watch` (tests pass their own). */
export type WatchFn = typeof libraryWatch;

/** Thrown when stdout's reader went away (`| head`): stop quietly. */
export class StdoutClosed extends Error {}

/** Thrown when the command stopped because its signal aborted. */
export class Interrupted extends Error {}

/**
 * Stdout, buffered: text is gathered and written in pieces of about 64 KiB,
 * and whenever a command says a piece is complete.
 */
export class Output {
  readonly #write: (text: string) => Promise<boolean>;
  #buffer: string[] = [];
  #size = 0;

  constructor(write: (text: string) => Promise<boolean>) {
    this.#write = write;
  }

  async add(text: string): Promise<void> {
    this.#buffer.push(text);
    this.#size += text.length;
    if (this.#size >= 65536) await this.flush();
  }

  async flush(): Promise<void> {
    if (this.#size === 0 && this.#buffer.length === 0) return;
    const text = this.#buffer.join("");
    this.#buffer = [];
    this.#size = 0;
    if (text !== "" && !await this.#write(text)) throw new StdoutClosed();
  }
}

/** What a command runs with. */
export interface CommandContext {
  store: Consensus;
  out: Output;
  /** Writes to stderr. */
  err: (text: string) => Promise<void>;
  /** Whether progress may be shown live (stderr is a terminal, stdout is not). */
  live: boolean;
  /** Whether stderr is a terminal (for a closing count). */
  stderrIsTerminal: boolean;
  /** Reads the table's stats; absent for stores that are not tables. */
  stats?: (signal?: AbortSignalLike) => Promise<TableStats & { engine: string }>;
  signal?: AbortSignalLike;
  /** The watch to use: the library's unless a test passes another. */
  watch?: WatchFn;
  /** `watch`'s `pollIntervalMs`: how often it reads when nothing woke it. */
  pollIntervalMs?: number;
}

// A scan page: versions may be up to 16 MiB each, so a page is bounded in
// count rather than in bytes.
const SCAN_PAGE = 100;

/** Runs `parsed.command`, writing its output to `context.out`. */
export async function runCommand(parsed: Parsed, context: CommandContext): Promise<void> {
  switch (parsed.command) {
    case "keys":
      return await keys(parsed, context);
    case "head":
      return await head(parsed, context);
    case "scan":
      return await scan(parsed, context);
    case "truncate":
      return await truncate(parsed, context);
    case "stats":
      return await stats(parsed, context);
    case "watch":
      return await watch(parsed, context);
    default:
      throw new TypeError(`Cannot run command ${String(parsed.command)}`);
  }
}

function checkSignal(signal: AbortSignalLike | undefined): void {
  if (signal?.aborted) throw new Interrupted("interrupted");
}

async function keys(parsed: Parsed, { store, out, err, live, signal, ...c }: CommandContext) {
  const progress = new Progress(err, live, parsed.progress, "keys");
  let count = 0;
  try {
    if (parsed.json) await out.add("[");
    for await (const key of store.listKeys()) {
      checkSignal(signal);
      if (parsed.json) await out.add(`${count === 0 ? "\n  " : ",\n  "}${quote(key)}`);
      else await out.add(`${showKey(key)}\n`);
      count++;
      await progress.add(1);
    }
    if (parsed.json) await out.add(count === 0 ? "]\n" : "\n]\n");
    await out.flush();
  } finally {
    await progress.done();
  }
  if (!parsed.json && c.stderrIsTerminal) await err(`${count} ${count === 1 ? "key" : "keys"}\n`);
}

async function head(parsed: Parsed, { store, out }: CommandContext) {
  const key = parsed.key!;
  const version = await store.head(key);
  if (parsed.json) {
    await out.add(`${version === undefined ? "null" : versionJson(version)}\n`);
  } else if (version === undefined) {
    await out.add(`${quote(key)} has no data\n`);
  } else {
    await out.add(new VersionTable(parsed.full).lines([version], true));
  }
  await out.flush();
}

async function scan(parsed: Parsed, context: CommandContext) {
  const { store, out, err, live, signal } = context;
  const key = parsed.key!;
  const progress = new Progress(err, live, parsed.progress, "versions");
  const table = new VersionTable(parsed.full);
  let from = parsed.from ?? 0n;
  let left = parsed.limit;
  let count = 0;
  try {
    if (parsed.json) await out.add("[");
    while (left === undefined || left > 0) {
      const want = Math.min(SCAN_PAGE, left ?? SCAN_PAGE);
      const page: VersionedData[] = await store.scan(key, from, want);
      checkSignal(signal);
      if (parsed.json) {
        for (const version of page) {
          await out.add(`${count++ === 0 ? "\n  " : ",\n  "}${versionJson(version)}`);
        }
      } else {
        if (page.length > 0) await out.add(table.lines(page, count === 0));
        count += page.length;
      }
      await progress.add(page.length);
      const last = page.at(-1);
      if (page.length < want || last === undefined || last.seqno === MAX_SEQNO) break;
      from = last.seqno + 1n;
      if (left !== undefined) left -= page.length;
    }
    if (parsed.json) await out.add(count === 0 ? "]\n" : "\n]\n");
    else if (count === 0) {
      await out.add(`${quote(key)} has no versions from seqno ${parsed.from ?? 0n}\n`);
    }
    await out.flush();
  } finally {
    await progress.done();
  }
  if (!parsed.json && count > 0 && context.stderrIsTerminal) {
    await err(`${count} ${count === 1 ? "version" : "versions"}\n`);
  }
}

async function truncate(parsed: Parsed, { store, out }: CommandContext) {
  const key = parsed.key!;
  const deleted = await store.truncate(key, parsed.seqno!);
  await out.add(
    parsed.json
      ? `{"deleted":${deleted}}\n`
      : `Deleted ${deleted} ${deleted === 1 ? "version" : "versions"} of ${quote(key)} ` +
        `below seqno ${parsed.seqno}\n`,
  );
  await out.flush();
}

async function stats(parsed: Parsed, { out, stats: read, signal }: CommandContext) {
  if (read === undefined) throw new TypeError("Cannot read stats: this store is not a table");
  const s = await read(signal);
  checkSignal(signal);
  if (parsed.json) {
    const { schema, table, engine, keys, versions, markers, tableBytes } = s;
    const fields = { schema, table, engine, keys, versions, markers, tableBytes };
    await out.add(`${JSON.stringify(fields)}\n`);
  } else {
    const size = s.tableBytes === null
      ? "unknown (the server has no pg_total_relation_size)"
      : `${humanBytes(s.tableBytes)} (${s.tableBytes} bytes)`;
    await out.add(pairs([
      ["table", `${showKey(s.schema)}.${showKey(s.table)}`],
      ["engine", s.engine],
      ["keys", String(s.keys)],
      ["versions", String(s.versions)],
      ["markers", `${s.markers} (rows at sequence_number -1, one per key, not versions)`],
      ["size", size],
    ]));
  }
  await out.flush();
}

async function watch(parsed: Parsed, context: CommandContext) {
  const { store, out, signal } = context;
  const limit = parsed.limit;
  if (limit === 0) return;
  const table = new VersionTable(parsed.full);
  const versions = (context.watch ?? libraryWatch)(store, parsed.key!, {
    from: parsed.from,
    signal,
    pollIntervalMs: context.pollIntervalMs ?? 250,
  });
  let count = 0;
  for await (const version of versions) {
    await out.add(parsed.json ? `${versionJson(version)}\n` : table.lines([version], count === 0));
    // Each version as it arrives, not when a buffer fills.
    await out.flush();
    count++;
    if (limit !== undefined && count >= limit) break;
  }
  checkSignal(signal);
}
