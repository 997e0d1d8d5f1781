import assert from 'node:assert/strict';
import fs from 'node:fs';
import { afterEach, beforeEach, describe, it } from 'node:test';
import accountsOutbound from '../../pipelines/accounts-outbound.js';
import { definePipeline } from '../../src/core/pipeline.js';
import { type RunningEmulator, startEmulator } from '../../src/emulator/server.js';
import { exportSynapseLink } from '../../src/emulator/synapse-link-export.js';
import { readSynapseLink } from '../../src/stages/read-synapse-link/spec.js';
import { runSqlExtract } from '../../src/stages/run-sql-extract/spec.js';
import { writeParquet } from '../../src/stages/write-parquet/spec.js';
import { FIXTURES, OutboundSandbox, readParquetRows } from './helpers.js';

const FOLDER = 'synapse-link/emulated';
const api = (em: RunningEmulator, path: string) => `${em.url}/api/data/v9.2/${path}`;

async function send(em: RunningEmulator, method: 'PATCH' | 'DELETE', path: string, body?: object): Promise<void> {
  const res = await fetch(api(em, path), {
    method,
    headers: { 'Content-Type': 'application/json', Accept: 'application/json', 'OData-Version': '4.0' },
    ...(body ? { body: JSON.stringify(body) } : {}),
  });
  assert.ok(res.status < 300, `${method} ${path}: ${res.status} ${await res.text()}`);
}

const ACCOUNTS = [
  {
    id: '0a000001-0000-4000-8000-000000000001',
    name: 'Contoso "Prime" Ltd',
    accountnumber: 'RT-001',
    description: 'Two lines,\nwith a comma and ünïcödé 東京',
    revenue: 1234567.89,
    numberofemployees: 250,
    industrycode: 1,
    donotphone: true,
    address1_latitude: 47.6062,
    ferry_riskscore: 0.1234,
    ferry_legacyrowversion: 9007199254740991,
    ferry_onboardedon: '2025-06-01T10:20:30Z',
  },
  {
    id: '0a000002-0000-4000-8000-000000000002',
    name: 'Fabrikam',
    accountnumber: 'RT-002',
    revenue: 0.5,
    donotphone: false,
  },
  { id: '0a000003-0000-4000-8000-000000000003', name: 'To be deleted', accountnumber: 'RT-003' },
];

