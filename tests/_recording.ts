// A recording wrapper over a real executor: it forwards every call to the
// real driver (the database still decides every outcome) and keeps the list
// of statements sent, so tests can count round trips and check SQL text.
import type { QueryOptions, SqlExecutor, SqlStatement, SqlValue } from "../mod.ts";

export interface Recording {
  executor: SqlExecutor;
  queries: { name: string; text: string; params: readonly SqlValue[] }[];
  ddl: string[];
}

export function recording(inner: SqlExecutor): Recording {
  const rec: Recording = {
    queries: [],
    ddl: [],
    executor: {
      query(statement: SqlStatement, params: readonly SqlValue[], options?: QueryOptions) {
        rec.queries.push({ name: statement.name, text: statement.text, params });
        return inner.query(statement, params, options);
      },
      ddl(text: string) {
        rec.ddl.push(text);
        return inner.ddl(text);
      },
      close: () => inner.close(),
    },
  };
  return rec;
}
