// Every statement of the Postgres statement set keeps its plan on the primary
// key on a table that was never analyzed. A driver prepares a statement once
// per connection, and once Postgres settles on a generic plan it keeps it
// until the table's statistics change: a plan made while the table was empty
// stays while it grows (with autovacuum slow or off, for a long time). A
// sequential scan in such a plan makes every operation read the whole table
// (a batched first write planned its snapshot check that way: the young
// table's first writes fell to 0.03 of an analyzed table's; BENCHMARKS.md,
// "First writes on a growing table"). So: on an empty, never analyzed table,
// the generic plan of each statement has no sequential scan of it.
import { assert } from "@std/assert";
import type { SqlStatement } from "../mod.ts";
import { dialectFor } from "../src/dialect.ts";
import { connect, dbTest } from "./_db.ts";

const TABLE = "plans_young";

// A value of each parameter, as SQL text (EXPLAIN does not run the statement).
function literal(statement: SqlStatement, index: number): string {
  const type = statement.paramTypes[index];
  if (type === "int8") return "1";
  if (type === "bytea") return "'\\x00'::bytea";
  if (index === 0 && /jsonb?_(array_elements|to_recordset)/.test(statement.text)) {
    return statement.text.includes("'k'")
      ? `'[{"k":"a","s":"0","d":"00"},{"k":"b","s":"1","d":"00"}]'`
      : `'["a","b"]'`;
  }
  return "'a'";
}

function seqScans(node: Record<string, unknown>, out: string[] = []): string[] {
  if (node["Node Type"] === "Seq Scan" && node["Relation Name"] === TABLE) {
    out.push(String(node["Alias"] ?? TABLE));
  }
  for (const child of (node["Plans"] as Record<string, unknown>[] | undefined) ?? []) {
    seqScans(child, out);
  }
  return out;
}

for (const notify of [false, true]) {
  dbTest(
    `plans: no statement scans a never-analyzed table sequentially in its generic plan (Postgres statements${
      notify ? ", notify" : ""
    })`,
    async () => {
      const sql = connect({ max: 1 });
      try {
        const dialect = dialectFor("postgres", TABLE, notify);
        await sql.unsafe(dialect.dropTable);
        await sql.unsafe(dialect.createTable);
        await sql.unsafe(`ALTER TABLE ${TABLE} SET (autovacuum_enabled = false)`);
        await sql.unsafe("SET plan_cache_mode = force_generic_plan");
        const statements = Object.values(dialect).filter((value): value is SqlStatement =>
          typeof value === "object" && value !== null && "paramTypes" in value
        );
        assert(statements.length >= 8, `found ${statements.length} statements`);
        const problems: string[] = [];
        for (const statement of statements) {
          const name = `plans_${statement.name}`;
          const types = statement.paramTypes.map((type) => type === "int8" ? "int8" : type);
          await sql.unsafe(
            `PREPARE ${name}${types.length ? `(${types.join(", ")})` : ""} AS ${statement.text}`,
          );
          const args = statement.paramTypes.map((_, i) => literal(statement, i));
          const [row] = await sql.unsafe(
            `EXPLAIN (FORMAT JSON) EXECUTE ${name}${args.length ? `(${args.join(", ")})` : ""}`,
          );
          const plan = (row["QUERY PLAN"] as { Plan: Record<string, unknown> }[])[0].Plan;
          const scans = seqScans(plan);
          if (scans.length > 0) problems.push(`${statement.name}: Seq Scan on ${scans.join(", ")}`);
          await sql.unsafe(`DEALLOCATE ${name}`);
        }
        assert(problems.length === 0, problems.join("\n"));
      } finally {
        await sql.end();
      }
    },
  );
}
