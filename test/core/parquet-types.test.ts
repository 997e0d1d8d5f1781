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
import { readParquetDeltas } from '../../src/stages/read-parquet-deltas.js';
import { registryWith } from '../../src/stages/registry.js';
import { int96ParquetFile } from '../helpers/int96-parquet.js';

describe('read-parquet-deltas: Parquet types and codecs', () => {
  let dir: string;
  let state: SqliteStateStore;
  const seen: Array<Record<string, unknown>> = [];
  const collect: StageImpl = {
    kind: 'collect',
    async run(_spec, ctx) {
      seen.push(
        ...(await ctx.staging.all(
          `SELECT *, typeof(changed_at) AS changed_type FROM staged ORDER BY __source_file, __row_number`,
        )),
      );
    },
  };

  before(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ferry-types-'));
    state = SqliteStateStore.openIn(path.join(dir, 'state'));
    const inbound = path.join(dir, 'lake/in');
    fs.mkdirSync(inbound, { recursive: true });
    // Spark/Databricks legacy INT96 timestamps, microsecond precision.
    const micros = (iso: string, extra: bigint) => BigInt(Date.parse(iso)) * 1000n + extra;
    fs.writeFileSync(
      path.join(inbound, '2026-11-20T09-00-00Z-int96.parquet'),
      int96ParquetFile('changed_at', [
        { id: 1, epochMicros: micros('2026-11-20T09:15:30.123Z', 456n) },
        { id: 2, epochMicros: micros('1753-01-01T00:00:00.000Z', 0n) },
      ]),
    );
    const db = await DuckDbStaging.open();
    for (const codec of ['zstd', 'snappy', 'gzip']) {
      await db.run(
        `COPY (SELECT 10 AS id, TIMESTAMP '2026-11-20 10:00:00.654321' AS changed_at, 12345678901234567890.123456::DECIMAL(38,6) AS amount)
         TO '${path.join(inbound, `2026-11-20T10-00-00Z-${codec}.parquet`)}' (FORMAT PARQUET, COMPRESSION ${codec})`,
      );
    }
    await db.close();
  });
  after(() => {
    state.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('reads Spark INT96 timestamps to the microsecond, and zstd, snappy and gzip files', async () => {
    const config = resolveConfig({ lake: path.join(dir, 'lake'), state: path.join(dir, 'state') }, {});
    const report = await runPipeline(
      definePipeline({
        name: 'types',
        direction: 'inbound',
        stages: [readParquetDeltas({ folder: 'in', columns: ['id', 'changed_at'] }), { kind: 'collect' }],
      }),
      {
        mode: 'manual',
        openStaging: (dir: string) => openRunStaging(dir, {}),
        config,
        lake: new LocalLake(config.lake),
        state,
        registry: registryWith([collect]),
        log: silentLogger,
      },
    );
    assert.equal(report.status, 'succeeded', report.error?.message);
    assert.equal(report.counts.read, 5);
    assert.deepEqual(
      seen.map((r) => [Number(r.id), r.changed_at]),
      [
        [1, '2026-11-20 09:15:30.123456'],
        [2, '1753-01-01 00:00:00'],
        [10, '2026-11-20 10:00:00.654321'],
        [10, '2026-11-20 10:00:00.654321'],
        [10, '2026-11-20 10:00:00.654321'],
      ],
    );
    assert.equal(seen[0]!.changed_type, 'TIMESTAMP');
  });

  it('keeps wide decimals exact when every column is staged', async () => {
    const db = await DuckDbStaging.open();
    try {
      const [row] = await db.all(
        `SELECT amount FROM read_parquet('${path.join(dir, 'lake/in/2026-11-20T10-00-00Z-gzip.parquet')}')`,
      );
      assert.equal(row!.amount, '12345678901234567890.123456');
    } finally {
      await db.close();
    }
  });
});
