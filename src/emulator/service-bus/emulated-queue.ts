import { randomUUID } from 'node:crypto';
import { type AmqpMessage, lockTokenKey, newLockToken } from './amqp-values.js';

/** A queue the emulator serves, configured at start. */
export interface QueueDefinition {
  readonly name: string;
  /** Session-enabled queue (https://learn.microsoft.com/azure/service-bus-messaging/message-sessions). Default `true`. */
  readonly requiresSession?: boolean;
  /** Peek-lock duration of a message or session lock. Default `60000` (the service's default is 1 minute). */
  readonly lockDurationMs?: number;
  /** Deliveries before the queue dead-letters a message with `MaxDeliveryCountExceeded`. Default `10`. */
  readonly maxDeliveryCount?: number;
}

/** Which part of the queue: the queue itself or its dead-letter sub-queue (`<queue>/$DeadLetterQueue`). */
export type SubQueue = 'active' | 'deadLetter';

/** Anything that can hold a lock: the emulator passes its receiver-link records. */
export type LockHolder = object;

export interface MessageLock {
  readonly token: Buffer;
  lockedUntil: number;
  readonly holder: LockHolder;
  timer?: NodeJS.Timeout;
}

/** One stored message. `message` keeps what the sender sent (properties, application properties, body). */
export interface StoredMessage {
  readonly sequenceNumber: number;
  readonly enqueuedAt: Date;
  readonly sessionId: string | undefined;
  readonly message: AmqpMessage;
  /** Previous delivery attempts (the AMQP header `delivery-count`): 0 on the first delivery. */
  deliveryCount: number;
  state: 'active' | 'deferred' | 'scheduled';
  /** Scheduled messages become visible at this time (ms since the epoch). */
  visibleAt: number;
  subQueue: SubQueue;
  lock?: MessageLock;
  deadLetterSource?: string;
}

export interface SessionEntry {
  readonly id: string;
  holder: LockHolder | null;
  lockedUntil: number;
  state: Buffer | null;
  timer?: NodeJS.Timeout;
}

/** `message_id` when the sender set none: 32 hex characters, as the service assigns. */
function generatedMessageId(): string {
  return randomUUID().replaceAll('-', '');
}

/**
 * The in-memory state of one queue: messages in sequence order (per session for session queues), the dead-letter
 * sub-queue, message locks and session locks. Nothing is persisted; a restart starts empty.
 */
export class EmulatedQueue {
  readonly name: string;
  readonly requiresSession: boolean;
  readonly lockDurationMs: number;
  readonly maxDeliveryCount: number;
  /** Active, deferred and scheduled messages by sequence number; insertion order is sequence order. */
  readonly #messages = new Map<number, StoredMessage>();
  /** The same messages grouped by session id (`''` for messages of a queue without sessions). */
  readonly #bySession = new Map<string, StoredMessage[]>();
  readonly #deadLetters = new Map<number, StoredMessage>();
  readonly #locks = new Map<string, StoredMessage>();
  readonly sessions = new Map<string, SessionEntry>();
  #nextSequenceNumber = 1;

  constructor(definition: QueueDefinition) {
    this.name = definition.name;
    this.requiresSession = definition.requiresSession ?? true;
    this.lockDurationMs = definition.lockDurationMs ?? 60_000;
    this.maxDeliveryCount = definition.maxDeliveryCount ?? 10;
  }

  /** Stores a message sent to the queue; returns it with its sequence number. */
  enqueue(message: AmqpMessage, now: number): StoredMessage {
    if (message.message_id === undefined || message.message_id === null) message.message_id = generatedMessageId();
    const scheduled = message.message_annotations?.['x-opt-scheduled-enqueue-time'];
    const visibleAt = scheduled instanceof Date ? scheduled.getTime() : now;
    const stored: StoredMessage = {
      sequenceNumber: this.#nextSequenceNumber++,
      enqueuedAt: new Date(now),
      sessionId: typeof message.group_id === 'string' ? message.group_id : undefined,
      message,
      deliveryCount: 0,
      state: visibleAt > now ? 'scheduled' : 'active',
      visibleAt,
      subQueue: 'active',
    };
    this.#messages.set(stored.sequenceNumber, stored);
    const key = this.#sessionKey(stored);
    const list = this.#bySession.get(key);
    if (list) list.push(stored);
    else this.#bySession.set(key, [stored]);
    return stored;
  }

