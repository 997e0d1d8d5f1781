import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { type RunningEmulator, startEmulator } from '../../src/emulator/server.js';
import { ArtifactStore } from '../../src/export/synapse/runtime/artifact-store.js';
import type { JsonObject } from '../../src/export/synapse/runtime/expression/json-value.js';
import { SynapseRuntime } from '../../src/export/synapse/runtime/synapse-runtime.js';

// Hand-written artifacts in the export's shape; the Dataverse emulator is a separate service reached over HTTP.
const LINKED = [
  {
    name: 'ls_adls',
    properties: { type: 'AzureBlobFS', typeProperties: { url: 'https://lake.dfs.core.windows.net/' } },
  },
  { name: 'ls_sql', properties: { type: 'AzureSqlDatabase', typeProperties: {} } },
  {
    name: 'ls_dataverse',
    properties: {
      type: 'CommonDataServiceForApps',
      typeProperties: { deploymentType: 'Online', serviceUri: 'https://example.crm.dynamics.com' },
    },
  },
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
      parameters: { folderPath: { type: 'String' } },
      typeProperties: {
        location: { type: 'AzureBlobFSLocation', fileSystem: 'lake', folderPath: '@dataset().folderPath' },
      },
    },
  },
  {
    name: 'ds_account',
    properties: {
      type: 'CommonDataServiceForAppsEntity',
      linkedServiceName: { referenceName: 'ls_dataverse', type: 'LinkedServiceReference' },
      schema: [],
      typeProperties: { entityName: 'account' },
    },
  },
  {
    name: 'ds_region',
    properties: {
      type: 'CommonDataServiceForAppsEntity',
      linkedServiceName: { referenceName: 'ls_dataverse', type: 'LinkedServiceReference' },
      schema: [],
      typeProperties: { entityName: 'ferry_region' },
    },
  },
  {
    name: 'ds_sql',
    properties: {
      type: 'AzureSqlTable',
      linkedServiceName: { referenceName: 'ls_sql', type: 'LinkedServiceReference' },
      parameters: { tableName: { type: 'String' } },
      typeProperties: { schema: 'dbo', table: '@dataset().tableName' },
    },
  },
];
const toDataverse = {
  name: 'pl_to_dataverse',
  properties: {
    parameters: { folder: { type: 'String' }, retry: { type: 'Int', defaultValue: 0 } },
    activities: [
      {
        name: 'CopyToDataverse',
        type: 'Copy',
        inputs: [ref('ds_parquet', { folderPath: '@pipeline().parameters.folder' })],
        outputs: [ref('ds_account')],
        policy: { retry: 0, retryIntervalInSeconds: 30 },
        typeProperties: {
          source: {
            type: 'ParquetSource',
            storeSettings: { type: 'AzureBlobFSReadSettings', recursive: true, wildcardFileName: '*.parquet' },
          },
          sink: {
            type: 'CommonDataServiceForAppsSink',
            writeBehavior: 'Upsert',
            alternateKeyName: 'ferry_accountnumber_key',
            ignoreNullValues: true,
            writeBatchSize: 3,
          },
          enableSkipIncompatibleRow: true,
          redirectIncompatibleRowSettings: {
            linkedServiceName: { referenceName: 'ls_adls', type: 'LinkedServiceReference' },
            path: 'lake/errors/accounts',
          },
        },
      },
    ],
  },
};
const fromDataverse = (name: string, dataset: string, fetch: string) => ({
  name,
  properties: {
    activities: [
      {
        name: 'CopyFromDataverse',
        type: 'Copy',
        inputs: [ref(dataset)],
        outputs: [ref('ds_sql', { tableName: `${name}_raw` })],
        typeProperties: {
          source: { type: 'CommonDataServiceForAppsSource', query: fetch },
          sink: { type: 'AzureSqlSink', tableOption: 'autoCreate' },
        },
      },
    ],
  },
});
const PIPELINES = [
  toDataverse,
  fromDataverse(
    'pl_keymap_account',
    'ds_account',
    '<fetch mapping="logical"><entity name="account"><attribute name="accountid" /><attribute name="accountnumber" /></entity></fetch>',
  ),
  fromDataverse(
    'pl_keymap_region',
    'ds_region',
    '<fetch mapping="logical"><entity name="ferry_region"><attribute name="ferry_regionid" /><attribute name="ferry_code" /></entity></fetch>',
  ),
];

const OWNER = '3f2504e0-4f89-41d3-9a0c-0305e82c3301';
let dir: string;
let emulator: RunningEmulator;
let throttled: RunningEmulator;
let rt: SynapseRuntime;
let rtThrottled: SynapseRuntime;

