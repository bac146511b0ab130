/**
 * `--help` for the repository's task scripts: prints the usage text to
 * stdout and exits 0 when the arguments ask for help (`--help` or `-h`), so
 * that `deno task <name> --help` never starts the work itself.
 *
 * @module
 */

/** Prints `text` and exits 0 when `args` hold `--help` or `-h`; returns otherwise. */
export function helpAndExit(text: string, args: readonly string[] = Deno.args): void {
  if (!args.some((arg) => arg === "--help" || arg === "-h")) return;
  console.log(text.trimEnd());
  Deno.exit(0);
}
