/**
 * SVG line charts of a benchmark run, written by hand (no dependency): a
 * white background so they read in GitHub's dark theme too, axes with ticks
 * and labels, one polyline per series with a marker per point, and a legend.
 * `bench/report.ts --write` and `bench/charts.ts` render the same results
 * JSON through {@linkcode benchmarkCharts}.
 *
 * @module
 */

/** One line of a chart: its points, in x order. */
export interface Series {
  label: string;
  points: { x: number; y: number }[];
  /** Drawn dashed: a ceiling or a reference, not the library. */
  style?: "solid" | "dashed" | "dotted";
}

/** What {@linkcode lineChart} draws. */
export interface ChartSpec {
  title: string;
  /** A line under the title: which run the figures come from. */
  subtitle?: string;
  xLabel: string;
  yLabel: string;
  /** The x values that get a tick; the axis is logarithmic (workers 1, 4, 16). */
  xTicks: number[];
  series: Series[];
}

// Okabe-Ito (its yellow swapped for darker tones that read on white), readable
// by the colour-blind; references are dashed or dotted besides.
const COLORS = [
  "#0072B2",
  "#D55E00",
  "#009E73",
  "#CC79A7",
  "#E69F00",
  "#56B4E9",
  "#000000",
  "#882255",
  "#7F7F7F",
  "#44AA99",
];
const DASH = { solid: "", dashed: "6 4", dotted: "2 3" } as const;

const WIDTH = 900, HEIGHT = 440;
const PLOT = { left: 80, right: 520, top: 64, bottom: 380 };

/** Escapes text for an XML text node or attribute. */
export function escapeXml(text: string): string {
  return text.replace(
    /[<>&"']/g,
    (c) => ({ "<": "&lt;", ">": "&gt;", "&": "&amp;", '"': "&quot;", "'": "&apos;" })[c]!,
  );
}

/** A round step for about `count` ticks up to `max`: 1, 2, 2.5 or 5 times a power of ten. */
export function niceStep(max: number, count = 5): number {
  if (!(max > 0) || !Number.isFinite(max)) return 1;
  const raw = max / count;
  const power = 10 ** Math.floor(Math.log10(raw));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * power >= raw) return m * power;
  return 10 * power;
}

const num = (x: number) => x.toLocaleString("en-US", { maximumFractionDigits: 1 });
const fixed = (x: number) => x.toFixed(1);

/**
 * Renders a line chart as a standalone SVG document. Points whose x or y is
 * not a finite number are left out, and a series left with no point is
 * not drawn, so no `NaN` reaches the markup.
 */
