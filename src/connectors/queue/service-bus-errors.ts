import { isServiceBusError } from '@azure/service-bus';
import type { ErrorCode } from '../../core/error-codes.js';
import { FerryError } from '../../core/errors.js';

/**
 * The catalogue code and a hint for each `ServiceBusError.code`
 * (https://learn.microsoft.com/azure/service-bus-messaging/service-bus-messaging-exceptions-latest); the disposition
 * is the catalogue's (`core/error-codes.ts`). Lock losses are `retry`: the messages return to the queue and the
 * session can be accepted again.
 */
const HINT_BY_CODE: Readonly<Record<string, { code: ErrorCode; hint: string }>> = {
  ServiceBusy: { code: 'service_bus.service_busy', hint: 'The namespace is throttling; try again later.' },
  ServiceTimeout: { code: 'service_bus.service_timeout', hint: 'The service did not answer in time; try again.' },
  ServiceCommunicationProblem: {
    code: 'service_bus.service_communication_problem',
    hint: 'Check the network and the namespace host name, then try again.',
  },
  SessionLockLost: {
    code: 'service_bus.session_lock_lost',
    hint: 'The session lock expired or was lost; its messages return to the queue. Accept the session again.',
  },
  MessageLockLost: {
    code: 'service_bus.message_lock_lost',
    hint: 'The message lock expired; the message returns to the queue and will be delivered again.',
  },
  SessionCannotBeLocked: {
    code: 'service_bus.session_cannot_be_locked',
    hint: 'Another receiver holds the session; try again after it is released.',
  },
  QuotaExceeded: {
    code: 'service_bus.quota_exceeded',
    hint: 'The queue is full or a quota is reached; drain it and try again.',
  },
  MessagingEntityNotFound: {
    code: 'service_bus.messaging_entity_not_found',
    hint: 'Check the queue name and that it exists in the namespace.',
  },
  MessagingEntityDisabled: {
    code: 'service_bus.messaging_entity_disabled',
    hint: 'Enable the queue in the namespace.',
  },
  UnauthorizedAccess: {
    code: 'service_bus.unauthorized_access',
    hint: 'Check the connection string or give the identity the Azure Service Bus Data Sender/Receiver roles.',
  },
  MessageSizeExceeded: {
    code: 'service_bus.message_size_exceeded',
    hint: 'Make the message smaller than the queue allows.',
  },
  MessageNotFound: { code: 'service_bus.message_not_found', hint: 'The message was already settled or removed.' },
};

/**
 * The one place where `@azure/service-bus` failures become `FerryError`s: code `service_bus.<snake code>` from the catalogue
 * (whose disposition is `retry` for transient failures and lock losses) and a message naming the operation and the queue. Connection
 * strings and tokens never appear: only the SDK's message, which carries neither.
 */
export function mapServiceBusError(error: unknown, operation: string, queue: string): FerryError {
  if (error instanceof FerryError) return error;
  const where = `Service Bus ${operation} on queue \`${queue}\``;
  if (isServiceBusError(error)) {
    const known = HINT_BY_CODE[error.code];
    const hint = known?.hint ?? (error.retryable ? 'Try again.' : 'See the service error above.');
    // A code of the table has its own catalogue entry; any other is `unreachable` or `failed` as the SDK judges it.
    const code = known ? known.code : error.retryable ? 'service_bus.unreachable' : 'service_bus.failed';
    return new FerryError(code, `${where} failed (${error.code}): ${error.message} ${hint}`, {
      cause: error,
      details: { serviceBusCode: error.code, queue },
    });
  }
  const name = error instanceof Error ? error.name : '';
  const message = error instanceof Error ? error.message : String(error);
  // core-amqp's own errors (timeouts, a dropped socket) are transient; anything else is a bug or a bad argument.
  const transient = /timeout|ECONNRESET|ECONNREFUSED|disconnected|OperationTimeout/i.test(`${name} ${message}`);
  return new FerryError(
    transient ? 'service_bus.unreachable' : 'service_bus.failed',
    `${where} failed: ${message}${transient ? ' Check that the namespace is reachable, then try again.' : ''}`,
    { cause: error, details: { queue } },
  );
}
