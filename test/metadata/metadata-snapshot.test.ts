import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { FerryError } from '../../src/core/errors.js';
import { stringifyExactJson } from '../../src/core/exact-json.js';
import {
  type AttributeMetadata,
  findAttribute,
  isAttributeType,
  loadAllMetadata,
  loadMetadata,
  supportsBulk,
  type TableMetadata,
} from '../../src/core/table-metadata.js';

const DIR = path.resolve('fixtures/metadata');

function attr(table: TableMetadata, name: string): AttributeMetadata {
  const a = findAttribute(table, name);
  assert.ok(a, `${table.LogicalName}.${name} exists`);
  return a;
}

function navFor(table: TableMetadata, attribute: string, target: string): string | undefined {
  return table.ManyToOneRelationships.find((r) => r.ReferencingAttribute === attribute && r.ReferencedEntity === target)
    ?.ReferencingEntityNavigationPropertyName;
}

test('every fixture snapshot loads, and references only tables that are snapshotted or documented', async () => {
  const all = await loadAllMetadata(DIR);
  assert.deepEqual([...all.keys()].sort(), [
    'account',
    'contact',
    'ferry_region',
    'opportunity',
    'systemuser',
    'team',
    'transactioncurrency',
  ]);
  for (const table of all.values()) {
    assert.ok(findAttribute(table, table.PrimaryIdAttribute), `${table.LogicalName} has its primary id`);
    for (const key of table.Keys) assert.equal(key.EntityKeyIndexStatus, 'Active');
    // No research notes (`_`-prefixed keys) leak into the fixtures.
    assert.doesNotMatch(stringifyExactJson(table), /"_[a-zA-Z]/);
  }
});

test('the fixtures hold what a Sales migration needs', async () => {
  const account = await loadMetadata(DIR, 'account');
  const contact = await loadMetadata(DIR, 'contact');
  const opportunity = await loadMetadata(DIR, 'opportunity');
  const region = await loadMetadata(DIR, 'ferry_region');
  const currency = await loadMetadata(DIR, 'transactioncurrency');

  assert.deepEqual(
    account.Keys.map((k) => [k.LogicalName, k.KeyAttributes]),
    [['ferry_accountnumber_key', ['accountnumber']]],
  );
  assert.deepEqual(contact.Keys[0]?.KeyAttributes, ['ferry_legacysource', 'ferry_legacyid']);
  assert.deepEqual(region.Keys[0]?.KeyAttributes, ['ferry_code']);
  assert.deepEqual(currency.Keys[0]?.KeyAttributes, ['isocurrencycode']);
  assert.equal(supportsBulk(currency), false);
  assert.equal(supportsBulk(account), true);
  // An integer alternate key, to exercise unquoted key literals.
  assert.equal(attr(opportunity, 'ferry_legacynumber').AttributeTypeName.Value, 'IntegerType');

  const types = new Set(
    [account, contact, opportunity].flatMap((t) => t.Attributes.map((a) => a.AttributeTypeName.Value)),
  );
  for (const t of [
    'StringType',
    'MemoType',
    'IntegerType',
    'BigIntType',
    'DecimalType',
    'DoubleType',
    'MoneyType',
    'BooleanType',
    'DateTimeType',
    'PicklistType',
    'MultiSelectPicklistType',
    'StateType',
    'StatusType',
    'LookupType',
    'CustomerType',
    'OwnerType',
    'UniqueidentifierType',
  ]) {
    assert.ok(types.has(t as never), `some table has a ${t} column`);
  }
  const behaviours = new Set(
    [account, contact, opportunity].flatMap((t) =>
      t.Attributes.flatMap((a) => (isAttributeType(a, 'DateTimeType') ? [a.DateTimeBehavior.Value] : [])),
    ),
  );
  assert.deepEqual([...behaviours].sort(), ['DateOnly', 'TimeZoneIndependent', 'UserLocal']);

  const interests = attr(account, 'ferry_interests');
  assert.equal(interests.AttributeType, 'Virtual');
  assert.equal(interests.AttributeTypeName.Value, 'MultiSelectPicklistType');

  // Navigation names: custom lookup follows SchemaName casing; polymorphic has one per target; self-reference.
  assert.equal(navFor(account, 'ferry_regionid', 'ferry_region'), 'ferry_RegionId');
  assert.equal(navFor(contact, 'parentcustomerid', 'account'), 'parentcustomerid_account');
  assert.equal(navFor(contact, 'parentcustomerid', 'contact'), 'parentcustomerid_contact');
  assert.equal(navFor(opportunity, 'customerid', 'contact'), 'customerid_contact');
  assert.equal(navFor(account, 'parentaccountid', 'account'), 'parentaccountid');
  assert.equal(navFor(account, 'transactioncurrencyid', 'transactioncurrency'), 'transactioncurrencyid');
  const owner = attr(account, 'ownerid');
  assert.equal(owner.AttributeTypeName.Value, 'OwnerType');
  assert.deepEqual(isAttributeType(owner, 'OwnerType') ? owner.Targets : [], ['systemuser', 'team']);
  const status = attr(opportunity, 'statuscode');
  assert.ok(
    isAttributeType(status, 'StatusType') && status.OptionSet.Options.every((o) => typeof o.State === 'number'),
  );
});

test('loader errors name the file and say what to do', async () => {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'ferry-meta-'));
  try {
    await assert.rejects(loadMetadata(dir, 'account'), (e: unknown) => {
      assert.ok(e instanceof FerryError);
      assert.equal(e.code, 'metadata.missing');
      assert.match(e.message, /ferry metadata pull --table account/);
      return true;
    });
    await writeFile(path.join(dir, 'broken.json'), '{ nope');
    await assert.rejects(loadMetadata(dir, 'broken'), { code: 'metadata.invalid' });
    await writeFile(
      path.join(dir, 'odd.json'),
      JSON.stringify({
        LogicalName: 'odd',
        SchemaName: 'Odd',
        EntitySetName: 'odds',
        PrimaryIdAttribute: 'oddid',
        PrimaryNameAttribute: 'name',
        Keys: [],
        ManyToOneRelationships: [],
        Attributes: [{ LogicalName: 'x', AttributeTypeName: { Value: 'StringType' } }],
      }),
    );
    await assert.rejects(loadMetadata(dir, 'odd'), /`x` \(StringType\) needs a numeric `MaxLength`/);
    await assert.rejects(loadAllMetadata(path.join(dir, 'nope')), { code: 'metadata.missing' });
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
