import assert from 'node:assert/strict';
import fs from 'node:fs';
import { afterEach, beforeEach, describe, it } from 'node:test';
import { definePipeline } from '../../src/core/pipeline.js';
import { readSynapseLink } from '../../src/stages/read-synapse-link/spec.js';
import { runSqlExtract } from '../../src/stages/run-sql-extract/spec.js';
import type { WarehouseManifest } from '../../src/stages/write-parquet/run.js';
import { writeParquet } from '../../src/stages/write-parquet/spec.js';
import { OutboundSandbox, parquetSchema, readParquetRows } from './helpers.js';

const FOLDER = 'synapse-link/demo';
const F1 = '2026-01-01T00.15.00Z';
const F2 = '2026-01-01T00.30.00Z';
const F3 = '2026-01-01T00.45.00Z';
const F4 = '2026-01-01T01.00.00Z';
const A = (n: number) => `a000000${n}-0000-4000-8000-00000000000${n}`;

function pipeline(
  options: { deletes?: 'flag-column' | 'separate-file'; uuidAs?: 'string' | 'uuid'; tables?: string[] } = {},
) {
  const tables = options.tables ?? ['account'];
  return definePipeline({
    name: 'accounts-outbound-test',
    direction: 'outbound',
    stages: [
      readSynapseLink({ folder: FOLDER, format: 'csv', tables }),
      ...tables.map((t) => runSqlExtract({ table: t, query: 'default' })),
      writeParquet({
        target: 'warehouse',
        deletes: options.deletes ?? 'flag-column',
        uuidAs: options.uuidAs ?? 'string',
      }),
    ],
  });
}

const COLS =
  "Id, name, description, CAST(revenue AS VARCHAR) AS revenue, numberofemployees, versionnumber, IsDelete, CAST(creditlimit AS VARCHAR) AS creditlimit, donotphone, strftime(SinkModifiedOn, '%Y-%m-%dT%H:%M:%S') AS sink, strftime(createdon, '%Y-%m-%dT%H:%M:%S.%f') AS createdon";

