// pgbench through Deno's subprocess API.
import { parsePgbench, pgbenchArgs } from "./_measure.ts";

/**
 * Runs pgbench with a custom script, `clients` clients, for `seconds`, in
 * prepared mode; returns transactions per second (excluding connection setup).
 */
export async function pgbench(
  binDir: string,
  url: string,
  script: string,
  clients: number,
  seconds: number,
): Promise<{ tps: number; transactions: number; failed: number }> {
  const file = await Deno.makeTempFile({ suffix: ".sql" });
  await Deno.writeTextFile(file, script);
  const args = pgbenchArgs(file, url, clients, seconds);
  const out = await new Deno.Command(`${binDir}/pgbench`, {
    args,
    stdout: "piped",
    stderr: "piped",
  })
    .output();
  await Deno.remove(file);
  const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
  if (!out.success) throw new Error(`pgbench failed:\n${text}`);
  return parsePgbench(text);
}

/** Finds the directory holding pgbench. */
export async function findPgBin(): Promise<string> {
  const candidates = [Deno.env.get("PG_BIN") ?? ""];
  try {
    for await (const entry of Deno.readDir("/usr/lib/postgresql")) {
      candidates.push(`/usr/lib/postgresql/${entry.name}/bin`);
    }
  } catch { /* none */ }
  for (const dir of (Deno.env.get("PATH") ?? "").split(":")) candidates.push(dir);
  for (const dir of candidates) {
    if (!dir) continue;
    try {
      await Deno.stat(`${dir}/pgbench`);
      return dir;
    } catch { /* next */ }
  }
  throw new Error("pgbench not found (set PG_BIN)");
}
