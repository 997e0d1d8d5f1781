import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { createInterface } from 'node:readline';
import { describe, it } from 'node:test';
import { isServiceBusError, ServiceBusClient } from '@azure/service-bus';

describe('ferry emulator service-bus', () => {
  it('prints a connection string the SDK uses, serves the named queues only, and stops on SIGTERM', async () => {
    const child = spawn(
      process.execPath,
      [
        '--import',
        'tsx',
        'src/cli/main.ts',
        'emulator',
        'service-bus',
        '--port',
        '0',
        '--queue',
        'cli-a',
        '--queue',
        'cli-b',
        '--max-delivery-count',
        '2',
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let stderr = '';
    child.stderr.on('data', (chunk) => {
      stderr += chunk;
    });
    const exited = once(child, 'exit');
    try {
      const lines = createInterface({ input: child.stdout });
      const [connectionString] = (await once(lines, 'line')) as [string];
      assert.match(connectionString, /^Endpoint=sb:\/\/127\.0\.0\.1:\d+;.*UseDevelopmentEmulator=true;$/);
      const client = new ServiceBusClient(connectionString, { retryOptions: { maxRetries: 0, timeoutInMs: 3_000 } });
      try {
        await client.createSender('cli-b').sendMessages({ sessionId: 's', body: 'hello' });
        const receiver = await client.acceptNextSession('cli-b');
        // --max-delivery-count 2: the second abandon dead-letters it.
        for (let i = 0; i < 2; i++) {
          const [message] = await receiver.receiveMessages(1, { maxWaitTimeInMs: 2_000 });
          assert.equal(message!.body, 'hello');
          await receiver.abandonMessage(message!);
        }
        await receiver.close();
        const [dead] = await client.createReceiver('cli-b', { subQueueType: 'deadLetter' }).peekMessages(1);
        assert.equal(dead!.deadLetterReason, 'MaxDeliveryCountExceeded');
        const refused = await client
          .createSender('ferry-inbound')
          .sendMessages({ sessionId: 's', body: 1 })
          .then(
            () => undefined,
            (e: unknown) => e,
          );
        assert.ok(isServiceBusError(refused) && refused.code === 'MessagingEntityNotFound', 'only --queue queues');
      } finally {
        await client.close();
      }
      child.kill('SIGTERM');
      const [code] = await exited;
      assert.equal(code, 0, stderr);
      assert.match(stderr, /Service Bus emulator stopped/);
    } finally {
      if (child.exitCode === null) child.kill('SIGKILL');
    }
  });

  it('refuses a bad --queue name or port with a usage error', async () => {
    const child = spawn(
      process.execPath,
      ['--import', 'tsx', 'src/cli/main.ts', 'emulator', 'service-bus', '--port', '0', '--queue', 'bad name!'],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let stderr = '';
    child.stderr.on('data', (chunk) => {
      stderr += chunk;
    });
    const [code] = await once(child, 'exit');
    assert.equal(code, 2);
    assert.match(stderr, /--queue `bad name!` is not a valid queue name/);
  });
});
