import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { AdlsLake } from '../../src/connectors/lake/adls-lake.js';
import { LocalLake } from '../../src/connectors/lake/local-lake.js';
import type { Lake } from '../../src/core/lake.js';
import { DuckDbStaging } from '../../src/dialects/duckdb/driver.js';
import { AZURITE_ACCOUNT, type RunningAzurite, startAzurite } from '../helpers/azurite.js';

/** One contract, run against every lake backend: the local folder and ADLS Gen2 (blob endpoint) on Azurite. */
function lakeContract(name: string, open: () => Promise<{ lake: Lake; close(): Promise<void> }>) {
  describe(`lake contract: ${name}`, () => {
    let lake: Lake;
    let close: () => Promise<void>;
    before(async () => {
      ({ lake, close } = await open());
    });
    after(async () => close());

    it('writes, reads, stats and lists files and the folders implied by them', async () => {
      await lake.write('in/accounts/2026/a.txt', 'héllo');
      await lake.write('in/accounts/b.bin', Buffer.from([1, 2, 3]));
      assert.equal(await lake.readText('in/accounts/2026/a.txt'), 'héllo');
      assert.deepEqual([...(await lake.readBytes('in/accounts/b.bin'))], [1, 2, 3]);
      assert.equal((await lake.stat('in/accounts/b.bin'))?.size, 3);
      assert.equal(await lake.stat('in/missing.txt'), undefined);
      const top = await lake.list('in/accounts');
      assert.deepEqual(
        top.map((e) => [e.path, e.isDirectory]),
        [
          ['in/accounts/2026', true],
          ['in/accounts/b.bin', false],
        ],
      );
      const all = await lake.list('in', { recursive: true });
      assert.deepEqual(
        all.filter((e) => !e.isDirectory).map((e) => e.path),
        ['in/accounts/2026/a.txt', 'in/accounts/b.bin'],
      );
      assert.deepEqual(await lake.list('nothing-here'), []);
    });

    it('renames and deletes', async () => {
      await lake.write('tmp/x.part', 'data');
      await lake.rename('tmp/x.part', 'final/x.txt');
      assert.equal(await lake.readText('final/x.txt'), 'data');
      assert.equal(await lake.stat('tmp/x.part'), undefined);
      await lake.delete('final', { recursive: true });
      assert.deepEqual(await lake.list('final', { recursive: true }), []);
    });

    it('hands DuckDB a local path to read and publishes what DuckDB wrote', async () => {
      const target = 'out/t.parquet';
      const local = await lake.localWritePath(target);
      const db = await DuckDbStaging.open();
      try {
        await db.run(`COPY (SELECT 42 AS answer, 'ok' AS word) TO '${local}' (FORMAT PARQUET)`);
        await lake.publish(target);
        const readable = await lake.toLocalPath(target);
        const rows = await db.all(`SELECT answer, word FROM read_parquet('${readable}')`);
        assert.deepEqual(rows, [{ answer: 42, word: 'ok' }]);
      } finally {
        await db.close();
      }
    });
  });
}

lakeContract('local folder', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ferry-lake-'));
  return { lake: new LocalLake(dir), close: async () => fs.rmSync(dir, { recursive: true, force: true }) };
});

lakeContract('ADLS Gen2 on Azurite', async () => {
  const azurite: RunningAzurite = await startAzurite();
  const cacheDir = fs.mkdtempSync(path.join(os.tmpdir(), 'ferry-adls-cache-'));
  const lake = new AdlsLake({
    accountUrl: azurite.accountUrl,
    container: 'dataverse-demo',
    prefix: 'lake',
    sharedKey: AZURITE_ACCOUNT,
    cacheDir,
  });
  await lake.ensureContainer();
  return {
    lake,
    close: async () => {
      await azurite.stop();
      fs.rmSync(cacheDir, { recursive: true, force: true });
    },
  };
});

describe('lake URLs', () => {
  it('reads ADLS Gen2 locations in abfss and https form and leaves folders alone', async () => {
    const { parseAdlsUrl } = await import('../../src/connectors/lake/open-lake.js');
    assert.deepEqual(parseAdlsUrl('abfss://dataverse-prod@contosolake.dfs.core.windows.net/inbound/crm'), {
      accountUrl: 'https://contosolake.blob.core.windows.net',
      container: 'dataverse-prod',
      prefix: 'inbound/crm',
    });
    assert.deepEqual(parseAdlsUrl('https://contosolake.dfs.core.windows.net/lake'), {
      accountUrl: 'https://contosolake.blob.core.windows.net',
      container: 'lake',
      prefix: '',
    });
    assert.equal(parseAdlsUrl('./lake'), undefined);
  });

  it('opens an ADLS lake through the factory with the root AdlsLake reports, before its SDK is needed', async () => {
    const { openLake, parseAdlsUrl } = await import('../../src/connectors/lake/open-lake.js');
    for (const url of [
      'abfss://dataverse-prod@contosolake.dfs.core.windows.net/inbound/crm/',
      'https://contosolake.blob.core.windows.net/lake',
    ]) {
      const options = parseAdlsUrl(url)!;
      assert.equal(
        openLake(url).root,
        new AdlsLake({ ...options, sharedKey: { accountName: 'a', accountKey: 'a2V5' } }).root,
      );
    }
    assert.throws(() => openLake('s3://bucket/lake'), /neither a folder nor an ADLS Gen2 URL/);
    assert.throws(() => openLake(path.join(os.tmpdir(), 'ferry-no-such-lake-folder')), /does not exist/);
  });
});
