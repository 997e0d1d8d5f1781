import assert from 'node:assert/strict';
import { test } from 'node:test';
import { closestName, didYouMean } from '../../src/core/closest-name.js';

const PIPELINES = ['currencies-inbound', 'accounts-inbound', 'accounts-outbound', 'contacts-inbound'];

test('a mistyped name gets the nearest known one: a dropped, swapped or changed letter', () => {
  assert.equal(closestName('acounts-inbound', PIPELINES), 'accounts-inbound');
  assert.equal(closestName('accounts-inbuond', PIPELINES), 'accounts-inbound');
  assert.equal(closestName('contacts-inbond', PIPELINES), 'contacts-inbound');
  assert.equal(closestName('Accounts-Inbound', PIPELINES), 'accounts-inbound');
});

test('an unrelated name suggests nothing', () => {
  assert.equal(closestName('xyz', PIPELINES), undefined);
  assert.equal(didYouMean('orders-inbound-v2', PIPELINES), '');
  assert.equal(didYouMean('acounts-inbound', PIPELINES), ' Did you mean `accounts-inbound`?');
});
