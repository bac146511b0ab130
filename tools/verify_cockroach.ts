/**
 * `deno task verify:cockroach --url postgres://user@host:26257/db`: checks
 * this library against your own CockroachDB cluster, for what no test here
 * can confirm without one (README, "CockroachDB"), and prints a verdict line.
 *
 * What it runs, each a line of PASS, FAIL or SKIP:
 *
 * 1. the engine: `version()` names CockroachDB, and open with `mode: "auto"`
 *    picks the CockroachDB statements;
 * 2. the isolation level: `current_setting('transaction_isolation')` reads
 *    `serializable` by default; a session that asks for READ COMMITTED either
 *    reads `read committed` and open refuses it, or the cluster has READ
 *    COMMITTED off and runs it at SERIALIZABLE (reported);
 * 3. the DDL: open creates a new table (`CREATE TABLE ... WITH
 *    (sql_stats_automatic_collection_enabled = false)`, then `CONFIGURE ZONE
 *    USING gc.ttlseconds = 600`; a role without the zone privilege gets a
 *    warning, reported);
 * 4. the table-shape query (`to_regclass`, `pg_index.indkey` with `unnest ...
 *    WITH ORDINALITY`, `format_type`, `to_jsonb(pg_collation)`): open accepts
 *    the table it created, refuses one whose `data` is `text`, and reports a
 *    missing one as missing;
 * 5. the conformance suite (`@persist/consensus/testing`), every case;
 * 6. a race: several stores, concurrent writers on one key, every seqno told
 *    "committed" exactly once;
 * 7. the window tests (`tests/window_test.ts`, CockroachDB statements at
 *    SERIALIZABLE), when the cluster can park a statement: they need PL/pgSQL
 *    row triggers and advisory locks that block and show in `pg_locks`; when
 *    it cannot, a SKIP line says which is missing.
 *
 * It works in the database and schema of the URL, on tables named
 * `persist_verify_<random>_*`, dropped at the end. `--allow-postgres` runs
 * the same checks on Postgres with the CockroachDB statements at
 * SERIALIZABLE (how the project tests this script); the verdict then says
 * that nothing CockroachDB-specific was confirmed.
 *
 * Usage: `deno task verify:cockroach --url <url> [--race-seconds 10] [--allow-postgres]`
 *
 * @module
 */
import postgres from "postgres";
import { ConsensusError, PostgresConsensus, redactSecrets, type VersionedData } from "../mod.ts";
import { fromPostgresJs } from "../src/adapters/postgres_js.ts";
import { dialectFor, quoteIdentifier } from "../src/dialect.ts";
import { conformanceCases, raceOnOneKey } from "../src/testing/mod.ts";
import { importMapArgs } from "./_jsr.ts";
import { runChild } from "./_run.ts";

const USAGE =
  "usage: deno task verify:cockroach --url postgres://user@host:26257/db [--race-seconds N] " +
  "[--allow-postgres]";

function parseArgs(args: string[]) {
  let url = Deno.env.get("COCKROACH_URL");
  let raceSeconds = 10;
  let allowPostgres = false;
  for (let i = 0; i < args.length; i++) {
    const arg = args[i];
    const value = () => {
      const next = arg.includes("=") ? arg.slice(arg.indexOf("=") + 1) : args[++i];
      if (next === undefined) throw new TypeError(`Cannot read ${arg}: it needs a value`);
      return next;
    };
    if (arg === "--url" || arg.startsWith("--url=")) url = value();
    else if (arg === "--race-seconds" || arg.startsWith("--race-seconds=")) {
      raceSeconds = Number(value());
      if (!(raceSeconds > 0 && raceSeconds <= 600)) {
        throw new RangeError(`Cannot race for "${raceSeconds}" s: give 1 to 600`);
      }
    } else if (arg === "--allow-postgres") allowPostgres = true;
    else if (arg === "--help" || arg === "-h") {
      console.log(USAGE);
      Deno.exit(0);
    } else throw new TypeError(`Cannot read argument "${arg}"; ${USAGE}`);
  }
  if (!url) throw new TypeError(`Cannot verify: no --url (or COCKROACH_URL); ${USAGE}`);
  return { url, raceSeconds, allowPostgres };
}

let options: ReturnType<typeof parseArgs>;
try {
  options = parseArgs(Deno.args);
} catch (error) {
  console.error((error as Error).message);
  Deno.exit(2);
}
const { url, raceSeconds, allowPostgres } = options;

