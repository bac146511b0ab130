// Shared measurement helpers for the benchmarks: time-boxed worker loops,
// latency percentiles, and pgbench runs of the identical statements.

/** What one time-boxed run measured. */
export interface RunResult {
  /** Compare-and-sets that committed (or operations completed, for reads). */
  ops: number;
  /** Operations attempted (CAS attempts, including mismatches). */
  attempts: number;
  /** Operations that threw. */
  errors: number;
  /** Wall time, seconds. */
  seconds: number;
  /** Latencies of successful operations, milliseconds (a sample; empty for pgbench). */
  latencies: number[];
}

export function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  const index = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[index];
}

/** Runs `workers` loops until `ms` passes; each loop iteration reports its outcome. */
export async function timeBoxed(
  workers: number,
  ms: number,
  body: (worker: number) => Promise<{ ok: boolean; attempts: number; startedAt: number }>,
): Promise<RunResult> {
  const result: RunResult = { ops: 0, attempts: 0, errors: 0, seconds: 0, latencies: [] };
  const started = performance.now();
  const deadline = started + ms;
  await Promise.all(
    Array.from({ length: workers }, async (_, worker) => {
      while (performance.now() < deadline) {
        try {
          const outcome = await body(worker);
          result.attempts += outcome.attempts;
          if (outcome.ok) {
            result.ops++;
            if (result.latencies.length < 200_000) {
              result.latencies.push(performance.now() - outcome.startedAt);
            }
          }
        } catch (error) {
          result.errors++;
          if (result.errors <= 3) console.error(`  error: ${(error as Error).message}`);
        }
      }
    }),
  );
  result.seconds = (performance.now() - started) / 1000;
  result.latencies.sort((a, b) => a - b);
  return result;
}

export function hex(bytes: Uint8Array): string {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

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
  // pgbench cannot run as root only for initdb; as a client it is fine.
  const args = [
    "-n",
    "-M",
    "prepared",
    "-c",
    String(clients),
    "-j",
    String(Math.min(clients, 2)),
    "-T",
    String(seconds),
    "-f",
    file,
    url,
  ];
  const out = await new Deno.Command(`${binDir}/pgbench`, {
    args,
    stdout: "piped",
    stderr: "piped",
  })
    .output();
  await Deno.remove(file);
  const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
  if (!out.success) throw new Error(`pgbench failed:\n${text}`);
  const tps = Number(/tps = ([\d.]+) \(without initial connection time\)/.exec(text)?.[1]);
  const transactions = Number(/number of transactions actually processed: (\d+)/.exec(text)?.[1]);
  const failed = Number(/number of failed transactions: (\d+)/.exec(text)?.[1] ?? 0);
  return { tps, transactions, failed };
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
