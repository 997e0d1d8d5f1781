import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import os from 'node:os';
import { afterEach, beforeEach, test } from 'node:test';
import { FerryError } from '../../src/core/errors.js';
import { pipelineLeaseName } from '../../src/core/runner.js';
import { nextBoundary } from '../../src/schedule/cadence.js';
import { type ScheduleEvent, Scheduler } from '../../src/schedule/scheduler.js';
import { addFile, deliveries, filePipeline, makeEnv, stageHooks, type TestEnv, VirtualClock } from './helpers.js';

let env: TestEnv;
beforeEach(async () => {
  env = await makeEnv();
});
afterEach(async () => {
  await env.dispose();
});

const MIN = 60_000;

test('nextBoundary aligns to wall-clock boundaries', () => {
  const t = Date.parse('2026-11-26T10:07:13Z');
  assert.equal(new Date(nextBoundary(t, 15 * MIN)).toISOString(), '2026-11-26T10:15:00.000Z');
  assert.equal(
    new Date(nextBoundary(Date.parse('2026-11-26T10:15:00Z'), 15 * MIN)).toISOString(),
    '2026-11-26T10:30:00.000Z',
  );
  assert.equal(new Date(nextBoundary(t, 2000)).toISOString(), '2026-11-26T10:07:14.000Z');
});

test('runs due pipelines on aligned ticks, dependencies first, each run logged', async () => {
  const accounts = filePipeline('accounts');
  const contacts = filePipeline('contacts', { dependsOn: ['accounts'] });
  const opportunities = filePipeline('opportunities', { dependsOn: ['contacts', 'accounts'] });
  await addFile(env, 'accounts', '2026-11-26T09:00:00Z', 3);
  await addFile(env, 'contacts', '2026-11-26T09:00:00Z', 2);
  await addFile(env, 'opportunities', '2026-11-26T09:00:00Z', 1);
  const events: ScheduleEvent[] = [];
  const clock = new VirtualClock('2026-11-26T10:07:00Z');
  const ticks = await new Scheduler({
    pipelines: [opportunities, contacts, accounts],
    runOne: env.runOne(),
    state: env.state,
    clock,
    maxTicks: 2,
    onEvent: (e) => events.push(e),
  }).run();
  assert.equal(ticks, 2);
  const tickEvents = events.filter((e) => e.event === 'tick');
  assert.deepEqual(
    tickEvents.map((e) => e.at),
    ['2026-11-26T10:15:00.000Z', '2026-11-26T10:30:00.000Z'],
  );
  const runs = events.filter((e) => e.event === 'run');
  assert.deepEqual(
    runs.map((e) => `${e.pipeline}:${e.status}:${e.counts.read}`),
    [
      'accounts:succeeded:3',
      'contacts:succeeded:2',
      'opportunities:succeeded:1',
      'accounts:succeeded:0',
      'contacts:succeeded:0',
      'opportunities:succeeded:0',
    ],
  );
  assert.ok(runs.every((e) => typeof e.runId === 'string' && e.runId.includes(e.pipeline)));
  assert.equal((await deliveries(env, 'accounts')).length, 1);
});

test('--every overrides the definition cadence', async () => {
  const p = filePipeline('fast', { every: '1h' });
  const events: ScheduleEvent[] = [];
  await new Scheduler({
    pipelines: [p],
    runOne: env.runOne(),
    state: env.state,
    clock: new VirtualClock('2026-11-26T10:00:01Z'),
    every: '2s',
    maxTicks: 3,
    onEvent: (e) => events.push(e),
  }).run();
  assert.deepEqual(
    events.filter((e) => e.event === 'tick').map((e) => e.at),
    ['2026-11-26T10:00:02.000Z', '2026-11-26T10:00:04.000Z', '2026-11-26T10:00:06.000Z'],
  );
});

test('two schedulers on one state: one runs, the other skips (not fails)', async () => {
  const p = filePipeline('accounts');
  await addFile(env, 'accounts', '2026-11-26T09:00:00Z', 5);
  let entered!: () => void;
  const inRun = new Promise<void>((r) => {
    entered = r;
  });
  let release!: () => void;
  const gate = new Promise<void>((r) => {
    release = r;
  });
  stageHooks.set('accounts', async () => {
    entered();
    await gate;
  });
  const eventsA: ScheduleEvent[] = [];
  const eventsB: ScheduleEvent[] = [];
  const stateB = env.openState();
  const a = new Scheduler({
    pipelines: [p],
    runOne: env.runOne(),
    state: env.state,
    clock: new VirtualClock('2026-11-26T10:14:00Z'),
    maxTicks: 1,
    onEvent: (e) => eventsA.push(e),
  }).run();
  await inRun;
  // B sees the lease A holds in the shared SQLite file.
  assert.ok(stateB.getLease(pipelineLeaseName('accounts')));
  await new Scheduler({
    pipelines: [p],
    runOne: env.runOne(stateB),
    state: stateB,
    clock: new VirtualClock('2026-11-26T10:14:00Z'),
    maxTicks: 1,
    onEvent: (e) => eventsB.push(e),
  }).run();
  release();
  await a;
  const runA = eventsA.find((e) => e.event === 'run');
  const runB = eventsB.find((e) => e.event === 'run');
  assert.equal(runA?.event === 'run' && runA.status, 'succeeded');
  assert.equal(runB?.event === 'run' && runB.status, 'skipped');
  const stored = env.state.listRuns({ pipeline: 'accounts' });
  assert.deepEqual(stored.map((r) => r.status).sort(), ['skipped', 'succeeded']);
  assert.equal(stored.find((r) => r.status === 'skipped')?.error?.code, 'lease.held');
  assert.equal((await deliveries(env, 'accounts')).length, 1);
  assert.equal(env.state.getLease(pipelineLeaseName('accounts')), undefined, 'lease released after the run');
});

