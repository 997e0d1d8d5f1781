/**
 * Review defect 15 on an exported Delta outbound pipeline (`contacts-outbound` of the export test fixtures reads
 * Synapse Link Delta): the window is the table's version in `_delta_log`, as the local runner reads Delta, not
 * `SinkModifiedOn <= utcNow()` (rows the Synapse Link Spark job merges later with earlier timestamps were skipped).
 * A tick without a new version extracts nothing; a new commit is extracted whole, into `delta-<table>-v<version>`
 * as the local runner names the window. The SQL steps are recorded, not executed (the runtime reads Synapse Link
 * CSV only): what is under test is the orchestration and the extract's window.
 */
import assert from 'node:assert/strict';
import { cpSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { loadPipelines } from '../../src/core/pipeline-loader.js';
import { DuckDbStaging } from '../../src/dialects/duckdb/driver.js';
import { DEFAULT_SETTINGS } from '../../src/export/synapse/export-settings.js';
import { ArtifactStore } from '../../src/export/synapse/runtime/artifact-store.js';
import { SynapseRuntime } from '../../src/export/synapse/runtime/synapse-runtime.js';
import { synapseStepRenderings } from '../../src/export/synapse/step-renderings.js';
import { exportSynapse } from '../../src/export/synapse/synapse-exporter.js';
import { RecordingSqlEngine } from './real-export.js';

const PIPELINES = 'test/export/fixtures/pipelines';
const V3 = '00000000000000000003';

describe('export defect 15: the Delta outbound window is a table version', () => {
  let dir: string;
  let store: ArtifactStore;
  let cursor = '';
  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'synapse-delta-'));
    const out = await exportSynapse(await loadPipelines(PIPELINES), {
      settings: DEFAULT_SETTINGS,
      metadataDir: 'fixtures/metadata',
    });
    const byKind: Record<string, { name: string; properties: object }[]> = {};
    for (const a of out.artifacts) {
      byKind[a.kind] = [...(byKind[a.kind] ?? []), { name: a.name, properties: a.properties }];
    }
    store = ArtifactStore.fromObjects(byKind);
    // The fixture's Delta table (commits 2 and 3, a checkpoint at 2), as the contact table.
    cpSync(
      'fixtures/delta/synapse-link-demo/deltalake/account_partitioned',
      path.join(dir, 'link', 'deltalake', 'contact_partitioned'),
      { recursive: true },
    );
  });
  after(async () => rm(dir, { recursive: true, force: true }));

  async function run() {
    const duck = await DuckDbStaging.open({ path: ':memory:', threads: 1, memoryLimit: '256MB' });
    const sql = new RecordingSqlEngine(
      duck,
      () => false,
      (where) =>
        where.includes('LookupWatermark')
          ? [{ cursor_value: cursor }]
          : where.includes('ExtractToParquet')
            ? [{ rows_written: 2, rows_deleted: 1 }]
            : where.includes('FinishRun')
              ? [{ over_threshold: 0, rejected: 0, written: 2 }]
              : [],
    );
    const rt = await SynapseRuntime.open({
      artifacts: store,
      workspaceDir: path.join(dir, 'ws'),
      startTime: '2026-01-01T01:00:00Z',
      sqlEngine: sql,
      fileSystems: { [DEFAULT_SETTINGS.synapseLinkFileSystem]: path.join(dir, 'link') },
    });
    try {
      const r = await rt.runPipeline('pl_contacts_outbound', { mode: 'scheduled' });
      assert.equal(
        r.status,
        'Succeeded',
        r.activityRuns.map((a) => `${a.activityName} ${a.status} ${a.error?.message ?? ''}`).join('\n'),
      );
      const extract = sql.steps.find((s) => s.where.includes('ExtractToParquet_contact'));
      const finish = sql.steps.find((s) => s.where.includes('FinishRun'));
      return { extract, finish: finish!.text };
    } finally {
      await rt.close();
      await duck.close();
    }
  }

  it('extracts the current version whole, names the window by it, and records it as the cursor', async () => {
    const { extract, finish } = await run();
    assert.ok(extract, 'a new version is extracted');
    const param = (n: string) => extract.parameters?.find((p) => p.name === n)?.value;
    assert.equal(param('window_end'), V3);
    assert.equal(param('window_name'), 'delta-contact-v3', 'named as the local runner names a Delta window');
    assert.match(finish, new RegExp(`N'${V3}' AS`), 'the cursor is the version');
    assert.match(finish, /DECLARE @rows BIGINT = 2\b/, 'the rows the extract wrote');
    // No row is selected by SinkModifiedOn: a row merged late with an earlier timestamp is in the version.
    assert.doesNotMatch(extract.text, /SinkModifiedOn\] (<|>)/);
    const renderings = await synapseStepRenderings(await loadPipelines(PIPELINES), {
      settings: DEFAULT_SETTINGS,
      metadataDir: 'fixtures/metadata',
    });
    const duckText = renderings('contacts-outbound:extract:contact');
    assert.ok(duckText && typeof duckText !== 'string');
    assert.doesNotMatch(duckText.text, /SinkModifiedOn" AS VARCHAR\) AS TIMESTAMPTZ\) (<|>)/);
  });

  it('a tick without a new version extracts nothing; a new commit is extracted', async () => {
    cursor = V3;
    assert.equal((await run()).extract, undefined);
    writeFileSync(
      path.join(dir, 'link', 'deltalake', 'contact_partitioned', '_delta_log', '00000000000000000004.json'),
      '{}\n',
    );
    const next = await run();
    assert.ok(next.extract);
    assert.equal(next.extract.parameters?.find((p) => p.name === 'window_name')?.value, 'delta-contact-v4');
  });
});
