import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { LocalLake } from '../../src/connectors/lake/local-lake.js';
import { SqliteStateStore } from '../../src/connectors/state/sqlite-state-store.js';
import { resolveConfig } from '../../src/core/config.js';
import { silentLogger } from '../../src/core/log.js';
import { definePipeline } from '../../src/core/pipeline.js';
import { runPipeline } from '../../src/core/runner.js';
import type { StageImpl } from '../../src/core/stage.js';
import { DuckDbStaging, openRunStaging } from '../../src/dialects/duckdb/driver.js';
import { convertToDataverse } from '../../src/stages/convert-to-dataverse.js';
import { readParquetDeltas } from '../../src/stages/read-parquet-deltas.js';
import { registryWith } from '../../src/stages/registry.js';

describe('a delta file whose footer reads but whose pages do not decode', () => {
  let dir: string;
  let state: SqliteStateStore;
  before(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ferry-corrupt-page-'));
    state = SqliteStateStore.openIn(path.join(dir, 'state'));
  });
  after(() => {
    state.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('is held back when the conversion reads it, and the other files convert', async () => {
    const inbound = path.join(dir, 'lake/in');
    fs.mkdirSync(inbound, { recursive: true });
    const db = await DuckDbStaging.open();
    const rows = (prefix: string) =>
      `SELECT '${prefix}-' || i AS account_no, md5(i::VARCHAR) || md5((i * 7)::VARCHAR) AS account_name, TIMESTAMP '2026-11-26 10:00:00' AS modified_at FROM range(20000) t(i)`;
    await db.run(`COPY (${rows('G')}) TO '${inbound}/2026-11-26T10-00-00Z.parquet' (FORMAT PARQUET, COMPRESSION zstd)`);
    const bad = `${inbound}/2026-11-26T10-15-00Z.parquet`;
    await db.run(`COPY (${rows('B')}) TO '${bad}' (FORMAT PARQUET, COMPRESSION zstd)`);
    await db.close();
    // Garbage over the middle of the file: the footer (schema, row counts) still reads, the compressed pages do not.
    const bytes = fs.readFileSync(bad);
    bytes.fill(0x5a, 2000, Math.floor(bytes.length / 2));
    fs.writeFileSync(bad, bytes);

    let converted = 0;
    const count: StageImpl = {
      kind: 'count-converted',
      async run(_spec, ctx) {
        const [row] = await ctx.staging.all<{ n: bigint }>('SELECT count(*) AS n FROM converted');
        converted = Number(row!.n);
        ctx.counts.upserted += converted;
      },
    };
    const config = resolveConfig(
      { lake: path.join(dir, 'lake'), state: path.join(dir, 'state'), metadata: 'fixtures/metadata' },
      {},
    );
    const report = await runPipeline(
      definePipeline({
        name: 'corrupt-page',
        direction: 'inbound',
        stages: [
          readParquetDeltas({ folder: 'in' }),
          convertToDataverse({
            table: 'account',
            key: ['accountnumber'],
            changeTimestamp: 'modified_at',
            columns: { accountnumber: 'account_no', name: 'account_name' },
          }),
          { kind: 'count-converted' },
        ],
      }),
      {
        mode: 'manual',
        openStaging: (dir: string) => openRunStaging(dir, {}),
        config,
        lake: new LocalLake(config.lake),
        state,
        registry: registryWith([count]),
        log: silentLogger,
      },
    );
    assert.equal(report.status, 'succeeded', report.error?.message);
    assert.equal(converted, 20000, 'the good file converted');
    assert.equal(report.counts.read, 20000, 'rows of the held-back file are not counted as read');
    const [reject] = state.listRejects({ runId: report.runId });
    assert.equal(reject!.reason, 'file.corrupt');
    assert.equal(reject!.sourceFile, 'in/2026-11-26T10-15-00Z.parquet');
    assert.deepEqual([...state.processedItems('corrupt-page', 'lake:in').keys()], ['in/2026-11-26T10-00-00Z.parquet']);
  });
});
