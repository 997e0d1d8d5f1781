import { createRequire } from 'node:module';
import type { Logger } from '../../core/log.js';
import type { Telemetry, TelemetryAttributes, TelemetrySpan } from '../../core/telemetry.js';

/** A started exporter: the telemetry to install and how to flush and stop it. */
export interface AppInsightsTelemetry {
  readonly telemetry: Telemetry;
  /** Flushes what is buffered (spans, metrics, logs) and stops the SDK. */
  shutdown(): Promise<void>;
}

/** Environment variables whose values are secrets: never sent, wherever they turn up in a message or attribute. */
const SECRET_NAME = /SECRET|TOKEN|PASSWORD|PASSWD|SAS|ACCOUNT_KEY|CLIENT_CERTIFICATE/i;

/**
 * Starts OpenTelemetry with the Azure Monitor exporter (`useAzureMonitor`) for one connection string and returns
 * a {@link Telemetry} that emits runs, stages and Dataverse requests as spans, metrics and log records. Loaded with
 * `import()` only when `APPLICATIONINSIGHTS_CONNECTION_STRING` is set, so a run without it loads none of the SDK.
 *
 * Turned off on purpose: the SDK's automatic HTTP/Azure SDK/database instrumentations (ferry reports its own
 * Dataverse requests, without URLs' key values), live metrics and performance counters (they open other endpoints),
 * statsbeat (reports to Microsoft, not to the user's resource) and offline storage on disk.
 */
export async function startAppInsightsTelemetry(connectionString: string, log?: Logger): Promise<AppInsightsTelemetry> {
  // Read by the exporter when it starts; the user's own setting wins.
  process.env.APPLICATIONINSIGHTS_STATSBEAT_DISABLED ??= 'true';
  const monitor = await import('@azure/monitor-opentelemetry');
  const api = await import('@opentelemetry/api');
  // The logs API copy the distro registered its provider with.
  const logsApi = createRequire(import.meta.resolve('@azure/monitor-opentelemetry'))(
    '@opentelemetry/api-logs',
  ) as typeof import('@opentelemetry/api-logs');
  monitor.useAzureMonitor({
    azureMonitorExporterOptions: { connectionString, disableOfflineStorage: true },
    enableLiveMetrics: false,
    enablePerformanceCounters: false,
    enableStandardMetrics: false,
    // Every run and request: a plan over the day needs them all, and 15-minute runs are few.
    samplingRatio: 1,
    tracesPerSecond: 0,
    instrumentationOptions: {
      http: { enabled: false },
      azureSdk: { enabled: false },
      mongoDb: { enabled: false },
      mySql: { enabled: false },
      postgreSql: { enabled: false },
      redis: { enabled: false },
      redis4: { enabled: false },
    },
  });
  const tracer = api.trace.getTracer('dataverse-ferry');
  const meter = api.metrics.getMeter('dataverse-ferry');
  const logger = logsApi.logs.getLogger('dataverse-ferry');
  const redact = secretRedactor(process.env);
  const clean = (attributes: TelemetryAttributes | undefined): Record<string, string | number | boolean> => {
    const out: Record<string, string | number | boolean> = {};
    for (const [k, v] of Object.entries(attributes ?? {}))
      if (v !== undefined) out[k] = typeof v === 'string' ? redact(v) : v;
    return out;
  };
  const counters = new Map<string, ReturnType<typeof meter.createCounter>>();
  const histograms = new Map<string, ReturnType<typeof meter.createHistogram>>();
  const severity = {
    info: logsApi.SeverityNumber.INFO,
    warn: logsApi.SeverityNumber.WARN,
    error: logsApi.SeverityNumber.ERROR,
  };

  const telemetry: Telemetry = {
    inSpan(name, kind, attributes, fn) {
      return tracer.startActiveSpan(
        name,
        {
          kind: kind === 'client' ? api.SpanKind.CLIENT : api.SpanKind.INTERNAL,
          attributes: clean(attributes),
        },
        async (span) => {
          const handle: TelemetrySpan = {
            setAttributes: (a) => span.setAttributes(clean(a)),
            fail: (message) => span.setStatus({ code: api.SpanStatusCode.ERROR, message: redact(message) }),
          };
          try {
            return await fn(handle);
          } catch (error) {
            handle.fail(error instanceof Error ? error.message : String(error));
            throw error;
          } finally {
            span.end();
          }
        },
      );
    },
    recordSpan(name, s) {
      const span = tracer.startSpan(name, {
        kind: api.SpanKind.CLIENT,
        startTime: s.startTimeMs,
        attributes: clean(s.attributes),
      });
      if (s.error) span.setStatus({ code: api.SpanStatusCode.ERROR, message: redact(s.error) });
      span.end(s.startTimeMs + s.durationMs);
    },
    count(name, value, attributes) {
      const counter = counters.get(name) ?? meter.createCounter(name);
      counters.set(name, counter);
      counter.add(value, clean(attributes));
    },
    record(name, value, attributes) {
      const histogram = histograms.get(name) ?? meter.createHistogram(name);
      histograms.set(name, histogram);
      histogram.record(value, clean(attributes));
    },
    log(level, message, attributes) {
      logger.emit({
        severityNumber: severity[level],
        severityText: level.toUpperCase(),
        body: redact(message),
        attributes: clean(attributes),
      });
    },
  };
  log?.debug('Sending telemetry to Application Insights');
  return {
    telemetry,
    async shutdown() {
      await monitor.shutdownAzureMonitor();
    },
  };
}

/**
 * Replaces secret values from the environment and bearer tokens in a text with `[redacted]`. Secrets should never
 * reach a message in the first place; this is the last line before the wire.
 */
export function secretRedactor(env: NodeJS.ProcessEnv): (text: string) => string {
  const secrets = Object.entries(env)
    .filter(([name, value]) => SECRET_NAME.test(name) && typeof value === 'string' && value.length >= 6)
    .map(([, value]) => value!)
    .sort((a, b) => b.length - a.length);
  return (text) => {
    let out = text.replace(/\bBearer\s+[A-Za-z0-9\-._~+/]+=*/g, 'Bearer [redacted]');
    for (const secret of secrets) if (out.includes(secret)) out = out.split(secret).join('[redacted]');
    return out;
  };
}
