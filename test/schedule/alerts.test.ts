import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, beforeEach, test } from 'node:test';
import { type Alert, WebhookAlerts } from '../../src/alerts/webhook-alerts.js';
import { FerryError } from '../../src/core/errors.js';
import { silentLogger } from '../../src/core/log.js';
import { Scheduler } from '../../src/schedule/scheduler.js';
import { addFile, filePipeline, makeEnv, stageHooks, type TestEnv, VirtualClock } from './helpers.js';

let env: TestEnv;
let server: http.Server;
let url: string;
let received: Alert[];
let failNext = 0;

beforeEach(async () => {
  env = await makeEnv();
  received = [];
  failNext = 0;
  server = http.createServer((req, res) => {
    let body = '';
    req.on('data', (d) => {
      body += d;
    });
    req.on('end', () => {
      if (failNext > 0) {
        failNext -= 1;
        res.writeHead(503).end();
        return;
      }
      assert.equal(req.method, 'POST');
      assert.equal(req.headers['content-type'], 'application/json');
      received.push(JSON.parse(body) as Alert);
      res.writeHead(204).end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`;
});
afterEach(async () => {
  await new Promise((resolve) => server.close(resolve));
  await env.dispose();
});

function scheduler(
  pipelines: ReturnType<typeof filePipeline>[],
  ticks: number,
  extra: Partial<ConstructorParameters<typeof Scheduler>[0]> = {},
) {
  return new Scheduler({
    pipelines,
    runOne: env.runOne(),
    state: env.state,
    clock: new VirtualClock('2026-11-26T10:14:00Z'),
    alerts: new WebhookAlerts({ url, state: env.state, log: silentLogger }),
    retry: { attempts: 1, delayMs: 1000 },
    maxTicks: ticks,
    ...extra,
  });
}

test('a non-retryable failure posts one alert, not one per tick; after recovery a new failure alerts again', async () => {
  const p = filePipeline('accounts');
  await addFile(env, 'accounts', '2026-11-26T09:00:00Z', 2);
  let calls = 0;
  stageHooks.set('accounts', () => {
    calls += 1;
    if (calls <= 3 || calls === 5)
      throw new FerryError('dataverse.auth', 'Token for `https://org.crm.dynamics.com` rejected (401).');
  });
  await scheduler([p], 3).run();
  assert.equal(received.length, 1);
  const [alert] = received;
  assert.equal(alert!.kind, 'run_failed');
  assert.equal(alert!.pipeline, 'accounts');
  assert.equal(alert!.reason, 'dataverse.auth');
  assert.match(alert!.message, /rejected \(401\)/);
  assert.ok(alert!.runId && env.state.getRun(alert!.runId)?.status === 'failed');
  assert.equal(alert!.inspect, `ferry rejects --run ${alert!.runId}`);
  assert.ok(alert!.counts && typeof alert!.counts.read === 'number');
  // The next run succeeds (recovered); a run after that fails again: a new alert.
  await scheduler([p], 1).run();
  assert.equal(received.length, 1);
  await addFile(env, 'accounts', '2026-11-26T10:00:00Z', 1);
  await scheduler([p], 1).run();
  assert.deepEqual(
    received.map((a) => a.kind),
    ['run_failed', 'run_failed'],
  );
});

test('a retryable failure is retried first and does not alert when the retry succeeds', async () => {
  const p = filePipeline('accounts');
  await addFile(env, 'accounts', '2026-11-26T09:00:00Z', 2);
  let calls = 0;
  stageHooks.set('accounts', () => {
    calls += 1;
    if (calls === 1) throw new FerryError('dataverse.throttled', 'Throttled (429) for `60s`.');
  });
  await scheduler([p], 1).run();
  assert.equal(calls, 2);
  assert.equal(received.length, 0);
});

test('a run over its reject threshold alerts with the command to inspect it', async () => {
  const p = filePipeline('accounts', { rejectThreshold: { maxRejectedRatio: 0.1 } });
  await addFile(env, 'accounts', '2026-11-26T09:00:00Z', 4);
  stageHooks.set('accounts', (ctx) => {
    ctx.reject([
      {
        stage: 'test-files',
        reason: 'string.too_long',
        message: 'Too long.',
        sourceFile: ctx.window.items[0]!.id,
        rowNumber: 1,
      },
      {
        stage: 'test-files',
        reason: 'string.too_long',
        message: 'Too long.',
        sourceFile: ctx.window.items[0]!.id,
        rowNumber: 2,
      },
    ]);
  });
  await scheduler([p], 2).run();
  assert.equal(received.length, 1, 'the second failing tick repeats nothing');
  assert.equal(received[0]!.kind, 'rejects_exceeded');
  assert.equal(received[0]!.counts.rejected, 2);
  assert.equal(received[0]!.inspect, `ferry rejects --run ${received[0]!.runId}`);
});

test('a pipeline with no completed run for longer than the limit alerts once', async () => {
  const p = filePipeline('accounts');
  await addFile(env, 'accounts', '2026-11-26T09:00:00Z', 1);
  stageHooks.set('accounts', () => {
    throw new FerryError('lake.path', 'Folder `in/accounts` unreadable.');
  });
  await scheduler([p], 5, { staleAfterMs: () => 40 * 60_000 }).run();
  const stale = received.filter((a) => a.kind === 'stale');
  assert.equal(stale.length, 1);
  assert.equal(stale[0]!.runId, null, 'never completed');
  assert.equal(stale[0]!.reason, 'pipeline.stale');
});

test('an alert the webhook did not take is sent again on the next tick', async () => {
  const p = filePipeline('accounts');
  await addFile(env, 'accounts', '2026-11-26T09:00:00Z', 1);
  stageHooks.set('accounts', () => {
    throw new FerryError('dataverse.auth', 'Token rejected `401`.');
  });
  failNext = 1;
  await scheduler([p], 2).run();
  assert.equal(received.length, 1);
  assert.equal(received[0]!.kind, 'run_failed');
});
