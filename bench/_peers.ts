// The stores a user would pick instead, driven through the same loops as the
// library (read the head, then compare-and-set the next version, reading
// again after a lost race), interleaved round by round with the library in
// one run: Deno KV (local, on a temporary file) and etcd (single node on
// loopback, through its HTTP/JSON gateway), when each is available.
import type { PostgresConsensus } from "../mod.ts";
import {
  fmt,
  freshKey,
  mean,
  percentile,
  rate,
  ratio,
  type RunResult,
  timeBoxed,
} from "./_measure.ts";
import { updateWithCounter } from "./_update.ts";

/** One store's read-then-compare-and-set, over its own notion of a version. */
interface Peer {
  readonly name: string;
  /** Reads the head and tries to write the next version; true when it committed. */
  step(key: string, data: Uint8Array): Promise<boolean>;
  close(): Promise<void>;
}

// The subset of Deno KV the loop needs (`Deno.openKv` is unstable: typed
// here so the bench type-checks without `--unstable-kv`).
interface KvEntry {
  versionstamp: string | null;
}
interface KvAtomic {
  check(...checks: { key: string[]; versionstamp: string | null }[]): KvAtomic;
  set(key: string[], value: unknown): KvAtomic;
  commit(): Promise<{ ok: boolean }>;
}
interface Kv {
  get(key: string[]): Promise<KvEntry>;
  atomic(): KvAtomic;
  close(): void;
}

async function denoKv(progress: (text: string) => void): Promise<Peer | string> {
  const openKv = (Deno as unknown as { openKv?: (path: string) => Promise<Kv> }).openKv;
  if (openKv === undefined) return "Deno.openKv is missing (run with --unstable-kv)";
  const dir = await Deno.makeTempDir({ prefix: "bench-kv-" });
  const kv = await openKv(`${dir}/kv.sqlite`);
  progress(`Deno KV on ${dir}/kv.sqlite`);
  return {
    name: "Deno KV (local)",
    async step(key, data) {
      const k = ["bench", key];
      const head = await kv.get(k);
      const { ok } = await kv.atomic().check({ key: k, versionstamp: head.versionstamp })
        .set(k, data).commit();
      return ok;
    },
    async close() {
      kv.close();
      await Deno.remove(dir, { recursive: true });
    },
  };
}

function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr as Deno.NetAddr;
  listener.close();
  return port;
}

const base64 = (text: string) => btoa(text);
const bytesBase64 = (bytes: Uint8Array) => btoa(String.fromCharCode(...bytes));

