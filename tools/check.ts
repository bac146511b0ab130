/**
 * `deno task check`: type-checks everything, then the runtime-neutral core
 * (mod.ts, the adapters, the conformance suite) against a plain ES lib with
 * no runtime's types in scope, which proves it never touches `Deno`, `Bun`
 * or `process`.
 *
 * @module
 */
import { importMapArgs } from "./_jsr.ts";

const map = await importMapArgs();
const everything = ["mod.ts", "src/", "tests/", "examples/", "bench/", "tools/"];
const existing: string[] = [];
for (const path of everything) {
  try {
    await Deno.stat(path);
    existing.push(path);
  } catch { /* not there yet */ }
}
const core = ["mod.ts", "src/testing/mod.ts"];
for await (const entry of Deno.readDir("src/adapters")) {
  if (entry.name.endsWith(".ts")) core.push(`src/adapters/${entry.name}`);
}
const runs = [
  ["check", ...map, ...existing],
  ["check", "--config", "tools/core_check.json", ...core],
];
for (const args of runs) {
  console.error(`[check] deno ${args.join(" ")}`);
  const { success } = await new Deno.Command(Deno.execPath(), { args }).spawn().status;
  if (!success) Deno.exit(1);
}
