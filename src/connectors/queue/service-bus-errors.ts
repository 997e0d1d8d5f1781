import { isServiceBusError } from '@azure/service-bus';
import { type Disposition, FerryError } from '../../core/errors.js';

/**
 * What to do about each `ServiceBusError.code`
 * (https://learn.microsoft.com/azure/service-bus-messaging/service-bus-messaging-exceptions-latest). Lock losses are
 * `retry`: the messages return to the queue and the session can be accepted again.
 */
const DISPOSITION_BY_CODE: Readonly<Record<string, { disposition: Disposition; hint: string }>> = {
  ServiceBusy: { disposition: 'retry', hint: 'The namespace is throttling; try again later.' },
  ServiceTimeout: { disposition: 'retry', hint: 'The service did not answer in time; try again.' },
  ServiceCommunicationProblem: {
    disposition: 'retry',
    hint: 'Check the network and the namespace host name, then try again.',
  },
  SessionLockLost: {
    disposition: 'retry',
    hint: 'The session lock expired or was lost; its messages return to the queue. Accept the session again.',
  },
  MessageLockLost: {
    disposition: 'retry',
    hint: 'The message lock expired; the message returns to the queue and will be delivered again.',
  },
  SessionCannotBeLocked: {
    disposition: 'retry',
    hint: 'Another receiver holds the session; try again after it is released.',
  },
  QuotaExceeded: { disposition: 'retry', hint: 'The queue is full or a quota is reached; drain it and try again.' },
  MessagingEntityNotFound: {
    disposition: 'fatal',
    hint: 'Check the queue name and that it exists in the namespace.',
  },
  MessagingEntityDisabled: { disposition: 'fatal', hint: 'Enable the queue in the namespace.' },
  UnauthorizedAccess: {
    disposition: 'fatal',
    hint: 'Check the connection string or give the identity the Azure Service Bus Data Sender/Receiver roles.',
  },
  MessageSizeExceeded: { disposition: 'skip', hint: 'Make the message smaller than the queue allows.' },
  MessageNotFound: { disposition: 'skip', hint: 'The message was already settled or removed.' },
};

function kebab(code: string): string {
  return code.replace(/([a-z0-9])([A-Z])/g, '$1-$2').toLowerCase();
}

/**
 * The one place where `@azure/service-bus` failures become `FerryError`s: code `service-bus.<kebab code>`, a disposition
 * (`retry` for transient failures and lock losses) and a message naming the operation and the queue. Connection
 * strings and tokens never appear: only the SDK's message, which carries neither.
 */
export function mapServiceBusError(error: unknown, operation: string, queue: string): FerryError {
  if (error instanceof FerryError) return error;
  const where = `Service Bus ${operation} on queue \`${queue}\``;
  if (isServiceBusError(error)) {
    const known = DISPOSITION_BY_CODE[error.code];
    const disposition: Disposition = known?.disposition ?? (error.retryable ? 'retry' : 'fatal');
    const hint = known?.hint ?? (error.retryable ? 'Try again.' : 'See the service error above.');
    return new FerryError(
      `service-bus.${kebab(error.code)}`,
      `${where} failed (${error.code}): ${error.message} ${hint}`,
      {
        disposition,
        cause: error,
        details: { serviceBusCode: error.code, queue },
      },
    );
  }
  const name = error instanceof Error ? error.name : '';
  const message = error instanceof Error ? error.message : String(error);
  // core-amqp's own errors (timeouts, a dropped socket) are transient; anything else is a bug or a bad argument.
  const transient = /timeout|ECONNRESET|ECONNREFUSED|disconnected|OperationTimeout/i.test(`${name} ${message}`);
  return new FerryError(
    transient ? 'service-bus.unreachable' : 'service-bus.failed',
    `${where} failed: ${message}${transient ? ' Check that the namespace is reachable, then try again.' : ''}`,
    { disposition: transient ? 'retry' : 'fatal', cause: error, details: { queue } },
  );
}
