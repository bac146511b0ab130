// The bench runners' arguments: `--help` prints usage and exits 0 without
// starting a Postgres, an unknown flag exits 2 with one line.
import { assert, assertEquals, assertStringIncludes } from "@std/assert";
import { benchArgs } from "../bench/_measure.ts";

Deno.test("benchArgs: common and runner flags, help, problems", () => {
  const ok = benchArgs(["--quick", "--seconds", "2", "--write"], { flags: ["write"] });
  assertEquals([ok.quick, ok.seconds, ok.rounds, ok.flag("write"), ok.help], [
    true,
    2,
    1,
    true,
    false,
  ]);
  assertEquals(ok.problem, undefined);
  assertEquals(benchArgs(["-h"]).help, true);
  assertEquals(benchArgs(["--help"]).help, true);
  assertEquals(benchArgs(["--write"]).problem, 'Unknown argument "--write"');
  assertEquals(benchArgs(["quick"]).problem, 'Unknown argument "quick"');
  assertEquals(
    benchArgs(["--rounds", "zero"]).problem,
    "--rounds needs a positive number, got zero",
  );
  assertEquals(benchArgs(["--seconds"]).problem, "--seconds needs a positive number, got nothing");
  assertEquals(benchArgs(["--samples", "3"], { options: ["samples"] }).option("samples", 30), 3);
});

const decoder = new TextDecoder();
/** Runs `args` with no DATABASE_URL, so nothing can reach a server by accident. */
async function run(command: string, args: string[]) {
  const env = Deno.env.toObject();
  delete env.DATABASE_URL;
  const out = await new Deno.Command(command, {
    args,
    env,
    clearEnv: true,
    stdout: "piped",
    stderr: "piped",
  }).output();
  return { code: out.code, stdout: decoder.decode(out.stdout), stderr: decoder.decode(out.stderr) };
}

const deno = Deno.execPath();
const runners: [string, string[]][] = [
  // As `deno task bench` runs it: through with_postgres, which must not start a server for --help.
  ["bench", ["run", "-A", "tools/with_postgres.ts", deno, "run", "-A", "bench/report.ts"]],
  ["bench:watch", [
    "run",
    "-A",
    "tools/with_postgres.ts",
    deno,
    "run",
    "-A",
    "bench/watch_report.ts",
  ]],
  ["bench:lease", [
    "run",
    "-A",
    "tools/with_postgres.ts",
    deno,
    "run",
    "-A",
    "bench/lease_report.ts",
  ]],
];

for (const [task, args] of runners) {
  Deno.test(`${task} --help prints usage and exits 0 without starting Postgres`, async () => {
    const { code, stdout, stderr } = await run(deno, [...args, "--help"]);
    assertEquals(code, 0, stderr);
    assert(stdout.startsWith(`Usage: deno task ${task} `), stdout);
    assertStringIncludes(stdout, "--help, -h");
    assert(!stderr.includes("[with_postgres]"), `a server was started: ${stderr}`);
  });
}

// Unknown flags are checked before the runner looks for DATABASE_URL, so run
// the scripts themselves (with_postgres would start a server first).
for (const script of ["bench/report.ts", "bench/watch_report.ts", "bench/lease_report.ts"]) {
  Deno.test(`${script} --frobnicate exits 2 with one line`, async () => {
    const { code, stdout, stderr } = await run(deno, ["run", "-A", script, "--frobnicate"]);
    assertEquals(code, 2);
    assertEquals(stdout, "");
    assertEquals(stderr, 'Unknown argument "--frobnicate" (--help lists the flags)\n');
  });
}

Deno.test("bench/bun_report.ts --help under Bun", async (t) => {
  const bun = await new Deno.Command("bun", { args: ["--version"], stdout: "null" }).output()
    .catch(() => undefined);
  if (!bun?.success) {
    console.error(
      "*** SKIPPED: bun is not on the PATH, the Bun runner's --help is not checked ***",
    );
    return;
  }
  await t.step("--help", async () => {
    const { code, stdout } = await run("bun", ["run", "bench/bun_report.ts", "--help"]);
    assertEquals(code, 0);
    assert(stdout.startsWith("Usage: bun run bench/bun_report.ts"), stdout);
  });
  await t.step("unknown flag", async () => {
    const { code, stderr } = await run("bun", ["run", "bench/bun_report.ts", "--frobnicate"]);
    assertEquals(code, 2);
    assertEquals(stderr, 'Unknown argument "--frobnicate" (--help lists the flags)\n');
  });
});
