import type { InvocationContext } from '@azure/functions';
import { WebhookAlerts } from '../../src/alerts/webhook-alerts.js';
import { createTokenProvider } from '../../src/connectors/dataverse/token-provider.js';
import { SqliteStateStore } from '../../src/connectors/state/sqlite-state-store.js';
import { type FerryConfig, resolveConfig } from '../../src/core/config.js';
import { FerryError } from '../../src/core/errors.js';
import type { Logger } from '../../src/core/log.js';
import { loadPipelines, selectPipelines } from '../../src/core/pipeline-loader.js';
import type { ReceivedMessage } from '../../src/core/queue-transport.js';
import type { DataverseEndpoint } from '../../src/core/stage.js';
import type { StateStore } from '../../src/core/state-store.js';
import { type DeliveryOutcome, InboundMessageHandler } from '../../src/events/inbound-message-handler.js';
import { OutboundChangeHandler, outboundTargetFromEnv } from '../../src/events/outbound-change-handler.js';
import type { MessageBatchHandler } from '../../src/events/session-listener.js';

/** What the Functions need; built from the app settings by default, injected by tests. */
export interface FunctionServices {
  readonly config: FerryConfig;
  readonly state: StateStore;
  readonly dataverse: DataverseEndpoint;
  readonly pipelinesDir: string;
  /** The queues' max delivery count (`FERRY_QUEUE_MAX_DELIVERIES`, default 10 as Service Bus). */
  readonly maxDeliveryCount: number;
  readonly env: NodeJS.ProcessEnv;
}

/**
 * Services from the app settings: `FERRY_STATE` (the state store: a mounted Azure Files share), `FERRY_METADATA`,
 * `FERRY_DATAVERSE_URL` (token from the managed identity through `DefaultAzureCredential`), `FERRY_PIPELINES`.
 */
export function servicesFromEnv(env: NodeJS.ProcessEnv = process.env): FunctionServices {
  const config = resolveConfig({}, env);
  if (!config.dataverse)
    throw new FerryError(
      'functions.config',
      'Set FERRY_DATAVERSE_URL in the app settings (e.g. https://org.crm.dynamics.com).',
    );
  const url = config.dataverse.replace(/\/+$/, '');
  const getToken = createTokenProvider(url);
  return {
    config,
    state: SqliteStateStore.openIn(config.state),
    dataverse: getToken ? { url, getToken } : { url },
    pipelinesDir: env.FERRY_PIPELINES ?? 'pipelines',
    maxDeliveryCount: Number(env.FERRY_QUEUE_MAX_DELIVERIES ?? 10),
    env,
  };
}

/** The invocation running now: the handlers live across invocations, their log lines go to the current one. */
let current: InvocationContext | undefined;

/** A ferry logger over the current invocation's log (Application Insights in Azure). */
function contextLogger(context: InvocationContext): Logger {
  current = context;
  const line = (message: string, fields?: Record<string, unknown>) =>
    fields && Object.keys(fields).length ? `${message} ${JSON.stringify(fields)}` : message;
  const log = () => current ?? context;
  return {
    debug: (m, f) => log().debug(line(m, f)),
    info: (m, f) => log().info(line(m, f)),
    warn: (m, f) => log().warn(line(m, f)),
    error: (m, f) => log().error(line(m, f)),
  };
}

type Metadata = Record<string, unknown>;
const pick = (meta: Metadata, name: string, i: number, many: boolean): unknown => {
  // The host names batch metadata `<name>Array`; single messages carry `<name>`.
  const value = many ? (meta[`${name}Array`] as unknown[] | undefined)?.[i] : meta[name];
  return value;
};

/** The trigger's message(s) and metadata as the handler's `ReceivedMessage`s. */
export function receivedFromTrigger(messages: unknown, context: InvocationContext): ReceivedMessage[] {
  const meta = (context.triggerMetadata ?? {}) as Metadata;
  const many = Array.isArray(messages) && Array.isArray(meta.messageIdArray);
  const list = many ? (messages as unknown[]) : [messages];
  return list.map((body, i) => {
    const messageId = pick(meta, 'messageId', i, many);
    const sessionId = pick(meta, 'sessionId', i, many);
    if (typeof messageId !== 'string' || typeof sessionId !== 'string')
      throw new FerryError(
        'functions.trigger',
        'The Service Bus trigger gave no messageId/sessionId metadata; the function must be bound to a session-enabled queue (isSessionsEnabled: true).',
      );
    const enqueued = pick(meta, 'enqueuedTimeUtc', i, many);
    return {
      messageId,
      sessionId,
      body,
      deliveryCount: Number(pick(meta, 'deliveryCount', i, many) ?? 1),
      sequenceNumber: Number(pick(meta, 'sequenceNumber', i, many) ?? i + 1),
      enqueuedTimeUtc: enqueued ? new Date(String(enqueued)) : new Date(),
      applicationProperties: (pick(meta, 'applicationProperties', i, many) ?? {}) as Record<string, string>,
    };
  });
}

