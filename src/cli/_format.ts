// How the CLI shows things: data as text or hex, keys safe for a terminal,
// aligned tables, JSON lines, and progress on stderr. Runtime-neutral.
import { toHex } from "../_hex.ts";
import { host } from "../_runtime.ts";
import type { VersionedData } from "../types.ts";

// Control, format (bidi overrides, zero-width), private-use, unassigned and
// surrogate code points, and line and paragraph separators: none of them
// may reach a terminal raw, where they can reorder or hide what is shown.
const UNPRINTABLE = /[\p{C}\p{Zl}\p{Zp}]/u;
const UNPRINTABLE_ALL = /[\p{C}\p{Zl}\p{Zp}]/gu;

// Every runtime's TextDecoder takes these arguments; the core's host type
// leaves them out because the core never needs them.
type FatalDecoder = new (label: "utf-8", options: { fatal: true }) => {
  decode(bytes: Uint8Array): string;
};
const decoder = new (host.TextDecoder as unknown as FatalDecoder)("utf-8", { fatal: true });

/** The bytes as UTF-8 text when they are that and printable, else undefined. */
export function printableText(bytes: Uint8Array): string | undefined {
  let text: string;
  try {
    text = decoder.decode(bytes);
  } catch {
    return undefined;
  }
  return UNPRINTABLE.test(text) ? undefined : text;
}

const BASE64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/** Standard base64 with padding (RFC 4648, section 4). */
export function toBase64(bytes: Uint8Array): string {
  const parts: string[] = [];
  let out = "";
  let i = 0;
  for (; i + 2 < bytes.length; i += 3) {
    const n = (bytes[i] << 16) | (bytes[i + 1] << 8) | bytes[i + 2];
    out += BASE64[n >> 18] + BASE64[(n >> 12) & 63] + BASE64[(n >> 6) & 63] + BASE64[n & 63];
    // Bounded string pieces: a 16 MiB payload is not built by one long concatenation.
    if (out.length >= 65536) {
      parts.push(out);
      out = "";
    }
  }
  const left = bytes.length - i;
  if (left === 1) {
    const n = bytes[i] << 16;
    out += BASE64[n >> 18] + BASE64[(n >> 12) & 63] + "==";
  } else if (left === 2) {
    const n = (bytes[i] << 16) | (bytes[i + 1] << 8);
    out += BASE64[n >> 18] + BASE64[(n >> 12) & 63] + BASE64[(n >> 6) & 63] + "=";
  }
  parts.push(out);
  return parts.join("");
}

/** How many characters of data a table cell shows unless asked for all. */
export const DATA_WIDTH = 60;

/**
 * A version's data for a table cell: the text when it is printable UTF-8
 * (and does not itself start with "0x"), otherwise "0x" and hex, so a cell
 * that starts with "0x" is always hex. Cut to {@linkcode DATA_WIDTH}
 * characters with "…" unless `full`.
 */
export function showData(bytes: Uint8Array, full: boolean): string {
  const text = printableText(bytes);
  if (text !== undefined && !text.startsWith("0x")) {
    if (full || text.length <= DATA_WIDTH) return text;
    const points = Array.from(text);
    return points.length <= DATA_WIDTH ? text : `${points.slice(0, DATA_WIDTH - 1).join("")}…`;
  }
  const room = (DATA_WIDTH - 3) >> 1;
  if (full || bytes.length <= room + 1) return `0x${toHex(bytes)}`;
  return `0x${toHex(bytes.subarray(0, room))}…`;
}

/**
 * A key for a line of its own: as it is when printable, otherwise (or when
 * it starts with a double quote) as a JSON string with every unprintable
 * character escaped, so nothing reaches the terminal raw and the two forms
 * cannot be confused.
 */
export function showKey(key: string): string {
  if (!UNPRINTABLE.test(key) && !key.startsWith('"')) return key;
  return quote(key);
}

