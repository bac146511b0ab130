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

const URL_PASSWORD = /\b((?:postgres(?:ql)?|cockroach(?:db)?):\/\/[^:/@\s]*:)[^@\s]*@/gi;
const KEYWORD_PASSWORD = /\b(password\s*=\s*)('(?:[^'\\]|\\.)*'|[^\s&]+)/gi;
const QUERY_PASSWORD = /([?&]password=)[^&\s]*/gi;

/**
 * Replaces the passwords in Postgres connection URLs and `password=` keyword
 * strings with `***`. Every message this library produces passes through it.
 *
 * @param text Text that may contain a connection string.
 * @returns The text with every password replaced.
 *
 * @example Usage
 * ```ts
 * import { redactSecrets } from "@persist/consensus";
 *
 * const safe = redactSecrets("cannot reach postgres://app:hunter2@db:5432/app");
 * if (safe.includes("hunter2")) throw new Error("leaked");
 * ```
 */
export function redactSecrets(text: string): string {
  return text
    .replace(URL_PASSWORD, "$1***@")
    .replace(QUERY_PASSWORD, "$1***")
    .replace(KEYWORD_PASSWORD, "$1***");
}
