import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { AdlsLake } from '../../src/connectors/lake/adls-lake.js';
import { SqliteStateStore } from '../../src/connectors/state/sqlite-state-store.js';
import { resolveConfig } from '../../src/core/config.js';
import { silentLogger } from '../../src/core/log.js';
import { definePipeline } from '../../src/core/pipeline.js';
import { runPipeline } from '../../src/core/runner.js';
import { openRunStaging } from '../../src/dialects/duckdb/driver.js';
import { readSynapseLink } from '../../src/stages/read-synapse-link.js';
import { stageRegistry } from '../../src/stages/registry.js';
import { runSqlExtract } from '../../src/stages/run-sql-extract.js';
import { type WarehouseManifest, writeParquet } from '../../src/stages/write-parquet.js';
import { AZURITE_ACCOUNT, type RunningAzurite, startAzurite } from '../helpers/azurite.js';
import { FIXTURES, readParquetRows } from './helpers.js';

describe('outbound on ADLS Gen2 (Azurite): Synapse Link folders in blob storage → warehouse Parquet in the same lake', () => {
  let azurite: RunningAzurite;
  let dir: string;
  let lake: AdlsLake;
  before(async () => {
    azurite = await startAzurite();
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ferry-outbound-adls-'));
    lake = new AdlsLake({
      accountUrl: azurite.accountUrl,
      container: 'dataverse-demo',
      prefix: 'lake',
      sharedKey: AZURITE_ACCOUNT,
      cacheDir: path.join(dir, 'cache'),
    });
    await lake.ensureContainer();
    const src = path.join(FIXTURES, 'synapse-link/incremental-with-deletes');
    for (const rel of fs.readdirSync(src, { recursive: true }).map(String)) {
      const abs = path.join(src, rel);
      if (fs.statSync(abs).isFile())
        await lake.write(`synapse-link/demo/${rel.split(path.sep).join('/')}`, fs.readFileSync(abs));
    }
  });
  after(async () => {
    await azurite.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('reads the completed folders and publishes part files, then the manifest, under <lake>/warehouse', async () => {
    const config = resolveConfig(
      { lake: `${azurite.accountUrl}/dataverse-demo/lake`, state: path.join(dir, 'state') },
      {},
    );
    const state = SqliteStateStore.openIn(config.state);
    const def = definePipeline({
      name: 'adls-outbound',
      direction: 'outbound',
      stages: [
        readSynapseLink({ folder: 'synapse-link/demo', tables: ['account'] }),
        runSqlExtract({ table: 'account' }),
        writeParquet({ deletes: 'separate-file' }),
      ],
    });
    const report = await runPipeline(def, {
      openStaging: (dir: string) => openRunStaging(dir, {}),
      mode: 'manual',
      config,
      lake,
      state,
      registry: stageRegistry,
      log: silentLogger,
    });
    state.close();
    assert.equal(report.status, 'succeeded', report.error?.message);
    assert.deepEqual(
      [report.window.items, report.counts.read, report.counts.written, report.counts.deleted],
      [3, 10, 4, 1],
    );
    const win = 'warehouse/account/2026-01-01T00.15.00Z_2026-01-01T00.45.00Z';
    const listed = (await lake.list(win)).map((e) => e.path.split('/').at(-1));
    assert.deepEqual(listed, ['_manifest.json', 'deletes-00000.parquet', 'part-00000.parquet']);
    const manifest = JSON.parse(await lake.readText(`${win}/_manifest.json`)) as WarehouseManifest;
    assert.deepEqual(
      manifest.files.map((f) => [f.path, f.rows]),
      [
        ['part-00000.parquet', 4],
        ['deletes-00000.parquet', 1],
      ],
    );
    const rows = await readParquetRows(await lake.toLocalPath(`${win}/part-00000.parquet`), 'Id, versionnumber', 'Id');
    assert.deepEqual(
      rows.map((r) => r.versionnumber),
      [1007n, 1003n, 1010n, 1011n],
    );
    assert.deepEqual(
      (await lake.list('warehouse/account')).map((e) => e.path),
      [`${win}`, 'warehouse/account/_current.json'],
      'no temp folder left behind; the index of current windows',
    );
  });
});
