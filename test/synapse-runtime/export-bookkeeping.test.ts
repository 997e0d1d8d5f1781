/**
 * Review defect 12 on the exported pipelines: a failure anywhere marks the run failed (not only a failure of the
 * last activity), and a run that succeeds is not marked failed. The SQL steps are recorded, not executed (see
 * RecordingSqlEngine): what is under test is which activities the orchestration runs.
 */
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { DuckDbStaging } from '../../src/dialects/duckdb/driver.js';
import type { ArtifactStore } from '../../src/export/synapse/runtime/artifact-store.js';
import type { JsonObject } from '../../src/export/synapse/runtime/expression/json-value.js';
import { SynapseRuntime } from '../../src/export/synapse/runtime/synapse-runtime.js';
import { loadRealStore, RecordingSqlEngine } from './real-export.js';

const ANSWERS = (where: string) =>
  where.includes('LookupWatermark')
    ? [{ cursor_value: '2026-01-01T00.00.00Z' }]
    : where.includes('FinishRun')
      ? [{ over_threshold: 0, rejected: 0, written: 0 }]
      : where.includes('ExtractToParquet')
        ? [{ rows_written: 0, rows_deleted: 0 }] // the extracts' last result set (their rows, for FinishRun)
        : [];

describe('export defect 12: run bookkeeping', () => {
  let real: ArtifactStore;
  let dir: string;
  before(async () => {
    real = await loadRealStore();
    dir = await mkdtemp(path.join(tmpdir(), 'synapse-book-'));
  });
  after(async () => rm(dir, { recursive: true, force: true }));

  async function run(pipeline: string, failing: string | undefined) {
    const ws = path.join(dir, `${pipeline}-${failing ?? 'ok'}`.replace(/\W+/g, '_'));
    const fs = String(
      (
        (real.get('pipeline', 'pl_accounts_outbound').properties.activities as JsonObject[]).find(
          (a) => a.name === 'LookupChangelog',
        )!.typeProperties as JsonObject as { dataset: { parameters: JsonObject } }
      ).dataset.parameters.fileSystem,
    );
    const changelog = path.join(ws, 'storage', fs, 'Changelog');
    await mkdir(changelog, { recursive: true });
    await writeFile(path.join(changelog, 'changelog.info'), '2026-01-01T00.30.00Z');
    // One completed folder with data (its model.json) in the window, so the extracts run.
    await mkdir(path.join(ws, 'storage', fs, '2026-01-01T00.15.00Z'), { recursive: true });
    await writeFile(path.join(ws, 'storage', fs, '2026-01-01T00.15.00Z', 'model.json'), '{}');
    const duck = await DuckDbStaging.open({ path: ':memory:', threads: 1, memoryLimit: '256MB' });
    const sql = new RecordingSqlEngine(duck, (where) => failing !== undefined && where.includes(failing), ANSWERS);
    const rt = await SynapseRuntime.open({
      artifacts: real,
      workspaceDir: ws,
      startTime: '2026-01-01T01:00:00Z',
      sqlEngine: sql,
    });
    try {
      const r = await rt.runPipeline(pipeline, { mode: 'manual' });
      const marked = r.activityRuns.filter((a) => a.activityName === 'MarkRunFailed');
      return { run: r, marked, steps: sql.steps.map((s) => s.where), texts: sql.steps.map((s) => s.text) };
    } finally {
      await rt.close();
      await duck.close();
    }
  }

  it('inbound: a failure before the copies (the watermark lookup) marks the run failed', async () => {
    const { run: r, marked } = await run('pl_accounts_inbound', 'LookupWatermark');
    assert.equal(r.status, 'Failed');
    assert.deepEqual(
      marked.map((a) => a.status),
      ['Succeeded'],
      'MarkRunFailed ran once after the failure',
    );
  });

  it('outbound: a failure of the first of two extracts marks the run failed', async () => {
    const { run: r, marked, steps } = await run('pl_accounts_outbound', 'ExtractToParquet_account`');
    assert.equal(r.status, 'Failed');
    assert.ok(steps.some((s) => s.includes('ExtractToParquet_account`')));
    assert.deepEqual(
      marked.map((a) => a.status),
      ['Succeeded'],
    );
  });

  it('outbound: a run that succeeds is not marked failed', async () => {
    const { run: r, marked } = await run('pl_accounts_outbound', undefined);
    assert.equal(r.status, 'Succeeded', r.message);
    assert.ok(marked.every((a) => a.status === 'Skipped'));
  });

  it('defect 1: the outbound cursor is the last folder processed, not the one still being written', async () => {
    // Completed: 2026-01-01T00.15.00Z; being written (changelog.info): 2026-01-01T00.30.00Z.
    const { run: r, texts } = await run('pl_accounts_outbound', undefined);
    assert.equal(r.status, 'Succeeded', r.message);
    const finish = texts.find((t) => t.includes('ferry-step: accounts-outbound:finish-run'))!;
    assert.match(finish, /N'2026-01-01T00\.15\.00Z' AS \[value\]/);
    assert.doesNotMatch(finish, /N'2026-01-01T00\.30\.00Z' AS \[value\]/);
  });

  it('the cursor never moves backwards: FinishRun saves the later of the stored cursor and the window end', () => {
    for (const p of ['pl_accounts_inbound', 'pl_accounts_outbound']) {
      const finish = (real.get('pipeline', p).properties.activities as JsonObject[]).find(
        (a) => a.name === 'FinishRun',
      )!;
      const text = JSON.stringify(finish.typeProperties);
      assert.match(text, /@\{if\(greater\(activity\('LookupWatermark'\)\.output\.firstRow\.cursor_value, /, p);
    }
  });
});
