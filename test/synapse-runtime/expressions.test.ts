import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseTimestamp } from '../../src/export/synapse/runtime/expression/date-time.js';
import { evaluateValue } from '../../src/export/synapse/runtime/expression/dynamic-value.js';
import type { ExpressionScope } from '../../src/export/synapse/runtime/expression/expression-evaluator.js';
import type { Json } from '../../src/export/synapse/runtime/expression/json-value.js';

const NOW = parseTimestamp('2018-04-15T13:00:00Z', 'test');
const scope: ExpressionScope = {
  now: () => NOW,
  pipeline: () => ({
    parameters: { myNumber: 42, name: 'Sophie', key: 'myNumber', empty: '', obj: { a: 1 } },
    RunId: 'run-1',
    DataFactory: 'ws',
    TriggerType: 'Manual',
  }),
  activity: (name) => {
    if (name !== 'Lookup1') throw new Error(`no activity ${name}`);
    return {
      output: { firstRow: { cursor_value: 'x' }, value: [{ id: 1 }, { id: 2 }], count: 2 },
      status: 'Succeeded',
    };
  },
  variables: (name) => ({ list: ['a', 'b'], flag: true })[name] ?? null,
  item: () => ({ name: 'file1.csv' }),
};
const ev = (text: Json, s: ExpressionScope = scope) => evaluateValue(text, s);

describe('expression grammar', () => {
  it('keeps the type of a whole-value expression and stringifies interpolation', () => {
    assert.equal(ev('@pipeline().parameters.myNumber'), 42);
    assert.equal(ev('@{pipeline().parameters.myNumber}'), '42');
    assert.equal(ev('Answer is: @{pipeline().parameters.myNumber}'), 'Answer is: 42');
    assert.equal(ev("@concat('Answer is: ', string(pipeline().parameters.myNumber))"), 'Answer is: 42');
  });
  it('escapes @@ and keeps strings that do not start with @', () => {
    assert.equal(ev('@@abc'), '@abc');
    assert.equal(ev('Answer is: @@{pipeline().parameters.myNumber}'), 'Answer is: @{pipeline().parameters.myNumber}');
    assert.equal(ev(' @abc'), ' @abc');
    assert.equal(ev('a@b.com'), 'a@b.com');
  });
  it("reads '' inside string literals and } inside strings in interpolation", () => {
    assert.equal(ev("@concat('it''s', ' ok')"), "it's ok");
    assert.equal(ev("x @{concat('{', '}')} y"), 'x {} y');
  });
  it('evaluates Expression objects, nested objects and arrays', () => {
    assert.deepEqual(ev({ type: 'Expression', value: "@variables('list')" }), ['a', 'b']);
    assert.deepEqual(ev({ a: ['@pipeline().RunId', 1] }), { a: ['run-1', 1] });
  });
  it('accesses properties by dot, bracket, dynamic key and zero-based index', () => {
    assert.equal(ev("@pipeline().parameters['name']"), 'Sophie');
    assert.equal(ev('@pipeline().parameters[pipeline().parameters.key]'), 42);
    assert.equal(ev("@activity('Lookup1').output.value[1].id"), 2);
    assert.equal(ev("@activity('Lookup1').output.firstRow.cursor_value"), 'x');
    assert.equal(ev("@activity('Lookup1').Status"), 'Succeeded');
  });
  it('fails on a missing property unless ?. is used', () => {
    assert.throws(() => ev('@pipeline().TriggeredByPipelineName'), /Property `TriggeredByPipelineName` does not exist/);
    assert.equal(ev('@pipeline()?.TriggeredByPipelineName'), null);
    assert.equal(ev("@activity('Lookup1').output?.missing?.deeper"), null);
    assert.throws(() => ev("@activity('Lookup1').output.value[5]"), /Index `5` is outside/);
  });
  it('names unknown and unavailable functions', () => {
    assert.throws(() => ev('@frobnicate(1)'), /Unknown expression function `frobnicate\(\)`/);
    assert.throws(() => ev("@xpath('<a/>', '/a')"), /`xpath\(\)` is documented but not implemented/);
    assert.throws(() => ev('@trigger().scheduledTime'), /`trigger\(\)` is only available/);
    assert.throws(() => ev('@dataset().x'), /`dataset\(\)` is only available inside a dataset/);
  });
  it('reports syntax errors with the expression', () => {
    assert.throws(() => ev("@concat('a'"), /Expected `\)`/);
    assert.throws(() => ev('@{concat(1,2)'), /Unterminated `@\{`/);
    assert.throws(() => ev("@concat('a)"), /Unterminated string literal/);
  });
});