  #sessionKey(message: StoredMessage): string {
    return this.requiresSession ? (message.sessionId ?? '') : '';
  }

  /** Makes scheduled messages whose time has come active; returns the earliest time still ahead, if any. */
  activateScheduled(now: number): number | undefined {
    let next: number | undefined;
    for (const message of this.#messages.values()) {
      if (message.state !== 'scheduled') continue;
      if (message.visibleAt <= now) message.state = 'active';
      else next = next === undefined ? message.visibleAt : Math.min(next, message.visibleAt);
    }
    return next;
  }

  /**
   * The next message a receiver may lock: in sequence order, active, not locked. For a session receiver only its
   * session's messages; within a session a message is never passed over, so order holds.
   */
  nextAvailable(subQueue: SubQueue, sessionId: string | undefined): StoredMessage | undefined {
    const candidates =
      subQueue === 'deadLetter'
        ? this.#deadLetters.values()
        : (this.#bySession.get(this.requiresSession ? (sessionId ?? '') : '') ?? []).values();
    for (const message of candidates) {
      if (message.state === 'active' && !message.lock) return message;
    }
    return undefined;
  }

  /** Sessions that have a deliverable message and no live lock, oldest first message first. */
  sessionsWithWork(now: number): string[] {
    const found: { id: string; first: number }[] = [];
    for (const [id, list] of this.#bySession) {
      const session = this.sessions.get(id);
      if (session?.holder && session.lockedUntil > now) continue;
      const first = list.find((m) => m.state === 'active' && !m.lock);
      if (first) found.push({ id, first: first.sequenceNumber });
    }
    return found.sort((a, b) => a.first - b.first).map((s) => s.id);
  }

  session(id: string): SessionEntry {
    let entry = this.sessions.get(id);
    if (!entry) {
      entry = { id, holder: null, lockedUntil: 0, state: null };
      this.sessions.set(id, entry);
    }
    return entry;
  }

  /** Drops a session's entry once nothing refers to it (no holder, no state, no messages), so ids do not pile up. */
  forgetIfIdle(id: string): void {
    const entry = this.sessions.get(id);
    if (entry && !entry.holder && entry.state === null && !this.#bySession.has(id)) {
      clearTimeout(entry.timer);
      this.sessions.delete(id);
    }
  }

  /** Locks a message for a holder until `lockedUntil`; returns the lock token (RFC byte order). */
  lock(message: StoredMessage, holder: LockHolder, lockedUntil: number): MessageLock {
    const lock: MessageLock = { token: newLockToken(), lockedUntil, holder };
    message.lock = lock;
    this.#locks.set(lockTokenKey(lock.token), message);
    return lock;
  }

  /** The locked message for a token, whichever sub-queue it is in. */
  byLockToken(token: Buffer): StoredMessage | undefined {
    return this.#locks.get(lockTokenKey(token));
  }

  #dropLock(message: StoredMessage): void {
    if (!message.lock) return;
    clearTimeout(message.lock.timer);
    this.#locks.delete(lockTokenKey(message.lock.token));
    message.lock = undefined;
  }

  #remove(message: StoredMessage): void {
    this.#dropLock(message);
    if (message.subQueue === 'deadLetter') {
      this.#deadLetters.delete(message.sequenceNumber);
      return;
    }
    this.#messages.delete(message.sequenceNumber);
    const key = this.#sessionKey(message);
    const list = this.#bySession.get(key);
    if (!list) return;
    const at = list.indexOf(message);
    if (at >= 0) list.splice(at, 1);
    if (list.length === 0) this.#bySession.delete(key);
  }

  /** Settles a locked message as processed: it leaves the queue. */
  complete(message: StoredMessage): void {
    this.#remove(message);
  }

  /**
   * Gives a locked message back. `countsAsDelivery` (abandon, lock expiry) raises its delivery count; past the maximum
   * the queue dead-letters it with `MaxDeliveryCountExceeded`
   * (https://learn.microsoft.com/azure/service-bus-messaging/service-bus-dead-letter-queues). Returns what happened.
   */
  release(
    message: StoredMessage,
    countsAsDelivery: boolean,
    propertiesToModify?: Record<string, unknown>,
  ): 'available' | 'dead-lettered' {
    this.#dropLock(message);
    if (propertiesToModify) {
      message.message.application_properties = { ...message.message.application_properties, ...propertiesToModify };
    }
    if (!countsAsDelivery) return 'available';
    message.deliveryCount += 1;
    if (message.subQueue === 'active' && message.deliveryCount >= this.maxDeliveryCount) {
      this.deadLetter(
        message,
        'MaxDeliveryCountExceeded',
        `Message could not be consumed after ${this.maxDeliveryCount} delivery attempts.`,
      );
      return 'dead-lettered';
    }
    return 'available';
  }

  /** Defers a locked message: only `receive-by-sequence-number` reaches it from now on. */
  defer(message: StoredMessage, propertiesToModify?: Record<string, unknown>): void {
    this.release(message, false, propertiesToModify);
    message.deliveryCount += 1;
    message.state = 'deferred';
  }

  /** Moves a message to the dead-letter sub-queue, with the reason and description as application properties. */
  deadLetter(
    message: StoredMessage,
    reason: string | undefined,
    description: string | undefined,
    otherProperties: Record<string, unknown> = {},
  ): void {
    this.#remove(message);
    const applicationProperties: Record<string, unknown> = {
      ...message.message.application_properties,
      ...otherProperties,
    };
    if (reason !== undefined && reason !== null) applicationProperties.DeadLetterReason = reason;
    if (description !== undefined && description !== null)
      applicationProperties.DeadLetterErrorDescription = description;
    message.message.application_properties = applicationProperties;
    message.subQueue = 'deadLetter';
    message.state = 'active';
    message.deliveryCount = 0;
    message.deadLetterSource = this.name;
    this.#deadLetters.set(message.sequenceNumber, message);
  }

  /** Messages from a sequence number on, for peek: the queue's (optionally one session's) or the dead letters. */
  peek(subQueue: SubQueue, fromSequenceNumber: number, count: number, sessionId?: string): StoredMessage[] {
    const source = subQueue === 'deadLetter' ? this.#deadLetters.values() : this.#messages.values();
    const found: StoredMessage[] = [];
    for (const message of source) {
      if (found.length >= count) break;
      if (message.sequenceNumber < fromSequenceNumber) continue;
      if (sessionId !== undefined && message.sessionId !== sessionId) continue;
      found.push(message);
    }
    return found;
  }

  /** A message by sequence number in the queue (not the dead letters). */
  bySequenceNumber(sequenceNumber: number): StoredMessage | undefined {
    return this.#messages.get(sequenceNumber);
  }

  /** Removes a scheduled message (`cancel-scheduled-message`); false when there is none with that number. */
  cancelScheduled(sequenceNumber: number): boolean {
    const message = this.#messages.get(sequenceNumber);
    if (message?.state !== 'scheduled') return false;
    this.#remove(message);
    return true;
  }

  /** Every locked message of a holder (a closing or expiring receiver link). */
  lockedBy(holder: LockHolder): StoredMessage[] {
    return [...this.#locks.values()].filter((m) => m.lock?.holder === holder);
  }
}
