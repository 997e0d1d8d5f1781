import type { AddressInfo, Server } from 'node:net';
import rhea from 'rhea';
import {
  type AmqpMessage,
  amqpFrames,
  amqpMessage,
  amqpTypes,
  BATCH_MESSAGE_FORMAT,
  deliveryTagFor,
  sessionFilterValue,
  ticksLong,
} from './amqp-values.js';
import { EmulatedQueue, type QueueDefinition, type StoredMessage, type SubQueue } from './emulated-queue.js';
import {
  handleManagementRequest,
  type ManagementHost,
  type ManagementResponse,
  sessionRequiredText,
} from './management-node.js';

export type { QueueDefinition } from './emulated-queue.js';

/** Options of {@link startServiceBusEmulator}. */
export interface ServiceBusEmulatorOptions {
  /** `0` (the default) picks a free port. */
  readonly port?: number;
  /** Default `127.0.0.1`. */
  readonly host?: string;
  readonly queues: readonly QueueDefinition[];
}

/** A running emulator. */
export interface ServiceBusEmulator {
  readonly host: string;
  readonly port: number;
  /** `Endpoint=sb://127.0.0.1:PORT;...;UseDevelopmentEmulator=true;`: plain AMQP, no TLS. */
  readonly connectionString: string;
  close(): Promise<void>;
}

/** Largest message the emulator accepts (the Standard tier's 256 KB, as the Service Bus emulator). */
const MAX_MESSAGE_SIZE = 262_144;
const SESSION_FILTER = 'com.microsoft:session-filter';
/** The service caps a next-available-session wait at about 65 s when the client asks for none. */
const DEFAULT_ACCEPT_TIMEOUT_MS = 65_000;

// Minimal shapes of the rhea objects used here (rhea's typings leave out the endpoint internals).
interface Terminus {
  address?: string;
  filter?: Record<string, unknown> | null;
}
interface RheaConnection {
  readonly options: { id?: string };
  close(error?: unknown): void;
}
interface RheaSession {
  output(frame: unknown): void;
  incoming: { next_transfer_id: number; window: number };
  outgoing: { next_transfer_id: number; window: number; next_pending_delivery: number };
}
interface RheaLink {
  readonly name: string;
  readonly connection: RheaConnection;
  readonly session: RheaSession;
  readonly source?: Terminus | null;
  readonly target?: Terminus | null;
  readonly properties?: Record<string, unknown> | null;
  readonly snd_settle_mode?: number;
  readonly rcv_settle_mode?: number;
  readonly local: { handle: number; attach: Record<string, unknown> };
  readonly state: { local_open: boolean; open_requests: number };
  set_source(fields: Terminus): void;
  set_target(fields: Terminus): void;
  open(): void;
  close(error?: { condition: string; description: string }): void;
  is_open(): boolean;
  is_closed(): boolean;
}
interface RheaDelivery {
  readonly id: number;
  readonly link: RheaLink;
  remote_settled: boolean;
  readonly remote_state?: {
    undeliverable_here?: boolean;
    message_annotations?: Record<string, unknown>;
    error?: { condition?: string; description?: string; info?: Record<string, unknown> };
  };
  update(settled: boolean, state?: unknown): void;
  accept(): void;
  reject(error: { condition: string; description: string }): void;
}
interface RheaSender extends RheaLink {
  credit: number;
  delivery_count: number;
  send(message: AmqpMessage, tag?: Buffer, format?: number): RheaDelivery;
  set_drained(drained: boolean): void;
}
interface RheaContext {
  readonly connection: RheaConnection;
  readonly sender?: RheaSender;
  readonly receiver?: RheaLink;
  readonly delivery?: RheaDelivery;
  readonly message?: AmqpMessage | Buffer;
  readonly format?: number;
}

interface LinkError {
  readonly condition: string;
  readonly description: string;
}

