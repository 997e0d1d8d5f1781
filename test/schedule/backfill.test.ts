import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs/promises';
import path from 'node:path';
import { afterEach, beforeEach, test } from 'node:test';
import { silentLogger } from '../../src/core/log.js';
import { openRunStaging } from '../../src/dialects/duckdb/driver.js';
import { planBackfill, planBackfillWindows, runBackfill } from '../../src/schedule/backfill.js';
import { addFile, deliveries, filePipeline, makeEnv, type TestEnv, testRegistry } from './helpers.js';

let env: TestEnv;
beforeEach(async () => {
  env = await makeEnv();
});
afterEach(async () => {
  await env.dispose();
});

const MIN = 60_000;
const p = filePipeline('accounts');

async function seed(): Promise<string[]> {
  return [
    await addFile(env, 'accounts', '2026-11-26T09:05:00Z', 2),
    await addFile(env, 'accounts', '2026-11-26T09:15:00Z', 3),
    await addFile(env, 'accounts', '2026-11-26T09:50:00Z', 1),
    await addFile(env, 'accounts', '2026-11-26T10:20:00Z', 4), // outside the range
  ];
}

async function outputs(): Promise<Record<string, string>> {
  const dir = path.join(env.lake.root, 'out', 'accounts');
  const out: Record<string, string> = {};
  for (const name of (await fs.readdir(dir).catch(() => [] as string[])).sort()) {
    if (name !== 'deliveries.log') out[name] = await fs.readFile(path.join(dir, name), 'utf8');
  }
  return out;
}

function options(extra: Record<string, unknown> = {}) {
  return {
    config: env.config,
    lake: env.lake,
    state: env.state,
    registry: testRegistry,
    openStaging: (dir: string) => openRunStaging(dir, {}),
    log: silentLogger,
    from: '2026-11-26T09:00:00Z',
    to: '2026-11-26T10:00:00Z',
    windowMs: 15 * MIN,
    ...extra,
  };
}

test('planBackfillWindows splits the range from --from, the last window may be shorter', () => {
  const w = planBackfillWindows(Date.parse('2026-11-26T09:00:00Z'), Date.parse('2026-11-26T09:40:00Z'), 15 * MIN);
  assert.deepEqual(
    w.map((x) => `${x.from}..${x.to}`),
    [
      '2026-11-26T09:00:00Z..2026-11-26T09:15:00Z',
      '2026-11-26T09:15:00Z..2026-11-26T09:30:00Z',
      '2026-11-26T09:30:00Z..2026-11-26T09:40:00Z',
    ],
  );
  assert.throws(() => planBackfillWindows(10, 5, 1000), /must be after/);
});

test('dry run lists windows and files and changes nothing', async () => {
  const files = await seed();
  const plan = await planBackfill(p, options());
  assert.deepEqual(
    plan.windows.map((w) => w.items.map((i) => i.id.split('/').at(-1))),
    [[files[0]], [files[1]], [], [files[2]]],
  );
  assert.equal(env.state.listRuns().length, 0);
  assert.equal(env.state.listValues('backfill:accounts').length, 0);
});

test('backfill over windows already processed: same outputs, cursor and processed items untouched', async () => {
  await seed();
  const scheduled = await env.run(p, { mode: 'scheduled' });
  assert.equal(scheduled.status, 'succeeded');
  const before = await outputs();
  const cursor = env.state.getCursor('accounts', 'lake:in/accounts');
  const processedBefore = [...env.state.processedItems('accounts', 'lake:in/accounts').keys()].sort();
  assert.equal(cursor, '2026-11-26T10:20:00Z');
  const seen: string[] = [];
  const result = await runBackfill(
    p,
    options({ onWindow: (w: { outcome: string; items: number }) => seen.push(`${w.outcome}:${w.items}`) }),
  );
  assert.equal(result.status, 'succeeded');
  assert.deepEqual(seen, ['done:1', 'done:1', 'done:0', 'done:1']);
  assert.deepEqual(await outputs(), before, 'identical sink files');
  assert.equal(env.state.getCursor('accounts', 'lake:in/accounts'), cursor);
  assert.deepEqual([...env.state.processedItems('accounts', 'lake:in/accounts').keys()].sort(), processedBefore);
  const runs = env.state.listRuns({ pipeline: 'accounts' });
  assert.equal(runs.filter((r) => r.mode === 'backfill').length, 4);
  // A backfill that already finished does nothing when asked again.
  const again = await runBackfill(p, options());
  assert.deepEqual(
    again.windows.map((w) => w.outcome),
    ['already-done', 'already-done', 'already-done', 'already-done'],
  );
  assert.equal(env.state.listRuns({ pipeline: 'accounts' }).length, runs.length);
  // A later scheduled run still sees nothing new: the backfill did not reset what was processed.
  assert.equal((await env.run(p, { mode: 'scheduled' })).window.items, 0);
});

function child(killAt: string): Promise<{ code: number | null; signal: NodeJS.Signals | null; stderr: string }> {
  const script = path.join(import.meta.dirname, 'fixtures', 'backfill-child.ts');
  const args = [
    '--import',
    'tsx',
    script,
    env.config.lake,
    env.config.state,
    'accounts',
    '2026-11-26T09:00:00Z',
    '2026-11-26T10:00:00Z',
    String(15 * MIN),
  ];
  return new Promise((resolve, reject) => {
    const proc = spawn(process.execPath, args, {
      env: { ...process.env, FERRY_KILL_AT: killAt },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    proc.stderr.on('data', (d) => {
      stderr += d;
    });
    proc.on('error', reject);
    proc.on('exit', (code, signal) => resolve({ code, signal, stderr }));
  });
}

test('a backfill killed after its second window resumes with the third', async () => {
  await seed();
  const killed = await child('backfill:after-window#2');
  assert.equal(killed.signal, 'SIGKILL', killed.stderr);
  assert.equal(env.state.listValues('backfill:accounts').length, 2);
  const result = await runBackfill(p, options());
  assert.deepEqual(
    result.windows.map((w) => w.outcome),
    ['already-done', 'already-done', 'done', 'done'],
  );
  // Every file in range delivered exactly once over the two processes; the one outside the range never.
  const names = (await deliveries(env, 'accounts')).map((l) => l.split(' ')[0]);
  assert.deepEqual(names.sort(), ['2026-11-26T09-05-00Z.txt', '2026-11-26T09-15-00Z.txt', '2026-11-26T09-50-00Z.txt']);
  assert.equal(env.state.getCursor('accounts', 'lake:in/accounts'), null);
});

test('a backfill killed inside a window repeats that window and loses nothing', async () => {
  const files = await seed();
  const killed = await child('before-commit#2');
  assert.equal(killed.signal, 'SIGKILL', killed.stderr);
  const result = await runBackfill(p, options());
  assert.deepEqual(
    result.windows.map((w) => w.outcome),
    ['already-done', 'done', 'done', 'done'],
  );
  const runs = env.state.listRuns({ pipeline: 'accounts' });
  assert.equal(runs.filter((r) => r.status === 'abandoned').length, 1, 'the killed run is marked abandoned');
  const out = await outputs();
  assert.deepEqual(
    Object.keys(out),
    files.slice(0, 3).map((f) => `${f}.out`),
  );
  assert.equal(out[`${files[1]}.out`]!.split('\n').length, 3);
});
