// The layering check of `deno task check` (tools/_layering.ts) against a
// synthetic tree that breaks every rule, and against this repository.
import { assertEquals } from "@std/assert";
import {
  checkLayering,
  formatViolation,
  importSpecifiers,
  type LayeringViolation,
} from "../tools/_layering.ts";

async function tree(files: Record<string, string>): Promise<string> {
  const root = await Deno.makeTempDir({ prefix: "layering-test-" });
  for (const [path, text] of Object.entries(files)) {
    await Deno.mkdir(`${root}/${path.slice(0, path.lastIndexOf("/") + 1) || "."}`, {
      recursive: true,
    });
    await Deno.writeTextFile(`${root}/${path}`, text);
  }
  return root;
}

Deno.test("layering: every rule is flagged with file, line and the rule", async () => {
  const root = await tree({
    "mod.ts": 'export { fromPg } from "./src/adapters/pg.ts";\n',
    "src/types.ts": "export type Id = string;\n",
    "src/store.ts": [
      'import type { Id } from "./types.ts";',
      "// import { x } from './adapters/pg.ts';  (a comment: not an import)",
      "/* import './runtime/deno.ts' */",
      'const url = "postgres://host/db"; // a string with // in it',
      "export async function load() {",
      '  return await import("./runtime/deno.ts");',
      "}",
      "",
    ].join("\n"),
    "src/testing/harness.ts": [
      "import {",
      "  fromPg,",
      '} from "../adapters/pg.ts";',
      'import "../adapters/_shared.ts";',
      "",
    ].join("\n"),
    "src/cli/run.ts": 'export * from "../runtime/node.ts";\n',
    "src/adapters/_shared.ts": 'export { fromPg } from "./pg.ts";\n',
    "src/adapters/pg.ts": 'import { x } from "./_shared.ts";\nimport { y } from "./pg.ts";\n',
    "src/adapters/bun.ts": 'import { fromPg } from "./pg.ts";\nimport "../runtime/node.ts";\n',
    "src/runtime/node.ts": 'import { fromPg } from "../adapters/pg.ts";\nimport "../store.ts";\n',
  });
  try {
    const violations = await checkLayering(root);
    const core = "the core never imports adapters or runtime entry points";
    const expected: LayeringViolation[] = [
      { file: "mod.ts", line: 1, specifier: "./src/adapters/pg.ts", rule: core },
      {
        file: "src/adapters/_shared.ts",
        line: 1,
        specifier: "./pg.ts",
        rule: "adapters never import each other",
      },
      {
        file: "src/adapters/bun.ts",
        line: 1,
        specifier: "./pg.ts",
        rule: "adapters never import each other",
      },
      {
        file: "src/adapters/bun.ts",
        line: 2,
        specifier: "../runtime/node.ts",
        rule: "adapters never import runtime entry points",
      },
      { file: "src/cli/run.ts", line: 1, specifier: "../runtime/node.ts", rule: core },
      { file: "src/store.ts", line: 6, specifier: "./runtime/deno.ts", rule: core },
      { file: "src/testing/harness.ts", line: 3, specifier: "../adapters/pg.ts", rule: core },
      { file: "src/testing/harness.ts", line: 4, specifier: "../adapters/_shared.ts", rule: core },
    ];
    assertEquals(violations, expected);
    assertEquals(
      formatViolation(violations[4]),
      'src/cli/run.ts:1: imports "../runtime/node.ts": ' + core,
    );
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("layering: a clean tree passes", async () => {
  const root = await tree({
    "mod.ts": 'export * from "./src/store.ts";\n',
    "src/store.ts": 'import "./types.ts";\n',
    "src/types.ts": "",
    "src/adapters/pg.ts": 'import "../store.ts";\nimport "./_shared.ts";\nimport "pg";\n',
    "src/adapters/_shared.ts": 'import "../types.ts";\n',
    "src/runtime/deno.ts": 'import "../adapters/pg.ts";\n',
  });
  try {
    assertEquals(await checkLayering(root), []);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("layering: this repository keeps its layers", async () => {
  assertEquals((await checkLayering(".")).map(formatViolation), []);
});

Deno.test("layering: specifiers of every import form, with their lines", () => {
  const text = [
    'import a from "a";',
    "import type { B } from 'b';",
    'export { c } from "./c.ts";',
    'import "./d.ts";',
    "const e = await import('./e.ts');",
    'const s = "import x from \\"./not.ts\\"";',
    "/** @example",
    ' * import { f } from "./f.ts";',
    " */",
  ].join("\n");
  assertEquals(importSpecifiers(text), [
    { specifier: "a", line: 1 },
    { specifier: "b", line: 2 },
    { specifier: "./c.ts", line: 3 },
    { specifier: "./d.ts", line: 4 },
    { specifier: "./e.ts", line: 5 },
  ]);
});