/** A client receiver on a queue or its dead-letter sub-queue: the emulator's sending end. */
interface ReceiverLink {
  readonly sender: RheaSender;
  readonly queue: EmulatedQueue;
  readonly subQueue: SubQueue;
  /** The granted session (session receivers only). */
  sessionId?: string;
  /** Next-available receiver whose attach is held until a session has messages. */
  waiting?: { timer: NodeJS.Timeout };
  readonly receiveAndDelete: boolean;
  readonly deliveries: Map<RheaDelivery, StoredMessage>;
  /** A drain arrived while in-flight transfers had used up the credit: write the drained flow after them. */
  drainPending: boolean;
  closed: boolean;
}

function notFound(host: string, entity: string): LinkError {
  return {
    condition: 'amqp:not-found',
    description: `The messaging entity 'sb://${host}/${entity}' could not be found. To know more visit https://aka.ms/sbResourceMgrExceptions.`,
  };
}

/** Answers an attach and detaches at once with an error, as the service refuses a link. */
function refuseLink(link: RheaLink, error: LinkError): void {
  link.local.attach.source = null;
  link.local.attach.target = null;
  if (!link.is_open()) link.open();
  link.close(error);
}

/** Undoes rhea's automatic attach answer so the attach can be answered later (grant or timeout). */
function holdAttach(link: RheaLink): void {
  link.state.local_open = false;
  link.state.open_requests -= 1;
}

/** Splits `queue`, `queue/$DeadLetterQueue`, `.../$management` addresses. */
function parseAddress(address: string): { entity: string; subQueue: SubQueue; management: boolean } {
  let rest = address;
  const management = rest.toLowerCase().endsWith('/$management');
  if (management) rest = rest.slice(0, -'/$management'.length);
  const deadLetter = rest.toLowerCase().endsWith('/$deadletterqueue');
  if (deadLetter) rest = rest.slice(0, -'/$deadletterqueue'.length);
  return { entity: rest, subQueue: deadLetter ? 'deadLetter' : 'active', management };
}

/** Checks a CBS `put-token` (https://docs.oasis-open.org/amqp/amqp-cbs/v1.0/amqp-cbs-v1.0.html). */
function checkToken(type: unknown, token: unknown, audience: unknown, nowMs: number): string | undefined {
  if (typeof token !== 'string' || token === '') return 'The token is missing.';
  if (type === 'servicebus.windows.net:sastoken') {
    if (!token.startsWith('SharedAccessSignature ')) return 'The token is not a SharedAccessSignature.';
    const fields = new URLSearchParams(token.slice('SharedAccessSignature '.length));
    const expiry = Number(fields.get('se'));
    if (!fields.get('sr') || !fields.get('sig') || !Number.isFinite(expiry)) {
      return 'The SharedAccessSignature lacks sr, sig or se.';
    }
    if (expiry * 1000 <= nowMs) return `The SharedAccessSignature expired at ${new Date(expiry * 1000).toISOString()}.`;
    if (typeof audience !== 'string' || !audience.startsWith(decodeURIComponent(fields.get('sr')!))) {
      return `The token's audience does not cover '${String(audience)}'.`;
    }
    return undefined;
  }
  if (type === 'jwt') {
    const parts = token.split('.');
    if (parts.length !== 3) return 'The token is not a JWT (header.payload.signature).';
    try {
      const payload = JSON.parse(Buffer.from(parts[1]!, 'base64url').toString('utf8')) as { exp?: unknown };
      if (typeof payload.exp === 'number' && payload.exp * 1000 <= nowMs) return 'The JWT has expired.';
    } catch {
      return 'The JWT payload is not JSON.';
    }
    return undefined;
  }
  return `Token type '${String(type)}' is not supported; use servicebus.windows.net:sastoken or jwt.`;
}

/**
 * The namespace the emulator serves: queues, receiver links, the session locks they hold, the `$cbs` and
 * `$management` nodes. Everything is in memory.
 */
