import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { afterEach, beforeEach, test } from 'node:test';
import { pipelineLeaseName } from '../../src/core/runner.js';
import { pipelineStatuses, schedulerStatus } from '../../src/schedule/pipeline-status.js';
import { SCHEDULER_LEASE, SCHEDULER_STATE } from '../../src/schedule/scheduler.js';
import { addFile, filePipeline, makeEnv, stageHooks, type TestEnv } from './helpers.js';

let env: TestEnv;
beforeEach(async () => {
  env = await makeEnv();
});
afterEach(async () => {
  await env.dispose();
});

test('status shows last run, next run, cursor, lease holder and open rejects', async () => {
  const p = filePipeline('accounts', { rejectThreshold: { maxRejectedRatio: 0.5 } });
  const q = filePipeline('contacts', { every: '1h' });
  await addFile(env, 'accounts', '2026-11-26T09:00:00Z', 3);
  stageHooks.set('accounts', (ctx) => {
    ctx.reject([
      {
        stage: 'test-files',
        reason: 'lookup.target_missing',
        message: 'No account `A-9`.',
        sourceFile: ctx.window.items[0]!.id,
        rowNumber: 2,
      },
    ]);
  });
  const second = await env.run(p, { mode: 'scheduled' });
  assert.equal(second.status, 'succeeded');
  // A lease skip is not what "last run" means.
  env.state.recordSkipped('accounts', 'scheduled', 'x:1', 'held');
  // Someone holds the contacts lease right now.
  const lease = env.state.acquireLease(pipelineLeaseName('contacts'), 'other-host:4242', 60_000);
  assert.ok(lease);
  const now = Date.parse('2026-11-26T10:07:00Z');
  const [a, c] = pipelineStatuses([p, q], env.state, { nowMs: Math.max(now, Date.now()) });
  assert.equal(a!.lastRun?.runId, second.runId);
  assert.equal(a!.lastRun?.status, 'succeeded');
  assert.equal(a!.cursor?.source, 'lake:in/accounts');
  assert.equal(a!.cursor?.value, '2026-11-26T09:00:00Z');
  assert.equal(a!.cursor?.processedItems, 1);
  assert.equal(a!.openRejects, 1);
  assert.equal(a!.lease, null);
  assert.equal(c!.lastRun, null);
  assert.equal(c!.lease?.holder, 'other-host:4242');
  // No scheduler runs: there is no next run to promise.
  assert.equal(pipelineStatuses([p, q], env.state, { nowMs: now })[0]!.nextRun, null);
  assert.equal(schedulerStatus(env.state, now).running, false);
  // A scheduler holds its lease: the next runs are its next boundaries.
  assert.ok(env.state.acquireLease(SCHEDULER_LEASE, 'sched-host:77', 60_000, now));
  env.state.setValue(
    SCHEDULER_STATE,
    'lastTick',
    JSON.stringify({ at: '2026-11-26T10:00:00.000Z', holder: 'sched-host:77', due: ['accounts'] }),
  );
  const fixed = pipelineStatuses([p, q], env.state, { nowMs: now });
  assert.equal(fixed[0]!.nextRun, '2026-11-26T10:15:00.000Z');
  assert.equal(fixed[1]!.nextRun, '2026-11-26T11:00:00.000Z');
  const scheduler = schedulerStatus(env.state, now);
  assert.equal(scheduler.running, true);
  assert.equal(scheduler.holder, 'sched-host:77');
  assert.equal(scheduler.lastTick?.at, '2026-11-26T10:00:00.000Z');
  // Its lease lapsed (the process died): not running any more, the last tick is still known.
  const later = schedulerStatus(env.state, now + 61_000);
  assert.equal(later.running, false);
  assert.equal(later.lastTick?.holder, 'sched-host:77');
});

test('ferry schedule stops cleanly on SIGINT: the loop ends, exit code 0, the stop is logged', async () => {
  const root = path.resolve(import.meta.dirname, '../..');
  const args = [
    '--import',
    'tsx',
    path.join(root, 'src/cli/main.ts'),
    'schedule',
    '--pipelines',
    'accounts-outbound',
    '--every',
    '1s',
    '--json',
  ];
  // A lake folder that does not exist is a configuration error, so the (empty) lake is created first.
  mkdirSync(path.join(env.dir, 'lake'), { recursive: true });
  const proc = spawn(
    process.execPath,
    [...args, '--lake', path.join(env.dir, 'lake'), '--state', path.join(env.dir, 'state')],
    {
      cwd: root,
      env: { ...process.env, FERRY_ALERT_WEBHOOK: '' },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  const lines: string[] = [];
  let buffer = '';
  let signalled = false;
  let whileRunning: ReturnType<typeof schedulerStatus> | undefined;
  proc.stdout.on('data', (d) => {
    buffer += d;
    const parts = buffer.split('\n');
    buffer = parts.pop()!;
    for (const line of parts) {
      lines.push(line);
      if (!signalled && JSON.parse(line).event === 'run') {
        signalled = true;
        whileRunning = schedulerStatus(env.state, Date.now());
        proc.kill('SIGINT');
      }
    }
  });
  let stderr = '';
  proc.stderr.on('data', (d) => {
    stderr += d;
  });
  const code = await new Promise<number | null>((resolve) => proc.on('exit', (c) => resolve(c)));
  assert.equal(code, 0, stderr);
  const events = lines.map(
    (l) => JSON.parse(l) as { event: string; reason?: string; status?: string; pipeline?: string },
  );
  assert.equal(events[0]!.event, 'tick');
  assert.equal(events.find((e) => e.event === 'run')?.status, 'succeeded');
  assert.deepEqual(events.at(-1), { event: 'stopped', ticks: 1, reason: 'signal' });
  // While it ran, `status` saw it hold the scheduler lease and tick; once stopped it released the lease.
  assert.equal(whileRunning?.running, true);
  assert.match(whileRunning?.holder ?? '', new RegExp(`:${proc.pid}$`));
  assert.deepEqual(whileRunning?.lastTick?.due, ['accounts-outbound']);
  assert.equal(schedulerStatus(env.state, Date.now()).running, false);
});
