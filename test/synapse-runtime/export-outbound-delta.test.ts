/**
 * Review defect 15, executed: an exported Delta outbound pipeline (`delta-pipelines/accounts-delta-outbound`, exported
 * with the real exporter) runs end to end in the runtime — ListDeltaLog → FilterDeltaCommits → the extract's CETAS
 * over `OPENROWSET(… FORMAT = 'DELTA')` (the runtime's own Delta reader) → manifest → watermark — on Delta tables
 * written as the Synapse Link Spark conversion writes them (`synapse-link-delta-job.ts`, from the Dataverse
 * emulator's CSV export). The window is the table version: each new version is extracted whole into
 * `delta.<table>-v<version>` (latest row per Id, deletes apart), a row the Spark job merges late with an earlier
 * `SinkModifiedOn` is not skipped, a tick without a new version writes nothing, a checkpoint is read once the
 * commits before it are cleaned up. What serverless refuses (not a Delta root, deletion vectors, column mapping)
 * the runtime refuses by name.
 */
import assert from 'node:assert/strict';
import { cpSync, existsSync, mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { LocalLake } from '../../src/connectors/lake/local-lake.js';
import { DuckDbStaging } from '../../src/dialects/duckdb/driver.js';
import { type RunningEmulator, startEmulator } from '../../src/emulator/server.js';
import { exportSynapseLink } from '../../src/emulator/synapse-link-export.js';
import { loadExportSettings, type SynapseExportSettings } from '../../src/export/synapse/export-settings.js';
import { readDeltaTable } from '../../src/export/synapse/runtime/connectors/delta-table.js';
import { DuckDbSqlEngine } from '../../src/export/synapse/runtime/connectors/sql-engine.js';
import type { PipelineRun } from '../../src/export/synapse/runtime/run-records.js';
import { SynapseRuntime } from '../../src/export/synapse/runtime/synapse-runtime.js';
import { synapseDataSources } from '../../src/export/synapse/step-renderings.js';
import { type DeltaExport, exportDeltaPipelines } from './delta-export.js';
import { SynapseLinkDeltaJob } from './synapse-link-delta-job.js';

const METADATA = 'fixtures/metadata';
const START = '2026-01-01T01:00:00Z';
const at = (minutes: number) => new Date(Date.parse(START) + minutes * 60_000);
const A1 = 'a0000001-0000-4000-8000-000000000001';
const A2 = 'a0000002-0000-4000-8000-000000000002';
const A3 = 'a0000003-0000-4000-8000-000000000003';

describe('export defect 15: the exported Delta outbound pipeline runs on the table version', () => {
  let dir: string;
  let settings: SynapseExportSettings;
  let exported: DeltaExport;
  let em: RunningEmulator;
  let rt: SynapseRuntime;
  let job: SynapseLinkDeltaJob;
  let linkDir: string;
  let warehouseDir: string;
  let duck: DuckDbStaging;
  const csvLake = () => new LocalLake(path.join(dir, 'csv'));

  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'synapse-delta-'));
    settings = await loadExportSettings('synapse/settings.json');
    exported = await exportDeltaPipelines(settings);
    em = await startEmulator({ metadataDir: METADATA });
    linkDir = path.join(dir, 'link');
    warehouseDir = path.join(dir, 'warehouse');
    // A checkpoint every 2 commits (`delta.checkpointInterval`), so the test meets one without 10 conversions.
    job = new SynapseLinkDeltaJob(linkDir, { checkpointInterval: 2 });
    rt = await SynapseRuntime.open({
      artifacts: exported.artifacts,
      workspaceDir: path.join(dir, 'ws'),
      startTime: START,
      stepRenderings: exported.renderings,
      dataSources: synapseDataSources(settings),
      fileSystems: { [settings.synapseLinkFileSystem]: linkDir, [settings.warehouseFileSystem]: warehouseDir },
    });
    await rt.runSetup(['sql/tsql/setup/ferry-state.sql']);
    duck = await DuckDbStaging.open({ path: ':memory:', threads: 1, memoryLimit: '256MB' });
  });
  after(async () => {
    await duck?.close();
    await rt?.close();
    await em?.close();
    await rm(dir, { recursive: true, force: true });
  });

  /** Synapse Link's interval: the emulator's changes exported as CSV at `now`, then merged into Delta. */
  async function convert(now: Date): Promise<number | undefined> {
    const ex = await exportSynapseLink(em.store, csvLake(), '', { metadataDir: METADATA, now });
    if (!ex.folder) return undefined;
    return (await job.merge(path.join(dir, 'csv'), ex.folder, now.getTime())).account;
  }

  async function run(): Promise<PipelineRun> {
    const r = await rt.runPipeline('pl_accounts_delta_outbound', { mode: 'scheduled' });
    assert.equal(
      r.status,
      'Succeeded',
      r.activityRuns.map((a) => `${a.activityName} ${a.status} ${a.error?.message ?? ''}`).join('\n'),
    );
    return r;
  }

  const windows = (output: string) =>
    existsSync(path.join(warehouseDir, output)) ? readdirSync(path.join(warehouseDir, output)).sort() : [];

  /** The rows of the window folder (one run folder), by Id; the Parquet column types. */
  async function windowRows(output: string, window: string) {
    const runs = readdirSync(path.join(warehouseDir, output, window));
    assert.equal(runs.length, 1, `one run folder in ${output}/${window}`);
    const glob = path.join(warehouseDir, output, window, runs[0]!, '*.parquet');
    const rows = await duck.all<Record<string, unknown>>(`SELECT * FROM read_parquet('${glob}') ORDER BY "Id"`);
    const types = Object.fromEntries(
      (
        await duck.all<{ column_name: string; column_type: string }>(`DESCRIBE SELECT * FROM read_parquet('${glob}')`)
      ).map((r) => [r.column_name, r.column_type]),
    );
    return { rows, types, byId: new Map(rows.map((r) => [String(r.Id), r])) };
  }

  async function cursor(): Promise<string | null> {
    const [row] = await rt.services.sql.duck.all<{ cursor_value: string }>(
      `SELECT "value" AS cursor_value FROM ferry.cursors WHERE pipeline = 'accounts-delta-outbound'`,
    );
    return row?.cursor_value ?? null;
  }

  it('version 0: the table is extracted whole into delta.account-v0, typed as serverless reads Delta', async () => {
    em.store.put('account', A1, { name: 'Contoso', accountnumber: 'D-1', revenue: 100.5 }, at(-60 * 24 * 400));
    em.store.put('account', A2, { name: 'Fabrikam', accountnumber: 'D-2', revenue: 200 }, at(-5));
    em.store.put('account', A3, { name: 'Northwind', accountnumber: 'D-3' }, at(-4));
    assert.equal(await convert(at(-2)), 0);
    // Two partitions (PartitionId = the year the record was created): the 2024 row and the 2026 rows.
    assert.deepEqual(
      readdirSync(job.tableDir('account'))
        .filter((d) => d.startsWith('PartitionId='))
        .sort(),
      ['PartitionId=2024', 'PartitionId=2026'],
    );
    await run();
    assert.deepEqual(windows('account'), ['delta.account-v0']);
    const { rows, types, byId } = await windowRows('account', 'delta.account-v0');
    assert.deepEqual(
      rows.map((r) => r.Id),
      [A1, A2, A3],
    );
    assert.equal(byId.get(A1)!.name, 'Contoso');
    assert.equal(String(byId.get(A1)!.revenue), '100.5000');
    assert.equal(byId.get(A1)!.IsDelete, false);
    assert.equal(types.Id, 'VARCHAR');
    assert.equal(types.name, 'VARCHAR');
    assert.equal(types.revenue, 'DECIMAL(38,4)');
    assert.equal(types.versionnumber, 'BIGINT');
    assert.equal(types.IsDelete, 'BOOLEAN');
    // DATETIME2 (UTC wall time), as the CSV path's extract writes date-times.
    assert.equal(types.SinkModifiedOn, 'TIMESTAMP');
    assert.equal(types.createdon, 'TIMESTAMP');
    assert.equal(await cursor(), '00000000000000000000');
    assert.ok(existsSync(path.join(warehouseDir, '_manifests', 'account', 'delta.account-v0')), 'manifest written');
  });

  it('an update and a delete between ticks: version 1, the latest row per Id, the delete in account_deletes', async () => {
    const a1 = em.store.get('account', A1)!;
    em.store.put('account', A1, { ...a1.attributes, name: 'Contoso Ltd' }, at(10));
    em.store.delete('account', A2, at(11));
    assert.equal(await convert(at(13)), 1);
    const log = readdirSync(path.join(job.tableDir('account'), '_delta_log'));
    assert.ok(log.includes('00000000000000000001.json'));
    await run();
    assert.deepEqual(windows('account'), ['delta.account-v0', 'delta.account-v1']);
    const { rows, byId } = await windowRows('account', 'delta.account-v1');
    assert.deepEqual(
      rows.map((r) => r.Id),
      [A1, A3],
    );
    assert.equal(byId.get(A1)!.name, 'Contoso Ltd');
    const deletes = await windowRows('account_deletes', 'delta.account-v1');
    assert.deepEqual(
      deletes.rows.map((r) => [r.Id, r.IsDelete]),
      [[A2, true]],
    );
    assert.equal(await cursor(), '00000000000000000001');
  });

  it('a tick with no new version runs no extract and writes nothing', async () => {
    assert.equal(await convert(at(28)), undefined, 'no change in Dataverse: no CSV folder, no commit');
    const r = await run();
    assert.ok(!r.activityRuns.some((a) => a.activityName.startsWith('ExtractToParquet')));
    assert.deepEqual(windows('account'), ['delta.account-v0', 'delta.account-v1']);
    assert.equal(await cursor(), '00000000000000000001');
  });

  it('a checkpoint is read (the commits before it cleaned up), and a row merged late with an earlier SinkModifiedOn is extracted', async () => {
    const a3 = em.store.get('account', A3)!;
    em.store.put('account', A3, { ...a3.attributes, name: 'Northwind Traders' }, at(40));
    assert.equal(await convert(at(43)), 2);
    const logDir = path.join(job.tableDir('account'), '_delta_log');
    assert.ok(existsSync(path.join(logDir, '00000000000000000002.checkpoint.parquet')), 'the writer checkpoints');
    assert.ok(existsSync(path.join(logDir, '_last_checkpoint')));
    // Log cleanup (Spark removes commits older than the retention once a checkpoint covers them).
    for (const v of ['00000000000000000000.json', '00000000000000000001.json']) rmSync(path.join(logDir, v));
    await run();
    const v2 = await windowRows('account', 'delta.account-v2');
    assert.deepEqual(
      v2.rows.map((r) => [r.Id, r.name]),
      [
        [A1, 'Contoso Ltd'],
        [A3, 'Northwind Traders'],
      ],
    );
    assert.deepEqual(
      (await windowRows('account_deletes', 'delta.account-v2')).rows.map((r) => r.Id),
      [A2],
    );
    // The Spark job merges a change whose SinkModifiedOn is earlier than the previous version's rows (a late CSV
    // folder): time-based selection skipped it (review defect 15); the version holds it.
    const a1 = em.store.get('account', A1)!;
    em.store.put('account', A1, { ...a1.attributes, name: 'Contoso late' }, at(20));
    assert.equal(await convert(at(21)), 3);
    await run();
    const v3 = await windowRows('account', 'delta.account-v3');
    assert.equal(v3.byId.get(A1)!.name, 'Contoso late');
    assert.ok(
      (v3.byId.get(A1)!.SinkModifiedOn as Date) < (v2.byId.get(A3)!.SinkModifiedOn as Date),
      'the late row carries an earlier SinkModifiedOn than a row of the previous version',
    );
    assert.equal(await cursor(), '00000000000000000003');
  });

  it('a Delta table with deletion vectors fails the extract, naming the feature (serverless reads Delta Lake 1.0)', async () => {
    const table = job.tableDir('account');
    rmSync(table, { recursive: true, force: true });
    cpSync('fixtures/delta/synapse-link-demo/deltalake/contact_partitioned', table, { recursive: true });
    // A manual run with a window: the current snapshot again, whatever the cursor.
    const r = await rt.runPipeline('pl_accounts_delta_outbound', { mode: 'manual', windowStart: START });
    assert.equal(r.status, 'Failed');
    const extract = r.activityRuns.find((a) => a.activityName === 'ExtractToParquet_account');
    assert.equal(extract?.status, 'Failed');
    assert.equal(extract?.error?.errorCode, 'DeltaFeatureNotSupported');
    assert.match(extract?.error?.message ?? '', /deletionVectors/);
    assert.match(extract?.error?.message ?? '', /deltalake\/account_partitioned\//);
  });
});

