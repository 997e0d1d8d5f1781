/**
 * The real exported outbound pipelines run end to end on the runtime over the Synapse Link CSV fixture
 * (`fixtures/synapse-link/incremental-with-deletes`): every SQL step through its DuckDB rendering.
 */
import assert from 'node:assert/strict';
import { cp, mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { loadPipelines } from '../../src/core/pipeline-loader.js';
import { loadExportSettings } from '../../src/export/synapse/export-settings.js';
import type { PipelineRun } from '../../src/export/synapse/runtime/run-records.js';
import { SynapseRuntime } from '../../src/export/synapse/runtime/synapse-runtime.js';
import { synapseDataSources, synapseStepRenderings } from '../../src/export/synapse/step-renderings.js';

const FIXTURE = 'fixtures/synapse-link/incremental-with-deletes';

const describeRun = (r: PipelineRun) =>
  r.activityRuns
    .map((a) => `${a.activityName} ${a.status} ${a.error?.errorCode ?? ''} ${a.error?.message.slice(0, 400) ?? ''}`)
    .join('\n');

describe('the exported outbound pipelines, run on the runtime', () => {
  let dir: string;
  let link: string;
  let warehouse: string;
  let rt: SynapseRuntime;
  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'synapse-outbound-'));
    link = path.join(dir, 'link');
    warehouse = path.join(dir, 'warehouse');
    await cp(FIXTURE, link, { recursive: true });
    const settings = await loadExportSettings('synapse/settings.json');
    rt = await SynapseRuntime.open({
      artifacts: 'synapse',
      workspaceDir: path.join(dir, 'ws'),
      startTime: '2026-01-01T01:05:00Z',
      stepRenderings: await synapseStepRenderings(await loadPipelines('pipelines'), {
        settings,
        metadataDir: 'fixtures/metadata',
      }),
      dataSources: synapseDataSources(settings),
      fileSystems: { [settings.synapseLinkFileSystem]: link, [settings.warehouseFileSystem]: warehouse },
    });
    await rt.runSetup(['sql/tsql/setup/ferry-state.sql']);
  });
  after(async () => {
    await rt.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('accounts-outbound runs', async () => {
    const run = await rt.runPipeline('pl_accounts_outbound', { mode: 'manual' });
    assert.equal(run.status, 'Succeeded', describeRun(run));
    console.log(await readdir(warehouse, { recursive: true }));
  });
});