class EmulatedNamespace implements ManagementHost {
  readonly #queues = new Map<string, EmulatedQueue>();
  readonly #receivers = new Set<ReceiverLink>();
  readonly #bySender = new Map<RheaSender, ReceiverLink>();
  /** Reply links per connection, by link name and by target address (CBS replies are routed by name). */
  readonly #replyLinks = new Map<RheaConnection, Map<string, RheaSender>>();
  readonly #scheduleTimers = new Map<EmulatedQueue, NodeJS.Timeout>();
  host = '127.0.0.1';

  constructor(queues: readonly QueueDefinition[]) {
    for (const definition of queues) {
      const key = definition.name.toLowerCase();
      if (this.#queues.has(key)) throw new Error(`Queue \`${definition.name}\` is configured twice; name it once.`);
      this.#queues.set(key, new EmulatedQueue(definition));
    }
  }

  now(): number {
    return Date.now();
  }

  queue(entity: string): EmulatedQueue | undefined {
    return this.#queues.get(entity.toLowerCase());
  }

  // ---- link attach ------------------------------------------------------------------------------------------------

  /** A client receiver attached: `$cbs` or `$management` replies, or a queue / dead-letter receiver. */
  onSenderOpen(sender: RheaSender): void {
    const address = sender.source?.address ?? '';
    sender.local.attach.max_message_size = MAX_MESSAGE_SIZE;
    sender.local.attach.snd_settle_mode = sender.snd_settle_mode;
    sender.local.attach.rcv_settle_mode = sender.rcv_settle_mode;
    if (address === '$cbs' || parseAddress(address).management) {
      if (address !== '$cbs' && !this.queue(parseAddress(address).entity)) {
        refuseLink(sender, notFound(this.host, address));
        return;
      }
      sender.set_source({ address });
      sender.set_target({ address: sender.target?.address });
      let routes = this.#replyLinks.get(sender.connection);
      if (!routes) {
        routes = new Map();
        this.#replyLinks.set(sender.connection, routes);
      }
      routes.set(sender.name, sender);
      if (sender.target?.address) routes.set(sender.target.address, sender);
      return;
    }
    const { entity, subQueue } = parseAddress(address);
    const queue = this.queue(entity);
    if (!queue) {
      refuseLink(sender, notFound(this.host, address));
      return;
    }
    const filter = sender.source?.filter ?? undefined;
    const wantsSession = subQueue === 'active' && filter !== undefined && filter !== null && SESSION_FILTER in filter;
    if (subQueue === 'active' && queue.requiresSession !== wantsSession) {
      refuseLink(sender, {
        condition: 'amqp:not-allowed',
        description: queue.requiresSession
          ? `It is not possible for an entity that requires sessions ('${queue.name}') to create a non-sessionful message receiver. Accept a session instead.`
          : `It is not possible for an entity that does not require sessions ('${queue.name}') to create a sessionful message receiver.`,
      });
      return;
    }
    const link: ReceiverLink = {
      sender,
      queue,
      subQueue,
      receiveAndDelete: sender.snd_settle_mode === 1,
      deliveries: new Map(),
      drainPending: false,
      closed: false,
    };
    sender.set_target({ address: sender.target?.address });
    if (!wantsSession) {
      sender.set_source({ address });
      this.#addReceiver(link);
      return;
    }
    const requested = sessionFilterValue(filter?.[SESSION_FILTER]);
    const now = this.now();
    if (requested !== null) {
      const session = queue.session(requested);
      if (session.holder && session.lockedUntil > now) {
        refuseLink(sender, {
          condition: 'com.microsoft:session-cannot-be-locked',
          description: `The requested session '${requested}' cannot be accepted. It may be locked by another receiver.`,
        });
        return;
      }
      this.#grantSession(link, requested);
      return;
    }
    const free = queue.sessionsWithWork(now)[0];
    if (free !== undefined) {
      this.#grantSession(link, free);
      return;
    }
    // No session has messages: hold the attach, as the service does, until one does or the client's timeout passes.
    holdAttach(sender);
    const asked = Number(sender.properties?.['com.microsoft:timeout']);
    const waitMs =
      Number.isFinite(asked) && asked > 0 ? Math.min(asked, DEFAULT_ACCEPT_TIMEOUT_MS) : DEFAULT_ACCEPT_TIMEOUT_MS;
    link.waiting = {
      timer: setTimeout(() => {
        if (!link.waiting || link.closed) return;
        link.waiting = undefined;
        link.closed = true;
        this.#receivers.delete(link);
        this.#bySender.delete(sender);
        refuseLink(sender, {
          condition: 'com.microsoft:timeout',
          description: `No session of '${queue.name}' became available within ${waitMs} ms.`,
        });
      }, waitMs),
    };
    this.#receivers.add(link);
    this.#bySender.set(sender, link);
  }

  #addReceiver(link: ReceiverLink): void {
    this.#receivers.add(link);
    this.#bySender.set(link.sender, link);
  }

