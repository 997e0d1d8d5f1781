import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, utimes } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { ArtifactStore } from '../../src/export/synapse/runtime/artifact-store.js';
import type { JsonObject } from '../../src/export/synapse/runtime/expression/json-value.js';
import { SynapseRuntime } from '../../src/export/synapse/runtime/synapse-runtime.js';

// Hand-written artifacts shaped like the export's, with DuckDB SQL (the exported T-SQL has no DuckDB rendering yet).
const LINKED = [
  {
    name: 'ls_adls',
    properties: { type: 'AzureBlobFS', typeProperties: { url: 'https://lake.dfs.core.windows.net/' } },
  },
  { name: 'ls_sql', properties: { type: 'AzureSqlDatabase', typeProperties: { server: 'sql', database: 'ferry' } } },
];
const ref = (referenceName: string, parameters: JsonObject = {}) => ({
  referenceName,
  type: 'DatasetReference',
  parameters,
});
const DATASETS = [
  {
    name: 'ds_parquet',
    properties: {
      type: 'Parquet',
      linkedServiceName: { referenceName: 'ls_adls', type: 'LinkedServiceReference' },
      parameters: {
        fileSystem: { type: 'String', defaultValue: 'lake' },
        folderPath: { type: 'String' },
        fileName: { type: 'String', defaultValue: '' },
      },
      typeProperties: {
        compressionCodec: 'snappy',
        location: {
          type: 'AzureBlobFSLocation',
          fileSystem: '@dataset().fileSystem',
          folderPath: '@dataset().folderPath',
          fileName: '@dataset().fileName',
        },
      },
    },
  },
  {
    name: 'ds_text',
    properties: {
      type: 'DelimitedText',
      linkedServiceName: { referenceName: 'ls_adls', type: 'LinkedServiceReference' },
      parameters: { folderPath: { type: 'String' }, fileName: { type: 'String' } },
      typeProperties: {
        location: {
          type: 'AzureBlobFSLocation',
          fileSystem: 'lake',
          folderPath: '@dataset().folderPath',
          fileName: '@dataset().fileName',
        },
        columnDelimiter: ',',
        quoteChar: '"',
        escapeChar: '"',
        firstRowAsHeader: false,
      },
    },
  },
  {
    name: 'ds_csv',
    properties: {
      type: 'DelimitedText',
      linkedServiceName: { referenceName: 'ls_adls', type: 'LinkedServiceReference' },
      typeProperties: {
        location: { type: 'AzureBlobFSLocation', fileSystem: 'lake', folderPath: 'people' },
        columnDelimiter: ';',
        quoteChar: '"',
        escapeChar: '"',
        firstRowAsHeader: true,
      },
    },
  },
  {
    name: 'ds_sql',
    properties: {
      type: 'AzureSqlTable',
      linkedServiceName: { referenceName: 'ls_sql', type: 'LinkedServiceReference' },
      parameters: { schemaName: { type: 'String' }, tableName: { type: 'String' } },
      typeProperties: { schema: '@dataset().schemaName', table: '@dataset().tableName' },
    },
  },
];
const sqlScript = (name: string, text: string, dependsOn: string[] = []): JsonObject => ({
  name,
  type: 'Script',
  dependsOn: dependsOn.map((a) => ({ activity: a, dependencyConditions: ['Succeeded'] })),
  linkedServiceName: { referenceName: 'ls_sql', type: 'LinkedServiceReference' },
  typeProperties: { scripts: [{ type: 'NonQuery', text }] },
});