export function lineChart(spec: ChartSpec): string {
  const series = spec.series
    .map((s) => ({
      ...s,
      points: s.points.filter((p) => Number.isFinite(p.x) && Number.isFinite(p.y) && p.x > 0),
    }))
    .filter((s) => s.points.length > 0);
  const xs = [...spec.xTicks, ...series.flatMap((s) => s.points.map((p) => p.x))];
  const lo = Math.log(Math.min(...xs)), hi = Math.log(Math.max(...xs));
  const xOf = (x: number) =>
    hi === lo
      ? (PLOT.left + PLOT.right) / 2
      : PLOT.left + 20 + (Math.log(x) - lo) / (hi - lo) * (PLOT.right - PLOT.left - 40);
  const maxY = Math.max(0, ...series.flatMap((s) => s.points.map((p) => p.y)));
  const step = niceStep(maxY);
  const top = Math.max(step, Math.ceil(maxY / step) * step);
  const yOf = (y: number) => PLOT.bottom - y / top * (PLOT.bottom - PLOT.top);

  const parts: string[] = [];
  parts.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${WIDTH}" height="${HEIGHT}" viewBox="0 0 ${WIDTH} ${HEIGHT}" font-family="Helvetica, Arial, sans-serif" font-size="12">`,
    `<title>${escapeXml(spec.title)}</title>`,
    `<rect width="${WIDTH}" height="${HEIGHT}" fill="#ffffff"/>`,
    `<text x="${PLOT.left}" y="24" font-size="16" font-weight="bold">${
      escapeXml(spec.title)
    }</text>`,
  );
  if (spec.subtitle) {
    parts.push(`<text x="${PLOT.left}" y="44" fill="#555555">${escapeXml(spec.subtitle)}</text>`);
  }
  // Horizontal grid lines and y ticks.
  for (let y = 0; y <= top + step / 2; y += step) {
    const py = fixed(yOf(y));
    parts.push(
      `<line x1="${PLOT.left}" y1="${py}" x2="${PLOT.right}" y2="${py}" stroke="#e5e5e5"/>`,
      `<text x="${PLOT.left - 8}" y="${py}" text-anchor="end" dominant-baseline="middle">${
        num(y)
      }</text>`,
    );
  }
  for (const x of spec.xTicks) {
    const px = fixed(xOf(x));
    parts.push(
      `<line x1="${px}" y1="${PLOT.bottom}" x2="${px}" y2="${PLOT.bottom + 5}" stroke="#333333"/>`,
      `<text x="${px}" y="${PLOT.bottom + 20}" text-anchor="middle">${num(x)}</text>`,
    );
  }
  parts.push(
    `<line x1="${PLOT.left}" y1="${PLOT.bottom}" x2="${PLOT.right}" y2="${PLOT.bottom}" stroke="#333333"/>`,
    `<line x1="${PLOT.left}" y1="${PLOT.top}" x2="${PLOT.left}" y2="${PLOT.bottom}" stroke="#333333"/>`,
    `<text x="${(PLOT.left + PLOT.right) / 2}" y="${PLOT.bottom + 44}" text-anchor="middle">${
      escapeXml(spec.xLabel)
    }</text>`,
    `<text x="20" y="${
      (PLOT.top + PLOT.bottom) / 2
    }" text-anchor="middle" transform="rotate(-90 20 ${(PLOT.top + PLOT.bottom) / 2})">${
      escapeXml(spec.yLabel)
    }</text>`,
  );
  series.forEach((s, i) => {
    const color = COLORS[i % COLORS.length];
    const dash = DASH[s.style ?? "solid"];
    const dashAttr = dash ? ` stroke-dasharray="${dash}"` : "";
    const points = s.points.map((p) => `${fixed(xOf(p.x))},${fixed(yOf(p.y))}`).join(" ");
    parts.push(
      `<polyline fill="none" stroke="${color}" stroke-width="2"${dashAttr} points="${points}"><title>${
        escapeXml(s.label)
      }</title></polyline>`,
    );
    for (const p of s.points) {
      parts.push(
        `<circle cx="${fixed(xOf(p.x))}" cy="${fixed(yOf(p.y))}" r="3" fill="${color}"><title>${
          escapeXml(s.label)
        }: ${num(p.y)} at ${num(p.x)}</title></circle>`,
      );
    }
    const ly = PLOT.top + 6 + i * 20;
    parts.push(
      `<line x1="${PLOT.right + 20}" y1="${ly}" x2="${
        PLOT.right + 48
      }" y2="${ly}" stroke="${color}" stroke-width="2"${dashAttr}/>`,
      `<circle cx="${PLOT.right + 34}" cy="${ly}" r="3" fill="${color}"/>`,
      `<text x="${PLOT.right + 56}" y="${ly}" dominant-baseline="middle">${
        escapeXml(s.label)
      }</text>`,
    );
  });
  parts.push("</svg>");
  return parts.join("\n") + "\n";
}

/** The rows of a results JSON that the charts read (see `bench/report.ts`). */
export interface ChartResults {
  machine?: { date?: string };
  /** Where the figures come from, when not one `deno task bench` run (written into the subtitle). */
  source?: string;
  uncontended?: {
    adapter: string;
    runtime: string;
    workers: number;
    payload: number;
    library: number;
    pgbench: number;
  }[];
  contended?: { mode: string; writers: number; committed: number }[];
  peers?: { store: string; loop: string; workers: number; keys: string; committed: number }[];
}

const LIBRARY_PEER = "library (porsager, Deno)";
const peerLabel = (r: { store: string; loop: string }) =>
  r.store === LIBRARY_PEER ? `${r.store}, ${r.loop}` : r.store;
const runtimeName = (runtime: string) => runtime.charAt(0).toUpperCase() + runtime.slice(1);

/**
 * The charts of a run, by file name: `throughput.svg` (uncontended
 * head+CAS/s against workers, 8-byte payloads, per adapter and runtime,
 * beside pgbench and the peers) and, when the run has contended rows,
 * `contended.svg` (committed/s against writers on one key).
 */
