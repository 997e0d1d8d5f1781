import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { ERROR_CODES, errorCodeEntry, errorCodesTable } from '../../src/core/error-codes.js';
import { EXIT, exitCodeFor, FerryError, UsageError } from '../../src/core/errors.js';

const ROOT = path.resolve(import.meta.dirname, '../..');

test('codes are area.snake_case', () => {
  const bad = Object.keys(ERROR_CODES).filter(
    (code) => code !== 'usage' && !/^[a-z]+(?:_[a-z]+)*\.[a-z0-9]+(?:_[a-z0-9]+)*$/.test(code),
  );
  assert.deepEqual(bad, [], 'name codes `area.snake_case`');
});

test('a FerryError takes its disposition from the catalogue, and the CLI its exit code', () => {
  const cases: Array<[FerryError, string, number]> = [
    [new FerryError('metadata.missing', 'x'), 'fatal', EXIT.failed],
    [new UsageError('x'), 'fatal', EXIT.usage],
    [new FerryError('run.interrupted', 'x'), 'retry', EXIT.temporaryFailure],
    [new FerryError('replay.nothing', 'x'), 'skip', EXIT.heldBack],
    [new FerryError('dataverse.http_503', 'x'), 'retry', EXIT.temporaryFailure],
    [new FerryError('dataverse.http_408', 'x'), 'retry', EXIT.temporaryFailure],
    [new FerryError('dataverse.http_404', 'x'), 'fatal', EXIT.failed],
    [new FerryError('dataverse.0x80040217', 'x'), 'fatal', EXIT.failed],
    [new FerryError('synapse_runtime.DynamicsOperationFailed', 'x'), 'fatal', EXIT.failed],
    [new FerryError('service_bus.session_lock_lost', 'x'), 'retry', EXIT.temporaryFailure],
    [new FerryError('service_bus.message_size_exceeded', 'x'), 'skip', EXIT.heldBack],
  ];
  for (const [error, disposition, exit] of cases) {
    assert.equal(error.disposition, disposition, error.code);
    assert.equal(exitCodeFor(error), exit, error.code);
  }
  assert.equal(exitCodeFor(new Error('a bug')), EXIT.failed);
  // A code outside the catalogue does not compile (`npx tsc` checks this line); cast in, it is fatal.
  // @ts-expect-error: `not.a_code` is not an ErrorCode
  assert.equal(new FerryError('not.a_code', 'x').disposition, 'fatal');
  assert.equal(errorCodeEntry('not.a_code').disposition, 'fatal');
});

/** Every code written as a literal in `new FerryError('…'` or a subclass's `super('…'` under src/ and functions/. */
function literalCodes(): Array<{ file: string; code: string }> {
  const out: Array<{ file: string; code: string }> = [];
  const walk = (dir: string) => {
    for (const entry of readdirSync(path.join(ROOT, dir), { withFileTypes: true })) {
      const rel = `${dir}/${entry.name}`;
      if (entry.isDirectory()) walk(rel);
      else if (entry.name.endsWith('.ts')) {
        const text = readFileSync(path.join(ROOT, rel), 'utf8');
        for (const m of text.matchAll(/new FerryError\(\s*(?:'([^']+)'|\w+\s*\?\s*'([^']+)'\s*:\s*'([^']+)')/g)) {
          for (const code of [m[1], m[2], m[3]]) if (code) out.push({ file: rel, code });
        }
      }
    }
  };
  walk('src');
  walk('functions/src');
  return out;
}

test('every code the code base writes is in the catalogue, and every catalogue code is written somewhere', () => {
  const used = literalCodes();
  assert.ok(used.length > 80, `found only ${used.length} codes; is the scan broken?`);
  const unknown = used.filter((u) => errorCodeEntry(u.code).meaning === 'not in the catalogue');
  assert.deepEqual(unknown, [], 'add these codes to src/core/error-codes.ts');
  // Codes built at run time (mapping.<suffix>, the Service Bus table, subclasses) are found by their suffix text.
  const sources = used.map((u) => u.code);
  const all = ['src', 'functions/src'].map((d) => textUnder(d)).join('\n');
  const unused = Object.keys(ERROR_CODES).filter(
    (code) => !sources.includes(code) && !all.includes(`'${code}'`) && !all.includes(`'${code.split('.')[1]}'`),
  );
  assert.deepEqual(unused, [], 'these catalogue codes are never raised: remove them');
});

function textUnder(dir: string): string {
  const parts: string[] = [];
  for (const entry of readdirSync(path.join(ROOT, dir), { withFileTypes: true })) {
    const rel = `${dir}/${entry.name}`;
    if (entry.isDirectory()) parts.push(textUnder(rel));
    else if (entry.name.endsWith('.ts')) parts.push(readFileSync(path.join(ROOT, rel), 'utf8'));
  }
  return parts.join('\n');
}

test("the README's table of error codes is the catalogue's", () => {
  const readme = readFileSync(path.join(ROOT, 'README.md'), 'utf8');
  const start = '<!-- error-codes:start (npm run docs:error-codes) -->\n';
  const from = readme.indexOf(start);
  const to = readme.indexOf('\n<!-- error-codes:end -->');
  assert.ok(from >= 0 && to > from, 'README.md keeps the error-code markers');
  assert.equal(readme.slice(from + start.length, to), errorCodesTable(), 'run `npm run docs:error-codes`');
});
