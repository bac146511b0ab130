// Runs the core's statements: one deadline per operation, retries of the
// failures that surely rolled back, and every other failure turned into a
// ConsensusError that says whether the operation may have happened. The
// store (src/postgres.ts) decides what to run; this decides how.
import { classify } from "./_classify.ts";
import { Deadlines, TIMED_OUT } from "./_deadlines.ts";
import { sleep } from "./_runtime.ts";
import { ConsensusError, redactSecrets } from "./errors.ts";
import type { SqlExecutor, SqlResult, SqlStatement, SqlValue } from "./executor.ts";

const BACKOFF_BASE_MS = 2;
const BACKOFF_CAP_MS = 200;

/** What the runner tells an operation's telemetry. */
export interface RunTrace {
  /** A statement is about to run again after a retryable failure. */
  retried(): void;
  /** The operation's deadline passed. */
  timedOut(): void;
}

/** Runs statements on one executor with a store's timeout and retry settings. */
export class StatementRunner {
  readonly #executor: SqlExecutor;
  readonly #deadlines = new Deadlines();
  /** How long one operation may take, retries included. */
  readonly timeoutMs: number;
  readonly #maxAttempts: number;

  constructor(executor: SqlExecutor, timeoutMs: number, maxAttempts: number) {
    this.#executor = executor;
    this.timeoutMs = timeoutMs;
    this.#maxAttempts = maxAttempts;
  }

  /** Runs a schema statement; any failure becomes a ConsensusError. */
  async ddl(what: string, text: string): Promise<void> {
    try {
      await this.#executor.ddl(text);
    } catch (error) {
      const { code, determinate } = classify(error);
      throw new ConsensusError(describeFailure(what, "", determinate, error, code), {
        determinate,
        code,
        cause: error,
      });
    }
  }

  // Runs one statement with the operation's deadline, retrying the failures
  // that surely rolled back (40001, 40P01) with full-jitter exponential
  // backoff, and turns every other failure into a ConsensusError that says
  // whether the operation may have happened.
  async run(
    op: string,
    key: string,
    statement: SqlStatement,
    params: readonly SqlValue[],
    deadline: number = Date.now() + this.timeoutMs,
    trace?: RunTrace,
  ): Promise<SqlResult> {
    for (let attempt = 1;; attempt++) {
      // Out of time before the first attempt was sent (an operation that
      // waited behind another on its key): nothing of it reached the
      // server. (Before a retry, the check after the backoff below.)
      if (attempt === 1 && deadline <= Date.now()) {
        trace?.timedOut();
        throw new ConsensusError(
          `${op}${
            key && ` ${JSON.stringify(key)}`
          } timed out after ${this.timeoutMs} ms before it was sent and did not take effect`,
          { determinate: true, code: undefined },
        );
      }
      try {
        return await this.#attempt(statement, params, deadline);
      } catch (error) {
        if (error === TIMED_OUT) {
          trace?.timedOut();
          throw new ConsensusError(
            `${op}${
              key && ` ${JSON.stringify(key)}`
            } timed out after ${this.timeoutMs} ms and may have taken effect`,
            { determinate: false, code: undefined },
          );
        }
        const { retry, determinate, code } = classify(error);
        if (retry && attempt < this.#maxAttempts) {
          const ceiling = Math.min(BACKOFF_CAP_MS, BACKOFF_BASE_MS * 2 ** attempt);
          const delay = Math.random() * ceiling;
          if (Date.now() + delay < deadline) {
            await sleep(delay);
            // A timer may fire late: if the deadline passed while nothing
            // was in flight, every attempt surely rolled back, and the
            // error says so rather than "timed out and may have taken effect".
            if (Date.now() < deadline) {
              trace?.retried();
              continue;
            }
          }
        }
        const attempts = retry ? ` after ${attempt} attempts` : "";
        throw new ConsensusError(
          describeFailure(op, key, determinate, error, code) + attempts,
          { determinate, code, cause: error },
        );
      }
    }
  }

  #attempt(
    statement: SqlStatement,
    params: readonly SqlValue[],
    deadline: number,
  ): Promise<SqlResult> {
    return this.#deadlines.run(
      deadline,
      (signal) => this.#executor.query(statement, params, { signal }),
    );
  }
}

function describeFailure(
  op: string,
  key: string,
  determinate: boolean,
  error: unknown,
  code: string | undefined,
): string {
  const outcome = determinate ? "did not take effect" : "may have taken effect";
  const cause = error instanceof Error ? error.message : String(error);
  const state = code === undefined ? "" : ` (SQLSTATE ${code})`;
  return redactSecrets(
    `${op}${key && ` ${JSON.stringify(key)}`} failed and ${outcome}: ${cause}${state}`,
  );
}
