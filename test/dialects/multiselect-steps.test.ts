/**
 * The multi-select steps of the Synapse export (`multiselect-chunks`, `multiselect-chunk`): the DuckDB rendering the
 * local runtime executes, run on DuckDB over a sink and a work table as the conversion leaves them; the T-SQL
 * rendering of the same steps parsed (node-sql-parser, TransactSQL).
 */
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import { createRequire } from 'node:module';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { loadPipelines } from '../../src/core/pipeline-loader.js';
import { DuckDbStaging } from '../../src/dialects/duckdb/driver.js';
import { duckdbSteps } from '../../src/dialects/duckdb/steps.js';
import {
  bindStepParameters,
  renderStep,
  type SqlStep,
  type StepRegistry,
  type SynapseStepPlan,
} from '../../src/dialects/sql-steps.js';
import { tsqlSteps } from '../../src/dialects/tsql/steps.js';
import { loadExportSettings } from '../../src/export/synapse/export-settings.js';
import { planSynapseSteps } from '../../src/export/synapse/synapse-exporter.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const require = createRequire(import.meta.url);
const { Parser } = require('node-sql-parser/build/transactsql.js') as {
  Parser: new () => { astify(sql: string, opt: object): unknown };
};

type ChunksPlan = Extract<SynapseStepPlan, { kind: 'multiselect-chunks' }>;

let steps: StepRegistry;
let db: DuckDbStaging;

before(async () => {
  const defs = await loadPipelines(path.join(root, 'pipelines'));
  steps = await planSynapseSteps(defs, {
    settings: await loadExportSettings(path.join(root, 'synapse', 'settings.json')),
    metadataDir: path.join(root, 'fixtures', 'metadata'),
    readExtract: (file) => fs.readFile(path.resolve(root, file), 'utf8').catch(() => undefined),
  });
  db = await DuckDbStaging.open();
});

after(async () => {
  await db.close();
});

function chunksStep(pipeline: string, change: Partial<ChunksPlan> = {}): SqlStep<ChunksPlan> {
  const step = steps.get(`${pipeline}:multiselect-chunks`) as SqlStep<SynapseStepPlan> | undefined;
  assert.ok(step, `${pipeline} has a multiselect-chunks step`);
  assert.equal(step.plan.kind, 'multiselect-chunks');
  return { ...step, plan: { ...(step.plan as ChunksPlan), ...change } };
}

async function run(step: SqlStep, values: Record<string, number> = {}): Promise<Record<string, unknown>[]> {
  let rows: Record<string, unknown>[] = [];
  const sql = bindStepParameters(renderStep(step, duckdbSteps), values);
  for (const s of sql.split(/;\n/).map((x) => x.trim().replace(/;$/, '')))
    if (s) rows = await db.all(s.replace(/^--[^\n]*\n/, ''));
  return rows;
}

/** The sink and work tables the conversion leaves: `__row_id`, key predicate, the multi-select column. */
async function seed(plan: ChunksPlan, rows: readonly [number, string, string | null][]): Promise<void> {
  const { sink, work } = plan.conversion.names;
  const column = plan.columns[0]!;
  await db.run(`CREATE OR REPLACE TABLE "${sink.table}" (__row_id BIGINT, "${column}" VARCHAR)`);
  await db.run(`CREATE OR REPLACE TABLE "${work.table}" (__row_id BIGINT, __key_predicate VARCHAR)`);
  for (const [id, key, value] of rows) {
    await db.run(`INSERT INTO "${sink.table}" VALUES (?, ?)`, [id, value]);
    await db.run(`INSERT INTO "${work.table}" VALUES (?, ?)`, [id, key]);
  }
}

async function bodies(plan: ChunksPlan, step: SqlStep): Promise<{ chunks: number[]; bodies: unknown[] }> {
  const [out] = await run(step);
  const chunks = JSON.parse(String(out!.chunks)) as number[];
  const chunk = steps.get(`${step.id.split(':')[0]}:multiselect-chunk`)!;
  const read = { ...chunk, plan: { kind: 'multiselect-chunk', chunks: plan.chunks } as SynapseStepPlan };
  const list: unknown[] = [];
  for (const n of chunks) {
    const [row] = await run(read, { chunk: n });
    list.push(JSON.parse(String(row!.body)));
  }
  return { chunks, bodies: list };
}

