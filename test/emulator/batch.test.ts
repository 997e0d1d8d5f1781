import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { batchBody, type Harness, httpRequest, responseParts, startHarness } from './emulator-harness.js';

const MULTIPART = (b: string) => ({ 'Content-Type': `multipart/mixed; boundary=${b}` });

describe('emulator $batch', () => {
  let h: Harness;
  before(async () => {
    h = await startHarness();
  });
  after(() => h.close());

  it('a failing operation rolls back its whole change set; continue-on-error runs the next change set', async () => {
    const before = h.emulator.store.count('account');
    const body = batchBody('batch_rb', [
      {
        changeset: 'cs_a',
        parts: [
          httpRequest('POST', 'accounts', { name: 'cs-a-1', accountnumber: 'CS-A-1' }),
          httpRequest('PATCH', "accounts(accountnumber='CS-A-2')", { name: 'cs-a-2' }),
          httpRequest('POST', 'accounts', { name: 'cs-a-3', accountcategorycode: 77 }),
        ],
      },
      { changeset: 'cs_b', parts: [httpRequest('POST', 'accounts', { name: 'cs-b-1', accountnumber: 'CS-B-1' })] },
    ]);
    const r = await h.call('POST', '$batch', body, { ...MULTIPART('batch_rb'), Prefer: 'odata.continue-on-error' });
    assert.equal(r.status, 200);
    const parts = responseParts(r.text);
    assert.deepEqual(
      parts.map((p) => [p.status, p.contentId]),
      [
        [400, '3'],
        [204, '1'],
      ],
    );
    assert.equal(JSON.parse(parts[0].body).error.code, '0x80061005');
    const numbers = h.emulator.store.rows('account').map((row) => row.attributes.accountnumber);
    assert.ok(!numbers.includes('CS-A-1') && !numbers.includes('CS-A-2'), 'change set A rolled back');
    assert.ok(numbers.includes('CS-B-1'));
    assert.equal(h.emulator.store.count('account'), before + 1);
  });

  it('without continue-on-error a failed change set stops the batch: later parts do not run', async () => {
    const body = batchBody('batch_stop', [
      httpRequest('POST', 'accounts', { name: 'stop-1', accountnumber: 'STOP-1' }),
      { changeset: 'cs_s', parts: [httpRequest('POST', 'accounts', { name: 'x'.repeat(161) })] },
      httpRequest('POST', 'accounts', { name: 'stop-3', accountnumber: 'STOP-3' }),
    ]);
    const r = await h.call('POST', '$batch', body, MULTIPART('batch_stop'));
    assert.equal(r.status, 400);
    const parts = responseParts(r.text);
    assert.deepEqual(
      parts.map((p) => p.status),
      [204, 400],
    );
    const numbers = h.emulator.store.rows('account').map((row) => row.attributes.accountnumber);
    assert.ok(numbers.includes('STOP-1'), 'parts before the failure stay applied (no change set)');
    assert.ok(!numbers.includes('STOP-3'), 'parts after the failure do not run');
  });

  it('Content-ID references work in a later URL ($1) and in an @odata.bind body value', async () => {
    const body = batchBody('batch_ref', [
      {
        changeset: 'cs_ref',
        parts: [
          httpRequest('POST', '/api/data/v9.2/accounts', { name: 'ref parent' }),
          httpRequest('PATCH', '$1', { description: 'patched through $1' }),
          httpRequest('POST', `${h.api}contacts`, {
            firstname: 'ref child',
            'parentcustomerid_account@odata.bind': '$1',
          }),
        ],
      },
    ]);
    const r = await h.call('POST', '$batch', body, MULTIPART('batch_ref'));
    assert.equal(r.status, 200, r.text);
    const parts = responseParts(r.text);
    assert.deepEqual(
      parts.map((p) => p.status),
      [204, 204, 204],
    );
    const accountId = /\(([0-9a-f-]{36})\)/.exec(parts[0].headers['odata-entityid'])![1];
    assert.equal(h.emulator.store.get('account', accountId)?.attributes.description, 'patched through $1');
    const contactId = /\(([0-9a-f-]{36})\)/.exec(parts[2].headers['odata-entityid'])![1];
    assert.equal(h.emulator.store.get('contact', contactId)?.attributes.parentcustomerid, accountId);
  });

  it('LF-only line endings → 400 0x80048d19 "Stream was not readable", nothing applied', async () => {
    const before = h.emulator.store.count('account');
    const body = batchBody('batch_lf', [httpRequest('POST', 'accounts', { name: 'lf' }).replace(/\r\n/g, '\n')], '\n');
    const r = await h.call('POST', '$batch', body, MULTIPART('batch_lf'));
    assert.equal(r.status, 400);
    assert.equal(r.json.error.code, '0x80048d19');
    assert.match(r.json.error.message, /InnerException : System\.ArgumentException: Stream was not readable\.$/);
    assert.equal(h.emulator.store.count('account'), before);
  });

  it('more than 1000 operations → 400; exactly 1000 run', async () => {
    const ops = (n: number, prefix: string) =>
      Array.from({ length: n }, (_, i) =>
        httpRequest('PATCH', `sample_examples(sample_keyattribute='${prefix}-${i}')`, { sample_name: `${i}` }),
      );
    const tooMany = await h.call('POST', '$batch', batchBody('b1001', ops(1001, 'over')), MULTIPART('b1001'));
    assert.equal(tooMany.status, 400);
    assert.match(tooMany.json.error.message, /1001 operations; a maximum of 1000/);
    assert.equal(h.emulator.store.count('sample_example'), 0);
    const full = await h.call('POST', '$batch', batchBody('b1000', ops(1000, 'full')), MULTIPART('b1000'));
    assert.equal(full.status, 200);
    assert.equal(responseParts(full.text).length, 1000);
    assert.equal(h.emulator.store.count('sample_example'), 1000);
  });

  it('GET inside a change set is refused; GET parts outside return rows; UpsertMultiple inside a part works', async () => {
    const inChangeSet = batchBody('b_get', [{ changeset: 'cs_get', parts: [httpRequest('GET', 'accounts?$top=1')] }]);
    const refused = await h.call('POST', '$batch', inChangeSet, MULTIPART('b_get'));
    assert.equal(refused.status, 400);
    const bulk = httpRequest('POST', 'sample_examples/Microsoft.Dynamics.CRM.UpsertMultiple', {
      Targets: [
        {
          '@odata.type': 'Microsoft.Dynamics.CRM.sample_example',
          '@odata.id': "sample_examples(sample_keyattribute='in-batch')",
          sample_name: 'ib',
        },
      ],
    });
    const mixed = batchBody('b_mixed', [
      bulk,
      httpRequest('GET', "sample_examples(sample_keyattribute='in-batch')?$select=sample_name"),
    ]);
    const r = await h.call('POST', '$batch', mixed, MULTIPART('b_mixed'));
    assert.equal(r.status, 200);
    const parts = responseParts(r.text);
    assert.deepEqual(
      parts.map((p) => p.status),
      [204, 200],
    );
    assert.equal(JSON.parse(parts[1].body).sample_name, 'ib');
  });

  it('a $batch without a multipart boundary → 400', async () => {
    const r = await h.call('POST', '$batch', 'nothing', { 'Content-Type': 'application/json' });
    assert.equal(r.status, 400);
  });
});
