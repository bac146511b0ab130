// Decides how Deno resolves `@std/assert`: from JSR when it can be reached
// (or is cached), otherwise through tests/_offline/import_map.json, which
// maps it to a stand-in over node:assert/strict. See README, "Offline tests".

/** Import-map flags for `deno test`/`deno check`: empty when JSR works. */
export async function importMapArgs(): Promise<string[]> {
  const probe = await new Deno.Command(Deno.execPath(), {
    args: ["cache", "--quiet", "tools/_std_assert_probe.ts"],
    stdout: "null",
    stderr: "null",
  }).output();
  if (probe.success) return [];
  console.error(
    "*** jsr:@std/assert cannot be resolved (JSR unreachable): using the offline stand-in " +
      "tests/_offline/std_assert.ts (node:assert/strict). See README, 'Offline tests'. ***",
  );
  return ["--import-map", "tests/_offline/import_map.json"];
}
