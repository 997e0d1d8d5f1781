import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { resolveConfig } from '../../src/core/config.js';
import { emptyCounts } from '../../src/core/counts.js';
import { silentLogger } from '../../src/core/log.js';
import { definePipeline } from '../../src/core/pipeline.js';
import type { RejectRecord } from '../../src/core/rejects.js';
import type { StageContext } from '../../src/core/stage.js';
import { DuckDbStaging } from '../../src/dialects/duckdb/driver.js';
import type { RunningEmulator } from '../../src/emulator/server.js';
import { upsertDataverse, upsertDataverseStage } from '../../src/stages/upsert-dataverse.js';
import { emulator, FIXTURES } from './helpers.js';

interface Converted {
  id: number;
  number: string;
  payload: Record<string, unknown>;
  safe?: boolean;
}

async function stagingWith(rows: readonly Converted[]): Promise<DuckDbStaging> {
  const staging = await DuckDbStaging.open({ memoryLimit: '256MB', threads: 1 });
  await staging.run(
    'CREATE TABLE converted (__row_id BIGINT, __source_file VARCHAR, __row_number BIGINT, __key VARCHAR, __key_predicate VARCHAR, __key_safe BOOLEAN, __version VARCHAR, __payload VARCHAR)',
  );
  for (const r of rows) {
    await staging.run('INSERT INTO converted VALUES (?, ?, ?, ?, ?, ?, ?, ?)', [
      r.id,
      'inbound/accounts/2026-11-26.parquet',
      r.id * 10,
      `accountnumber=${r.number}`,
      `accountnumber='${r.number.replaceAll("'", "''")}'`,
      r.safe ?? true,
      '2026-11-26T00:00:00Z',
      JSON.stringify(r.payload),
    ]);
  }
  return staging;
}

/** The parts of a stage context this stage uses; the rest would be the runner's (not exercised here). */
function context(staging: DuckDbStaging, url: string | undefined, signal = new AbortController().signal) {
  const rejects: RejectRecord[] = [];
  const counts = emptyCounts();
  const metrics: Record<string, unknown> = {};
  const ctx = {
    runId: 'run-test',
    pipeline: definePipeline({
      name: 'accounts-inbound',
      direction: 'inbound',
      stages: [upsertDataverse({ table: 'account' })],
    }),
    config: resolveConfig({ metadata: FIXTURES }, {}),
    staging,
    services: url ? { dataverse: { url } } : {},
    counts,
    metrics,
    log: silentLogger,
    progress: { update() {} },
    signal,
    shared: new Map(),
    reject(records: readonly RejectRecord[]) {
      rejects.push(...records);
      counts.rejected += records.length;
    },
    onCommit() {},
  } as unknown as StageContext;
  return { ctx, rejects, counts, metrics };
}

describe('upsert-dataverse stage', () => {
  let emu: RunningEmulator;
  before(async () => {
    emu = await emulator();
  });
  after(() => emu.close());

  it('validates its spec', () => {
    assert.deepEqual(upsertDataverse({ table: 'account' }), {
      kind: 'upsert-dataverse',
      table: 'account',
      batchSize: 100,
      maxConcurrency: 32,
      mode: 'auto',
      timeoutMs: 120_000,
    });
    assert.throws(() => upsertDataverse({ table: 'account', batchSize: 5000 }), /1 to 1000/);
    assert.throws(() => upsertDataverse({ table: 'account', mode: 'fast' as never }), /not known/);
  });

  it('writes converted rows, rejects the bad one, records accepted row ids in `upserted`', async () => {
    const rows: Converted[] = Array.from({ length: 230 }, (_, i) => ({
      id: i + 1,
      number: `ST${i}`,
      payload: { name: `Stage ${i}` },
    }));
    rows[100] = { id: 101, number: 'ST100', payload: { name: 'bad', industrycode: 999 } };
    rows.push({ id: 500, number: 'ST/unsafe', payload: { name: 'slash' }, safe: false });
    const staging = await stagingWith(rows);
    try {
      const { ctx, rejects, counts, metrics } = context(staging, emu.url);
      await upsertDataverseStage.run(upsertDataverse({ table: 'account', batchSize: 50 }), ctx);
      assert.equal(counts.upserted, 230);
      assert.equal(rejects.length, 1);
      assert.equal(rejects[0]!.stage, 'upsert-dataverse');
      assert.equal(rejects[0]!.key, 'accountnumber=ST100');
      assert.equal(rejects[0]!.rowNumber, 1010);
      assert.equal(rejects[0]!.sourceFile, 'inbound/accounts/2026-11-26.parquet');
      assert.match(rejects[0]!.reason, /^dataverse\.0x/);
      const ids = (await staging.all<{ id: bigint }>('SELECT __row_id AS id FROM upserted ORDER BY 1')).map((r) =>
        Number(r.id),
      );
      assert.deepEqual(
        ids,
        rows
          .map((r) => r.id)
          .filter((id) => id !== 101)
          .sort((a, b) => a - b),
      );
      assert.equal(metrics.mode, 'upsert-multiple');
      assert.equal(typeof metrics.requests, 'number');
      assert.ok((metrics.requests as number) >= 6);
      assert.equal(typeof metrics.meanServerTimeMs, 'number');
      assert.equal(
        emu.store.rows('account').filter((r) => String(r.attributes.accountnumber).startsWith('ST')).length,
        230,
      );
    } finally {
      await staging.close();
    }
  });

  it('fails clearly without a Dataverse endpoint or without a snapshot', async () => {
    const staging = await stagingWith([]);
    try {
      const { ctx } = context(staging, undefined);
      await assert.rejects(upsertDataverseStage.run(upsertDataverse({ table: 'account' }), ctx), (e: unknown) => {
        assert.equal((e as { code?: string }).code, 'dataverse.no_endpoint');
        assert.match((e as Error).message, /--dataverse/);
        return true;
      });
      const withUrl = context(staging, emu.url).ctx;
      await assert.rejects(
        upsertDataverseStage.run(upsertDataverse({ table: 'lead' }), withUrl),
        /metadata pull --table lead/,
      );
    } finally {
      await staging.close();
    }
  });
});
