import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { batchBody, type Harness, httpRequest, responseParts, startHarness } from './emulator-harness.js';

// Every documented test vector TV1–TV18 (the request/response examples of the pages listed in src/emulator/README.md), over real HTTP.

const ACCOUNT1 = '00000000-0000-0000-0000-000000000001';
const GUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

describe('test vectors TV1–TV18', () => {
  let h: Harness;
  before(async () => {
    h = await startHarness();
  });
  after(() => h.close());

  it('TV1: upsert by composite integer key creates, then updates with the identical 204', async () => {
    const first = await h.call('PATCH', 'example_records(example_key1=2,example_key2=2)', { example_name: '2:2' });
    assert.equal(first.status, 204);
    assert.equal(first.headers.get('odata-version'), '4.0');
    assert.equal(first.headers.get('odata-entityid'), `${h.api}example_records(example_key1=2,example_key2=2)`);
    assert.equal(first.text, '');
    const second = await h.call('PATCH', 'example_records(example_key1=2,example_key2=2)', {
      example_name: '2:2 Updated',
    });
    assert.equal(second.status, 204);
    assert.equal(second.headers.get('odata-entityid'), first.headers.get('odata-entityid'));
    const rows = h.emulator.store.rows('example_record').filter((r) => r.attributes.example_key1 === 2);
    assert.equal(rows.length, 1);
    assert.deepEqual(
      {
        name: rows[0].attributes.example_name,
        k1: rows[0].attributes.example_key1,
        k2: rows[0].attributes.example_key2,
      },
      { name: '2:2 Updated', k1: 2, k2: 2 },
    );
  });

  it('TV2: return=representation answers 201 then 200 with ETag, context and the selected id', async () => {
    const url = 'example_records(example_key1=3,example_key2=3)?$select=example_recordid';
    const prefer = { Prefer: 'return=representation' };
    const created = await h.call('PATCH', url, { example_name: '3:3' }, prefer);
    assert.equal(created.status, 201);
    assert.equal(created.headers.get('content-type'), 'application/json; odata.metadata=minimal');
    assert.equal(created.headers.get('preference-applied'), 'return=representation');
    assert.match(created.headers.get('etag') ?? '', /^W\/"\d+"$/);
    assert.deepEqual(Object.keys(created.json), ['@odata.context', '@odata.etag', 'example_recordid']);
    assert.equal(created.json['@odata.context'], `${h.api}$metadata#example_records(example_recordid)/$entity`);
    assert.equal(created.json['@odata.etag'], created.headers.get('etag'));
    assert.match(created.json.example_recordid, GUID);
    const updated = await h.call('PATCH', url, { example_name: '3:3 Updated' }, prefer);
    assert.equal(updated.status, 200);
    assert.equal(updated.headers.get('preference-applied'), null);
    assert.equal(updated.json.example_recordid, created.json.example_recordid);
    assert.notEqual(updated.headers.get('etag'), created.headers.get('etag'));
    const version = (etag: string | null) => Number(/"(\d+)"/.exec(etag ?? '')?.[1]);
    assert.ok(version(updated.headers.get('etag')) > version(created.headers.get('etag')));
  });

  it('TV3: If-Match: * on a missing row → 404 with the documented message; on an existing row → 204', async () => {
    const body = {
      name: 'Updated Sample Account ',
      creditonhold: true,
      address1_latitude: 47.639583,
      revenue: 6000000,
      accountcategorycode: 2,
    };
    const missing = await h.call('PATCH', `accounts(${ACCOUNT1.replace(/1$/, '9')})`, body, { 'If-Match': '*' });
    assert.equal(missing.status, 404);
    assert.equal(missing.headers.get('content-type'), 'application/json; odata.metadata=minimal');
    // The doc example shows code ""; the current service sends ObjectDoesNotExist (reference §1.3), as the emulator does.
    assert.equal(missing.json.error.code, '0x80040217');
    assert.equal(missing.json.error.message, 'account With Id = 00000000-0000-0000-0000-000000000009 Does Not Exist');
    assert.equal(h.emulator.store.get('account', '00000000-0000-0000-0000-000000000009'), undefined);
    await h.call('PATCH', `accounts(${ACCOUNT1})`, { name: 'Sample Account 1' });
    const existing = await h.call('PATCH', `accounts(${ACCOUNT1})`, body, { 'If-Match': '*' });
    assert.equal(existing.status, 204);
    assert.equal(h.emulator.store.get('account', ACCOUNT1)?.attributes.revenue, 6000000);
  });

  it('TV4: If-None-Match: * on an existing row → 412 "A record with matching key values already exists."', async () => {
    const id = '00000000-0000-0000-0000-000000000004';
    const absent = await h.call('PATCH', `accounts(${id})`, { name: 'four' }, { 'If-None-Match': '*' });
    assert.equal(absent.status, 204);
    const present = await h.call('PATCH', `accounts(${id})`, { name: 'four again' }, { 'If-None-Match': '*' });
    assert.equal(present.status, 412);
    assert.deepEqual(present.json, {
      error: { code: '', message: 'A record with matching key values already exists.' },
    });
    assert.equal(h.emulator.store.get('account', id)?.attributes.name, 'four');
  });

  it('TV5: CreateMultiple → 200 with the CreateMultipleResponse context and one id per target, in order', async () => {
    const targets = [1, 2, 3].map((i) => ({
      sample_name: `sample record 000000${i}`,
      '@odata.type': 'Microsoft.Dynamics.CRM.sample_example',
    }));
    const r = await h.call('POST', 'sample_examples/Microsoft.Dynamics.CRM.CreateMultiple', { Targets: targets });
    assert.equal(r.status, 200);
    assert.equal(r.headers.get('odata-version'), '4.0');
    assert.equal(r.json['@odata.context'], `${h.api}$metadata#Microsoft.Dynamics.CRM.CreateMultipleResponse`);
    assert.equal(r.json.Ids.length, 3);
    r.json.Ids.forEach((id: string, i: number) => {
      assert.match(id, GUID);
      assert.equal(h.emulator.store.get('sample_example', id)?.attributes.sample_name, `sample record 000000${i + 1}`);
    });
  });

  it('TV6: UpdateMultiple with primary keys → 204', async () => {
    const ids = h.emulator.store.rows('sample_example').map((r) => r.id);
    const targets = ids.map((id, i) => ({
      sample_name: `sample record ${i} Updated`,
      '@odata.type': 'Microsoft.Dynamics.CRM.sample_example',
      sample_exampleid: id,
    }));
    const r = await h.call('POST', 'sample_examples/Microsoft.Dynamics.CRM.UpdateMultiple', { Targets: targets });
    assert.equal(r.status, 204);
    assert.equal(r.headers.get('odata-version'), '4.0');
    ids.forEach((id, i) => {
      assert.equal(h.emulator.store.get('sample_example', id)?.attributes.sample_name, `sample record ${i} Updated`);
    });
  });

  it('TV7: UpsertMultiple with @odata.id alternate keys → 204 and both rows stored by key', async () => {
    const targets = ['0000001', '0000002'].map((k) => ({
      '@odata.type': 'Microsoft.Dynamics.CRM.sample_example',
      sample_name: `sample record ${k}`,
      '@odata.id': `sample_examples(sample_keyattribute='${k}')`,
    }));
    const r = await h.call('POST', 'sample_examples/Microsoft.Dynamics.CRM.UpsertMultiple', { Targets: targets });
    assert.equal(r.status, 204);
    assert.equal(r.text, '');
    const byKey = h.emulator.store
      .rows('sample_example')
      .filter((row) => row.attributes.sample_keyattribute !== undefined);
    assert.deepEqual(
      byKey.map((row) => [row.attributes.sample_keyattribute, row.attributes.sample_name]),
      [
        ['0000001', 'sample record 0000001'],
        ['0000002', 'sample record 0000002'],
      ],
    );
  });

  it('TV8: the sdkmessagefilters probe returns a row for a bulk-capable table and none for one without', async () => {
    const probe = (table: string) =>
      h.call(
        'GET',
        `sdkmessagefilters?$select=sdkmessagefilterid&$filter=sdkmessageid/name eq @message and primaryobjecttypecode eq @table&@message='CreateMultiple'&@table='${table}'`,
      );
    const yes = await probe('sample_example');
    assert.equal(yes.status, 200);
    assert.equal(yes.json['@odata.context'], `${h.api}$metadata#sdkmessagefilters(sdkmessagefilterid)`);
    assert.equal(yes.json.value.length, 1);
    assert.match(yes.json.value[0]['@odata.etag'], /^W\/"\d+"$/);
    assert.match(yes.json.value[0].sdkmessagefilterid, GUID);
    const no = await probe('ferry_legacynote');
    assert.deepEqual(no.json.value, []);
  });

  it('TV9: $batch with a change set (POST with bind) and a GET of the collection navigation', async () => {
    const account = '00000000-0000-0000-0000-0000000000a9';
    await h.call('PATCH', `accounts(${account})`, { name: 'TV9 account' });
    const body = batchBody('batch_22975cad', [
      {
        changeset: 'changeset_246e6bfe',
        parts: [
          httpRequest('POST', '/api/data/v9.2/tasks', {
            subject: 'Task 1 in batch',
            'regardingobjectid_account_task@odata.bind': `accounts(${account})`,
          }),
        ],
      },
      httpRequest('GET', `/api/data/v9.2/accounts(${account})/Account_Tasks?$select=subject`),
    ]);
    const r = await h.call('POST', '$batch', body, { 'Content-Type': 'multipart/mixed; boundary="batch_22975cad"' });
    assert.equal(r.status, 200);
    assert.match(r.headers.get('content-type') ?? '', /^multipart\/mixed; boundary=batchresponse_[0-9a-f-]+$/);
    const boundary = /boundary=(\S+)/.exec(r.headers.get('content-type')!)![1];
    assert.ok(r.text.startsWith(`--${boundary}\r\nContent-Type: multipart/mixed; boundary=changesetresponse_`));
    assert.ok(r.text.endsWith(`--${boundary}--\r\n`));
    const parts = responseParts(r.text);
    assert.equal(parts.length, 2);
    assert.equal(parts[0].status, 204);
    assert.equal(parts[0].contentId, '1');
    assert.match(parts[0].headers.location, new RegExp(`^${h.api.replace(/[.$]/g, '\\$&')}tasks\\([0-9a-f-]{36}\\)$`));
    assert.equal(parts[0].headers['odata-entityid'], parts[0].headers.location);
    assert.equal(parts[1].status, 200);
    assert.match(
      parts[1].headers['content-type'],
      /^application\/json; odata\.metadata=minimal; odata\.streaming=true$/,
    );
    const got = JSON.parse(parts[1].body);
    const taskId = /tasks\(([^)]+)\)/.exec(parts[0].headers.location)![1];
    assert.equal(got['@odata.context'], `${h.api}$metadata#tasks(subject)`);
    assert.deepEqual(Object.keys(got.value[0]), ['@odata.etag', 'subject', 'activityid']);
    assert.deepEqual([got.value[0].subject, got.value[0].activityid], ['Task 1 in batch', taskId]);
  });

  const tv10 = (prefer?: string) => {
    const long = 'x'.repeat(201);
    const body = batchBody('batch_tv10', [
      httpRequest('POST', '/api/data/v9.2/tasks', { subject: long }),
      httpRequest('POST', '/api/data/v9.2/tasks', { subject: 'Task 2 in batch' }),
      httpRequest('POST', '/api/data/v9.2/tasks', { subject: 'Task 3 in batch' }),
    ]);
    return h.call('POST', '$batch', body, {
      'Content-Type': 'multipart/mixed; boundary="batch_tv10"',
      ...(prefer ? { Prefer: prefer } : {}),
    });
  };
  const TV10_ERROR = {
    error: {
      code: '0x80044331',
      message:
        "A validation error occurred.  The length of the 'subject' attribute of the 'task' entity exceeded the maximum allowed length of '200'.",
    },
  };

  it('TV10: without continue-on-error the batch stops at the first failure and carries its status', async () => {
    const before = h.emulator.store.count('task');
    const r = await tv10();
    assert.equal(r.status, 400);
    const parts = responseParts(r.text);
    assert.equal(parts.length, 1);
    assert.equal(parts[0].status, 400);
    assert.match(parts[0].headers.req_id, GUID);
    assert.equal(parts[0].headers['content-type'], 'application/json; odata.metadata=minimal');
    assert.deepEqual(JSON.parse(parts[0].body), TV10_ERROR);
    assert.equal(h.emulator.store.count('task'), before);
  });

  it('TV10: with Prefer: odata.continue-on-error → 200, the error part, then two created tasks', async () => {
    const before = h.emulator.store.count('task');
    const r = await tv10('odata.continue-on-error');
    assert.equal(r.status, 200);
    const parts = responseParts(r.text);
    assert.deepEqual(
      parts.map((p) => p.status),
      [400, 204, 204],
    );
    assert.deepEqual(JSON.parse(parts[0].body), TV10_ERROR);
    for (const p of parts.slice(1)) assert.match(p.headers['odata-entityid'], /tasks\([0-9a-f-]{36}\)$/);
    assert.equal(h.emulator.store.count('task'), before + 2);
  });

  it('TV11: a Content-ID reference before its declaration → 400 "does not exist in the batch context"', async () => {
    const body = batchBody('batch_tv11', [
      {
        changeset: 'changeset_tv11',
        parts: [
          httpRequest('POST', '/api/data/v9.2/tasks', {
            subject: 'refers ahead',
            'regardingobjectid_contact_task@odata.bind': '$2',
          }),
          httpRequest('POST', '/api/data/v9.2/contacts', { firstname: 'later' }),
        ],
      },
    ]);
    const r = await h.call('POST', '$batch', body, { 'Content-Type': 'multipart/mixed; boundary=batch_tv11' });
    assert.equal(r.status, 400);
    const parts = responseParts(r.text);
    assert.equal(parts.length, 1);
    assert.equal(parts[0].status, 400);
    assert.equal(
      JSON.parse(parts[0].body).error.message,
      "Content-ID Reference: '$2' does not exist in the batch context.",
    );
  });

  it('TV12: a wrong navigation property name → 400 0x80048d19 with the OData message', async () => {
    const account = '00000000-0000-0000-0000-0000000000c2';
    await h.call('PATCH', `accounts(${account})`, { name: 'TV12 account' });
    const wrong = await h.call('POST', 'contacts', {
      firstname: 'test',
      lastname: 'contact',
      'parentcustomerid@odata.bind': `accounts(${account})`,
    });
    assert.equal(wrong.status, 400);
    assert.equal(wrong.json.error.code, '0x80048d19');
    assert.ok(
      wrong.json.error.message.startsWith(
        "Error identified in Payload provided by the user for Entity :'contacts'  ---->  InnerException : Microsoft.OData.ODataException: An undeclared property 'parentcustomerid' which only has property annotations in the payload but no property value was found in the payload. In OData, only declared navigation properties and declared named streams can be represented as properties without values",
      ),
    );
    const right = await h.call('POST', 'contacts', {
      firstname: 'test',
      lastname: 'contact',
      'parentcustomerid_account@odata.bind': `accounts(${account})`,
    });
    assert.equal(right.status, 204);
    const id = /contacts\(([^)]+)\)/.exec(right.headers.get('odata-entityid')!)![1];
    const row = h.emulator.store.get('contact', id)!;
    assert.equal(row.attributes.parentcustomerid, account);
    assert.equal(row.attributes['parentcustomerid@target'], 'account');
  });

  it('TV13: duplicate detection on create with MSCRM.SuppressDuplicateDetection: false → 412 0x80040333', async () => {
    const first = await h.call('POST', 'accounts', { name: 'Sample Account' });
    assert.equal(first.status, 204);
    const dup = await h.call(
      'POST',
      'accounts',
      { name: 'Sample Account' },
      { 'MSCRM.SuppressDuplicateDetection': 'false' },
    );
    assert.equal(dup.status, 412);
    assert.equal(dup.headers.get('content-type'), 'application/json; odata.metadata=minimal');
    assert.deepEqual(dup.json, {
      error: {
        code: '0x80040333',
        message: 'A record was not created or updated because a duplicate of the current record already exists.',
      },
    });
    // Without the header Web API creates suppress duplicate detection (reference §10).
    const allowed = await h.call('POST', 'accounts', { name: 'Sample Account' });
    assert.equal(allowed.status, 204);
  });

  it('TV14: multi-select choice "1, 9" → 204, read back as "1,9" with formatted value "Swimming; Camping"', async () => {
    const r = await h.call('POST', 'contacts', {
      '@odata.type': 'Microsoft.Dynamics.CRM.contact',
      firstname: 'Wayne',
      lastname: 'Yarborough',
      sample_outdooractivities: '1, 9',
    });
    assert.equal(r.status, 204);
    assert.equal(r.headers.get('odata-version'), '4.0');
    const url = r.headers.get('odata-entityid')!;
    assert.match(url, new RegExp(`^${h.api.replace(/[.$]/g, '\\$&')}contacts\\([0-9a-f-]{36}\\)$`));
    const read = await h.call('GET', `${url.slice(h.api.length)}?$select=sample_outdooractivities`, undefined, {
      Prefer: 'odata.include-annotations="*"',
    });
    assert.equal(read.status, 200);
    assert.equal(read.json.sample_outdooractivities, '1,9');
    assert.equal(read.json['sample_outdooractivities@OData.Community.Display.V1.FormattedValue'], 'Swimming; Camping');
  });

  it('TV15: binds set to null disassociate (bind form and plain nav-name form)', async () => {
    const parent = '00000000-0000-0000-0000-0000000000f1';
    const child = '00000000-0000-0000-0000-0000000000f2';
    await h.call('PATCH', `accounts(${parent})`, { name: 'parent' });
    await h.call('PATCH', `accounts(${child})`, {
      name: 'child',
      'parentaccountid@odata.bind': `/accounts(${parent})`,
    });
    assert.equal(h.emulator.store.get('account', child)?.attributes.parentaccountid, parent);
    const r = await h.call('PATCH', `accounts(${child})`, {
      'parentaccountid@odata.bind': null,
      'primarycontactid@odata.bind': null,
    });
    assert.equal(r.status, 204);
    assert.equal(h.emulator.store.get('account', child)?.attributes.parentaccountid, null);
    await h.call('PATCH', `accounts(${child})`, { 'parentaccountid@odata.bind': `accounts(${parent})` });
    const plain = await h.call('PATCH', `accounts(${child})`, { parentaccountid: null, primarycontactid: null });
    assert.equal(plain.status, 204);
    assert.equal(h.emulator.store.get('account', child)?.attributes.parentaccountid, null);
    const got = await h.call('GET', `accounts(${child})?$select=_parentaccountid_value`);
    assert.equal(got.json._parentaccountid_value, null);
  });

  it('TV16: picklist metadata cast with $expand=OptionSet gives Value/Label options', async () => {
    const r = await h.call(
      'GET',
      "EntityDefinitions(LogicalName='account')/Attributes(LogicalName='accountcategorycode')/Microsoft.Dynamics.CRM.PicklistAttributeMetadata?$select=LogicalName&$expand=OptionSet($select=Options),GlobalOptionSet($select=Options)",
    );
    assert.equal(r.status, 200);
    assert.ok(
      r.json['@odata.context'].startsWith(
        `${h.api}$metadata#EntityDefinitions('account')/Attributes/Microsoft.Dynamics.CRM.PicklistAttributeMetadata(LogicalName,OptionSet(Options)`,
      ),
    );
    assert.ok(r.json['@odata.context'].endsWith('/$entity'));
    assert.match(r.json.MetadataId, GUID);
    assert.equal(r.json.LogicalName, 'accountcategorycode');
    assert.match(r.json.OptionSet.MetadataId, GUID);
    assert.deepEqual(
      r.json.OptionSet.Options.map(
        (o: {
          Value: number;
          Label: { UserLocalizedLabel: { Label: string }; LocalizedLabels: Array<{ LanguageCode: number }> };
        }) => [o.Value, o.Label.UserLocalizedLabel.Label, o.Label.LocalizedLabels[0].LanguageCode],
      ),
      [
        [1, 'Preferred Customer', 1033],
        [2, 'Standard', 1033],
      ],
    );
    const wrongCast = await h.call(
      'GET',
      "EntityDefinitions(LogicalName='account')/Attributes(LogicalName='name')/Microsoft.Dynamics.CRM.PicklistAttributeMetadata",
    );
    assert.equal(wrongCast.status, 404);
  });

  it('TV17: throttling answers 429 with Retry-After and the request-limit error body', async () => {
    const t = await startHarness({ throttleEvery: 2, retryAfterSec: 30 });
    try {
      const ok = await t.call('GET', 'WhoAmI');
      assert.equal(ok.status, 200);
      const throttled = await t.call('GET', 'WhoAmI');
      assert.equal(throttled.status, 429);
      assert.equal(throttled.headers.get('retry-after'), '30');
      assert.equal(throttled.headers.get('content-type'), 'application/json; odata.metadata=minimal');
      assert.deepEqual(throttled.json, {
        error: {
          code: '0x80072322',
          message: 'Number of requests exceeded the limit of 6000 over time window of 300 seconds.',
        },
      });
    } finally {
      await t.close();
    }
  });

  it('TV18: MSCRM.BypassBusinessLogicExecution is accepted on create → 204', async () => {
    const r = await h.call(
      'POST',
      'accounts',
      { name: 'Bypass Account' },
      { 'MSCRM.BypassBusinessLogicExecution': 'CustomSync,CustomAsync' },
    );
    assert.equal(r.status, 204);
    assert.match(r.headers.get('odata-entityid') ?? '', /accounts\([0-9a-f-]{36}\)$/);
  });
});
