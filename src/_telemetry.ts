// Telemetry through the OpenTelemetry API: a span per operation and a few
// metrics. A store looks at the global providers when it opens: with none
// registered (no SDK, no Deno OpenTelemetry), it traces and meters nothing
// and each operation costs one shared no-op object, since even the API's
// no-op span and attribute objects measured about 2 us per head+CAS with an
// instant executor (BENCHMARKS.md, "Telemetry"). Keys are user data:
// recorded only when the store is opened with `traceKeys: true`.
import {
  type Attributes,
  type Counter,
  createNoopMeter,
  type Histogram,
  metrics,
  ProxyTracerProvider,
  type Span,
  SpanKind,
  SpanStatusCode,
  trace,
  type Tracer,
} from "@opentelemetry/api";
import { host } from "./_runtime.ts";
import type { Engine } from "./dialect.ts";
import { ConsensusError } from "./errors.ts";

const SCOPE = "@persist/consensus";

/** The names the store's spans and metrics go by; README, "Telemetry", lists them. */
export const TELEMETRY = {
  operations: "persist.consensus.operations",
  duration: "persist.consensus.operation.duration",
  retries: "persist.consensus.retries",
  timeouts: "persist.consensus.timeouts",
  batchSize: "persist.consensus.batch.size",
} as const;

/** What an operation ended as: its result, or that it failed. */
export type Outcome = "committed" | "mismatch" | "ok" | "error";

/** What the store tells about one operation in flight. */
export interface OperationTrace {
  /** A statement of this operation is about to run again. */
  retried(): void;
  /** This operation outlived its timeout. */
  timedOut(): void;
  /** Ends the span and records the operation's metrics. */
  end(outcome: Outcome, error?: unknown): void;
}

// The trace of every operation while nothing is registered.
const NO_TRACE: OperationTrace = { retried() {}, timedOut() {}, end() {} };

// What the API hands out while no tracer provider is registered: its proxy
// provider delegates to this one.
const NOOP_TRACER_PROVIDER = new ProxyTracerProvider().getDelegate();

function tracerRegistered(): boolean {
  const provider = trace.getTracerProvider();
  const delegate = provider instanceof ProxyTracerProvider ? provider.getDelegate() : provider;
  return delegate !== NOOP_TRACER_PROVIDER;
}

/** One store's tracer and instruments, taken from the global providers at open. */
export class Telemetry {
  readonly #on: boolean;
  readonly tracing: boolean;
  readonly metering: boolean;
  readonly #tracer: Tracer;
  readonly #system: string;
  readonly #table: string;
  readonly #traceKeys: boolean;
  readonly operations: Counter;
  readonly duration: Histogram;
  readonly retries: Counter;
  readonly timeouts: Counter;
  readonly batchSize: Histogram;

  constructor(engine: Engine, table: string, traceKeys: boolean) {
    this.#system = engine === "cockroach" ? "cockroachdb" : "postgresql";
    this.#table = table;
    this.#traceKeys = traceKeys;
    // Taken when the store opens: providers registered later are not seen
    // by this store (the meter API has no proxy anyway).
    this.#tracer = trace.getTracer(SCOPE);
    const meter = metrics.getMeter(SCOPE);
    this.tracing = tracerRegistered();
    this.metering = meter !== createNoopMeter();
    this.#on = this.tracing || this.metering;
    this.operations = meter.createCounter(TELEMETRY.operations, {
      description: "Operations by kind and outcome",
    });
    this.duration = meter.createHistogram(TELEMETRY.duration, {
      description: "Operation latency, retries and queueing included",
      unit: "s",
    });
    this.retries = meter.createCounter(TELEMETRY.retries, {
      description: "Statements run again after a serialization failure or deadlock",
    });
    this.timeouts = meter.createCounter(TELEMETRY.timeouts, {
      description: "Operations that outlived timeoutMs (indeterminate)",
    });
    this.batchSize = meter.createHistogram(TELEMETRY.batchSize, {
      description: "Operations or entries carried by one statement",
    });
  }

  /** Starts an operation's span and clock. */
  start(operation: string, key: string | undefined): OperationTrace {
    if (!this.#on) return NO_TRACE;
    const span = this.tracing
      ? this.#tracer.startSpan(operation, { kind: SpanKind.CLIENT })
      : undefined;
    if (span?.isRecording()) {
      span.setAttribute("db.system", this.#system);
      span.setAttribute("db.operation.name", operation);
      span.setAttribute("db.collection.name", this.#table);
      if (this.#traceKeys && key !== undefined) span.setAttribute("persist.key", key);
    }
    return new RecordingTrace(this, span, operation, this.#system, this.#traceKeys);
  }

  /** Records how many operations or entries one statement carried. */
  batch(operation: string, size: number): void {
    if (this.metering) {
      this.batchSize.record(size, { "db.system": this.#system, "db.operation.name": operation });
    }
  }
}

/** One operation in flight while a provider is registered: its span, start time and retries. */
class RecordingTrace implements OperationTrace {
  readonly #telemetry: Telemetry;
  readonly #span: Span | undefined;
  readonly #start = host.performance.now();
  readonly #attributes: Attributes;
  readonly #traceKeys: boolean;
  /** Statements run again for this operation. */
  retries = 0;

  constructor(
    telemetry: Telemetry,
    span: Span | undefined,
    operation: string,
    system: string,
    traceKeys: boolean,
  ) {
    this.#telemetry = telemetry;
    this.#span = span;
    this.#traceKeys = traceKeys;
    this.#attributes = { "db.system": system, "db.operation.name": operation };
  }

  /** A statement of this operation is about to run again. */
  retried(): void {
    this.retries++;
    if (this.#telemetry.metering) this.#telemetry.retries.add(1, this.#attributes);
  }

  /** This operation outlived its timeout. */
  timedOut(): void {
    if (this.#telemetry.metering) this.#telemetry.timeouts.add(1, this.#attributes);
  }

  /** Ends the span and records the operation's metrics. */
  end(outcome: Outcome, error?: unknown): void {
    const seconds = (host.performance.now() - this.#start) / 1000;
    if (this.#telemetry.metering) {
      const attributes = { ...this.#attributes, "persist.outcome": outcome };
      this.#telemetry.operations.add(1, attributes);
      this.#telemetry.duration.record(seconds, attributes);
    }
    const span = this.#span;
    if (span === undefined) return;
    if (span.isRecording()) {
      span.setAttribute("persist.outcome", outcome);
      span.setAttribute("persist.retries", this.retries);
      if (error !== undefined) {
        const determinate = error instanceof ConsensusError ? error.determinate : undefined;
        span.setAttribute("error.type", errorType(error));
        if (determinate !== undefined) span.setAttribute("persist.determinate", determinate);
        // The message names the key: only with traceKeys.
        span.setStatus(
          this.#traceKeys
            ? {
              code: SpanStatusCode.ERROR,
              message: error instanceof Error ? error.message : String(error),
            }
            : { code: SpanStatusCode.ERROR },
        );
      }
    }
    span.end();
  }
}

function errorType(error: unknown): string {
  if (error instanceof ConsensusError) return error.code ?? "ConsensusError";
  return error instanceof Error ? error.name : "unknown";
}
