import { describeError } from '../core/errors.js';
import type { Logger } from '../core/log.js';
import type { QueueSession, QueueTransport, ReceivedMessage } from '../core/queue-transport.js';
import type { DeliveryOutcome } from './inbound-message-handler.js';

/** Anything that decides a micro-batch of messages (the inbound handler, the outbound delivery handler). */
export interface MessageBatchHandler {
  handle(messages: readonly ReceivedMessage[]): Promise<DeliveryOutcome[]>;
}

export interface ListenOptions {
  readonly transport: QueueTransport;
  readonly queue: string;
  readonly handler: MessageBatchHandler;
  readonly log: Logger;
  /** Messages per micro-batch (over all sessions). Default 500. */
  readonly maxBatch?: number;
  /** Sessions held at once. Default 256. */
  readonly maxSessions?: number;
  /** Messages taken from one session per micro-batch. Default 32. */
  readonly perSession?: number;
  /** Sessions asked for at once. Default 32. */
  readonly acceptBurst?: number;
  /** How long to wait for a session when none is held. Default 1000 ms. */
  readonly pollMs?: number;
  /** Stop after the queue was empty for this long (tests, the demo, benchmarks). Default: run until aborted. */
  readonly stopWhenIdleMs?: number;
  readonly signal?: AbortSignal;
  /** Each settled message with its outcome (the demo prints these). */
  readonly onSettled?: (message: ReceivedMessage, outcome: DeliveryOutcome) => void;
}

export interface ListenSummary {
  batches: number;
  messages: number;
  completed: number;
  abandoned: number;
  deadLettered: number;
  settleFailures: number;
  /** Wall time per phase (ms): accept, receive, handle, settle, release (benchmarks print it). */
  timings: Record<string, number>;
}

/**
 * Takes sessions from a queue and feeds their messages to a handler in micro-batches: many sessions gathered into
 * one batch (so one bulk request carries many records), each session's messages in order and never two
 * micro-batches of one session at once (a session is held by this listener until it runs dry). Outcomes are
 * settled after the handler returned: complete, abandon (with the handler's backoff) or dead-letter with the reason.
 */
