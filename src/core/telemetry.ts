/** Attribute values telemetry carries: plain scalars only, never row data. */
export type TelemetryAttributes = Readonly<Record<string, string | number | boolean | undefined>>;

/** A span in progress. */
export interface TelemetrySpan {
  setAttributes(attributes: TelemetryAttributes): void;
  /** Marks the span failed with a short message (no payloads). */
  fail(message: string): void;
}

/**
 * Where runs, stages and Dataverse requests report to: traces, metrics and logs. Core and connectors emit through
 * this small interface; `src/connectors/telemetry/` implements it with OpenTelemetry and Azure Monitor when
 * `APPLICATIONINSIGHTS_CONNECTION_STRING` is set. The default does nothing and loads nothing.
 */
export interface Telemetry {
  /** Runs `fn` inside a span; spans (and `recordSpan`s) started inside it become its children. */
  inSpan<T>(
    name: string,
    kind: 'internal' | 'client',
    attributes: TelemetryAttributes,
    fn: (span: TelemetrySpan) => Promise<T>,
  ): Promise<T>;
  /** A finished span, e.g. one HTTP request, as a child of the current span. */
  recordSpan(
    name: string,
    span: {
      readonly startTimeMs: number;
      readonly durationMs: number;
      readonly attributes: TelemetryAttributes;
      readonly error?: string;
    },
  ): void;
  /** Adds to a counter. */
  count(name: string, value: number, attributes?: TelemetryAttributes): void;
  /** Records a value in a histogram (durations in ms, waits in s: the unit is in the name). */
  record(name: string, value: number, attributes?: TelemetryAttributes): void;
  log(level: 'info' | 'warn' | 'error', message: string, attributes?: TelemetryAttributes): void;
}

const noSpan: TelemetrySpan = { setAttributes() {}, fail() {} };

/** Telemetry that drops everything. */
export const noTelemetry: Telemetry = {
  inSpan: (_name, _kind, _attributes, fn) => fn(noSpan),
  recordSpan() {},
  count() {},
  record() {},
  log() {},
};

let current: Telemetry = noTelemetry;

/** The telemetry of this process (no-op unless a command installed one). */
export function telemetry(): Telemetry {
  return current;
}

/** Installs the process's telemetry; returns a function that puts the previous one back. */
export function installTelemetry(next: Telemetry): () => void {
  const previous = current;
  current = next;
  return () => {
    current = previous;
  };
}
