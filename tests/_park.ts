// Parks one statement mid-flight, so a test can run other clients' commits
// and truncates inside the window a correctness argument is about.
//
// How: a BEFORE INSERT OR DELETE row trigger on the table. For sessions whose
// application_name is PARKED_APP, when the row's (operation, sequence_number)
// is a chosen park point, the trigger waits for a shared advisory lock that
// the test holds exclusively. The statement is then parked after its
// snapshot and its reads (and, for the Postgres compare-and-set, after
// locking the head row), just before that row's insert or delete, and before
// the insert's ON CONFLICT check. Releasing the lock lets it go on.
import { connect } from "./_db.ts";

/** The application_name of the connections whose statements park. */
export const PARKED_APP = "persist_parked";

const LOCK = 4242;

/** Where a statement parks: before it inserts or deletes the row of `seqno`. */
export interface ParkPoint {
  op: "INSERT" | "DELETE";
  seqno: bigint;
}

/** A parking brake on one table. */
export interface Park {
  /** Parks statements of PARKED_APP sessions at each of `points`; resolves once armed. */
  arm(...points: ParkPoint[]): Promise<void>;
  /** Resolves when a statement waits at the park point; rejects after `timeoutMs`. */
  parked(timeoutMs?: number): Promise<void>;
  /** Lets the parked statement go on. */
  release(): Promise<void>;
  /** How many sessions wait on a lock other than the park (a row or a transaction). */
  blockedOnRows(): Promise<number>;
  /** Drops the trigger and closes the control connections. */
  close(): Promise<void>;
}

/**
 * Installs the park trigger on `table` (a plain, unquoted name in the
 * current schema) and returns its controls.
 */
export async function installPark(table: string): Promise<Park> {
  const admin = connect({ max: 2 });
  const points = `${table}_park_points`;
  await admin.unsafe(`DROP TABLE IF EXISTS "${points}"`);
  await admin.unsafe(`CREATE TABLE "${points}" (op text NOT NULL, seqno bigint NOT NULL)`);
  await admin.unsafe(`
    CREATE OR REPLACE FUNCTION "${table}_park"() RETURNS trigger LANGUAGE plpgsql AS $$
    DECLARE
      row_seqno bigint := CASE WHEN TG_OP = 'DELETE' THEN OLD.sequence_number
                           ELSE NEW.sequence_number END;
    BEGIN
      IF current_setting('application_name') = '${PARKED_APP}' AND EXISTS (
        SELECT 1 FROM "${points}" p WHERE p.op = TG_OP AND p.seqno = row_seqno
      ) THEN
        PERFORM pg_advisory_xact_lock_shared(${LOCK});
      END IF;
      IF TG_OP = 'DELETE' THEN RETURN OLD; END IF;
      RETURN NEW;
    END $$`);
  await admin.unsafe(`DROP TRIGGER IF EXISTS park ON "${table}"`);
  await admin.unsafe(
    `CREATE TRIGGER park BEFORE INSERT OR DELETE ON "${table}" ` +
      `FOR EACH ROW EXECUTE FUNCTION "${table}_park"()`,
  );
  // The advisory lock is a session lock: take and drop it on one connection.
  const holder = await admin.reserve();
  let held = false;
  return {
    async arm(...armed) {
      await admin.unsafe(`DELETE FROM "${points}"`);
      for (const point of armed) {
        await admin.unsafe(`INSERT INTO "${points}" VALUES ($1, $2)`, [
          point.op,
          String(point.seqno),
        ]);
      }
      if (!held) await holder.unsafe(`SELECT pg_advisory_lock(${LOCK})`);
      held = true;
    },
    async parked(timeoutMs = 10_000) {
      const deadline = Date.now() + timeoutMs;
      while (Date.now() < deadline) {
        const [{ n }] = await admin.unsafe(
          `SELECT count(*)::int AS n FROM pg_locks WHERE locktype = 'advisory' ` +
            `AND objid = ${LOCK} AND NOT granted`,
        );
        if (n > 0) return;
        await new Promise((resolve) => setTimeout(resolve, 5));
      }
      throw new Error(`No statement reached the park point within ${timeoutMs} ms`);
    },
    async release() {
      if (held) await holder.unsafe(`SELECT pg_advisory_unlock(${LOCK})`);
      held = false;
    },
    async blockedOnRows() {
      const [{ n }] = await admin.unsafe(
        `SELECT count(*)::int AS n FROM pg_locks WHERE NOT granted ` +
          `AND locktype IN ('transactionid', 'tuple')`,
      );
      return n;
    },
    async close() {
      if (held) await holder.unsafe(`SELECT pg_advisory_unlock(${LOCK})`);
      holder.release();
      await admin.unsafe(`DROP TRIGGER IF EXISTS park ON "${table}"`);
      await admin.end({ timeout: 5 });
    },
  };
}