describe("the runtime's Delta reader (OPENROWSET FORMAT = 'DELTA')", () => {
  let duck: DuckDbStaging;
  let dir: string;
  before(async () => {
    duck = await DuckDbStaging.open({ path: ':memory:', threads: 1, memoryLimit: '128MB' });
    dir = await mkdtemp(path.join(tmpdir(), 'delta-reader-'));
  });
  after(async () => {
    await duck.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('reads the current snapshot from the checkpoint and later commits, file paths URI-decoded', async () => {
    const s = await readDeltaTable(
      duck,
      'fixtures/delta/synapse-link-demo/deltalake/account_partitioned',
      'deltalake/account_partitioned/',
    );
    assert.equal(s.version, 3);
    assert.equal(s.checkpoint, 2);
    assert.deepEqual(
      s.files.map((f) => [path.basename(f.file), f.partitionValues.PartitionId]),
      [
        ['part-00002.snappy.parquet', '2025'],
        ['part 00004 compacted.snappy.parquet', '2026'],
      ],
    );
    assert.equal(s.columns.find((c) => c.name === 'revenue')?.sqlType, 'DECIMAL(38,4)');
  });

  it('refuses a BULK folder that is not a Delta table root, naming the path', async () => {
    mkdirSync(path.join(dir, 'deltalake', 'account_partitioned', 'PartitionId=2025'), { recursive: true });
    await assert.rejects(
      readDeltaTable(duck, path.join(dir, 'deltalake'), 'deltalake/'),
      (e: Error & { errorCode?: string }) =>
        e.errorCode === 'DeltaLogNotFound' &&
        /'deltalake\/_delta_log\/\*\.json' cannot be listed/.test(e.message) &&
        /`deltalake\/`/.test(e.message),
    );
  });

  it('refuses column mapping and an unknown reader version by name', async () => {
    const log = path.join(dir, 'mapped', '_delta_log');
    mkdirSync(log, { recursive: true });
    const schema = JSON.stringify({
      type: 'struct',
      fields: [{ name: 'Id', type: 'string', nullable: true, metadata: {} }],
    });
    const write = (protocol: object, configuration: object) =>
      writeFileSync(
        path.join(log, '00000000000000000000.json'),
        `${JSON.stringify({ protocol })}\n${JSON.stringify({ metaData: { id: 'x', format: { provider: 'parquet', options: {} }, schemaString: schema, partitionColumns: [], configuration } })}\n`,
      );
    write({ minReaderVersion: 2, minWriterVersion: 5 }, { 'delta.columnMapping.mode': 'name' });
    await assert.rejects(readDeltaTable(duck, path.join(dir, 'mapped'), 'mapped/'), /column mapping/);
    write({ minReaderVersion: 1, minWriterVersion: 2 }, { 'delta.columnMapping.mode': 'name' });
    await assert.rejects(readDeltaTable(duck, path.join(dir, 'mapped'), 'mapped/'), /delta\.columnMapping\.mode/);
    write({ minReaderVersion: 3, minWriterVersion: 7, readerFeatures: ['timestampNtz'] }, {});
    await assert.rejects(readDeltaTable(duck, path.join(dir, 'mapped'), 'mapped/'), /`timestampNtz`/);
    write({ minReaderVersion: 1, minWriterVersion: 2 }, {});
    const s = await readDeltaTable(duck, path.join(dir, 'mapped'), 'mapped/');
    assert.equal(s.files.length, 0, 'an empty table reads as no rows');
  });

  it('refuses a log with a missing commit and no checkpoint before it', async () => {
    const log = path.join(dir, 'gap', '_delta_log');
    mkdirSync(log, { recursive: true });
    writeFileSync(path.join(log, '00000000000000000001.json'), '{"commitInfo":{}}\n');
    await assert.rejects(readDeltaTable(duck, path.join(dir, 'gap'), 'gap/'), /00000000000000000000\.json is missing/);
  });

  it("reads the table the step's T-SQL names, and refuses a step that names none", async () => {
    const engine = new DuckDbSqlEngine(
      duck,
      () => ({
        text: 'SELECT count(*) AS n FROM synapse_link_account',
        parameters: [],
        synapseLinkTables: [{ table: 'account', format: 'delta' }],
      }),
      {
        dataSourcePath: (source, folder) => {
          assert.equal(source, 'ferry_synapse_link');
          return path.join('fixtures/delta/synapse-link-demo', folder);
        },
        synapseLinkDir: () => 'fixtures/delta/synapse-link-demo',
      },
    );
    const step = (text: string) => ({
      text: `-- ferry-step: p:extract:account\n${text}`,
      where: 'Script `X` block 1',
      linkedService: 'ls',
    });
    const read = await engine.execute(
      step(
        "DECLARE @rows NVARCHAR(MAX) = N'SELECT * FROM OPENROWSET(BULK N''deltalake/account_partitioned/'', DATA_SOURCE = ''ferry_synapse_link'', FORMAT = ''DELTA'') AS r'",
      ),
    );
    // Version 3 of the fixture: A1, A2 (a delete row), A3 and A4.
    assert.equal(read.resultSets[0]?.rows[0]?.n, 4);
    await assert.rejects(engine.execute(step('SELECT 1')), /has 0 OPENROWSET\(BULK …, FORMAT = 'DELTA'\) reads/);
  });
});
