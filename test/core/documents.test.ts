import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';

/**
 * The project's documents and comments cite only what a user of the repository has: its own files and public pages.
 * Notes kept outside the repository (the `shared/` research folders, the throughput design note) are not cited.
 */
const ROOT = path.resolve(import.meta.dirname, '../..');
const SELF = path.relative(ROOT, import.meta.filename);
const SKIP = new Set(['node_modules', '.git', 'lake', '.ferry']);

function files(dir: string): string[] {
  const out: string[] = [];
  for (const entry of readdirSync(path.join(ROOT, dir), { withFileTypes: true })) {
    if (SKIP.has(entry.name)) continue;
    const rel = dir === '.' ? entry.name : path.join(dir, entry.name);
    if (entry.isDirectory()) out.push(...files(rel));
    else if (/\.(?:md|ts|js|mjs)$/.test(entry.name) && rel !== SELF) out.push(rel);
  }
  return out;
}

test('no document or comment cites notes a user of the repository does not have', () => {
  const cited = new RegExp(['shared/(?:reference|design|reviews|schemas)', 'THROUGHPUT'].join('|'));
  const found = files('.').flatMap((file) =>
    readFileSync(path.join(ROOT, file), 'utf8')
      .split('\n')
      .flatMap((line, i) => (cited.test(line) ? [`${file}:${i + 1}: ${line.trim()}`] : [])),
  );
  assert.deepEqual(found, [], 'carry the fact with its public source (a learn.microsoft.com page, a spec) instead');
});

test('the README says what the writer does with a refused bulk request and where vendor SDKs live', () => {
  const readme = readFileSync(path.join(ROOT, 'README.md'), 'utf8').replace(/\s+/g, ' ');
  assert.doesNotMatch(readme, /failed batch is split/);
  assert.match(readme, /replayed once as a `\$batch` of single upserts with `continue-on-error`/);
  assert.match(readme, /with src\/dialects, the only code that imports vendor SDKs/);
  // The writer does what the README says: a refused UpsertMultiple chunk goes out again through #sendBatch.
  const writer = readFileSync(path.join(ROOT, 'src/connectors/dataverse/bulk-writer.ts'), 'utf8');
  assert.match(writer, /this\.#batchReplays \+= 1;\s*await this\.#sendBatch\((?:lane, )?chunk, queue\);/);
});
