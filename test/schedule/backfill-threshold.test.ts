import assert from 'node:assert/strict';
import { afterEach, beforeEach, test } from 'node:test';
import { silentLogger } from '../../src/core/log.js';
import type { StageContext } from '../../src/core/stage.js';
import { openRunStaging } from '../../src/dialects/duckdb/driver.js';
import { planBackfill, runBackfill } from '../../src/schedule/backfill.js';
import { filePipeline, makeEnv, stageHooks, type TestEnv, testRegistry } from './helpers.js';

// The reject threshold of a backfill is judged over its whole range, as a scheduled run over the same files judges
// its window; a window with rejects is recorded as done only when the range is within the threshold.

let env: TestEnv;
beforeEach(async () => {
  env = await makeEnv();
});
afterEach(async () => {
  await env.dispose();
});

const MIN = 60_000;

/** A file of `good` lines and `bad` lines; the hook below rejects the `BAD` ones. */
async function addMixed(iso: string, good: number, bad: number): Promise<void> {
  const name = `${iso.replaceAll(':', '-')}.txt`;
  const lines = [
    ...Array.from({ length: good }, (_, i) => `ok#${i}`),
    ...Array.from({ length: bad }, (_, i) => `BAD#${i}`),
  ];
  await env.lake.write(`in/accounts/${name}`, lines.join('\n'));
}

/** Rejects every `BAD` line of the window's files (as a conversion stage would), before the sink counts the rows. */
function rejectBadLines(): void {
  stageHooks.set('accounts', async (ctx: StageContext) => {
    for (const item of ctx.window.items) {
      const lines = (await ctx.lake.readText(item.id)).split('\n');
      ctx.reject(
        lines
          .map((line, i) => ({ line, i }))
          .filter((l) => l.line.startsWith('BAD'))
          .map((l) => ({
            stage: 'test-files',
            reason: 'test.bad',
            message: 'bad line',
            sourceFile: item.id,
            rowNumber: l.i + 1,
          })),
      );
    }
  });
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

// 18 rows, 4 rejected (22 %): the second window alone is 3 of 4 (75 %).
async function seed(): Promise<void> {
  await addMixed('2026-11-26T09:05:00Z', 10, 0);
  await addMixed('2026-11-26T09:20:00Z', 1, 3);
  await addMixed('2026-11-26T09:50:00Z', 3, 1);
}

test('a backfill is judged like the scheduled run over the same files, however the range is windowed', async () => {
  const p = filePipeline('accounts', { rejectThreshold: { maxRejectedRatio: 0.5 } });
  await seed();
  rejectBadLines();
  const scheduled = await env.run(p, { mode: 'scheduled' });
  assert.equal(scheduled.status, 'succeeded');
  assert.deepEqual([scheduled.counts.read, scheduled.counts.rejected], [18, 4]);
  for (const windowMs of [15 * MIN, 60 * MIN, 5 * MIN]) {
    const result = await runBackfill(p, options({ windowMs }));
    assert.equal(result.status, 'succeeded', `window ${windowMs / MIN} min`);
    assert.ok(result.windows.every((w) => w.outcome === 'done'));
    const sum = result.windows.reduce((n, w) => n + (w.counts?.rejected ?? 0), 0);
    assert.equal(sum, 4);
  }
});

test('over the threshold: windows with rejects are not recorded, and the same command runs exactly them again', async () => {
  const p = filePipeline('accounts', { rejectThreshold: { maxRejectedRatio: 0.1 } });
  await seed();
  rejectBadLines();
  assert.equal((await env.run(p, { mode: 'scheduled' })).status, 'rejects_exceeded');

  const first = await runBackfill(p, options());
  assert.equal(first.status, 'rejects_exceeded');
  assert.deepEqual(
    first.windows.map((w) => w.outcome),
    ['done', 'rejects_exceeded', 'done', 'rejects_exceeded'],
  );
  const plan = await planBackfill(p, options());
  assert.deepEqual(
    plan.windows.map((w) => w.done),
    [true, false, true, false],
  );

  const runsBefore = env.state.listRuns({ pipeline: 'accounts' }).length;
  const again = await runBackfill(p, options());
  assert.equal(again.status, 'rejects_exceeded');
  assert.deepEqual(
    again.windows.map((w) => w.outcome),
    ['already-done', 'rejects_exceeded', 'already-done', 'rejects_exceeded'],
  );
  assert.equal(env.state.listRuns({ pipeline: 'accounts' }).length, runsBefore + 2, 'only the two windows ran');

  // The cause is fixed (the rows are no longer rejected): the same command finishes exactly those windows.
  stageHooks.delete('accounts');
  const fixed = await runBackfill(p, options());
  assert.equal(fixed.status, 'succeeded');
  assert.deepEqual(
    fixed.windows.map((w) => w.outcome),
    ['already-done', 'done', 'already-done', 'done'],
  );
  assert.deepEqual(
    (await runBackfill(p, options())).windows.map((w) => w.outcome),
    ['already-done', 'already-done', 'already-done', 'already-done'],
  );
});

test('a window that fails is not recorded, nor are the windows with rejects before it; the rerun repeats them', async () => {
  const p = filePipeline('accounts', { rejectThreshold: { maxRejectedRatio: 0.5 } });
  await seed();
  rejectBadLines();
  const reject = stageHooks.get('accounts')!;
  stageHooks.set('accounts', async (ctx) => {
    if (ctx.window.items.some((i) => i.id.includes('09-50-00Z'))) throw new Error('sink down');
    await reject(ctx);
  });
  const failed = await runBackfill(p, options());
  assert.equal(failed.status, 'failed');
  assert.deepEqual(
    failed.windows.map((w) => w.outcome),
    ['done', 'unjudged', 'done', 'failed'],
  );
  rejectBadLines();
  const rerun = await runBackfill(p, options());
  assert.equal(rerun.status, 'succeeded');
  assert.deepEqual(
    rerun.windows.map((w) => w.outcome),
    ['already-done', 'done', 'already-done', 'done'],
  );
});
