import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { type Harness, startHarness } from './emulator-harness.js';

const idOf = (entityId: string | null) => /\(([0-9a-f-]{36})\)$/.exec(entityId ?? '')![1];

describe('emulator reads and keys', () => {
  let h: Harness;
  before(async () => {
    h = await startHarness();
  });
  after(() => h.close());

  it('GET by alternate key with a doubled quote, percent-encoded, and 404 for a missing key', async () => {
    const put = await h.call('PATCH', `accounts(accountnumber='MEN''S-1')`, { name: "Men's Shoes" });
    assert.equal(put.status, 204);
    const stored = h.emulator.store.rows('account').find((r) => r.attributes.accountnumber === "MEN'S-1");
    assert.ok(stored, 'the key value is stored with one quote');
    const got = await h.call(
      'GET',
      `accounts(accountnumber=${encodeURIComponent("'MEN''S-1'")})?$select=name,accountnumber`,
    );
    assert.equal(got.status, 200);
    assert.equal(got.json.name, "Men's Shoes");
    assert.equal(got.json.accountid, stored.id);
    assert.equal(got.json['@odata.context'], `${h.api}$metadata#accounts(name,accountnumber)/$entity`);
    const missing = await h.call('GET', `accounts(accountnumber='NOPE')`);
    assert.equal(missing.status, 404);
    assert.deepEqual(missing.json, {
      error: { code: '0x80040217', message: 'A record with the specified key values does not exist in account entity' },
    });
  });

  it('GET by composite key (string + unquoted integer), in either order', async () => {
    await h.call('PATCH', `contacts(ferry_legacysource='CRM-A',ferry_legacyid=42)`, { firstname: 'Ada' });
    const a = await h.call('GET', `contacts(ferry_legacysource='CRM-A',ferry_legacyid=42)?$select=firstname`);
    const b = await h.call('GET', `contacts(ferry_legacyid=42,ferry_legacysource='CRM-A')?$select=firstname`);
    assert.equal(a.status, 200);
    assert.equal(a.json.firstname, 'Ada');
    assert.equal(b.json.contactid, a.json.contactid);
    const other = await h.call('GET', `contacts(ferry_legacysource='CRM-A',ferry_legacyid=43)`);
    assert.equal(other.status, 404);
  });

  it('a key that is not a defined Active key → 400 with the documented text', async () => {
    const r = await h.call('GET', `contacts(emailaddress1='a@b.c')`);
    assert.equal(r.status, 400);
    assert.match(
      r.json.error.message,
      /^The key in the request URI is not valid for resource 'Microsoft\.Dynamics\.CRM\.contact'/,
    );
    const partial = await h.call('PATCH', `contacts(ferry_legacysource='X')`, { firstname: 'x' });
    assert.equal(partial.status, 400);
  });

  it('unknown entity set → 404 0x8006088a naming the segment; GET by missing id → 404 0x80040217', async () => {
    const r = await h.call('GET', 'Account');
    assert.equal(r.status, 404);
    assert.deepEqual(r.json, {
      error: { code: '0x8006088a', message: "Resource not found for the segment 'Account'." },
    });
    const id = '11111111-2222-3333-4444-555555555555';
    const m = await h.call('GET', `accounts(${id})`);
    assert.equal(m.status, 404);
    assert.equal(m.json.error.message, `account With Id = ${id} Does Not Exist`);
  });

  it('collection queries: $filter eq/and (case-insensitive strings), lookups by _x_value, $select, $top', async () => {
    const parent = '00000000-0000-0000-0000-00000000aa01';
    await h.call('PATCH', `accounts(${parent})`, { name: 'Query Parent', accountcategorycode: 1 });
    for (let i = 0; i < 3; i++) {
      await h.call('PATCH', `accounts(accountnumber='Q-${i}')`, {
        name: `Query ${i}`,
        accountcategorycode: i === 2 ? 2 : 1,
        'parentaccountid@odata.bind': `accounts(${parent})`,
      });
    }
    const r = await h.call(
      'GET',
      `accounts?$select=name,accountnumber&$filter=_parentaccountid_value eq ${parent} and accountcategorycode eq 1`,
    );
    assert.equal(r.status, 200);
    assert.equal(r.json['@odata.context'], `${h.api}$metadata#accounts(name,accountnumber)`);
    assert.deepEqual(r.json.value.map((v: { accountnumber: string }) => v.accountnumber).sort(), ['Q-0', 'Q-1']);
    const ci = await h.call('GET', `accounts?$filter=accountnumber eq 'q-2'&$select=name`);
    assert.deepEqual(
      ci.json.value.map((v: { name: string }) => v.name),
      ['Query 2'],
    );
    const top = await h.call('GET', `accounts?$filter=_parentaccountid_value eq ${parent}&$top=1`);
    assert.equal(top.json.value.length, 1);
    assert.equal(top.json.value[0]._parentaccountid_value, parent);
    const bad = await h.call('GET', `accounts?$filter=contains(name,'x')`);
    assert.equal(bad.status, 400);
    const unknown = await h.call('GET', `accounts?$filter=Name eq 'x'`);
    assert.equal(unknown.status, 400);
    assert.match(unknown.json.error.message, /Could not find a property named 'Name'/);
  });

  it('collection queries: the In query function over ids (a deleted or unknown id is not returned) and over a key', async () => {
    const ids: string[] = [];
    for (let i = 0; i < 3; i++) {
      await h.call('PATCH', `accounts(accountnumber='IN-${i}')`, { name: `In ${i}` });
      const r = await h.call('GET', `accounts(accountnumber='IN-${i}')?$select=accountid`);
      ids.push(r.json.accountid);
    }
    assert.equal((await h.call('DELETE', `accounts(${ids[1]})`)).status, 204);
    const unknown = '11111111-2222-3333-4444-000000000001';
    const list = [...ids, unknown].map((id) => `'${id.toUpperCase()}'`).join(',');
    const r = await h.call(
      'GET',
      `accounts?$select=accountnumber&$filter=Microsoft.Dynamics.CRM.In(PropertyName='accountid',PropertyValues=[${list}])`,
    );
    assert.equal(r.status, 200);
    assert.deepEqual(r.json.value.map((v: { accountnumber: string }) => v.accountnumber).sort(), ['IN-0', 'IN-2']);
    const aliased = await h.call(
      'GET',
      `accounts?$select=name&$filter=Microsoft.Dynamics.CRM.In(PropertyName=@p1,PropertyValues=@p2)&@p1='accountnumber'&@p2=['in-2','IN-9']`,
    );
    assert.deepEqual(
      aliased.json.value.map((v: { name: string }) => v.name),
      ['In 2'],
    );
    const bad = await h.call(
      'GET',
      `accounts?$filter=Microsoft.Dynamics.CRM.In(PropertyName='Name',PropertyValues=['x'])`,
    );
    assert.equal(bad.status, 400);
  });

  it('collections page with Prefer: odata.maxpagesize and @odata.nextLink until every row was seen once', async () => {
    for (let i = 0; i < 5; i++)
      await h.call('PATCH', `contacts(ferry_legacysource='PAGE',ferry_legacyid=${i})`, { firstname: `p${i}` });
    const seen: string[] = [];
    let url: string | undefined = `contacts?$select=firstname&$filter=ferry_legacysource eq 'PAGE'`;
    let pages = 0;
    while (url) {
      const r = await h.call('GET', url, undefined, { Prefer: 'odata.maxpagesize=2' });
      assert.equal(r.status, 200);
      assert.equal(r.headers.get('preference-applied'), 'odata.maxpagesize=2');
      assert.ok(r.json.value.length <= 2);
      seen.push(...r.json.value.map((v: { firstname: string }) => v.firstname));
      const next: string | undefined = r.json['@odata.nextLink'];
      url = next === undefined ? undefined : next.slice(h.api.length);
      pages += 1;
    }
    assert.equal(pages, 3);
    assert.deepEqual(seen.sort(), ['p0', 'p1', 'p2', 'p3', 'p4']);
    const byKey = await h.call(
      'GET',
      `contacts?$filter=ferry_legacyid eq 3 and ferry_legacysource eq 'page'&$select=firstname`,
    );
    assert.deepEqual(
      byKey.json.value.map((v: { firstname: string }) => v.firstname),
      ['p3'],
    );
  });

  it('GET without $select returns every column (null when empty); unknown or bare-lookup $select → 400', async () => {
    const r = await h.call('POST', 'accounts', { name: 'all columns' });
    const id = idOf(r.headers.get('odata-entityid'));
    const got = await h.call('GET', `accounts(${id})`);
    assert.equal(got.json.name, 'all columns');
    assert.equal(got.json.description, null);
    assert.equal(got.json._parentaccountid_value, null);
    assert.equal(got.json.statecode, 0);
    assert.match(String(got.json.versionnumber), /^\d+$/);
    assert.equal(got.json.accountid, id);
    const bad = await h.call('GET', `accounts(${id})?$select=nosuch`);
    assert.equal(bad.status, 400);
    assert.equal(
      bad.json.error.message,
      "Could not find a property named 'nosuch' on type 'Microsoft.Dynamics.CRM.account'.",
    );
    assert.equal((await h.call('GET', `accounts(${id})?$select=parentaccountid`)).status, 400);
    assert.equal((await h.call('GET', `accounts(${id})?$select=_parentaccountid_value`)).status, 200);
  });

  it('DELETE by id removes the row and journals a delete; a second DELETE → 404', async () => {
    const created = await h.call('POST', 'accounts', { name: 'to delete' });
    const id = idOf(created.headers.get('odata-entityid'));
    const seq = h.emulator.store.journal().at(-1)!.seq;
    const del = await h.call('DELETE', `accounts(${id})`);
    assert.equal(del.status, 204);
    assert.equal(h.emulator.store.get('account', id), undefined);
    const entries = h.emulator.store.journal(seq);
    assert.deepEqual(
      entries.map((e) => [e.op, e.table, e.id, e.record]),
      [['delete', 'account', id, null]],
    );
    assert.equal((await h.call('DELETE', `accounts(${id})`)).status, 404);
  });

  it('WhoAmI answers with x-ms-dop-hint and ids; EntityDefinitions by $filter and with $expand', async () => {
    assert.equal((await h.call('GET', 'WhoAmI()')).status, 200);
    const who = await h.call('GET', 'WhoAmI');
    assert.equal(who.status, 200);
    assert.equal(who.headers.get('x-ms-dop-hint'), '4');
    assert.match(who.json.UserId, /^[0-9a-f-]{36}$/);
    const list = await h.call(
      'GET',
      `EntityDefinitions?$filter=LogicalName eq 'account'&$select=LogicalName,EntitySetName`,
    );
    assert.equal(list.status, 200);
    assert.equal(list.json.value.length, 1);
    assert.equal(list.json.value[0].EntitySetName, 'accounts');
    const one = await h.call(
      'GET',
      `EntityDefinitions(LogicalName='contact')?$select=EntitySetName,PrimaryIdAttribute&$expand=Keys($select=LogicalName,KeyAttributes),Attributes($select=LogicalName,AttributeType),ManyToOneRelationships`,
    );
    assert.equal(one.status, 200);
    assert.ok(one.json['@odata.context'].endsWith('/$entity'));
    assert.equal(one.json.PrimaryIdAttribute, 'contactid');
    assert.equal(one.json.LogicalName, undefined, '$select limits the top-level properties');
    assert.deepEqual(
      one.json.Keys.map((k: { KeyAttributes: string[] }) => k.KeyAttributes),
      [['ferry_legacysource', 'ferry_legacyid'], ['emailaddress1']],
    );
    const msp = one.json.Attributes.find((a: { LogicalName: string }) => a.LogicalName === 'sample_outdooractivities');
    assert.equal(msp['@odata.type'], '#Microsoft.Dynamics.CRM.MultiSelectPicklistAttributeMetadata');
    assert.equal(msp.AttributeType, 'Virtual');
    assert.deepEqual(
      one.json.ManyToOneRelationships.map(
        (r: { ReferencingEntityNavigationPropertyName: string }) => r.ReferencingEntityNavigationPropertyName,
      ),
      ['parentcustomerid_account', 'parentcustomerid_contact', 'ownerid'],
    );
    const missing = await h.call('GET', `EntityDefinitions(LogicalName='nosuch')`);
    assert.equal(missing.status, 404);
  });
});

