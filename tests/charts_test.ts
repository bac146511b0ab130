// The benchmark charts (bench/_charts.ts): fixed numbers in, well-formed SVG
// out, one polyline per series, every label present, no NaN.
import { assert, assertEquals, assertStringIncludes } from "@std/assert";
import { benchmarkCharts, type ChartResults, lineChart, niceStep } from "../bench/_charts.ts";

/**
 * Checks that `text` is well-formed XML as far as SVG needs: every tag closed
 * in order, attributes quoted, no stray `<` or `&`. Returns the element names
 * in document order.
 */
function parseXmlish(text: string): string[] {
  const names: string[] = [];
  const stack: string[] = [];
  const token = /<(\/?)([A-Za-z][\w:-]*)((?:\s+[\w:-]+="[^"<]*")*)\s*(\/?)>|([^<]+)|(<)/g;
  for (const m of text.matchAll(token)) {
    const [, closing, name, , selfClosing, textNode, stray] = m;
    if (stray) throw new Error(`Stray "<" at ${m.index}: ${text.slice(m.index, m.index! + 40)}`);
    if (textNode !== undefined) {
      const amp = /&(?!(lt|gt|amp|quot|apos);)/.exec(textNode);
      if (amp) throw new Error(`Unescaped "&" in ${JSON.stringify(textNode)}`);
      continue;
    }
    if (closing) {
      const open = stack.pop();
      if (open !== name) throw new Error(`</${name}> closes <${open}>`);
    } else {
      names.push(name);
      if (!selfClosing) stack.push(name);
    }
  }
  if (stack.length > 0) throw new Error(`Unclosed <${stack.join("> <")}>`);
  return names;
}

const results: ChartResults = {
  machine: { date: "2026-01-02T03:04:05Z" },
  uncontended: [
    ...[1, 4, 16].flatMap((workers) =>
      [
        { adapter: "postgres-js", runtime: "deno", workers, payload: 8, library: 1000 * workers },
        { adapter: "node-postgres", runtime: "deno", workers, payload: 8, library: 900 * workers },
        { adapter: "Bun.SQL", runtime: "bun", workers, payload: 8, library: 1100 * workers },
        // 1 KiB rows are not charted.
        { adapter: "postgres-js", runtime: "deno", workers, payload: 1024, library: 1 },
      ].map((r) => ({ ...r, pgbench: 1500 * workers }))
    ),
  ],
  contended: [1, 4, 16].flatMap((writers) => [
    { mode: "library read-then-CAS, 1 process", writers, committed: 1000 - writers },
    { mode: "pgbench read-then-CAS", writers, committed: 900 - 10 * writers },
  ]),
  peers: [
    { store: "library (porsager, Deno)", loop: "read-then-CAS", workers: 1, keys: "own key" },
    { store: "library (porsager, Deno)", loop: "update()", workers: 1, keys: "own key" },
    { store: "Deno KV (local)", loop: "read-then-CAS", workers: 1, keys: "own key" },
    { store: "Deno KV (local)", loop: "read-then-CAS", workers: 16, keys: "own key" },
    { store: "etcd (single node)", loop: "read-then-CAS", workers: 1, keys: "own key" },
    { store: "etcd (single node)", loop: "read-then-CAS", workers: 16, keys: "own key" },
    { store: "Deno KV (local)", loop: "read-then-CAS", workers: 16, keys: "one shared key" },
  ].map((r, i) => ({ ...r, committed: 500 + i })),
};

const polylines = (svg: string) => svg.match(/<polyline /g)?.length ?? 0;

Deno.test("charts: throughput has one polyline per adapter, pgbench run and peer, with labels", () => {
  const svg = benchmarkCharts(results)["throughput.svg"];
  const names = parseXmlish(svg);
  assertEquals(names[0], "svg");
  assert(!svg.includes("NaN"), "no NaN in the markup");
  assert(!svg.includes("Infinity"), "no Infinity in the markup");
  // 3 adapters, pgbench per runtime (2), library update(), Deno KV, etcd; the
  // peers' library read-then-CAS is the postgres-js (Deno) line already.
  assertEquals(polylines(svg), 8);
  for (
    const label of [
      "postgres-js (Deno)",
      "node-postgres (Deno)",
      "Bun.SQL (Bun)",
      "pgbench, same statements (Deno run)",
      "pgbench, same statements (Bun run)",
      "library (porsager, Deno), update()",
      "Deno KV (local)",
      "etcd (single node)",
      "workers (log scale)",
      "committed compare-and-sets per second",
      "run of 2026-01-02T03:04:05Z",
    ]
  ) assertStringIncludes(svg, label);
  assert(!svg.includes("library (porsager, Deno), read-then-CAS"));
  // Ticks: the workers on x, round numbers on y up to at least the top point (17,600).
  for (const tick of [">1<", ">4<", ">16<", ">0<", ">20,000<"]) assertStringIncludes(svg, tick);
});

Deno.test("charts: contended has one polyline per mode and one per contended peer", () => {
  const svg = benchmarkCharts(results)["contended.svg"];
  parseXmlish(svg);
  assertEquals(polylines(svg), 3);
  assertStringIncludes(svg, "library read-then-CAS, 1 process");
  assertStringIncludes(svg, "pgbench read-then-CAS");
  assertStringIncludes(svg, "Deno KV (local) (16 writers only)");
  assertStringIncludes(svg, "writers (log scale)");
  assert(!svg.includes("NaN"));
});

Deno.test("charts: a peers-only run draws the library's read-then-CAS line and no contended chart", () => {
  const charts = benchmarkCharts({ source: "a peers-only run", peers: results.peers });
  assertEquals(Object.keys(charts), ["throughput.svg"]);
  const svg = charts["throughput.svg"];
  parseXmlish(svg);
  assertEquals(polylines(svg), 4);
  assertStringIncludes(svg, "library (porsager, Deno), read-then-CAS");
  assertStringIncludes(svg, "a peers-only run");
});

Deno.test("charts: non-finite points are left out and labels are escaped", () => {
  const svg = lineChart({
    title: `A <title> & "quotes"`,
    xLabel: "x",
    yLabel: "y",
    xTicks: [1, 2],
    series: [
      { label: "a & b", points: [{ x: 1, y: NaN }, { x: 2, y: 5 }] },
      { label: "all missing", points: [{ x: 1, y: Infinity }] },
    ],
  });
  parseXmlish(svg);
  assert(!svg.includes("NaN") && !svg.includes("Infinity"));
  assertEquals(polylines(svg), 1, "the series with no finite point is not drawn");
  assertStringIncludes(svg, "a &amp; b");
  assertStringIncludes(svg, "A &lt;title&gt; &amp; &quot;quotes&quot;");
  assert(!svg.includes("all missing"));
});

Deno.test("charts: the XML check itself rejects broken markup", () => {
  for (const broken of ["<svg><g></svg>", "<svg>a & b</svg>", "<svg><text>x</svg>", "<svg x=1/>"]) {
    let threw = false;
    try {
      parseXmlish(broken);
    } catch {
      threw = true;
    }
    assert(threw, `accepted ${broken}`);
  }
});

Deno.test("charts: niceStep gives round steps", () => {
  assertEquals(niceStep(17_600), 5000);
  assertEquals(niceStep(1_000), 200);
  assertEquals(niceStep(12), 2.5);
  assertEquals(niceStep(0), 1);
});

Deno.test("charts: bench/charts.ts renders a results JSON into the given directory", async () => {
  const dir = await Deno.makeTempDir({ prefix: "charts-test-" });
  try {
    const file = `${dir}/results.json`;
    await Deno.writeTextFile(file, JSON.stringify(results));
    const run = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", "bench/charts.ts", file, "--out", `${dir}/out`],
      stdout: "piped",
      stderr: "piped",
    }).output();
    assertEquals(run.code, 0, new TextDecoder().decode(run.stderr));
    for (const name of ["throughput.svg", "contended.svg"]) {
      parseXmlish(await Deno.readTextFile(`${dir}/out/${name}`));
    }
    const usage = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", "bench/charts.ts"],
      stdout: "piped",
      stderr: "piped",
    }).output();
    assertEquals(usage.code, 2);
    assertStringIncludes(new TextDecoder().decode(usage.stderr), "Usage:");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
