import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, it } from 'node:test';
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

/** A stand-in sink: copies the staged rows into `seen` and counts them as delivered. */
function collectingSink(seen: Array<Record<string, unknown>>, failOnce?: { armed: boolean }): StageImpl {
  return {
    kind: 'collect',
    async run(_spec, ctx) {
      if (failOnce?.armed) {
        failOnce.armed = false;
        throw new Error('sink exploded');
      }
      const rows = await ctx.staging.all('SELECT * EXCLUDE (__run_id) FROM staged ORDER BY __row_id');
      seen.push(...rows);
      ctx.counts.upserted += rows.length;
    },
  };
}

async function writeParquet(file: string, selectSql: string): Promise<void> {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  const db = await DuckDbStaging.open();
  await db.run(`COPY (${selectSql}) TO '${file}' (FORMAT PARQUET, COMPRESSION zstd)`);
  await db.close();
}

describe('runner with read-parquet-deltas', () => {
  let dir: string;
  let state: SqliteStateStore;
  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ferry-runner-'));
    state = SqliteStateStore.openIn(path.join(dir, 'state'));
  });
  afterEach(() => {
    state.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  const pipeline = definePipeline({
    name: 'test-inbound',
    direction: 'inbound',
    stages: [readParquetDeltas({ folder: 'in', columns: ['id', 'amount', 'changed_at'] }), { kind: 'collect' }],
  });

  function options(seen: Array<Record<string, unknown>>, failOnce?: { armed: boolean }) {
    const config = resolveConfig({ lake: path.join(dir, 'lake'), state: path.join(dir, 'state') }, {});
    return {
      mode: 'manual' as const,
      openStaging: (runDir: string) => openRunStaging(runDir, {}),
      config,
      lake: new LocalLake(config.lake),
      state,
      registry: registryWith([collectingSink(seen, failOnce)]),
      log: silentLogger,
    };
  }

  it('loads new files once, exactly, with lineage, and skips them on the next run', async () => {
    await writeParquet(
      path.join(dir, 'lake/in/2026-11-26T17-00-00Z.parquet'),
      `SELECT 'A' || i AS id, (i * 1.25)::DECIMAL(38,10) + 123456789012345678.0000000001 AS amount, TIMESTAMP '2026-11-26 17:00:00' AS changed_at, 'x' AS extra FROM range(3) t(i)`,
    );
    await writeParquet(
      path.join(dir, 'lake/in/2026-11-26T17-15-00Z.parquet'),
      `SELECT 'B' AS id, 7.5::DECIMAL(10,2) AS amount, TIMESTAMP '2026-11-26 17:15:00' AS changed_at`,
    );
    const seen: Array<Record<string, unknown>> = [];
    const report = await runPipeline(pipeline, options(seen));
    assert.equal(report.status, 'succeeded');
    assert.equal(report.counts.read, 4);
    assert.equal(report.window.items, 2);
    assert.deepEqual(
      seen.map((r) => [r.id, String(r.amount), r.__source_file, Number(r.__row_number)]),
      [
        ['A0', '123456789012345678.0000000001', 'in/2026-11-26T17-00-00Z.parquet', 1],
        ['A1', '123456789012345679.2500000001', 'in/2026-11-26T17-00-00Z.parquet', 2],
        ['A2', '123456789012345680.5000000001', 'in/2026-11-26T17-00-00Z.parquet', 3],
        ['B', '7.5000000000', 'in/2026-11-26T17-15-00Z.parquet', 1],
      ],
      'decimals stay exact across files of different widths',
    );
    const second = await runPipeline(pipeline, options([]));
    assert.equal(second.status, 'succeeded');
    assert.equal(second.window.items, 0);
    assert.equal(second.counts.read, 0);
  });

  it('holds back a corrupt file and a file missing a mapped column, and keeps the other rows', async () => {
    await writeParquet(
      path.join(dir, 'lake/in/2026-11-26T17-00-00Z.parquet'),
      `SELECT 'A' AS id, 1.0 AS amount, now() AS changed_at`,
    );
    await writeParquet(path.join(dir, 'lake/in/2026-11-26T17-05-00Z.parquet'), `SELECT 'B' AS id, now() AS changed_at`);
    fs.writeFileSync(path.join(dir, 'lake/in/2026-11-26T17-10-00Z.parquet'), 'PAR1 this is not parquet');
    const seen: Array<Record<string, unknown>> = [];
    const report = await runPipeline(pipeline, options(seen));
    assert.equal(report.status, 'succeeded');
    assert.deepEqual(
      seen.map((r) => r.id),
      ['A'],
    );
    const rejects = state.listRejects({ runId: report.runId });
    assert.deepEqual(rejects.map((r) => [r.reason, r.sourceFile]).sort(), [
      ['file.corrupt', 'in/2026-11-26T17-10-00Z.parquet'],
      ['file.missing_column', 'in/2026-11-26T17-05-00Z.parquet'],
    ]);
    assert.match(rejects.find((r) => r.reason === 'file.missing_column')!.message, /`amount`/);
    // The two bad files are tried again next run; the good one is not.
    const next = await runPipeline(pipeline, options([]));
    assert.equal(next.window.items, 2);
  });

  it('leaves the window unprocessed when the sink fails, so the next run repeats it', async () => {
    await writeParquet(
      path.join(dir, 'lake/in/2026-11-26T17-00-00Z.parquet'),
      `SELECT 'A' AS id, 1.0 AS amount, now() AS changed_at`,
    );
    const failed = await runPipeline(pipeline, options([], { armed: true }));
    assert.equal(failed.status, 'failed');
    assert.match(failed.error!.message, /sink exploded/);
    const seen: Array<Record<string, unknown>> = [];
    const retried = await runPipeline(pipeline, options(seen));
    assert.equal(retried.status, 'succeeded');
    assert.equal(seen.length, 1);
  });

  it('skips a run while another process holds the pipeline lease', async () => {
    const lease = state.acquireLease('pipeline:test-inbound', 'someone-else', 60_000)!;
    const report = await runPipeline(pipeline, options([]));
    assert.equal(report.status, 'skipped');
    state.releaseLease('pipeline:test-inbound', lease.token);
  });
});
