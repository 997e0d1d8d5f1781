import { type AmqpMessage, amqpMessage, amqpTypes, longValue } from './amqp-values.js';
import type { EmulatedQueue, StoredMessage, SubQueue } from './emulated-queue.js';

/**
 * The `$management` node of an entity: the request/response operations of
 * https://learn.microsoft.com/azure/service-bus-messaging/service-bus-amqp-request-response that the JS SDK sends for
 * session receivers, peeks, dead-letter receivers and scheduled sends.
 */

/** A management answer: `statusCode`, `statusDescription`, `errorCondition` on failure, and the body map. */
export interface ManagementResponse {
  readonly statusCode: number;
  readonly description: string;
  readonly errorCondition?: string;
  readonly body?: Record<string, unknown>;
}

/** What the management node asks of the namespace that owns the links and locks. */
export interface ManagementHost {
  now(): number;
  /** The session's lock entry when `linkName` (or, without one, any live receiver) holds it. */
  heldSession(
    queue: EmulatedQueue,
    sessionId: string,
    linkName: string | undefined,
  ): { readonly lockedUntil: number } | undefined;
  renewSessionLock(queue: EmulatedQueue, sessionId: string): number;
  renewMessageLock(queue: EmulatedQueue, message: StoredMessage): number;
  /** Delivers what became available (after a disposition or a scheduled send). */
  pump(queue: EmulatedQueue): void;
  /** Encodes a stored message as the service returns it in a management answer. */
  encode(message: StoredMessage): Buffer;
  /** Locks a deferred message for `receive-by-sequence-number`; returns the lock token (RFC order). */
  lockDeferred(queue: EmulatedQueue, message: StoredMessage): Buffer;
}

const ok = (body: Record<string, unknown> = {}): ManagementResponse => ({ statusCode: 200, description: 'OK', body });

function failure(statusCode: number, errorCondition: string, description: string): ManagementResponse {
  return { statusCode, errorCondition, description, body: {} };
}

function sessionLockLost(queue: EmulatedQueue, sessionId: unknown): ManagementResponse {
  return failure(
    410,
    'com.microsoft:session-lock-lost',
    `The session lock has expired on the session '${String(sessionId)}' of '${queue.name}', or this receiver does not hold it. Accept the session again.`,
  );
}

function sequenceNumbers(value: unknown): number[] {
  return (Array.isArray(value) ? value : []).map(longValue);
}

