import assert from 'node:assert/strict';
import { test } from 'node:test';
import { exitCodeForReport, reportLine } from '../../src/cli/format.js';
import { emptyCounts } from '../../src/core/counts.js';
import type { RunReport } from '../../src/core/runner.js';

function report(overrides: Partial<RunReport>): RunReport {
  return {
    runId: 'r1',
    pipeline: 'regions-inbound',
    mode: 'manual',
    status: 'succeeded',
    window: { source: 'lake:inbound/regions', items: 1, first: 'a', last: 'a', cursorBefore: null, cursorAfter: 'a' },
    counts: emptyCounts(),
    rejectsByReason: {},
    durationMs: 500,
    metrics: {},
    ...overrides,
  };
}

test('a run line accounts for every row read: a rerun whose rows were all applied shows them as skipped-stale', () => {
  const line = reportLine(report({ counts: { ...emptyCounts(), read: 4, staged: 4, skippedStale: 4 } }));
  assert.equal(
    line,
    'regions-inbound: succeeded, run r1, items 1, read 4, converted 0 upserted 0 skipped-stale 4, rejected 0, 0.5s',
  );
});

test('an empty run says so in a short line; an outbound run shows written and deleted', () => {
  assert.equal(
    reportLine(report({ window: { ...report({}).window, items: 0 } })),
    'regions-inbound: succeeded, run r1, items 0, read 0, rejected 0, 0.5s',
  );
  assert.match(
    reportLine(report({ pipeline: 'accounts-outbound', counts: { ...emptyCounts(), read: 13, written: 24 } })),
    /, read 13, written 24 deleted 0, rejected 0,/,
  );
});

test('exit codes by run status: held_back 4, rejects_exceeded 3, retryable failure 75, failure 1', () => {
  assert.equal(exitCodeForReport(report({})), 0);
  assert.equal(exitCodeForReport(report({ status: 'held_back' })), 4);
  assert.equal(exitCodeForReport(report({ status: 'rejects_exceeded' })), 3);
  assert.equal(
    exitCodeForReport(report({ status: 'failed', error: { code: 'x', message: 'm', retryable: true } })),
    75,
  );
  assert.equal(
    exitCodeForReport(report({ status: 'failed', error: { code: 'x', message: 'm', retryable: false } })),
    1,
  );
});
