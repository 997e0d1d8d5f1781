/**
 * The differential test's known differences: each is listed in `synapse/README.md`, and each recognises only the
 * difference it names (a neighbouring column, reason or failure stays a mismatch).
 */
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { describe, it } from 'node:test';
import { loadPipelines } from '../../src/core/pipeline-loader.js';
import type { Difference, SideState } from './differential/end-state.js';
import { classify, type DifferenceContext, KNOWN_DIFFERENCES } from './differential/known-differences.js';

const empty: SideState = { dataverse: {}, warehouse: {}, deleted: {}, warehouseTypes: {}, windows: {}, rejects: {} };

async function context(over: Partial<DifferenceContext> = {}): Promise<DifferenceContext> {
  return {
    pipelines: await loadPipelines('pipelines'),
    local: empty,
    synapse: empty,
    synapseRuns: [],
    emptySynapseLinkFolders: [],
    ...over,
  };
}

describe('known differences of the differential test', () => {
  it('are each a row of the differences table in synapse/README.md', async () => {
    const readme = await readFile('synapse/README.md', 'utf8');
    const table = readme.slice(readme.indexOf('## Differences between the Synapse path and the local runner'));
    for (const k of KNOWN_DIFFERENCES) assert.ok(table.includes(`| ${k.readmeRow} |`), `${k.name}: "${k.readmeRow}"`);
  });

  it('leave a multi-select column the Synapse path did not write a mismatch (it writes them now)', async () => {
    const ctx = await context();
    const d = (column: string): Difference => ({
      area: 'dataverse',
      table: 'account',
      id: 'account(A-1)',
      column,
      local: '1,2',
      synapse: null,
    });
    const r = classify([d('ferry_interests'), d('name')], ctx);
    assert.deepEqual(r.known, {});
    assert.deepEqual(
      r.mismatches.map((m) => m.column),
      ['ferry_interests', 'name'],
    );
  });

  it('leave a child missing on the Synapse path a mismatch (the Synapse path resolves same-window lookups now)', async () => {
    const synapse = { ...empty, rejects: { 'accounts-inbound|lookup.target_missing|accountnumber=A-3': 1 } };
    const ctx = await context({ synapse });
    const missing = (id: string): Difference => ({
      area: 'dataverse',
      table: 'account',
      id,
      column: '*',
      local: { name: 'x' },
      synapse: undefined,
    });
    const r = classify([missing('account(A-3)'), missing('account(A-4)')], ctx);
    assert.deepEqual(r.known, {});
    assert.deepEqual(
      r.mismatches.map((m) => m.id),
      ['account(A-3)', 'account(A-4)'],
    );
  });

  it('recognise a timestamp written without zone, and no other type difference', async () => {
    const ctx = await context();
    const t = (column: string, local: string, synapse: string): Difference => ({
      area: 'warehouse-type',
      table: 'account',
      id: '*',
      column,
      local,
      synapse,
    });
    const r = classify(
      [t('modifiedon', 'TIMESTAMP WITH TIME ZONE', 'TIMESTAMP'), t('revenue', 'DECIMAL(38,4)', 'VARCHAR')],
      ctx,
    );
    assert.deepEqual(r.known, { 'outbound-timestamps-without-zone': 1 });
    assert.deepEqual(
      r.mismatches.map((m) => m.column),
      ['revenue'],
    );
  });

  it('recognise a column only the local output of a Delta pipeline has, and nothing on a CSV output', async () => {
    const delta = await loadPipelines('test/synapse-runtime/delta-pipelines');
    const types = { account: { Id: 'VARCHAR', name: 'VARCHAR' } };
    const ctx = await context({ pipelines: delta, synapse: { ...empty, warehouseTypes: types } });
    const d = (column: string, local: string, synapse: string | null): Difference => ({
      area: 'warehouse',
      table: 'account',
      id: 'd0000005',
      column,
      local,
      synapse,
    });
    const r = classify(
      [
        d('ferry_newcolumn', 'added', null),
        {
          area: 'warehouse-type',
          table: 'account',
          id: '*',
          column: 'ferry_newcolumn',
          local: 'VARCHAR',
          synapse: undefined,
        },
        // A column the Synapse output has, with another value: a mismatch.
        d('name', 'Delta 5', null),
      ],
      ctx,
    );
    assert.deepEqual(r.known, { 'delta-columns-from-export-metadata': 2 });
    assert.deepEqual(
      r.mismatches.map((m) => m.column),
      ['name'],
    );
    // The same on a CSV pipeline's output stays a mismatch.
    const csv = classify(
      [d('ferry_newcolumn', 'added', null)],
      await context({ synapse: { ...empty, warehouseTypes: types } }),
    );
    assert.equal(csv.mismatches.length, 1);
  });
});
