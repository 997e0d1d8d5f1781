import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { ServiceBusTransport } from '../../src/connectors/queue/service-bus-transport.js';
import { FerryError, isRetryable } from '../../src/core/errors.js';
import type { QueueSession, ReceivedMessage } from '../../src/core/queue-transport.js';
import {
  type ServiceBusEmulator,
  startServiceBusEmulator,
} from '../../src/emulator/service-bus/service-bus-emulator.js';

/** Receives and completes everything the session has, in order. */
async function drain(session: QueueSession): Promise<ReceivedMessage[]> {
  const all: ReceivedMessage[] = [];
  for (;;) {
    const batch = await session.receive(10, 300);
    if (batch.length === 0) return all;
    for (const message of batch) await session.complete(message);
    all.push(...batch);
  }
}

describe('ServiceBusTransport (QueueTransport over @azure/service-bus) against the AMQP emulator', () => {
  let emulator: ServiceBusEmulator;
  let transport: ServiceBusTransport;

  before(async () => {
    emulator = await startServiceBusEmulator({
      queues: [
        { name: 'inbound', lockDurationMs: 30_000, maxDeliveryCount: 3 },
        { name: 'delays', lockDurationMs: 30_000, maxDeliveryCount: 5 },
        { name: 'short', lockDurationMs: 4_000 },
      ],
    });
    transport = new ServiceBusTransport({ connectionString: emulator.connectionString, acceptTimeoutMs: 3_000 });
  });
  after(async () => {
    await transport.close();
    await emulator.close();
  });

  it('sends and receives each session in order; deliveryCount is 1 on the first delivery', async () => {
    const sessions = ['acc-1', 'acc-2', 'acc-3', 'acc-4'];
    for (let version = 1; version <= 4; version++) {
      await transport.send(
        'inbound',
        sessions.map((sessionId) => ({
          sessionId,
          body: { id: sessionId, version },
          messageId: `${sessionId}-v${version}`,
          applicationProperties: { version, source: 'crm', urgent: version === 4 },
        })),
      );
    }
    const seen = new Map<string, number[]>();
    for (;;) {
      const session = await transport.acceptNextSession('inbound', { maxWaitMs: 500 });
      if (!session) break;
      assert.ok(session.lockedUntil.getTime() > Date.now() - 1_000);
      const messages = await drain(session);
      for (const m of messages) {
        assert.equal(m.sessionId, session.sessionId);
        assert.equal(m.deliveryCount, 1);
        assert.equal(m.messageId, `${m.sessionId}-v${(m.body as { version: number }).version}`);
        assert.deepEqual(m.applicationProperties, {
          version: (m.body as { version: number }).version,
          source: 'crm',
          urgent: (m.body as { version: number }).version === 4,
        });
        assert.ok(m.enqueuedTimeUtc instanceof Date);
      }
      const sequence = messages.map((m) => m.sequenceNumber);
      assert.deepEqual(
        [...sequence].sort((a, b) => a - b),
        sequence,
      );
      seen.set(
        session.sessionId,
        messages.map((m) => (m.body as { version: number }).version),
      );
      await session.close();
    }
    assert.deepEqual([...seen.keys()].sort(), sessions);
    for (const sessionId of sessions) assert.deepEqual(seen.get(sessionId), [1, 2, 3, 4]);
  });

  it('never gives one session to two holders; close releases it', async () => {
    const other = new ServiceBusTransport({ connectionString: emulator.connectionString, acceptTimeoutMs: 3_000 });
    try {
      await transport.send('inbound', [{ sessionId: 'shared', body: 1 }]);
      const first = await transport.acceptNextSession('inbound', { maxWaitMs: 2_000 });
      assert.equal(first?.sessionId, 'shared');
      assert.equal(await other.acceptNextSession('inbound', { maxWaitMs: 300 }), null);
      await first!.close();
      const second = await other.acceptNextSession('inbound', { maxWaitMs: 5_000 });
      assert.equal(second?.sessionId, 'shared');
      const [message] = await second!.receive(1, 1_000);
      assert.equal(message!.deliveryCount, 1, 'the first holder received nothing, so nothing was counted');
      await second!.complete(message!);
      await second!.close();
    } finally {
      await other.close();
    }
  });

  it('returns null when no session arrives, and a later send is picked up by the next call', async () => {
    assert.equal(await transport.acceptNextSession('inbound', { maxWaitMs: 200 }), null);
    const controller = new AbortController();
    controller.abort();
    assert.equal(await transport.acceptNextSession('inbound', { maxWaitMs: 5_000, signal: controller.signal }), null);
    await transport.send('inbound', [{ sessionId: 'late', body: 'x' }]);
    const session = await transport.acceptNextSession('inbound', { maxWaitMs: 10_000 });
    assert.equal(session?.sessionId, 'late');
    assert.equal((await drain(session!)).length, 1);
    await session!.close();
  });

  it('abandon redelivers with a higher count; past the max delivery count the queue dead-letters it', async () => {
    await transport.send('inbound', [
      { sessionId: 'poison', body: 'bad', messageId: 'poison-1' },
      { sessionId: 'poison', body: 'good', messageId: 'poison-2' },
    ]);
    const session = (await transport.acceptNextSession('inbound', { maxWaitMs: 2_000 }))!;
    const counts: number[] = [];
    for (let i = 0; i < 3; i++) {
      const [message] = await session.receive(1, 1_000);
      assert.equal(message!.messageId, 'poison-1', 'the abandoned message comes back before the next one');
      counts.push(message!.deliveryCount);
      await session.abandon(message!);
    }
    assert.deepEqual(counts, [1, 2, 3]);
    const [next] = await session.receive(1, 1_000);
    assert.equal(next!.messageId, 'poison-2');
    await session.complete(next!);
    await session.close();
    const [dead] = await transport.peekDeadLetters('inbound', 10);
    assert.equal(dead!.messageId, 'poison-1');
    assert.equal(dead!.deadLetterReason, 'MaxDeliveryCountExceeded');
    assert.equal(dead!.sessionId, 'poison');
    assert.equal(await transport.resubmitDeadLetters('inbound', ['poison-1']), 1);
    assert.deepEqual(await transport.peekDeadLetters('inbound', 10), []);
    const again = (await transport.acceptNextSession('inbound', { maxWaitMs: 2_000 }))!;
    const [resubmitted] = await again.receive(1, 1_000);
    assert.deepEqual([resubmitted!.messageId, resubmitted!.body, resubmitted!.deliveryCount], ['poison-1', 'bad', 1]);
    assert.equal(resubmitted!.deadLetterReason, undefined);
    await again.complete(resubmitted!);
    await again.close();
  });

  it('dead-letters with reason and description; peeks and resubmits selectively', async () => {
    await transport.send('inbound', [
      { sessionId: 'dl-a', body: { n: 1 }, messageId: 'dl-a-1', applicationProperties: { table: 'account' } },
      { sessionId: 'dl-b', body: { n: 2 }, messageId: 'dl-b-1' },
    ]);
    for (let i = 0; i < 2; i++) {
      const session = (await transport.acceptNextSession('inbound', { maxWaitMs: 2_000 }))!;
      const [message] = await session.receive(1, 1_000);
      await session.deadLetter(message!, 'conversion.invalid_choice', `industrycode \`99\` is not an option`);
      await session.close();
    }
    const dead = await transport.peekDeadLetters('inbound', 10);
    assert.deepEqual(
      dead.map((m) => [m.messageId, m.deadLetterReason, m.deadLetterErrorDescription]),
      [
        ['dl-a-1', 'conversion.invalid_choice', 'industrycode `99` is not an option'],
        ['dl-b-1', 'conversion.invalid_choice', 'industrycode `99` is not an option'],
      ],
    );
    assert.equal(dead[0]!.applicationProperties.table, 'account');
    assert.equal(await transport.resubmitDeadLetters('inbound', ['dl-b-1']), 1);
    assert.deepEqual(
      (await transport.peekDeadLetters('inbound', 10)).map((m) => m.messageId),
      ['dl-a-1'],
    );
    assert.deepEqual(
      (await transport.peek('inbound', 10)).map((m) => [m.messageId, m.sessionId, m.body]),
      [['dl-b-1', 'dl-b', { n: 2 }]],
    );
    assert.equal(await transport.resubmitDeadLetters('inbound'), 1);
    assert.deepEqual(await transport.peekDeadLetters('inbound', 10), []);
    const peeked = await transport.peek('inbound', 10);
    assert.deepEqual(
      peeked.map((m) => m.messageId),
      ['dl-b-1', 'dl-a-1'],
    );
    assert.equal(peeked[1]!.applicationProperties.table, 'account');
    for (let i = 0; i < 2; i++) {
      const session = (await transport.acceptNextSession('inbound', { maxWaitMs: 2_000 }))!;
      await drain(session);
      await session.close();
    }
    assert.deepEqual(await transport.peek('inbound', 10), []);
  });

  it('abandon with redeliverAfterMs holds the session: nothing of it is delivered before the delay', async () => {
    await transport.send('delays', [
      { sessionId: 'slow', body: 1, messageId: 'slow-1' },
      { sessionId: 'slow', body: 2, messageId: 'slow-2' },
    ]);
    const session = (await transport.acceptNextSession('delays', { maxWaitMs: 2_000 }))!;
    const [first] = await session.receive(1, 1_000);
    const abandonedAt = Date.now();
    await session.abandon(first!, { redeliverAfterMs: 2_500 });
    const during = await session.receive(5, 100);
    // Only meaningful when this ran inside the delay (always, unless the machine stalled for seconds).
    if (Date.now() - abandonedAt < 2_500) assert.deepEqual(during, [], 'nothing before the delay');
    assert.equal(await transport.acceptNextSession('delays', { maxWaitMs: 200 }), null, 'the session stays held');
    const [again] = await session.receive(1, 10_000);
    assert.ok(Date.now() - abandonedAt >= 2_500, 'redelivered only after the delay');
    assert.deepEqual([again!.messageId, again!.deliveryCount], ['slow-1', 2]);
    await session.complete(again!);
    const rest = await drain(session);
    assert.deepEqual(
      rest.map((m) => m.messageId),
      ['slow-2'],
    );
    await session.close();
  });

  it('keeps the session lock renewed while held, and renewLock extends it', async () => {
    await transport.send('short', [{ sessionId: 'long-work', body: 'x' }]);
    const session = (await transport.acceptNextSession('short', { maxWaitMs: 2_000 }))!;
    const [message] = await session.receive(1, 1_000);
    const firstExpiry = session.lockedUntil.getTime();
    // Longer than the 4 s lock: the transport's renewal (due 2 s before expiry) keeps it.
    await new Promise((resolve) => setTimeout(resolve, 5_500));
    assert.ok(session.lockedUntil.getTime() > firstExpiry, 'the lock was renewed in the background');
    const renewed = await session.renewLock();
    assert.ok(renewed.getTime() >= session.lockedUntil.getTime() - 1);
    await session.complete(message!);
    await session.close();
    assert.deepEqual(await transport.peek('short', 5), []);
  });

  it('a taken-over accept whose session lock expired meanwhile is replaced, not handed out', async () => {
    // The accept started here outlives this call and gets the session when the message arrives ...
    assert.equal(await transport.acceptNextSession('short', { maxWaitMs: 100 }), null);
    await transport.send('short', [{ sessionId: 'parked', body: 'x', messageId: 'parked-1' }]);
    // ... then nobody takes it for longer than the 4 s lock.
    await new Promise((resolve) => setTimeout(resolve, 5_500));
    const session = (await transport.acceptNextSession('short', { maxWaitMs: 5_000 }))!;
    assert.equal(session.sessionId, 'parked');
    const [message] = await session.receive(1, 1_000);
    assert.deepEqual([message!.messageId, message!.deliveryCount], ['parked-1', 1]);
    await session.complete(message!);
    await session.close();
  });

  it('connects with a namespace and a TokenCredential (JWT put on $cbs)', async () => {
    const base64url = (value: object) => Buffer.from(JSON.stringify(value)).toString('base64url');
    let tokens = 0;
    const credential = {
      async getToken() {
        tokens += 1;
        const exp = Math.floor(Date.now() / 1000) + 3600;
        return { token: `${base64url({ alg: 'none' })}.${base64url({ exp })}.sig`, expiresOnTimestamp: exp * 1000 };
      },
    };
    // See src/emulator/service-bus/README.md: this namespace string makes the SDK use plain AMQP.
    const viaCredential = new ServiceBusTransport({
      fullyQualifiedNamespace: `127.0.0.1:${emulator.port};UseDevelopmentEmulator=true;Unused=`,
      credential,
      acceptTimeoutMs: 3_000,
    });
    try {
      await viaCredential.send('inbound', [{ sessionId: 'entra', body: 'with a token', messageId: 'entra-1' }]);
      const session = (await viaCredential.acceptNextSession('inbound', { maxWaitMs: 3_000 }))!;
      assert.deepEqual(
        (await drain(session)).map((m) => m.messageId),
        ['entra-1'],
      );
      await session.close();
      assert.ok(tokens >= 2, 'the credential was asked for tokens');
    } finally {
      await viaCredential.close();
    }
  });

  it('maps SDK errors into FerryError with a disposition, naming the queue', async () => {
    const error = await transport.send('missing-queue', [{ sessionId: 's', body: 1 }]).then(
      () => undefined,
      (e: unknown) => e,
    );
    assert.ok(error instanceof FerryError);
    assert.equal(error.code, 'service_bus.messaging_entity_not_found');
    assert.equal(error.disposition, 'fatal');
    assert.match(error.message, /`missing-queue`/);
    assert.ok(!error.message.includes('SharedAccessKey'), 'no secret in the message');
    await assert.rejects(transport.send('inbound', [{ sessionId: '', body: 1 }]), /needs a session id/);
    assert.throws(
      () => new ServiceBusTransport({ fullyQualifiedNamespace: 'https://x.servicebus.windows.net' }),
      /host name/,
    );
    const session = (await (async () => {
      await transport.send('inbound', [{ sessionId: 'lost', body: 1 }]);
      return transport.acceptNextSession('inbound', { maxWaitMs: 2_000 });
    })())!;
    const [message] = await session.receive(1, 1_000);
    await session.complete(message!);
    const twice = await session.complete(message!).then(
      () => undefined,
      (e: unknown) => e,
    );
    assert.ok(twice instanceof FerryError && twice.code === 'usage', 'settling twice is refused locally');
    await session.close();
    const closed = await session.receive(1, 10).then(
      () => undefined,
      (e: unknown) => e,
    );
    assert.ok(closed instanceof FerryError && !isRetryable(closed));
  });
});
