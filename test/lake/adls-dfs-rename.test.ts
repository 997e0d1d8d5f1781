import assert from 'node:assert/strict';
import { after, afterEach, describe, it } from 'node:test';
import { AdlsLake } from '../../src/connectors/lake/adls-lake.js';
import { FerryError } from '../../src/core/errors.js';
import { AZURITE_ACCOUNT } from '../helpers/azurite.js';
import { startFakeAdls } from './fake-adls-server.js';

const BLOB = 'devstoreaccount1.blob.core.windows.net';
const DFS = 'devstoreaccount1.dfs.core.windows.net';

/** The real storage clients, pointed at the fake account through `HTTP_PROXY` (set before they are built). */
function lakeOn(proxy: string, options: { hierarchicalNamespace?: boolean } = {}): AdlsLake {
  process.env.HTTP_PROXY = proxy;
  process.env.http_proxy = proxy;
  delete process.env.NO_PROXY;
  delete process.env.no_proxy;
  return new AdlsLake({
    accountUrl: `http://${BLOB}`,
    container: 'lake',
    prefix: 'root',
    sharedKey: AZURITE_ACCOUNT,
    ...options,
  });
}

describe('ADLS Gen2 rename: DFS endpoint on a hierarchical namespace, copy + delete on flat accounts', () => {
  const saved = { ...process.env };
  let fake: Awaited<ReturnType<typeof startFakeAdls>>;
  afterEach(async () => {
    await fake?.close();
  });
  after(() => {
    process.env = saved;
  });

  it('asks the account once, then renames through the DFS endpoint in one request that names the source', async () => {
    fake = await startFakeAdls({ hierarchicalNamespace: true });
    const lake = lakeOn(fake.url);
    await lake.write('warehouse/account/w1/.part-00000.parquet.tmp', 'parquet bytes');
    await lake.write('warehouse/account/w1/.manifest.json.tmp', '{}');
    fake.requests.length = 0;

    await lake.rename('warehouse/account/w1/.part-00000.parquet.tmp', 'warehouse/account/w1/part-00000.parquet');
    await lake.rename('warehouse/account/w1/.manifest.json.tmp', 'warehouse/account/w1/manifest.json');

    assert.deepEqual(
      fake.requests.map((r) => [r.method, r.host, r.path, r.query, r.headers['x-ms-rename-source'] ?? null]),
      [
        ['GET', BLOB, '/lake', { restype: 'account', comp: 'properties' }, null],
        [
          'PUT',
          DFS,
          '/lake/root/warehouse/account/w1/part-00000.parquet',
          { mode: 'legacy' },
          '/lake/root/warehouse/account/w1/.part-00000.parquet.tmp',
        ],
        [
          'PUT',
          DFS,
          '/lake/root/warehouse/account/w1/manifest.json',
          { mode: 'legacy' },
          '/lake/root/warehouse/account/w1/.manifest.json.tmp',
        ],
      ],
    );
    for (const r of fake.requests) assert.match(r.headers.authorization ?? '', /^SharedKey devstoreaccount1:/);
    assert.deepEqual([...fake.files.keys()].sort(), [
      '/lake/root/warehouse/account/w1/manifest.json',
      '/lake/root/warehouse/account/w1/part-00000.parquet',
    ]);
    assert.equal(fake.files.get('/lake/root/warehouse/account/w1/part-00000.parquet')!.toString(), 'parquet bytes');
  });

  it('a rename whose source is gone fails with the service error, named, and not as retryable', async () => {
    fake = await startFakeAdls({ hierarchicalNamespace: true });
    const lake = lakeOn(fake.url, { hierarchicalNamespace: true });
    await assert.rejects(lake.rename('missing.tmp', 'final.parquet'), (error: unknown) => {
      assert.ok(error instanceof FerryError);
      assert.equal(error.code, 'lake.adls');
      assert.equal(error.disposition, 'fatal');
      assert.match(error.message, /rename `missing\.tmp` to `final\.parquet`.*404 SourcePathNotFound/);
      return true;
    });
    // The setting was given: the account was not asked.
    assert.deepEqual(
      fake.requests.map((r) => [r.method, r.host]),
      [['PUT', DFS]],
    );
  });

  it('on a flat account the blob endpoint copies then deletes, and the DFS endpoint is never called', async () => {
    fake = await startFakeAdls({ hierarchicalNamespace: false });
    const lake = lakeOn(fake.url);
    await lake.write('w/.a.tmp', 'bytes');
    fake.requests.length = 0;
    await lake.rename('w/.a.tmp', 'w/a.parquet');
    assert.deepEqual(
      fake.requests.map((r) => [r.method, r.host, r.path]),
      [
        ['GET', BLOB, '/lake'],
        ['PUT', BLOB, '/lake/root/w/a.parquet'],
        ['DELETE', BLOB, '/lake/root/w/.a.tmp'],
      ],
    );
    assert.match(fake.requests[1]!.headers['x-ms-copy-source'] ?? '', /\/lake\/root\/w\/\.a\.tmp$/);
    assert.deepEqual([...fake.files.keys()], ['/lake/root/w/a.parquet']);
  });
});
