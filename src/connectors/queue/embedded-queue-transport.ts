import { randomUUID } from 'node:crypto';
import { EventEmitter } from 'node:events';
import fs from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import { FerryError, UsageError } from '../../core/errors.js';
import type { OutgoingMessage, QueueSession, QueueTransport, ReceivedMessage } from '../../core/queue-transport.js';

const SCHEMA = `
CREATE TABLE IF NOT EXISTS queue_messages (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  queue TEXT NOT NULL,
  message_id TEXT NOT NULL,
  session_id TEXT NOT NULL,
  body TEXT NOT NULL,
  content_type TEXT,
  properties_json TEXT NOT NULL DEFAULT '{}',
  enqueued_ms INTEGER NOT NULL,
  delivery_count INTEGER NOT NULL DEFAULT 0,
  lock_token TEXT
);
CREATE INDEX IF NOT EXISTS queue_messages_session ON queue_messages (queue, session_id, seq);
CREATE TABLE IF NOT EXISTS queue_sessions (
  queue TEXT NOT NULL,
  session_id TEXT NOT NULL,
  active_count INTEGER NOT NULL DEFAULT 0,
  lock_token TEXT,
  holder TEXT,
  locked_until_ms INTEGER NOT NULL DEFAULT 0,
  not_before_ms INTEGER NOT NULL DEFAULT 0,
  available_since_ms INTEGER NOT NULL DEFAULT 0,
  PRIMARY KEY (queue, session_id)
);
CREATE INDEX IF NOT EXISTS queue_sessions_ready ON queue_sessions (queue, available_since_ms) WHERE active_count > 0;
CREATE TABLE IF NOT EXISTS queue_dead_letters (
  seq INTEGER PRIMARY KEY,
  queue TEXT NOT NULL,
  message_id TEXT NOT NULL,
  session_id TEXT NOT NULL,
  body TEXT NOT NULL,
  content_type TEXT,
  properties_json TEXT NOT NULL DEFAULT '{}',
  enqueued_ms INTEGER NOT NULL,
  delivery_count INTEGER NOT NULL,
  reason TEXT NOT NULL,
  description TEXT NOT NULL,
  dead_lettered_ms INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS queue_dead_letters_queue ON queue_dead_letters (queue, seq);
`;

/** What Service Bus writes as the dead-letter reason when the delivery count runs out. */
export const MAX_DELIVERY_COUNT_EXCEEDED = 'MaxDeliveryCountExceeded';

export interface EmbeddedQueueOptions {
  /** The SQLite file; normally the state store's (`<state>/ferry.sqlite`). */
  readonly file: string;
  /** How long a session lock lasts unless renewed. Default 30 s (the Service Bus default is 1 min). */
  readonly lockDurationMs?: number;
  /** Deliveries before a message is dead-lettered with `MaxDeliveryCountExceeded`. Default 10 (as Service Bus). */
  readonly maxDeliveryCount?: number;
  /** Who holds the sessions this transport locks, for `ferry queue peek`. Default `host:pid`. */
  readonly holder?: string;
}

interface MessageRow {
  seq: number;
  queue: string;
  message_id: string;
  session_id: string;
  body: string;
  content_type: string | null;
  properties_json: string;
  enqueued_ms: number;
  delivery_count: number;
  lock_token: string | null;
}

interface DeadRow extends MessageRow {
  reason: string;
  description: string;
}

interface SessionRow {
  queue: string;
  session_id: string;
  active_count: number;
  lock_token: string | null;
  locked_until_ms: number;
  not_before_ms: number;
}

/** Statements prepared once per connection: settling thousands of messages a second must not re-parse SQL. */
const statements = new WeakMap<Database.Database, Map<string, Database.Statement>>();
function prepared(db: Database.Database, sql: string): Database.Statement {
  let cache = statements.get(db);
  if (!cache) {
    cache = new Map();
    statements.set(db, cache);
  }
  let statement = cache.get(sql);
  if (!statement) {
    statement = db.prepare(sql);
    cache.set(sql, statement);
  }
  return statement;
}

