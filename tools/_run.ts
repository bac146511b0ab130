// One run of a tool that starts child commands (the tests, the demo, the
// benchmarks, the torture campaign): a temporary directory that every
// descendant uses as TMPDIR, so that whatever they leave there (a server a
// child could not stop, a scratch directory) goes when the run ends; and
// children that are told when the run is interrupted and waited for.
import { notInterrupted, onInterrupt, removeAtInterrupt, withTimeout } from "./_interrupt.ts";

/** The environment variable that names the outermost run's directory. */
export const OUTERMOST_RUN_DIR = "PERSIST_CONSENSUS_RUN_DIR";

/** A run's temporary directory, removed by {@linkcode Run.close} or an interrupt. */
export interface Run {
  /** The directory; children get it as `TMPDIR`. */
  readonly tmpDir: string;
  /** `TMPDIR`, for the children's environment. */
  readonly env: Record<string, string>;
  /** Removes the directory. */
  close(): Promise<void>;
}

/** Makes a run's temporary directory, in `$TMPDIR` or /tmp. */
export async function startRun(): Promise<Run> {
  const tmpDir = await Deno.makeTempDir({ prefix: "persist-consensus-run-" });
  // Servers in it run as another user when this one is root: let it pass.
  await Deno.chmod(tmpDir, 0o711);
  const unregister = onInterrupt(() => Promise.resolve());
  const unremove = removeAtInterrupt(tmpDir);
  // The outermost run's directory, for paths that must stay short (a Unix
  // socket's) however deep runs nest.
  const outermost = Deno.env.get(OUTERMOST_RUN_DIR) ?? tmpDir;
  return {
    tmpDir,
    env: { TMPDIR: tmpDir, [OUTERMOST_RUN_DIR]: outermost },
    async close() {
      await Deno.remove(tmpDir, { recursive: true }).catch(() => {});
      unremove();
      unregister();
    },
  };
}

/**
 * Runs a child command with inherited stdio. An interrupt of this process
 * is passed on to it as the same signal, and it is given 30 s to end (its
 * own cleanup) before it is killed.
 *
 * @returns Its exit status.
 */
export async function runChild(
  cmd: string,
  args: readonly string[],
  env: Record<string, string>,
): Promise<Deno.CommandStatus> {
  await notInterrupted();
  const child = new Deno.Command(cmd, { args: [...args], env, stdin: "inherit" }).spawn();
  const unregister = onInterrupt(async (signal) => {
    try {
      child.kill(signal);
    } catch {
      return; // already ended
    }
    await withTimeout(child.status, 30_000).catch(() => {
      try {
        child.kill("SIGKILL");
      } catch {
        // ended meanwhile
      }
    });
  });
  try {
    return await child.status;
  } finally {
    unregister();
  }
}
