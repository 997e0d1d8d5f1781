import { randomUUID } from 'node:crypto';
import { DefaultAzureCredential, type TokenCredential } from '@azure/identity';
import {
  isServiceBusError,
  ServiceBusClient,
  type ServiceBusClientOptions,
  type ServiceBusMessage,
  type ServiceBusReceivedMessage,
  type ServiceBusSender,
  type ServiceBusSessionReceiver,
} from '@azure/service-bus';
import { FerryError, UsageError } from '../../core/errors.js';
import type { OutgoingMessage, QueueSession, QueueTransport, ReceivedMessage } from '../../core/queue-transport.js';
import { mapServiceBusError } from './service-bus-errors.js';

/** How to reach the namespace: a connection string, or a namespace host name and an Entra ID credential. */
export type ServiceBusTransportOptions = (
  | { readonly connectionString: string }
  | {
      readonly fullyQualifiedNamespace: string;
      /** Default: `new DefaultAzureCredential()` (managed identity in Azure, the developer's login locally). */
      readonly credential?: TokenCredential;
    }
) & {
  /** Per-operation timeout and retries of the SDK. Defaults: `timeoutMs` 60000, `maxRetries` 3, `retryDelayMs` 1000. */
  readonly retry?: { readonly timeoutMs?: number; readonly maxRetries?: number; readonly retryDelayMs?: number };
  /**
   * How long one accept-next-session request waits at the service before it is asked again. It also bounds how long
   * an accept still in flight outlives `close()` (the SDK cannot cancel it). Default `10000`.
   */
  readonly acceptTimeoutMs?: number;
  /**
   * Renew each open session's lock in the background (default `true`). With `false` only `renewLock()` renews it,
   * as with the embedded queue; a caller that stops renewing then loses the session after the lock duration.
   */
  readonly renewLocks?: boolean;
  /**
   * Shortest wait of a session receive for its first message, whatever the caller asked (`0` included): a session
   * counts as dry only after a round trip to the service. Default `200`.
   */
  readonly minReceiveWaitMs?: number;
};

type Settle = 'complete' | 'abandon' | 'deadLetter';

/** Application properties the service adds to a dead-lettered message; a resubmitted copy leaves them out. */
const DEAD_LETTER_PROPERTIES = new Set(['DeadLetterReason', 'DeadLetterErrorDescription']);

function plainProperties(
  properties: Readonly<Record<string, unknown>> | undefined,
): Record<string, string | number | boolean> {
  const out: Record<string, string | number | boolean> = {};
  for (const [key, value] of Object.entries(properties ?? {})) {
    if (typeof value === 'string' || typeof value === 'number' || typeof value === 'boolean') out[key] = value;
    else if (value instanceof Date) out[key] = value.toISOString();
    else if (value !== null && value !== undefined) out[key] = String(value);
  }
  return out;
}

/**
 * The SDK's message in the interface's shape. A received message's `deliveryCount` counts this delivery (the SDK's
 * count of earlier ones + 1); a peeked one shows the deliveries so far (0 before the first), as the embedded queue.
 */
function toReceived(message: ServiceBusReceivedMessage, peeked = false): ReceivedMessage {
  return {
    messageId: String(message.messageId ?? ''),
    sessionId: message.sessionId ?? '',
    body: message.body,
    deliveryCount: (message.deliveryCount ?? 0) + (peeked ? 0 : 1),
    sequenceNumber: message.sequenceNumber?.toNumber() ?? 0,
    enqueuedTimeUtc: message.enqueuedTimeUtc ?? new Date(0),
    applicationProperties: plainProperties(message.applicationProperties),
    ...(message.deadLetterReason !== undefined ? { deadLetterReason: message.deadLetterReason } : {}),
    ...(message.deadLetterErrorDescription !== undefined
      ? { deadLetterErrorDescription: message.deadLetterErrorDescription }
      : {}),
  };
}

function toServiceBusMessage(message: OutgoingMessage): ServiceBusMessage {
  if (typeof message.sessionId !== 'string' || message.sessionId === '') {
    throw new UsageError(
      `A message for a session queue needs a session id; got \`${String(message.sessionId)}\`. Set sessionId to the record's id.`,
    );
  }
  return {
    body: message.body,
    sessionId: message.sessionId,
    messageId: message.messageId ?? randomUUID(),
    contentType: message.contentType ?? 'application/json',
    applicationProperties: { ...message.applicationProperties },
  };
}

