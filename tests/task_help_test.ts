// Every `deno task` prints its usage and exits 0 on `--help`, without
// starting its work (no Postgres: DATABASE_URL is removed, and the tasks
// that start a throwaway server pass --help through without one).
import { assert, assertEquals } from "@std/assert";

const tasks = (JSON.parse(await Deno.readTextFile("deno.json")) as {
  tasks: Record<string, string>;
}).tasks;
// `gate` chains fmt, lint, check, test and a publish dry run: --help would
// reach only the last command of the chain, so it has none of its own
// (CONTRIBUTING.md lists what it runs).
const withoutHelp = new Set(["gate"]);

const decoder = new TextDecoder();
for (const name of Object.keys(tasks)) {
  if (withoutHelp.has(name)) continue;
  Deno.test(`deno task ${name} --help prints usage and exits 0`, async () => {
    const env = Deno.env.toObject();
    delete env.DATABASE_URL;
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["task", "-q", name, "--help"],
      env,
      clearEnv: true,
      stdout: "piped",
      stderr: "piped",
      signal: AbortSignal.timeout(120_000),
    }).output();
    const stdout = decoder.decode(out.stdout);
    const stderr = decoder.decode(out.stderr);
    assertEquals(out.code, 0, `exit ${out.code}\nstdout: ${stdout}\nstderr: ${stderr}`);
    assert(/usage/i.test(stdout + stderr), `no usage text:\n${stdout}\n${stderr}`);
    assert(
      !/throwaway Postgres (started|at)|listening on/i.test(stderr),
      `started a server:\n${stderr}`,
    );
  });
}