const PIPELINES = [
  {
    name: 'pl_things',
    properties: {
      parameters: { windowStart: { type: 'String' }, windowEnd: { type: 'String' } },
      activities: [
        {
          name: 'CopyParquetToStaging',
          type: 'Copy',
          inputs: [ref('ds_parquet', { folderPath: 'inbound/things' })],
          outputs: [ref('ds_sql', { schemaName: 'dbo', tableName: 'stg_things' })],
          policy: { retry: 0, timeout: '0.01:00:00' },
          typeProperties: {
            source: {
              type: 'ParquetSource',
              additionalColumns: [
                { name: '__source_file', value: '$$FILEPATH' },
                { name: '__run_id', value: { type: 'Expression', value: '@pipeline().RunId' } },
              ],
              storeSettings: {
                type: 'AzureBlobFSReadSettings',
                recursive: true,
                wildcardFolderPath: 'inbound/things',
                wildcardFileName: '*.parquet',
                modifiedDatetimeStart: '@pipeline().parameters.windowStart',
                modifiedDatetimeEnd: '@pipeline().parameters.windowEnd',
              },
            },
            sink: {
              type: 'AzureSqlSink',
              preCopyScript: 'DROP TABLE IF EXISTS dbo.stg_things',
              tableOption: 'autoCreate',
              writeBatchSize: 10000,
            },
            enableStaging: false,
          },
        },
        sqlScript(
          'Transform',
          'CREATE OR REPLACE TABLE dbo.things_out AS SELECT id, upper(name) AS name, amount * 2 AS amount, __source_file FROM dbo.stg_things ORDER BY id',
          ['CopyParquetToStaging'],
        ),
        {
          name: 'CopyToWarehouse',
          type: 'Copy',
          dependsOn: [{ activity: 'Transform', dependencyConditions: ['Succeeded'] }],
          inputs: [ref('ds_sql', { schemaName: 'dbo', tableName: 'things_out' })],
          outputs: [
            ref('ds_parquet', {
              fileSystem: 'warehouse',
              folderPath: "@concat('things/', formatDateTime(pipeline().parameters.windowEnd, 'yyyyMMddHHmm'))",
              fileName: 'things.parquet',
            }),
          ],
          typeProperties: {
            source: { type: 'AzureSqlSource', sqlReaderQuery: 'SELECT * FROM dbo.things_out ORDER BY id' },
            sink: {
              type: 'ParquetSink',
              storeSettings: { type: 'AzureBlobFSWriteSettings' },
              formatSettings: { type: 'ParquetWriteSettings' },
            },
          },
        },
      ],
    },
  },
  {
    name: 'pl_csv_upsert',
    properties: {
      parameters: { list: { type: 'String' } },
      activities: [
        sqlScript(
          'Table',
          'CREATE TABLE IF NOT EXISTS dbo.people (id VARCHAR PRIMARY KEY, name VARCHAR, city VARCHAR)',
        ),
        {
          name: 'CopyCsv',
          type: 'Copy',
          dependsOn: [{ activity: 'Table', dependencyConditions: ['Succeeded'] }],
          inputs: [ref('ds_csv')],
          outputs: [ref('ds_sql', { schemaName: 'dbo', tableName: 'people' })],
          typeProperties: {
            source: {
              type: 'DelimitedTextSource',
              storeSettings: {
                type: 'AzureBlobFSReadSettings',
                fileListPath: "@concat('lake/lists/', pipeline().parameters.list)",
              },
              formatSettings: { type: 'DelimitedTextReadSettings' },
            },
            sink: { type: 'AzureSqlSink', writeBehavior: 'upsert', upsertSettings: { useTempDB: true, keys: ['id'] } },
          },
        },
      ],
    },
  },
  {
    name: 'pl_lookup_meta',
    properties: {
      activities: [
        {
          name: 'Marker',
          type: 'Lookup',
          typeProperties: {
            dataset: ref('ds_text', { folderPath: 'marker', fileName: 'changelog.info' }),
            source: {
              type: 'DelimitedTextSource',
              storeSettings: { type: 'AzureBlobFSReadSettings', recursive: false },
            },
          },
        },
        sqlScript(
          'Seed',
          "CREATE OR REPLACE TABLE dbo.cursors (pipeline VARCHAR, value VARCHAR); INSERT INTO dbo.cursors VALUES ('a', '1'), ('b', '2')",
        ),
        {
          name: 'All',
          type: 'Lookup',
          dependsOn: [{ activity: 'Seed', dependencyConditions: ['Succeeded'] }],
          typeProperties: {
            dataset: ref('ds_sql', { schemaName: 'dbo', tableName: 'cursors' }),
            firstRowOnly: false,
            source: { type: 'AzureSqlSource', sqlReaderQuery: 'SELECT * FROM dbo.cursors ORDER BY pipeline' },
          },
        },
        {
          name: 'Meta',
          type: 'GetMetadata',
          typeProperties: {
            dataset: ref('ds_parquet', { folderPath: 'inbound/things' }),
            fieldList: ['exists', 'itemName', 'itemType', 'lastModified', 'childItems'],
          },
        },
        {
          name: 'FileMeta',
          type: 'GetMetadata',
          typeProperties: {
            dataset: ref('ds_parquet', { folderPath: 'inbound/things', fileName: 'a.parquet' }),
            fieldList: ['size', 'itemName'],
          },
        },
        {
          name: 'Missing',
          type: 'GetMetadata',
          typeProperties: { dataset: ref('ds_parquet', { folderPath: 'inbound/nothing' }), fieldList: ['exists'] },
        },
        {
          name: 'MissingFails',
          type: 'GetMetadata',
          typeProperties: { dataset: ref('ds_parquet', { folderPath: 'inbound/nothing' }), fieldList: ['childItems'] },
        },
        {
          name: 'TSql',
          type: 'Script',
          linkedServiceName: { referenceName: 'ls_sql', type: 'LinkedServiceReference' },
          typeProperties: { scripts: [{ type: 'NonQuery', text: "UPDATE [ferry].[runs] SET [status] = N'failed'" }] },
        },
      ],
    },
  },
];

