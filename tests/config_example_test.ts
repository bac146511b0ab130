// Runs examples/config_reload.ts as a child process under Deno: every
// instance applies every configuration change, in order, each once. Every
// wait is bounded.
import { assertEquals, assertMatch } from "@std/assert";
import { importMapArgs } from "../tools/_jsr.ts";
import { DATABASE_URL, dbTest } from "./_db.ts";

dbTest(
  "examples/config_reload.ts: every instance applies every change in order, once",
  async () => {
    const child = new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", ...await importMapArgs(), "examples/config_reload.ts"],
      env: { DATABASE_URL: DATABASE_URL!, CHANGES: "20", INTERVAL_MS: "10" },
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const kill = setTimeout(() => child.kill("SIGKILL"), 60_000);
    const output = await child.output().finally(() => clearTimeout(kill));
    const stdout = new TextDecoder().decode(output.stdout);
    const stderr = new TextDecoder().decode(output.stderr);
    assertEquals(output.code, 0, `${stdout}\n${stderr}`);
    assertMatch(
      stdout.trim().split("\n").at(-1)!,
      /^ok: 3 instances applied 20 changes, in order, each once, up to seqno 20$/,
    );
  },
);
