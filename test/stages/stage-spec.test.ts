import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { definePipeline } from '../../src/core/pipeline.js';
import { loadPipelines } from '../../src/core/pipeline-loader.js';
import { convertToDataverse } from '../../src/stages/convert-to-dataverse/spec.js';
import { readParquetDeltas } from '../../src/stages/read-parquet-deltas/spec.js';
import { stageRegistry } from '../../src/stages/registry.js';
import { STAGE_KINDS, sourceColumnsOf, stageSpecOf } from '../../src/stages/stage-spec.js';
import { upsertDataverse } from '../../src/stages/upsert-dataverse/spec.js';

describe('stage specs', () => {
  it('parse every stage of the bundled pipelines back to the spec their factory made', async () => {
    const pipelines = await loadPipelines('pipelines');
    assert.ok(pipelines.length >= 5);
    for (const def of pipelines)
      for (const stage of def.stages)
        assert.deepEqual(stageSpecOf(stage, def.name), stage, `${def.name} ${stage.kind}`);
  });

  it('every kind has its code in the registry, under its own kind', () => {
    for (const kind of Object.keys(STAGE_KINDS)) assert.equal(stageRegistry.get(kind)?.kind, kind);
  });

  it('refuse an unknown kind and a wrong field, naming them', () => {
    assert.throws(
      () => stageSpecOf({ kind: 'send-fax' }, 'p'),
      /kind `send-fax`, which is not one of read-parquet-deltas/,
    );
    const bad = { ...upsertDataverse({ table: 'account' }), batchSize: 'many' };
    assert.throws(() => stageSpecOf(bad, 'p'), /`upsert-dataverse` has `batchSize` = `"many"`; it must be a number/);
    assert.throws(() => stageSpecOf({ kind: 'read-parquet-deltas' }, 'p'), /`folder` = `undefined`/);
  });

  it('sourceColumnsOf takes each kind’s declared columns and fails on a kind that declares none', () => {
    const def = definePipeline({
      name: 'p',
      direction: 'inbound',
      stages: [
        readParquetDeltas({ folder: 'in' }),
        convertToDataverse({
          table: 'account',
          key: ['accountnumber'],
          changeTimestamp: 'changed',
          columns: {
            accountnumber: 'no',
            parentaccountid: {
              from: 'parent',
              lookup: { tableFrom: 'parent_type', keys: { account: { from: 'p2' } } },
            },
          },
        }),
      ],
    });
    assert.deepEqual(sourceColumnsOf(def).sort(), ['changed', 'no', 'p2', 'parent', 'parent_type']);
    const other = definePipeline({
      name: 'q',
      direction: 'inbound',
      stages: [readParquetDeltas({ folder: 'in' }), { kind: 'mystery' }],
    });
    assert.throws(() => sourceColumnsOf(other), /kind `mystery`, which declares no source columns/);
  });

  it('spec modules import no I/O (what pipeline files and the exporter load)', () => {
    const dir = path.resolve('src/stages');
    for (const kind of Object.keys(STAGE_KINDS)) {
      const text = fs.readFileSync(path.join(dir, kind, 'spec.ts'), 'utf8');
      const imports = [...text.matchAll(/^import[^;]*from '([^']+)';/gm)].map((m) => m[1]!);
      for (const from of imports)
        assert.ok(
          !/connectors\/|dialects\/|^node:|\/run\.js$/.test(from),
          `${kind}/spec.ts imports \`${from}\`; a spec module holds data and checks only`,
        );
    }
  });
});
