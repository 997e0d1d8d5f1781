import { EmbeddedQueueTransport } from '../connectors/queue/embedded-queue-transport.js';
import type { FerryConfig } from '../core/config.js';
import { describeError, UsageError } from '../core/errors.js';
import type { QueueTransport } from '../core/queue-transport.js';

export const QUEUE_TRANSPORTS = ['embedded', 'service-bus'] as const;
export type QueueTransportKind = (typeof QUEUE_TRANSPORTS)[number];

export interface OpenedTransport {
  readonly transport: QueueTransport;
  /** The queue's max delivery count as the listener should assume it (the embedded queue's own setting). */
  readonly maxDeliveryCount: number;
}

/** Settings of the embedded queue; environment `FERRY_QUEUE_LOCK_MS`, `FERRY_QUEUE_MAX_DELIVERIES`. */
function embeddedSettings(env: NodeJS.ProcessEnv): { lockDurationMs: number; maxDeliveryCount: number } {
  const lockDurationMs = Number(env.FERRY_QUEUE_LOCK_MS ?? 30_000);
  const maxDeliveryCount = Number(env.FERRY_QUEUE_MAX_DELIVERIES ?? 10);
  return { lockDurationMs, maxDeliveryCount };
}

/**
 * The transport named on the command line: the embedded queue in the state store, or Azure Service Bus (the
 * connection from `FERRY_SERVICE_BUS_CONNECTION_STRING`, or `FERRY_SERVICE_BUS_NAMESPACE` with
 * `DefaultAzureCredential`; the queue's max delivery count from `FERRY_QUEUE_MAX_DELIVERIES`, default 10 as Service
 * Bus's own default).
 */
export async function openQueueTransport(
  kind: string,
  config: FerryConfig,
  env: NodeJS.ProcessEnv = process.env,
): Promise<OpenedTransport> {
  if (!(QUEUE_TRANSPORTS as readonly string[]).includes(kind))
    throw new UsageError(`Queue transport \`${kind}\` is not known; use ${QUEUE_TRANSPORTS.join(' or ')}.`);
  const settings = embeddedSettings(env);
  if (!(settings.lockDurationMs > 0) || !(settings.maxDeliveryCount >= 1))
    throw new UsageError(
      `FERRY_QUEUE_LOCK_MS \`${env.FERRY_QUEUE_LOCK_MS}\` / FERRY_QUEUE_MAX_DELIVERIES \`${env.FERRY_QUEUE_MAX_DELIVERIES}\` must be positive numbers.`,
    );
  if (kind === 'embedded')
    return {
      transport: EmbeddedQueueTransport.openIn(config.state, settings),
      maxDeliveryCount: settings.maxDeliveryCount,
    };
  return { transport: await openServiceBus(env), maxDeliveryCount: settings.maxDeliveryCount };
}

/** The Service Bus transport is its own module (`src/connectors/queue/service-bus-transport.ts`), loaded on demand. */
async function openServiceBus(env: NodeJS.ProcessEnv): Promise<QueueTransport> {
  const connectionString = env.FERRY_SERVICE_BUS_CONNECTION_STRING;
  const fullyQualifiedNamespace = env.FERRY_SERVICE_BUS_NAMESPACE;
  if (!connectionString && !fullyQualifiedNamespace)
    throw new UsageError(
      "Service Bus needs FERRY_SERVICE_BUS_CONNECTION_STRING (a connection string, e.g. the emulator's with UseDevelopmentEmulator=true) or FERRY_SERVICE_BUS_NAMESPACE (`<name>.servicebus.windows.net`, signed in with DefaultAzureCredential).",
    );
  const modulePath = '../connectors/queue/service-bus-transport.js';
  let mod: Record<string, unknown>;
  try {
    mod = (await import(modulePath)) as Record<string, unknown>;
  } catch (error) {
    throw new UsageError(
      `The Service Bus transport is not part of this build (\`src/connectors/queue/service-bus-transport.ts\` could not be loaded: ${describeError(error)}); use --transport embedded.`,
    );
  }
  const options = {
    ...(connectionString ? { connectionString } : {}),
    ...(fullyQualifiedNamespace ? { fullyQualifiedNamespace } : {}),
  };
  const factory = mod.openServiceBusTransport ?? mod.createServiceBusTransport;
  if (typeof factory === 'function') return (await (factory as (o: unknown) => unknown)(options)) as QueueTransport;
  const Klass = mod.ServiceBusTransport ?? mod.ServiceBusQueueTransport;
  if (typeof Klass === 'function') return new (Klass as new (o: unknown) => QueueTransport)(options);
  throw new UsageError(
    'The Service Bus transport module exports no `openServiceBusTransport`/`ServiceBusTransport`; this build is inconsistent.',
  );
}
