/**
 * The exported `pl_regions_inbound` (a self-referencing lookup: `ferry_parentregionid` → `ferry_region` by code)
 * run end to end on the runtime: every SQL step through its DuckDB rendering, a temporary lake, the Dataverse
 * emulator over HTTP.
 * - review defect 8: the key-map copy reads Dataverse incrementally (records modified since its watermark, less an
 *   overlap), after a full read while the key map is empty; a record created in Dataverse between runs is found;
 *   once a day the read is full and drops the entries of records deleted in Dataverse;
 * - a record deleted in Dataverse between full reads: the ids the window's rows point at are read back before the
 *   copies, so a row pointing at it is rejected `lookup.target_missing` (nothing written, the run succeeds) and a
 *   parent sent again in the window is linked as new, as the local runner does;
 * - review "Recovery": a parent and its child (and grandchild) in one window are resolved as the local runner does,
 *   not rejected `lookup.target_missing`; a target found nowhere is still rejected;
 * - the key-map raw table is emptied, not dropped, before each key-map copy (as the T-SQL rendering does).
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { DuckDbStaging, duckLiteral } from '../../src/dialects/duckdb/driver.js';
import { type RunningEmulator, startEmulator } from '../../src/emulator/server.js';
import type { PipelineRun } from '../../src/export/synapse/runtime/run-records.js';
import type { SynapseRuntime } from '../../src/export/synapse/runtime/synapse-runtime.js';
import { describeRun, openDeployedRuntime } from './real-export.js';

type Region = [code: string, name: string, parent: string | null];

describe('pl_regions_inbound on the runtime: incremental key maps and same-window lookups', () => {
  let dir: string;
  let lake: string;
  let emulator: RunningEmulator;
  let rt: SynapseRuntime;
  let files: DuckDbStaging;
  let fileNo = 0;

  /** A delta file of regions in the lake's `inbound/regions` folder. */
  async function deltaFile(rows: readonly Region[]): Promise<void> {
    fileNo += 1;
    const full = path.join(lake, 'inbound', 'regions', `2026-11-20T08-${String(fileNo).padStart(2, '0')}-00Z.parquet`);
    await mkdir(path.dirname(full), { recursive: true });
    const values = rows
      .map(
        ([c, n, p]) =>
          `(${duckLiteral(c)}, ${duckLiteral(n)}, ${p === null ? 'NULL' : duckLiteral(p)}, TIMESTAMP '2026-11-20 07:00:00')`,
      )
      .join(', ');
    await files.run(
      `COPY (SELECT * FROM (VALUES ${values}) AS t(region_code, region_name, parent_region_code, modified_at)) TO ${duckLiteral(full)} (FORMAT parquet)`,
    );
  }

  const region = (code: string) => emulator.store.rows('ferry_region').find((r) => r.attributes.ferry_code === code);
  const keymapRead = (run: PipelineRun, name = 'CopyKeyMap_ferry_region') => {
    const a = run.activityRuns.find((x) => x.activityName === name && x.status === 'Succeeded');
    assert.ok(a, `${name} ran\n${describeRun(run)}`);
    return Number((a.output as { rowsRead?: number }).rowsRead);
  };
  const rejects = async () =>
    rt.services.sql.duck.all<{ reason: string; key: string }>(
      `SELECT reason, key FROM ferry.rejects WHERE pipeline = 'regions-inbound' ORDER BY key`,
    );

  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'synapse-keymaps-'));
    lake = path.join(dir, 'lake');
    await mkdir(lake, { recursive: true });
    files = await DuckDbStaging.open({ path: ':memory:', threads: 1, memoryLimit: '256MB' });
    emulator = await startEmulator({ metadataDir: 'fixtures/metadata' });
    rt = await openDeployedRuntime({
      workspaceDir: path.join(dir, 'ws'),
      // Files are written during the test with the wall clock's modified times: the runtime's clock runs ahead.
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

  it('a parent, its child and grandchild in one window are linked; a target found nowhere is rejected', async () => {
    // Regions that exist in Dataverse since long before the runs (last modified two days ago).
    const old = new Date(Date.now() - 2 * 86_400_000);
    for (let i = 0; i < 30; i++)
      emulator.store.put('ferry_region', randomUUID(), { ferry_code: `OLD${i}`, ferry_name: `Old ${i}` }, old);
    // The raw key-map table as an earlier run left it, with a column the copy does not write: emptied, not dropped.
    await rt.services.sql.duck.run(
      `CREATE TABLE dbo.stg_keymap_ferry_region_raw (ferry_regionid UUID, ferry_code VARCHAR, kept_by_truncate VARCHAR)`,
    );
    await rt.services.sql.duck.run(
      `INSERT INTO dbo.stg_keymap_ferry_region_raw VALUES ('${randomUUID()}', 'STALE', 'x')`,
    );
    await deltaFile([
      ['CH', 'Switzerland', 'DACH'],
      ['DACH', 'Germany, Austria, Switzerland', 'EMEA'],
      ['EMEA', 'Europe, Middle East and Africa', null],
      ['ORPHAN', 'Nobody knows', 'NOWHERE'],
      // Enough rows that one reject stays within the pipeline's reject threshold (5 %).
      ...Array.from({ length: 22 }, (_, i): Region => [`F${i}`, `Filler ${i}`, null]),
    ]);
    const run = await rt.runPipeline('pl_regions_inbound', { mode: 'scheduled' });
    assert.equal(run.status, 'Succeeded', describeRun(run));
    // First run: the key map holds nothing of ferry_region, so the read is full.
    assert.ok(keymapRead(run) >= 30, `full read: ${keymapRead(run)} rows`);
    const [emea, dach, ch] = [region('EMEA'), region('DACH'), region('CH')];
    assert.ok(emea && dach && ch, 'the three regions are written');
    assert.equal(emea.attributes.ferry_parentregionid ?? null, null);
    assert.equal(dach.attributes.ferry_parentregionid, emea.id, 'the child points at its parent of the same window');
    assert.equal(ch.attributes.ferry_parentregionid, dach.id, 'the grandchild points at its parent');
    assert.equal(region('ORPHAN'), undefined, 'a row whose target exists nowhere is not written');
    assert.deepEqual(await rejects(), [{ reason: 'lookup.target_missing', key: 'ferry_code=ORPHAN' }]);
    const columns = await rt.services.sql.duck.all<{ column_name: string }>(
      `SELECT column_name FROM information_schema.columns WHERE table_schema = 'dbo' AND table_name = 'stg_keymap_ferry_region_raw' ORDER BY ordinal_position`,
    );
    assert.ok(
      columns.some((c) => c.column_name === 'kept_by_truncate'),
      'the raw key-map table was emptied, not dropped',
    );
    const stale = await rt.services.sql.duck.all(
      `SELECT * FROM dbo.stg_keymap_ferry_region_raw WHERE ferry_code = 'STALE'`,
    );
    assert.equal(stale.length, 0, 'and its old rows are gone');
  });

  it('contacts: a contact and its parent contact in one window (a multi-target Customer lookup)', async () => {
    const full = path.join(lake, 'inbound', 'contacts', '2026-11-20T10-00-00Z.parquet');
    await mkdir(path.dirname(full), { recursive: true });
    // Two rows shaped like the fixtures' contacts: N-2's company is the contact N-1, both new.
    const template = `FROM read_parquet('fixtures/inbound/contacts/*.parquet') WHERE contact_no = 'C-3'`;
    const row = (no: string, parent: string | null) =>
      `SELECT * REPLACE (${duckLiteral(no)} AS contact_no, ${parent ? "'contact'" : 'NULL'} AS company_type, ${parent ? duckLiteral(parent) : 'NULL'} AS company_ref, ${parent ? 'company_source' : 'NULL'} AS company_source, NULL AS region_code, NULL AS currency, NULL AS owner_id) ${template}`;
    await files.run(
      `COPY (${row('N-2', 'N-1')} UNION ALL ${row('N-1', null)}) TO ${duckLiteral(full)} (FORMAT parquet)`,
    );
    const run = await rt.runPipeline('pl_contacts_inbound', { mode: 'scheduled' });
    const rejected = await rt.services.sql.duck.all<{ reason: string; key: string; message: string }>(
      `SELECT reason, key, message FROM ferry.rejects WHERE pipeline = 'contacts-inbound'`,
    );
    assert.equal(run.status, 'Succeeded', `${describeRun(run)}\n${JSON.stringify(rejected)}`);
    const contact = (no: string) => emulator.store.rows('contact').find((r) => r.attributes.ferry_legacyid === no);
    const [parent, child] = [contact('N-1'), contact('N-2')];
    assert.ok(parent && child, 'both contacts are written');
    assert.equal(child.attributes.parentcustomerid, parent.id, 'the child points at its parent contact');
    assert.deepEqual(rejected, []);
  });

  it('the next run reads only the records modified since the watermark, and finds one created meanwhile', async () => {
    // Created in Dataverse by someone else between the runs.
    emulator.store.put('ferry_region', randomUUID(), { ferry_code: 'LATAM', ferry_name: 'Latin America' });
    await deltaFile([
      ['BR', 'Brazil', 'LATAM'],
      ['NORD', 'Nordics', 'OLD7'],
    ]);
    const run = await rt.runPipeline('pl_regions_inbound', { mode: 'scheduled' });
    assert.equal(run.status, 'Succeeded', describeRun(run));
    const read = keymapRead(run);
    // The 30 old regions were read by the first run; now only the recent ones (the first run's writes, LATAM).
    assert.ok(read < 30, `incremental read: ${read} rows, not the whole table`);
    assert.ok(read >= 1, 'LATAM is read');
    assert.equal(region('BR')!.attributes.ferry_parentregionid, region('LATAM')!.id);
    assert.equal(region('NORD')!.attributes.ferry_parentregionid, region('OLD7')!.id, 'older records stay mapped');
    assert.deepEqual(
      (await rejects()).map((r) => r.key),
      ['ferry_code=ORPHAN'],
      'no new reject',
    );
  });

  it('a record deleted in Dataverse between full reads: its child is rejected before anything is written, as the local runner does', async () => {
    // Deleted by someone else after the key map learned them; the next full read is a day away.
    const gone = region('OLD5')!;
    const again = region('OLD9')!;
    emulator.store.delete('ferry_region', gone.id);
    emulator.store.delete('ferry_region', again.id);
    await deltaFile([
      ['ORPHAN5', 'Child of a deleted region', 'OLD5'],
      // A deleted parent sent again in the same window: its child points at the new record.
      ['OLD9', 'Old 9, again', null],
      ['KID9', 'Child of the region sent again', 'OLD9'],
      ...Array.from({ length: 22 }, (_, i): Region => [`H${i}`, `Filler ${i}`, null]),
    ]);
    const run = await rt.runPipeline('pl_regions_inbound', { mode: 'scheduled' });
    assert.equal(run.status, 'Succeeded', describeRun(run));
    assert.ok(keymapRead(run) < 30, `incremental read: ${keymapRead(run)} rows`);
    assert.equal(region('ORPHAN5'), undefined, 'the row pointing at the deleted record is not written');
    assert.ok(region('H0') && region('H21'), 'the other rows are written');
    const reborn = region('OLD9')!;
    assert.notEqual(reborn.id, again.id, 'the parent sent again is a new record');
    assert.equal(region('KID9')?.attributes.ferry_parentregionid, reborn.id, 'its child points at the new record');
    assert.deepEqual(
      (await rejects()).map((r) => `${r.key} ${r.reason}`),
      ['ferry_code=ORPHAN lookup.target_missing', 'ferry_code=ORPHAN5 lookup.target_missing'],
    );
    const stale = await rt.services.sql.duck.all<{ id: string }>(
      `SELECT CAST(id AS VARCHAR) AS id FROM ferry.keymap WHERE entity_set = 'ferry_regions' AND key_predicate IN ('ferry_code=''OLD5''', 'ferry_code=''OLD9''')`,
    );
    assert.deepEqual(
      stale.map((r) => r.id),
      [reborn.id],
      'the deleted record left the key map; the new one is in it',
    );
  });

  it('a day later the read is full again and drops a record deleted in Dataverse, whose child is then rejected', async () => {
    const gone = region('OLD3')!;
    emulator.store.delete('ferry_region', gone.id);
    // The last full read was the first run's: make it a day old, as the schedule would.
    await rt.services.sql.duck.run(
      `UPDATE ferry.cursors SET value = '2026-01-01T00:00:00.000000' WHERE pipeline = 'ferry:keymap' AND source = 'dataverse:ferry_region:full'`,
    );
    await deltaFile([
      ['LOST', 'Child of a deleted region', 'OLD3'],
      ...Array.from({ length: 22 }, (_, i): Region => [`G${i}`, `Filler ${i}`, null]),
    ]);
    const run = await rt.runPipeline('pl_regions_inbound', { mode: 'scheduled' });
    assert.equal(run.status, 'Succeeded', describeRun(run));
    assert.ok(keymapRead(run) >= 30, `full read: ${keymapRead(run)} rows`);
    const stale = await rt.services.sql.duck.all(
      `SELECT * FROM ferry.keymap WHERE entity_set = 'ferry_regions' AND key_predicate = 'ferry_code=''OLD3'''`,
    );
    assert.equal(stale.length, 0, 'the deleted record is no longer in the key map');
    assert.equal(region('LOST'), undefined);
    assert.deepEqual(
      (await rejects()).map((r) => `${r.key} ${r.reason}`),
      [
        'ferry_code=LOST lookup.target_missing',
        'ferry_code=ORPHAN lookup.target_missing',
        'ferry_code=ORPHAN5 lookup.target_missing',
      ],
    );
  });
});