async function writeParquet(runtime: SynapseRuntime, root: string, file: string, select: string): Promise<void> {
  const full = path.join(root, 'storage', 'lake', file);
  await mkdir(path.dirname(full), { recursive: true });
  await runtime.services.sql.duck.run(`COPY (${select}) TO '${full}' (FORMAT parquet)`);
}

const artifacts = () =>
  ArtifactStore.fromObjects({ linkedService: LINKED, dataset: DATASETS, pipeline: PIPELINES as never });
const accounts = (e: RunningEmulator) =>
  new Map(e.store.rows('account').map((r) => [String(r.attributes.accountnumber), r.attributes]));

describe('Dataverse connector against the emulator over HTTP', () => {
  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'synapse-dv-'));
    emulator = await startEmulator({ metadataDir: 'fixtures/metadata' });
    throttled = await startEmulator({ metadataDir: 'fixtures/metadata', throttleEvery: 3, retryAfterSec: 0.01 });
    rt = await SynapseRuntime.open({
      artifacts: artifacts(),
      workspaceDir: path.join(dir, 'a'),
      dataverseUrl: emulator.url,
      startTime: '2026-03-01T00:00:00Z',
    });
    rtThrottled = await SynapseRuntime.open({
      artifacts: artifacts(),
      workspaceDir: path.join(dir, 'b'),
      dataverseUrl: throttled.url,
      startTime: '2026-03-01T00:00:00Z',
    });
    const a = path.join(dir, 'a');
    await writeParquet(
      rt,
      a,
      'in/plain/1.parquet',
      "SELECT * FROM (VALUES ('A-1', 'Alpha', 10.5, 3, NULL), ('A-2', 'Beta', NULL, 4, NULL), ('A-3', 'Gamma', 7.25, NULL, NULL)) t(accountnumber, name, revenue, numberofemployees, description)",
    );
    await writeParquet(
      rt,
      a,
      'in/plain/2.parquet',
      "SELECT 'A-4' AS accountnumber, 'Delta' AS name, 1.0 AS revenue, 2 AS numberofemployees, NULL AS description",
    );
    await writeParquet(
      rt,
      a,
      'in/owner/1.parquet',
      `SELECT 'A-5' AS accountnumber, 'Owned' AS name, '${OWNER}' AS ownerid`,
    );
    await writeParquet(
      rt,
      a,
      'in/owner_ref/1.parquet',
      `SELECT 'A-5' AS accountnumber, 'Owned' AS name, '${OWNER}' AS ownerid, 'systemuser' AS "ownerid@EntityReference"`,
    );
    await writeParquet(
      rt,
      a,
      'in/multiselect/1.parquet',
      "SELECT 'A-6' AS accountnumber, 'Picky' AS name, '1,2' AS ferry_interests",
    );
    await writeParquet(
      rt,
      a,
      'in/refused/1.parquet',
      "SELECT * FROM (VALUES ('R-1', 'Ok one', 1.0), ('R-2', 'Ok two', 2.0)) t(accountnumber, name, revenue)",
    );
    await writeParquet(
      rt,
      a,
      'in/refused/2.parquet',
      "SELECT 'R-3' AS accountnumber, 'Too rich' AS name, 1e16 AS revenue",
    );
    await writeParquet(
      rt,
      a,
      'in/incompatible/1.parquet',
      "SELECT * FROM (VALUES ('I-1', 'Fine', '5'), ('I-2', 'Not a number', 'lots')) t(accountnumber, name, numberofemployees)",
    );
    await writeParquet(
      rtThrottled,
      path.join(dir, 'b'),
      'in/storm/1.parquet',
      "SELECT 'S-' || i AS accountnumber, 'Storm ' || i AS name FROM range(12) r(i)",
    );
  });
  after(async () => {
    await rt.close();
    await rtThrottled.close();
    await emulator.close();
    await throttled.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('upserts by alternate key in batches, converting types and ignoring nulls', async () => {
    const run = await rt.runPipeline('pl_to_dataverse', { folder: 'in/plain' });
    assert.equal(run.status, 'Succeeded', run.message);
    const out = run.activityRuns[0]!.output as JsonObject;
    assert.equal(out.rowsRead, 4);
    assert.equal(out.rowsCopied, 4);
    const rows = accounts(emulator);
    assert.equal(rows.get('A-1')!.name, 'Alpha');
    assert.equal(Number(rows.get('A-1')!.revenue), 10.5);
    assert.equal(rows.get('A-1')!.numberofemployees, 3);
    assert.ok(!rows.get('A-2')!.revenue, 'a null with ignoreNullValues leaves the field unset');
    // Upsert again: same key, no new record.
    const again = await rt.runPipeline('pl_to_dataverse', { folder: 'in/plain' });
    assert.equal(again.status, 'Succeeded');
    assert.equal(emulator.store.count('account'), 4);
  });

  it('fails a multi-target lookup without its @EntityReference column, and writes it with one', async () => {
    const run = await rt.runPipeline('pl_to_dataverse', { folder: 'in/owner' });
    assert.equal(run.status, 'Failed');
    assert.equal(run.activityRuns[0]!.error!.errorCode, 'DynamicsMissingTargetForMultiTargetLookupField');
    assert.match(run.activityRuns[0]!.error!.message, /'ownerid'/);
    assert.equal(accounts(emulator).has('A-5'), false);
    const withRef = await rt.runPipeline('pl_to_dataverse', { folder: 'in/owner_ref' });
    assert.equal(withRef.status, 'Succeeded', withRef.message);
    const owned = accounts(emulator).get('A-5')!;
    assert.equal(owned.ownerid, OWNER);
    assert.equal(owned['ownerid@target'], 'systemuser');
  });

  it('refuses a MultiSelectPicklist column as the connector documents', async () => {
    const run = await rt.runPipeline('pl_to_dataverse', { folder: 'in/multiselect' });
    assert.equal(run.status, 'Failed');
    assert.equal(run.activityRuns[0]!.error!.errorCode, 'UserErrorUnsupportedAttributeType');
    assert.match(run.activityRuns[0]!.error!.message, /`ferry_interests`/);
    assert.equal(accounts(emulator).has('A-6'), false);
  });

  it('fails the activity on a row the service refuses, keeping the rows written before it', async () => {
    const run = await rt.runPipeline('pl_to_dataverse', { folder: 'in/refused' });
    assert.equal(run.status, 'Failed');
    const copy = run.activityRuns[0]!;
    assert.equal(copy.error!.errorCode, 'DynamicsOperationFailed');
    assert.match(copy.error!.message, /error code: 0x80044331/);
    assert.equal((copy.output as JsonObject).rowsCopied, 2);
    const rows = accounts(emulator);
    assert.ok(rows.has('R-1') && rows.has('R-2'));
    assert.equal(rows.has('R-3'), false);
  });

  it('skips and redirects a type-incompatible row when enableSkipIncompatibleRow is on', async () => {
    const run = await rt.runPipeline('pl_to_dataverse', { folder: 'in/incompatible' });
    assert.equal(run.status, 'Succeeded', run.message);
    const out = run.activityRuns[0]!.output as JsonObject;
    assert.equal(out.rowsCopied, 1);
    assert.equal(out.rowsSkipped, 1);
    assert.match(String(out.logFilePath), /^lake\/errors\/accounts\//);
    const { readFile } = await import('node:fs/promises');
    const log = await readFile(path.join(dir, 'a', 'storage', out.logFilePath as string), 'utf8');
    assert.match(
      log,
      /I-2,Not a number,lots,UserErrorInvalidDataValue,"Column `numberofemployees` \(Integer\) cannot take/,
    );
  });

  it('rides out a 429 storm by honouring Retry-After: every row lands exactly once', async () => {
    const run = await rtThrottled.runPipeline('pl_to_dataverse', { folder: 'in/storm' });
    assert.equal(run.status, 'Succeeded', run.message);
    assert.equal((run.activityRuns[0]!.output as JsonObject).rowsCopied, 12);
    assert.equal(throttled.store.count('account'), 12);
    assert.ok(
      rtThrottled.services.dataverse!.stats.throttled >= 4,
      `throttled answers seen: ${rtThrottled.services.dataverse!.stats.throttled}`,
    );
  });

  it('reads Dataverse with FetchXML, and fails as documented when there is no row to infer a schema from', async () => {
    const run = await rt.runPipeline('pl_keymap_account');
    assert.equal(run.status, 'Succeeded', run.message);
    const rows = await rt.services.sql.duck.all(
      'SELECT accountnumber FROM dbo.pl_keymap_account_raw ORDER BY accountnumber',
    );
    assert.deepEqual(
      rows.map((r) => r.accountnumber),
      ['A-1', 'A-2', 'A-3', 'A-4', 'A-5', 'I-1', 'R-1', 'R-2'],
    );
    const empty = await rt.runPipeline('pl_keymap_region');
    assert.equal(empty.status, 'Failed');
    assert.match(
      empty.activityRuns[0]!.error!.message,
      /valid structure information \(column name and type\) are required for Dynamics source/,
    );
  });
});