describe('documented function examples', () => {
  const cases: [string, Json][] = [
    ["@endsWith('hello world', 'WORLD')", true],
    ["@startsWith('hello world', 'HELLO')", true],
    ["@indexOf('hello world', 'WORLD')", 6],
    ["@lastIndexOf('hello world world', 'world')", 12],
    ["@replace('the old string', 'old', 'new')", 'the new string'],
    ["@split('a_b_c', '_')", ['a', 'b', 'c']],
    ["@substring('hello world', 6, 5)", 'world'],
    ["@toLower('Hello World')", 'hello world'],
    ["@toUpper('Hello World')", 'HELLO WORLD'],
    ["@trim('  Hello World  ')", 'Hello World'],
    ["@contains('hello world', 'world')", true],
    ["@contains('hello world', 'World')", false],
    ["@contains(createArray('a','b'), 'b')", true],
    ["@contains(json('{\"k\": 1}'), 'k')", true],
    ["@empty('')", true],
    ["@empty('abc')", false],
    ['@empty(createArray())', true],
    ["@first('hello')", 'h'],
    ['@first(createArray(0, 1, 2))', 0],
    ["@last('abcd')", 'd'],
    ['@last(createArray(0, 1, 2, 3))', 3],
    ['@intersection(createArray(1, 2, 3), createArray(101, 2, 1, 10), createArray(6, 8, 1, 2))', [1, 2]],
    ['@union(createArray(1, 2, 3), createArray(1, 2, 10, 101))', [1, 2, 3, 10, 101]],
    ['@union(json(\'{"a":1,"b":2}\'), json(\'{"b":3}\'))', { a: 1, b: 3 }],
    ["@join(createArray('a', 'b', 'c'), '.')", 'a.b.c'],
    ["@length('abcd')", 4],
    ['@length(createArray(0, 1, 2, 3))', 4],
    ['@skip(createArray(0, 1, 2, 3), 1)', [1, 2, 3]],
    ['@take(createArray(0, 1, 2, 3, 4), 3)', [0, 1, 2]],
    ["@take('abcde', 3)", 'abc'],
    ['@and(true, false)', false],
    ['@or(false, true)', true],
    ['@not(false)', true],
    ['@equals(true, 1)', true],
    ["@equals('abc', 'abcd')", false],
    ['@greater(10, 5)', true],
    ["@greater('apple', 'banana')", false],
    ['@greaterOrEquals(5, 5)', true],
    ["@less('banana', 'apple')", false],
    ['@lessOrEquals(10, 10)', true],
    ["@if(equals(1, 1), 'yes', 'no')", 'yes'],
    ["@array('hello')", ['hello']],
    ["@base64('hello')", 'aGVsbG8='],
    ["@base64ToString('aGVsbG8=')", 'hello'],
    ["@decodeBase64('aGVsbG8=')", 'hello'],
    ["@dataUri('hello')", 'data:text/plain;charset=utf-8;base64,aGVsbG8='],
    ["@dataUriToString('data:text/plain;charset=utf-8;base64,aGVsbG8=')", 'hello'],
    ["@encodeUriComponent('https://contoso.com')", 'https%3A%2F%2Fcontoso.com'],
    ["@decodeUriComponent('https%3A%2F%2Fcontoso.com')", 'https://contoso.com'],
    ['@bool(1)', true],
    ['@bool(0)', false],
    ["@int('10')", 10],
    ["@float('10.333')", 10.333],
    ['@string(10)', '10'],
    ['@string(json(\'{"name":"Sophie Owen"}\'))', '{"name":"Sophie Owen"}'],
    ['@coalesce(null, true, false)', true],
    ["@coalesce(null, 'hello', 'world')", 'hello'],
    ['@coalesce(null, null)', null],
    ["@coalesce('', 'x')", ''],
    ['@createArray(1, 2)', [1, 2]],
    ['@add(1, 1.5)', 2.5],
    ['@mul(1.5, 2)', 3],
    ['@sub(10.3, .3)', 10],
    ['@div(11, 5)', 2],
    ['@div(11.0, 5.5)', 2],
    ['@div(10.5, 2)', 5.25],
    ['@mod(3, 2)', 1],
    ['@max(1, 2, 3)', 3],
    ['@max(createArray(1, 2, 3))', 3],
    ['@min(1, 2, 3)', 1],
    ['@range(1, 4)', [1, 2, 3, 4]],
    ["@addDays('2018-03-15T00:00:00Z', 10)", '2018-03-25T00:00:00.0000000Z'],
    ["@addDays('2018-03-15T00:00:00Z', -5)", '2018-03-10T00:00:00.0000000Z'],
    ["@addHours('2018-03-15T00:00:00Z', 10)", '2018-03-15T10:00:00.0000000Z'],
    ["@addMinutes('2018-03-15T00:10:00Z', 10)", '2018-03-15T00:20:00.0000000Z'],
    ["@addSeconds('2018-03-15T00:00:00Z', -5)", '2018-03-14T23:59:55.0000000Z'],
    ["@addToTime('2018-01-01T00:00:00Z', 1, 'Day')", '2018-01-02T00:00:00.0000000Z'],
    ["@addToTime('2018-01-31T00:00:00Z', 1, 'Month', 'yyyy-MM-dd')", '2018-02-28'],
    ["@subtractFromTime('2018-01-02T00:00:00Z', 1, 'Day')", '2018-01-01T00:00:00.0000000Z'],
    ["@convertFromUtc('2018-01-01T08:00:00.0000000Z', 'Pacific Standard Time')", '2018-01-01T00:00:00.0000000'],
    ["@convertToUtc('01/01/2018 00:00:00', 'Pacific Standard Time')", '2018-01-01T08:00:00.0000000Z'],
    ["@convertTimeZone('2018-01-01T08:00:00.0000000Z', 'UTC', 'Pacific Standard Time')", '2018-01-01T00:00:00.0000000'],
    ["@dayOfMonth('2018-03-15T13:27:36Z')", 15],
    ["@dayOfWeek('2018-03-15T13:27:36Z')", 4],
    ["@dayOfYear('2018-03-15T13:27:36Z')", 74],
    ["@formatDateTime('03/15/2018 12:00:00', 'yyyy-MM-ddTHH:mm:ss')", '2018-03-15T12:00:00'],
    ["@formatDateTime('2018-03-15T13:27:36.1234567Z')", '2018-03-15T13:27:36.1234567Z'],
    ["@formatDateTime('2018-03-15T13:27:36Z', 'yyyy/MM/dd HH:mm')", '2018/03/15 13:27'],
    ["@formatDateTime('2018-03-15T13:27:36Z', 'ddd, dd MMM yyyy h:mm tt')", 'Thu, 15 Mar 2018 1:27 PM'],
    ["@formatDateTime('2018-03-15T13:27:36.5Z', 'ss.FFF')", '36.5'],
    ["@formatDateTime('2018-03-15T13:27:36Z', 'ss.FFF')", '36'],
    ["@formatDateTime('2018-03-15T13:27:36Z', 'R')", 'Thu, 15 Mar 2018 13:27:36 GMT'],
    ["@formatDateTime('2018-03-15T13:27:36Z', 's')", '2018-03-15T13:27:36'],
    ["@formatDateTime('2018-03-15T13:27:36Z', 'u')", '2018-03-15 13:27:36Z'],
    ["@formatDateTime('2018-03-15T14:00:00+01:00', 'yyyy-MM-ddTHH.mm.ssZ')", '2018-03-15T13.00.00Z'],
    ["@formatDateTime('2018-03-15T13:27:36Z', '''yy'' yy')", 'yy 18'],
    ["@startOfDay('2018-03-15T13:30:30Z')", '2018-03-15T00:00:00.0000000Z'],
    ["@startOfHour('2018-03-15T13:30:30Z')", '2018-03-15T13:00:00.0000000Z'],
    ["@startOfMonth('2018-03-15T13:30:30Z')", '2018-03-01T00:00:00.0000000Z'],
    ["@ticks('0001-01-01T00:00:00Z')", 0],
    ["@ticks('1970-01-01T00:00:00Z')", 621355968000000000],
    ['@utcNow()', '2018-04-15T13:00:00.0000000Z'],
    ["@utcNow('D')", 'Sunday, 15 April 2018'],
    ["@getPastTime(5, 'Day')", '2018-04-10T13:00:00.0000000Z'],
    ["@getFutureTime(1, 'Hour', 'HH:mm')", '14:00'],
  ];
  for (const [expr, expected] of cases) {
    it(expr, () => assert.deepEqual(ev(expr), expected));
  }
  it('guid() formats', () => {
    assert.match(ev('@guid()') as string, /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
    assert.match(ev("@guid('N')") as string, /^[0-9a-f]{32}$/);
    assert.match(ev("@guid('B')") as string, /^\{[0-9a-f-]{36}\}$/);
    assert.notEqual(ev('@guid()'), ev('@guid()'));
  });
  it('rand(min, max) is min-inclusive, max-exclusive', () => {
    assert.equal(ev('@rand(1, 2)'), 1);
    assert.equal(ev('@rand(5, 10)', { ...scope, random: () => 0.999 }), 9);
  });
  it('utcNow() follows the injectable clock', () => {
    assert.equal(
      ev('@utcNow()', { ...scope, now: () => parseTimestamp('2030-01-01T00:00:00Z', 't') }),
      '2030-01-01T00:00:00.0000000Z',
    );
  });
  it('errors name the value', () => {
    assert.throws(() => ev("@int('1.5')"), /`int\(\)` cannot convert `"1.5"`/);
    assert.throws(() => ev("@formatDateTime('', 'yyyy')"), /cannot read the timestamp ``/);
    assert.throws(() => ev("@addToTime('2018-01-01', 1, 'Fortnight')"), /time unit `Fortnight`/);
    assert.throws(() => ev("@convertFromUtc('2018-01-01', 'Mars Standard Time')"), /Time zone `Mars Standard Time`/);
    assert.throws(() => ev('@div(1, 0)'), /by zero/);
    assert.throws(() => ev("@greater(1, 'a')"), /compares two integers/);
    assert.throws(() => ev('@concat()'), /`concat\(\)` takes at least 1/);
    assert.throws(() => ev("@if('x', 1, 2)"), /needs a boolean/);
  });
  it('if/and/or evaluate lazily by default, eagerly when asked', () => {
    const hazard =
      "@if(empty(pipeline().parameters.empty), 'now', formatDateTime(pipeline().parameters.empty, 'yyyy'))";
    assert.equal(ev(hazard), 'now');
    assert.throws(() => ev(hazard, { ...scope, lazyConditionals: false }), /cannot read the timestamp ``/);
    assert.equal(ev("@or(true, greater(1, 'a'))"), true);
    assert.throws(() => ev("@or(true, greater(1, 'a'))", { ...scope, lazyConditionals: false }), /compares/);
  });
  it('item() and variables() read the run context', () => {
    assert.equal(ev('@item().name'), 'file1.csv');
    assert.deepEqual(ev("@variables('list')"), ['a', 'b']);
    assert.equal(ev("@{variables('flag')}"), 'True');
  });
});
