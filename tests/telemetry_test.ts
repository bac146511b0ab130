// The store's telemetry, recorded by a tiny in-memory tracer and meter
// registered through @opentelemetry/api itself (no SDK): what an exporter
// would be handed. A scripted executor answers, so each outcome is chosen.
import {
  type Attributes,
  type AttributeValue,
  createNoopMeter,
  type Histogram,
  type Meter,
  metrics,
  type Span,
  type SpanContext,
  type SpanStatus,
  SpanStatusCode,
  trace,
  type Tracer,
} from "@opentelemetry/api";
import { assert, assertEquals, assertRejects } from "@std/assert";
import { ConsensusError, PostgresConsensus, SqlError } from "../mod.ts";
import { ScriptedExecutor } from "../src/testing/mod.ts";

interface Recorded {
  name: string;
  attributes: Record<string, AttributeValue>;
  status: SpanStatus;
  ended: boolean;
}

class RecordingSpan implements Span {
  constructor(readonly record: Recorded) {}
  spanContext(): SpanContext {
    return { traceId: "1".repeat(32), spanId: "1".repeat(16), traceFlags: 1 };
  }
  setAttribute(key: string, value: AttributeValue): this {
    this.record.attributes[key] = value;
    return this;
  }
  setAttributes(attributes: Attributes): this {
    for (const [key, value] of Object.entries(attributes)) {
      if (value !== undefined) this.record.attributes[key] = value;
    }
    return this;
  }
  addEvent(): this {
    return this;
  }
  addLink(): this {
    return this;
  }
  addLinks(): this {
    return this;
  }
  setStatus(status: SpanStatus): this {
    this.record.status = status;
    return this;
  }
  updateName(name: string): this {
    this.record.name = name;
    return this;
  }
  end(): void {
    this.record.ended = true;
  }
  isRecording(): boolean {
    return !this.record.ended;
  }
  recordException(): void {}
}

interface Measurement {
  instrument: string;
  value: number;
  attributes: Attributes;
}

/** Registers the recorders as the global providers; `close()` unregisters them. */
function record() {
  const spans: Recorded[] = [];
  const measurements: Measurement[] = [];
  const tracer: Tracer = {
    startSpan(name, options) {
      const recorded: Recorded = {
        name,
        attributes: { ...(options?.attributes ?? {}) } as Record<string, AttributeValue>,
        status: { code: SpanStatusCode.UNSET },
        ended: false,
      };
      spans.push(recorded);
      return new RecordingSpan(recorded);
    },
    startActiveSpan(): never {
      throw new Error("the store starts spans without activating them");
    },
  };
  // createNoopMeter() returns the API's shared no-op meter: inherit from
  // it rather than change it.
  const meter: Meter = Object.create(createNoopMeter());
  const instrument = (name: string) => (value: number, attributes: Attributes = {}) =>
    measurements.push({ instrument: name, value, attributes });
  meter.createCounter = (name) => ({ add: instrument(name) });
  meter.createHistogram = (name) => ({ record: instrument(name) }) as Histogram;
  trace.disable();
  metrics.disable();
  trace.setGlobalTracerProvider({ getTracer: () => tracer });
  metrics.setGlobalMeterProvider({ getMeter: () => meter });
  const of = (name: string) => measurements.filter((m) => m.instrument === name);
  return {
    spans,
    of,
    close() {
      trace.disable();
      metrics.disable();
    },
  };
}

const data = new Uint8Array([1]);
const inserted = { rows: [], rowCount: 1 };

