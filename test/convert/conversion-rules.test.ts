import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import type { ColumnMapping, DataverseMapping } from '../../src/core/mapping.js';
import type { DuckDbStaging } from '../../src/dialects/duckdb/driver.js';
import { type ColumnTypes, convertRows, openStaging, type RowOutcome } from './convert-helpers.js';

let s: DuckDbStaging;
before(async () => {
  s = await openStaging();
});
after(async () => {
  await s.close();
});

/** Converts values of one account column; each row gets its own key `K<n>`. */
async function account(
  column: string,
  spec: ColumnMapping,
  type: string,
  values: readonly unknown[],
  extra: { columns?: Record<string, ColumnMapping>; types?: ColumnTypes; rows?: Record<string, unknown>[] } = {},
): Promise<RowOutcome[]> {
  const mapping: DataverseMapping = {
    table: 'account',
    key: ['accountnumber'],
    changeTimestamp: 'ts',
    columns: { accountnumber: 'no', [column]: spec, ...extra.columns },
  };
  const rows = values.map((v, i) => ({ no: `K${i + 1}`, ts: '2024-01-01T00:00:00Z', v, ...extra.rows?.[i] }));
  return convertRows(s, mapping, { no: 'VARCHAR', ts: 'VARCHAR', v: type, ...extra.types }, rows);
}

const payloads = (out: RowOutcome[]) => out.map((o) => ('payload' in o ? o.payload : o.reason));

test('String/Memo: MaxLength in UTF-16 units, JSON-escaped, null clears', async () => {
  const out = await account('address1_postalcode', 'v', 'VARCHAR', [
    '12345678901234567890',
    '123456789012345678901',
    'a"b\\c\nd',
    '😀😀😀😀😀😀😀😀😀😀', // 10 characters, 20 UTF-16 units: fits MaxLength 20
    '😀😀😀😀😀😀😀😀😀😀x',
    null,
    '',
  ]);
  assert.deepEqual(payloads(out), [
    '{"address1_postalcode":"12345678901234567890"}',
    'string.too_long',
    '{"address1_postalcode":"a\\"b\\\\c\\nd"}',
    '{"address1_postalcode":"😀😀😀😀😀😀😀😀😀😀"}',
    'string.too_long',
    '{"address1_postalcode":null}',
    '{"address1_postalcode":""}',
  ]);
  assert.deepEqual(out[1], { reason: 'string.too_long', column: 1 });
});

test('Integer and BigInt: ranges, precision, unparsable, typed sources', async () => {
  const out = await account('numberofemployees', 'v', 'VARCHAR', [
    '12',
    ' +007 ',
    '-1',
    '1000000000',
    '1000000001',
    '3.0',
    '3.5',
    'x1',
    '1e3',
    '',
  ]);
  assert.deepEqual(payloads(out), [
    '{"numberofemployees":12}',
    '{"numberofemployees":7}',
    'number.out_of_range',
    '{"numberofemployees":1000000000}',
    'number.out_of_range',
    '{"numberofemployees":3}',
    'number.precision',
    'number.unparsable',
    'number.unparsable',
    '{"numberofemployees":null}',
  ]);
  const big = await account('ferry_legacyrowversion', 'v', 'HUGEINT', [
    9223372036854775807n,
    -9223372036854775808n,
    9223372036854775808n,
    null,
  ]);
  assert.deepEqual(payloads(big), [
    '{"ferry_legacyrowversion":9223372036854775807}',
    '{"ferry_legacyrowversion":-9223372036854775808}',
    'number.out_of_range',
    '{"ferry_legacyrowversion":null}',
  ]);
});

test('Decimal and Money: exact digits as JSON numbers, precision and range, DECIMAL(38,10) via HUGEINT', async () => {
  const out = await account('revenue', 'v', 'VARCHAR', [
    '123.4500',
    '-0.50',
    '0',
    '100000000000000',
    '100000000000000.01',
    '1.005',
    '-1',
    'abc',
    '.5',
  ]);
  assert.deepEqual(payloads(out), [
    '{"revenue":123.45}',
    'number.out_of_range', // revenue MinValue is 0
    '{"revenue":0}',
    '{"revenue":100000000000000}',
    'number.out_of_range',
    'number.precision',
    'number.out_of_range',
    'number.unparsable',
    '{"revenue":0.5}',
  ]);
  const typed = await account('ferry_riskscore', 'v', 'DECIMAL(38,10)', [
    '12.3456000000',
    '99.9999',
    '100.0001000000',
    '0.0000100000',
  ]);
  assert.deepEqual(payloads(typed), [
    '{"ferry_riskscore":12.3456}',
    '{"ferry_riskscore":99.9999}',
    'number.out_of_range',
    'number.precision',
  ]);
});

