import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ODataSyntaxError, parseFilter, parseODataPath, parseQueryString } from '../../src/emulator/odata-path.js';

describe('emulator OData path reading', () => {
  it('reads GUID, alternate, composite and doubled-quote keys', () => {
    assert.deepEqual(parseODataPath('accounts(00000000-0000-0000-0000-00000000000A)')[0].key, {
      kind: 'id',
      id: '00000000-0000-0000-0000-00000000000a',
    });
    assert.deepEqual(parseODataPath("accounts(name='Men''s Shoes')")[0].key, {
      kind: 'key',
      pairs: [{ name: 'name', value: "Men's Shoes" }],
    });
    const composite = parseODataPath("contacts(firstname='Joe',ferry_legacyid=2)/Account_Tasks");
    assert.deepEqual(composite[0].key, {
      kind: 'key',
      pairs: [
        { name: 'firstname', value: 'Joe' },
        { name: 'ferry_legacyid', value: 2 },
      ],
    });
    assert.equal(composite[0].keyText, "firstname='Joe',ferry_legacyid=2");
    assert.equal(composite[1].name, 'Account_Tasks');
  });

  it('keeps `/`, `)` and `,` inside quoted literals', () => {
    const segments = parseODataPath("accounts(accountnumber='A/B),C')/x");
    assert.equal(segments.length, 2);
    assert.deepEqual(segments[0].key, { kind: 'key', pairs: [{ name: 'accountnumber', value: 'A/B),C' }] });
  });

  it('rejects unterminated strings and unbalanced parentheses', () => {
    assert.throws(() => parseODataPath("accounts(name='x)"), ODataSyntaxError);
    assert.throws(() => parseODataPath('accounts(name=)'), ODataSyntaxError);
  });

  it('query strings keep `+` and decode percent escapes; $filter reads eq/and with aliases', () => {
    const q = parseQueryString("$filter=name%20eq%20'a+b'&@p='x'");
    assert.equal(q.get('$filter'), "name eq 'a+b'");
    assert.deepEqual(parseFilter("name eq 'a and b' and n eq 5 and r eq @p", new Map([['@p', "'x'"]])), [
      { property: 'name', value: 'a and b' },
      { property: 'n', value: 5 },
      { property: 'r', value: 'x' },
    ]);
    assert.throws(() => parseFilter('n gt 5'), ODataSyntaxError);
  });

  it('record queries may also compare order: gt/ge/lt/le, a date/time literal unquoted', () => {
    assert.deepEqual(
      parseFilter('modifiedon ge 2026-01-01T00:00:00Z and n lt 5', new Map(), { orderComparisons: true }),
      [
        { property: 'modifiedon', value: '2026-01-01T00:00:00Z', operator: 'ge' },
        { property: 'n', value: 5, operator: 'lt' },
      ],
    );
    assert.throws(() => parseFilter('n ne 5', new Map(), { orderComparisons: true }), ODataSyntaxError);
  });

  it('record queries may use the In query function, inline or with aliases; other readers refuse it', () => {
    const g = '0f8fad5b-d9cb-469f-a165-70867728950e';
    assert.deepEqual(
      parseFilter(`Microsoft.Dynamics.CRM.In(PropertyName='accountid',PropertyValues=['${g}','b''c'])`, new Map(), {
        inFunction: true,
      }),
      [{ property: 'accountid', value: g, operator: 'in', values: [g, "b'c"] }],
    );
    const aliases = new Map([
      ['@p1', "'name'"],
      ['@p2', "['x', 'y']"],
    ]);
    assert.deepEqual(
      parseFilter('Microsoft.Dynamics.CRM.In(PropertyName=@p1,PropertyValues=@p2) and n eq 1', aliases, {
        inFunction: true,
      }),
      [
        { property: 'name', value: 'x', operator: 'in', values: ['x', 'y'] },
        { property: 'n', value: 1 },
      ],
    );
    assert.throws(
      () => parseFilter("Microsoft.Dynamics.CRM.In(PropertyName='name',PropertyValues=['x'])"),
      ODataSyntaxError,
    );
    assert.throws(
      () =>
        parseFilter("Microsoft.Dynamics.CRM.In(PropertyName='name',PropertyValues=[])", new Map(), {
          inFunction: true,
        }),
      ODataSyntaxError,
    );
  });
});
