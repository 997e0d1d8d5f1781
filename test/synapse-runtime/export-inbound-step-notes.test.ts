/**
 * The exported inbound FinishRun step, run on the runtime through its DuckDB rendering: rows the Dataverse copy
 * skipped under fault tolerance are recorded as one `dataverse.copy_skipped` reject whose message says what they
 * are — rows the copy could not convert to the column types — not rows Dataverse refused (a refused row fails the
 * copy; the connector's fault tolerance does not cover it).
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { loadPipelines } from '../../src/core/pipeline-loader.js';
import { loadExportSettings } from '../../src/export/synapse/export-settings.js';
import type { ArtifactStore } from '../../src/export/synapse/runtime/artifact-store.js';
import type { JsonObject } from '../../src/export/synapse/runtime/expression/json-value.js';
import { SynapseRuntime } from '../../src/export/synapse/runtime/synapse-runtime.js';
import { synapseDataSources, synapseStepRenderings } from '../../src/export/synapse/step-renderings.js';
import { loadRealStore, realActivity, storeWith, stubPipeline } from './real-export.js';

describe('inbound FinishRun: the reject for rows the Dataverse copy skipped', () => {
  let real: ArtifactStore;
  let dir: string;
  before(async () => {
    real = await loadRealStore();
    dir = await mkdtemp(path.join(tmpdir(), 'synapse-notes-'));
  });
  after(async () => rm(dir, { recursive: true, force: true }));

  it('names the skipped rows as rows the copy could not convert, with the count and the lake folder', async () => {
    const pipeline = 'pl_regions_inbound';
    const setVariable = (name: string, variable: string, value: string, dependsOn: string): JsonObject => ({
      name,
      type: 'SetVariable',
      dependsOn: [{ activity: dependsOn, dependencyConditions: ['Succeeded'] }],
      userProperties: [],
      typeProperties: { variableName: variable, value },
    });
    // The real bookkeeping around the copies; the copies' counts stand in as variables, as the real branch sets them.
    const finish = realActivity(real, pipeline, 'FinishRun');
    finish.dependsOn = [{ activity: 'SetRowsSkipped', dependencyConditions: ['Succeeded'] }];
    const activities = [
      realActivity(real, pipeline, 'BeginRun'),
      realActivity(real, pipeline, 'LookupWatermark'),
      realActivity(real, pipeline, 'SetWindowEnd'),
      setVariable('SetRowsCopied', 'rowsCopied', '40', 'SetWindowEnd'),
      setVariable('SetRowsSkipped', 'rowsSkipped', '2', 'SetRowsCopied'),
      finish,
    ];
    const settings = await loadExportSettings('synapse/settings.json');
    const rt = await SynapseRuntime.open({
      artifacts: storeWith(real, { pipeline: [stubPipeline(real, pipeline, activities)] }),
      workspaceDir: dir,
      startTime: '2026-11-20T09:00:00Z',
      stepRenderings: await synapseStepRenderings(await loadPipelines('pipelines'), {
        settings,
        metadataDir: 'fixtures/metadata',
      }),
      dataSources: synapseDataSources(settings),
    });
    try {
      await rt.runSetup(['sql/tsql/setup/ferry-state.sql']);
      const run = await rt.runPipeline(pipeline, { mode: 'scheduled' });
      assert.equal(
        run.status,
        'Succeeded',
        run.activityRuns.map((a) => `${a.activityName} ${a.status} ${a.error?.message ?? ''}`).join('\n'),
      );
      const rejects = await rt.services.sql.duck.all<{ reason: string; message: string }>(
        `SELECT reason, message FROM ferry.rejects WHERE pipeline = 'regions-inbound'`,
      );
      assert.equal(rejects.length, 1);
      assert.equal(rejects[0]!.reason, 'dataverse.copy_skipped');
      const message = rejects[0]!.message;
      assert.match(message, /skipped 2 rows it could not convert to the column types/);
      assert.match(message, /errors\/regions-inbound\//);
      assert.doesNotMatch(message, /Dataverse refused 2/, 'skipped rows are not rows the service refused');
    } finally {
      await rt.close();
    }
  });
});