async function etcd(progress: (text: string) => void): Promise<Peer | string> {
  const which = await new Deno.Command("sh", { args: ["-c", "command -v etcd"], stdout: "piped" })
    .output();
  if (!which.success) return "etcd is not installed (apt-get install etcd-server)";
  const binary = new TextDecoder().decode(which.stdout).trim();
  const dir = await Deno.makeTempDir({ prefix: "bench-etcd-" });
  const client = `http://127.0.0.1:${freePort()}`;
  const peer = `http://127.0.0.1:${freePort()}`;
  const child = new Deno.Command(binary, {
    args: [
      "--name",
      "bench",
      "--data-dir",
      dir,
      "--listen-client-urls",
      client,
      "--advertise-client-urls",
      client,
      "--listen-peer-urls",
      peer,
      "--initial-advertise-peer-urls",
      peer,
      "--initial-cluster",
      `bench=${peer}`,
      "--log-level",
      "error",
    ],
    stdout: "null",
    stderr: "null",
  }).spawn();
  const stop = async () => {
    try {
      child.kill("SIGTERM");
    } catch { /* already gone */ }
    await child.status;
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  };
  const post = async (path: string, body: unknown) => {
    const response = await fetch(`${client}${path}`, {
      method: "POST",
      body: JSON.stringify(body),
    });
    if (!response.ok) throw new Error(`etcd ${path}: HTTP ${response.status}`);
    return await response.json();
  };
  // Bounded: 100 tries 100 ms apart.
  for (let i = 0;; i++) {
    try {
      await post("/v3/kv/range", { key: base64("ping") });
      break;
    } catch (error) {
      if (i >= 100) {
        await stop();
        return `etcd did not answer on ${client} within 10 s (${(error as Error).message})`;
      }
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }
  progress(`etcd ${binary} on ${client}, data in ${dir}`);
  return {
    name: "etcd (single node)",
    async step(key, data) {
      const k = base64(key);
      const range = await post("/v3/kv/range", { key: k });
      // mod_revision of the key's current version; 0 when it has none.
      const modRevision = range.kvs?.[0]?.mod_revision ?? "0";
      const txn = await post("/v3/kv/txn", {
        compare: [{ key: k, target: "MOD", result: "EQUAL", mod_revision: modRevision }],
        success: [{ request_put: { key: k, value: bytesBase64(data) } }],
      });
      return txn.succeeded === true;
    },
    close: stop,
  };
}

/** A row of the peers table. */
export interface PeerRow {
  store: string;
  loop: string;
  workers: number;
  keys: string;
  committed: number;
  attempts: number;
  p50: number;
  p99: number;
  errors: number;
}

/** Options of {@linkcode peers}. */
export interface PeerBenchOptions {
  /** The library's store (porsager), run in the same rounds. */
  store: PostgresConsensus;
  ms: number;
  rounds: number;
  out: (line: string) => void;
  progress: (text: string) => void;
}

/**
 * Uncontended (1 and 16 workers, each its own key) and contended (16
 * writers on one key) read-then-compare-and-set through the library, Deno KV
 * and etcd, interleaved round by round; prints one table and returns its
 * rows. A peer that cannot run is skipped with one loud line. The last
 * column is committed/s over the library's read-then-CAS loop in the same
 * case.
 */
export async function peers(options: PeerBenchOptions): Promise<PeerRow[]> {
  const { store, ms, rounds, out, progress } = options;
  out("\n## Against other stores (same loops, interleaved)\n");
  const available: Peer[] = [];
  for (const open of [denoKv, etcd]) {
    const peer = await open(progress);
    if (typeof peer === "string") {
      out(`**\\*\\*\\* PEER SKIPPED: ${peer} \\*\\*\\***\n`);
      console.error(`  *** PEER SKIPPED: ${peer} ***`);
    } else {
      available.push(peer);
    }
  }
  const payload = new Uint8Array(8);
  const library: Peer = {
    name: "library (porsager, Deno)",
    async step(key, data) {
      const head = await store.head(key);
      const outcome = await store.compareAndSet(key, {
        seqno: head === undefined ? 0n : head.seqno + 1n,
        data,
      });
      return outcome === "committed";
    },
    close: async () => {},
  };
  type Loop = {
    store: string;
    loop: string;
    run: (key: (w: number) => string, w: number) => Promise<RunResult>;
  };
  const readThenCas = (peer: Peer): Loop => ({
    store: peer.name,
    loop: "read-then-CAS",
    run: (key, w) =>
      timeBoxed(w, ms, async (worker) => {
        const startedAt = performance.now();
        let attempts = 0;
        // A lost race reads again; bounded so a stuck store fails the run.
        while (attempts < 10_000) {
          attempts++;
          if (await peer.step(key(worker), payload)) return { ok: true, attempts, startedAt };
        }
        return { ok: false, attempts, startedAt };
      }),
  });
  const loops: Loop[] = [
    readThenCas(library),
    {
      store: library.name,
      loop: "update()",
      run: (key, w) =>
        timeBoxed(w, ms, async (worker) => {
          const startedAt = performance.now();
          const attempts = await updateWithCounter(store, key(worker));
          return { ok: true, attempts, startedAt };
        }),
    },
    ...available.map(readThenCas),
  ];
  const cases = [
    { workers: 1, keys: "own key" },
    { workers: 16, keys: "own key" },
    { workers: 16, keys: "one shared key" },
  ];
  const runs = new Map<string, RunResult[]>();
  const id = (l: Loop, c: { workers: number; keys: string }) =>
    `${l.store}|${l.loop}|${c.workers}|${c.keys}`;
  for (let round = 0; round < rounds; round++) {
    for (const c of cases) {
      // The order alternates round by round, so no store always runs first.
      const ordered = round % 2 === 0 ? loops : [...loops].reverse();
      for (const l of ordered) {
        progress(
          `peers: ${l.store} ${l.loop}, ${c.workers} workers, ${c.keys}, round ${round + 1}`,
        );
        const keys = Array.from({ length: c.workers }, () => freshKey("peer"));
        const key = c.keys === "own key" ? (w: number) => keys[w] : () => keys[0];
        const r = await l.run(key, c.workers);
        runs.set(id(l, c), [...(runs.get(id(l, c)) ?? []), r]);
      }
    }
  }
  for (const peer of available) await peer.close();
  out(
    "| store | loop | workers | keys | committed/s | attempts/s | p50 ms | p99 ms | errors | vs. library read-then-CAS |",
  );
  out("| --- | --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |");
  const rows: PeerRow[] = [];
  for (const c of cases) {
    const libRate = mean(runs.get(id(loops[0], c))!.map(rate));
    for (const l of loops) {
      const rs = runs.get(id(l, c))!;
      const latencies = rs.flatMap((r) => r.latencies).sort((a, b) => a - b);
      const row: PeerRow = {
        store: l.store,
        loop: l.loop,
        workers: c.workers,
        keys: c.keys,
        committed: mean(rs.map(rate)),
        attempts: mean(rs.map((r) => r.attempts / r.seconds)),
        p50: percentile(latencies, 50),
        p99: percentile(latencies, 99),
        errors: rs.reduce((a, r) => a + r.errors, 0),
      };
      rows.push(row);
      out(
        `| ${row.store} | ${row.loop} | ${row.workers} | ${row.keys} | ${fmt(row.committed)} | ${
          fmt(row.attempts)
        } | ${fmt(row.p50, 2)} | ${fmt(row.p99, 2)} | ${row.errors} | ${
          ratio(row.committed, libRate)
        } |`,
      );
    }
  }
  return rows;
}
