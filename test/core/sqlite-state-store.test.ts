import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, it } from 'node:test';
import { SqliteStateStore } from '../../src/connectors/state/sqlite-state-store.js';
import { emptyCounts } from '../../src/core/counts.js';

describe('SqliteStateStore', () => {
  let dir: string;
  let store: SqliteStateStore;
  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ferry-state-'));
    store = SqliteStateStore.openIn(dir);
  });
  afterEach(() => {
    store.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  const window = {
    source: 'lake:in',
    items: [
      { id: 'in/a.parquet', size: 10, modifiedMs: 1 },
      { id: 'in/b.parquet', size: 20, modifiedMs: 2 },
    ],
    cursorBefore: null,
    cursorAfter: 'b',
  };

  it('marks items processed and moves the cursor only when asked', () => {
    const run = store.startRun({ pipeline: 'p', mode: 'manual', window, holder: 'h' });
    assert.equal(run.status, 'running');
    store.finishRun(run.id, {
      status: 'failed',
      counts: emptyCounts(),
      rejectsByReason: {},
      markProcessed: false,
      moveCursor: false,
    });
    assert.equal(store.processedItems('p', 'lake:in').size, 0);
    assert.equal(store.getCursor('p', 'lake:in'), null);

    const again = store.startRun({ pipeline: 'p', mode: 'manual', window, holder: 'h' });
    store.finishRun(again.id, {
      status: 'succeeded',
      counts: { ...emptyCounts(), read: 5 },
      rejectsByReason: {},
      markProcessed: true,
      moveCursor: true,
      heldBack: ['in/b.parquet'],
    });
    assert.deepEqual([...store.processedItems('p', 'lake:in').keys()], ['in/a.parquet']);
    assert.equal(store.getCursor('p', 'lake:in'), 'b');
    assert.equal(store.getRun(again.id)!.counts.read, 5);
  });

  it('gives a lease to one holder at a time, with a growing fencing token', () => {
    const a = store.acquireLease('pipeline:p', 'a', 1000, 0);
    assert.ok(a);
    assert.equal(store.acquireLease('pipeline:p', 'b', 1000, 500), null);
    assert.equal(store.renewLease('pipeline:p', a.token, 1000, 900), true);
    assert.equal(store.acquireLease('pipeline:p', 'b', 1000, 1500), null, 'renewed lease still held');
    const b = store.acquireLease('pipeline:p', 'b', 1000, 2000);
    assert.ok(b && b.token > a.token, 'expired lease taken over with a higher token');
    assert.equal(store.renewLease('pipeline:p', a.token, 1000, 2100), false, 'stale holder is fenced off');
    store.releaseLease('pipeline:p', a.token);
    assert.equal(store.getLease('pipeline:p')?.holder, 'b', 'stale release does not drop the new lease');
  });

  it('keeps rejects as data and supersedes them when the same file is processed again', () => {
    const r1 = store.startRun({ pipeline: 'p', mode: 'manual', window, holder: 'h' });
    store.addRejects(r1.id, 'p', [
      {
        stage: 'convert',
        reason: 'string.too_long',
        message: 'too long',
        key: 'A1',
        sourceFile: 'in/a.parquet',
        rowNumber: 3,
        row: { big: 12n },
      },
    ]);
    const [stored] = store.listRejects({ runId: r1.id });
    assert.equal(stored!.reason, 'string.too_long');
    assert.deepEqual(stored!.row, { big: '12' });
    assert.equal(store.countOpenRejects('p'), 1);
    const r2 = store.startRun({ pipeline: 'p', mode: 'manual', window, holder: 'h' });
    assert.equal(store.supersedeRejects('p', ['in/a.parquet'], r2.id), 1);
    assert.equal(store.countOpenRejects('p'), 0);
  });

  it('marks runs left running by a dead process as abandoned', () => {
    const r = store.startRun({ pipeline: 'p', mode: 'scheduled', window, holder: 'h' });
    assert.deepEqual(store.abandonRunningRuns('p'), [r.id]);
    assert.equal(store.getRun(r.id)!.status, 'abandoned');
  });

  it('lets a second process read while the first writes (WAL)', () => {
    const other = SqliteStateStore.openIn(dir);
    try {
      const r = store.startRun({ pipeline: 'p', mode: 'manual', window, holder: 'h' });
      assert.equal(other.getRun(r.id)?.pipeline, 'p');
    } finally {
      other.close();
    }
  });
});
