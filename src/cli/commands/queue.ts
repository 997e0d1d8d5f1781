import fs from 'node:fs/promises';
import { UsageError } from '../../core/errors.js';
import type { OutgoingMessage, ReceivedMessage } from '../../core/queue-transport.js';
import { openQueueTransport } from '../../events/open-queue-transport.js';
import { queueMessageProblem } from '../../events/queue-message.js';
import type { Command, CommandInput, OptionSpec } from '../command.js';

const transportOption: Readonly<Record<string, OptionSpec>> = {
  transport: {
    type: 'string',
    default: 'embedded',
    valueName: '<embedded|service-bus>',
    description: 'embedded: the queue in the state store; service-bus: Azure Service Bus (FERRY_SERVICE_BUS_*)',
  },
};

function queueName(input: CommandInput, usage: string): string {
  const [queue] = input.positionals;
  if (!queue) throw new UsageError(`Name the queue: ferry ${usage}.`);
  return queue;
}

/** Reads message bodies: a JSON object, a JSON array of objects, or JSON Lines. */
export function parseBodies(text: string, from: string): unknown[] {
  const trimmed = text.trim();
  if (!trimmed)
    throw new UsageError(`\`${from}\` is empty; give one JSON message body, an array of them, or JSON Lines.`);
  try {
    const parsed = JSON.parse(trimmed) as unknown;
    return Array.isArray(parsed) ? parsed : [parsed];
  } catch {
    return trimmed.split('\n').map((line, i) => {
      try {
        return JSON.parse(line) as unknown;
      } catch (error) {
        throw new UsageError(
          `Line ${i + 1} of \`${from}\` is not JSON (${(error as Error).message}); give one JSON body per line.`,
        );
      }
    });
  }
}

function describe(m: ReceivedMessage): string {
  const body = JSON.stringify(m.body);
  return `#${m.sequenceNumber} ${m.messageId} session ${m.sessionId} delivery ${m.deliveryCount} ${m.enqueuedTimeUtc.toISOString()}${m.deadLetterReason ? ` [${m.deadLetterReason}] ${m.deadLetterErrorDescription ?? ''}` : ''}\n    ${body.length > 300 ? `${body.slice(0, 297)}...` : body}`;
}

/** `ferry queue send <queue> --session <id> <file|->`. */
export const queueSendCommand: Command = {
  name: 'queue send',
  summary: 'send change messages (JSON, checked against schemas/queue-message.schema.json) to a session queue',
  usage: 'queue send <queue> --session <id> <file|-> [--transport embedded|service-bus] [--no-check]',
  options: {
    ...transportOption,
    session: {
      type: 'string',
      valueName: '<id>',
      defaultText: 'required',
      description: "session id: the record's id, so its changes stay in order",
    },
    'no-check': { type: 'boolean', default: false, description: 'send without checking the message schema' },
  },
  examples: [
    {
      text: 'Send one account change:',
      command: 'ferry queue send accounts-inbound --session Q-1001 fixtures/queue/account-change.json',
    },
    {
      text: 'Send JSON Lines from standard input:',
      command: 'cat changes.jsonl | ferry queue send accounts-inbound --session Q-1001 -',
    },
  ],
  async run(input) {
    const [queue, file, ...extra] = input.positionals;
    if (!queue || !file || extra.length)
      throw new UsageError('Usage: ferry queue send <queue> --session <id> <file|-> (`-` reads standard input).');
    const session = input.values.session;
    if (typeof session !== 'string' || !session)
      throw new UsageError(
        "Give the session id with --session <id> (the record's id: one session per record keeps its changes in order).",
      );
    const text =
      file === '-'
        ? await readStdin()
        : await fs.readFile(file, 'utf8').catch(() => {
            throw new UsageError(`Cannot read \`${file}\`; give a JSON file or \`-\` for standard input.`);
          });
    const bodies = parseBodies(text, file);
    if (!input.values['no-check']) {
      bodies.forEach((b, i) => {
        const problem = queueMessageProblem(b);
        if (problem)
          throw new UsageError(
            `Message ${i + 1} of \`${file}\` is not a ferry message: ${problem} Fix it, or send it anyway with --no-check.`,
          );
      });
    }
    const { transport } = await openQueueTransport(String(input.values.transport ?? 'embedded'), input.config);
    try {
      const messages: OutgoingMessage[] = bodies.map((body) => ({ sessionId: session, body }));
      await transport.send(queue, messages);
      input.print(
        input.json
          ? JSON.stringify({ queue, session, sent: messages.length })
          : `Sent ${messages.length} message(s) to \`${queue}\`, session \`${session}\`.`,
      );
      return 0;
    } finally {
      await transport.close();
    }
  },
};

