/**
 * Prints one line, `N passed, N failed, N skipped`, for every JUnit report
 * given (Deno's and Bun's), and a line per report before it. Exits 1 when a
 * report is missing or holds a failure.
 *
 * Usage: `deno run -A tools/junit_summary.ts .tmp/*.junit.xml`
 *
 * @module
 */
let passed = 0;
let failed = 0;
let skipped = 0;
let missing = 0;
for (const path of Deno.args) {
  let xml: string;
  try {
    xml = await Deno.readTextFile(path);
  } catch {
    console.log(`${path}: missing (the suite did not run to the end)`);
    missing++;
    continue;
  }
  let p = 0, f = 0, s = 0;
  // Each <testcase ...>...</testcase> or <testcase .../>.
  for (const match of xml.matchAll(/<testcase\b[^>]*?(?:\/>|>([\s\S]*?)<\/testcase>)/g)) {
    const body = match[1] ?? "";
    if (/<(failure|error)\b/.test(body)) f++;
    else if (/<skipped\b/.test(body)) s++;
    else p++;
  }
  console.log(`${path}: ${p} passed, ${f} failed, ${s} skipped`);
  passed += p;
  failed += f;
  skipped += s;
}
console.log(`${passed} passed, ${failed} failed, ${skipped} skipped`);
Deno.exit(failed > 0 || missing > 0 ? 1 : 0);
