import { EXIT, UsageError } from '../../core/errors.js';
import { type QueueDefinition, startServiceBusEmulator } from '../../emulator/service-bus/service-bus-emulator.js';
import type { Command } from '../command.js';

/** Queues served when none is named: the event-driven path's inbound and outbound queues. */
const DEFAULT_QUEUES = ['ferry-inbound', 'ferry-outbound'];

function wholeNumber(raw: unknown, flag: string, min: number): number | undefined {
  if (raw === undefined) return undefined;
  const n = Number(raw);
  if (typeof raw !== 'string' || !Number.isInteger(n) || n < min) {
    throw new UsageError(
      `--${flag} \`${String(raw)}\` is not a whole number ≥ ${min}; pass e.g. --${flag} ${Math.max(min, 1)}.`,
    );
  }
  return n;
}

/**
 * `ferry emulator service-bus`: runs the local Service Bus emulator (plain AMQP on loopback) until SIGINT/SIGTERM and
 * prints its connection string (`UseDevelopmentEmulator=true`) on stdout. Every queue is session-enabled.
 */
export const emulatorServiceBusCommand: Command = {
  name: 'emulator service-bus',
  summary: 'run the local Service Bus (AMQP) emulator in the foreground and print its connection string',
  usage:
    'emulator service-bus [--port N] [--queue <name> ...] [--lock-duration-ms N] [--max-delivery-count N] [--host 127.0.0.1]',
  options: {
    port: { type: 'string', valueName: '<n>', defaultText: '5672 (0: any free port)', description: 'AMQP port' },
    host: { type: 'string', valueName: '<address>', defaultText: '127.0.0.1', description: 'address to listen on' },
    queue: {
      type: 'string',
      multiple: true,
      valueName: '<name>',
      defaultText: 'ferry-inbound and ferry-outbound',
      description: 'a session queue to serve',
    },
    'lock-duration-ms': {
      type: 'string',
      valueName: '<ms>',
      defaultText: '60000',
      description: 'how long a received message or session stays locked',
    },
    'max-delivery-count': {
      type: 'string',
      valueName: '<n>',
      defaultText: '10',
      description: 'deliveries before a message goes to the dead-letter queue',
    },
  },
  examples: [
    { text: 'Serve the default queues on port 5672:', command: 'ferry emulator service-bus' },
    {
      text: 'One queue on any free port, with short locks:',
      command: 'ferry emulator service-bus --port 0 --queue accounts-inbound --lock-duration-ms 5000',
    },
  ],
  async run(input) {
    const port = wholeNumber(input.values.port, 'port', 0) ?? 5672;
    if (port > 65535) throw new UsageError(`--port \`${port}\` is above 65535; pass a free port, or 0 for any.`);
    const lockDurationMs = wholeNumber(input.values['lock-duration-ms'], 'lock-duration-ms', 1) ?? 60_000;
    const maxDeliveryCount = wholeNumber(input.values['max-delivery-count'], 'max-delivery-count', 1) ?? 10;
    const named = (input.values.queue as string[] | undefined) ?? [];
    for (const name of named) {
      if (!/^[A-Za-z0-9][A-Za-z0-9._-]{0,259}$/.test(name)) {
        throw new UsageError(
          `--queue \`${name}\` is not a valid queue name: use letters, digits, '.', '-' and '_', starting with a letter or digit.`,
        );
      }
    }
    const queues: QueueDefinition[] = (named.length > 0 ? named : DEFAULT_QUEUES).map((name) => ({
      name,
      requiresSession: true,
      lockDurationMs,
      maxDeliveryCount,
    }));
    const host = typeof input.values.host === 'string' ? input.values.host : '127.0.0.1';
    const emulator = await startServiceBusEmulator({ host, port, queues });
    input.print(emulator.connectionString);
    input.log.info('Service Bus emulator listening', {
      port: emulator.port,
      queues: queues.map((q) => q.name).join(', '),
      lockDurationMs,
      maxDeliveryCount,
    });
    await new Promise<void>((resolve) => {
      if (input.signal.aborted) resolve();
      else input.signal.addEventListener('abort', () => resolve(), { once: true });
    });
    await emulator.close();
    input.log.info('Service Bus emulator stopped');
    return EXIT.ok;
  },
};
