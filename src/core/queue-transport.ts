/**
 * The session-queue interface of the event-driven path. Two transports implement it: the embedded queue in the
 * state store (the default, `src/connectors/queue/embedded-queue-transport.ts`) and Azure Service Bus
 * (`src/connectors/queue/service-bus-transport.ts`, through `@azure/service-bus`). The adapter that maps messages to
 * Dataverse depends only on this file, so one contract suite (`test/queue/transport-contract.ts`) holds both.
 *
 * The semantics follow Service Bus session queues (https://learn.microsoft.com/azure/service-bus-messaging/message-sessions):
 * a session is locked by one receiver at a time; within a session messages are delivered in the order they were
 * enqueued; peek-lock settlement is complete / abandon / dead-letter; a message abandoned more than the queue's
 * maximum delivery count is dead-lettered by the queue with reason `MaxDeliveryCountExceeded`
 * (https://learn.microsoft.com/azure/service-bus-messaging/service-bus-dead-letter-queues).
 */

/** A message to enqueue. `sessionId` is the record's id (one session per record keeps its changes in order). */
export interface OutgoingMessage {
  readonly sessionId: string;
  /** JSON-serialisable body. */
  readonly body: unknown;
  /** Default: a new GUID. */
  readonly messageId?: string;
  readonly contentType?: string;
  readonly applicationProperties?: Readonly<Record<string, string | number | boolean>>;
}

/** A message as a receiver (or a peek) sees it. */
export interface ReceivedMessage {
  readonly messageId: string;
  readonly sessionId: string;
  readonly body: unknown;
  /** 1 on the first delivery; grows with every abandon or lock loss. */
  readonly deliveryCount: number;
  /** Grows with every message enqueued on the queue; decides the order inside a session. */
  readonly sequenceNumber: number;
  readonly enqueuedTimeUtc: Date;
  readonly applicationProperties: Readonly<Record<string, string | number | boolean>>;
  /** Set on messages read from the dead-letter sub-queue. */
  readonly deadLetterReason?: string;
  readonly deadLetterErrorDescription?: string;
}

/** A session locked by this receiver until it is closed or its lock expires. */
export interface QueueSession {
  readonly sessionId: string;
  /** When the session lock expires unless renewed. */
  readonly lockedUntil: Date;
  /**
   * Up to `maxMessages` of the session's next messages, in order; waits at most `maxWaitMs` for the first one and
   * returns `[]` when the session has none.
   */
  receive(maxMessages: number, maxWaitMs: number): Promise<ReceivedMessage[]>;
  complete(message: ReceivedMessage): Promise<void>;
  /**
   * Gives the message back. Its delivery count grows; once past the queue's maximum it is dead-lettered with
   * `MaxDeliveryCountExceeded`. With `redeliverAfterMs` it is not delivered again (nor any later message of its
   * session) before that delay has passed.
   */
  abandon(message: ReceivedMessage, options?: { readonly redeliverAfterMs?: number }): Promise<void>;
  /** Moves the message to the dead-letter sub-queue with a reason code and a description. */
  deadLetter(message: ReceivedMessage, reason: string, description: string): Promise<void>;
  /** Extends the session lock by the queue's lock duration; returns the new expiry. */
  renewLock(): Promise<Date>;
  /** Releases the session lock; unsettled messages become available again. */
  close(): Promise<void>;
}

/** One session-queue service. */
export interface QueueTransport {
  /** `embedded` or `service-bus`, for logs and reports. */
  readonly kind: string;
  send(queue: string, messages: readonly OutgoingMessage[]): Promise<void>;
  /**
   * Locks the next session that has messages and no other holder; `null` when none arrives within `maxWaitMs` or
   * the signal is aborted.
   */
  acceptNextSession(
    queue: string,
    options: { readonly maxWaitMs: number; readonly signal?: AbortSignal },
  ): Promise<QueueSession | null>;
  /** Active messages without locking them, oldest first. */
  peek(queue: string, maxMessages: number): Promise<ReceivedMessage[]>;
  /** Messages in the dead-letter sub-queue without removing them, oldest first. */
  peekDeadLetters(queue: string, maxMessages: number): Promise<ReceivedMessage[]>;
  /**
   * Moves dead-lettered messages back to the queue (all, or those whose `messageId` is listed) and returns how many
   * were moved. Each keeps its session id, body and properties.
   */
  resubmitDeadLetters(queue: string, messageIds?: readonly string[]): Promise<number>;
  close(): Promise<void>;
}