const delay = (ms: number, signal?: AbortSignal) =>
  new Promise<void>((resolve) => {
    if (ms <= 0 || signal?.aborted) return resolve();
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    }
    signal?.addEventListener('abort', done, { once: true });
  });

/** One accept-next-session call in flight; it outlives a caller that stopped waiting (see `acceptNextSession`). */
type PendingAccept = Promise<ServiceBusSessionReceiver | Error>;

/**
 * The Azure Service Bus transport: session queues through `@azure/service-bus` (7.9.x). Sessions are accepted with
 * `acceptNextSession`, their lock is renewed by this transport while a `QueueSession` is open (the SDK's own
 * renewal is off, so a failed renewal is seen), settlement is complete / abandon / dead-letter with reason and
 * description, and dead-lettered messages are read from and resubmitted out of `<queue>/$DeadLetterQueue`.
 * Sessions come from a second client whose operation timeout is `acceptTimeoutMs` and which does not retry: a failed
 * settlement surfaces at once as a `retry` FerryError and the adapter decides (the lock returns the message anyway).
 */
export class ServiceBusTransport implements QueueTransport {
  readonly kind = 'service-bus';
  readonly #client: ServiceBusClient;
  /** Accepts sessions: its operation timeout is the service-side wait of one accept, and it does not retry. */
  readonly #acceptClient: ServiceBusClient;
  readonly #clientArgs: () => ServiceBusClient;
  readonly #senders = new Map<string, ServiceBusSender>();
  /** Accepts whose caller gave up waiting: the next caller for that queue takes them over. */
  readonly #unclaimed = new Map<string, PendingAccept[]>();
  readonly #sessions = new Set<ServiceBusQueueSession>();
  #closed = false;
  readonly #renewLocks: boolean;
  readonly #minReceiveWaitMs: number;

  constructor(options: ServiceBusTransportOptions) {
    this.#renewLocks = options.renewLocks ?? true;
    this.#minReceiveWaitMs = Math.max(1, options.minReceiveWaitMs ?? 200);
    const clientOptions: ServiceBusClientOptions = {
      retryOptions: {
        timeoutInMs: options.retry?.timeoutMs ?? 60_000,
        maxRetries: options.retry?.maxRetries ?? 3,
        retryDelayInMs: options.retry?.retryDelayMs ?? 1_000,
      },
    };
    const acceptOptions: ServiceBusClientOptions = {
      retryOptions: { timeoutInMs: options.acceptTimeoutMs ?? 10_000, maxRetries: 0 },
    };
    let make: (clientOptions: ServiceBusClientOptions) => ServiceBusClient;
    if ('connectionString' in options) {
      if (typeof options.connectionString !== 'string' || !/Endpoint=sb:\/\//i.test(options.connectionString)) {
        throw new UsageError(
          'The Service Bus connection string has no `Endpoint=sb://...`; copy it from the namespace\'s "Shared access policies" or the emulator\'s output.',
        );
      }
      make = (o) => new ServiceBusClient(options.connectionString, o);
    } else {
      const namespace = options.fullyQualifiedNamespace;
      if (typeof namespace !== 'string' || namespace.trim() === '' || namespace.includes('://')) {
        throw new UsageError(
          `The Service Bus namespace \`${String(namespace)}\` must be a host name like \`contoso.servicebus.windows.net\` (no scheme).`,
        );
      }
      const credential = options.credential ?? new DefaultAzureCredential();
      make = (o) => new ServiceBusClient(namespace, credential, o);
    }
    this.#clientArgs = () => make(clientOptions);
    this.#client = make(clientOptions);
    this.#acceptClient = make(acceptOptions);
  }