type Outcome = "PASS" | "FAIL" | "SKIP";
const outcomes: Outcome[] = [];
function report(outcome: Outcome, check: string, detail: string): void {
  outcomes.push(outcome);
  const line = `${outcome} ${check}: ${detail}`;
  if (outcome === "SKIP") {
    console.log(`\n${"*".repeat(78)}\n*** ${line}\n${"*".repeat(78)}\n`);
  } else console.log(line);
}
const message = (error: unknown) =>
  redactSecrets(error instanceof Error ? error.message : `${error}`);

// Ends the run after the engine check: the rest would test Postgres.
class NotCockroach extends Error {}

const prefix = `persist_verify_${crypto.randomUUID().slice(0, 8)}`;
const created: string[] = [];
const quiet = { onnotice: () => {} };
const admin = postgres(url, { max: 2, ...quiet });

// The session settings the CockroachDB statements need on Postgres; on
// CockroachDB SERIALIZABLE is the default and nothing is set.
let session: Record<string, string> = {};
let mode: "auto" | "cockroach" = "auto";
let isCockroach = false;
let version = "";

// A store on its own pool. `set` is a SET statement run first, on a pool of
// one connection so that it holds for every statement (a SET works on every
// engine; session variables as startup parameters may not).
async function openStore(
  table: string,
  extra: { create?: boolean; set?: string } = {},
  warnings: string[] = [],
): Promise<PostgresConsensus> {
  const sql = postgres(url, {
    max: extra.set ? 1 : 8,
    ...quiet,
    connection: session,
  });
  if (extra.set) await sql.unsafe(extra.set);
  return await PostgresConsensus.open(fromPostgresJs(sql, { owned: true }), {
    mode,
    table,
    create: extra.create ?? false,
    onWarning: (warning) => warnings.push(warning),
  });
}

// A table of the right shape, made the way open makes it on this engine.
async function createTable(table: string): Promise<void> {
  created.push(table);
  const ddl = dialectFor(isCockroach ? "cockroach" : "postgres", quoteIdentifier(table, "table"));
  await admin.unsafe(ddl.dropTable);
  await admin.unsafe(ddl.createTable);
}

async function check(name: string, fn: () => Promise<[Outcome, string]>): Promise<void> {
  try {
    const [outcome, detail] = await fn();
    report(outcome, name, detail);
  } catch (error) {
    report("FAIL", name, message(error));
  }
}