describe('closing the loop: emulator → Synapse Link export → outbound pipeline', () => {
  let box: OutboundSandbox;
  let em: RunningEmulator;
  beforeEach(async () => {
    box = new OutboundSandbox();
    em = await startEmulator({ metadataDir: `${FIXTURES}/metadata` });
  });
  afterEach(async () => {
    await em.close();
    box.close();
  });

  // Both folder-name forms: the one exports in the field use, and the one the documentation gives.
  for (const [form, names] of [
    ['observed', ['2026-02-01T10.00.00Z', '2026-02-01T10.15.00Z']],
    ['documented', ['2026-02-01T10:00:00.000Z', '2026-02-01T10:15:00.000Z']],
  ] as const) {
    it(`every row written to the emulator comes out of the warehouse with the same values (${form} folder names)`, async () => {
      for (const { id, ...attrs } of ACCOUNTS) await send(em, 'PATCH', `accounts(${id})`, attrs);
      const first = await exportSynapseLink(em.store, box.lake, FOLDER, {
        metadataDir: `${FIXTURES}/metadata`,
        now: new Date('2026-02-01T10:00:00Z'),
        state: box.state,
        folderNameForm: form,
      });
      assert.equal(first.folder, names[0]);
      assert.deepEqual(
        (await box.lake.list(FOLDER)).filter((e) => e.isDirectory).map((e) => e.path.split('/').at(-1)),
        ['Changelog', 'OptionsetMetadata', names[0]].sort(),
      );
      // While a folder is being written, changelog.info names it; afterwards the next one, in the same form.
      assert.equal(await box.lake.readText(`${FOLDER}/Changelog/changelog.info`), names[1]);
      assert.deepEqual(first.rows, { account: 3 });

      // A second export interval: one update (twice), one delete.
      await send(em, 'PATCH', `accounts(${ACCOUNTS[1]!.id})`, { name: 'Fabrikam v2' });
      await send(em, 'PATCH', `accounts(${ACCOUNTS[1]!.id})`, { name: 'Fabrikam v3', numberofemployees: 12 });
      await send(em, 'DELETE', `accounts(${ACCOUNTS[2]!.id})`);
      const second = await exportSynapseLink(em.store, box.lake, FOLDER, {
        metadataDir: `${FIXTURES}/metadata`,
        now: new Date('2026-02-01T10:15:00Z'),
        state: box.state,
        folderNameForm: form,
      });
      assert.equal(second.folder, names[1]);
      assert.deepEqual(second.rows, { account: 3 });
      const none = await exportSynapseLink(em.store, box.lake, FOLDER, {
        metadataDir: `${FIXTURES}/metadata`,
        now: new Date('2026-02-01T10:30:00Z'),
        state: box.state,
        folderNameForm: form,
      });
      assert.equal(none.folder, null);

      const def = definePipeline({
        name: 'round-trip-outbound',
        direction: 'outbound',
        stages: [
          readSynapseLink({ folder: FOLDER, tables: ['account'] }),
          runSqlExtract({ table: 'account' }),
          writeParquet({ deletes: 'separate-file' }),
        ],
      });
      const report = await box.run(def);
      assert.equal(report.status, 'succeeded', report.error?.message);
      assert.deepEqual([report.counts.read, report.counts.written, report.counts.deleted], [6, 2, 1]);
      const windows = fs.readdirSync(box.warehouse('account'), { withFileTypes: true }).filter((e) => e.isDirectory());
      assert.equal(windows.length, 1, `one window folder, got ${windows.map((e) => e.name).join(', ')}`);
      const dir = box.warehouse('account', windows[0]!.name);
      const rows = await readParquetRows(
        `${dir}/part-00000.parquet`,
        `Id, name, accountnumber, description, CAST(revenue AS DOUBLE) AS revenue, numberofemployees, industrycode, donotphone, address1_latitude,
       CAST(ferry_riskscore AS DOUBLE) AS ferry_riskscore, ferry_legacyrowversion, strftime(ferry_onboardedon, '%Y-%m-%dT%H:%M:%SZ') AS ferry_onboardedon, versionnumber,
       strftime(modifiedon, '%Y-%m-%dT%H:%M:%SZ') AS modifiedon, strftime(createdon, '%Y-%m-%dT%H:%M:%SZ') AS createdon`,
        'Id',
      );
      // Expected values come from the emulator's own rows (the source of truth), compared field by field.
      const expected = em.store
        .rows('account')
        .sort((a, b) => (a.id < b.id ? -1 : 1))
        .map((r) => {
          const v = (k: string) => (r.attributes[k] === undefined ? null : r.attributes[k]);
          const big = (k: string) => (v(k) === null ? null : BigInt(v(k) as number));
          return {
            Id: r.id,
            name: v('name'),
            accountnumber: v('accountnumber'),
            description: v('description'),
            revenue: v('revenue'),
            numberofemployees: big('numberofemployees'),
            industrycode: big('industrycode'),
            donotphone: v('donotphone'),
            address1_latitude: v('address1_latitude'),
            ferry_riskscore: v('ferry_riskscore'),
            ferry_legacyrowversion: big('ferry_legacyrowversion'),
            ferry_onboardedon: v('ferry_onboardedon'),
            versionnumber: BigInt(r.versionNumber),
            modifiedon: r.modifiedOn,
            createdon: r.createdOn,
          };
        });
      assert.equal(expected.length, 2);
      assert.deepEqual(rows, expected);
      assert.equal(rows[1]!.name, 'Fabrikam v3');
      assert.equal(rows[0]!.description, ACCOUNTS[0]!.description);
      const deletes = await readParquetRows(`${dir}/deletes-00000.parquet`, 'Id, IsDelete');
      assert.deepEqual(deletes, [{ Id: ACCOUNTS[2]!.id, IsDelete: true }]);
    });
  }

  it('the accounts-outbound demo pipeline labels choices from the exported OptionsetMetadata', async () => {
    await send(em, 'PATCH', `accounts(${ACCOUNTS[0]!.id})`, {
      name: 'Labelled',
      industrycode: 1,
      statecode: 0,
      statuscode: 1,
    });
    await send(em, 'PATCH', `accounts(${ACCOUNTS[1]!.id})`, { name: 'Unlabelled' });
    const exported = await exportSynapseLink(em.store, box.lake, 'synapse-link/dataverse-demo', {
      metadataDir: `${FIXTURES}/metadata`,
      now: new Date('2026-02-01T11:00:00Z'),
    });
    assert.equal(exported.folder, '2026-02-01T11.00.00Z');
    assert.equal(em.store.get('account', ACCOUNTS[1]!.id)?.attributes.statecode, 0);
    const report = await box.run(accountsOutbound);
    assert.equal(report.status, 'succeeded', report.error?.message);
    const rows = await readParquetRows(
      box.warehouse('account_labelled', '2026-02-01T11.00.00Z', 'part-00000.parquet'),
      'Id, name, industrycode_label, statecode_label',
      'Id',
    );
    assert.deepEqual(rows, [
      { Id: ACCOUNTS[0]!.id, name: 'Labelled', industrycode_label: 'Accounting', statecode_label: 'Active' },
      // The emulator gives new rows statecode 0 (Active), like Dataverse.
      { Id: ACCOUNTS[1]!.id, name: 'Unlabelled', industrycode_label: null, statecode_label: 'Active' },
    ]);
  });
});
