/**
 * The layering that `deno task check` enforces, read from the import
 * specifiers of the sources (static `import`/`export ... from` and
 * `import("...")` with a literal), by a regular expression over the text
 * with its comments blanked out:
 *
 * - the core (`mod.ts`, `src/*.ts`, `src/testing/`, `src/cli/`) never
 *   imports an adapter (`src/adapters/`) or a runtime entry point
 *   (`src/runtime/`);
 * - adapters never import each other (their private `_*.ts` helpers are
 *   shared), nor a runtime entry point;
 * - runtime entry points may import adapters and the core.
 *
 * Only relative specifiers can cross these lines; packages are not checked.
 *
 * @module
 */

/** One import that breaks a rule. */
export interface LayeringViolation {
  /** The importing file, relative to the root, with `/` separators. */
  file: string;
  /** 1-based line of the specifier. */
  line: number;
  specifier: string;
  rule: string;
}

const CORE_RULE = "the core never imports adapters or runtime entry points";
const ADAPTER_RULE = "adapters never import each other";
const ADAPTER_RUNTIME_RULE = "adapters never import runtime entry points";

type Layer = "core" | "adapter" | "adapter-helper" | "runtime" | "other";

function layerOf(path: string): Layer {
  if (path === "mod.ts") return "core";
  if (!path.startsWith("src/")) return "other";
  const rest = path.slice("src/".length);
  if (rest.startsWith("adapters/")) {
    return rest.slice("adapters/".length).startsWith("_") ? "adapter-helper" : "adapter";
  }
  if (rest.startsWith("runtime/")) return "runtime";
  return "core"; // src/*.ts, src/testing/, src/cli/
}

/** The text with comments replaced by spaces, newlines kept (so offsets and lines hold). */
export function blankComments(text: string): string {
  const blank = (s: string) => s.replace(/[^\n]/g, " ");
  // Strings first, so that "//" in a URL or "/*" in a string stays put.
  return text.replace(
    /("(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*'|`(?:[^`\\]|\\.)*`)|\/\*[\s\S]*?\*\/|\/\/[^\n]*/g,
    (match, string: string | undefined) => string ?? blank(match),
  );
}

/** The import specifiers of a module's source, with the line each is on. */
export function importSpecifiers(text: string): { specifier: string; line: number }[] {
  const code = blankComments(text);
  const found: { specifier: string; index: number }[] = [];
  const patterns = [
    // import x from "a"; import { x } from "a"; import type ...; export ... from "a"
    /\b(?:import|export)\b(?:\s+type\b)?[^"'`;()]*?\bfrom\s*(["'])([^"'\n]+)\1/g,
    // import "a";
    /\bimport\s*(["'])([^"'\n]+)\1/g,
    // import("a"), await import('a')
    /\bimport\s*\(\s*(["'`])([^"'`\n]+)\1/g,
  ];
  for (const pattern of patterns) {
    for (const m of code.matchAll(pattern)) {
      const specifier = m[2];
      found.push({ specifier, index: m.index! + m[0].lastIndexOf(specifier) });
    }
  }
  return found
    .sort((a, b) => a.index - b.index)
    .map(({ specifier, index }) => ({
      specifier,
      line: code.slice(0, index).split("\n").length,
    }));
}

function resolve(from: string, specifier: string): string | undefined {
  if (!specifier.startsWith("./") && !specifier.startsWith("../")) return undefined;
  const parts = from.split("/").slice(0, -1);
  for (const part of specifier.split("/")) {
    if (part === "" || part === ".") continue;
    if (part === "..") {
      if (parts.length === 0) return undefined; // outside the root
      parts.pop();
    } else parts.push(part);
  }
  return parts.join("/");
}

/** The rule `file` breaks by importing `target` (both relative to the root), if any. */
export function ruleBroken(file: string, target: string): string | undefined {
  const from = layerOf(file), to = layerOf(target);
  if (from === "core" && (to === "adapter" || to === "adapter-helper" || to === "runtime")) {
    return CORE_RULE;
  }
  if (from === "adapter" || from === "adapter-helper") {
    if (to === "adapter" && target !== file) return ADAPTER_RULE;
    if (to === "runtime") return ADAPTER_RUNTIME_RULE;
  }
  return undefined;
}

async function sources(root: string, dir: string): Promise<string[]> {
  const out: string[] = [];
  const entries = await Array.fromAsync(Deno.readDir(`${root}/${dir}`)).catch(() => []);
  for (const entry of entries) {
    const path = `${dir}/${entry.name}`;
    if (entry.isDirectory) out.push(...await sources(root, path));
    else if (/\.(ts|tsx|js|mjs)$/.test(entry.name)) out.push(path);
  }
  return out;
}

/** Every import under `root` (its `mod.ts` and `src/`) that breaks a rule, in file order. */
export async function checkLayering(root: string): Promise<LayeringViolation[]> {
  const files = [...await sources(root, "src")].sort();
  const mod = await Deno.stat(`${root}/mod.ts`).then(() => true, () => false);
  if (mod) files.unshift("mod.ts");
  const violations: LayeringViolation[] = [];
  for (const file of files) {
    const text = await Deno.readTextFile(`${root}/${file}`);
    for (const { specifier, line } of importSpecifiers(text)) {
      const target = resolve(file, specifier);
      if (target === undefined) continue;
      const rule = ruleBroken(file, target);
      if (rule) violations.push({ file, line, specifier, rule });
    }
  }
  return violations;
}

/** `file:line: imports "specifier": rule`, one line per violation. */
export function formatViolation(v: LayeringViolation): string {
  return `${v.file}:${v.line}: imports "${v.specifier}": ${v.rule}`;
}