/**
 * Settles like the listener as far as the Functions trigger lets a handler: completing is returning; any message to
 * retry fails the invocation (the host abandons its messages, the broker redelivers them, those already applied
 * are then stale); a message the handler dead-letters has its payload, reason and the service's error in the error
 * store and raised an alert, and completes (explicit dead-lettering from a Node function needs the SDK-type
 * binding, see functions/README.md); after the max delivery count the broker dead-letters with
 * `MaxDeliveryCountExceeded`.
 */
export async function settleForFunctions(
  received: readonly ReceivedMessage[],
  outcomes: readonly DeliveryOutcome[],
  context: InvocationContext,
): Promise<{ completed: number; deadLettered: number }> {
  const retry = outcomes.map((o, i) => [o, received[i]!] as const).filter(([o]) => o.kind === 'abandon');
  const dead = outcomes.filter((o) => o.kind === 'dead-letter');
  for (const o of dead) if (o.kind === 'dead-letter') context.warn(`Dead-lettered (${o.reason}): ${o.description}`);
  if (retry.length) {
    const [first] = retry;
    throw new FerryError(
      'functions.retry',
      `${retry.length} of ${received.length} message(s) must be retried; first: \`${first![1].messageId}\` (${first![0].kind === 'abandon' ? first![0].reason : ''}). The host abandons the invocation's messages.`,
    );
  }
  return { completed: outcomes.length - dead.length, deadLettered: dead.length };
}

/** One handler per pipeline (or outbound target) per worker process, opened on first use. */
const handlers = new Map<string, Promise<MessageBatchHandler>>();

function alertsFor(services: FunctionServices, log: Logger) {
  const url = services.env.FERRY_ALERT_WEBHOOK;
  return url ? { alerts: new WebhookAlerts({ url, state: services.state, log }) } : {};
}

/** The inbound Function body: messages of `FERRY_INBOUND_PIPELINE`'s queue → Dataverse. */
export async function handleInboundInvocation(
  messages: unknown,
  context: InvocationContext,
  services: FunctionServices,
): Promise<{ completed: number; deadLettered: number }> {
  const log = contextLogger(context);
  const pipeline = services.env.FERRY_INBOUND_PIPELINE;
  if (!pipeline)
    throw new FerryError('functions.config', 'Set FERRY_INBOUND_PIPELINE (e.g. accounts-inbound) in the app settings.');
  const queue = services.env.FERRY_INBOUND_QUEUE ?? pipeline;
  const key = `inbound:${pipeline}`;
  if (!handlers.has(key))
    handlers.set(
      key,
      (async () => {
        const [def] = selectPipelines(await loadPipelines(services.pipelinesDir), [pipeline]);
        return InboundMessageHandler.open({
          definition: def!,
          config: services.config,
          state: services.state,
          dataverse: services.dataverse,
          log,
          queue,
          maxDeliveryCount: services.maxDeliveryCount,
          // Well inside the Functions timeout; a batch run still holding the lease then makes the invocation retry.
          leaseWaitMs: 60_000,
          ...alertsFor(services, log),
        });
      })(),
    );
  const handler = await handlers.get(key)!;
  const received = receivedFromTrigger(messages, context);
  return settleForFunctions(received, await handler.handle(received), context);
}

/** The outbound Function body: Dataverse change messages → the target system's HTTP API. */
export async function handleOutboundInvocation(
  messages: unknown,
  context: InvocationContext,
  services: FunctionServices,
): Promise<{ completed: number; deadLettered: number }> {
  const log = contextLogger(context);
  const queue = services.env.FERRY_OUTBOUND_QUEUE ?? 'dataverse-changes';
  const key = `outbound:${queue}`;
  if (!handlers.has(key))
    handlers.set(
      key,
      Promise.resolve(
        new OutboundChangeHandler({
          name: services.env.FERRY_OUTBOUND_NAME ?? `${queue}-out`,
          queue,
          target: outboundTargetFromEnv(services.env),
          state: services.state,
          log,
          maxDeliveryCount: services.maxDeliveryCount,
          ...alertsFor(services, log),
        }),
      ),
    );
  const handler = await handlers.get(key)!;
  const received = receivedFromTrigger(messages, context);
  return settleForFunctions(received, await handler.handle(received), context);
}
