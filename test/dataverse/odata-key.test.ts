import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  formatKeyLiteral,
  formatKeyPredicate,
  isKeyValueSafe,
  keyFilter,
  keyIdentity,
  keySegment,
  parseKeyPredicate,
} from '../../src/connectors/dataverse/odata-key.js';

describe('OData key predicates', () => {
  it('quotes strings and doubles inner quotes (reference §1.1)', () => {
    assert.equal(formatKeyLiteral("Men's Shoes"), "'Men''s Shoes'");
    assert.equal(formatKeyPredicate([['name', "Men's Shoes"]]), "name='Men''s Shoes'");
  });

  it('writes integers bare and composite keys comma-separated (TV1 form)', () => {
    assert.equal(
      formatKeyPredicate([
        ['example_key1', 2],
        ['example_key2', 2],
      ]),
      'example_key1=2,example_key2=2',
    );
    assert.equal(
      formatKeyPredicate([
        ['firstname', 'Joe'],
        ['emailaddress1', 'abc@example.com'],
      ]),
      "firstname='Joe',emailaddress1='abc@example.com'",
    );
  });

  it('writes GUIDs of lookup key columns bare', () => {
    const guid = '00000000-0000-0000-0000-000000000002';
    assert.equal(
      formatKeyPredicate([['_primarycontactid_value', guid]], ['_primarycontactid_value']),
      `_primarycontactid_value=${guid}`,
    );
    assert.throws(() => formatKeyLiteral('nope', { guid: true }), /not a GUID/);
  });

  it('refuses values that break key URLs and says what to do', () => {
    for (const bad of ['a/b', 'a\\b', 'a<b', 'a>b', 'a*b', '50%', 'a&b', 'a:b', 'a?b']) {
      assert.equal(isKeyValueSafe(bad), false, bad);
      assert.throws(() => formatKeyPredicate([['accountnumber', bad]]), /\$filter/);
    }
    assert.equal(isKeyValueSafe("O'Brien, Inc. #1"), true);
  });

  it('parses predicates back, with quotes, commas and = inside values', () => {
    const parts = parseKeyPredicate("k1='a,b=c',k2='it''s',k3=42,k4=00000000-0000-0000-0000-000000000001");
    assert.deepEqual(
      parts.map((p) => [p.name, p.value]),
      [
        ['k1', 'a,b=c'],
        ['k2', "it's"],
        ['k3', 42],
        ['k4', '00000000-0000-0000-0000-000000000001'],
      ],
    );
    assert.equal(parts[1]!.literal, "'it''s'");
    assert.deepEqual(
      parseKeyPredicate('00000000-0000-0000-0000-000000000001').map((p) => p.name),
      [''],
    );
    assert.throws(() => parseKeyPredicate("k='open"), /unterminated/);
  });

  it('round-trips formatted predicates', () => {
    const entries: Array<[string, string | number]> = [
      ['ferry_legacysource', "C'R,M=1"],
      ['ferry_legacyid', 7],
    ];
    const parsed = parseKeyPredicate(formatKeyPredicate(entries));
    assert.deepEqual(
      parsed.map((p) => [p.name, p.value]),
      entries,
    );
  });

  it('builds a $filter from the same literals', () => {
    assert.equal(keyFilter(parseKeyPredicate("a='x''y',b=3")), "a eq 'x''y' and b eq 3");
  });

  it('percent-encodes literal contents but keeps the key structure', () => {
    assert.equal(keySegment('accounts', "accountnumber='A B#1'"), "accounts(accountnumber='A%20B%231')");
    assert.equal(keySegment('accounts', "accountnumber='Men''s'"), "accounts(accountnumber='Men''s')");
    assert.equal(keySegment('contacts', "a='x',b=2"), "contacts(a='x',b=2)");
    assert.equal(keySegment('accounts', "accountnumber='Zoë (EU)'"), "accounts(accountnumber='Zo%C3%AB%20%28EU%29')");
  });

  it('compares keys case-insensitively, as Dataverse does', () => {
    assert.equal(keyIdentity("accountnumber='AB1'"), keyIdentity("accountnumber='ab1'"));
  });
});