try {
  console.log(`verify:cockroach on ${redactSecrets(url)}`);

  await check("engine", async () => {
    const [row] = await admin.unsafe("SELECT version() AS v");
    version = String(row.v);
    isCockroach = /cockroach/i.test(version);
    if (!isCockroach) {
      if (!allowPostgres) {
        return ["FAIL", `the server is not CockroachDB: ${version} (--allow-postgres runs anyway)`];
      }
      mode = "cockroach";
      session = { default_transaction_isolation: "serializable" };
    }
    const table = `${prefix}_engine`;
    await createTable(table);
    const store = await openStore(table);
    const engine = store.engine;
    await store.close();
    if (engine !== "cockroach") return ["FAIL", `open chose the ${engine} statements`];
    return ["PASS", `${version}; open runs the CockroachDB statements`];
  });

  if (!isCockroach && !allowPostgres) throw new NotCockroach();

  await check("isolation level", async () => {
    const [row] = await admin.unsafe("SELECT current_setting('transaction_isolation') AS i");
    const level = String(row.i);
    if (isCockroach && level !== "serializable") {
      return ["FAIL", `the default is "${level}", not "serializable"`];
    }
    // A session that asks for READ COMMITTED.
    const asked = "SET default_transaction_isolation = 'read committed'";
    const probe = postgres(url, { max: 1, ...quiet });
    const [got] = await probe.unsafe(asked)
      .then(() => probe.unsafe("SELECT current_setting('transaction_isolation') AS i"))
      .finally(() => probe.end({ timeout: 5 }));
    const table = `${prefix}_isolation`;
    await createTable(table);
    let opened: PostgresConsensus | undefined;
    let refusal: unknown;
    try {
      opened = await openStore(table, { set: asked });
    } catch (error) {
      refusal = error;
    }
    await opened?.close();
    const runsAt = String(got.i);
    if (runsAt === "serializable") {
      if (refusal) {
        return ["FAIL", `a session runs at serializable, but open refused it: ${message(refusal)}`];
      }
      return [
        "PASS",
        `default "${level}"; a session asking for READ COMMITTED runs at serializable (READ ` +
        "COMMITTED is off on this cluster: sql.txn.read_committed_isolation.enabled), and open " +
        "accepts it",
      ];
    }
    if (!(refusal instanceof ConsensusError) || !/isolation/.test(refusal.message)) {
      return ["FAIL", `a session at "${runsAt}" was not refused at open`];
    }
    return ["PASS", `default "${level}"; a session at "${runsAt}" is refused at open`];
  });

  await check("DDL", async () => {
    const table = `${prefix}_created`;
    created.push(table);
    const warnings: string[] = [];
    if (!isCockroach) {
      // The CockroachDB DDL does not run on Postgres: the self-test opens a
      // table made with the Postgres DDL.
      await createTable(table);
      const store = await openStore(table, {}, warnings);
      await store.close();
      return ["SKIP", "not CockroachDB: the storage parameter and zone configuration were not run"];
    }
    const store = await openStore(table, { create: true }, warnings);
    await store.close();
    const [{ n }] = await admin.unsafe(
      "SELECT count(*)::int AS n FROM pg_catalog.pg_class WHERE oid = to_regclass($1)",
      [table],
    );
    if (n !== 1) return ["FAIL", `open did not create ${table}`];
    if (warnings.length > 0) {
      return ["PASS", `created ${table}; with a warning (tuning skipped): ${warnings.join(" | ")}`];
    }
    return [
      "PASS",
      `created ${table} WITH (sql_stats_automatic_collection_enabled = false), zone gc.ttlseconds = 600`,
    ];
  });

  await check("table-shape query", async () => {
    const good = `${prefix}_shape`;
    await createTable(good);
    const store = await openStore(good);
    await store.close();
    const bad = `${prefix}_badshape`;
    created.push(bad);
    await admin.unsafe(`DROP TABLE IF EXISTS ${quoteIdentifier(bad, "table")}`);
    await admin.unsafe(
      `CREATE TABLE ${quoteIdentifier(bad, "table")} (shard text NOT NULL, ` +
        "sequence_number bigint NOT NULL, data text NOT NULL, PRIMARY KEY (shard, sequence_number))",
    );
    const refusedBad = await openStore(bad).then(
      async (s) => (await s.close(), undefined),
      (error) => error,
    );
    if (!(refusedBad instanceof ConsensusError) || !/data/.test(refusedBad.message)) {
      return ["FAIL", `a table whose data is text was not refused: ${message(refusedBad)}`];
    }
    const missing = await openStore(`${prefix}_missing`).then(
      async (s) => (await s.close(), undefined),
      (error) => error,
    );
    if (!(missing instanceof ConsensusError) || missing.code !== "42P01") {
      return ["FAIL", `a missing table was not reported missing: ${message(missing)}`];
    }
    return [
      "PASS",
      "accepts (text, bigint, bytea) with the key, refuses data text, reports a missing table",
    ];
  });

  await check("conformance suite", async () => {
    const table = `${prefix}_conformance`;
    await createTable(table);
    const quoted = quoteIdentifier(table, "table");
    const failures: string[] = [];
    for (const testCase of conformanceCases) {
      const started = Date.now();
      try {
        await testCase.run({
          writers: 8,
          raceUntil: 100n,
          async open(initial?: ReadonlyMap<string, readonly VersionedData[]>) {
            await admin.unsafe(`DELETE FROM ${quoted}`);
            for (const [key, versions] of initial ?? []) {
              for (const { seqno, data } of versions) {
                await admin.unsafe(
                  `INSERT INTO ${quoted} (shard, sequence_number, data) VALUES ($1, $2, $3)`,
                  [key, String(seqno), data],
                );
              }
            }
            return await openStore(table);
          },
        });
        console.log(`  ok   ${testCase.name} (${Date.now() - started} ms)`);
      } catch (error) {
        failures.push(testCase.name);
        console.log(`  FAIL ${testCase.name}: ${message(error)}`);
      }
    }
    if (failures.length > 0) {
      return [
        "FAIL",
        `${failures.length} of ${conformanceCases.length} cases: ${failures.join("; ")}`,
      ];
    }
    return ["PASS", `${conformanceCases.length} cases`];
  });

  await check("race", async () => {
    const table = `${prefix}_race`;
    await createTable(table);
    const stores = await Promise.all([0, 1, 2, 3].map(() => openStore(table)));
    try {
      const result = await raceOnOneKey(stores, "race", {
        writers: 16,
        durationMs: raceSeconds * 1000,
      });
      return [
        "PASS",
        `4 stores, 16 writers, ${raceSeconds} s: ${result.committed} committed once each ` +
        `(${(result.committed / (result.elapsedMs / 1000)).toFixed(0)}/s), ` +
        `${result.mismatched} mismatches, chain gapless to ${result.head}`,
      ];
    } finally {
      await Promise.all(stores.map((store) => store.close()));
    }
  });

  const missing = await canPark();
  if (missing.length > 0) {
    report(
      "SKIP",
      "window tests",
      `this cluster cannot park a statement mid-flight (${missing.join("; ")}), which the ` +
        "window tests need (tests/_park.ts): they were NOT run",
    );
  } else {
    await check("window tests", async () => {
      const status = await runChild(Deno.execPath(), [
        "test",
        "-A",
        ...await importMapArgs(),
        "--filter",
        "cockroach statements at serializable",
        "tests/window_test.ts",
      ], { DATABASE_URL: url });
      return status.success
        ? ["PASS", "tests/window_test.ts, CockroachDB statements at SERIALIZABLE"]
        : ["FAIL", "tests/window_test.ts failed (see its output above)"];
    });
  }
} catch (error) {
  if (!(error instanceof NotCockroach)) throw error;
} finally {
  for (const table of created) {
    await admin.unsafe(`DROP TABLE IF EXISTS ${quoteIdentifier(table, "table")}`).catch(() => {});
  }
  await admin.end({ timeout: 5 });
}

