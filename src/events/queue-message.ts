import fs from 'node:fs';
import { fileURLToPath } from 'node:url';
import AjvModule, { type ErrorObject } from 'ajv';

/** A source or column value as a message carries it. */
export type MessageValue = string | number | boolean | null;

/** One changed legacy record for an inbound pipeline (`schemas/queue-message.schema.json#/definitions/inbound`). */
export interface InboundChangeMessage {
  readonly type: 'ferry.inbound.change';
  readonly pipeline?: string;
  readonly key: Readonly<Record<string, string | number>>;
  readonly changedAt: string;
  readonly columns: Readonly<Record<string, MessageValue>>;
}

/** One changed Dataverse record for a target system (`#/definitions/outbound`). */
export interface OutboundChangeMessage {
  readonly type: 'ferry.outbound.change';
  readonly recordId: string;
  readonly table: string;
  readonly changedAt: string;
  readonly columns: Readonly<Record<string, MessageValue>>;
}

export type QueueMessageBody = InboundChangeMessage | OutboundChangeMessage;

/** The committed JSON schema of message bodies. */
export const QUEUE_MESSAGE_SCHEMA_FILE = fileURLToPath(
  new URL('../../schemas/queue-message.schema.json', import.meta.url),
);

type Validate = ((data: unknown) => boolean) & { errors?: ErrorObject[] | null };
interface Validators {
  readonly whole: Validate;
  readonly inbound: Validate;
  readonly outbound: Validate;
}
let compiled: Validators | undefined;

function validators(): Validators {
  if (!compiled) {
    // The CJS default export is the Ajv class (ESM interop puts it under `.default`).
    const Ajv = ((AjvModule as unknown as { default?: unknown }).default ?? AjvModule) as new (
      options: Record<string, unknown>,
    ) => { addSchema(schema: unknown): unknown; getSchema(ref: string): Validate | undefined };
    const schema = JSON.parse(fs.readFileSync(QUEUE_MESSAGE_SCHEMA_FILE, 'utf8')) as { $id: string };
    const ajv = new Ajv({ allErrors: false, strict: false });
    ajv.addSchema(schema);
    compiled = {
      whole: ajv.getSchema(schema.$id)!,
      inbound: ajv.getSchema(`${schema.$id}#/definitions/inbound`)!,
      outbound: ajv.getSchema(`${schema.$id}#/definitions/outbound`)!,
    };
  }
  return compiled;
}

/** Why a body is not a valid message, or null when it is one (checked against the committed JSON schema). */
export function queueMessageProblem(body: unknown): string | null {
  const { whole, inbound, outbound } = validators();
  if (whole(body)) {
    const changedAt = (body as QueueMessageBody).changedAt;
    if (Number.isNaN(Date.parse(changedAt))) return `changedAt \`${changedAt}\` is not a real date/time.`;
    return null;
  }
  const type = body && typeof body === 'object' ? (body as { type?: unknown }).type : undefined;
  // The branch named by `type` gives the useful error.
  const branch = type === 'ferry.inbound.change' ? inbound : type === 'ferry.outbound.change' ? outbound : undefined;
  if (!branch)
    return `The body is not a ferry queue message: \`type\` is \`${JSON.stringify(type)}\`, expected \`ferry.inbound.change\` or \`ferry.outbound.change\` (schema: schemas/queue-message.schema.json).`;
  branch(body);
  const first = branch.errors?.[0];
  const where = first?.instancePath || '(body)';
  const params = (first?.params ?? {}) as { additionalProperty?: string; missingProperty?: string };
  const extra = params.additionalProperty ? ` \`${params.additionalProperty}\`` : '';
  return `${where} ${first?.message ?? 'is not valid'}${extra} (schema: schemas/queue-message.schema.json).`;
}

/** Parses a message body given as JSON text or as an already-parsed value. */
export function parseBody(body: unknown): unknown {
  if (typeof body === 'string') {
    try {
      return JSON.parse(body) as unknown;
    } catch {
      return body;
    }
  }
  if (body instanceof Uint8Array) return parseBody(Buffer.from(body).toString('utf8'));
  return body;
}
