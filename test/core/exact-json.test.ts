import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseExactJson, stringifyExactJson } from '../../src/core/exact-json.js';

test('Int64 limits survive a read and a write digit for digit', () => {
  const text = '{"MinValue":-9223372036854775808,"MaxValue":9223372036854775807,"Safe":9007199254740991,"x":1.5e3}';
  const value = parseExactJson(text) as Record<string, unknown>;
  assert.equal(value.MinValue, -9223372036854775808n);
  assert.equal(value.MaxValue, 9223372036854775807n);
  assert.equal(value.Safe, 9007199254740991);
  assert.equal(value.x, 1500);
  assert.equal(
    stringifyExactJson(value),
    '{"MinValue":-9223372036854775808,"MaxValue":9223372036854775807,"Safe":9007199254740991,"x":1500}',
  );
});

test('writes what JSON.stringify writes for plain values, indented or not', () => {
  const value = {
    a: [1, 'two', null, true, { b: [] }, {}],
    s: 'quote " and \\ and \u0001 and é',
    u: undefined,
    n: -0.25,
    nested: { deep: [[], [1, [2]]] },
  };
  for (const indent of [0, 2]) assert.equal(stringifyExactJson(value, indent), JSON.stringify(value, null, indent));
  assert.deepEqual(parseExactJson(JSON.stringify(value, null, 2)), JSON.parse(JSON.stringify(value)));
});

test('refuses text that is not JSON, naming the source and offset', () => {
  assert.throws(() => parseExactJson('{"a":1,}', 'snap.json'), /`snap\.json` is not valid JSON at offset 7/);
  assert.throws(() => parseExactJson('[1 2]'), /expected `,` or `]`/);
  assert.throws(() => parseExactJson('"open'), /not closed/);
  assert.throws(() => parseExactJson('{} x'), /after the JSON value/);
  assert.equal((parseExactJson('{"__proto__":{"p":1}}') as Record<string, unknown>).p, undefined);
});