test('Double: range, exponent text, typed DOUBLE', async () => {
  const out = await account('address1_latitude', 'v', 'VARCHAR', ['45.5', '-90', '90.0001', '1e1', 'north']);
  assert.deepEqual(
    payloads(out).map((p) => p.replace('10.0', '10')),
    [
      '{"address1_latitude":45.5}',
      '{"address1_latitude":-90.0}',
      'number.out_of_range',
      '{"address1_latitude":10}',
      'number.unparsable',
    ],
  );
});

test('Boolean from true/false/1/0/yes/no', async () => {
  const out = await account('creditonhold', 'v', 'VARCHAR', ['true', ' YES ', '0', 'No', 'maybe', null]);
  assert.deepEqual(payloads(out), [
    '{"creditonhold":true}',
    '{"creditonhold":true}',
    '{"creditonhold":false}',
    '{"creditonhold":false}',
    'boolean.invalid',
    '{"creditonhold":null}',
  ]);
  const ints = await account('creditonhold', 'v', 'INTEGER', [1, 0, 2]);
  assert.deepEqual(payloads(ints), ['{"creditonhold":true}', '{"creditonhold":false}', 'boolean.invalid']);
});

test('DateTime: DateOnly as YYYY-MM-DD, UserLocal as UTC, TimeZoneIndependent as written, minimum date', async () => {
  const dateOnly = await account('ferry_lastauditdate', 'v', 'VARCHAR', [
    '2024-05-31',
    '2024-05-31T23:30:00-05:00',
    '1752-12-31',
    '2024-02-30',
    'yesterday',
  ]);
  assert.deepEqual(payloads(dateOnly), [
    '{"ferry_lastauditdate":"2024-05-31"}',
    '{"ferry_lastauditdate":"2024-05-31"}',
    'date.before_min',
    'date.unparsable',
    'date.unparsable',
  ]);
  // ferry_onboardedon is TimeZoneIndependent: the service keeps the wall clock as sent, so the offset is dropped,
  // not applied (this test used to expect the UTC shift, e.g. 10:00+02:00 sent as 08:00Z).
  const independent = await account('ferry_onboardedon', 'v', 'VARCHAR', [
    '2024-05-31T10:00:00+02:00',
    '2024-05-31 10:00',
    '2024-05-31T10:00:00.999Z',
    '2024-05-31T22:30:00-0230',
    '1753-01-01T00:30:00+01:00',
    '1752-12-31T23:30:00-01:00',
    '2024-05-31T24:00:00Z',
  ]);
  assert.deepEqual(payloads(independent), [
    '{"ferry_onboardedon":"2024-05-31T10:00:00Z"}',
    '{"ferry_onboardedon":"2024-05-31T10:00:00Z"}',
    '{"ferry_onboardedon":"2024-05-31T10:00:00Z"}',
    '{"ferry_onboardedon":"2024-05-31T22:30:00Z"}',
    '{"ferry_onboardedon":"1753-01-01T00:30:00Z"}',
    'date.before_min',
    'date.unparsable',
  ]);
  // ferry_lastcontactedon is UserLocal: converted to UTC.
  const utc = await account('ferry_lastcontactedon', 'v', 'VARCHAR', [
    '2024-05-31T10:00:00+02:00',
    '2024-05-31 10:00',
    '2024-05-31T22:30:00-0230',
    '1753-01-01T00:30:00+01:00',
  ]);
  assert.deepEqual(payloads(utc), [
    '{"ferry_lastcontactedon":"2024-05-31T08:00:00Z"}',
    '{"ferry_lastcontactedon":"2024-05-31T10:00:00Z"}',
    '{"ferry_lastcontactedon":"2024-06-01T01:00:00Z"}',
    'date.before_min',
  ]);
  const typed = await account(
    'ferry_lastcontactedon',
    'v',
    'TIMESTAMP',
    ['2024-05-31 10:00:00', '1700-01-01 00:00:00'],
    {
      rows: [{}, {}],
    },
  );
  assert.deepEqual(payloads(typed), ['{"ferry_lastcontactedon":"2024-05-31T10:00:00Z"}', 'date.before_min']);
});