/** Wakes the waiters of this process when a message is sent or a session released (other processes are polled). */
const wakeups = new EventEmitter();
wakeups.setMaxListeners(0);

/**
 * The embedded session queue: Service Bus session-queue semantics in the state store's SQLite file, so the demo,
 * the tests and a single-machine deployment need no broker. Every operation is one `BEGIN IMMEDIATE` transaction,
 * so several processes (listeners, `ferry queue send`) share a queue safely: a session has at most one holder, a
 * lock that expires is taken over by the next `acceptNextSession`, and messages received under it are delivered
 * again (their delivery count already counted the lost delivery).
 */
export class EmbeddedQueueTransport implements QueueTransport {
  readonly kind = 'embedded';
  readonly lockDurationMs: number;
  readonly maxDeliveryCount: number;
  readonly #db: Database.Database;
  readonly #holder: string;
  #closed = false;

  constructor(options: EmbeddedQueueOptions) {
    this.lockDurationMs = options.lockDurationMs ?? 30_000;
    this.maxDeliveryCount = options.maxDeliveryCount ?? 10;
    if (!(this.lockDurationMs > 0))
      throw new UsageError(`Queue lock duration \`${this.lockDurationMs}\` ms must be greater than zero.`);
    if (!Number.isInteger(this.maxDeliveryCount) || this.maxDeliveryCount < 1)
      throw new UsageError(
        `Queue max delivery count \`${this.maxDeliveryCount}\` must be a whole number of at least 1.`,
      );
    this.#holder = options.holder ?? `${process.pid}`;
    if (options.file !== ':memory:') fs.mkdirSync(path.dirname(options.file), { recursive: true });
    try {
      this.#db = new Database(options.file);
    } catch (error) {
      throw new FerryError(
        'queue.open',
        `Cannot open the embedded queue in \`${options.file}\`: ${(error as Error).message}. Check --state / FERRY_STATE.`,
        { cause: error },
      );
    }
    this.#db.pragma('journal_mode = WAL');
    this.#db.pragma('busy_timeout = 10000');
    this.#db.pragma('synchronous = NORMAL');
    this.#db.exec(SCHEMA);
  }

  /** Opens the queue in the state directory's database (`<state>/ferry.sqlite`). */
  static openIn(stateDir: string, options: Omit<EmbeddedQueueOptions, 'file'> = {}): EmbeddedQueueTransport {
    return new EmbeddedQueueTransport({ ...options, file: path.join(stateDir, 'ferry.sqlite') });
  }

  async send(queue: string, messages: readonly OutgoingMessage[]): Promise<void> {
    this.#open();
    checkQueueName(queue);
    const now = Date.now();
    const insert = prepared(
      this.#db,
      `INSERT INTO queue_messages (queue, message_id, session_id, body, content_type, properties_json, enqueued_ms)
       VALUES (?, ?, ?, ?, ?, ?, ?)`,
    );
    const touch = prepared(
      this.#db,
      `INSERT INTO queue_sessions (queue, session_id, active_count, available_since_ms) VALUES (?, ?, 1, ?)
       ON CONFLICT (queue, session_id) DO UPDATE SET active_count = active_count + 1,
         available_since_ms = CASE WHEN active_count = 0 THEN excluded.available_since_ms ELSE available_since_ms END`,
    );
    const rows = messages.map((m) => {
      if (typeof m.sessionId !== 'string' || m.sessionId.length === 0 || m.sessionId.length > 128)
        throw new UsageError(
          `Session id \`${String(m.sessionId)}\` is not valid; use 1 to 128 characters (the record's id).`,
        );
      const body = JSON.stringify(m.body);
      if (body === undefined) throw new UsageError('A queue message body must be JSON-serialisable.');
      return [m, body] as const;
    });
    this.#db
      .transaction(() => {
        for (const [m, body] of rows) {
          insert.run(
            queue,
            m.messageId ?? randomUUID(),
            m.sessionId,
            body,
            m.contentType ?? 'application/json',
            JSON.stringify(m.applicationProperties ?? {}),
            now,
          );
          touch.run(queue, m.sessionId, now);
        }
      })
      .immediate();
    wakeups.emit(queue);
  }