Deno.test("telemetry: a span per operation with its outcome and retries, and no key", async () => {
  const recorder = record();
  try {
    let casCalls = 0;
    const executor = new ScriptedExecutor()
      .on("head", () => ({ rows: [[3n, data]], rowCount: 1 }))
      .on("cas_next", () => {
        if (++casCalls === 1) throw new SqlError("could not serialize", { code: "40001" });
        return inserted;
      })
      .on("truncate", () => {
        throw new SqlError("permission denied", { code: "42501" });
      });
    const store = await PostgresConsensus.open(executor, { create: false, table: "t" });
    await Promise.all([store.head("secret-key"), store.head("secret-key")]);
    assertEquals(await store.compareAndSet("secret-key", { seqno: 4n, data }), "committed");
    // At or below the floor: answered without a statement, still an operation.
    assertEquals(await store.compareAndSet("secret-key", { seqno: 4n, data }), "mismatch");
    await assertRejects(() => store.truncate("secret-key", 1n), ConsensusError);
    await store.close();

    const spans = recorder.spans.map((s) => ({
      name: s.name,
      outcome: s.attributes["persist.outcome"],
      retries: s.attributes["persist.retries"],
    }));
    assertEquals(spans, [
      { name: "head", outcome: "ok", retries: 0 },
      { name: "head", outcome: "ok", retries: 0 },
      { name: "compareAndSet", outcome: "committed", retries: 1 },
      { name: "compareAndSet", outcome: "mismatch", retries: 0 },
      { name: "truncate", outcome: "error", retries: 0 },
    ]);
    for (const span of recorder.spans) {
      assert(span.ended, `${span.name} ended`);
      assertEquals(span.attributes["db.system"], "postgresql");
      assertEquals(span.attributes["db.operation.name"], span.name);
      assertEquals(span.attributes["db.collection.name"], '"public"."t"');
      assertEquals(span.attributes["persist.key"], undefined, "keys are not recorded by default");
    }
    const failed = recorder.spans[4];
    assertEquals(failed.status, { code: SpanStatusCode.ERROR }, "no message: it names the key");
    assertEquals(failed.attributes["error.type"], "42501");
    assertEquals(failed.attributes["persist.determinate"], true);

    const operations = recorder.of("persist.consensus.operations").map((m) =>
      `${m.attributes["db.operation.name"]}:${m.attributes["persist.outcome"]}`
    );
    assertEquals(operations, [
      "head:ok",
      "head:ok",
      "compareAndSet:committed",
      "compareAndSet:mismatch",
      "truncate:error",
    ]);
    const durations = recorder.of("persist.consensus.operation.duration");
    assertEquals(durations.length, 5);
    assert(durations.every((m) => m.value >= 0 && m.value < 60), "seconds");
    assertEquals(
      recorder.of("persist.consensus.retries").map((m) => m.attributes["db.operation.name"]),
      ["compareAndSet"],
    );
    assertEquals(
      recorder.of("persist.consensus.batch.size").map((m) => m.value),
      [2],
      "the two head reads shared one statement",
    );
    assertEquals(recorder.of("persist.consensus.timeouts"), []);
  } finally {
    recorder.close();
  }
});

Deno.test("telemetry: a timeout is counted, and traceKeys opts in to keys and messages", async () => {
  const recorder = record();
  try {
    const executor = new ScriptedExecutor({
      version: "CockroachDB CCL v24.1.0 (scripted)",
      isolation: "serializable",
    })
      .on("cas_next", () => new Promise<never>(() => {}))
      .on("cas_many", () => inserted);
    const store = await PostgresConsensus.open(executor, {
      create: false,
      timeoutMs: 50,
      traceKeys: true,
    });
    const error = await assertRejects(
      () => store.compareAndSet("k1", { seqno: 2n, data }),
      ConsensusError,
    );
    assertEquals(
      await store.compareAndSetMany([
        { key: "a", next: { seqno: 1n, data } },
        { key: "b", next: { seqno: 1n, data } },
      ]),
      "committed",
    );
    await store.close();

    const [timedOut, many] = recorder.spans;
    assertEquals(timedOut.attributes["db.system"], "cockroachdb");
    assertEquals(timedOut.attributes["persist.key"], "k1");
    assertEquals(timedOut.attributes["persist.determinate"], false);
    assertEquals(timedOut.status, { code: SpanStatusCode.ERROR, message: error.message });
    assertEquals(many.name, "compareAndSetMany");
    assertEquals(many.attributes["persist.outcome"], "committed");
    assertEquals(recorder.of("persist.consensus.timeouts").length, 1);
    assertEquals(
      recorder.of("persist.consensus.batch.size").map((m) =>
        `${m.attributes["db.operation.name"]}:${m.value}`
      ),
      ["compareAndSetMany:2"],
    );
  } finally {
    recorder.close();
  }
});

Deno.test("telemetry: without a registered SDK the store records nothing and works", async () => {
  const recorder = record();
  recorder.close(); // registered, then unregistered: the API's no-ops again
  assertEquals(trace.getTracer("probe").startSpan("probe").isRecording(), false);
  const executor = new ScriptedExecutor().on("cas_first", () => inserted);
  const store = await PostgresConsensus.open(executor, { create: false });
  assertEquals(await store.compareAndSet("k", { seqno: 0n, data }), "committed");
  await store.close();
  assertEquals(recorder.spans, []);
  assertEquals(recorder.of("persist.consensus.operations"), []);
  await assertRejects(
    () =>
      PostgresConsensus.open(new ScriptedExecutor(), { traceKeys: "yes" as unknown as boolean }),
    TypeError,
    "traceKeys must be a boolean",
  );
});
