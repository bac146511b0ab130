// One place decides what a failed statement means, from the SQLSTATE and
// connection state the adapters normalise into SqlError.
import { SqlError } from "./executor.ts";

/** What the core does with a failure. */
export interface Classified {
  /** Serialization failure or deadlock: the transaction was rolled back; run it again. */
  retry: boolean;
  /** The operation surely did not take effect. */
  determinate: boolean;
  code: string | undefined;
}

// SQLSTATEs that report a statement the server rejected or rolled back
// before its commit could become durable. A single statement in autocommit
// runs in its own transaction, and in the extended protocol that
// transaction commits at Sync, after the statement's own result was sent; an
// error response in these classes therefore means nothing was committed.
// Class 57 (operator intervention: admin shutdown, crash shutdown), class 08
// (connection) and XX (internal) are absent on purpose: a FATAL
// "terminating connection" can arrive after the commit record is written and
// before ReadyForQuery, so the write may have happened. CockroachDB's 40003
// (statement completion unknown) is indeterminate by definition.
const DETERMINATE_CLASSES = new Set([
  "22", // data exception
  "23", // integrity constraint violation
  "25", // invalid transaction state
  "28", // invalid authorization
  "3D", // invalid catalog name (the database does not exist)
  "3F", // invalid schema name
  "42", // syntax error or access rule violation (missing table, no privilege)
  "0A", // feature not supported
  "55", // object not in prerequisite state (lock not available, deferrable key in ON CONFLICT)
  "53", // insufficient resources (no connection slots, out of memory)
  "54", // program limit exceeded
]);

const RETRYABLE = new Set([
  "40001", // serialization_failure (CockroachDB's restart errors too)
  "40P01", // deadlock_detected
]);

/** Whether a SQLSTATE rolled the statement back and a retry may succeed. */
export function isRetryable(code: string | undefined): boolean {
  return code !== undefined && RETRYABLE.has(code);
}

export function classify(error: unknown): Classified {
  if (!(error instanceof SqlError)) return { retry: false, determinate: false, code: undefined };
  const code = error.code;
  if (error.connectionLost || code === undefined) {
    return { retry: false, determinate: false, code };
  }
  if (isRetryable(code)) return { retry: true, determinate: true, code };
  if (code === "40002") return { retry: false, determinate: true, code };
  return { retry: false, determinate: DETERMINATE_CLASSES.has(code.slice(0, 2)), code };
}