  #sender(queue: string): ServiceBusSender {
    let sender = this.#senders.get(queue);
    if (!sender) {
      sender = this.#client.createSender(queue);
      this.#senders.set(queue, sender);
    }
    return sender;
  }

  #assertOpen(): void {
    if (this.#closed)
      throw new FerryError('service_bus.closed', 'The Service Bus transport is closed; create a new one.');
  }

  async send(queue: string, messages: readonly OutgoingMessage[]): Promise<void> {
    this.#assertOpen();
    if (messages.length === 0) return;
    const prepared = messages.map(toServiceBusMessage);
    const sender = this.#sender(queue);
    try {
      // Batches keep the given order and go as few requests as the size limit allows.
      let batch = await sender.createMessageBatch();
      for (const message of prepared) {
        if (batch.tryAddMessage(message)) continue;
        if (batch.count === 0) {
          throw new FerryError(
            'service_bus.message_size_exceeded',
            `Message \`${message.messageId}\` of session \`${message.sessionId}\` is larger than queue \`${queue}\` accepts (${batch.maxSizeInBytes} bytes); make it smaller.`,
          );
        }
        await sender.sendMessages(batch);
        batch = await sender.createMessageBatch();
        if (!batch.tryAddMessage(message)) {
          throw new FerryError(
            'service_bus.message_size_exceeded',
            `Message \`${message.messageId}\` of session \`${message.sessionId}\` is larger than queue \`${queue}\` accepts (${batch.maxSizeInBytes} bytes); make it smaller.`,
          );
        }
      }
      if (batch.count > 0) await sender.sendMessages(batch);
    } catch (error) {
      throw mapServiceBusError(error, 'send', queue);
    }
  }

  #startAccept(queue: string): PendingAccept {
    return this.#acceptClient.acceptNextSession(queue, { maxAutoLockRenewalDurationInMs: 0 }).then(
      (receiver) => {
        this.#keepUntilClaimed(receiver);
        return receiver;
      },
      (error: unknown) => (error instanceof Error ? error : new Error(String(error))),
    );
  }

  /** Renewal timers of sessions accepted but not yet handed out. */
  readonly #unclaimedRenewals = new Map<ServiceBusSessionReceiver, NodeJS.Timeout>();

  /**
   * An accept that completes after its caller stopped waiting holds a session nobody uses yet: its lock is renewed
   * until a caller takes it, so it does not expire meanwhile (which would count a delivery on its messages and keep
   * the session from every receiver for a lock duration).
   */
  #keepUntilClaimed(receiver: ServiceBusSessionReceiver): void {
    if (!this.#renewLocks || this.#closed) return;
    const remaining = receiver.sessionLockedUntilUtc.getTime() - Date.now();
    const timer = setTimeout(
      () => {
        if (!this.#unclaimedRenewals.has(receiver)) return;
        receiver.renewSessionLock().then(
          () => {
            if (this.#unclaimedRenewals.has(receiver)) this.#keepUntilClaimed(receiver);
          },
          () => this.#unclaimedRenewals.delete(receiver),
        );
      },
      Math.max(0, remaining - Math.min(remaining / 2, 10_000)),
    );
    timer.unref();
    this.#unclaimedRenewals.set(receiver, timer);
  }

  #claim(receiver: ServiceBusSessionReceiver): void {
    clearTimeout(this.#unclaimedRenewals.get(receiver));
    this.#unclaimedRenewals.delete(receiver);
  }

  /**
   * The SDK's accept waits up to the client's operation timeout and cannot be cancelled (its abort signal is not
   * passed to the link), so an accept is never abandoned: when the caller's `maxWaitMs` passes first, the accept
   * stays in flight and the next caller for the queue takes it over. At most one accept per waiting caller is open.
   */
  async acceptNextSession(
    queue: string,
    options: { readonly maxWaitMs: number; readonly signal?: AbortSignal },
  ): Promise<QueueSession | null> {
    this.#assertOpen();
    const deadline = Date.now() + Math.max(0, options.maxWaitMs);
    for (;;) {
      if (options.signal?.aborted) return null;
      // One list per queue, created before anyone waits: concurrent callers that each made their own would drop
      // each other's accepts, whose sessions would then stay locked with nobody to take them.
      let unclaimed = this.#unclaimed.get(queue);
      if (!unclaimed) {
        unclaimed = [];
        this.#unclaimed.set(queue, unclaimed);
      }
      const adopted = unclaimed.shift();
      const attempt = adopted ?? this.#startAccept(queue);
      const waitMs = deadline - Date.now();
      const stopWaiting = new AbortController();
      const signals = options.signal ? [stopWaiting.signal, options.signal] : [stopWaiting.signal];
      const outcome = await Promise.race([
        attempt,
        delay(waitMs, AbortSignal.any(signals)).then(() => 'gave-up' as const),
      ]);
      stopWaiting.abort();
      if (outcome === 'gave-up') {
        if (this.#closed) {
          attempt.then((r) => (r instanceof Error ? undefined : r.close().catch(() => {})));
        } else unclaimed.push(attempt);
        return null;
      }
      if (!(outcome instanceof Error)) {
        this.#claim(outcome);
        // A taken-over accept may have held its session unrenewed for a while: renew before handing it out.
        if (adopted && !(await this.#stillHeld(outcome))) {
          if (Date.now() >= deadline) return null;
          continue;
        }
        const session = new ServiceBusQueueSession(outcome, queue, this.#renewLocks, this.#minReceiveWaitMs, (s) =>
          this.#sessions.delete(s),
        );
        this.#sessions.add(session);
        return session;
      }
      // "No session available" is the service's answer to a wait, not a failure.
      const noSession =
        isServiceBusError(outcome) && (outcome.code === 'ServiceTimeout' || outcome.code === 'SessionCannotBeLocked');
      if (!noSession) throw mapServiceBusError(outcome, 'accept next session', queue);
      if (Date.now() >= deadline) return null;
    }
  }

  async #stillHeld(receiver: ServiceBusSessionReceiver): Promise<boolean> {
    if (!receiver.isClosed) {
      try {
        await receiver.renewSessionLock();
        return true;
      } catch {
        // lost meanwhile: close it below and accept again
      }
    }
    await receiver.close().catch(() => {});
    return false;
  }

  /** A short-lived client: the SDK's peek continues from the last peeked sequence number of its connection. */
  async #peek(queue: string, maxMessages: number, deadLetter: boolean): Promise<ReceivedMessage[]> {
    this.#assertOpen();
    if (!Number.isInteger(maxMessages) || maxMessages < 1) {
      throw new UsageError(`Peek needs a whole number of messages ≥ 1; got \`${String(maxMessages)}\`.`);
    }
    const client = this.#clientArgs();
    try {
      const receiver = deadLetter
        ? client.createReceiver(queue, { subQueueType: 'deadLetter' })
        : client.createReceiver(queue);
      const found: ReceivedMessage[] = [];
      while (found.length < maxMessages) {
        const page = await receiver.peekMessages(maxMessages - found.length);
        if (page.length === 0) break;
        found.push(...page.map((m) => toReceived(m, true)));
      }
      return found;
    } catch (error) {
      throw mapServiceBusError(error, deadLetter ? 'peek dead letters' : 'peek', queue);
    } finally {
      await client.close().catch(() => {});
    }
  }

  peek(queue: string, maxMessages: number): Promise<ReceivedMessage[]> {
    return this.#peek(queue, maxMessages, false);
  }

  peekDeadLetters(queue: string, maxMessages: number): Promise<ReceivedMessage[]> {
    return this.#peek(queue, maxMessages, true);
  }

  /**
   * Receives dead-lettered messages (peek-lock), sends a copy of each chosen one to the queue (same message id,
   * session, body and properties, without the dead-letter reason), then completes the original. Others stay locked
   * until the end and are then abandoned, so each is looked at once. A crash between the send and the complete
   * leaves the copy and the original: the message id lets the consumer drop the duplicate.
   */
  async resubmitDeadLetters(queue: string, messageIds?: readonly string[]): Promise<number> {
    this.#assertOpen();
    const wanted = messageIds ? new Set(messageIds) : undefined;
    const receiver = this.#client.createReceiver(queue, { subQueueType: 'deadLetter' });
    const skipped: ServiceBusReceivedMessage[] = [];
    let moved = 0;
    try {
      for (;;) {
        const batch = await receiver.receiveMessages(100, { maxWaitTimeInMs: 1_000 });
        if (batch.length === 0) break;
        const chosen = batch.filter((m) => !wanted || wanted.has(String(m.messageId)));
        skipped.push(...batch.filter((m) => !chosen.includes(m)));
        if (chosen.length === 0) continue;
        await this.send(
          queue,
          chosen.map((m) => ({
            sessionId: m.sessionId ?? '',
            body: m.body,
            messageId: String(m.messageId ?? randomUUID()),
            ...(m.contentType ? { contentType: m.contentType } : {}),
            applicationProperties: Object.fromEntries(
              Object.entries(plainProperties(m.applicationProperties)).filter(([k]) => !DEAD_LETTER_PROPERTIES.has(k)),
            ),
          })),
        );
        for (const message of chosen) await receiver.completeMessage(message);
        moved += chosen.length;
        if (wanted && moved >= wanted.size) break;
      }
      for (const message of skipped) await receiver.abandonMessage(message);
      return moved;
    } catch (error) {
      throw mapServiceBusError(error, 'resubmit dead letters', queue);
    } finally {
      await receiver.close().catch(() => {});
    }
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    for (const timer of this.#unclaimedRenewals.values()) clearTimeout(timer);
    this.#unclaimedRenewals.clear();
    await Promise.all([...this.#sessions].map((s) => s.close().catch(() => {})));
    for (const pending of this.#unclaimed.values()) {
      for (const attempt of pending) {
        void attempt.then((r) => (r instanceof Error ? undefined : r.close().catch(() => {})));
      }
    }
    this.#unclaimed.clear();
    await Promise.all([...this.#senders.values()].map((s) => s.close().catch(() => {})));
    await this.#client.close();
    await this.#acceptClient.close();
  }
}

/**
 * One accepted session. Its lock is renewed at `lockedUntil − min(half the remaining time, 10 s)` for as long as it is
 * open. `abandon` with `redeliverAfterMs`: Service Bus has no delayed abandon, and abandoning at once would let the
 * message come back (to this or another receiver) before the delay. So the session keeps its lock, `receive` returns
 * nothing until the delay has passed, and only then is the message abandoned (delivery count +1) and received
 * again. Closing the session during the delay waits for it, so no other receiver gets the session early.
 */
class ServiceBusQueueSession implements QueueSession {
  readonly sessionId: string;
  readonly #receiver: ServiceBusSessionReceiver;
  readonly #queue: string;
  readonly #onClosed: (session: ServiceBusQueueSession) => void;
  readonly #messages = new Map<ReceivedMessage, ServiceBusReceivedMessage>();
  readonly #renewInBackground: boolean;
  readonly #minReceiveWaitMs: number;
  readonly #delayed: { message: ServiceBusReceivedMessage; until: number }[] = [];
  #renewTimer?: NodeJS.Timeout;
  #lockLost?: FerryError;
  #closing?: Promise<void>;

  constructor(
    receiver: ServiceBusSessionReceiver,
    queue: string,
    renewInBackground: boolean,
    minReceiveWaitMs: number,
    onClosed: (s: ServiceBusQueueSession) => void,
  ) {
    this.#receiver = receiver;
    this.#renewInBackground = renewInBackground;
    this.#minReceiveWaitMs = minReceiveWaitMs;
    this.sessionId = receiver.sessionId;
    this.#queue = queue;
    this.#onClosed = onClosed;
    this.#scheduleRenewal();
  }

  get lockedUntil(): Date {
    return this.#receiver.sessionLockedUntilUtc;
  }

  #scheduleRenewal(): void {
    clearTimeout(this.#renewTimer);
    if (!this.#renewInBackground) return;
    const remaining = this.#receiver.sessionLockedUntilUtc.getTime() - Date.now();
    const renewIn = Math.max(0, remaining - Math.min(remaining / 2, 10_000));
    this.#renewTimer = setTimeout(() => {
      this.#renew().catch(() => {
        // #renew records a lost lock; the next call on this session reports it.
      });
    }, renewIn);
    this.#renewTimer.unref();
  }

  #check(operation: string): void {
    if (this.#lockLost) throw this.#lockLost;
    if (this.#closing) {
      throw new FerryError(
        'service_bus.session_closed',
        `Session \`${this.sessionId}\` of queue \`${this.#queue}\` is closed; ${operation} needs an open session. Accept it again.`,
      );
    }
  }

  #fail(error: unknown, operation: string): FerryError {
    const mapped = mapServiceBusError(error, `${operation} (session \`${this.sessionId}\`)`, this.#queue);
    if (mapped.code === 'service_bus.session_lock_lost') {
      this.#lockLost = mapped;
      clearTimeout(this.#renewTimer);
    }
    return mapped;
  }

  /** Abandons the delayed messages whose time has come; returns how long until the next one, if any. */
  async #releaseDueAbandons(): Promise<number | undefined> {
    const now = Date.now();
    while (this.#delayed.length > 0 && this.#delayed[0]!.until <= now) {
      const { message } = this.#delayed.shift()!;
      try {
        await this.#receiver.abandonMessage(message);
      } catch (error) {
        throw this.#fail(error, 'abandon');
      }
    }
    return this.#delayed.length > 0 ? this.#delayed[0]!.until - now : undefined;
  }

  async receive(maxMessages: number, maxWaitMs: number): Promise<ReceivedMessage[]> {
    this.#check('receive');
    const deadline = Date.now() + Math.max(0, maxWaitMs);
    let blockedFor = await this.#releaseDueAbandons();
    if (blockedFor !== undefined) {
      // A delayed abandon holds the whole session: nothing of it is delivered before the delay has passed.
      if (blockedFor > deadline - Date.now()) {
        await delay(deadline - Date.now());
        return [];
      }
      await delay(blockedFor);
      blockedFor = await this.#releaseDueAbandons();
      if (blockedFor !== undefined) return [];
    }
    try {
      // A receive over the network cannot be answered in no time: the session is called dry only after one round
      // trip had the chance to bring a message (the listener receives from all its sessions at once, so this wait is
      // paid once per micro-batch, not per session).
      const received = await this.#receiver.receiveMessages(maxMessages, {
        maxWaitTimeInMs: Math.max(this.#minReceiveWaitMs, deadline - Date.now()),
      });
      return received.map((message) => {
        const mapped = toReceived(message);
        this.#messages.set(mapped, message);
        return mapped;
      });
    } catch (error) {
      throw this.#fail(error, 'receive');
    }
  }

  #original(message: ReceivedMessage, operation: Settle): ServiceBusReceivedMessage {
    const original = this.#messages.get(message);
    if (!original) {
      throw new UsageError(
        `Message \`${message.messageId}\` was not received by session \`${this.sessionId}\` of queue \`${this.#queue}\`; ${operation} only messages this session returned.`,
      );
    }
    this.#messages.delete(message);
    return original;
  }

  async complete(message: ReceivedMessage): Promise<void> {
    this.#check('complete');
    const original = this.#original(message, 'complete');
    try {
      await this.#receiver.completeMessage(original);
    } catch (error) {
      throw this.#fail(error, 'complete');
    }
  }

  async abandon(message: ReceivedMessage, options?: { readonly redeliverAfterMs?: number }): Promise<void> {
    this.#check('abandon');
    const original = this.#original(message, 'abandon');
    const after = options?.redeliverAfterMs ?? 0;
    if (after > 0) {
      this.#delayed.push({ message: original, until: Date.now() + after });
      this.#delayed.sort((a, b) => a.until - b.until);
      return;
    }
    try {
      await this.#receiver.abandonMessage(original);
    } catch (error) {
      throw this.#fail(error, 'abandon');
    }
  }

  async deadLetter(message: ReceivedMessage, reason: string, description: string): Promise<void> {
    this.#check('dead-letter');
    const original = this.#original(message, 'deadLetter');
    try {
      await this.#receiver.deadLetterMessage(original, {
        deadLetterReason: reason,
        deadLetterErrorDescription: description,
      });
    } catch (error) {
      throw this.#fail(error, 'dead-letter');
    }
  }

  async renewLock(): Promise<Date> {
    this.#check('renew the lock');
    return this.#renew();
  }

  /** Renews without the open check: a closing session keeps its lock while delayed abandons wait. */
  async #renew(): Promise<Date> {
    if (this.#lockLost) throw this.#lockLost;
    try {
      const until = await this.#receiver.renewSessionLock();
      this.#scheduleRenewal();
      return until;
    } catch (error) {
      throw this.#fail(error, 'renew session lock');
    }
  }

  close(): Promise<void> {
    this.#closing ??= (async () => {
      try {
        // Keep the lock until every delayed abandon is due, so the session's order and delays hold.
        while (this.#delayed.length > 0 && !this.#lockLost) {
          const wait = this.#delayed[0]!.until - Date.now();
          await delay(wait);
          const { message } = this.#delayed.shift()!;
          await this.#receiver.abandonMessage(message).catch(() => {});
        }
        // Unsettled messages go back counted, as an abandon: the same on every transport, so a message that keeps
        // a receiver from settling it still reaches the max delivery count. (Service Bus itself would return them
        // uncounted on close: "Message sessions", impact of delivery count.)
        if (!this.#lockLost) {
          for (const original of this.#messages.values()) await this.#receiver.abandonMessage(original).catch(() => {});
        }
        this.#messages.clear();
      } finally {
        clearTimeout(this.#renewTimer);
        await this.#receiver.close().catch(() => {});
        this.#onClosed(this);
      }
    })();
    return this.#closing;
  }
}
