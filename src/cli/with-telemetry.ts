import { UsageError } from '../core/errors.js';
import { installTelemetry } from '../core/telemetry.js';
import type { Command } from './command.js';

/** Commands that run pipelines, and so have runs, stages and requests to report. */
const REPORTING_COMMANDS = new Set(['run', 'schedule', 'demo', 'backfill', 'replay', 'listen']);

/**
 * Wraps a command so that, when `APPLICATIONINSIGHTS_CONNECTION_STRING` is set, its runs, stages and Dataverse
 * requests go to Application Insights, flushed before the command returns. Without the variable nothing is
 * imported or started.
 */
export function withTelemetry(command: Command): Command {
  if (!REPORTING_COMMANDS.has(command.name)) return command;
  return {
    ...command,
    async run(input) {
      const connectionString = process.env.APPLICATIONINSIGHTS_CONNECTION_STRING?.trim();
      if (!connectionString) return command.run(input);
      checkConnectionString(connectionString);
      const { startAppInsightsTelemetry } = await import('../connectors/telemetry/app-insights-telemetry.js');
      const started = await startAppInsightsTelemetry(connectionString, input.log);
      const uninstall = installTelemetry(started.telemetry);
      // Warnings and errors also go out as log records (info lines are the run records the runner sends).
      const log = {
        ...input.log,
        warn: (message: string, fields?: Record<string, unknown>) => {
          input.log.warn(message, fields);
          started.telemetry.log('warn', message, scalarFields(fields));
        },
        error: (message: string, fields?: Record<string, unknown>) => {
          input.log.error(message, fields);
          started.telemetry.log('error', message, scalarFields(fields));
        },
      };
      try {
        return await command.run({ ...input, log });
      } finally {
        uninstall();
        await started.shutdown().catch((error: unknown) => {
          input.log.warn(
            `Could not flush telemetry to Application Insights: ${error instanceof Error ? error.message : String(error)}`,
          );
        });
      }
    },
  };
}

function scalarFields(fields: Record<string, unknown> | undefined): Record<string, string | number | boolean> {
  const out: Record<string, string | number | boolean> = {};
  for (const [k, v] of Object.entries(fields ?? {}))
    if (typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean') out[`ferry.${k}`] = v;
  return out;
}

/**
 * The exporter only logs a malformed connection string and then sends nothing; say so before any work is done. The
 * value is not echoed: it names the resource, and the message may end up in a CI log.
 */
export function checkConnectionString(text: string): void {
  const fields = new Map(
    text
      .split(';')
      .map((part) => part.split('=').map((s) => s.trim()))
      .filter((kv) => kv.length >= 2 && kv[0])
      .map(([k, ...v]) => [k!.toLowerCase(), v.join('=')] as const),
  );
  const key = fields.get('instrumentationkey') ?? '';
  if (!/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(key))
    throw new UsageError(
      'APPLICATIONINSIGHTS_CONNECTION_STRING has no valid `InstrumentationKey=<guid>`; copy the connection string from the Application Insights resource (Overview → Connection String), or unset the variable to run without telemetry.',
    );
  const endpoint = fields.get('ingestionendpoint');
  if (endpoint !== undefined && !/^https?:\/\/[^\s/]+/i.test(endpoint))
    throw new UsageError(
      `APPLICATIONINSIGHTS_CONNECTION_STRING has IngestionEndpoint \`${endpoint}\`, which is not an http(s) URL; copy the connection string from the Application Insights resource.`,
    );
}
