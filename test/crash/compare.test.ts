import assert from 'node:assert/strict';
import { test } from 'node:test';
import { compareEndStates, type EndState, normaliseRow } from './compare.js';

const GUID_A = '0f8fad5b-d9cb-469f-a165-70867728950e';
const GUID_B = '7c9e6679-7425-40de-944b-e07fc1f90ae7';

function state(partial: Partial<EndState>): EndState {
  return { dataverse: {}, warehouse: {}, rejects: {}, windows: {}, ...partial };
}

test('normaliseRow maps GUIDs to record identities and drops volatile columns', () => {
  const ids = new Map([
    [GUID_A, 'account(A-1)'],
    [GUID_B, 'account(A-1)'],
  ]);
  const a = normaliseRow({ name: 'One', _parentaccountid_value: GUID_A, versionnumber: 5, modifiedon: 'x' }, ids);
  const b = normaliseRow(
    { modifiedon: 'y', versionnumber: 9, _parentaccountid_value: GUID_B.toUpperCase(), name: 'One' },
    ids,
  );
  assert.equal(a, b);
  assert.equal(a, JSON.stringify({ _parentaccountid_value: 'account(A-1)', name: 'One' }));
  assert.notEqual(normaliseRow({ name: 'Two' }, ids), a);
});

test('compareEndStates counts lost, duplicated and skipped windows', () => {
  const expected = state({
    dataverse: { account: { 'account(A-1)': ['{"n":1}'], 'account(A-2)': ['{"n":2}'] } },
    warehouse: { account: { r1: 1, r2: 1 } },
    rejects: { 'p|s|r|f|1|k': 1 },
    windows: { accounts: ['f1', 'f2'] },
  });
  assert.deepEqual(compareEndStates(expected, expected), { lost: 0, duplicated: 0, skippedWindows: 0, details: [] });
  const actual = state({
    dataverse: { account: { 'account(A-1)': ['{"n":0}'], 'account(A-3)': ['{"n":3}'] } },
    warehouse: { account: { r1: 2 } },
    rejects: {},
    windows: { accounts: ['f1'] },
  });
  const diff = compareEndStates(expected, actual);
  // A-1 differs (lost update), A-2 missing, warehouse r2 missing, the reject missing: 4 lost.
  assert.equal(diff.lost, 4);
  // A-3 extra record, warehouse r1 twice: 2 duplicated.
  assert.equal(diff.duplicated, 2);
  assert.equal(diff.skippedWindows, 1);
});
