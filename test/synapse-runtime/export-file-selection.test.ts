/**
 * Review defect 11 on the exported inbound copy: files Spark has not committed (under `_temporary/`) are not read.
 * The real LookupWatermark → SetWindowEnd → CopyParquetToStaging activities run on the runtime over a lake folder
 * holding a committed file and an uncommitted part file; the watermark lookup is answered by a recording engine.
 */
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { DuckDbStaging, duckLiteral } from '../../src/dialects/duckdb/driver.js';
import type { ArtifactStore } from '../../src/export/synapse/runtime/artifact-store.js';
import type { JsonObject } from '../../src/export/synapse/runtime/expression/json-value.js';
import { SynapseRuntime } from '../../src/export/synapse/runtime/synapse-runtime.js';
import { loadRealStore, RecordingSqlEngine, realActivity, storeWith } from './real-export.js';

describe('export defect 11: inbound file selection', () => {
  let real: ArtifactStore;
  let dir: string;
  before(async () => {
    real = await loadRealStore();
    dir = await mkdtemp(path.join(tmpdir(), 'synapse-files-'));
  });
  after(async () => rm(dir, { recursive: true, force: true }));

  it('reads committed files only, never `_temporary/` part files', async () => {
    const pipeline = 'pl_accounts_inbound';
    const copy = realActivity(real, pipeline, 'CopyParquetToStaging');
    const input = (copy.inputs as JsonObject[])[0]!.parameters as JsonObject;
    const folder = String(input.folderPath);
    const lake = path.join(dir, 'storage', String(input.fileSystem));
    const duck = await DuckDbStaging.open({ path: ':memory:', threads: 1, memoryLimit: '256MB' });
    const write = async (rel: string, key: string) => {
      const full = path.join(lake, folder, rel);
      await mkdir(path.dirname(full), { recursive: true });
      await duck.run(
        `COPY (SELECT ${duckLiteral(key)} AS account_no, 'x' AS account_name) TO ${duckLiteral(full)} (FORMAT parquet)`,
      );
    };
    await write('2026-01-01T00-00-00Z.parquet', 'committed');
    await write('_temporary/0/_temporary/attempt_1/part-00000.parquet', 'uncommitted');
    const activities = ['LookupWatermark', 'SetWindowEnd', 'CopyParquetToStaging'].map((n) =>
      realActivity(real, pipeline, n),
    );
    activities[0]!.dependsOn = [];
    const p = real.get('pipeline', pipeline).properties;
    const store = storeWith(real, {
      pipeline: [
        { name: 'pl_select', properties: { parameters: p.parameters ?? {}, variables: p.variables ?? {}, activities } },
      ],
    });
    const sql = new RecordingSqlEngine(
      duck,
      () => false,
      (w) => (w.includes('LookupWatermark') ? [{ cursor_value: '1900-01-01T00:00:00Z' }] : []),
    );
    const rt = await SynapseRuntime.open({
      artifacts: store,
      workspaceDir: dir,
      startTime: new Date(Date.now() + 3_600_000).toISOString(),
      sqlEngine: sql,
    });
    try {
      const run = await rt.runPipeline('pl_select');
      assert.equal(run.status, 'Succeeded', run.message);
      const table = String(((copy.outputs as JsonObject[])[0]!.parameters as JsonObject).tableName);
      const rows = await duck.all<{ account_no: string }>(`SELECT account_no FROM dbo."${table}" ORDER BY 1`);
      assert.deepEqual(
        rows.map((r) => r.account_no),
        ['committed'],
      );
    } finally {
      await rt.close();
      await duck.close();
    }
  });
});