/** `JSON.stringify(text)`, with every unprintable character escaped too. */
export function quote(text: string): string {
  return JSON.stringify(text).replace(
    UNPRINTABLE_ALL,
    (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`,
  );
}

/** A version as JSON: `{"seqno": "<decimal>", "data": "<base64>"}`. */
export function versionJson(version: VersionedData): string {
  return `{"seqno":"${version.seqno}","data":"${toBase64(version.data)}"}`;
}

/**
 * The columns of a version table: seqno and size right-aligned, data last.
 * Widths only grow, so rows written page by page stay aligned unless a
 * later page holds wider numbers.
 */
export class VersionTable {
  #seqno = "seqno".length;
  #bytes = "bytes".length;
  readonly #full: boolean;

  constructor(full: boolean) {
    this.#full = full;
  }

  /** The header line and the rows of `versions`, each line ending in "\n". */
  lines(versions: readonly VersionedData[], header: boolean): string {
    for (const v of versions) {
      this.#seqno = Math.max(this.#seqno, String(v.seqno).length);
      this.#bytes = Math.max(this.#bytes, String(v.data.length).length);
    }
    let out = header ? this.#row("seqno", "bytes", "data") : "";
    for (const v of versions) {
      out += this.#row(String(v.seqno), String(v.data.length), showData(v.data, this.#full));
    }
    return out;
  }

  #row(seqno: string, bytes: string, data: string): string {
    return `${seqno.padStart(this.#seqno)}  ${bytes.padStart(this.#bytes)}  ${data}`.trimEnd() +
      "\n";
  }
}

/** Label-value lines, labels padded to one width. */
export function pairs(rows: readonly (readonly [string, string])[]): string {
  const width = Math.max(...rows.map(([label]) => label.length));
  return rows.map(([label, value]) => `${label.padEnd(width)}  ${value}\n`).join("");
}

const UNITS = ["bytes", "KiB", "MiB", "GiB", "TiB", "PiB"];

/** A byte count as people read it: "48 KiB", "1.5 GiB". */
export function humanBytes(bytes: number): string {
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < UNITS.length - 1) {
    value /= 1024;
    unit++;
  }
  if (unit === 0) return `${bytes} bytes`;
  return `${value >= 10 ? Math.round(value) : Math.round(value * 10) / 10} ${UNITS[unit]}`;
}

/**
 * Progress of a long listing, on stderr: a line rewritten in place (at most
 * ten times a second) when `live` (stderr is a terminal that is not also
 * showing the listing itself), or a line every `every` items when asked
 * for. Silent otherwise, so a pipe or a log gets only what it asked for.
 */
export class Progress {
  readonly #write: (text: string) => Promise<unknown>;
  readonly #live: boolean;
  readonly #every: number | undefined;
  readonly #noun: string;
  #count = 0;
  #shownAt = 0;
  #reported = 0;
  #dirty = false;

  constructor(
    write: (text: string) => Promise<unknown>,
    live: boolean,
    every: number | undefined,
    noun: string,
  ) {
    this.#write = write;
    this.#every = every;
    this.#live = live && every === undefined;
    this.#noun = noun;
  }

  /** Counts `n` more items. */
  async add(n: number): Promise<void> {
    this.#count += n;
    if (this.#every !== undefined) {
      const every = this.#every;
      if (Math.floor(this.#count / every) > Math.floor(this.#reported / every)) {
        this.#reported = this.#count;
        await this.#write(`${this.#count} ${this.#noun}\n`);
      }
    } else if (this.#live) {
      const now = Date.now();
      if (now - this.#shownAt >= 100) {
        this.#shownAt = now;
        this.#dirty = true;
        await this.#write(`\r\x1b[2K${this.#count} ${this.#noun}…`);
      }
    }
  }

  /** Clears the live line, if one is shown. */
  async done(): Promise<void> {
    if (this.#dirty) {
      this.#dirty = false;
      await this.#write("\r\x1b[2K");
    }
  }
}