test('GUID columns and GUID lookups', async () => {
  const out = await account('ownerid', { from: 'v', lookup: { table: 'systemuser' } }, 'VARCHAR', [
    '0A0B0C0D-0000-0000-0000-00000000000F',
    'not-a-guid',
    null,
  ]);
  assert.deepEqual(payloads(out), [
    '{"ownerid@odata.bind":"/systemusers(0a0b0c0d-0000-0000-0000-00000000000f)"}',
    'guid.invalid',
    '{}',
  ]);
  const team = await account('ownerid', { from: 'v', lookup: { table: 'team' }, nullMeans: 'clear' }, 'VARCHAR', [
    '0a0b0c0d-0000-0000-0000-00000000000f',
    null,
  ]);
  assert.deepEqual(payloads(team), [
    '{"ownerid@odata.bind":"/teams(0a0b0c0d-0000-0000-0000-00000000000f)"}',
    '{"ownerid@odata.bind":null}',
  ]);
});

test('Choices by label (case-insensitive, trimmed), by value, auto', async () => {
  const label = await account('industrycode', { from: 'v', choice: 'label' }, 'VARCHAR', [
    ' accounting ',
    'CONSULTING',
    'Space',
    '7',
  ]);
  assert.deepEqual(payloads(label), [
    '{"industrycode":1}',
    '{"industrycode":7}',
    'choice.unknown_label',
    'choice.unknown_label',
  ]);
  const value = await account('industrycode', { from: 'v', choice: 'value' }, 'VARCHAR', ['7', '99', 'Consulting']);
  assert.deepEqual(payloads(value), ['{"industrycode":7}', 'choice.unknown_value', 'choice.unknown_value']);
  const auto = await account('industrycode', 'v', 'VARCHAR', ['7', 'Brokers', '99', 'Nope']);
  assert.deepEqual(payloads(auto), [
    '{"industrycode":7}',
    '{"industrycode":4}',
    'choice.unknown_value',
    'choice.unknown_label',
  ]);
  const typed = await account('industrycode', 'v', 'INTEGER', [33, 34]);
  assert.deepEqual(payloads(typed), ['{"industrycode":33}', 'choice.unknown_value']);
});

test('statuscode must belong to statecode when both are mapped', async () => {
  const out = await account('statecode', 'v', 'VARCHAR', ['Active', 'Inactive', 'Inactive', 'Active'], {
    columns: { statuscode: 'st' },
    types: { st: 'VARCHAR' },
    rows: [{ st: '1' }, { st: '2' }, { st: 'Active' }, { st: null }],
  });
  assert.deepEqual(payloads(out), [
    '{"statecode":0,"statuscode":1}',
    '{"statecode":1,"statuscode":2}',
    'status.invalid_for_state',
    '{"statecode":0,"statuscode":null}',
  ]);
});

test('MultiSelect: "1,9" output in source order, deduplicated, invalid member rejected', async () => {
  const out = await account('ferry_interests', { from: 'v', multiSelect: { separator: ';' } }, 'VARCHAR', [
    'Cloud; Software ;cloud',
    '100000001',
    'Cloud;;',
    'Cloud;Gardening',
    ' ; ',
  ]);
  assert.deepEqual(payloads(out), [
    '{"ferry_interests":"100000003,100000000"}',
    '{"ferry_interests":"100000001"}',
    '{"ferry_interests":"100000003"}',
    'multiselect.invalid_member',
    '{"ferry_interests":null}',
  ]);
});

test('own key: not in the payload, quotes doubled in the predicate, unsafe characters flagged, missing rejected', async () => {
  const out = await convertRows(
    s,
    { table: 'account', key: ['accountnumber'], changeTimestamp: 'ts', columns: { accountnumber: 'no', name: 'n' } },
    { no: 'VARCHAR', ts: 'VARCHAR', n: 'VARCHAR' },
    [
      { no: "A'1", ts: '2024-01-01', n: 'x' },
      { no: 'A/2', ts: '2024-01-01', n: 'y' },
      { no: '  ', ts: '2024-01-01', n: 'z' },
      { no: 'K'.repeat(21), ts: '2024-01-01', n: 'w' },
    ],
  );
  assert.deepEqual(out, [
    { payload: '{"name":"x"}', key: "accountnumber=A'1", predicate: "accountnumber='A''1'", safe: true },
    { payload: '{"name":"y"}', key: 'accountnumber=A/2', predicate: "accountnumber='A/2'", safe: false },
    { reason: 'key.missing', column: 0 },
    { reason: 'string.too_long', column: 0 },
  ]);
});