/** `ferry queue peek <queue>`. */
export const queuePeekCommand: Command = {
  name: 'queue peek',
  summary: 'list the messages waiting on a queue, oldest first, without taking them',
  usage: 'queue peek <queue> [--max N] [--transport embedded|service-bus] [--json]',
  options: {
    ...transportOption,
    max: { type: 'string', default: '50', valueName: '<n>', description: 'at most this many messages' },
  },
  examples: [{ text: 'The messages waiting on a queue:', command: 'ferry queue peek accounts-inbound' }],
  async run(input) {
    const queue = queueName(input, 'queue peek <queue>');
    const max = Number(input.values.max ?? 50);
    if (!Number.isInteger(max) || max < 1)
      throw new UsageError(`--max \`${String(input.values.max)}\` must be a whole number of at least 1.`);
    const { transport } = await openQueueTransport(String(input.values.transport ?? 'embedded'), input.config);
    try {
      const messages = await transport.peek(queue, max);
      for (const m of messages) input.print(input.json ? JSON.stringify(m) : describe(m));
      if (!input.json)
        input.print(
          `${messages.length} message(s) waiting on \`${queue}\`${messages.length === max ? ' (more may wait: raise --max)' : ''}.`,
        );
      return 0;
    } finally {
      await transport.close();
    }
  },
};

/** `ferry queue dead-letters <queue> [--resubmit [ids...]]`. */
export const queueDeadLettersCommand: Command = {
  name: 'queue dead-letters',
  summary:
    'list the dead-lettered messages of a queue with their reasons; --resubmit sends them (or the ids given) back',
  usage: 'queue dead-letters <queue> [--resubmit [messageId...]] [--max N] [--transport embedded|service-bus] [--json]',
  options: {
    ...transportOption,
    resubmit: {
      type: 'boolean',
      default: false,
      description: 'send the dead letters (or the message ids given) back to the queue',
    },
    max: { type: 'string', default: '100', valueName: '<n>', description: 'at most this many dead letters' },
  },
  examples: [
    { text: 'Dead letters with reason and description:', command: 'ferry queue dead-letters accounts-inbound' },
    {
      text: 'Send two of them back after fixing the cause:',
      command: 'ferry queue dead-letters accounts-inbound --resubmit <message-id> <message-id>',
    },
  ],
  async run(input) {
    const queue = queueName(input, 'queue dead-letters <queue>');
    const ids = input.positionals.slice(1);
    if (ids.length && !input.values.resubmit)
      throw new UsageError(`Message ids (\`${ids.join('`, `')}\`) are only taken with --resubmit.`);
    const { transport } = await openQueueTransport(String(input.values.transport ?? 'embedded'), input.config);
    try {
      if (input.values.resubmit) {
        if (ids.length) {
          const known = new Set((await transport.peekDeadLetters(queue, 100_000)).map((m) => m.messageId));
          const unknown = ids.filter((id) => !known.has(id));
          if (unknown.length)
            throw new UsageError(
              `No dead letter with id \`${unknown.join('`, `')}\` on \`${queue}\`; list them with \`ferry queue dead-letters ${queue}\`.`,
            );
        }
        const moved = await transport.resubmitDeadLetters(queue, ids.length ? ids : undefined);
        input.print(
          input.json
            ? JSON.stringify({ queue, resubmitted: moved })
            : `Resubmitted ${moved} message(s) to \`${queue}\`.`,
        );
        return 0;
      }
      const max = Number(input.values.max ?? 50);
      const dead = await transport.peekDeadLetters(queue, Number.isInteger(max) && max > 0 ? max : 100);
      for (const m of dead) input.print(input.json ? JSON.stringify(m) : describe(m));
      if (!input.json) input.print(`${dead.length} dead-lettered message(s) on \`${queue}\`.`);
      return 0;
    } finally {
      await transport.close();
    }
  },
};

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}
