import { WebhookAlerts } from '../../alerts/webhook-alerts.js';
import { UsageError } from '../../core/errors.js';
import { loadPipelines, selectPipelines } from '../../core/pipeline-loader.js';
import { InboundMessageHandler } from '../../events/inbound-message-handler.js';
import { openQueueTransport } from '../../events/open-queue-transport.js';
import { listenToQueue } from '../../events/session-listener.js';
import type { Command } from '../command.js';
import { openDataverse, openState } from '../services.js';

/** `ferry listen <pipeline>`: applies change messages from a session queue with the pipeline's own mapping. */
export const listenCommand: Command = {
  name: 'listen',
  summary: 'apply change messages from a session queue to Dataverse with an inbound pipeline (until stopped)',
  usage:
    'listen <pipeline> [--transport embedded|service-bus] [--queue <name>] [--max-batch N] [--alert-webhook <url>] [--until-idle <sec>] [--json]',
  options: {
    transport: {
      type: 'string',
      default: 'embedded',
      valueName: '<embedded|service-bus>',
      description: 'embedded: the queue in the state store; service-bus: Azure Service Bus',
    },
    queue: { type: 'string', valueName: '<name>', defaultText: 'the pipeline name', description: 'queue to listen on' },
    'max-batch': {
      type: 'string',
      default: '500',
      valueName: '<n>',
      description: 'messages gathered into one micro-batch (1 to 5000)',
    },
    'alert-webhook': {
      type: 'string',
      valueName: '<url>',
      env: 'FERRY_ALERT_WEBHOOK',
      defaultText: "the target's alertWebhook",
      description: 'posted to once per reject reason and on failures',
    },
    'until-idle': {
      type: 'string',
      valueName: '<sec>',
      defaultText: 'listen until stopped (Ctrl-C)',
      description: 'stop after this many seconds without a message',
    },
  },
  examples: [
    {
      text: 'Apply account changes from the embedded queue to the emulator, stop when idle for 5 s:',
      command: 'ferry listen accounts-inbound --emulator --until-idle 5',
    },
    {
      text: 'From Azure Service Bus, until stopped:',
      command: 'ferry listen accounts-inbound --transport service-bus --queue ferry-inbound --target prod',
    },
  ],
  async run(input) {
    const [name, ...extra] = input.positionals;
    if (!name || extra.length) throw new UsageError('Name exactly one inbound pipeline: ferry listen <pipeline>.');
    const [def] = selectPipelines(await loadPipelines(input.pipelinesDir), [name]);
    const maxBatch = Number(input.values['max-batch'] ?? 500);
    if (!Number.isInteger(maxBatch) || maxBatch < 1 || maxBatch > 5000)
      throw new UsageError(
        `--max-batch \`${String(input.values['max-batch'])}\` must be a whole number from 1 to 5000.`,
      );
    const untilIdle = input.values['until-idle'] === undefined ? undefined : Number(input.values['until-idle']) * 1000;
    if (untilIdle !== undefined && !(untilIdle >= 0))
      throw new UsageError(`--until-idle \`${String(input.values['until-idle'])}\` must be a number of seconds.`);
    if (def!.direction !== 'inbound')
      throw new UsageError(
        `Pipeline \`${def!.name}\` is ${def!.direction}; \`ferry listen\` applies change messages of an inbound pipeline.`,
      );
    const queue = typeof input.values.queue === 'string' ? input.values.queue : def!.name;
    const state = openState(input.config);
    const closers: Array<() => Promise<void> | void> = [() => state.close()];
    const closeAll = async () => {
      for (const close of closers.reverse()) await close();
    };
    let opened: Awaited<ReturnType<typeof openQueueTransport>>;
    let dataverse: Awaited<ReturnType<typeof openDataverse>>;
    let handler: InboundMessageHandler;
    try {
      opened = await openQueueTransport(String(input.values.transport ?? 'embedded'), input.config);
      closers.push(() => opened.transport.close());
      dataverse = await openDataverse(input.config, input.log);
      closers.push(() => dataverse.close());
      const webhook =
        (typeof input.values['alert-webhook'] === 'string' ? input.values['alert-webhook'] : undefined) ??
        process.env.FERRY_ALERT_WEBHOOK;
      handler = await InboundMessageHandler.open({
        definition: def!,
        config: input.config,
        state,
        dataverse: dataverse.endpoint,
        log: input.log,
        queue,
        maxDeliveryCount: opened.maxDeliveryCount,
        signal: input.signal,
        ...(webhook ? { alerts: new WebhookAlerts({ url: webhook, state, log: input.log }) } : {}),
      });
    } catch (error) {
      await closeAll();
      throw error;
    }
    const transport = opened.transport;
    input.log.info(`Listening to \`${queue}\` (${transport.kind}) for \`${def!.name}\`; stop with Ctrl-C.`);
    try {
      const summary = await listenToQueue({
        transport,
        queue,
        handler,
        log: input.log,
        maxBatch,
        signal: input.signal,
        ...(untilIdle !== undefined ? { stopWhenIdleMs: untilIdle } : {}),
        onSettled: (message, outcome) => {
          if (input.json)
            input.print(
              JSON.stringify({
                event: 'settled',
                messageId: message.messageId,
                sessionId: message.sessionId,
                ...outcome,
              }),
            );
        },
      });
      const line = { event: 'stopped', runId: handler.runId, ...summary, ...handler.counts };
      input.print(
        input.json
          ? JSON.stringify(line)
          : `listen ${def!.name}: ${summary.messages} message(s) in ${summary.batches} batch(es): ${handler.counts.upserted} upserted, ${handler.counts.stale + handler.counts.superseded} stale, ${summary.deadLettered} dead-lettered, ${summary.abandoned} abandoned for retry${handler.runId ? ` (run ${handler.runId})` : ''}`,
      );
      return 0;
    } finally {
      await handler.close();
      await closeAll();
    }
  },
};