export async function listenToQueue(options: ListenOptions): Promise<ListenSummary> {
  const { transport, queue, log } = options;
  const maxBatch = options.maxBatch ?? 500;
  const maxSessions = options.maxSessions ?? 256;
  const perSession = options.perSession ?? 32;
  const pollMs = options.pollMs ?? 1000;
  const acceptBurst = Math.max(1, options.acceptBurst ?? 32);
  const summary: ListenSummary = {
    batches: 0,
    messages: 0,
    completed: 0,
    abandoned: 0,
    deadLettered: 0,
    settleFailures: 0,
    timings: { accept: 0, receive: 0, handle: 0, settle: 0, release: 0 },
  };
  let lapAt = performance.now();
  const lap = (phase: string) => {
    const now = performance.now();
    summary.timings[phase] = (summary.timings[phase] ?? 0) + (now - lapAt);
    lapAt = now;
  };
  const held = new Map<string, QueueSession>();
  let idleSince = Date.now();
  const drop = async (session: QueueSession) => {
    held.delete(session.sessionId);
    await session.close().catch((error: unknown) => log.debug(`Closing a session failed: ${describeError(error)}`));
  };
  /** Renews the locks that expire within `withinMs`; a session whose lock cannot be renewed is let go. */
  const renewHeld = async (withinMs: number) => {
    for (const session of [...held.values()]) {
      if (session.lockedUntil.getTime() - Date.now() > withinMs) continue;
      await session.renewLock().catch(async (error: unknown) => {
        log.warn(`Could not renew the lock of session \`${session.sessionId}\`: ${describeError(error)}`);
        await drop(session);
      });
    }
  };
  try {
    while (!options.signal?.aborted) {
      // Take free sessions up to the cap: wait only when holding none.
      // Several accepts at once: over AMQP each is a link attach the service answers when a session is free, so
      // taking them one after another would hold one session per round trip.
      while (held.size < maxSessions && !options.signal?.aborted) {
        const want = Math.min(maxSessions - held.size, acceptBurst);
        const maxWaitMs = held.size === 0 ? pollMs : 0;
        const accepted = await Promise.all(
          Array.from({ length: want }, () =>
            transport.acceptNextSession(queue, {
              maxWaitMs,
              ...(options.signal ? { signal: options.signal } : {}),
            }),
          ),
        );
        let got = 0;
        for (const session of accepted) {
          if (!session) continue;
          got += 1;
          held.set(session.sessionId, session);
        }
        if (got < want) break;
      }
      const batch: Array<{ session: QueueSession; message: ReceivedMessage }> = [];
      // Breadth first: every held session gets its share of the micro-batch, so its records' changes are written
      // as many overlapping chains (rows in flight = records), not a few long ones.
      const share = Math.max(1, Math.min(perSession, Math.floor(maxBatch / Math.max(1, held.size))));
      lap('accept');
      // All held sessions at once: the embedded queue answers them in one transaction, Service Bus over its links
      // in parallel.
      const sessions = [...held.values()].slice(0, maxBatch);
      const received = await Promise.all(
        sessions.map((session) =>
          session.receive(share, 0).catch(async (error: unknown) => {
            log.warn(`Lost session \`${session.sessionId}\`: ${describeError(error)}`);
            await drop(session);
            return null;
          }),
        ),
      );
      lap('receive');
      const dry: QueueSession[] = [];
      for (const [i, got] of received.entries()) {
        if (got === null) continue;
        const session = sessions[i]!;
        // A session that ran dry goes back to the queue for whoever gets its next message.
        if (got.length === 0) dry.push(session);
        for (const message of got) batch.push({ session, message });
      }
      await Promise.all(dry.map(drop));
      lap('release');
      if (batch.length === 0) {
        if (options.stopWhenIdleMs !== undefined && held.size === 0 && Date.now() - idleSince >= options.stopWhenIdleMs)
          break;
        continue;
      }
      idleSince = Date.now();
      summary.batches += 1;
      summary.messages += batch.length;
      // A slow micro-batch (Dataverse throttling) must not lose its sessions: renew their locks while it runs.
      const renewing = setInterval(() => void renewHeld(15_000), 5000);
      let outcomes: DeliveryOutcome[];
      try {
        outcomes = await options.handler.handle(batch.map((b) => b.message));
      } finally {
        clearInterval(renewing);
        lap('handle');
      }
      // Settled concurrently (the transports batch or pipeline them); each session's own order does not matter here
      // because the handler already decided every message of the micro-batch.
      const lost = new Set<QueueSession>();
      await Promise.all(
        batch.map(async ({ session, message }, i) => {
          const outcome = outcomes[i]!;
          try {
            if (outcome.kind === 'complete') {
              await session.complete(message);
              summary.completed += 1;
            } else if (outcome.kind === 'abandon') {
              await session.abandon(message, { redeliverAfterMs: outcome.redeliverAfterMs });
              summary.abandoned += 1;
            } else {
              await session.deadLetter(message, outcome.reason, outcome.description.slice(0, 1000));
              summary.deadLettered += 1;
            }
            options.onSettled?.(message, outcome);
          } catch (error) {
            // The lock was lost: the message comes again and the handler judges it again (stale if it was applied).
            summary.settleFailures += 1;
            log.warn(`Could not settle message \`${message.messageId}\`: ${describeError(error)}`);
            lost.add(session);
          }
        }),
      );
      lap('settle');
      await Promise.all([...lost].filter((session) => held.get(session.sessionId) === session).map(drop));
      // Idle time counts from the end of the last micro-batch, not its start.
      idleSince = Date.now();
      // Keep the locks of sessions still held.
      await renewHeld(10_000);
    }
  } finally {
    await Promise.all([...held.values()].map(drop));
  }
  return summary;
}
