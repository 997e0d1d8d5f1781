import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { SqliteStateStore } from '../../src/connectors/state/sqlite-state-store.js';
import { emptyCounts } from '../../src/core/counts.js';

/**
 * `ferry` exits only after its output reached the reader: a large output piped into a slow reader arrives whole
 * (writes to a pipe are asynchronous, and an early `process.exit` dropped the tail: 167 of 203 records once).
 */
const ROOT = path.resolve(import.meta.dirname, '../..');
const BIN = path.join(ROOT, 'bin', 'ferry.js');
const REJECTS = 4000;

let dir: string;
let state: string;
let runId: string;
before(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ferry-drain-'));
  state = path.join(dir, 'state');
  const store = SqliteStateStore.openIn(state);
  const run = store.startRun({
    pipeline: 'accounts-inbound',
    mode: 'manual',
    window: { source: 'lake:inbound/accounts', items: [{ id: 'a.parquet' }], cursorBefore: null, cursorAfter: null },
    holder: 'test:1',
  });
  store.addRejects(
    run.id,
    'accounts-inbound',
    Array.from({ length: REJECTS }, (_, i) => ({
      stage: 'convert-to-dataverse',
      reason: 'string.too_long',
      // Long enough that the whole output (~1.5 MB) is many times a pipe's buffer.
      message: `Column \`name\` value \`${'y'.repeat(200)}\` is longer than 160 characters (${i}); shorten it.`,
      key: `accountnumber=A-${i}`,
      sourceFile: 'inbound/accounts/a.parquet',
      rowNumber: i + 1,
      row: { name: 'y'.repeat(100) },
    })),
  );
  store.finishRun(run.id, {
    status: 'succeeded',
    counts: { ...emptyCounts(), read: REJECTS, rejected: REJECTS },
    rejectsByReason: { 'string.too_long': REJECTS },
    metrics: {},
    markProcessed: false,
    moveCursor: false,
  });
  store.close();
  runId = run.id;
});
after(() => fs.rmSync(dir, { recursive: true, force: true }));

/** Runs ferry with stdout read slowly: one chunk, then a pause, like a reader busy with each line. */
function slowlyRead(args: readonly string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const env = { ...process.env };
    for (const key of Object.keys(env)) if (key.startsWith('FERRY_')) delete env[key];
    const child = spawn(process.execPath, [BIN, ...args], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
    const chunks: Buffer[] = [];
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => {
      chunks.push(chunk);
      child.stdout.pause();
      setTimeout(() => child.stdout.resume(), 15);
    });
    child.stderr.on('data', (d) => (stderr += d));
    child.on('error', reject);
    // 'close' waits for the end of stdout, so every byte the child wrote before exiting is in `chunks`.
    child.on('close', (code) => resolve({ code, stdout: Buffer.concat(chunks).toString('utf8'), stderr }));
  });
}

test('rejects --format csv through a slow reader: every record arrives', async () => {
  const r = await slowlyRead([
    'rejects',
    '--run',
    runId,
    '--limit',
    String(REJECTS),
    '--format',
    'csv',
    '--state',
    state,
  ]);
  assert.equal(r.code, 0, r.stderr);
  const lines = r.stdout.split('\n');
  assert.equal(lines.at(-1), '', 'the output ends with a full line');
  assert.equal(lines[0], 'pipeline,run_id,reason,key,source_file,row_number,message,status,created_at,row');
  const records = lines.slice(1, -1);
  assert.equal(records.length, REJECTS);
  assert.match(
    records.at(-1)!,
    new RegExp(`^accounts-inbound,${runId},string\\.too_long,accountnumber=A-${REJECTS - 1},`),
  );
});

test('rejects --format json through a slow reader: every line parses, none is missing', async () => {
  const r = await slowlyRead([
    'rejects',
    '--run',
    runId,
    '--limit',
    String(REJECTS),
    '--format',
    'json',
    '--state',
    state,
  ]);
  assert.equal(r.code, 0, r.stderr);
  const keys = r.stdout
    .trim()
    .split('\n')
    .map((line) => (JSON.parse(line) as { key: string }).key);
  assert.equal(new Set(keys).size, REJECTS);
});
