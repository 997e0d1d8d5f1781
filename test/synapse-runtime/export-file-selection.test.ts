/**
 * Review defect 11 on the exported inbound pipeline, run end to end on the runtime (`pl_regions_inbound`, every SQL
 * step through its DuckDB rendering, a temporary lake, the Dataverse emulator):
 * - files Spark has not committed (under `_temporary/`) are never read;
 * - a file that becomes visible after the cursor passed its modified time (a rename-based commit keeps the older
 *   time) is still read, once: selection is by `ferry.processed_items`, not by modified time;
 * - a processed file is not read again, and a run with nothing new copies nothing.
 */
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, utimes } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { DuckDbStaging, duckLiteral } from '../../src/dialects/duckdb/driver.js';
import { type RunningEmulator, startEmulator } from '../../src/emulator/server.js';
import type { PipelineRun } from '../../src/export/synapse/runtime/run-records.js';
import type { SynapseRuntime } from '../../src/export/synapse/runtime/synapse-runtime.js';
import { describeRun, openDeployedRuntime } from './real-export.js';

describe('export defect 11: inbound file selection by processed items', () => {
  let dir: string;
  let lake: string;
  let emulator: RunningEmulator;
  let rt: SynapseRuntime;
  let files: DuckDbStaging;

  /** A delta file of one region at `rel` under the lake's `inbound/regions`, last modified `modified`. */
  async function deltaFile(rel: string, code: string, modified: Date): Promise<void> {
    const full = path.join(lake, 'inbound', 'regions', rel);
    await mkdir(path.dirname(full), { recursive: true });
    await files.run(
      `COPY (SELECT ${duckLiteral(code)} AS region_code, 'Region ' || ${duckLiteral(code)} AS region_name, CAST(NULL AS VARCHAR) AS parent_region_code, TIMESTAMP '2026-11-20 07:00:00' AS modified_at) TO ${duckLiteral(full)} (FORMAT parquet)`,
    );
    await utimes(full, modified, modified);
  }
  const codes = () =>
    emulator.store
      .rows('ferry_region')
      .map((r) => String(r.attributes.ferry_code))
      .sort();
  const copiesOf = (run: PipelineRun) => run.activityRuns.filter((a) => a.activityName === 'CopyParquetToStaging');

  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'synapse-files-'));
    lake = path.join(dir, 'lake');
    await mkdir(lake, { recursive: true });
    files = await DuckDbStaging.open({ path: ':memory:', threads: 1, memoryLimit: '256MB' });
    emulator = await startEmulator({ metadataDir: 'fixtures/metadata' });
    rt = await openDeployedRuntime({
      workspaceDir: path.join(dir, 'ws'),
      // The runtime's clock runs an hour ahead of the files' modified times.
      startTime: new Date(Date.now() + 3_600_000).toISOString(),
      dataverseUrl: emulator.url,
      fileSystems: (settings) => ({ [settings.lakeFileSystem]: lake }),
    });
  });
  after(async () => {
    await rt.close();
    await emulator.close();
    await files.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('reads committed files only, never `_temporary/` part files', async () => {
    const now = new Date();
    await deltaFile('2026-11-20T08-00-00Z.parquet', 'COMMITTED', now);
    await deltaFile('_temporary/0/_temporary/attempt_1/part-00000.parquet', 'UNCOMMITTED', now);
    const run = await rt.runPipeline('pl_regions_inbound', { mode: 'scheduled' });
    assert.equal(run.status, 'Succeeded', describeRun(run));
    assert.deepEqual(codes(), ['COMMITTED']);
  });

  it('a file committed after the cursor passed its modified time is read, once', async () => {
    // Visible only now, with a modified time two hours back: before the cursor the first run saved.
    await deltaFile('2026-11-20T07-00-00Z.parquet', 'LATE', new Date(Date.now() - 2 * 3_600_000));
    const run = await rt.runPipeline('pl_regions_inbound', { mode: 'scheduled' });
    assert.equal(run.status, 'Succeeded', describeRun(run));
    assert.deepEqual(codes(), ['COMMITTED', 'LATE']);
    assert.equal(copiesOf(run).length, 1, 'only the new file is copied; the processed one is not read again');
    const items = await rt.services.sql.duck.all<{ item_id: string }>(
      `SELECT item_id FROM ferry.processed_items WHERE pipeline = 'regions-inbound' ORDER BY item_id`,
    );
    assert.deepEqual(
      items.map((i) => i.item_id),
      ['inbound/regions/2026-11-20T07-00-00Z.parquet', 'inbound/regions/2026-11-20T08-00-00Z.parquet'],
    );
  });

  it('two new files of one run, the later with a column the mapping does not use, are both read', async () => {
    const full = path.join(lake, 'inbound', 'regions', '2026-11-20T10-00-00Z.parquet');
    await files.run(
      `COPY (SELECT 'WIDER' AS region_code, 'Wider file' AS region_name, CAST(NULL AS VARCHAR) AS parent_region_code, TIMESTAMP '2026-11-20 07:00:00' AS modified_at, 'someone' AS region_manager) TO ${duckLiteral(full)} (FORMAT parquet)`,
    );
    await deltaFile('2026-11-20T09-00-00Z.parquet', 'NARROW', new Date());
    const run = await rt.runPipeline('pl_regions_inbound', { mode: 'scheduled' });
    assert.equal(run.status, 'Succeeded', describeRun(run));
    assert.equal(copiesOf(run).length, 2);
    assert.deepEqual(codes(), ['COMMITTED', 'LATE', 'NARROW', 'WIDER']);
  });

  it('a run with nothing new copies nothing and succeeds', async () => {
    const before = emulator.store.count('ferry_region');
    const run = await rt.runPipeline('pl_regions_inbound', { mode: 'scheduled' });
    assert.equal(run.status, 'Succeeded', describeRun(run));
    assert.equal(copiesOf(run).length, 0);
    assert.equal(emulator.store.count('ferry_region'), before);
  });
});
