import { randomBytes } from 'node:crypto';
import { createRequire } from 'node:module';
import rhea from 'rhea';

/**
 * Typed AMQP values and conversions the Service Bus wire format needs. rhea wraps plain JS integers as uint/ulong,
 * but Service Bus declares `long`, `int` and .NET ticks (AMQP 1.0 in Service Bus: request-response-based operations,
 * https://learn.microsoft.com/azure/service-bus-messaging/service-bus-amqp-request-response).
 */

/** rhea's typed-value constructors (the typings do not declare all of them). */
export const amqpTypes = rhea.types as unknown as {
  wrap_long(value: number | Buffer): unknown;
  wrap_int(value: number): unknown;
  wrap_uint(value: number): unknown;
  wrap_uuid(value: Buffer): unknown;
  wrap_array(values: unknown[], typecode: number): unknown;
  wrap_map(value: Record<string, unknown>): unknown;
  wrap_string(value: string): unknown;
};

/** rhea's message codec: a decoded message is one flat object (header, properties and sections side by side). */
export const amqpMessage = rhea.message as unknown as {
  encode(message: AmqpMessage): Buffer;
  decode(buffer: Buffer): AmqpMessage;
  accepted(): { described(): unknown };
  rejected(fields: { error: { condition: string; description: string } }): { described(): unknown };
};

/** rhea's frame constructors, for the one frame rhea cannot be asked to write (a drained flow at zero credit). */
export const amqpFrames = createRequire(import.meta.url)('rhea/lib/frames.js') as {
  flow(fields: Record<string, unknown>): unknown;
};

/** The fields of a decoded AMQP message the emulator reads or writes. */
export interface AmqpMessage {
  message_id?: unknown;
  group_id?: string;
  correlation_id?: unknown;
  reply_to?: string;
  to?: string;
  subject?: string;
  content_type?: string;
  delivery_count?: number;
  ttl?: number;
  message_annotations?: Record<string, unknown>;
  application_properties?: Record<string, unknown>;
  body?: unknown;
  [field: string]: unknown;
}

/** Message format of a Service Bus batch: each data section holds one whole encoded message. */
export const BATCH_MESSAGE_FORMAT = 0x80013700;

const DOTNET_EPOCH_TICKS = 621355968000000000n;

/** An AMQP long of .NET ticks (100 ns since 0001-01-01), as `com.microsoft:locked-until-utc` is sent. */
export function ticksLong(unixMs: number): unknown {
  const buffer = Buffer.alloc(8);
  buffer.writeBigInt64BE(BigInt(Math.round(unixMs)) * 10000n + DOTNET_EPOCH_TICKS);
  return amqpTypes.wrap_long(buffer);
}

/** A new lock token in RFC 4122 byte order (how `$management` requests carry it). */
export function newLockToken(): Buffer {
  return randomBytes(16);
}

/**
 * The delivery tag for a lock token: .NET `Guid.ToByteArray` order (first three groups byte-reversed), which the SDK
 * turns back into the token string (https://learn.microsoft.com/azure/service-bus-messaging/service-bus-amqp-protocol-guide).
 */
export function deliveryTagFor(lockToken: Buffer): Buffer {
  const t = lockToken;
  return Buffer.from([t[3], t[2], t[1], t[0], t[5], t[4], t[7], t[6], ...t.subarray(8)]);
}

/** Lookup key of a lock token given in RFC order. */
export function lockTokenKey(lockToken: Buffer): string {
  return lockToken.toString('hex');
}

/** A long that arrived as a JS number, or as an 8-byte Buffer when it does not fit in 2^53. */
export function longValue(value: unknown): number {
  if (typeof value === 'number') return value;
  if (Buffer.isBuffer(value) && value.length === 8) return Number(value.readBigInt64BE());
  if (typeof value === 'bigint') return Number(value);
  return Number.NaN;
}

/**
 * The session filter value: a plain string from the JS SDK, a described value from other SDKs
 * (descriptor `0x00000137:0000000C`); `null` asks for the next available session.
 */
export function sessionFilterValue(value: unknown): string | null {
  if (value === null || value === undefined) return null;
  if (typeof value === 'string') return value;
  const inner = (value as { value?: unknown }).value;
  if (inner === null || inner === undefined) return null;
  return typeof inner === 'string' ? inner : String(inner);
}