  /** Locks `sessionId` for the link and answers its attach with the session filter and the lock's expiry. */
  #grantSession(link: ReceiverLink, sessionId: string): void {
    const { queue, sender } = link;
    const session = queue.session(sessionId);
    session.holder = link;
    link.sessionId = sessionId;
    this.#setSessionLock(queue, sessionId, this.now() + queue.lockDurationMs);
    // The filter echo must be a plain string: the SDK compares it with what it asked for and learns a
    // next-available session's id from it only.
    sender.set_source({ address: sender.source?.address, filter: { [SESSION_FILTER]: sessionId } });
    sender.local.attach.properties = { 'com.microsoft:locked-until-utc': ticksLong(session.lockedUntil) };
    if (link.waiting) {
      clearTimeout(link.waiting.timer);
      link.waiting = undefined;
      sender.open();
    } else {
      this.#addReceiver(link);
    }
    this.pumpLink(link);
  }

  #setSessionLock(queue: EmulatedQueue, sessionId: string, lockedUntil: number): void {
    const session = queue.session(sessionId);
    session.lockedUntil = lockedUntil;
    for (const message of queue.lockedBy(session.holder ?? {})) {
      if (message.lock) message.lock.lockedUntil = lockedUntil;
    }
    clearTimeout(session.timer);
    session.timer = setTimeout(() => this.#sessionLockExpired(queue, sessionId), Math.max(0, lockedUntil - this.now()));
    session.timer.unref();
  }

  #sessionLockExpired(queue: EmulatedQueue, sessionId: string): void {
    const session = queue.session(sessionId);
    const link = session.holder as ReceiverLink | null;
    if (!link || session.lockedUntil > this.now()) return;
    // Lock expiry counts as a delivery for the messages the receiver held (message sessions: "Impact of delivery count").
    this.#closeReceiver(link, true, {
      condition: 'com.microsoft:session-lock-lost',
      description: `The session lock has expired on the session '${sessionId}' of '${queue.name}'. Accept the session again.`,
    });
  }

  /** A client sender attached: `$cbs` / `$management` requests, or messages for a queue. */
  onReceiverOpen(receiver: RheaLink): void {
    const address = receiver.target?.address ?? '';
    receiver.local.attach.max_message_size = MAX_MESSAGE_SIZE;
    if (address !== '$cbs') {
      const { entity, subQueue, management } = parseAddress(address);
      if (!this.queue(entity)) {
        refuseLink(receiver, notFound(this.host, address));
        return;
      }
      if (!management && subQueue === 'deadLetter') {
        refuseLink(receiver, {
          condition: 'amqp:not-allowed',
          description: `Messages cannot be sent to the dead-letter sub-queue '${address}'; send them to '${entity}'.`,
        });
        return;
      }
    }
    receiver.set_target({ address });
    receiver.set_source({ address: receiver.source?.address });
  }

  // ---- incoming messages ------------------------------------------------------------------------------------------

  onMessage(context: RheaContext): void {
    const receiver = context.receiver!;
    const delivery = context.delivery!;
    const address = receiver.target?.address ?? '';
    if (address === '$cbs') {
      delivery.accept();
      this.#answerCbs(context.connection, context.message as AmqpMessage);
      return;
    }
    const { entity, subQueue, management } = parseAddress(address);
    const queue = this.queue(entity)!;
    if (management) {
      delivery.accept();
      this.#answerManagement(context.connection, queue, subQueue, context.message as AmqpMessage);
      return;
    }
    const messages =
      context.format === BATCH_MESSAGE_FORMAT
        ? batchContents(amqpMessage.decode(context.message as Buffer))
        : [context.message as AmqpMessage];
    if (queue.requiresSession && messages.some((m) => typeof m.group_id !== 'string' || m.group_id === '')) {
      delivery.reject({ condition: 'amqp:not-allowed', description: sessionRequiredText(queue) });
      return;
    }
    const now = this.now();
    for (const message of messages) queue.enqueue(message, now);
    delivery.accept();
    this.pump(queue);
  }

  #reply(connection: RheaConnection, request: AmqpMessage, response: AmqpMessage): void {
    const replyTo = typeof request.reply_to === 'string' ? request.reply_to : '';
    const link = this.#replyLinks.get(connection)?.get(replyTo);
    if (!link || link.is_closed()) return; // nobody to answer: the client times out, as with the service
    link.send({ ...response, correlation_id: request.message_id });
  }

  #answerCbs(connection: RheaConnection, request: AmqpMessage): void {
    const props = request.application_properties ?? {};
    if (props.operation !== 'put-token') {
      this.#reply(connection, request, {
        application_properties: {
          'status-code': amqpTypes.wrap_int(400),
          'status-description': `Unknown CBS operation '${String(props.operation)}'; only put-token is served.`,
        },
      });
      return;
    }
    const problem = checkToken(props.type, request.body, props.name, this.now());
    this.#reply(connection, request, {
      application_properties: problem
        ? {
            'status-code': amqpTypes.wrap_int(401),
            'status-description': problem,
            'error-condition': 'com.microsoft:auth-failed',
          }
        : { 'status-code': amqpTypes.wrap_int(202), 'status-description': 'Accepted' },
    });
  }

  #answerManagement(connection: RheaConnection, queue: EmulatedQueue, subQueue: SubQueue, request: AmqpMessage): void {
    let response: ManagementResponse;
    try {
      response = handleManagementRequest(this, queue, subQueue, request);
    } catch (error) {
      // A request the emulator cannot read still gets an answer, as the service's 500 would be.
      response = {
        statusCode: 500,
        errorCondition: 'amqp:internal-error',
        description: `The emulator failed on this request: ${error instanceof Error ? error.message : String(error)}`,
      };
    }
    const applicationProperties: Record<string, unknown> = {
      statusCode: amqpTypes.wrap_int(response.statusCode),
      statusDescription: response.description,
    };
    if (response.errorCondition) applicationProperties.errorCondition = response.errorCondition;
    this.#reply(connection, request, {
      application_properties: applicationProperties,
      body: amqpTypes.wrap_map(response.body ?? {}),
    });
  }

  // ---- delivery -----------------------------------------------------------------------------------------------------

  /** Delivers available messages of a queue to every receiver with credit, and grants held next-session attaches. */
  pump(queue: EmulatedQueue): void {
    const now = this.now();
    const nextDue = queue.activateScheduled(now);
    if (nextDue !== undefined) this.#scheduleWake(queue, nextDue);
    for (const link of [...this.#receivers]) {
      if (link.queue !== queue || link.closed) continue;
      if (link.waiting) {
        const free = queue.sessionsWithWork(now)[0];
        if (free !== undefined) this.#grantSession(link, free);
        continue;
      }
      this.pumpLink(link);
    }
  }

  #scheduleWake(queue: EmulatedQueue, at: number): void {
    clearTimeout(this.#scheduleTimers.get(queue));
    const timer = setTimeout(() => this.pump(queue), Math.max(0, at - this.now()));
    timer.unref();
    this.#scheduleTimers.set(queue, timer);
  }

  /** Credit the link has beyond the transfers it was already given (rhea counts them down on its next tick). */
  #freeCredit(link: ReceiverLink): number {
    const nextPending = link.sender.session.outgoing.next_pending_delivery;
    let unsent = 0;
    for (const delivery of link.deliveries.keys()) if (delivery.id >= nextPending) unsent += 1;
    return link.sender.credit - unsent;
  }

  pumpLink(link: ReceiverLink): void {
    if (link.closed || link.waiting || !link.sender.is_open()) return;
    const { queue, sender } = link;
    let credit = this.#freeCredit(link);
    while (credit > 0) {
      const message = queue.nextAvailable(link.subQueue, link.sessionId);
      if (!message) break;
      const lockedUntil =
        link.sessionId !== undefined ? queue.session(link.sessionId).lockedUntil : this.now() + queue.lockDurationMs;
      const lock = queue.lock(message, link, lockedUntil);
      const delivery = sender.send(this.#wireMessage(message, lockedUntil), deliveryTagFor(lock.token));
      if (link.receiveAndDelete) {
        queue.complete(message);
      } else {
        link.deliveries.set(delivery, message);
        if (link.sessionId === undefined) this.#armMessageLock(queue, message);
      }
      credit -= 1;
    }
  }

  #armMessageLock(queue: EmulatedQueue, message: StoredMessage): void {
    const lock = message.lock;
    if (!lock) return;
    clearTimeout(lock.timer);
    lock.timer = setTimeout(
      () => {
        if (message.lock !== lock || lock.lockedUntil > this.now()) return;
        queue.release(message, true);
        this.pump(queue);
      },
      Math.max(0, lock.lockedUntil - this.now()),
    );
    lock.timer.unref();
  }

  /** The message as delivered: the sender's sections plus the broker's header and annotations. */
  #wireMessage(stored: StoredMessage, lockedUntil?: number): AmqpMessage {
    const annotations: Record<string, unknown> = {
      ...stored.message.message_annotations,
      'x-opt-sequence-number': amqpTypes.wrap_long(stored.sequenceNumber),
      'x-opt-enqueued-time': stored.enqueuedAt,
      'x-opt-message-state': amqpTypes.wrap_int(stored.state === 'deferred' ? 1 : stored.state === 'scheduled' ? 2 : 0),
    };
    if (lockedUntil !== undefined) annotations['x-opt-locked-until'] = new Date(lockedUntil);
    if (stored.deadLetterSource) annotations['x-opt-deadletter-source'] = stored.deadLetterSource;
    return { ...stored.message, delivery_count: stored.deliveryCount, message_annotations: annotations };
  }

  encode(message: StoredMessage): Buffer {
    return amqpMessage.encode(this.#wireMessage(message, message.lock?.lockedUntil));
  }

  onDraining(sender: RheaSender): void {
    const link = this.#bySender.get(sender);
    if (!link) return;
    this.pumpLink(link);
    if (this.#freeCredit(link) > 0) {
      sender.set_drained(true);
      return;
    }
    // In-flight transfers used up the credit: rhea writes no drain flow at zero credit, but the SDK waits for one
    // (without it, it closes the receiver and the session is lost). Write it once the transfers are out.
    link.drainPending = true;
    setImmediate(() => {
      if (!link.drainPending || link.closed || !sender.is_open()) return;
      link.drainPending = false;
      const s = sender.session;
      s.output(
        amqpFrames.flow({
          next_incoming_id: s.incoming.next_transfer_id >>> 0,
          incoming_window: s.incoming.window,
          next_outgoing_id: s.outgoing.next_transfer_id >>> 0,
          outgoing_window: s.outgoing.window,
          handle: sender.local.handle,
          delivery_count: sender.delivery_count,
          link_credit: 0,
          drain: true,
        }),
      );
    });
  }

  onFlow(sender: RheaSender): void {
    const link = this.#bySender.get(sender);
    if (link) this.pumpLink(link);
  }

  // ---- settlement -------------------------------------------------------------------------------------------------

  onOutcome(kind: 'accepted' | 'rejected' | 'modified' | 'released', context: RheaContext): void {
    const delivery = context.delivery!;
    const link = this.#bySender.get(context.sender!);
    const settle = (error?: LinkError) => {
      delivery.update(true, error ? amqpMessage.rejected({ error }).described() : amqpMessage.accepted().described());
      // The client settles in mode `second` without a further frame: mark it so rhea frees the delivery slot.
      delivery.remote_settled = true;
    };
    if (kind === 'released' && !link) return;
    const message = link?.deliveries.get(delivery);
    if (!link || !message) {
      settle();
      return;
    }
    link.deliveries.delete(delivery);
    const { queue } = link;
    if (message.lock?.holder !== link) {
      settle(
        link.sessionId !== undefined
          ? {
              condition: 'com.microsoft:session-lock-lost',
              description: `The session lock was lost on '${queue.name}'. Accept the session again.`,
            }
          : {
              condition: 'com.microsoft:message-lock-lost',
              description: `The lock supplied is invalid: it expired, or the message was already removed from '${queue.name}'.`,
            },
      );
      return;
    }
    const state = delivery.remote_state;
    if (kind === 'accepted') {
      queue.complete(message);
    } else if (kind === 'rejected') {
      const info = { ...(state?.error?.info ?? {}) };
      const reason = info.DeadLetterReason;
      const description = info.DeadLetterErrorDescription;
      delete info.DeadLetterReason;
      delete info.DeadLetterErrorDescription;
      for (const key of Object.keys(info)) if (info[key] === null || info[key] === undefined) delete info[key];
      queue.deadLetter(
        message,
        typeof reason === 'string' ? reason : undefined,
        typeof description === 'string' ? description : undefined,
        info,
      );
    } else if (kind === 'modified' && state?.undeliverable_here) {
      queue.defer(message, state.message_annotations ?? undefined);
    } else if (kind === 'modified') {
      queue.release(message, true, state?.message_annotations ?? undefined);
    } else {
      queue.release(message, false);
    }
    settle();
    this.pump(queue);
  }

  // ---- locks --------------------------------------------------------------------------------------------------------

  heldSession(queue: EmulatedQueue, sessionId: string, linkName: string | undefined) {
    const session = queue.sessions.get(sessionId);
    const holder = session?.holder as ReceiverLink | null | undefined;
    if (!session || !holder || holder.closed || session.lockedUntil <= this.now()) return undefined;
    if (linkName !== undefined && holder.sender.name !== linkName) return undefined;
    return session;
  }

  renewSessionLock(queue: EmulatedQueue, sessionId: string): number {
    const lockedUntil = this.now() + queue.lockDurationMs;
    this.#setSessionLock(queue, sessionId, lockedUntil);
    return lockedUntil;
  }

  renewMessageLock(queue: EmulatedQueue, message: StoredMessage): number {
    const lockedUntil = this.now() + queue.lockDurationMs;
    if (message.lock) {
      message.lock.lockedUntil = lockedUntil;
      this.#armMessageLock(queue, message);
    }
    return lockedUntil;
  }

  lockDeferred(queue: EmulatedQueue, message: StoredMessage): Buffer {
    const holder = message.sessionId !== undefined ? queue.sessions.get(message.sessionId)?.holder : undefined;
    const lock = queue.lock(message, holder ?? {}, this.now() + queue.lockDurationMs);
    if (!holder) this.#armMessageLock(queue, message);
    return lock.token;
  }

  // ---- closing ------------------------------------------------------------------------------------------------------

  /** The client detached a receiver: release its session lock; unsettled messages return without a count. */
  onSenderClose(sender: RheaSender): void {
    const link = this.#bySender.get(sender);
    if (link) this.#closeReceiver(link, false);
  }

  #closeReceiver(link: ReceiverLink, countsAsDelivery: boolean, error?: LinkError): void {
    if (link.closed) return;
    link.closed = true;
    if (link.waiting) clearTimeout(link.waiting.timer);
    this.#receivers.delete(link);
    this.#bySender.delete(link.sender);
    const { queue } = link;
    for (const message of queue.lockedBy(link)) queue.release(message, countsAsDelivery);
    link.deliveries.clear();
    if (link.sessionId !== undefined) {
      const session = queue.session(link.sessionId);
      if (session.holder === link) {
        session.holder = null;
        session.lockedUntil = 0;
        clearTimeout(session.timer);
      }
      queue.forgetIfIdle(link.sessionId);
    }
    if (error && !link.sender.is_closed()) link.sender.close(error);
    this.pump(queue);
  }

  onDisconnected(connection: RheaConnection): void {
    this.#replyLinks.delete(connection);
    for (const link of [...this.#receivers]) {
      if (link.sender.connection === connection) this.#closeReceiver(link, false);
    }
  }

  shutdown(): void {
    for (const link of [...this.#receivers]) this.#closeReceiver(link, false);
    for (const timer of this.#scheduleTimers.values()) clearTimeout(timer);
    for (const queue of this.#queues.values()) {
      for (const session of queue.sessions.values()) clearTimeout(session.timer);
    }
  }
}

/** The inner messages of a batch: each data section of the envelope is one encoded message. */
function batchContents(envelope: AmqpMessage): AmqpMessage[] {
  const body = envelope.body as { multiple?: boolean; content?: Buffer | Buffer[] } | undefined;
  if (!body?.content) return [];
  const parts = body.multiple ? (body.content as Buffer[]) : [body.content as Buffer];
  return parts.map((part) => amqpMessage.decode(part));
}

/**
 * Starts a local emulator of the Service Bus queue surface `@azure/service-bus` uses, over plain AMQP 1.0 on
 * loopback (SASL ANONYMOUS + CBS, as the Service Bus emulator): senders and batches, session receivers, peek-lock
 * settlement, the dead-letter sub-queue and the `$management` operations. State is in memory.
 *
 * ```ts
 * const emulator = await startServiceBusEmulator({ queues: [{ name: 'inbound', lockDurationMs: 30_000 }] });
 * const client = new ServiceBusClient(emulator.connectionString);
 * ```
 */
export async function startServiceBusEmulator(options: ServiceBusEmulatorOptions): Promise<ServiceBusEmulator> {
  const host = options.host ?? '127.0.0.1';
  const namespace = new EmulatedNamespace(options.queues);
  const container = rhea.create_container({ id: 'ferry-service-bus-emulator' });
  const on = (event: string, handler: (context: RheaContext) => void) => container.on(event as never, handler as never);
  on('sender_open', (c) => namespace.onSenderOpen(c.sender!));
  on('receiver_open', (c) => namespace.onReceiverOpen(c.receiver!));
  on('message', (c) => namespace.onMessage(c));
  on('sendable', (c) => namespace.onFlow(c.sender!));
  on('sender_draining', (c) => namespace.onDraining(c.sender!));
  for (const outcome of ['accepted', 'rejected', 'modified', 'released'] as const) {
    on(outcome, (c) => namespace.onOutcome(outcome, c));
  }
  on('sender_close', (c) => namespace.onSenderClose(c.sender!));
  on('disconnected', (c) => namespace.onDisconnected(c.connection));
  on('connection_close', (c) => namespace.onDisconnected(c.connection));
  // Link-level errors from clients are theirs to report; keep the emulator running.
  container.on('error', () => {});

  const server = container.listen({
    host,
    port: options.port ?? 0,
    autoaccept: false,
    treat_modified_as_released: false,
  } as never) as unknown as Server;
  await new Promise<void>((resolve, reject) => {
    server.once('listening', resolve);
    server.once('error', reject);
  });
  const port = (server.address() as AddressInfo).port;
  namespace.host = `${host}:${port}`;
  const sockets = new Set<import('node:net').Socket>();
  server.on('connection', (socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  return {
    host,
    port,
    connectionString: `Endpoint=sb://${host}:${port};SharedAccessKeyName=RootManageSharedAccessKey;SharedAccessKey=SAS_KEY_VALUE;UseDevelopmentEmulator=true;`,
    async close() {
      namespace.shutdown();
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        for (const socket of sockets) socket.destroy();
      });
    },
  };
}
