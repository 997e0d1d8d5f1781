import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';

/**
 * The emulator tests the client side, so it may share none of its code: nothing under src/emulator imports from
 * src/connectors, src/stages, src/dialects or src/export (a shared bug would pass its own round trip).
 */
test('src/emulator imports nothing from the client side it tests', () => {
  const dir = path.resolve(import.meta.dirname, '../../src/emulator');
  const forbidden = /^\.\.\/(connectors|stages|dialects|export)\//;
  const found: string[] = [];
  const files = readdirSync(dir).filter((f) => f.endsWith('.ts'));
  assert.ok(files.includes('synapse-link-export.ts'));
  for (const file of files) {
    const text = readFileSync(path.join(dir, file), 'utf8');
    for (const m of text.matchAll(/\bfrom\s*['"]([^'"]+)['"]|\bimport\s*\(\s*['"]([^'"]+)['"]\s*\)/g)) {
      const specifier = m[1] ?? m[2]!;
      if (forbidden.test(specifier)) found.push(`${file} imports ${specifier}`);
    }
  }
  assert.deepEqual(found, []);
});