describe('outbound CSV: incremental Synapse Link folders → warehouse Parquet', () => {
  let box: OutboundSandbox;
  beforeEach(() => {
    box = new OutboundSandbox();
    box.copy('synapse-link/incremental-with-deletes', FOLDER);
  });
  afterEach(() => box.close());

  it('reads the completed folders, keeps the latest version per Id, flags deletes, and stops before the in-progress folder', async () => {
    const report = await box.run(pipeline());
    assert.equal(report.status, 'succeeded', report.error?.message);
    assert.deepEqual([report.window.first, report.window.last, report.window.items], [F1, F3, 3]);
    assert.equal(report.window.cursorAfter, F3);
    assert.equal(box.state.getCursor('accounts-outbound-test', `synapse-link:${FOLDER}`), F3);
    assert.deepEqual([report.counts.read, report.counts.written, report.counts.deleted], [10, 4, 1]);

    const dir = box.warehouse('account', `${F1}_${F3}`);
    assert.deepEqual(fs.readdirSync(dir).sort(), ['_manifest.json', 'part-00000.parquet']);
    const rows = await readParquetRows(`${dir}/part-00000.parquet`, COLS, 'Id');
    assert.deepEqual(rows, [
      // Updated twice in folder 2 (versions 1005 and 1007, in two files): 1007 wins.
      {
        Id: A(1),
        name: 'Contoso Ltd (renamed)',
        description: 'Line one\nLine two, with comma',
        revenue: '1234567890123456.1234',
        numberofemployees: 270n,
        versionnumber: 1007n,
        IsDelete: false,
        creditlimit: null,
        donotphone: null,
        sink: '2026-01-01T00:29:10',
        createdon: '2025-12-31T10:00:00.000000',
      },
      // Deleted in folder 2 by a short row: kept as a delete marker (FT#440: deletes are never lost).
      {
        Id: A(2),
        name: null,
        description: null,
        revenue: null,
        numberofemployees: null,
        versionnumber: 1008n,
        IsDelete: true,
        creditlimit: null,
        donotphone: null,
        sink: '2026-01-01T00:29:20',
        createdon: null,
      },
      // Version 1003 three times (a retry): the latest SinkModifiedOn wins.
      {
        Id: A(3),
        name: 'Müller & Søn – Zürich 東京',
        description: 'retried copy',
        revenue: '-42.7500',
        numberofemployees: 7n,
        versionnumber: 1003n,
        IsDelete: false,
        creditlimit: null,
        donotphone: null,
        sink: '2026-01-01T00:29:30',
        createdon: '2025-10-01T12:00:00.000000',
      },
      // Folder 3 added creditlimit (DECIMAL(19,2), HUGEINT route) and donotphone; the in-progress folder 4 is not read.
      {
        Id: A(4),
        name: 'Northwind',
        description: 'Tab\there',
        revenue: '0.0001',
        numberofemployees: 5000n,
        versionnumber: 1010n,
        IsDelete: false,
        creditlimit: '12345678901234567.89',
        donotphone: true,
        sink: '2026-01-01T00:44:00',
        createdon: '2026-01-01T00:40:00.123456',
      },
      // A short row (no trailing columns) and a PM Sink time.
      {
        Id: A(5),
        name: 'Short Row Co',
        description: null,
        revenue: '1.0000',
        numberofemployees: 1n,
        versionnumber: 1011n,
        IsDelete: false,
        creditlimit: null,
        donotphone: null,
        sink: '2026-01-01T13:44:00',
        createdon: '2026-01-01T00:41:00.000000',
      },
    ]);
    const fabrikam = await readParquetRows(`${dir}/part-00000.parquet`, 'count(*) AS n');
    assert.equal(fabrikam[0]!.n, 5n);

    const manifest = JSON.parse(fs.readFileSync(`${dir}/_manifest.json`, 'utf8')) as WarehouseManifest;
    assert.equal(manifest.runId, report.runId);
    assert.deepEqual(manifest.window.items, [F1, F2, F3]);
    assert.deepEqual(manifest.sourceFolders, [F1, F2, F3]);
    assert.deepEqual([manifest.rows, manifest.deleted], [4, 1]);
    assert.deepEqual(
      manifest.files.map((f) => [f.path, f.kind, f.rows]),
      [['part-00000.parquet', 'rows', 5]],
    );
    assert.deepEqual(manifest.schema.slice(0, 4), [
      { name: 'Id', type: 'VARCHAR' },
      { name: 'SinkCreatedOn', type: 'TIMESTAMP WITH TIME ZONE' },
      { name: 'SinkModifiedOn', type: 'TIMESTAMP WITH TIME ZONE' },
      { name: 'name', type: 'VARCHAR' },
    ]);
    assert.equal(manifest.schema.at(-1)!.name, 'donotphone');
    assert.deepEqual(
      fs.readdirSync(box.warehouse('account')).sort(),
      [`${F1}_${F3}`, '_current.json'].sort(),
      'no temp folder is left behind',
    );
  });

  it('never passes the in-progress folder: a folder that completes after planning is read by the next run (FT#368)', async () => {
    const first = await box.run(pipeline());
    assert.equal(first.window.last, F3);
    const again = await box.run(pipeline());
    assert.equal(again.window.items, 0, 'nothing new while folder 4 is in progress');
    assert.equal(box.state.getCursor('accounts-outbound-test', `synapse-link:${FOLDER}`), F3);

    // Synapse Link finishes folder 4 (writes its model.json) and starts folder 5.
    fs.copyFileSync(box.lakePath(`${FOLDER}/${F3}/model.json`), box.lakePath(`${FOLDER}/${F4}/model.json`));
    fs.writeFileSync(box.lakePath(`${FOLDER}/Changelog/changelog.info`), '2026-01-01T01.15.00Z');
    fs.mkdirSync(box.lakePath(`${FOLDER}/2026-01-01T01.15.00Z/account`), { recursive: true });
    const next = await box.run(pipeline());
    assert.equal(next.status, 'succeeded', next.error?.message);
    assert.deepEqual([next.window.first, next.window.items, next.window.cursorAfter], [F4, 1, F4]);
    const rows = await readParquetRows(
      box.warehouse('account', F4, 'part-00000.parquet'),
      'Id, name, numberofemployees, versionnumber',
    );
    assert.deepEqual(rows, [{ Id: A(4), name: 'Northwind late', numberofemployees: 5001n, versionnumber: 1020n }]);
  });

  it('waits while the root model.json says the initial sync of a table is not completed', async () => {
    const file = box.lakePath(`${FOLDER}/model.json`);
    const good = fs.readFileSync(file, 'utf8');
    fs.writeFileSync(file, good.replace('"value": "Completed"', '"value": "InProgress"'));
    const waiting = await box.run(pipeline());
    assert.equal(waiting.status, 'succeeded');
    assert.equal(waiting.window.items, 0);
    assert.equal(box.state.getCursor('accounts-outbound-test', `synapse-link:${FOLDER}`), null);
    fs.writeFileSync(file, good);
    assert.equal((await box.run(pipeline())).window.items, 3);
  });

  it('writes the same window to the same, byte-identical files (backfill repeats it without moving the cursor)', async () => {
    const first = await box.run(pipeline());
    const dir = box.warehouse('account', `${F1}_${F3}`);
    const before = JSON.parse(fs.readFileSync(`${dir}/_manifest.json`, 'utf8')) as WarehouseManifest;
    const bytes = fs.readFileSync(`${dir}/part-00000.parquet`);
    const backfill = await box.run(pipeline(), 'backfill', {
      range: { from: '2026-01-01T00:00:00Z', to: '2026-01-01T01:00:00Z' },
    });
    assert.equal(backfill.status, 'succeeded', backfill.error?.message);
    assert.equal(backfill.window.items, 3);
    const after = JSON.parse(fs.readFileSync(`${dir}/_manifest.json`, 'utf8')) as WarehouseManifest;
    assert.notEqual(after.runId, first.runId === before.runId ? before.runId : '');
    assert.equal(after.files[0]!.sha256, before.files[0]!.sha256);
    assert.ok(fs.readFileSync(`${dir}/part-00000.parquet`).equals(bytes));
    assert.equal(box.state.getCursor('accounts-outbound-test', `synapse-link:${FOLDER}`), F3);
  });

  it('backfill selects folders by their time in [from, to)', async () => {
    const report = await box.run(pipeline(), 'backfill', {
      range: { from: '2026-01-01T00:30:00Z', to: '2026-01-01T00:45:00Z' },
    });
    assert.equal(report.status, 'succeeded', report.error?.message);
    assert.deepEqual([report.window.first, report.window.items], [F2, 1]);
    const rows = await readParquetRows(
      box.warehouse('account', F2, 'part-00000.parquet'),
      'Id, versionnumber, IsDelete',
      'Id',
    );
    assert.deepEqual(rows, [
      { Id: A(1), versionnumber: 1007n, IsDelete: false },
      { Id: A(2), versionnumber: 1008n, IsDelete: true },
      { Id: A(3), versionnumber: 1003n, IsDelete: false },
    ]);
    assert.equal(box.state.getCursor('accounts-outbound-test', `synapse-link:${FOLDER}`), null);
  });

  it('writes deletes to their own file and keeps Parquet UUIDs when asked', async () => {
    const report = await box.run(
      pipeline({ deletes: 'separate-file', uuidAs: 'uuid', tables: ['account', 'contact'] }),
    );
    assert.equal(report.status, 'succeeded', report.error?.message);
    const dir = box.warehouse('account', `${F1}_${F3}`);
    assert.deepEqual(fs.readdirSync(dir).sort(), ['_manifest.json', 'deletes-00000.parquet', 'part-00000.parquet']);
    const kept = await readParquetRows(`${dir}/part-00000.parquet`, 'CAST(Id AS VARCHAR) AS id, IsDelete', 'id');
    assert.deepEqual(
      kept.map((r) => r.id),
      [A(1), A(3), A(4), A(5)],
    );
    const deletes = await readParquetRows(
      `${dir}/deletes-00000.parquet`,
      'CAST(Id AS VARCHAR) AS id, versionnumber, IsDelete',
    );
    assert.deepEqual(deletes, [{ id: A(2), versionnumber: 1008n, IsDelete: true }]);
    assert.equal((await parquetSchema(`${dir}/part-00000.parquet`)).Id, 'UUID');
    // The contact was created in folder 1 and deleted in folder 3.
    const contactDir = box.warehouse('contact', `${F1}_${F3}`);
    assert.equal((await readParquetRows(`${contactDir}/part-00000.parquet`, 'count(*) AS n'))[0]!.n, 0n);
    assert.deepEqual(
      await readParquetRows(`${contactDir}/deletes-00000.parquet`, 'CAST(Id AS VARCHAR) AS id, versionnumber'),
      [{ id: 'c0000001-0000-4000-8000-000000000001', versionnumber: 2012n }],
    );
    assert.deepEqual([report.counts.written, report.counts.deleted], [4, 2]);
  });

  it('runs a custom extract query that joins the OptionsetMetadata choice labels', async () => {
    const def = definePipeline({
      name: 'accounts-labelled-test',
      direction: 'outbound',
      stages: [
        readSynapseLink({ folder: FOLDER, format: 'csv', tables: ['account'] }),
        runSqlExtract({ table: 'account', query: 'sql/extract/account-with-labels.sql', output: 'account_labelled' }),
        writeParquet({ deletes: 'separate-file' }),
      ],
    });
    const report = await box.run(def);
    assert.equal(report.status, 'succeeded', report.error?.message);
    const rows = await readParquetRows(
      box.warehouse('account_labelled', `${F1}_${F3}`, 'part-00000.parquet'),
      'Id, industrycode_label, statecode_label',
      'Id',
    );
    assert.deepEqual(rows, [
      { Id: A(1), industrycode_label: 'Accounting', statecode_label: 'Active' },
      { Id: A(3), industrycode_label: 'Broadcasting Printing, and Publishing', statecode_label: 'Inactive' },
      {
        Id: A(4),
        industrycode_label: 'Agriculture and Non-petrol Natural Resource Extraction',
        statecode_label: 'Active',
      },
      { Id: A(5), industrycode_label: 'Accounting', statecode_label: 'Active' },
    ]);
  });
});

