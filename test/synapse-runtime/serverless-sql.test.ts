import assert from 'node:assert/strict';
import { cp, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { DuckDbStaging } from '../../src/dialects/duckdb/driver.js';
import {
  createExternalTableAs,
  synapseLinkFolders,
  synapseLinkSelect,
} from '../../src/export/synapse/runtime/connectors/serverless-sql.js';

describe('serverless SQL semantics (Synapse Link CSV by model.json, CETAS)', () => {
  let dir: string;
  let duck: DuckDbStaging;
  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'synapse-serverless-'));
    await cp('fixtures/synapse-link/incremental-with-deletes', path.join(dir, 'link'), { recursive: true });
    duck = await DuckDbStaging.open();
  });
  after(async () => {
    await duck.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('binds each folder by its own model.json and unions by name; refuses a folder without a readable model', async () => {
    const completed = (f: string) => /^\d{4}-\d{2}-\d{2}T/.test(f) && f < '2026-01-01T01.00.00Z';
    const folders = await synapseLinkFolders(path.join(dir, 'link'), 'account', completed);
    assert.deepEqual(
      folders.map((f) => f.folder),
      ['2026-01-01T00.15.00Z', '2026-01-01T00.30.00Z', '2026-01-01T00.45.00Z'],
    );
    const rows = await duck.all(
      `SELECT Id, name, accountnumber, __folder FROM (${synapseLinkSelect(folders)}) WHERE __folder = '2026-01-01T00.15.00Z' ORDER BY accountnumber`,
    );
    assert.equal(rows[0]!.name, 'Contoso Ltd');
    assert.equal(rows[0]!.accountnumber, 'A-001');
    assert.equal(rows[1]!.name, 'Fabrikam "Best" Inc');
    // The 00.45 folder's model has three more columns: they bind by name there, and are NULL in older folders.
    const later = await duck.all(
      `SELECT accountnumber, creditlimit, donotphone FROM (${synapseLinkSelect(folders)}) WHERE accountnumber IN ('A-001', 'A-004', 'A-005') ORDER BY accountnumber, __folder`,
    );
    assert.deepEqual(
      later
        .map((r) => [r.accountnumber, r.creditlimit, r.donotphone])
        .filter((r) => r[0] !== 'A-001' || r[1] === null)
        .slice(-2),
      [
        // Typed by the folder's model.json: decimal, boolean.
        ['A-004', '12345678901234567.89', true],
        ['A-005', null, null],
      ],
    );
    assert.ok(later.some((r) => r.accountnumber === 'A-001' && r.creditlimit === null));
    // SinkModifiedOn (`M/d/yyyy h:mm:ss tt`) is a timestamp, not text.
    const [typed] = await duck.all<{ t: string; v: string }>(
      `SELECT typeof(SinkModifiedOn) AS t, CAST(SinkModifiedOn AS VARCHAR) AS v FROM (${synapseLinkSelect(folders)}) WHERE accountnumber = 'A-005'`,
    );
    assert.deepEqual(typed, { t: 'TIMESTAMP', v: '2026-01-01 13:44:00' });
    // The folder named in changelog.info is still being written: its model.json is not readable yet.
    await assert.rejects(
      synapseLinkFolders(path.join(dir, 'link'), 'account', (f) => /^\d{4}-/.test(f)),
      /folder `2026-01-01T01\.00\.00Z` has no readable model\.json/,
    );
  });

  it('CETAS writes Parquet into an empty location and refuses one already holding data', async () => {
    const location = path.join(dir, 'warehouse', 'account', '2026-01-01T00.15.00Z');
    const first = await createExternalTableAs(
      duck,
      location,
      'account/2026-01-01T00.15.00Z/',
      'SELECT 1 AS id UNION ALL SELECT 2',
    );
    assert.equal(first.rows, 2);
    assert.equal((await readdir(location)).length, 1);
    await assert.rejects(
      createExternalTableAs(duck, location, 'account/2026-01-01T00.15.00Z/', 'SELECT 3 AS id'),
      /Cannot create external table\. External table location already exists\. Location provided: 'account\/2026-01-01T00\.15\.00Z\/'/,
    );
    const other = path.join(dir, 'warehouse', 'other');
    await writeFile(path.join(dir, 'warehouse', 'marker'), '');
    assert.equal((await createExternalTableAs(duck, other, 'other/', 'SELECT 1 AS id')).rows, 1);
  });
});