describe('emulator write rules', () => {
  let h: Harness;
  before(async () => {
    h = await startHarness();
  });
  after(() => h.close());

  const expectError = async (body: Record<string, unknown>, status: number, code: string, message: RegExp | string) => {
    const r = await h.call('POST', 'accounts', body);
    assert.equal(r.status, status, r.text);
    assert.equal(r.json.error.code, code);
    if (typeof message === 'string') assert.equal(r.json.error.message, message);
    else assert.match(r.json.error.message, message);
  };

  it('string and memo longer than MaxLength → 0x80044331 with the exact message', async () => {
    await expectError(
      { name: 'n'.repeat(161) },
      400,
      '0x80044331',
      "A validation error occurred.  The length of the 'name' attribute of the 'account' entity exceeded the maximum allowed length of '160'.",
    );
    await expectError(
      { name: 'ok', description: 'd'.repeat(2001) },
      400,
      '0x80044331',
      "A validation error occurred.  The length of the 'description' attribute of the 'account' entity exceeded the maximum allowed length of '2000'.",
    );
    assert.equal((await h.call('POST', 'accounts', { name: 'n'.repeat(160) })).status, 204);
  });

  it('integer, money, decimal, double out of range → 400; wrong JSON types → 0x80048d19', async () => {
    await expectError(
      { numberofemployees: 1000000001 },
      400,
      '0x80044331',
      /numberofemployees.*Accepted Values: 0 to 1000000000/,
    );
    await expectError({ numberofemployees: 1.5 }, 400, '0x80048d19', /Edm\.Int32/);
    await expectError({ revenue: -1 }, 400, '0x80044331', /'revenue'.*outside the valid range/);
    await expectError({ ferry_discount: 100.01 }, 400, '0x80044331', /'ferry_discount'/);
    await expectError({ address1_latitude: 90.5 }, 400, '0x80044331', /'address1_latitude'/);
    await expectError(
      { name: 5 },
      400,
      '0x80048d19',
      /Cannot convert the literal '5' to the expected type 'Edm\.String'/,
    );
    await expectError({ creditonhold: 'yes' }, 400, '0x80048d19', /Edm\.Boolean/);
    await expectError({ ferry_bignumber: 2 ** 60 }, 400, '0x80044331', /ferry_bignumber/);
    const big = await h.call('POST', 'accounts', { name: 'big', ferry_bignumber: '9007199254740991' });
    assert.equal(big.status, 204);
    assert.equal(
      h.emulator.store.get('account', idOf(big.headers.get('odata-entityid')))!.attributes.ferry_bignumber,
      9007199254740991,
    );
  });

  it('decimals beyond the column precision are rounded (as TV3 implies), not rejected', async () => {
    const r = await h.call('POST', 'accounts', { name: 'prec', address1_latitude: 47.639583, revenue: 10.005 });
    assert.equal(r.status, 204);
    const row = h.emulator.store.get('account', idOf(r.headers.get('odata-entityid')))!;
    assert.equal(row.attributes.address1_latitude, 47.63958);
    assert.equal(row.attributes.revenue, 10.01);
  });

  it('choice value outside the option set → 0x80061005; multi-select values checked and normalised', async () => {
    await expectError({ accountcategorycode: 3 }, 400, '0x80061005', /accountcategorycode.*Accepted Values: 1,2/);
    await expectError({ ferry_activities: '1,5' }, 400, '0x80061005', /ferry_activities/);
    await expectError({ ferry_activities: 1 }, 400, '0x80048d19', /Edm\.String/);
    const ok = await h.call('POST', 'accounts', { name: 'msp', ferry_activities: '9, 1, 9' });
    assert.equal(ok.status, 204);
    assert.equal(
      h.emulator.store.get('account', idOf(ok.headers.get('odata-entityid')))!.attributes.ferry_activities,
      '9,1',
    );
  });

  it('dates: before 1753-01-01 rejected; UserLocal to UTC, DateOnly as date, TimeZoneIndependent kept', async () => {
    await expectError({ ferry_lastcontact: '1752-12-31T23:59:59Z' }, 400, '0x80044331', /before 1\/1\/1753/);
    await expectError({ ferry_founded: '1700-01-01' }, 400, '0x80044331', /ferry_founded/);
    await expectError({ ferry_founded: '2024-05-31T10:00:00Z' }, 400, '0x80048d19', /Edm\.Date'/);
    await expectError({ ferry_lastcontact: '31/05/2024' }, 400, '0x80048d19', /Edm\.DateTimeOffset/);
    const r = await h.call('POST', 'accounts', {
      name: 'dates',
      ferry_founded: '2024-05-31',
      ferry_lastcontact: '2021-04-04T12:00:00-08:00',
      ferry_opening: '2021-04-04T12:00:00-08:00',
    });
    assert.equal(r.status, 204);
    const row = h.emulator.store.get('account', idOf(r.headers.get('odata-entityid')))!;
    assert.deepEqual(
      [row.attributes.ferry_founded, row.attributes.ferry_lastcontact, row.attributes.ferry_opening],
      ['2024-05-31', '2021-04-04T20:00:00Z', '2021-04-04T12:00:00Z'],
    );
  });

  it('unknown property → 400 "Invalid property"; read-only columns silently ignored per operation', async () => {
    await expectError(
      { Name: 'x' },
      400,
      '0x0',
      "Invalid property 'Name' was found in entity 'Microsoft.Dynamics.CRM.account'.",
    );
    const r = await h.call('POST', 'accounts', {
      name: 'flags',
      lastusedincampaign: '2024-01-01T00:00:00Z', // IsValidForCreate=false
      createdon: '2000-01-01T00:00:00Z', // neither
      statecode: 1, // IsValidForCreate=false on account
    });
    assert.equal(r.status, 204);
    const id = idOf(r.headers.get('odata-entityid'));
    let row = h.emulator.store.get('account', id)!;
    assert.equal(row.attributes.lastusedincampaign, undefined);
    assert.equal(row.attributes.createdon, undefined);
    assert.equal(row.attributes.statecode, 0, 'default state on create');
    assert.equal(row.attributes.statuscode, 1, 'default status of the default state');
    const upd = await h.call('PATCH', `accounts(${id})`, {
      lastusedincampaign: '2024-01-01T00:00:00Z',
      accountid: '00000000-0000-0000-0000-000000000bad',
    });
    assert.equal(upd.status, 204);
    row = h.emulator.store.get('account', id)!;
    assert.equal(row.attributes.lastusedincampaign, '2024-01-01T00:00:00Z');
    assert.equal(row.id, id);
  });

  it('statuscode must belong to statecode; setting statecode alone takes its default status', async () => {
    const r = await h.call('POST', 'accounts', { name: 'states' });
    const id = idOf(r.headers.get('odata-entityid'));
    const bad = await h.call('PATCH', `accounts(${id})`, { statecode: 1, statuscode: 1 });
    assert.equal(bad.status, 400);
    assert.match(bad.json.error.message, /1 is not a valid status code for state code accountState\.1/);
    const badCreate = await h.call('POST', 'accounts', { name: 'states 2', statuscode: 3 });
    assert.equal(badCreate.status, 400);
    assert.equal((await h.call('PATCH', `accounts(${id})`, { statecode: 1, statuscode: 3 })).status, 204);
    assert.deepEqual(
      [
        h.emulator.store.get('account', id)!.attributes.statecode,
        h.emulator.store.get('account', id)!.attributes.statuscode,
      ],
      [1, 3],
    );
    assert.equal((await h.call('PATCH', `accounts(${id})`, { statecode: 0 })).status, 204);
    assert.equal(h.emulator.store.get('account', id)!.attributes.statuscode, 1);
    const nullState = await h.call('PATCH', `accounts(${id})`, { statecode: null });
    assert.equal(nullState.status, 400, 'statecode is SystemRequired');
    assert.match(nullState.json.error.message, /'statecode' of entity 'account' is system required/);
  });

  it('alternate-key uniqueness → 412 0x80060892; keys compare case-insensitively', async () => {
    assert.equal((await h.call('POST', 'accounts', { name: 'k1', accountnumber: 'UNIQ-1' })).status, 204);
    await expectError(
      { name: 'k2', accountnumber: 'uniq-1' },
      412,
      '0x80060892',
      /^Entity Key ferry_AccountNumber_Key violated/,
    );
    const other = await h.call('POST', 'accounts', { name: 'k3', accountnumber: 'UNIQ-2' });
    const upd = await h.call('PATCH', `accounts(${idOf(other.headers.get('odata-entityid'))})`, {
      accountnumber: 'UNIQ-1',
    });
    assert.equal(upd.status, 412);
    assert.equal(upd.json.error.code, '0x80060892');
  });

  it('key columns: a create copies URL key values only when the body lacks them; an update drops them', async () => {
    const a = await h.call('PATCH', `accounts(accountnumber='URL-1')`, { name: 'from url' });
    assert.equal(a.status, 204);
    assert.ok(h.emulator.store.rows('account').some((r) => r.attributes.accountnumber === 'URL-1'));
    const b = await h.call('PATCH', `accounts(accountnumber='URL-2')`, { name: 'body wins', accountnumber: 'BODY-2' });
    assert.equal(b.status, 204);
    const rows = h.emulator.store.rows('account');
    assert.ok(rows.some((r) => r.attributes.accountnumber === 'BODY-2' && r.attributes.name === 'body wins'));
    assert.ok(!rows.some((r) => r.attributes.accountnumber === 'URL-2'));
    const c = await h.call('PATCH', `accounts(accountnumber='URL-1')`, { name: 'updated', accountnumber: 'CHANGED' });
    assert.equal(c.status, 204);
    const row = h.emulator.store.rows('account').find((r) => r.attributes.name === 'updated')!;
    assert.equal(row.attributes.accountnumber, 'URL-1');
  });

  it('binds: missing GUID target → 404 0x80040217; missing alternate-key target → its message; owners accept any GUID', async () => {
    const missing = '00000000-0000-0000-0000-00000000dead';
    const r1 = await h.call('POST', 'accounts', { name: 'b1', 'parentaccountid@odata.bind': `/accounts(${missing})` });
    assert.equal(r1.status, 404);
    assert.deepEqual(r1.json.error, { code: '0x80040217', message: `account With Id = ${missing} Does Not Exist` });
    const r2 = await h.call('POST', 'accounts', {
      name: 'b2',
      'parentaccountid@odata.bind': `accounts(accountnumber='NONE')`,
    });
    assert.equal(r2.status, 404);
    assert.equal(r2.json.error.message, 'A record with the specified key values does not exist in account entity');
    const owner = '00000000-0000-0000-0000-0000000000ee';
    const r3 = await h.call('POST', 'accounts', {
      name: 'b3',
      'ownerid@odata.bind': `/systemusers(${owner})`,
      'transactioncurrencyid@odata.bind': `/transactioncurrencies(${missing})`,
    });
    assert.equal(r3.status, 204, r3.text);
    const row = h.emulator.store.get('account', idOf(r3.headers.get('odata-entityid')))!;
    assert.deepEqual([row.attributes.ownerid, row.attributes['ownerid@target']], [owner, 'systemuser']);
    assert.equal(row.attributes['transactioncurrencyid@target'], 'transactioncurrency');
    const r4 = await h.call('POST', 'accounts', { name: 'b4', 'parentaccountid@odata.bind': `/contacts(${owner})` });
    assert.equal(r4.status, 400);
    const r5 = await h.call('POST', 'accounts', { name: 'b5', parentaccountid: owner });
    assert.equal(r5.status, 400);
    assert.equal(r5.json.error.code, '0x80048d19');
    const absolute = await h.call('POST', 'accounts', {
      name: 'b6',
      'parentaccountid@odata.bind': `${h.api}accounts(${idOf(r3.headers.get('odata-entityid'))})`,
    });
    assert.equal(absolute.status, 204);
  });

  it('If-Match with a stale ETag → 412 0x80060882; with the current ETag → 204', async () => {
    const r = await h.call('POST', 'accounts', { name: 'etag' }, { Prefer: 'return=representation' });
    assert.equal(r.status, 201);
    assert.equal(r.headers.get('odata-entityid'), null, 'POST with representation has no OData-EntityId');
    const id = r.json.accountid;
    const etag = r.headers.get('etag')!;
    assert.equal((await h.call('PATCH', `accounts(${id})`, { name: 'etag 2' }, { 'If-Match': etag })).status, 204);
    const stale = await h.call('PATCH', `accounts(${id})`, { name: 'etag 3' }, { 'If-Match': etag });
    assert.equal(stale.status, 412);
    assert.equal(stale.json.error.code, '0x80060882');
  });
});

describe('emulator bulk actions', () => {
  let h: Harness;
  before(async () => {
    h = await startHarness();
  });
  after(() => h.close());

  const target = (n: string, extra: Record<string, unknown> = {}) => ({
    '@odata.type': 'Microsoft.Dynamics.CRM.account',
    '@odata.id': `accounts(accountnumber='${n}')`,
    name: `acct ${n}`,
    ...extra,
  });

  it('UpsertMultiple is all-or-nothing: one bad target fails the request with its error, nothing stored', async () => {
    const before = h.emulator.store.count('account');
    const journal = h.emulator.store.journal().length;
    const r = await h.call('POST', 'accounts/Microsoft.Dynamics.CRM.UpsertMultiple', {
      Targets: [
        target('B-1'),
        target('B-2'),
        target('B-3', { name: 'x'.repeat(161) }),
        target('B-4', { accountcategorycode: 9 }),
      ],
    });
    assert.equal(r.status, 400);
    assert.equal(r.json.error.code, '0x80044331', 'the first failing target’s error');
    assert.equal(h.emulator.store.count('account'), before);
    assert.equal(h.emulator.store.journal().length, journal);
    const good = await h.call('POST', 'accounts/Microsoft.Dynamics.CRM.UpsertMultiple', {
      Targets: [target('B-1'), target('B-2')],
    });
    assert.equal(good.status, 204);
    assert.equal(h.emulator.store.count('account'), before + 2);
  });

  it('UpsertMultiple rolls back updates too, and rejects duplicate keys (case-insensitive) in one request', async () => {
    const dup = await h.call('POST', 'accounts/Microsoft.Dynamics.CRM.UpsertMultiple', {
      Targets: [target('B-1', { name: 'changed' }), target('D-1'), target('d-1')],
    });
    assert.equal(dup.status, 400);
    assert.match(dup.json.error.message, /more than once/);
    const b1 = h.emulator.store.rows('account').find((r) => r.attributes.accountnumber === 'B-1')!;
    assert.equal(b1.attributes.name, 'acct B-1', 'the update before the duplicate was rolled back');
    assert.ok(!h.emulator.store.rows('account').some((r) => r.attributes.accountnumber === 'D-1'));
  });

  it('UpsertMultiple: missing @odata.type fails; targets may use the primary id instead of @odata.id', async () => {
    const noType = await h.call('POST', 'accounts/Microsoft.Dynamics.CRM.UpsertMultiple', {
      Targets: [{ name: 'x', '@odata.id': "accounts(accountnumber='T')" }],
    });
    assert.equal(noType.status, 400);
    const id = '00000000-0000-0000-0000-00000000b0b0';
    const r = await h.call('POST', 'accounts/Microsoft.Dynamics.CRM.UpsertMultiple', {
      Targets: [{ '@odata.type': 'Microsoft.Dynamics.CRM.account', accountid: id, name: 'by id' }],
    });
    assert.equal(r.status, 204);
    assert.equal(h.emulator.store.get('account', id)?.attributes.name, 'by id');
  });

  it('UpdateMultiple ignores later duplicates and fails whole on a missing row', async () => {
    const ids = h.emulator.store
      .rows('account')
      .slice(0, 2)
      .map((r) => r.id);
    const r = await h.call('POST', 'accounts/Microsoft.Dynamics.CRM.UpdateMultiple', {
      Targets: [
        { '@odata.type': 'Microsoft.Dynamics.CRM.account', accountid: ids[0], name: 'first wins' },
        { '@odata.type': 'Microsoft.Dynamics.CRM.account', accountid: ids[0], name: 'ignored' },
        { '@odata.type': 'Microsoft.Dynamics.CRM.account', accountid: ids[1], description: 'two' },
      ],
    });
    assert.equal(r.status, 204);
    assert.equal(h.emulator.store.get('account', ids[0])!.attributes.name, 'first wins');
    const missing = '00000000-0000-0000-0000-00000000f00d';
    const r2 = await h.call('POST', 'accounts/Microsoft.Dynamics.CRM.UpdateMultiple', {
      Targets: [
        { '@odata.type': 'Microsoft.Dynamics.CRM.account', accountid: ids[1], description: 'changed' },
        { '@odata.type': 'Microsoft.Dynamics.CRM.account', accountid: missing, name: 'x' },
      ],
    });
    assert.equal(r2.status, 404);
    assert.equal(r2.json.error.message, `account With Ids = ${missing} Do Not Exist`);
    assert.equal(h.emulator.store.get('account', ids[1])!.attributes.description, 'two');
  });

  it('CreateMultiple is all-or-nothing across alternate-key collisions', async () => {
    const before = h.emulator.store.count('account');
    const r = await h.call('POST', 'accounts/Microsoft.Dynamics.CRM.CreateMultiple', {
      Targets: [
        { '@odata.type': 'Microsoft.Dynamics.CRM.account', name: 'c1', accountnumber: 'C-1' },
        { '@odata.type': 'Microsoft.Dynamics.CRM.account', name: 'c2', accountnumber: 'C-1' },
      ],
    });
    assert.equal(r.status, 412);
    assert.equal(r.json.error.code, '0x80060892');
    assert.equal(h.emulator.store.count('account'), before);
  });

  it('a table with SupportsBulk: false refuses the *Multiple actions but takes single writes', async () => {
    const r = await h.call('POST', 'ferry_legacynotes/Microsoft.Dynamics.CRM.UpsertMultiple', {
      Targets: [
        {
          '@odata.type': 'Microsoft.Dynamics.CRM.ferry_legacynote',
          '@odata.id': "ferry_legacynotes(ferry_code='A')",
          ferry_name: 'a',
        },
      ],
    });
    assert.equal(r.status, 400);
    assert.match(r.json.error.message, /not supported for the 'ferry_legacynote' entity/);
    assert.equal(h.emulator.store.count('ferry_legacynote'), 0);
    assert.equal((await h.call('PATCH', "ferry_legacynotes(ferry_code='A')", { ferry_name: 'a' })).status, 204);
  });

  it('versionNumber grows across tables on every write and the journal records each upsert', async () => {
    const start = h.emulator.store.lastVersion;
    const seq = h.emulator.store.journal().at(-1)?.seq ?? 0;
    await h.call('POST', 'contacts', { firstname: 'v1' });
    await h.call('POST', 'accounts', { name: 'v2' });
    const entries = h.emulator.store.journal(seq);
    assert.deepEqual(
      entries.map((e) => [e.table, e.op]),
      [
        ['contact', 'upsert'],
        ['account', 'upsert'],
      ],
    );
    assert.ok(entries[0].versionNumber > start && entries[1].versionNumber > entries[0].versionNumber);
    assert.equal(entries[1].record?.name, 'v2');
  });
});