/** Answers one management request for `queue` (its dead-letter sub-queue when `subQueue` says so). */
export function handleManagementRequest(
  host: ManagementHost,
  queue: EmulatedQueue,
  subQueue: SubQueue,
  request: AmqpMessage,
): ManagementResponse {
  const operation = request.application_properties?.operation;
  const linkName = request.application_properties?.['associated-link-name'];
  const associatedLink = typeof linkName === 'string' ? linkName : undefined;
  const body = (request.body && typeof request.body === 'object' ? request.body : {}) as Record<string, unknown>;
  const sessionId = typeof body['session-id'] === 'string' ? body['session-id'] : undefined;

  switch (operation) {
    case 'com.microsoft:renew-session-lock': {
      if (sessionId === undefined || !host.heldSession(queue, sessionId, associatedLink)) {
        return sessionLockLost(queue, body['session-id']);
      }
      return ok({ expiration: new Date(host.renewSessionLock(queue, sessionId)) });
    }
    case 'com.microsoft:get-session-state': {
      if (sessionId === undefined || !host.heldSession(queue, sessionId, associatedLink)) {
        return sessionLockLost(queue, body['session-id']);
      }
      return ok({ 'session-state': queue.session(sessionId).state });
    }
    case 'com.microsoft:set-session-state': {
      if (sessionId === undefined || !host.heldSession(queue, sessionId, associatedLink)) {
        return sessionLockLost(queue, body['session-id']);
      }
      const state = body['session-state'];
      queue.session(sessionId).state = Buffer.isBuffer(state) ? state : null;
      return ok();
    }
    case 'com.microsoft:peek-message': {
      const from = longValue(body['from-sequence-number']);
      const count = Number(body['message-count']);
      if (!Number.isFinite(from) || !Number.isInteger(count) || count < 1) {
        return failure(400, 'amqp:invalid-field', 'from-sequence-number and message-count are required.');
      }
      const found = queue.peek(subQueue, from, count, sessionId);
      // No match is 204 with `statusCode` (not 404): the SDK reads an empty peek from exactly that.
      if (found.length === 0) return { statusCode: 204, description: 'No Content', body: {} };
      return ok({ messages: found.map((m) => ({ message: host.encode(m) })) });
    }
    case 'com.microsoft:renew-lock': {
      const tokens = Array.isArray(body['lock-tokens']) ? (body['lock-tokens'] as Buffer[]) : [];
      const expirations: number[] = [];
      for (const token of tokens) {
        const message = Buffer.isBuffer(token) ? queue.byLockToken(token) : undefined;
        if (!message) {
          return failure(
            410,
            'com.microsoft:message-lock-lost',
            `The lock supplied is invalid: it expired, or the message was already settled or removed from '${queue.name}'.`,
          );
        }
        expirations.push(host.renewMessageLock(queue, message));
      }
      return ok({ expirations: amqpTypes.wrap_array(expirations, 0x83) });
    }
    case 'com.microsoft:update-disposition': {
      const tokens = Array.isArray(body['lock-tokens']) ? (body['lock-tokens'] as Buffer[]) : [];
      const status = body['disposition-status'];
      const messages = tokens.map((t) => (Buffer.isBuffer(t) ? queue.byLockToken(t) : undefined));
      if (messages.some((m) => m === undefined)) {
        return failure(
          410,
          'com.microsoft:message-lock-lost',
          `The lock supplied is invalid: it expired, or the message was already settled or removed from '${queue.name}'.`,
        );
      }
      const modify = (body['properties-to-modify'] ?? undefined) as Record<string, unknown> | undefined;
      for (const message of messages as StoredMessage[]) {
        if (status === 'completed') queue.complete(message);
        else if (status === 'abandoned') queue.release(message, true, modify);
        else if (status === 'defered') queue.defer(message, modify);
        else if (status === 'suspended') {
          const reason = body['deadletter-reason'];
          const description = body['deadletter-description'];
          queue.deadLetter(
            message,
            typeof reason === 'string' ? reason : undefined,
            typeof description === 'string' ? description : undefined,
            modify,
          );
        } else {
          return failure(400, 'amqp:invalid-field', `Unknown disposition-status '${String(status)}'.`);
        }
      }
      host.pump(queue);
      return ok();
    }
    case 'com.microsoft:receive-by-sequence-number': {
      const found: { 'lock-token': unknown; message: Buffer }[] = [];
      for (const sequenceNumber of sequenceNumbers(body['sequence-numbers'])) {
        const message = queue.bySequenceNumber(sequenceNumber);
        if (message?.state !== 'deferred' || (sessionId !== undefined && message.sessionId !== sessionId)) {
          return failure(
            404,
            'com.microsoft:message-not-found',
            `The message with sequence number ${sequenceNumber} is not a deferred message of '${queue.name}'.`,
          );
        }
        const token = host.lockDeferred(queue, message);
        found.push({ 'lock-token': amqpTypes.wrap_uuid(token), message: host.encode(message) });
      }
      return ok({ messages: found });
    }
    case 'com.microsoft:schedule-message': {
      const entries = Array.isArray(body.messages) ? (body.messages as Record<string, unknown>[]) : [];
      const numbers: unknown[] = [];
      for (const entry of entries) {
        if (!Buffer.isBuffer(entry.message)) return failure(400, 'amqp:invalid-field', 'Each message must be binary.');
        const decoded = amqpMessage.decode(entry.message);
        if (queue.requiresSession && typeof decoded.group_id !== 'string') {
          return failure(400, 'amqp:not-allowed', sessionRequiredText(queue));
        }
        const stored = queue.enqueue(decoded, host.now());
        // Array elements of type long are written from 8-byte big-endian buffers.
        const long = Buffer.alloc(8);
        long.writeBigInt64BE(BigInt(stored.sequenceNumber));
        numbers.push(long);
      }
      host.pump(queue);
      return ok({ 'sequence-numbers': amqpTypes.wrap_array(numbers, 0x81) });
    }
    case 'com.microsoft:cancel-scheduled-message': {
      for (const sequenceNumber of sequenceNumbers(body['sequence-numbers'])) queue.cancelScheduled(sequenceNumber);
      return ok();
    }
    default:
      return failure(501, 'amqp:not-implemented', `The emulator does not serve the operation '${String(operation)}'.`);
  }
}

/** The refusal text for a message without a session id sent to a session queue. */
export function sessionRequiredText(queue: EmulatedQueue): string {
  return `The SessionId was not set on a message, and it cannot be sent to the entity '${queue.name}'. Entities that have session support enabled can only receive messages that have the SessionId set to a valid value.`;
}