export function benchmarkCharts(results: ChartResults): Record<string, string> {
  const subtitle = results.source ??
    `deno task bench, run of ${results.machine?.date ?? "an unknown date"}`;
  const groups = <T>(rows: T[], key: (row: T) => string) => {
    const map = new Map<string, T[]>();
    for (const row of rows) map.set(key(row), [...(map.get(key(row)) ?? []), row]);
    return map;
  };
  const uncontended = (results.uncontended ?? []).filter((r) => r.payload === 8);
  const throughput: Series[] = [];
  for (
    const [label, rows] of groups(uncontended, (r) => `${r.adapter} (${runtimeName(r.runtime)})`)
  ) {
    throughput.push({ label, points: rows.map((r) => ({ x: r.workers, y: r.library })) });
  }
  // pgbench ran once per configuration and runtime; every adapter's row repeats it.
  for (const [runtime, rows] of groups(uncontended, (r) => r.runtime)) {
    const byWorkers = new Map(rows.map((r) => [r.workers, r.pgbench]));
    throughput.push({
      label: `pgbench, same statements (${runtimeName(runtime)} run)`,
      style: "dashed",
      points: [...byWorkers].map(([x, y]) => ({ x, y })),
    });
  }
  // A full run measures the library's read-then-CAS loop in its own tables
  // already; a peers-only run has only the peers table's.
  const peers = results.peers ?? [];
  const haveLibrary = uncontended.some((r) => r.adapter === "postgres-js" && r.runtime === "deno");
  for (const [label, rows] of groups(peers.filter((r) => r.keys === "own key"), peerLabel)) {
    if (haveLibrary && label === `${LIBRARY_PEER}, read-then-CAS`) continue;
    throughput.push({
      label,
      style: label.startsWith(LIBRARY_PEER) ? "solid" : "dotted",
      points: rows.map((r) => ({ x: r.workers, y: r.committed })),
    });
  }
  const contended: Series[] = [];
  for (const [label, rows] of groups(results.contended ?? [], (r) => r.mode)) {
    contended.push({
      label,
      style: label.startsWith("library") ? "solid" : "dashed",
      points: rows.map((r) => ({ x: r.writers, y: r.committed })),
    });
  }
  for (const r of peers.filter((r) => r.keys === "one shared key")) {
    if (contended.length > 0 && r.store === LIBRARY_PEER) continue;
    contended.push({
      label: `${peerLabel(r)} (${r.workers} writers only)`,
      style: r.store === LIBRARY_PEER ? "solid" : "dotted",
      points: [{ x: r.workers, y: r.committed }],
    });
  }
  const ticks = (xs: number[]) => [...new Set(xs)].sort((a, b) => a - b);
  const charts: Record<string, string> = {
    "throughput.svg": lineChart({
      title: "Uncontended head + compare-and-set, 8-byte payloads, each worker its own key",
      subtitle,
      xLabel: "workers (log scale)",
      yLabel: "committed compare-and-sets per second",
      xTicks: ticks(throughput.flatMap((s) => s.points.map((p) => p.x))),
      series: throughput,
    }),
  };
  // A peers-only run has one contended point per store: no chart of its own.
  if ((results.contended ?? []).length > 0) {
    charts["contended.svg"] = lineChart({
      title: "Contended compare-and-set: W writers on one key",
      subtitle,
      xLabel: "writers (log scale)",
      yLabel: "committed compare-and-sets per second",
      xTicks: ticks(contended.flatMap((s) => s.points.map((p) => p.x))),
      series: contended,
    });
  }
  return charts;
}

/**
 * Writes {@linkcode benchmarkCharts} of `results` into `dir`, each name after
 * `prefix`; returns the paths written.
 */
export async function writeCharts(
  results: ChartResults,
  dir: string,
  prefix = "",
): Promise<string[]> {
  await Deno.mkdir(dir, { recursive: true });
  const written: string[] = [];
  for (const [name, svg] of Object.entries(benchmarkCharts(results))) {
    const path = `${dir.replace(/\/$/, "")}/${prefix}${name}`;
    await Deno.writeTextFile(path, svg);
    written.push(path);
  }
  return written;
}
