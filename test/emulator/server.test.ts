import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { after, before, describe, it } from 'node:test';
import { EmulatorStore } from '../../src/emulator/store.js';
import { FIXTURE_METADATA, ODATA_HEADERS, startHarness } from './emulator-harness.js';

async function loadStore(file: string): Promise<EmulatorStore> {
  const store = new EmulatorStore();
  await store.loadFrom(file);
  return store;
}

describe('emulator persistence, fault injection and CLI', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'ferry-emulator-'));
  });
  after(() => rm(dir, { recursive: true, force: true }));

  it('storeFile: rows, key index, journal and version counter survive a restart', async () => {
    const file = path.join(dir, 'store.json');
    const first = await startHarness({ storeFile: file });
    await first.call('PATCH', "accounts(accountnumber='P-1')", { name: 'persisted', ferry_activities: '2,1' });
    await first.call('PATCH', "contacts(ferry_legacysource='S',ferry_legacyid=7)", { firstname: 'Pat' });
    const created = await first.call('POST', 'accounts', { name: 'deleted later' });
    await first.call('DELETE', created.headers.get('odata-entityid')!.slice(first.api.length));
    const journal = first.emulator.store.journal();
    const version = first.emulator.store.lastVersion;
    await first.close();
    const header = JSON.parse((await readFile(file, 'utf8')).split('\n')[0]!);
    assert.equal(header.format, 'ferry-emulator-store/2');

    const second = await startHarness({ storeFile: file });
    try {
      assert.deepEqual(second.emulator.store.journal(), journal);
      assert.equal(second.emulator.store.lastVersion, version);
      const got = await second.call('GET', "accounts(accountnumber='P-1')?$select=name,ferry_activities");
      assert.equal(got.status, 200);
      assert.deepEqual([got.json.name, got.json.ferry_activities], ['persisted', '2,1']);
      const dup = await second.call('POST', 'accounts', { name: 'dup', accountnumber: 'p-1' });
      assert.equal(dup.status, 412, 'the alternate-key index was rebuilt');
      await second.call('PATCH', "accounts(accountnumber='P-1')", { name: 'after restart' });
      const last = second.emulator.store.journal().at(-1)!;
      assert.ok(last.versionNumber > version && last.seq === journal.at(-1)!.seq + 1);
    } finally {
      await second.close();
    }
  });

  it('storeFile: changes are appended within about 100 ms without closing, never rewriting the file', async () => {
    const file = path.join(dir, 'debounced.json');
    const h = await startHarness({ storeFile: file });
    try {
      await h.call('POST', 'accounts', { name: 'soon on disk' });
      let rows = 0;
      for (let i = 0; i < 40 && rows === 0; i++) {
        await new Promise((r) => setTimeout(r, 50));
        rows = await loadStore(file).then(
          (s) => s.count('account'),
          () => 0,
        );
      }
      assert.equal(rows, 1);
      const before = await readFile(file, 'utf8');
      await h.call('POST', 'accounts', { name: 'second' });
      let after = before;
      for (let i = 0; i < 40 && after === before; i++) {
        await new Promise((r) => setTimeout(r, 50));
        after = await readFile(file, 'utf8');
      }
      assert.ok(after.startsWith(before), 'the second change was appended after the first, not rewritten');
      assert.equal(after.slice(before.length).trim().split('\n').length, 1, 'one line per change');
      assert.equal((await loadStore(file)).count('account'), 2);
    } finally {
      await h.close();
    }
  });

  it('storeFile: a torn last line (crash mid-append) is dropped, the rest loads, and appends go on cleanly', async () => {
    const file = path.join(dir, 'torn.json');
    const first = await startHarness({ storeFile: file });
    await first.call('PATCH', "accounts(accountnumber='T-1')", { name: 'kept' });
    await first.call('PATCH', "accounts(accountnumber='T-2')", { name: 'kept too' });
    await first.close();
    const whole = await readFile(file, 'utf8');
    const lines = whole.trimEnd().split('\n');
    // A crash in the middle of appending the third change: half its line is on disk, without a newline.
    const third = JSON.stringify({ ...JSON.parse(lines.at(-1)!), seq: 99, id: 'x' });
    await writeFile(file, `${whole}${third.slice(0, Math.floor(third.length / 2))}`);

    const second = await startHarness({ storeFile: file });
    try {
      assert.equal(second.emulator.store.count('account'), 2);
      assert.equal(await readFile(file, 'utf8'), whole, 'the partial line was cut off the file');
      await second.call('PATCH', "accounts(accountnumber='T-3')", { name: 'after the crash' });
    } finally {
      await second.close();
    }
    const reloaded = await loadStore(file);
    assert.deepEqual(
      reloaded
        .rows('account')
        .map((r) => r.attributes.name)
        .sort(),
      ['after the crash', 'kept', 'kept too'],
    );
  });

  it('storeFile: lines across read chunks and multi-byte text load whole; a torn tail is cut at its byte offset', async () => {
    const file = path.join(dir, 'chunks.json');
    const store = new EmulatorStore();
    store.defineTable('account', [{ name: 'k', attributes: ['accountnumber'] }]);
    // ~2,000 lines of multi-byte text: several 64 KiB reads, lines cut across them.
    for (let i = 0; i < 2000; i++)
      store.put('account', `00000000-0000-4000-8000-${String(i).padStart(12, '0')}`, {
        accountnumber: `Ü-${i}`,
        name: `Café ✓ ${'é'.repeat(i % 90)} ${i}`,
      });
    await store.saveTo(file);
    const whole = await readFile(file);
    const torn = Buffer.from('{"seq":9999,"table":"account","id":"ü-torn","name":"✓✓');
    await writeFile(file, Buffer.concat([whole, torn]));
    const loaded = new EmulatorStore();
    loaded.defineTable('account', [{ name: 'k', attributes: ['accountnumber'] }]);
    await loaded.loadFrom(file);
    assert.equal(loaded.count('account'), 2000);
    assert.equal(loaded.findByKey('account', 'k', ['ü-1999']), '00000000-0000-4000-8000-000000001999');
    assert.equal(
      loaded.get('account', '00000000-0000-4000-8000-000000000089')?.attributes.name,
      `Café ✓ ${'é'.repeat(89)} 89`,
    );
    assert.deepEqual(await readFile(file), whole, 'cut exactly before the torn bytes');
  });

  it('storeFile: a bad line that is not the last one is an error naming the file and line', async () => {
    const file = path.join(dir, 'bad-middle.json');
    const h = await startHarness({ storeFile: file });
    await h.call('PATCH', "accounts(accountnumber='B-1')", { name: 'b1' });
    await h.call('PATCH', "accounts(accountnumber='B-2')", { name: 'b2' });
    await h.close();
    const lines = (await readFile(file, 'utf8')).split('\n');
    lines[1] = '{"seq": 1, broken';
    await writeFile(file, lines.join('\n'));
    await assert.rejects(loadStore(file), /bad-middle\.json` line 2 is not valid JSON/);
  });

  it('storeFile: a store in the older single-JSON format still loads, and the next save replaces it', async () => {
    const file = path.join(dir, 'legacy.json');
    const row = {
      id: '00000000-0000-4000-8000-000000000001',
      versionNumber: 1001,
      createdOn: '2026-01-01T00:00:00Z',
      modifiedOn: '2026-01-01T00:00:00Z',
      attributes: { name: 'old', accountnumber: 'L-1' },
    };
    const entry = {
      seq: 1,
      table: 'account',
      id: row.id,
      versionNumber: 1001,
      op: 'upsert',
      at: row.modifiedOn,
      record: row.attributes,
    };
    await writeFile(
      file,
      JSON.stringify({
        format: 'ferry-emulator-store/1',
        version: 1001,
        seq: 1,
        tables: { account: [row] },
        journal: [entry],
      }),
    );
    const h = await startHarness({ storeFile: file });
    try {
      const got = await h.call('GET', "accounts(accountnumber='L-1')?$select=name");
      assert.equal(got.json.name, 'old');
      await h.call('PATCH', "accounts(accountnumber='L-2')", { name: 'new' });
    } finally {
      await h.close();
    }
    assert.equal(JSON.parse((await readFile(file, 'utf8')).split('\n')[0]!).format, 'ferry-emulator-store/2');
    assert.equal((await loadStore(file)).count('account'), 2);
  });

  it('failEvery: every Nth write answers 503 and applies nothing; reads are not counted', async () => {
    const h = await startHarness({ failEvery: 3 });
    try {
      const statuses: number[] = [];
      for (let i = 0; i < 6; i++) {
        statuses.push((await h.call('PATCH', `accounts(accountnumber='F-${i}')`, { name: `f${i}` })).status);
        assert.equal((await h.call('GET', 'WhoAmI')).status, 200);
      }
      assert.deepEqual(statuses, [204, 204, 503, 204, 204, 503]);
      const numbers = h.emulator.store.rows('account').map((r) => r.attributes.accountnumber);
      assert.deepEqual(numbers, ['F-0', 'F-1', 'F-3', 'F-4']);
    } finally {
      await h.close();
    }
  });

  it('resetEvery: every Nth write is applied, then the connection drops without an answer', async () => {
    const h = await startHarness({ resetEvery: 2 });
    try {
      assert.equal((await h.call('PATCH', "accounts(accountnumber='R-1')", { name: 'r1' })).status, 204);
      await assert.rejects(h.call('PATCH', "accounts(accountnumber='R-2')", { name: 'r2' }), TypeError);
      const numbers = h.emulator.store.rows('account').map((r) => r.attributes.accountnumber);
      assert.deepEqual(numbers, ['R-1', 'R-2'], 'the unanswered write was applied');
      // Retrying the upsert by key is idempotent: still one row for R-2.
      assert.equal((await h.call('PATCH', "accounts(accountnumber='R-2')", { name: 'r2' })).status, 204);
      assert.equal(h.emulator.store.count('account'), 2);
    } finally {
      await h.close();
    }
  });

  it('throttleEvery: every Nth request of any kind answers 429 with Retry-After and writes nothing', async () => {
    const h = await startHarness({ throttleEvery: 2, retryAfterSec: 7 });
    try {
      const a = await h.call('PATCH', "accounts(accountnumber='T-1')", { name: 't1' });
      const b = await h.call('PATCH', "accounts(accountnumber='T-2')", { name: 't2' });
      assert.deepEqual([a.status, b.status], [204, 429]);
      assert.equal(b.headers.get('retry-after'), '7');
      assert.equal(b.json.error.code, '0x80072322');
      assert.equal(h.emulator.store.count('account'), 1);
    } finally {
      await h.close();
    }
  });

  it('`ferry emulator` prints its URL, serves requests and saves the store on SIGTERM', async () => {
    const file = path.join(dir, 'cli-store.json');
    const root = path.resolve(FIXTURE_METADATA, '../../../..');
    const child = spawn(
      process.execPath,
      [
        '--import',
        'tsx',
        'src/cli/main.ts',
        'emulator',
        '--port',
        '0',
        '--metadata',
        FIXTURE_METADATA,
        '--store',
        file,
      ],
      { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    try {
      const line = await new Promise<string>((resolve, reject) => {
        const rl = createInterface({ input: child.stdout! });
        rl.once('line', resolve);
        child.once('exit', (code) => reject(new Error(`ferry emulator exited early with ${code}`)));
      });
      const m = /^Dataverse emulator listening on (http:\/\/127\.0\.0\.1:\d+)$/.exec(line);
      assert.ok(m, line);
      const r = await fetch(`${m[1]}/api/data/v9.2/accounts(accountnumber='CLI-1')`, {
        method: 'PATCH',
        headers: ODATA_HEADERS,
        body: JSON.stringify({ name: 'from the CLI test' }),
      });
      assert.equal(r.status, 204);
      const code = await new Promise<number | null>((resolve) => {
        child.once('exit', (c) => resolve(c));
        child.kill('SIGTERM');
      });
      assert.equal(code, 0);
      assert.ok((await stat(file)).size > 0);
      assert.equal((await loadStore(file)).rows('account')[0]?.attributes.name, 'from the CLI test');
    } finally {
      if (child.exitCode === null) child.kill('SIGKILL');
    }
  });
});