describe('multi-select steps: UpsertMultiple bodies from the sink table', () => {
  test('every mapped multi-select column of the inbound pipelines and their replays has its steps', () => {
    for (const p of ['accounts-inbound', 'contacts-inbound', 'opportunities-inbound']) {
      for (const prefix of ['', 'replay-']) {
        assert.ok(steps.get(`${p}:${prefix}multiselect-chunks`), `${p}:${prefix}multiselect-chunks`);
        assert.ok(steps.get(`${p}:${prefix}multiselect-chunk`), `${p}:${prefix}multiselect-chunk`);
      }
    }
    const plan = chunksStep('accounts-inbound').plan;
    assert.deepEqual(plan.columns, ['ferry_interests']);
    assert.equal(plan.includeNulls, true, 'a multi-select clears on null by default, as the local writer sends null');
    assert.equal(plan.chunkRows, 100, "the pipeline's batchSize");
    assert.equal(steps.get('currencies-inbound:multiselect-chunks'), undefined, 'no step without a multi-select');
  });

  test('targets by alternate key, the values as the Web API takes them, null sent as null, in chunks', async () => {
    const step = chunksStep('accounts-inbound', { chunkRows: 2 });
    await seed(step.plan, [
      [3, "accountnumber='A-3'", null],
      [1, "accountnumber='A-1'", '100000000,100000002'],
      [2, "accountnumber='O''Brien \"x\"'", '100000001'],
    ]);
    const out = await bodies(step.plan, step);
    assert.deepEqual(out.chunks, [1, 2]);
    assert.deepEqual(out.bodies, [
      {
        Targets: [
          {
            '@odata.type': 'Microsoft.Dynamics.CRM.account',
            '@odata.id': "accounts(accountnumber='A-1')",
            ferry_interests: '100000000,100000002',
          },
          {
            '@odata.type': 'Microsoft.Dynamics.CRM.account',
            '@odata.id': "accounts(accountnumber='O''Brien \"x\"')",
            ferry_interests: '100000001',
          },
        ],
      },
      {
        Targets: [
          {
            '@odata.type': 'Microsoft.Dynamics.CRM.account',
            '@odata.id': "accounts(accountnumber='A-3')",
            ferry_interests: null,
          },
        ],
      },
    ]);
  });

  test('a column that omits on null is left out of its target, and a row with nothing to send has none', async () => {
    const step = chunksStep('accounts-inbound', { includeNulls: false });
    await seed(step.plan, [
      [1, "accountnumber='A-1'", null],
      [2, "accountnumber='A-2'", '100000003'],
    ]);
    const out = await bodies(step.plan, step);
    assert.deepEqual(out.bodies, [
      {
        Targets: [
          {
            '@odata.type': 'Microsoft.Dynamics.CRM.account',
            '@odata.id': "accounts(accountnumber='A-2')",
            ferry_interests: '100000003',
          },
        ],
      },
    ]);
  });

  test('no rows: no chunk (an empty list the ForEach runs nothing for)', async () => {
    const step = chunksStep('contacts-inbound');
    await seed(step.plan, []);
    const [out] = await run(step);
    assert.equal(out!.chunks, '[]');
  });

  test('more rows than maxChunks chunks hold: larger chunks, never more than maxChunks, no row lost', async () => {
    const step = chunksStep('accounts-inbound', { chunkRows: 2, maxChunks: 3 });
    await seed(
      step.plan,
      Array.from({ length: 10 }, (_, i) => [i + 1, `accountnumber='A-${i + 1}'`, String(100000000 + i)] as const),
    );
    const out = await bodies(step.plan, step);
    assert.deepEqual(out.chunks, [1, 2, 3]);
    const ids = out.bodies.flatMap((b) =>
      (b as { Targets: { '@odata.id': string }[] }).Targets.map((t) => t['@odata.id']),
    );
    assert.deepEqual(
      ids,
      Array.from({ length: 10 }, (_, i) => `accounts(accountnumber='A-${i + 1}')`),
    );
  });

  test('the T-SQL renderings parse; the chunk read interpolates the ForEach item', () => {
    const parser = new Parser();
    for (const id of steps.ids().filter((i) => /:(replay-)?multiselect-chunks?(-omit)?$/.test(i))) {
      const text = renderStep(steps.get(id)!, tsqlSteps).replace(/@\{[^}]*\}/g, '0');
      for (const s of text.split(/;\n/).map((x) => x.trim().replace(/;$/, '')))
        if (s) assert.doesNotThrow(() => parser.astify(s, { database: 'TransactSQL' }), `${id}: ${s.slice(0, 200)}`);
    }
    assert.match(
      renderStep(steps.get('accounts-inbound:multiselect-chunk')!, tsqlSteps),
      /WHERE \[chunk\] = @\{item\(\)\}/,
    );
    assert.match(
      renderStep(chunksStep('accounts-inbound'), tsqlSteps),
      /FOR JSON PATH, INCLUDE_NULL_VALUES, ROOT\('Targets'\)/,
    );
    assert.doesNotMatch(
      renderStep(chunksStep('accounts-inbound', { includeNulls: false }), tsqlSteps),
      /INCLUDE_NULL_VALUES/,
    );
  });
});