test('a slow run spanning two ticks is not followed by a pile-up of missed ticks', async () => {
  const p = filePipeline('accounts');
  await addFile(env, 'accounts', '2026-11-26T09:00:00Z', 1);
  const clock = new VirtualClock('2026-11-26T10:14:00Z');
  let calls = 0;
  stageHooks.set('accounts', () => {
    calls += 1;
    // The first run takes 35 minutes: from 10:15 to 10:50, past the 10:30 and 10:45 boundaries.
    if (calls === 1) clock.advance(35 * MIN);
  });
  const events: ScheduleEvent[] = [];
  await new Scheduler({
    pipelines: [p],
    runOne: env.runOne(),
    state: env.state,
    clock,
    maxTicks: 3,
    onEvent: (e) => events.push(e),
  }).run();
  const ticks = events.filter((e) => e.event === 'tick');
  // 10:15 run ends at 10:50; the 10:30 and 10:45 boundaries are dropped, the next tick is 11:00, then 11:15.
  assert.deepEqual(
    ticks.map((e) => e.at),
    ['2026-11-26T10:15:00.000Z', '2026-11-26T11:00:00.000Z', '2026-11-26T11:15:00.000Z'],
  );
  assert.deepEqual(
    ticks.map((e) => e.event === 'tick' && e.missedTicks),
    [0, 2, 0],
  );
  assert.equal(events.filter((e) => e.event === 'run').length, 3);
});

test('a dependency that failed in the tick skips its dependents; a retryable failure is retried first', async () => {
  const accounts = filePipeline('accounts');
  const contacts = filePipeline('contacts', { dependsOn: ['accounts'] });
  await addFile(env, 'accounts', '2026-11-26T09:00:00Z', 2);
  await addFile(env, 'contacts', '2026-11-26T09:00:00Z', 2);
  let attempts = 0;
  stageHooks.set('accounts', () => {
    attempts += 1;
    if (attempts === 1) throw new FerryError('dataverse.http_503', 'Service unavailable `503`.');
    if (attempts >= 2 && attempts <= 3) throw new FerryError('dataverse.auth', 'Token rejected `401`.');
  });
  const events: ScheduleEvent[] = [];
  await new Scheduler({
    pipelines: [contacts, accounts],
    runOne: env.runOne(),
    state: env.state,
    clock: new VirtualClock('2026-11-26T10:14:00Z'),
    retry: { attempts: 2, delayMs: 1000 },
    maxTicks: 3,
    onEvent: (e) => events.push(e),
  }).run();
  const summary = events
    .filter((e) => e.event === 'run' || e.event === 'dependency-skipped')
    .map((e) =>
      e.event === 'run'
        ? `${e.pipeline}:${e.status}:${e.attempt}:${e.error?.code ?? ''}`
        : `${e.pipeline}:dependency-skipped`,
    );
  assert.deepEqual(summary, [
    'accounts:failed:1:dataverse.http_503',
    'accounts:failed:2:dataverse.auth',
    'contacts:dependency-skipped',
    'accounts:failed:1:dataverse.auth',
    'contacts:dependency-skipped',
    'accounts:succeeded:1:',
    'contacts:succeeded:1:',
  ]);
  assert.equal((await deliveries(env, 'accounts')).length, 1);
});

test('stopping: the current run finishes and commits, the lease is released, the loop ends', async () => {
  const p = filePipeline('accounts');
  await addFile(env, 'accounts', '2026-11-26T09:00:00Z', 4);
  const controller = new AbortController();
  stageHooks.set('accounts', () => controller.abort());
  const events: ScheduleEvent[] = [];
  const ticks = await new Scheduler({
    pipelines: [p],
    runOne: env.runOne(),
    state: env.state,
    clock: new VirtualClock('2026-11-26T10:14:00Z'),
    signal: controller.signal,
    onEvent: (e) => events.push(e),
  }).run();
  assert.equal(ticks, 1);
  assert.equal(events.at(-1)?.event, 'stopped');
  const run = events.find((e) => e.event === 'run');
  assert.equal(run?.event === 'run' && run.status, 'succeeded');
  assert.equal(env.state.processedItems('accounts', 'lake:in/accounts').size, 1);
  assert.equal(env.state.getLease(pipelineLeaseName('accounts')), undefined);
});

test('a lease left by a process that died on this machine is taken over, one held by a live process is not', async () => {
  const p = filePipeline('accounts');
  await addFile(env, 'accounts', '2026-11-26T09:00:00Z', 2);
  const dead = spawnSync(process.execPath, ['-e', 'process.pid']).pid;
  assert.ok(env.state.acquireLease(pipelineLeaseName('accounts'), `${os.hostname()}:${dead}`, 120_000));
  const taken = await env.run(p);
  assert.equal(taken.status, 'succeeded');
  // The parent of this test process is alive: its lease is respected.
  await addFile(env, 'accounts', '2026-11-26T09:15:00Z', 1);
  assert.ok(env.state.acquireLease(pipelineLeaseName('accounts'), `${os.hostname()}:${process.ppid}`, 120_000));
  const skipped = await env.run(p);
  assert.equal(skipped.status, 'skipped');
});