test('composite own key (contact) and an integer key (opportunity) unquoted', async () => {
  const contacts = await convertRows(
    s,
    {
      table: 'contact',
      key: ['ferry_legacyid', 'ferry_legacysource'],
      changeTimestamp: 'ts',
      columns: { ferry_legacysource: 'src', ferry_legacyid: 'id', lastname: 'ln' },
    },
    { src: 'VARCHAR', id: 'VARCHAR', ts: 'VARCHAR', ln: 'VARCHAR' },
    [
      { src: 'CRM-A', id: "O'1", ts: '2024-01-01', ln: 'Doe' },
      { src: 'CRM-A', id: null, ts: '2024-01-01', ln: 'Roe' },
    ],
  );
  assert.deepEqual(contacts, [
    {
      payload: '{"lastname":"Doe"}',
      key: "ferry_legacysource=CRM-A,ferry_legacyid=O'1",
      predicate: "ferry_legacysource='CRM-A',ferry_legacyid='O''1'",
      safe: true,
    },
    { reason: 'key.missing', column: 1 },
  ]);
  const opps = await convertRows(
    s,
    {
      table: 'opportunity',
      key: ['ferry_legacynumber'],
      changeTimestamp: 'ts',
      columns: { ferry_legacynumber: 'n', name: 'name' },
    },
    { n: 'VARCHAR', ts: 'VARCHAR', name: 'VARCHAR' },
    [
      { n: '0042', ts: '2024-01-01', name: 'Deal' },
      { n: '4.2', ts: '2024-01-01', name: 'Bad' },
    ],
  );
  assert.deepEqual(opps, [
    { payload: '{"name":"Deal"}', key: 'ferry_legacynumber=42', predicate: 'ferry_legacynumber=42', safe: true },
    { reason: 'number.precision', column: 0 },
  ]);
});

test('lookups by alternate key: quotes doubled, unsafe keys rejected, SchemaName-cased navigation, null omitted', async () => {
  const out = await account(
    'parentaccountid',
    { from: 'v', lookup: { table: 'account', key: 'accountnumber' } },
    'VARCHAR',
    ["A'1", 'A/1', 'x?y', null, ''],
    {
      columns: {
        ferry_regionid: { from: 'r', lookup: { table: 'ferry_region', key: 'ferry_code' }, nullMeans: 'clear' },
      },
      types: { r: 'VARCHAR' },
      rows: [{ r: 'NW' }, { r: 'NW' }, { r: 'NW' }, { r: null }, { r: 'S"1' }],
    },
  );
  assert.deepEqual(payloads(out), [
    `{"parentaccountid@odata.bind":"/accounts(accountnumber='A''1')","ferry_RegionId@odata.bind":"/ferry_regions(ferry_code='NW')"}`,
    'lookup.key_unsafe',
    'lookup.key_unsafe',
    '{"ferry_RegionId@odata.bind":null}',
    `{"ferry_RegionId@odata.bind":"/ferry_regions(ferry_code='S\\"1')"}`,
  ]);
});

