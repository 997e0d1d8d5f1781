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

type Row = readonly [id: number, legacyId: string, payload: Record<string, unknown>];

/** Runs the stage on `converted` rows of `opportunity`; returns what it counted, rejected and recorded as upserted. */
async function upsert(url: string, rows: readonly Row[]) {
  const staging = await DuckDbStaging.open({ memoryLimit: '256MB', threads: 1 });
  try {
    await staging.run(
      'CREATE TABLE converted (__row_id BIGINT, __source_file VARCHAR, __row_number BIGINT, __key VARCHAR, __key_predicate VARCHAR, __key_safe BOOLEAN, __version VARCHAR, __payload VARCHAR)',
    );
    for (const [id, legacyId, payload] of rows) {
      await staging.run('INSERT INTO converted VALUES (?, ?, ?, ?, ?, ?, ?, ?)', [
        id,
        'inbound/opportunities/part.parquet',
        id,
        `ferry_legacyid=${legacyId}`,
        `ferry_legacyid='${legacyId}'`,
        true,
        '2026-11-26T00:00:00Z',
        JSON.stringify({ name: `Deal ${legacyId}`, ...payload }),
      ]);
    }
    const rejects: RejectRecord[] = [];
    const counts = emptyCounts();
    const ctx = {
      runId: 'run-test',
      pipeline: definePipeline({
        name: 'opportunities-inbound',
        direction: 'inbound',
        stages: [upsertDataverse({ table: 'opportunity' })],
      }),
      config: resolveConfig({ metadata: FIXTURES }, {}),
      staging,
      services: { dataverse: { url } },
      counts,
      metrics: {},
      log: silentLogger,
      progress: { update() {} },
      signal: new AbortController().signal,
      shared: new Map(),
      reject(records: readonly RejectRecord[]) {
        rejects.push(...records);
        counts.rejected += records.length;
      },
      onCommit() {},
    } as unknown as StageContext;
    await upsertDataverseStage.run(upsertDataverse({ table: 'opportunity', batchSize: 10 }), ctx);
    const recorded = (await staging.all<{ id: bigint }>('SELECT __row_id AS id FROM upserted ORDER BY 1')).map((r) =>
      Number(r.id),
    );
    return { counts, rejects, recorded };
  } finally {
    await staging.close();
  }
}

describe('upsert-dataverse closes opportunities through WinOpportunity / LoseOpportunity', () => {
  let emu: RunningEmulator;
  const states = () =>
    Object.fromEntries(
      emu.store
        .rows('opportunity')
        .map((r) => [r.attributes.ferry_legacyid, [r.attributes.statecode, r.attributes.statuscode]]),
    );
  before(async () => {
    emu = await emulator();
  });
  after(() => emu.close());

  it('upserts Won and Lost rows open, then closes them; a rerun leaves them; a change of outcome reopens first', async () => {
    const first = await upsert(emu.url, [
      [1, 'O-W', { statecode: 1, statuscode: 3 }],
      [2, 'O-L', { statecode: 2, statuscode: 5 }],
      [3, 'O-O', { statecode: 0, statuscode: 2 }],
      [4, 'O-D', { statecode: 2 }],
    ]);
    assert.deepEqual(first.rejects, []);
    assert.equal(first.counts.upserted, 4);
    assert.deepEqual(first.recorded, [1, 2, 3, 4]);
    assert.deepEqual(states(), { 'O-W': [1, 3], 'O-L': [2, 5], 'O-O': [0, 2], 'O-D': [2, 4] });

    const again = await upsert(emu.url, [[1, 'O-W', { statecode: 1, statuscode: 3 }]]);
    assert.deepEqual([again.rejects, again.counts.upserted, again.recorded], [[], 1, [1]]);
    assert.deepEqual(states()['O-W'], [1, 3]);

    const changed = await upsert(emu.url, [[1, 'O-W', { statecode: 2, statuscode: 4 }]]);
    assert.deepEqual(changed.rejects, []);
    assert.deepEqual(states()['O-W'], [2, 4]);
  });

  it('a close the service refuses rejects the row with its error and leaves it out of the upserted rows', async () => {
    // Status 5 (Out-Sold) belongs to Lost, not Won: the upsert lands open, WinOpportunity is refused.
    const result = await upsert(emu.url, [
      [7, 'O-BAD', { statecode: 1, statuscode: 5 }],
      [8, 'O-OK', { statecode: 1, statuscode: 3 }],
    ]);
    assert.equal(result.counts.upserted, 1);
    assert.deepEqual(result.recorded, [8]);
    assert.equal(result.rejects.length, 1);
    const reject = result.rejects[0]!;
    assert.equal(reject.reason, 'dataverse.0x80040203');
    assert.equal(reject.key, 'ferry_legacyid=O-BAD');
    assert.match(reject.message, /upserted `ferry_legacyid=O-BAD` open but refused to close it/);
    assert.deepEqual((reject.row as { payload: unknown }).payload, { name: 'Deal O-BAD', statecode: 1, statuscode: 5 });
    assert.deepEqual(states()['O-BAD'], [0, 1]);
    assert.deepEqual(states()['O-OK'], [1, 3]);
  });
});
