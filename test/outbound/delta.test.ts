import assert from 'node:assert/strict';
import fs from 'node:fs';
import { afterEach, beforeEach, describe, it } from 'node:test';
import { definePipeline } from '../../src/core/pipeline.js';
import { DuckDbStaging } from '../../src/dialects/duckdb/driver.js';
import { readSynapseLink } from '../../src/stages/read-synapse-link.js';
import { runSqlExtract } from '../../src/stages/run-sql-extract.js';
import { type WarehouseManifest, writeParquet } from '../../src/stages/write-parquet.js';
import { OutboundSandbox, readParquetRows } from './helpers.js';

const FOLDER = 'synapse-link/demo';
const A = (n: number) => `a000000${n}-0000-4000-8000-00000000000${n}`;
const LOG = `${FOLDER}/deltalake/account_partitioned/_delta_log`;

function pipeline(table: string) {
  return definePipeline({
    name: `${table}-delta-test`,
    direction: 'outbound',
    stages: [
      readSynapseLink({ folder: FOLDER, format: 'delta', tables: [table] }),
      runSqlExtract({ table }),
      writeParquet(),
    ],
  });
}

describe('outbound Delta: _delta_log replay (checkpoint + commits) → warehouse Parquet', () => {
  let box: OutboundSandbox;
  beforeEach(() => {
    box = new OutboundSandbox();
    box.copy('delta/synapse-link-demo', FOLDER);
  });
  afterEach(() => box.close());

  it('reads only the live files of the latest version, with partition values from the log', async () => {
    const report = await box.run(pipeline('account'));
    assert.equal(report.status, 'succeeded', report.error?.message);
    assert.equal(report.window.first, 'delta:account@3');
    assert.equal(report.window.cursorAfter, JSON.stringify({ account: 3 }));
    // Live at v3: part-00002 (2025, from the checkpoint) and the compacted 2026 file (v3, URI-encoded path).
    // The removed files are still on disk and must not be read.
    assert.deepEqual([report.counts.read, report.counts.written, report.counts.deleted], [4, 3, 1]);
    const dir = box.warehouse('account', 'delta.account-v3');
    const rows = await readParquetRows(
      `${dir}/part-00000.parquet`,
      'Id, name, CAST(revenue AS VARCHAR) AS revenue, versionnumber, IsDelete, PartitionId',
      'Id',
    );
    assert.deepEqual(rows, [
      {
        Id: A(1),
        name: 'Contoso Ltd',
        revenue: '150.2500',
        versionnumber: 1005n,
        IsDelete: false,
        PartitionId: '2025',
      },
      { Id: A(2), name: null, revenue: null, versionnumber: 1006n, IsDelete: true, PartitionId: '2025' },
      {
        Id: A(3),
        name: 'Northwind Traders',
        revenue: '12345678901234567890.1234',
        versionnumber: 1012n,
        IsDelete: false,
        PartitionId: '2026',
      },
      { Id: A(4), name: 'Tailspin', revenue: '0.0001', versionnumber: 1010n, IsDelete: false, PartitionId: '2026' },
    ]);
    const manifest = JSON.parse(fs.readFileSync(`${dir}/_manifest.json`, 'utf8')) as WarehouseManifest;
    assert.deepEqual(manifest.sourceFolders, ['delta@3']);
  });

  it('runs again only when a new version is committed', async () => {
    await box.run(pipeline('account'));
    const idle = await box.run(pipeline('account'));
    assert.equal(idle.window.items, 0);
    // v4: a MERGE soft-deletes A4 by rewriting the compacted file.
    fs.writeFileSync(
      box.lakePath(`${LOG}/00000000000000000004.json`),
      [
        '{"commitInfo":{"timestamp":1767227400000,"operation":"MERGE"}}',
        '{"remove":{"path":"PartitionId=2026/part%2000004%20compacted.snappy.parquet","deletionTimestamp":1767227400000,"dataChange":true}}',
        '{"add":{"path":"PartitionId=2026/part-00003.snappy.parquet","partitionValues":{"PartitionId":"2026"},"size":1,"modificationTime":1767227400000,"dataChange":true}}',
      ].join('\n'),
    );
    const next = await box.run(pipeline('account'));
    assert.equal(next.status, 'succeeded', next.error?.message);
    assert.equal(next.window.first, 'delta:account@4');
    const rows = await readParquetRows(
      box.warehouse('account', 'delta.account-v4', 'part-00000.parquet'),
      'Id, PartitionId',
      'Id',
    );
    assert.deepEqual(rows, [
      { Id: A(1), PartitionId: '2025' },
      { Id: A(2), PartitionId: '2025' },
      { Id: A(4), PartitionId: '2026' },
    ]);
  });

  it('refuses a table with deletion vectors, naming the feature; the cursor stays', async () => {
    const report = await box.run(pipeline('contact'));
    assert.equal(report.status, 'failed');
    assert.equal(report.error?.code, 'delta.unsupported_feature');
    assert.match(report.error!.message, /reader feature `deletionVectors`/);
    assert.match(report.error!.message, /contact_partitioned/);
    assert.equal(box.state.getCursor('contact-delta-test', `synapse-link:${FOLDER}`), null);
    assert.equal(fs.existsSync(box.warehouse('contact')), false);
  });

  it('refuses column mapping and unknown reader features by name', async () => {
    const meta = (config: Record<string, string>) =>
      JSON.stringify({
        metaData: {
          id: 'x',
          format: { provider: 'parquet', options: {} },
          schemaString: JSON.stringify({
            type: 'struct',
            fields: [{ name: 'Id', type: 'string', nullable: true, metadata: {} }],
          }),
          partitionColumns: [],
          configuration: config,
        },
      });
    const cases: Array<[string, string, RegExp]> = [
      [
        '{"protocol":{"minReaderVersion":2,"minWriterVersion":5}}',
        meta({ 'delta.columnMapping.mode': 'id' }),
        /reader feature `columnMapping`.*mode `id`/,
      ],
      [
        '{"protocol":{"minReaderVersion":3,"minWriterVersion":7,"readerFeatures":["variantType"],"writerFeatures":[]}}',
        meta({}),
        /reader feature `variantType`/,
      ],
    ];
    for (const [protocol, metaData, expected] of cases) {
      fs.rmSync(box.lakePath(LOG), { recursive: true });
      fs.mkdirSync(box.lakePath(LOG), { recursive: true });
      fs.writeFileSync(box.lakePath(`${LOG}/00000000000000000000.json`), `${protocol}\n${metaData}\n`);
      const report = await box.run(pipeline('account'));
      assert.equal(report.error?.code, 'delta.unsupported_feature', report.error?.message);
      assert.match(report.error!.message, expected);
    }
  });

  it('reads a table with column mapping in `name` mode (physical column names in files and partition values)', async () => {
    const root = `${FOLDER}/deltalake/account_partitioned`;
    fs.rmSync(box.lakePath(root), { recursive: true });
    fs.mkdirSync(box.lakePath(`${root}/_delta_log`), { recursive: true });
    fs.mkdirSync(box.lakePath(`${root}/col-p=2026`), { recursive: true });
    const db = await DuckDbStaging.open();
    await db.run(
      `COPY (SELECT * FROM (VALUES ('${A(1)}', 7::BIGINT, 'Renamed'), ('${A(2)}', 8::BIGINT, 'Mapped')) t("col-id", "col-v", "col-n")) TO '${box.lakePath(`${root}/col-p=2026/f.parquet`)}' (FORMAT PARQUET)`,
    );
    await db.close();
    const field = (name: string, type: string, physical: string) => ({
      name,
      type,
      nullable: true,
      metadata: { 'delta.columnMapping.id': 1, 'delta.columnMapping.physicalName': physical },
    });
    const schema = {
      type: 'struct',
      fields: [
        field('Id', 'string', 'col-id'),
        field('versionnumber', 'long', 'col-v'),
        field('name', 'string', 'col-n'),
        field('PartitionId', 'string', 'col-p'),
      ],
    };
    const log = [
      { protocol: { minReaderVersion: 2, minWriterVersion: 5 } },
      {
        metaData: {
          id: 'm',
          format: { provider: 'parquet', options: {} },
          schemaString: JSON.stringify(schema),
          partitionColumns: ['PartitionId'],
          configuration: { 'delta.columnMapping.mode': 'name' },
        },
      },
      {
        add: {
          path: 'col-p=2026/f.parquet',
          partitionValues: { 'col-p': '2026' },
          size: 1,
          modificationTime: 0,
          dataChange: true,
        },
      },
    ];
    fs.writeFileSync(
      box.lakePath(`${root}/_delta_log/00000000000000000000.json`),
      `${log.map((l) => JSON.stringify(l)).join('\n')}\n`,
    );
    const report = await box.run(pipeline('account'));
    assert.equal(report.status, 'succeeded', report.error?.message);
    const rows = await readParquetRows(box.warehouse('account', 'delta.account-v0', 'part-00000.parquet'), '*', 'Id');
    assert.deepEqual(rows, [
      { Id: A(1), versionnumber: 7n, name: 'Renamed', PartitionId: '2026' },
      { Id: A(2), versionnumber: 8n, name: 'Mapped', PartitionId: '2026' },
    ]);
  });

  it('uses the JSON commits when a v2 checkpoint stands next to them, and refuses when they are gone', async () => {
    const logDir = box.lakePath(LOG);
    const v2 = '00000000000000000003.checkpoint.80a083e8-7026-4e79-81be-64bd76c43a11.json';
    fs.writeFileSync(`${logDir}/${v2}`, '{"checkpointMetadata":{"version":3}}\n');
    const ok = await box.run(pipeline('account'));
    assert.equal(ok.status, 'succeeded', ok.error?.message);
    assert.equal(ok.counts.read, 4);
    // Without the classic checkpoint and commit 3, only the v2 checkpoint covers version 3.
    fs.rmSync(`${logDir}/00000000000000000002.checkpoint.parquet`);
    fs.rmSync(`${logDir}/00000000000000000003.json`);
    fs.writeFileSync(`${logDir}/00000000000000000004.json`, '{"commitInfo":{"operation":"WRITE"}}\n');
    const refused = await box.run(pipeline('account'));
    assert.equal(refused.status, 'failed');
    assert.equal(refused.error?.code, 'delta.unsupported_feature');
    assert.match(refused.error!.message, /reader feature `v2Checkpoint`/);
  });

  it('changes mode: after the first run, only rows of files added since the last processed version', async () => {
    const def = definePipeline({
      name: 'account-delta-changes',
      direction: 'outbound',
      stages: [
        readSynapseLink({ folder: FOLDER, format: 'delta', tables: ['account'], deltaMode: 'changes' }),
        runSqlExtract({ table: 'account' }),
        writeParquet(),
      ],
    });
    const first = await box.run(def);
    assert.equal(first.counts.read, 4);
    fs.writeFileSync(
      box.lakePath(`${LOG}/00000000000000000004.json`),
      '{"add":{"path":"PartitionId=2026/part-00003.snappy.parquet","partitionValues":{"PartitionId":"2026"},"size":1,"modificationTime":0,"dataChange":true}}\n',
    );
    const next = await box.run(def);
    assert.equal(next.status, 'succeeded', next.error?.message);
    assert.equal(next.counts.read, 1);
    const dir = box.warehouse('account', 'delta.account-v4');
    assert.deepEqual(await readParquetRows(`${dir}/part-00000.parquet`, 'Id, name, versionnumber'), [
      { Id: A(4), name: 'Tailspin', versionnumber: 1010n },
    ]);
    const manifest = JSON.parse(fs.readFileSync(`${dir}/_manifest.json`, 'utf8')) as WarehouseManifest;
    assert.deepEqual(manifest.sourceFolders, ['delta@4..4']);
  });
});