test('polymorphic lookups: navigation per target from metadata, target chosen per row, composite target key', async () => {
  const mapping: DataverseMapping = {
    table: 'opportunity',
    key: ['ferry_legacyid'],
    changeTimestamp: 'ts',
    columns: {
      ferry_legacyid: 'id',
      customerid: {
        from: 'cust',
        lookup: {
          tableFrom: 'cust_type',
          keys: {
            account: 'accountnumber',
            contact: { key: ['ferry_legacysource', 'ferry_legacyid'], from: ['cust_src', 'cust'] },
          },
        },
      },
      parentaccountid: { from: 'acct', lookup: { table: 'account', key: 'accountnumber' } },
    },
  };
  const rows = [
    { id: 'O1', cust_type: 'account', cust: 'A1', cust_src: null, acct: 'A1' },
    { id: 'O2', cust_type: ' Contact ', cust: "C'1", cust_src: 'CRM-B', acct: null },
    { id: 'O3', cust_type: 'lead', cust: 'L1', cust_src: null, acct: null },
    { id: 'O4', cust_type: null, cust: null, cust_src: null, acct: null },
    { id: 'O5', cust_type: 'contact', cust: 'C2', cust_src: null, acct: null },
    { id: 'O6', cust_type: null, cust: 'A9', cust_src: null, acct: null },
  ].map((r) => ({ ...r, ts: '2024-01-01' }));
  const out = await convertRows(
    s,
    mapping,
    { id: 'VARCHAR', cust_type: 'VARCHAR', cust: 'VARCHAR', cust_src: 'VARCHAR', acct: 'VARCHAR', ts: 'VARCHAR' },
    rows,
  );
  assert.deepEqual(payloads(out), [
    `{"customerid_account@odata.bind":"/accounts(accountnumber='A1')","parentaccountid@odata.bind":"/accounts(accountnumber='A1')"}`,
    `{"customerid_contact@odata.bind":"/contacts(ferry_legacysource='CRM-B',ferry_legacyid='C''1')"}`,
    'lookup.target_unknown',
    '{}',
    'key.missing',
    'lookup.target_unknown',
  ]);
  // contact.parentcustomerid: one target, polymorphic column → parentcustomerid_account.
  const contact = await convertRows(
    s,
    {
      table: 'contact',
      key: ['ferry_legacysource', 'ferry_legacyid'],
      changeTimestamp: 'ts',
      columns: {
        ferry_legacysource: 'src',
        ferry_legacyid: 'id',
        parentcustomerid: { from: 'company_no', lookup: { table: 'account', key: 'accountnumber' } },
      },
    },
    { src: 'VARCHAR', id: 'VARCHAR', company_no: 'VARCHAR', ts: 'VARCHAR' },
    [{ src: 'S', id: '1', company_no: 'A1', ts: '2024-01-01' }],
  );
  assert.deepEqual(payloads(contact), [`{"parentcustomerid_account@odata.bind":"/accounts(accountnumber='A1')"}`]);
});

test('first failing column wins, in mapping order', async () => {
  const out = await account('name', 'v', 'VARCHAR', ['x'.repeat(161), 'ok'], {
    columns: { numberofemployees: 'e', creditonhold: 'b' },
    types: { e: 'VARCHAR', b: 'VARCHAR' },
    rows: [
      { e: 'x', b: 'maybe' },
      { e: 'x', b: 'maybe' },
    ],
  });
  assert.deepEqual(out, [
    { reason: 'string.too_long', column: 1 },
    { reason: 'number.unparsable', column: 2 },
  ]);
});

test('typed numeric sources: DOUBLE into Decimal/Integer, wide DECIMAL beyond 18 digits takes the exact route', async () => {
  const fromDouble = await account('ferry_riskscore', 'v', 'DOUBLE', [12.5, 0.1, 100.5, 1.23456, Number.NaN, null]);
  assert.deepEqual(payloads(fromDouble), [
    '{"ferry_riskscore":12.5}',
    '{"ferry_riskscore":0.1}',
    'number.out_of_range',
    'number.precision',
    'number.unparsable',
    '{"ferry_riskscore":null}',
  ]);
  const intFromDouble = await account('numberofemployees', 'v', 'DOUBLE', [12, 12.5, -3]);
  assert.deepEqual(payloads(intFromDouble), ['{"numberofemployees":12}', 'number.precision', 'number.out_of_range']);
  // opportunity.ferry_weightedamount: Money, ±922337203685477, precision 4; DECIMAL(38,6) values past 18 digits.
  const out = await convertRows(
    s,
    {
      table: 'opportunity',
      key: ['ferry_legacyid'],
      changeTimestamp: 'ts',
      columns: { ferry_legacyid: 'id', ferry_weightedamount: 'amount' },
    },
    { id: 'VARCHAR', ts: 'VARCHAR', amount: 'DECIMAL(38,6)' },
    [
      { id: 'O1', ts: '2024-01-01', amount: '922337203685477.000000' },
      { id: 'O2', ts: '2024-01-01', amount: '922337203685477.000100' },
      { id: 'O3', ts: '2024-01-01', amount: '-922337203685477.123400' },
      { id: 'O4', ts: '2024-01-01', amount: '12.345670' },
      { id: 'O5', ts: '2024-01-01', amount: '-0.500000' },
    ],
  );
  assert.deepEqual(payloads(out), [
    '{"ferry_weightedamount":922337203685477}',
    'number.out_of_range',
    'number.out_of_range',
    'number.precision',
    '{"ferry_weightedamount":-0.5}',
  ]);
  // Same scale as the column and limits beyond DECIMAL(18,4): no check is needed on the fast route.
  const same = await convertRows(
    s,
    {
      table: 'opportunity',
      key: ['ferry_legacyid'],
      changeTimestamp: 'ts',
      columns: { ferry_legacyid: 'id', ferry_weightedamount: 'amount' },
    },
    { id: 'VARCHAR', ts: 'VARCHAR', amount: 'DECIMAL(18,4)' },
    [
      { id: 'O1', ts: '2024-01-01', amount: '12.3400' },
      { id: 'O2', ts: '2024-01-01', amount: '-99999999999999.9999' },
    ],
  );
  assert.deepEqual(payloads(same), ['{"ferry_weightedamount":12.34}', '{"ferry_weightedamount":-99999999999999.9999}']);
});

