/**
 * The real exported inbound pipelines run end to end on the runtime — every SQL step through its DuckDB rendering
 * (the step id in the artifact), the lake fixtures, the Dataverse emulator over HTTP.
 * - review defect 2: a window without a new file succeeds (and moves on) instead of failing on a missing table;
 * - review defect 8: the key-map copy bootstraps against an empty Dataverse table (explicit structure).
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { type RunningEmulator, startEmulator } from '../../src/emulator/server.js';
import type { SynapseRuntime } from '../../src/export/synapse/runtime/synapse-runtime.js';
import { describeRun, openDeployedRuntime } from './real-export.js';

describe('the exported inbound pipelines, run on the runtime', () => {
  let dir: string;
  let emulator: RunningEmulator;
  let rt: SynapseRuntime;
  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'synapse-realrun-'));
    emulator = await startEmulator({ metadataDir: 'fixtures/metadata' });
    rt = await openDeployedRuntime({
      workspaceDir: dir,
      // The fixture files' modified times are when they were checked out: the clock starts after them.
      startTime: new Date(Date.now() + 3_600_000).toISOString(),
      dataverseUrl: emulator.url,
      fileSystems: (settings) => ({ [settings.lakeFileSystem]: 'fixtures' }),
    });
  });
  after(async () => {
    await rt.close();
    await emulator.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('currencies-inbound writes its rows, then a window with no new file succeeds (defect 2)', async () => {
    const first = await rt.runPipeline('pl_currencies_inbound', { mode: 'manual' });
    assert.equal(first.status, 'Succeeded', describeRun(first));
    const written = emulator.store.count('transactioncurrency');
    assert.ok(written > 0);
    const second = await rt.runPipeline('pl_currencies_inbound', { mode: 'manual' });
    assert.equal(second.status, 'Succeeded', describeRun(second));
    assert.ok(
      second.activityRuns.every((a) => a.activityName !== 'CopyParquetToStaging'),
      'nothing to copy',
    );
    assert.equal(emulator.store.count('transactioncurrency'), written);
    const runs = await rt.services.sql.duck.all<{ status: string }>(
      `SELECT status FROM ferry.runs WHERE pipeline = 'currencies-inbound' ORDER BY started_at`,
    );
    assert.deepEqual(
      runs.map((r) => r.status),
      ['succeeded', 'succeeded'],
    );
  });

  it('regions-inbound reads its key map from an empty ferry_region table (defect 8)', async () => {
    assert.equal(emulator.store.count('ferry_region'), 0);
    const run = await rt.runPipeline('pl_regions_inbound', { mode: 'manual' });
    const keymap = run.activityRuns.filter((a) => a.activityName === 'CopyKeyMap_ferry_region');
    assert.deepEqual(
      keymap.map((a) => a.status),
      ['Succeeded'],
      describeRun(run),
    );
    assert.ok(emulator.store.count('ferry_region') > 0);
  });
});
