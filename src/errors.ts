/**
 * Options for {@linkcode ConsensusError}.
 */
export interface ConsensusErrorOptions {
  /** `true` when the operation surely did not take effect; `false` when it may have. */
  determinate: boolean;
  /** The SQLSTATE reported by the server, when there is one. */
  code?: string;
  /** The underlying error. */
  cause?: unknown;
}

/**
 * A failure of the store itself (not a lost race, which is a `"mismatch"`,
 * and not a bad argument, which is a `TypeError` or `RangeError`).
 *
 * `determinate` tells the caller what it may assume:
 * - `true`: the operation surely did not take effect, so it is safe to retry
 *   as if it never ran (serialization failures and deadlocks that outlasted
 *   the internal retries, permission errors, constraint errors);
 * - `false`: it may have taken effect (connection lost, timeout, server
 *   crash, unknown error). After an indeterminate `compareAndSet`, read the
 *   head to learn whether the write landed.
 *
 * @example Telling the two apart
 * ```ts
 * import { ConsensusError } from "@persist/consensus";
 *
 * const error = new ConsensusError("compareAndSet on \"k\" failed", { determinate: false });
 * if (error instanceof ConsensusError && !error.determinate) {
 *   // re-read the head before deciding what to do
 * }
 * ```
 */
export class ConsensusError extends Error {
  /** `true` when the operation surely did not take effect; `false` when it may have. */
  readonly determinate: boolean;
  /** The SQLSTATE reported by the server, when there is one. */
  readonly code: string | undefined;

  /**
   * Creates an error.
   *
   * @param message What failed, already redacted of secrets.
   * @param options Whether it surely did not happen, its SQLSTATE and cause.
   */
  constructor(message: string, options: ConsensusErrorOptions) {
    super(redactSecrets(message), { cause: options.cause });
    this.name = "ConsensusError";
    this.determinate = options.determinate;
    this.code = options.code;
  }
}

/**
 * Thrown by {@linkcode watch} when versions it had to yield were truncated
 * before it read them: the watcher cannot deliver a gapless sequence, so it
 * stops rather than skip. `seqno` is the first version it missed and
 * `available` the lowest one the store still holds. It always means the same
 * thing (nothing the watcher yielded is wrong, and nothing after `seqno - 1n`
 * was yielded); the usual reaction is to reload the state from the head and
 * watch again from there.
 *
 * Not a {@linkcode ConsensusError}: the store did not fail, and retrying the
 * same watch fails the same way.
 *
 * @example Resynchronising after falling behind truncation
 * ```ts
 * import { MemoryConsensus, TruncatedError, watch } from "@persist/consensus";
 *
 * await using store = new MemoryConsensus();
 * for (let seqno = 0n; seqno < 5n; seqno++) {
 *   await store.compareAndSet("config", { seqno, data: new Uint8Array([Number(seqno)]) });
 * }
 * await store.truncate("config", 3n);
 * try {
 *   for await (const _version of watch(store, "config", { from: 1n })) break;
 *   throw new Error("expected a TruncatedError");
 * } catch (error) {
 *   if (!(error instanceof TruncatedError) || error.seqno !== 1n || error.available !== 3n) {
 *     throw error;
 *   }
 * }
 * ```
 */
export class TruncatedError extends Error {
  /** The watched key. */
  readonly key: string;
  /** The first version the watcher had to yield and could not read. */
  readonly seqno: bigint;
  /** The lowest version the store held when the watcher read. */
  readonly available: bigint;

  /**
   * Creates an error.
   *
   * @param key The watched key.
   * @param seqno The first missing version.
   * @param available The lowest version found instead.
   */
  constructor(key: string, seqno: bigint, available: bigint) {
    super(
      `Cannot watch ${JSON.stringify(key)}: versions from seqno ${seqno} were truncated before ` +
        `they were read (the log now starts at seqno ${available})`,
    );
    this.name = "TruncatedError";
    this.key = key;
    this.seqno = seqno;
    this.available = available;
  }
}

const SCHEME = String.raw`(?:postgres(?:ql)?|cockroach(?:db)?):\/\/`;

// A password may hold an unencoded "@" (drivers disagree on whether such a
// URL parses, but it still reaches messages), so it runs to the last "@" of
// its URL, and a URL ends at whitespace or where the next connection URL
// starts. An "@" later in the same URL (say in a query) hides the host too:
// hiding too much is the safe way to be wrong.
const URL_PASSWORD = String.raw`\b(${SCHEME}[^:/@\s]*:)(?:(?!${SCHEME})\S)*@`;

// Stops at "&" and whitespace, so the parameters after it stay readable.
const QUERY_PASSWORD = String.raw`([?&]\w*password=)[^&\s]*`;

// An escape takes the next character (or the end of the text), so a value
// splits into parts one way only, with no backtracking blow-up, and a
// trailing backslash cannot make the match fail and leak the value.
const ESCAPE = String.raw`\\(?:[\s\S]|$)`;
// A quote left open (a message cut short) hides the rest of the text.
const SINGLE_QUOTED = String.raw`'(?:[^'\\]|${ESCAPE})*(?:'|$)`;
const DOUBLE_QUOTED = String.raw`"(?:[^"\\]|${ESCAPE})*(?:"|$)`;
// Parts run together up to whitespace: libpq's 'a \' b', shell's 'it'\''s'
// and a\ b are each one value.
const VALUE = `(?:${SINGLE_QUOTED}|${DOUBLE_QUOTED}|${ESCAPE}|[^\\s'"\\\\])+`;
// Any key ending in "password": password, sslpassword, PGPASSWORD, db_password.
const KEYWORD_PASSWORD = String.raw`\b(\w*password\s*=\s*)${VALUE}`;

// One pass, so that a secret is matched by the leftmost form that covers it
// and no pattern rereads what another already redacted.
const SECRETS = new RegExp(`${URL_PASSWORD}|${QUERY_PASSWORD}|${KEYWORD_PASSWORD}`, "gi");

/**
 * Replaces passwords with `***`. Every message this library produces passes
 * through it. It hides:
 *
 * - the password of a `postgres://`, `postgresql://`, `cockroach://` or
 *   `cockroachdb://` URL, user and host kept, including a password with
 *   unencoded `@` (it runs to the last `@` of the URL, which ends at
 *   whitespace or at the next connection URL);
 * - `password=` query parameters (`?password=...&`);
 * - `key=value` passwords whose key ends in `password` (`password`,
 *   `sslpassword`, `PGPASSWORD`, also `export PGPASSWORD=...`), unquoted up
 *   to whitespace, or single- or double-quoted with spaces and
 *   backslash-escaped quotes, or in shell's `'it'\''s'` form.
 *
 * Where a boundary is ambiguous it hides more rather than less. Passwords in
 * other shapes (`"password": "..."` in JSON, for one) are not recognised.
 *
 * @param text Text that may contain a connection string.
 * @returns The text with every password replaced.
 *
 * @example Usage
 * ```ts
 * import { redactSecrets } from "@persist/consensus";
 *
 * const safe = redactSecrets("PGPASSWORD='hunter 2' psql postgres://app:p@ss@db:5432/app");
 * if (safe !== "PGPASSWORD=*** psql postgres://app:***@db:5432/app") {
 *   throw new Error(`leaked: ${safe}`);
 * }
 * ```
 */
export function redactSecrets(text: string): string {
  return text.replace(
    SECRETS,
    (_match, url?: string, query?: string, keyword?: string) =>
      url !== undefined ? `${url}***@` : `${query ?? keyword}***`,
  );
}