test('versions: text timestamps with offsets and fractions, and integer versions, order the same key', async () => {
  const { plan: planOf, runConversion, stage } = await import('./convert-helpers.js');
  const p = await planOf({
    table: 'account',
    key: ['accountnumber'],
    changeTimestamp: 'ts',
    columns: { accountnumber: 'no', name: 'n' },
  });
  await stage(s, { no: 'VARCHAR', ts: 'VARCHAR', n: 'VARCHAR' }, [
    { no: 'A', ts: '2024-05-31T10:00:00.5+02:00', n: 'later (08:00:00.5Z)' },
    { no: 'A', ts: '2024-05-31T08:00:00Z', n: 'earlier' },
    { no: 'B', ts: 'garbage', n: 'unparsable version' },
    { no: 'B', ts: '2024-01-01', n: 'dated' },
  ]);
  const r = await runConversion(s, p);
  assert.deepEqual(
    r.converted.map((c) => [c.key, c.version, c.payload]),
    [
      ['accountnumber=A', '2024-05-31T08:00:00.500000Z', '{"name":"later (08:00:00.5Z)"}'],
      ['accountnumber=B', '2024-01-01T00:00:00.000000Z', '{"name":"dated"}'],
    ],
  );
  assert.equal(r.counts.superseded, 2);
  const q = await planOf({
    table: 'account',
    key: ['accountnumber'],
    changeTimestamp: 'rv',
    columns: { accountnumber: 'no', name: 'n' },
  });
  await stage(s, { no: 'VARCHAR', rv: 'BIGINT', n: 'VARCHAR' }, [
    { no: 'A', rv: 9, n: 'nine' },
    { no: 'A', rv: 10, n: 'ten' },
  ]);
  const r2 = await runConversion(s, q);
  assert.deepEqual(
    r2.converted.map((c) => [c.version, c.payload]),
    [['00000000000000000010', '{"name":"ten"}']],
  );
});

test('a source type a rule cannot read is refused up front (mapping.source_type)', async () => {
  const { plan: planOf, stage } = await import('./convert-helpers.js');
  const { checkSourceTypes } = await import('../../src/dialects/sql-dialect.js');
  const { describeStaged } = await import('../../src/stages/convert-to-dataverse.js');
  const { duckdbDialect } = await import('../../src/dialects/duckdb/conversion.js');
  await stage(s, { no: 'VARCHAR', ts: 'TIMESTAMP', flag: 'BOOLEAN' }, []);
  const sources = await describeStaged(s, duckdbDialect);
  const ok = await planOf({
    table: 'account',
    key: ['accountnumber'],
    changeTimestamp: 'ts',
    columns: { accountnumber: 'no', creditonhold: 'flag' },
  });
  checkSourceTypes(ok, sources);
  const bad = await planOf({
    table: 'account',
    key: ['accountnumber'],
    changeTimestamp: 'ts',
    columns: { accountnumber: 'no', ferry_onboardedon: 'flag' },
  });
  assert.throws(() => checkSourceTypes(bad, sources), {
    code: 'mapping.source_type',
    message: /`flag` is boolean, which cannot become DateTimeType `account.ferry_onboardedon`/,
  });
});
