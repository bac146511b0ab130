/**
 * `deno task check`: checks the layering of `src/` (`tools/_layering.ts`:
 * the core never imports adapters or runtime entry points, adapters never
 * import each other), type-checks everything, then the runtime-neutral core
 * (mod.ts, the adapters, the conformance suite) against a plain ES lib with
 * no runtime's types in scope, which proves it never touches `Deno`, `Bun`
 * or `process`.
 *
 * @module
 */
import { importMapArgs } from "./_jsr.ts";
import { checkLayering, formatViolation } from "./_layering.ts";
import { helpAndExit } from "./_usage.ts";

helpAndExit(`Usage: deno task check

Checks the layering (the core imports no adapter or runtime entry point,
adapters import no other adapter), then type-checks every file, and the core,
the adapters and the conformance suite once more against a plain ES library
with no runtime's types. Exits 1 on any problem.

  -h, --help   print this and exit
`);

const violations = await checkLayering(".");
for (const violation of violations) console.error(`[check] ${formatViolation(violation)}`);
if (violations.length > 0) {
  console.error(`[check] layering: ${violations.length} import(s) break a rule`);
  Deno.exit(1);
}
console.error(
  "[check] layering: the core imports no adapter or runtime, adapters no other adapter",
);

const map = await importMapArgs();
const everything = ["mod.ts", "src/", "tests/", "examples/", "bench/", "tools/", "torture/"];
// Files that only Bun runs (`bun:test`, the `Bun` global): Deno cannot
// resolve their imports. The adapters and the entry point they exercise are
// checked here, with everything else.
const bunOnly = (path: string) =>
  path.startsWith("tests/bun/") || /^(examples|bench|torture)\/bun_/.test(path);
async function files(path: string): Promise<string[]> {
  const info = await Deno.stat(path).catch(() => undefined);
  if (!info) return []; // not there yet
  if (!info.isDirectory) return bunOnly(path) ? [] : [path];
  const out: string[] = [];
  for await (const entry of Deno.readDir(path)) {
    const child = `${path.replace(/\/$/, "")}/${entry.name}`;
    if (entry.isDirectory) out.push(...await files(`${child}/`));
    else if (/\.(ts|tsx)$/.test(entry.name)) out.push(...await files(child));
  }
  return out;
}
const existing: string[] = [];
for (const path of everything) existing.push(...await files(path));
const core = ["mod.ts", "src/testing/mod.ts", "src/runtime/bun.ts", "src/cli/run.ts"];
for await (const entry of Deno.readDir("src/adapters")) {
  if (entry.name.endsWith(".ts")) core.push(`src/adapters/${entry.name}`);
}
const runs = [
  ["check", ...map, ...existing],
  ["check", "--config", "tools/core_check.json", "tools/core_web.d.ts", ...core],
];
for (const args of runs) {
  console.error(`[check] deno ${args.join(" ")}`);
  const { success } = await new Deno.Command(Deno.execPath(), { args }).spawn().status;
  if (!success) Deno.exit(1);
}