const count = (o: Outcome) => outcomes.filter((x) => x === o).length;
const verdict = count("FAIL") > 0 ? "FAIL" : "PASS";
const what = isCockroach
  ? version.split(" (")[0]
  : `not CockroachDB (${
    version.split(" on ")[0] || "unreachable"
  }): nothing CockroachDB-specific was confirmed`;
console.log(
  `\nverify:cockroach: ${verdict} on ${what}: ${count("PASS")} passed, ${count("FAIL")} failed, ` +
    `${count("SKIP")} skipped`,
);
Deno.exit(verdict === "PASS" ? 0 : 1);

// What the window tests' park (tests/_park.ts) needs and this server lacks:
// a PL/pgSQL row trigger, an advisory lock that blocks another session, and
// the waiter visible in pg_locks.
async function canPark(): Promise<string[]> {
  const missing: string[] = [];
  const table = `${prefix}_park`;
  created.push(table);
  const quoted = quoteIdentifier(table, "table");
  const fn = quoteIdentifier(`${table}_fn`, "function");
  try {
    await admin.unsafe(`CREATE TABLE ${quoted} (k int PRIMARY KEY)`);
    await admin.unsafe(
      `CREATE FUNCTION ${fn}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$`,
    );
    await admin.unsafe(
      `CREATE TRIGGER park BEFORE INSERT OR DELETE ON ${quoted} FOR EACH ROW EXECUTE FUNCTION ${fn}()`,
    );
  } catch (error) {
    missing.push(`no PL/pgSQL row triggers: ${message(error)}`);
  }
  const holder = postgres(url, { max: 1, ...quiet });
  const waiter = postgres(url, { max: 1, ...quiet });
  const key = 4243;
  try {
    await holder.unsafe(`SELECT pg_advisory_lock(${key})`);
    const waiting = waiter.begin(async (tx) => {
      await tx.unsafe("SET LOCAL statement_timeout = 3000");
      await tx.unsafe(`SELECT pg_advisory_xact_lock_shared(${key})`);
    }).then(() => "acquired", (error) => `failed: ${message(error)}`);
    const early = await Promise.race([
      waiting,
      new Promise((resolve) => setTimeout(() => resolve("blocked"), 1000)),
    ]);
    if (early !== "blocked") missing.push(`advisory locks do not block (${early})`);
    else {
      const [{ n }] = await holder.unsafe(
        `SELECT count(*)::int AS n FROM pg_locks WHERE locktype = 'advisory' AND objid = ${key} ` +
          "AND NOT granted",
      );
      if (n === 0) missing.push("a waiting advisory lock does not show in pg_locks");
    }
    await holder.unsafe(`SELECT pg_advisory_unlock(${key})`);
    await waiting;
  } catch (error) {
    missing.push(`no advisory locks: ${message(error)}`);
  } finally {
    await Promise.all([holder.end({ timeout: 5 }), waiter.end({ timeout: 5 })]);
    await admin.unsafe(`DROP TABLE IF EXISTS ${quoted}`).catch(() => {});
    await admin.unsafe(`DROP FUNCTION IF EXISTS ${fn}()`).catch(() => {});
  }
  return missing;
}
