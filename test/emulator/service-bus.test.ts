import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import {
  isServiceBusError,
  ServiceBusClient,
  type ServiceBusReceivedMessage,
  type ServiceBusSessionReceiver,
} from '@azure/service-bus';
import {
  type ServiceBusEmulator,
  startServiceBusEmulator,
} from '../../src/emulator/service-bus/service-bus-emulator.js';

/** The SDK error code of a rejected promise (fails the test if it resolves or throws something else). */
async function serviceBusCode(promise: Promise<unknown>): Promise<string> {
  try {
    await promise;
  } catch (error) {
    assert.ok(isServiceBusError(error), `expected a ServiceBusError, got ${String(error)}`);
    return error.code;
  }
  assert.fail('expected the call to fail');
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Receives until the session yields nothing within a short wait. */
async function drainSession(receiver: ServiceBusSessionReceiver): Promise<ServiceBusReceivedMessage[]> {
  const all: ServiceBusReceivedMessage[] = [];
  for (;;) {
    const batch = await receiver.receiveMessages(7, { maxWaitTimeInMs: 200 });
    if (batch.length === 0) return all;
    for (const message of batch) await receiver.completeMessage(message);
    all.push(...batch);
  }
}

describe('Service Bus emulator, driven by the unmodified @azure/service-bus over AMQP', () => {
  let emulator: ServiceBusEmulator;
  let client: ServiceBusClient;
  /** No SDK retries and short operation timeouts, so refusals surface at once. */
  let quick: ServiceBusClient;

  before(async () => {
    emulator = await startServiceBusEmulator({
      queues: [
        { name: 'orders', lockDurationMs: 30_000, maxDeliveryCount: 10 },
        { name: 'retries', lockDurationMs: 30_000, maxDeliveryCount: 3 },
        { name: 'short-locks', lockDurationMs: 1_000 },
        { name: 'renewals', lockDurationMs: 4_000 },
        { name: 'plain', requiresSession: false, lockDurationMs: 30_000 },
      ],
    });
    client = new ServiceBusClient(emulator.connectionString);
    quick = new ServiceBusClient(emulator.connectionString, { retryOptions: { maxRetries: 0, timeoutInMs: 1_500 } });
  });
  after(async () => {
    await quick.close();
    await client.close();
    await emulator.close();
  });

  it('serves a UseDevelopmentEmulator connection string on the loopback port it listens on', () => {
    assert.match(emulator.connectionString, /^Endpoint=sb:\/\/127\.0\.0\.1:\d+;.*UseDevelopmentEmulator=true;$/);
    assert.ok(emulator.connectionString.includes(`:${emulator.port};`));
  });

  it('delivers each session in send order across many sessions, to receivers that never share a session', async () => {
    const sender = client.createSender('orders');
    const sessions = Array.from({ length: 12 }, (_, i) => `order-${i}`);
    // Interleaved sends: single messages, arrays (batch format) and a size-bounded batch.
    for (let round = 0; round < 5; round++) {
      if (round % 2 === 0) {
        await sender.sendMessages(sessions.map((sessionId) => ({ sessionId, body: { sessionId, round } })));
      } else {
        const batch = await sender.createMessageBatch();
        for (const sessionId of sessions) assert.ok(batch.tryAddMessage({ sessionId, body: { sessionId, round } }));
        await sender.sendMessages(batch);
      }
    }
    await sender.sendMessages({ sessionId: 'order-0', body: { sessionId: 'order-0', round: 5 } });

    const held = new Set<string>();
    const received = new Map<string, number[]>();
    const worker = async () => {
      for (;;) {
        let receiver: ServiceBusSessionReceiver;
        try {
          receiver = await quick.acceptNextSession('orders');
        } catch (error) {
          if (isServiceBusError(error) && error.code === 'ServiceTimeout') return;
          throw error;
        }
        assert.ok(!held.has(receiver.sessionId), `session ${receiver.sessionId} granted to two receivers`);
        held.add(receiver.sessionId);
        const messages = await drainSession(receiver);
        for (const m of messages) assert.equal(m.sessionId, receiver.sessionId);
        const rounds = received.get(receiver.sessionId) ?? [];
        rounds.push(...messages.map((m) => (m.body as { round: number }).round));
        received.set(receiver.sessionId, rounds);
        held.delete(receiver.sessionId);
        await receiver.close();
      }
    };
    await Promise.all([worker(), worker(), worker()]);
    assert.deepEqual([...received.keys()].sort(), [...sessions].sort());
    for (const sessionId of sessions) {
      const expected = sessionId === 'order-0' ? [0, 1, 2, 3, 4, 5] : [0, 1, 2, 3, 4];
      assert.deepEqual(received.get(sessionId), expected, `order of ${sessionId}`);
    }
    await sender.close();
  });

  it('refuses a session another receiver holds with SessionCannotBeLocked; next-available skips it', async () => {
    await client.createSender('orders').sendMessages({ sessionId: 'held', body: 1 });
    const first = await client.acceptSession('orders', 'held');
    assert.equal(await serviceBusCode(quick.acceptSession('orders', 'held')), 'SessionCannotBeLocked');
    // The only session with messages is held: next-available waits, then the service's timeout.
    assert.equal(await serviceBusCode(quick.acceptNextSession('orders')), 'ServiceTimeout');
    await first.close();
    const second = await quick.acceptNextSession('orders');
    assert.equal(second.sessionId, 'held', 'closing released the session lock');
    assert.equal((await drainSession(second)).length, 1);
    await second.close();
  });

  it('accepts a named session before it has messages, and grants a waiting next-available receiver on arrival', async () => {
    const empty = await client.acceptSession('orders', 'not-yet');
    assert.deepEqual(await empty.receiveMessages(1, { maxWaitTimeInMs: 100 }), []);
    await empty.close();
    const waiting = client.acceptNextSession('orders');
    await sleep(200);
    await client.createSender('orders').sendMessages({ sessionId: 'arrives-later', body: 'x' });
    const granted = await waiting;
    assert.equal(granted.sessionId, 'arrives-later');
    assert.equal((await drainSession(granted)).length, 1);
    await granted.close();
  });

  it('answers drain: a receive that gets fewer messages than asked leaves the receiver usable', async () => {
    const sender = client.createSender('orders');
    await sender.sendMessages([{ sessionId: 'drain', body: 1 }]);
    const receiver = await client.acceptSession('orders', 'drain');
    const one = await receiver.receiveMessages(10, { maxWaitTimeInMs: 300 });
    assert.equal(one.length, 1);
    await receiver.completeMessage(one[0]!);
    await sender.sendMessages([{ sessionId: 'drain', body: 2 }]);
    const next = await receiver.receiveMessages(10, { maxWaitTimeInMs: 2_000 });
    assert.deepEqual(
      next.map((m) => m.body),
      [2],
    );
    await receiver.completeMessage(next[0]!);
    await receiver.close();
  });

  it('abandon redelivers in place with the delivery count raised; dead-letter carries reason and description', async () => {
    await client.createSender('orders').sendMessages([
      { sessionId: 'settle', body: 'first', applicationProperties: { kind: 'a' } },
      { sessionId: 'settle', body: 'second' },
    ]);
    const receiver = await client.acceptSession('orders', 'settle');
    const [first, second] = await receiver.receiveMessages(2, { maxWaitTimeInMs: 1_000 });
    assert.deepEqual([first!.deliveryCount, second!.deliveryCount], [0, 0]);
    assert.ok(first!.sequenceNumber!.lessThan(second!.sequenceNumber!));
    await receiver.abandonMessage(first!, { retried: true });
    await receiver.abandonMessage(second!);
    const again = await receiver.receiveMessages(2, { maxWaitTimeInMs: 1_000 });
    assert.deepEqual(
      again.map((m) => [m.body, m.deliveryCount]),
      [
        ['first', 1],
        ['second', 1],
      ],
    );
    assert.deepEqual(again[0]!.applicationProperties, { kind: 'a', retried: true });
    await receiver.deadLetterMessage(again[0]!, {
      deadLetterReason: 'conversion.bad_date',
      deadLetterErrorDescription: 'birthdate `31/02/2020` is not a date',
    });
    await receiver.completeMessage(again[1]!);
    await receiver.close();

    const deadLetters = client.createReceiver('orders', { subQueueType: 'deadLetter' });
    const [dead] = await deadLetters.receiveMessages(1, { maxWaitTimeInMs: 1_000 });
    assert.equal(dead!.body, 'first');
    assert.equal(dead!.sessionId, 'settle');
    assert.equal(dead!.deadLetterReason, 'conversion.bad_date');
    assert.equal(dead!.deadLetterErrorDescription, 'birthdate `31/02/2020` is not a date');
    assert.equal(dead!.deadLetterSource, 'orders');
    await deadLetters.completeMessage(dead!);
    assert.deepEqual(await deadLetters.receiveMessages(1, { maxWaitTimeInMs: 200 }), []);
    await deadLetters.close();
  });

  it('dead-letters a message abandoned up to the max delivery count with MaxDeliveryCountExceeded', async () => {
    await client.createSender('retries').sendMessages([
      { sessionId: 'poison', body: 'poison' },
      { sessionId: 'poison', body: 'next' },
    ]);
    const receiver = await client.acceptSession('retries', 'poison');
    const counts: number[] = [];
    for (let attempt = 0; attempt < 3; attempt++) {
      const [message] = await receiver.receiveMessages(1, { maxWaitTimeInMs: 1_000 });
      assert.equal(message!.body, 'poison');
      counts.push(message!.deliveryCount!);
      await receiver.abandonMessage(message!);
    }
    assert.deepEqual(counts, [0, 1, 2]);
    const [after] = await receiver.receiveMessages(1, { maxWaitTimeInMs: 1_000 });
    assert.equal(after!.body, 'next', 'the poison message left the session');
    await receiver.completeMessage(after!);
    await receiver.close();
    const deadLetters = client.createReceiver('retries', { subQueueType: 'deadLetter' });
    const [peeked] = await deadLetters.peekMessages(5);
    assert.equal(peeked!.body, 'poison');
    assert.equal(peeked!.deadLetterReason, 'MaxDeliveryCountExceeded');
    await deadLetters.close();
  });

  it('an expired session lock detaches the receiver (SessionLockLost) and its messages return with a raised count', async () => {
    await client.createSender('short-locks').sendMessages({ sessionId: 'expiring', body: 'x' });
    const receiver = await client.acceptSession('short-locks', 'expiring', { maxAutoLockRenewalDurationInMs: 0 });
    const [message] = await receiver.receiveMessages(1, { maxWaitTimeInMs: 1_000 });
    assert.equal(message!.deliveryCount, 0);
    // Wait until the emulator has taken the lock back (it can only expire later under load, never earlier).
    for (let i = 0; i < 100; i++) {
      try {
        const probe = await quick.acceptSession('short-locks', 'expiring');
        const [again] = await probe.receiveMessages(1, { maxWaitTimeInMs: 1_000 });
        assert.equal(again!.deliveryCount, 1, 'lock expiry counts as a delivery');
        await probe.completeMessage(again!);
        await probe.close();
        break;
      } catch (error) {
        if (!(isServiceBusError(error) && error.code === 'SessionCannotBeLocked')) throw error;
        await sleep(200);
      }
    }
    assert.equal(await serviceBusCode(receiver.completeMessage(message!)), 'SessionLockLost');
    await receiver.close();
  });

  it('renews a session lock: renew-session-lock moves the expiry on, and the session outlives its lock duration', async () => {
    await client.createSender('renewals').sendMessages({ sessionId: 'renewed', body: 'x' });
    const receiver = await client.acceptSession('renewals', 'renewed', { maxAutoLockRenewalDurationInMs: 0 });
    const [message] = await receiver.receiveMessages(1, { maxWaitTimeInMs: 1_000 });
    let lockedUntil = receiver.sessionLockedUntilUtc;
    // Renew every second for longer than the 4 s lock duration.
    for (let i = 0; i < 5; i++) {
      await sleep(1_000);
      const renewed = await receiver.renewSessionLock();
      assert.ok(renewed.getTime() > lockedUntil.getTime(), 'each renewal returns a later expiry');
      lockedUntil = renewed;
    }
    await receiver.completeMessage(message!);
    await receiver.close();
  });

  it('peeks without locking: the queue in sequence order, one session, the dead-letter queue; empty is []', async () => {
    const sender = client.createSender('orders');
    await sender.sendMessages([
      { sessionId: 'peek-a', body: 'a1' },
      { sessionId: 'peek-b', body: 'b1' },
      { sessionId: 'peek-a', body: 'a2' },
    ]);
    const browser = client.createReceiver('orders');
    const all = await browser.peekMessages(10);
    assert.deepEqual(
      all.map((m) => m.body),
      ['a1', 'b1', 'a2'],
    );
    const sequence = all.map((m) => m.sequenceNumber!.toNumber());
    assert.deepEqual(
      [...sequence].sort((x, y) => x - y),
      sequence,
    );
    assert.deepEqual(await browser.peekMessages(10), [], 'a second peek continues after the last one');
    await browser.close();

    const session = await client.acceptSession('orders', 'peek-a');
    assert.deepEqual(
      // Peek state is per connection and entity: start again from the first message.
      (await session.peekMessages(10, { fromSequenceNumber: all[0]!.sequenceNumber! })).map((m) => m.body),
      ['a1', 'a2'],
    );
    const messages = await drainSession(session);
    assert.equal(messages.length, 2, 'peeked messages were not locked');
    await session.close();
    const other = await client.acceptSession('orders', 'peek-b');
    await drainSession(other);
    await other.close();
  });

  it('keeps session state for the session holder (get/set-session-state)', async () => {
    const receiver = await client.acceptSession('orders', 'stateful');
    assert.equal(await receiver.getSessionState(), null);
    await receiver.setSessionState({ lastVersion: 42 });
    assert.deepEqual(await receiver.getSessionState(), { lastVersion: 42 });
    await receiver.close();
    const again = await client.acceptSession('orders', 'stateful');
    assert.deepEqual(await again.getSessionState(), { lastVersion: 42 });
    await again.close();
  });

  it('defers a message: only receive-by-sequence-number reaches it, and it settles over $management', async () => {
    await client.createSender('orders').sendMessages([
      { sessionId: 'deferring', body: 'later' },
      { sessionId: 'deferring', body: 'now' },
    ]);
    const receiver = await client.acceptSession('orders', 'deferring');
    const [first] = await receiver.receiveMessages(1, { maxWaitTimeInMs: 1_000 });
    await receiver.deferMessage(first!);
    const [second] = await receiver.receiveMessages(1, { maxWaitTimeInMs: 1_000 });
    assert.equal(second!.body, 'now', 'the deferred message is skipped by ordinary receives');
    await receiver.completeMessage(second!);
    const [deferred] = await receiver.receiveDeferredMessages(first!.sequenceNumber!);
    assert.deepEqual([deferred!.body, deferred!.state, deferred!.deliveryCount], ['later', 'deferred', 1]);
    await receiver.completeMessage(deferred!);
    assert.equal(
      await serviceBusCode(receiver.receiveDeferredMessages(first!.sequenceNumber!)),
      'MessageNotFound',
      'completed over update-disposition',
    );
    await receiver.close();
  });

  it('holds scheduled messages until their time and cancels them', async () => {
    const sender = client.createSender('orders');
    const [later] = await sender.scheduleMessages(
      { sessionId: 'scheduled', body: 'later' },
      new Date(Date.now() + 3_600_000),
    );
    const browser = client.createReceiver('orders');
    const [peeked] = await browser.peekMessages(1, { fromSequenceNumber: later! });
    assert.equal(peeked!.state, 'scheduled');
    await browser.close();
    const receiver = await client.acceptSession('orders', 'scheduled');
    assert.deepEqual(await receiver.receiveMessages(1, { maxWaitTimeInMs: 200 }), []);
    await receiver.close();
    await sender.cancelScheduledMessages(later!);
    const after = client.createReceiver('orders');
    assert.deepEqual(await after.peekMessages(1, { fromSequenceNumber: later! }), []);
    await after.close();
    await sender.close();
  });

  it('serves a queue without sessions: message locks, renew-lock, receive-and-delete', async () => {
    const sender = client.createSender('plain');
    await sender.sendMessages([{ body: 1 }, { body: 2 }]);
    const receiver = client.createReceiver('plain');
    const [one] = await receiver.receiveMessages(1, { maxWaitTimeInMs: 1_000 });
    const before = one!.lockedUntilUtc!;
    const renewed = await receiver.renewMessageLock(one!);
    assert.ok(renewed.getTime() >= before.getTime());
    await receiver.completeMessage(one!);
    await receiver.close();
    const deleting = client.createReceiver('plain', { receiveMode: 'receiveAndDelete' });
    assert.deepEqual(
      (await deleting.receiveMessages(5, { maxWaitTimeInMs: 500 })).map((m) => m.body),
      [2],
    );
    assert.deepEqual(await deleting.peekMessages(5), []);
    await deleting.close();
    await sender.close();
  });

  it('accepts a JWT from a TokenCredential on $cbs (type jwt) and refuses an expired one', async () => {
    const base64url = (value: object) => Buffer.from(JSON.stringify(value)).toString('base64url');
    const credentialFor = (expiresInSec: number, scopes: string[]) => ({
      async getToken(scope: string | string[]) {
        scopes.push(String(scope));
        const exp = Math.floor(Date.now() / 1000) + expiresInSec;
        return {
          token: `${base64url({ alg: 'none', typ: 'JWT' })}.${base64url({ aud: 'https://servicebus.azure.net', exp })}.sig`,
          expiresOnTimestamp: exp * 1000,
        };
      },
    });
    // The SDK builds `Endpoint=sb://<host>/;...` from the namespace it is given; the extra key in the host makes that
    // string carry UseDevelopmentEmulator=true, the only way to reach the TokenCredential path without TLS.
    const host = `127.0.0.1:${emulator.port};UseDevelopmentEmulator=true;Unused=`;
    const scopes: string[] = [];
    const viaToken = new ServiceBusClient(host, credentialFor(3600, scopes), {
      retryOptions: { maxRetries: 0, timeoutInMs: 3_000 },
    });
    try {
      await viaToken.createSender('orders').sendMessages({ sessionId: 'jwt', body: 'signed' });
      const receiver = await viaToken.acceptSession('orders', 'jwt');
      assert.deepEqual(
        (await drainSession(receiver)).map((m) => m.body),
        ['signed'],
      );
      await receiver.close();
      assert.ok(scopes.length >= 2 && scopes.every((s) => s.startsWith('https://servicebus.azure.net/')));
    } finally {
      await viaToken.close();
    }
    const expired = new ServiceBusClient(host, credentialFor(-60, []), {
      retryOptions: { maxRetries: 0, timeoutInMs: 3_000 },
    });
    try {
      assert.equal(
        await serviceBusCode(expired.createSender('orders').sendMessages({ sessionId: 'jwt', body: 1 })),
        'UnauthorizedAccess',
      );
    } finally {
      await expired.close();
    }
  });

  it('refuses what the service refuses, with the error the SDK maps it to', async () => {
    assert.equal(
      await serviceBusCode(quick.createSender('no-such-queue').sendMessages({ sessionId: 's', body: 1 })),
      'MessagingEntityNotFound',
    );
    assert.equal(await serviceBusCode(quick.acceptSession('no-such-queue', 's')), 'MessagingEntityNotFound');
    // A session queue takes no message without a session id.
    const sender = quick.createSender('orders');
    await assert.rejects(sender.sendMessages({ body: 'no session' }), /SessionId was not set/);
    await sender.close();
    // A non-session receiver on a session queue cannot receive.
    const plain = quick.createReceiver('orders');
    await assert.rejects(plain.receiveMessages(1, { maxWaitTimeInMs: 500 }), /requires sessions/);
    await plain.close();
    // An expired shared access signature is refused by CBS put-token.
    const expired = `SharedAccessSignature sr=${encodeURIComponent(`sb://127.0.0.1:${emulator.port}/`)}&sig=abc&se=1000&skn=RootManageSharedAccessKey`;
    const stale = new ServiceBusClient(
      `Endpoint=sb://127.0.0.1:${emulator.port};SharedAccessSignature=${expired};UseDevelopmentEmulator=true;`,
      { retryOptions: { maxRetries: 0, timeoutInMs: 1_500 } },
    );
    assert.equal(
      await serviceBusCode(stale.createSender('orders').sendMessages({ sessionId: 's', body: 1 })),
      'UnauthorizedAccess',
    );
    await stale.close();
  });
});
