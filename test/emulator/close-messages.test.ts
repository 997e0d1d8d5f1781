import assert from 'node:assert/strict';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { type Harness, startHarness } from './emulator-harness.js';

const REFUSED_WON = {
  error: {
    code: '0x80100005',
    message:
      'This message can not be used to set the state of opportunity to won. In order to set state of opportunity to won, use the won message instead.',
  },
};

function closeBody(key: string, status: number, extra: Record<string, unknown> = {}) {
  return {
    OpportunityClose: {
      '@odata.type': 'Microsoft.Dynamics.CRM.opportunityclose',
      subject: 'Closed in a test',
      'opportunityid@odata.bind': `/opportunities(ferry_legacyid='${key}')`,
      ...extra,
    },
    Status: status,
  };
}

describe('emulator: opportunities close only through WinOpportunity / LoseOpportunity', () => {
  let h: Harness;
  const state = (key: string) => {
    const row = h.emulator.store.rows('opportunity').find((r) => r.attributes.ferry_legacyid === key)!;
    return [row.attributes.statecode, row.attributes.statuscode];
  };
  before(async () => {
    h = await startHarness({ metadataDir: path.resolve('fixtures/metadata') });
    for (const key of ['W-1', 'L-1', 'X-1']) {
      const r = await h.call('PATCH', `opportunities(ferry_legacyid='${key}')`, { name: `Deal ${key}` });
      assert.equal(r.status, 204, r.text);
    }
  });
  after(() => h.close());

  it('refuses an update to Won or Lost with CannotUseOpportunitySetStateMessage, by PATCH and UpsertMultiple alike', async () => {
    const patch = await h.call('PATCH', `opportunities(ferry_legacyid='W-1')`, { statecode: 1, statuscode: 3 });
    assert.equal(patch.status, 400);
    assert.deepEqual(patch.json, REFUSED_WON);
    const lost = await h.call('PATCH', `opportunities(ferry_legacyid='W-1')`, { statecode: 2 });
    assert.equal(lost.status, 400);
    assert.match(lost.json.error.message, /state of opportunity to lost/);
    const bulk = await h.call('POST', 'opportunities/Microsoft.Dynamics.CRM.UpsertMultiple', {
      Targets: [
        {
          '@odata.type': 'Microsoft.Dynamics.CRM.opportunity',
          '@odata.id': `opportunities(ferry_legacyid='W-1')`,
          statecode: 1,
          statuscode: 3,
        },
      ],
    });
    assert.equal(bulk.status, 400);
    assert.deepEqual(bulk.json, REFUSED_WON);
    assert.deepEqual(state('W-1'), [0, 1], 'still open');
    // Other state changes stay plain updates: On Hold is a status of Open.
    assert.equal((await h.call('PATCH', `opportunities(ferry_legacyid='W-1')`, { statuscode: 2 })).status, 204);
  });

  it('WinOpportunity and LoseOpportunity close an open opportunity with a status of that state', async () => {
    const won = await h.call('POST', 'WinOpportunity', closeBody('W-1', 3));
    assert.equal(won.status, 204, won.text);
    assert.deepEqual(state('W-1'), [1, 3]);
    const lost = await h.call('POST', 'LoseOpportunity', closeBody('L-1', 5));
    assert.equal(lost.status, 204, lost.text);
    assert.deepEqual(state('L-1'), [2, 5]);
    const again = await h.call('POST', 'WinOpportunity', closeBody('W-1', 3));
    assert.equal(again.status, 400);
    assert.equal(again.json.error.message, 'The opportunity is already closed.');
    // Reopening is a plain update; then the other message closes it the other way.
    assert.equal((await h.call('PATCH', `opportunities(ferry_legacyid='L-1')`, { statecode: 0 })).status, 204);
    assert.deepEqual(state('L-1'), [0, 1]);
    assert.equal((await h.call('POST', 'WinOpportunity', closeBody('L-1', 3))).status, 204);
    assert.deepEqual(state('L-1'), [1, 3]);
  });

  it('refuses a close without its activity, with a status of another state, or for a missing opportunity', async () => {
    const noActivity = await h.call('POST', 'WinOpportunity', { Status: 3 });
    assert.equal(noActivity.status, 400);
    assert.match(noActivity.json.error.message, /'OpportunityClose' of 'WinOpportunity' is missing/);
    const noBind = await h.call('POST', 'WinOpportunity', { OpportunityClose: { subject: 'x' }, Status: 3 });
    assert.equal(noBind.status, 400);
    assert.match(noBind.json.error.message, /opportunityid@odata.bind/);
    const wrongType = await h.call(
      'POST',
      'LoseOpportunity',
      closeBody('X-1', 5, { '@odata.type': '#Microsoft.Dynamics.CRM.task' }),
    );
    assert.equal(wrongType.status, 400);
    const wrongStatus = await h.call('POST', 'LoseOpportunity', closeBody('X-1', 3));
    assert.equal(wrongStatus.status, 400);
    assert.equal(wrongStatus.json.error.code, '0x80040203');
    const missing = await h.call('POST', 'WinOpportunity', closeBody('NOPE', 3));
    assert.equal(missing.status, 404);
    assert.equal((await h.call('GET', 'WinOpportunity')).status, 405);
    assert.deepEqual(state('X-1'), [0, 1], 'nothing refused changed the row');
  });
});