describe('outbound CSV: the non-incremental layout (table folders at the root, rows replaced in place)', () => {
  let box: OutboundSandbox;
  beforeEach(() => {
    box = new OutboundSandbox();
    box.copy('synapse-link/non-incremental', FOLDER);
  });
  afterEach(() => box.close());

  it('reads every year file, then again only after a file changed', async () => {
    const first = await box.run(pipeline());
    assert.equal(first.status, 'succeeded', first.error?.message);
    assert.equal(first.window.first, 'root');
    const rows = await readParquetRows(
      box.warehouse('account', 'root', 'part-00000.parquet'),
      'Id, name, description, numberofemployees',
      'Id',
    );
    assert.deepEqual(rows, [
      {
        Id: 'b0000001-0000-4000-8000-000000000001',
        name: 'Adatum "North"',
        description: 'In place,\nupdated',
        numberofemployees: 12n,
      },
      { Id: 'b0000002-0000-4000-8000-000000000002', name: 'Litware', description: null, numberofemployees: 3n },
      { Id: 'b0000003-0000-4000-8000-000000000003', name: 'Wingtip', description: 'Ωμέγα', numberofemployees: 1n },
    ]);
    assert.equal((await box.run(pipeline())).window.items, 0);
    const file = box.lakePath(`${FOLDER}/account/2026.csv`);
    fs.writeFileSync(file, fs.readFileSync(file, 'utf8').replace('"Wingtip"', '"Wingtip Toys"'));
    fs.utimesSync(file, new Date(), new Date(Date.now() + 60_000));
    const again = await box.run(pipeline());
    assert.equal(again.window.items, 1);
    const changed = await readParquetRows(box.warehouse('account', 'root', 'part-00000.parquet'), 'name', 'name');
    assert.deepEqual(
      changed.map((r) => r.name),
      ['Adatum "North"', 'Litware', 'Wingtip Toys'],
    );
  });
});

describe('outbound CSV: warehouse outside the lake', () => {
  it('writes the window files and manifest under --warehouse', async () => {
    const box = new OutboundSandbox({ warehouseOutsideLake: true });
    try {
      box.copy('synapse-link/incremental-with-deletes', FOLDER);
      const report = await box.run(pipeline());
      assert.equal(report.status, 'succeeded', report.error?.message);
      assert.ok(box.config.warehouse.startsWith(box.dir) && !box.config.warehouse.startsWith(box.config.lake));
      const dir = box.warehouse('account', `${F1}_${F3}`);
      assert.deepEqual(fs.readdirSync(dir).sort(), ['_manifest.json', 'part-00000.parquet']);
      assert.equal((await readParquetRows(`${dir}/part-00000.parquet`, 'count(*) AS n'))[0]!.n, 5n);
      assert.equal(fs.existsSync(box.lakePath('warehouse')), false);
    } finally {
      box.close();
    }
  });
});