let dir: string;
let rt: SynapseRuntime;
const T = (s: string) => new Date(s);

async function writeParquet(file: string, rows: string, mtime: string): Promise<void> {
  const full = path.join(dir, 'storage', 'lake', file);
  await mkdir(path.dirname(full), { recursive: true });
  await rt.services.sql.duck.run(
    `COPY (SELECT * FROM (VALUES ${rows}) AS t(id, name, amount)) TO '${full}' (FORMAT parquet)`,
  );
  await utimes(full, T(mtime), T(mtime));
}

describe('Copy over the local lake and the workspace DuckDB database', () => {
  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'synapse-copy-'));
    rt = await SynapseRuntime.open({
      artifacts: ArtifactStore.fromObjects({ linkedService: LINKED, dataset: DATASETS, pipeline: PIPELINES as never }),
      workspaceDir: dir,
      startTime: '2026-03-01T01:00:00Z',
    });
    await writeParquet('inbound/things/a.parquet', "(1, 'one', 1.5), (2, 'two', 2.5)", '2026-03-01T00:05:00Z');
    await writeParquet('inbound/things/sub/b.parquet', "(3, 'three', 3.5)", '2026-03-01T00:14:59Z');
    await writeParquet('inbound/things/c.parquet', "(4, 'four', 4.5)", '2026-03-01T00:15:00Z');
    await writeParquet('inbound/things/old.parquet', "(0, 'zero', 0.5)", '2026-02-28T00:00:00Z');
    const marker = path.join(dir, 'storage', 'lake', 'marker');
    await mkdir(marker, { recursive: true });
    const { writeFile } = await import('node:fs/promises');
    await writeFile(path.join(marker, 'changelog.info'), '2026-03-01T00.15.00Z\r\n');
  });
  after(async () => {
    await rt.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('copies Parquet files selected by wildcard, recursion and [start, end) modified time, through SQL, to Parquet', async () => {
    const run = await rt.runPipeline('pl_things', {
      windowStart: '2026-03-01T00:00:00Z',
      windowEnd: '2026-03-01T00:15:00Z',
    });
    assert.equal(run.status, 'Succeeded', run.message);
    const copy = run.activityRuns.find((a) => a.activityName === 'CopyParquetToStaging')!.output as JsonObject;
    assert.equal(
      copy.filesRead,
      2,
      'a.parquet and sub/b.parquet; c.parquet is at the exclusive end, old.parquet before the start',
    );
    assert.equal(copy.rowsRead, 3);
    assert.equal(copy.rowsCopied, 3);
    const staged = await rt.services.sql.duck.all('SELECT id, __source_file, __run_id FROM dbo.stg_things ORDER BY id');
    assert.deepEqual(
      staged.map((r) => [Number(r.id), r.__source_file, r.__run_id]),
      [
        [1, 'a.parquet', run.runId],
        [2, 'a.parquet', run.runId],
        [3, 'sub/b.parquet', run.runId],
      ],
    );
    const out = path.join(dir, 'storage', 'warehouse', 'things', '202603010015', 'things.parquet');
    const written = await rt.services.sql.duck.all(`SELECT id, name, amount FROM read_parquet('${out}') ORDER BY id`);
    assert.deepEqual(
      written.map((r) => [Number(r.id), r.name, String(r.amount)]),
      [
        [1, 'ONE', '3.0'],
        [2, 'TWO', '5.0'],
        [3, 'THREE', '7.0'],
      ],
    );
    const toWarehouse = run.activityRuns.find((a) => a.activityName === 'CopyToWarehouse')!.output as JsonObject;
    assert.equal(toWarehouse.filesWritten, 1);
  });

  it('fails autoCreate when no file matched, as there is no source schema', async () => {
    const run = await rt.runPipeline('pl_things', {
      windowStart: '2026-03-02T00:00:00Z',
      windowEnd: '2026-03-02T00:15:00Z',
    });
    assert.equal(run.status, 'Failed');
    const copy = run.activityRuns.find((a) => a.activityName === 'CopyParquetToStaging')!;
    assert.equal(copy.error!.errorCode, 'SinkAutoCreateWithoutSchema');
    assert.equal(run.activityRuns.find((a) => a.activityName === 'Transform')!.status, 'Skipped');
  });

  it('reads DelimitedText with a header from a file list and upserts into an existing table by key', async () => {
    const { writeFile } = await import('node:fs/promises');
    const lake = path.join(dir, 'storage', 'lake');
    await mkdir(path.join(lake, 'people', 'more'), { recursive: true });
    await mkdir(path.join(lake, 'lists'), { recursive: true });
    await writeFile(path.join(lake, 'people', 'p1.csv'), 'id;name;city\r\n1;Ann;Oslo\r\n2;"Bo; Jr";\r\n');
    await writeFile(path.join(lake, 'people', 'more', 'p2.csv'), 'id;name;city\n2;Bo;Bergen\n3;Cy;Rome\n');
    await writeFile(path.join(lake, 'people', 'ignored.csv'), 'id;name;city\n9;Not;Listed\n');
    await writeFile(path.join(lake, 'lists', 'first.txt'), 'p1.csv\n');
    await writeFile(path.join(lake, 'lists', 'second.txt'), 'more/p2.csv\n');
    const first = await rt.runPipeline('pl_csv_upsert', { list: 'first.txt' });
    assert.equal(first.status, 'Succeeded', first.message);
    const second = await rt.runPipeline('pl_csv_upsert', { list: 'second.txt' });
    assert.equal(second.status, 'Succeeded', second.message);
    const rows = await rt.services.sql.duck.all('SELECT id, name, city FROM dbo.people ORDER BY id');
    // Empty fields read as NULL (default nullValue); the second file updates id 2 instead of adding a row.
    assert.deepEqual(rows, [
      { id: '1', name: 'Ann', city: 'Oslo' },
      { id: '2', name: 'Bo', city: 'Bergen' },
      { id: '3', name: 'Cy', city: 'Rome' },
    ]);
    const firstCopy = first.activityRuns.find((a) => a.activityName === 'CopyCsv')!.output as JsonObject;
    assert.equal(firstCopy.filesRead, 1);
    assert.equal(firstCopy.rowsCopied, 2);
  });

  it('answers Lookup and GetMetadata as documented, and refuses T-SQL naming the step', async () => {
    const run = await rt.runPipeline('pl_lookup_meta');
    const out = (name: string) => run.activityRuns.find((a) => a.activityName === name)!;
    assert.deepEqual(out('Marker').output, { firstRow: { Prop_0: '2026-03-01T00.15.00Z' } });
    assert.deepEqual(out('All').output, {
      count: 2,
      value: [
        { pipeline: 'a', value: '1' },
        { pipeline: 'b', value: '2' },
      ],
    });
    const meta = out('Meta').output as JsonObject;
    assert.equal(meta.exists, true);
    assert.equal(meta.itemName, 'things');
    assert.equal(meta.itemType, 'Folder');
    assert.deepEqual(meta.childItems, [
      { name: 'a.parquet', type: 'File' },
      { name: 'c.parquet', type: 'File' },
      { name: 'old.parquet', type: 'File' },
      { name: 'sub', type: 'Folder' },
    ]);
    assert.match(String(meta.lastModified), /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{7}Z$/);
    assert.equal((out('FileMeta').output as JsonObject).itemName, 'a.parquet');
    assert.ok(Number((out('FileMeta').output as JsonObject).size) > 0);
    assert.deepEqual(out('Missing').output, { exists: false });
    assert.equal(out('MissingFails').status, 'Failed');
    assert.equal(out('TSql').status, 'Failed');
    assert.equal(out('TSql').error!.errorCode, 'SqlStepNotRunnable');
    assert.match(
      out('TSql').error!.message,
      /Script `TSql` block 1 .* is T-SQL \(bracket-quoted identifiers, N'…' literals\)/,
    );
  });
});