  async acceptNextSession(
    queue: string,
    options: { readonly maxWaitMs: number; readonly signal?: AbortSignal },
  ): Promise<QueueSession | null> {
    this.#open();
    const deadline = Date.now() + Math.max(0, options.maxWaitMs);
    const pick = prepared(
      this.#db,
      `SELECT session_id FROM queue_sessions
       WHERE queue = ? AND active_count > 0 AND locked_until_ms <= ? AND not_before_ms <= ?
       ORDER BY available_since_ms, session_id LIMIT 1`,
    );
    const lock = prepared(
      this.#db,
      `UPDATE queue_sessions SET lock_token = ?, holder = ?, locked_until_ms = ? WHERE queue = ? AND session_id = ?`,
    );
    // Messages received under a lock that expired: delivered again (the lost delivery is already counted).
    const release = prepared(
      this.#db,
      'UPDATE queue_messages SET lock_token = NULL WHERE queue = ? AND session_id = ? AND lock_token IS NOT NULL',
    );
    const take = this.#db.transaction((now: number) => {
      const row = pick.get(queue, now, now) as { session_id: string } | undefined;
      if (!row) return null;
      const token = randomUUID();
      const until = now + this.lockDurationMs;
      release.run(queue, row.session_id);
      lock.run(token, this.#holder, until, queue, row.session_id);
      return { sessionId: row.session_id, token, until };
    });
    for (;;) {
      if (options.signal?.aborted || this.#closed) return null;
      const got = take.immediate(Date.now());
      if (got) return new EmbeddedSession(this, this.#db, queue, got.sessionId, got.token, got.until);
      const left = deadline - Date.now();
      if (left <= 0) return null;
      await waitForWakeup(queue, Math.min(left, 250), options.signal);
    }
  }

  async peek(queue: string, maxMessages: number): Promise<ReceivedMessage[]> {
    this.#open();
    const rows = prepared(this.#db, 'SELECT * FROM queue_messages WHERE queue = ? ORDER BY seq LIMIT ?').all(
      queue,
      maxMessages,
    ) as MessageRow[];
    return rows.map(toReceived);
  }

  async peekDeadLetters(queue: string, maxMessages: number): Promise<ReceivedMessage[]> {
    this.#open();
    const rows = prepared(this.#db, 'SELECT * FROM queue_dead_letters WHERE queue = ? ORDER BY seq LIMIT ?').all(
      queue,
      maxMessages,
    ) as DeadRow[];
    return rows.map((r) => ({
      ...toReceived(r),
      deadLetterReason: r.reason,
      deadLetterErrorDescription: r.description,
    }));
  }

  async resubmitDeadLetters(queue: string, messageIds?: readonly string[]): Promise<number> {
    this.#open();
    const wanted = messageIds ? new Set(messageIds) : null;
    const moved = this.#db
      .transaction(() => {
        const rows = (
          prepared(this.#db, 'SELECT * FROM queue_dead_letters WHERE queue = ? ORDER BY seq').all(queue) as DeadRow[]
        ).filter((r) => !wanted || wanted.has(r.message_id));
        const now = Date.now();
        for (const r of rows) {
          // A new enqueue, as Service Bus does when a dead letter is sent back: new sequence number, fresh count.
          prepared(
            this.#db,
            `INSERT INTO queue_messages (queue, message_id, session_id, body, content_type, properties_json, enqueued_ms)
               VALUES (?, ?, ?, ?, ?, ?, ?)`,
          ).run(queue, r.message_id, r.session_id, r.body, r.content_type, r.properties_json, now);
          prepared(
            this.#db,
            `INSERT INTO queue_sessions (queue, session_id, active_count, available_since_ms) VALUES (?, ?, 1, ?)
               ON CONFLICT (queue, session_id) DO UPDATE SET active_count = active_count + 1`,
          ).run(queue, r.session_id, now);
          prepared(this.#db, 'DELETE FROM queue_dead_letters WHERE seq = ?').run(r.seq);
        }
        return rows.length;
      })
      .immediate();
    if (moved) wakeups.emit(queue);
    return moved;
  }

  /** Queue names with messages or dead letters, and how many of each (for `ferry queue peek`). */
  stats(queue: string): { active: number; locked: number; deadLettered: number; sessions: number } {
    const m = prepared(
      this.#db,
      'SELECT count(*) AS n, count(lock_token) AS locked, count(DISTINCT session_id) AS s FROM queue_messages WHERE queue = ?',
    ).get(queue) as { n: number; locked: number; s: number };
    const d = prepared(this.#db, 'SELECT count(*) AS n FROM queue_dead_letters WHERE queue = ?').get(queue) as {
      n: number;
    };
    return { active: m.n, locked: m.locked, deadLettered: d.n, sessions: m.s };
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#db.close();
  }

  #pending: Array<{ work: () => unknown; resolve: (value: unknown) => void; reject: (error: unknown) => void }> = [];
  /** Grows with every group transaction: a session checks its lock once per group, not once per message. */
  groupId = 0;

  /**
   * Runs settlements that arrive in the same turn of the event loop in one transaction (each in its own savepoint,
   * so one that fails leaves the others applied): settling message by message would cost a commit each.
   * @internal
   */
  groupCommit<T>(work: () => T): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.#pending.push({ work, resolve: resolve as (value: unknown) => void, reject });
      if (this.#pending.length === 1) setImmediate(() => this.#flush());
    });
  }

  #flush(): void {
    const batch = this.#pending;
    this.#pending = [];
    this.groupId += 1;
    const results: Array<{ ok: true; value: unknown } | { ok: false; error: unknown }> = [];
    try {
      this.#db
        .transaction(() => {
          for (const op of batch) {
            try {
              results.push({ ok: true, value: this.#db.transaction(op.work)() });
            } catch (error) {
              results.push({ ok: false, error: error ?? new Error('queue operation failed') });
            }
          }
        })
        .immediate();
    } catch (error) {
      for (const op of batch) op.reject(error);
      return;
    }
    batch.forEach((op, i) => {
      const result = results[i]!;
      if (result.ok) op.resolve(result.value);
      else op.reject(result.error);
    });
  }

  #open(): void {
    if (this.#closed) throw new FerryError('queue.closed', 'The embedded queue transport is closed.');
  }

  /** @internal Dead-letters one message row inside a transaction. */
  static moveToDeadLetters(db: Database.Database, row: MessageRow, reason: string, description: string): void {
    prepared(
      db,
      `INSERT INTO queue_dead_letters (seq, queue, message_id, session_id, body, content_type, properties_json,
         enqueued_ms, delivery_count, reason, description, dead_lettered_ms)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
    ).run(
      row.seq,
      row.queue,
      row.message_id,
      row.session_id,
      row.body,
      row.content_type,
      row.properties_json,
      row.enqueued_ms,
      row.delivery_count,
      reason,
      description,
      Date.now(),
    );
    prepared(db, 'DELETE FROM queue_messages WHERE seq = ?').run(row.seq);
    prepared(db, 'UPDATE queue_sessions SET active_count = active_count - 1 WHERE queue = ? AND session_id = ?').run(
      row.queue,
      row.session_id,
    );
  }
}

class EmbeddedSession implements QueueSession {
  readonly #owner: EmbeddedQueueTransport;
  readonly #db: Database.Database;
  readonly #queue: string;
  readonly #token: string;
  #until: number;
  #closed = false;
  #checkedIn = -1;

  constructor(
    owner: EmbeddedQueueTransport,
    db: Database.Database,
    queue: string,
    readonly sessionId: string,
    token: string,
    until: number,
  ) {
    this.#owner = owner;
    this.#db = db;
    this.#queue = queue;
    this.#token = token;
    this.#until = until;
  }

  get lockedUntil(): Date {
    return new Date(this.#until);
  }

  async receive(maxMessages: number, maxWaitMs: number): Promise<ReceivedMessage[]> {
    const deadline = Date.now() + Math.max(0, maxWaitMs);
    const next = prepared(
      this.#db,
      'SELECT * FROM queue_messages WHERE queue = ? AND session_id = ? AND lock_token IS NULL ORDER BY seq LIMIT ?',
    );
    const mark = prepared(
      this.#db,
      'UPDATE queue_messages SET lock_token = ?, delivery_count = delivery_count + 1 WHERE seq = ?',
    );
    const take = this.#db.transaction((now: number) => {
      const session = this.#check(now);
      if (session.not_before_ms > now) return [];
      const out: MessageRow[] = [];
      const max = this.#owner.maxDeliveryCount;
      for (const row of next.all(this.#queue, this.sessionId, maxMessages + 16) as MessageRow[]) {
        if (out.length >= maxMessages) break;
        if (row.delivery_count >= max) {
          // Delivered `max` times without being settled (lock lost each time): poison.
          EmbeddedQueueTransport.moveToDeadLetters(
            this.#db,
            row,
            MAX_DELIVERY_COUNT_EXCEEDED,
            `Delivered ${row.delivery_count} times without being completed (max delivery count ${max}).`,
          );
          continue;
        }
        mark.run(this.#token, row.seq);
        out.push({ ...row, delivery_count: row.delivery_count + 1, lock_token: this.#token });
      }
      return out;
    });
    for (;;) {
      // Receives of many sessions in the same turn (a listener gathering a micro-batch) share one transaction.
      const rows = await this.#owner.groupCommit(() => take(Date.now()));
      if (rows.length > 0) return rows.map(toReceived);
      const left = deadline - Date.now();
      if (left <= 0 || this.#closed) return [];
      await waitForWakeup(this.#queue, Math.min(left, 100));
    }
  }

  async complete(message: ReceivedMessage): Promise<void> {
    // The hot path of a listener: one DELETE that also proves the lock (no read of the row and its body first).
    await this.#owner.groupCommit(() => {
      this.#checkOncePerGroup();
      const deleted = prepared(this.#db, 'DELETE FROM queue_messages WHERE seq = ? AND lock_token = ?').run(
        message.sequenceNumber,
        this.#token,
      );
      if (deleted.changes === 0) throw this.#messageLockLost(message);
      prepared(
        this.#db,
        'UPDATE queue_sessions SET active_count = active_count - 1 WHERE queue = ? AND session_id = ?',
      ).run(this.#queue, this.sessionId);
    });
  }

  async abandon(message: ReceivedMessage, options?: { readonly redeliverAfterMs?: number }): Promise<void> {
    await this.#settle(message, (row) => {
      const max = this.#owner.maxDeliveryCount;
      if (row.delivery_count >= max) {
        EmbeddedQueueTransport.moveToDeadLetters(
          this.#db,
          row,
          MAX_DELIVERY_COUNT_EXCEEDED,
          `Abandoned after delivery ${row.delivery_count} of at most ${max}.`,
        );
        return;
      }
      prepared(this.#db, 'UPDATE queue_messages SET lock_token = NULL WHERE seq = ?').run(row.seq);
      const delay = options?.redeliverAfterMs ?? 0;
      if (delay > 0)
        prepared(this.#db, 'UPDATE queue_sessions SET not_before_ms = ? WHERE queue = ? AND session_id = ?').run(
          Date.now() + delay,
          this.#queue,
          this.sessionId,
        );
    });
    wakeups.emit(this.#queue);
  }

  async deadLetter(message: ReceivedMessage, reason: string, description: string): Promise<void> {
    await this.#settle(message, (row) => EmbeddedQueueTransport.moveToDeadLetters(this.#db, row, reason, description));
  }

  async renewLock(): Promise<Date> {
    this.#db
      .transaction(() => {
        const now = Date.now();
        this.#check(now);
        this.#until = now + this.#owner.lockDurationMs;
        prepared(this.#db, 'UPDATE queue_sessions SET locked_until_ms = ? WHERE queue = ? AND session_id = ?').run(
          this.#until,
          this.#queue,
          this.sessionId,
        );
      })
      .immediate();
    return this.lockedUntil;
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    try {
      this.#db
        .transaction(() => {
          const now = Date.now();
          prepared(
            this.#db,
            'UPDATE queue_messages SET lock_token = NULL WHERE queue = ? AND session_id = ? AND lock_token = ?',
          ).run(this.#queue, this.sessionId, this.#token);
          prepared(
            this.#db,
            `UPDATE queue_sessions SET lock_token = NULL, holder = NULL, locked_until_ms = 0, available_since_ms = ?
               WHERE queue = ? AND session_id = ? AND lock_token = ?`,
          ).run(now, this.#queue, this.sessionId, this.#token);
        })
        .immediate();
    } catch (error) {
      // The transport was closed first: the lock simply expires.
      if (!(error instanceof TypeError) && !String(error).includes('not open')) throw error;
    }
    wakeups.emit(this.#queue);
  }

  /** Throws `queue.session_lock_lost` unless this receiver still holds the session. */
  #check(now: number): SessionRow {
    const session = prepared(this.#db, 'SELECT * FROM queue_sessions WHERE queue = ? AND session_id = ?').get(
      this.#queue,
      this.sessionId,
    ) as SessionRow | undefined;
    if (this.#closed || !session || session.lock_token !== this.#token || session.locked_until_ms <= now) {
      throw new FerryError(
        'queue.session_lock_lost',
        `The lock on session \`${this.sessionId}\` of queue \`${this.#queue}\` was lost (expired, closed or taken by another receiver); its unsettled messages will be delivered again.`,
      );
    }
    return session;
  }

  #settle(message: ReceivedMessage, apply: (row: MessageRow) => void): Promise<void> {
    return this.#owner.groupCommit(() => {
      this.#checkOncePerGroup();
      const row = prepared(this.#db, 'SELECT * FROM queue_messages WHERE seq = ? AND lock_token = ?').get(
        message.sequenceNumber,
        this.#token,
      ) as MessageRow | undefined;
      if (!row) throw this.#messageLockLost(message);
      apply(row);
    });
  }

  /** The lock cannot change inside one group transaction: checked once per session per group. */
  #checkOncePerGroup(): void {
    if (this.#checkedIn === this.#owner.groupId) return;
    this.#check(Date.now());
    this.#checkedIn = this.#owner.groupId;
  }

  #messageLockLost(message: ReceivedMessage): FerryError {
    return new FerryError(
      'queue.message_lock_lost',
      `Message \`${message.messageId}\` (sequence ${message.sequenceNumber}) is not locked by this session receiver; it was settled already or its lock was lost.`,
    );
  }
}

function toReceived(row: MessageRow): ReceivedMessage {
  return {
    messageId: row.message_id,
    sessionId: row.session_id,
    body: JSON.parse(row.body) as unknown,
    deliveryCount: row.delivery_count,
    sequenceNumber: row.seq,
    enqueuedTimeUtc: new Date(row.enqueued_ms),
    applicationProperties: JSON.parse(row.properties_json) as Record<string, string | number | boolean>,
  };
}

function checkQueueName(queue: string): void {
  if (!/^[A-Za-z0-9][A-Za-z0-9._/-]{0,259}$/.test(queue))
    throw new UsageError(
      `Queue name \`${queue}\` is not valid; use letters, digits, \`.\`, \`-\`, \`_\` and \`/\` (as Service Bus does).`,
    );
}

function waitForWakeup(queue: string, ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      wakeups.off(queue, done);
      signal?.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    wakeups.on(queue, done);
    signal?.addEventListener('abort', done, { once: true });
  });
}
