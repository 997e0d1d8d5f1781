import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, describe, test } from 'node:test';
import type { QueueTransport, ReceivedMessage } from '../../src/core/queue-transport.js';

/** What a transport under test needs from its queue; the factory creates (or configures) a queue like that. */
export interface ContractQueueSettings {
  readonly maxDeliveryCount: number;
  readonly lockDurationMs: number;
}

export interface TransportUnderTest {
  readonly transport: QueueTransport;
  /** A fresh, empty session-enabled queue with the settings asked for. */
  readonly queue: string;
  /** Another client of the same service (another process in real life), for the one-holder rules. */
  openSecond(): Promise<QueueTransport>;
  cleanup(): Promise<void>;
}

/**
 * The behaviour every `QueueTransport` must have, written against Service Bus session-queue semantics so the
 * embedded queue and the Service Bus transport are held to the same rules. No assertion depends on timing beyond
 * "a lock that was not renewed has expired after twice its duration".
 */
export function runTransportContract(
  name: string,
  makeTransport: (settings: ContractQueueSettings) => Promise<TransportUnderTest>,
): void {
  describe(`queue transport contract: ${name}`, () => {
    const open: TransportUnderTest[] = [];
    const make = async (settings: Partial<ContractQueueSettings> = {}) => {
      const t = await makeTransport({ maxDeliveryCount: 3, lockDurationMs: 2000, ...settings });
      open.push(t);
      return t;
    };
    after(async () => {
      for (const t of open) await t.cleanup();
    });

    test('delivers a session in enqueue order and complete removes the message', async () => {
      const { transport, queue } = await make();
      await transport.send(queue, [
        { sessionId: 's1', body: { n: 1 } },
        { sessionId: 's2', body: { n: 'other' } },
        { sessionId: 's1', body: { n: 2 } },
        { sessionId: 's1', body: { n: 3 } },
      ]);
      const seen = new Map<string, unknown[]>();
      for (;;) {
        const session = await transport.acceptNextSession(queue, { maxWaitMs: 1000 });
        if (!session) break;
        for (;;) {
          const got = await session.receive(10, 200);
          if (got.length === 0) break;
          for (const m of got) {
            assert.equal(m.sessionId, session.sessionId);
            assert.equal(m.deliveryCount, 1);
            seen.set(m.sessionId, [...(seen.get(m.sessionId) ?? []), m.body]);
            await session.complete(m);
          }
        }
        await session.close();
      }
      assert.deepEqual(seen.get('s1'), [{ n: 1 }, { n: 2 }, { n: 3 }]);
      assert.deepEqual(seen.get('s2'), [{ n: 'other' }]);
      assert.deepEqual(await transport.peek(queue, 10), []);
    });

    test('sequence numbers grow with every message and messages keep their id and properties', async () => {
      const { transport, queue } = await make();
      const id = randomUUID();
      await transport.send(queue, [
        { sessionId: 'a', body: 1, messageId: id, applicationProperties: { kind: 'test', n: 7 } },
        { sessionId: 'a', body: 2 },
      ]);
      const peeked = await transport.peek(queue, 10);
      assert.equal(peeked.length, 2);
      assert.equal(peeked[0]!.messageId, id);
      assert.equal(peeked[0]!.applicationProperties.kind, 'test');
      assert.equal(peeked[0]!.applicationProperties.n, 7);
      assert.ok(peeked[1]!.sequenceNumber > peeked[0]!.sequenceNumber);
      assert.ok(peeked[0]!.enqueuedTimeUtc instanceof Date);
    });

    test('a session has one holder at a time; closing it hands unsettled messages to the next receiver', async (t) => {
      const { transport, queue, openSecond } = await make();
      const second = await openSecond();
      t.after(() => second.close());
      await transport.send(queue, [
        { sessionId: 'only', body: 'first' },
        { sessionId: 'only', body: 'second' },
      ]);
      const held = await transport.acceptNextSession(queue, { maxWaitMs: 1000 });
      assert.ok(held);
      const [m1] = await held.receive(1, 500);
      assert.equal(m1?.body, 'first');
      assert.equal(await second.acceptNextSession(queue, { maxWaitMs: 300 }), null);
      await held.close();
      const next = await second.acceptNextSession(queue, { maxWaitMs: 2000 });
      assert.ok(next, 'the released session is taken by the other receiver');
      const again = await next.receive(2, 500);
      assert.deepEqual(
        again.map((m) => m.body),
        ['first', 'second'],
      );
      assert.equal(again[0]!.deliveryCount, 2, 'the first delivery under the closed lock counts');
      for (const m of again) await next.complete(m);
      await next.close();
    });

    test('abandon gives the message back first, counting the delivery', async () => {
      const { transport, queue } = await make();
      await transport.send(queue, [
        { sessionId: 'k', body: 'a' },
        { sessionId: 'k', body: 'b' },
      ]);
      const session = await transport.acceptNextSession(queue, { maxWaitMs: 1000 });
      assert.ok(session);
      const [a] = await session.receive(1, 500);
      await session.abandon(a!);
      const [again] = await session.receive(1, 500);
      assert.equal(again?.body, 'a');
      assert.equal(again?.deliveryCount, 2);
      await session.complete(again!);
      const [b] = await session.receive(1, 500);
      assert.equal(b?.body, 'b');
      await session.complete(b!);
      await session.close();
    });

    test('abandoning past the max delivery count dead-letters with MaxDeliveryCountExceeded', async () => {
      const { transport, queue } = await make({ maxDeliveryCount: 2 });
      await transport.send(queue, [
        { sessionId: 'p', body: 'poison' },
        { sessionId: 'p', body: 'next' },
      ]);
      const session = await transport.acceptNextSession(queue, { maxWaitMs: 1000 });
      assert.ok(session);
      const first = await session.receive(1, 500);
      await session.abandon(first[0]!);
      const second = await session.receive(1, 500);
      assert.equal(second[0]?.body, 'poison');
      await session.abandon(second[0]!);
      const third = await session.receive(1, 1000);
      assert.equal(third[0]?.body, 'next', 'the poison message is gone from the session');
      await session.complete(third[0]!);
      await session.close();
      const dead = await transport.peekDeadLetters(queue, 10);
      assert.equal(dead.length, 1);
      assert.equal(dead[0]!.body, 'poison');
      assert.equal(dead[0]!.sessionId, 'p');
      assert.equal(dead[0]!.deadLetterReason, 'MaxDeliveryCountExceeded');
    });

    test('dead-letter keeps reason and description; resubmit sends the message back to its session', async () => {
      const { transport, queue } = await make();
      const id = randomUUID();
      await transport.send(queue, [{ sessionId: 'd', body: { bad: true }, messageId: id }]);
      const session = await transport.acceptNextSession(queue, { maxWaitMs: 1000 });
      assert.ok(session);
      const [m] = await session.receive(1, 500);
      await session.deadLetter(m!, 'string.too_long', 'Column `name` is too long.');
      await session.close();
      assert.deepEqual(await transport.peek(queue, 10), []);
      const dead = await transport.peekDeadLetters(queue, 10);
      assert.equal(dead.length, 1);
      assert.equal(dead[0]!.messageId, id);
      assert.equal(dead[0]!.deadLetterReason, 'string.too_long');
      assert.equal(dead[0]!.deadLetterErrorDescription, 'Column `name` is too long.');
      assert.equal(await transport.resubmitDeadLetters(queue, ['not-an-id']), 0);
      assert.equal(await transport.resubmitDeadLetters(queue, [id]), 1);
      assert.deepEqual(await transport.peekDeadLetters(queue, 10), []);
      const back = await transport.acceptNextSession(queue, { maxWaitMs: 2000 });
      assert.ok(back);
      assert.equal(back.sessionId, 'd');
      const [again] = await back.receive(1, 1000);
      assert.deepEqual(again?.body, { bad: true });
      assert.equal(again?.messageId, id);
      await back.complete(again!);
      await back.close();
    });

    test('abandon with redeliverAfterMs holds the message and the rest of its session back', async () => {
      const { transport, queue } = await make();
      await transport.send(queue, [
        { sessionId: 'late', body: 1 },
        { sessionId: 'late', body: 2 },
      ]);
      const session = await transport.acceptNextSession(queue, { maxWaitMs: 1000 });
      assert.ok(session);
      const [m] = await session.receive(1, 500);
      await session.abandon(m!, { redeliverAfterMs: 1500 });
      assert.deepEqual(await session.receive(2, 0), [], 'nothing of the session right after the abandon');
      await session.close();
      // Whoever takes the session next gets the abandoned message first, once the delay has passed.
      const next = await transport.acceptNextSession(queue, { maxWaitMs: 10_000 });
      assert.ok(next);
      const got = await next.receive(2, 5000);
      assert.equal(got[0]?.body, 1);
      assert.equal(got[0]?.deliveryCount, 2);
      for (const x of got) await next.complete(x);
      await next.close();
    });

    test('a lock that is not renewed expires: another receiver takes the session, the old holder cannot settle', async (t) => {
      const { transport, queue, openSecond } = await make({ lockDurationMs: 1000 });
      const second = await openSecond();
      t.after(() => second.close());
      await transport.send(queue, [{ sessionId: 'x', body: 'held' }]);
      const first = await transport.acceptNextSession(queue, { maxWaitMs: 1000 });
      assert.ok(first);
      const [m] = await first.receive(1, 500);
      assert.ok(m);
      const taken = await second.acceptNextSession(queue, { maxWaitMs: 10_000 });
      assert.ok(taken, 'the session is free again after its lock expired');
      await assert.rejects(first.complete(m));
      const [again] = await taken.receive(1, 1000);
      assert.equal(again?.body, 'held');
      assert.equal(again?.deliveryCount, 2);
      await taken.complete(again!);
      await taken.close();
      await first.close().catch(() => undefined);
    });

    test('renewLock moves the lock expiry forward', async () => {
      const { transport, queue } = await make();
      await transport.send(queue, [{ sessionId: 'r', body: 1 }]);
      const session = await transport.acceptNextSession(queue, { maxWaitMs: 1000 });
      assert.ok(session);
      const before = session.lockedUntil.getTime();
      await new Promise((r) => setTimeout(r, 20));
      const renewed = await session.renewLock();
      assert.ok(renewed.getTime() > before);
      assert.equal(session.lockedUntil.getTime(), renewed.getTime());
      const [m] = await session.receive(1, 500);
      await session.complete(m!);
      await session.close();
    });

    test('acceptNextSession returns null when nothing arrives, and on abort', async () => {
      const { transport, queue } = await make();
      assert.equal(await transport.acceptNextSession(queue, { maxWaitMs: 200 }), null);
      const controller = new AbortController();
      const waiting = transport.acceptNextSession(queue, { maxWaitMs: 60_000, signal: controller.signal });
      controller.abort();
      assert.equal(await waiting, null);
    });

    test('many sessions are each delivered whole and in order to concurrent receivers', async (t) => {
      const { transport, queue, openSecond } = await make();
      const second = await openSecond();
      t.after(() => second.close());
      const sessions = 8;
      const perSession = 6;
      const sent = [];
      for (let i = 0; i < perSession; i++)
        for (let s = 0; s < sessions; s++) sent.push({ sessionId: `s${s}`, body: { s, i } });
      await transport.send(queue, sent);
      const seen = new Map<string, number[]>();
      const drain = async (client: QueueTransport) => {
        for (;;) {
          const session = await client.acceptNextSession(queue, { maxWaitMs: 500 });
          if (!session) return;
          for (;;) {
            const got: ReceivedMessage[] = await session.receive(3, 100);
            if (got.length === 0) break;
            for (const m of got) {
              const body = m.body as { s: number; i: number };
              seen.set(m.sessionId, [...(seen.get(m.sessionId) ?? []), body.i]);
              await session.complete(m);
            }
          }
          await session.close();
        }
      };
      await Promise.all([drain(transport), drain(second)]);
      assert.equal(seen.size, sessions);
      for (const [, order] of seen) assert.deepEqual(order, [0, 1, 2, 3, 4, 5]);
    });
  });
}
