// Ctrl-C or SIGTERM during a run leaves nothing behind: no process below the
// interrupted one, no throwaway server's directory, no temporary file. The
// runs here bring their own servers (DATABASE_URL is cleared for them), as
// on a machine where nothing else is given.
import { assert, assertEquals } from "@std/assert";
import { alive, descendants, type ProcessId } from "../tools/_interrupt.ts";

const SIGNAL_NUMBER = { SIGINT: 2, SIGTERM: 15 } as const;

async function exists(path: string): Promise<boolean> {
  return await Deno.stat(path).then(() => true, () => false);
}

// Reads `stream` into `text` (a shared buffer) until `done` says so, or fails after `ms`.
async function waitFor(
  output: { text: string },
  done: (text: string) => boolean,
  ms: number,
): Promise<void> {
  const deadline = Date.now() + ms;
  while (!done(output.text)) {
    if (Date.now() > deadline) throw new Error(`not ready within ${ms} ms:\n${output.text}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

function collect(stream: ReadableStream<Uint8Array>, into: { text: string }): Promise<void> {
  return stream.pipeThrough(new TextDecoderStream()).pipeTo(
    new WritableStream({ write: (chunk) => void (into.text += chunk) }),
  ).catch(() => {});
}

async function interrupt(
  args: string[],
  env: Record<string, string>,
  ready: (stdout: string, stderr: string) => boolean,
  signal: "SIGINT" | "SIGTERM",
): Promise<{ stdout: string; stderr: string; below: ProcessId[] }> {
  const child = new Deno.Command(Deno.execPath(), {
    args,
    env: { DATABASE_URL: "", ...env },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const stdout = { text: "" };
  const stderr = { text: "" };
  const reading = Promise.all([collect(child.stdout, stdout), collect(child.stderr, stderr)]);
  const kill = setTimeout(() => child.kill("SIGKILL"), 120_000);
  try {
    await waitFor(stdout, () => ready(stdout.text, stderr.text), 90_000).catch((error) => {
      throw new Error(`${error.message}\nstderr:\n${stderr.text}`);
    });
    const below = descendants(child.pid);
    assert(below.length >= 3, `expected a server and a command below, found ${below.length}`);
    child.kill(signal);
    const status = await child.status;
    await reading;
    assertEquals(status.code, 128 + SIGNAL_NUMBER[signal], stderr.text);
    // Processes below may be reaped by init a moment after the exit.
    const deadline = Date.now() + 5_000;
    while (below.some(alive) && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    const left = below.filter(alive).map((p) =>
      `${p.pid}: ${Deno.readTextFileSync(`/proc/${p.pid}/cmdline`).replaceAll("\0", " ")}`
    );
    assertEquals(left, [], "processes left running");
    return { stdout: stdout.text, stderr: stderr.text, below };
  } finally {
    clearTimeout(kill);
    try {
      child.kill("SIGKILL");
    } catch {
      // ended
    }
  }
}

for (const signal of ["SIGTERM", "SIGINT"] as const) {
  Deno.test({
    name: `interrupt: ${signal} to tools/with_postgres.ts stops the command, its server ` +
      `and grandchildren, and removes every temporary directory`,
    sanitizeOps: false,
    sanitizeResources: false,
    async fn() {
      const { stdout, stderr } = await interrupt(
        [
          "run",
          "-A",
          "tools/with_postgres.ts",
          Deno.execPath(),
          "run",
          "-A",
          "tests/_interrupt_child.ts",
        ],
        {},
        (out) => out.includes("\n"),
        signal,
      );
      const inner = JSON.parse(stdout.split("\n")[0]);
      const outer = stderr.match(/initdb in (\S+)\/data/)?.[1];
      const run = outer?.slice(0, outer.lastIndexOf("/"));
      assert(outer && run, `no server directory in:\n${stderr}`);
      for (const path of [outer, inner.serverRoot, inner.socketDir, inner.scratch, run]) {
        assertEquals(await exists(path), false, `${path} was left behind`);
      }
      // The command's own temporary files were made in the run's directory.
      assert(inner.scratch.startsWith(`${run}/`), inner.scratch);
      assert(inner.serverRoot.startsWith(`${run}/`), inner.serverRoot);
    },
  });
}

Deno.test({
  name: "interrupt: SIGINT to `deno task demo` mid-run leaves no process and no directory",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const { stderr } = await interrupt(
      ["task", "demo"],
      { DEMO_SECONDS: "120" },
      (out) => out.includes("demo on"),
      "SIGINT",
    );
    const outer = stderr.match(/initdb in (\S+)\/data/)?.[1];
    const run = outer?.slice(0, outer.lastIndexOf("/"));
    assert(outer && run, `no server directory in:\n${stderr}`);
    assertEquals(await exists(run), false, `${run} was left behind`);
  },
});
