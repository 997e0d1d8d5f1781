import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { after, before, describe, it } from 'node:test';
import { FIXTURE_METADATA, ODATA_HEADERS, startHarness } from './emulator-harness.js';

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
    const saved = JSON.parse(await readFile(file, 'utf8'));
    assert.equal(saved.format, 'ferry-emulator-store/1');

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

  it('storeFile: changes are saved within about 500 ms without closing', async () => {
    const file = path.join(dir, 'debounced.json');
    const h = await startHarness({ storeFile: file });
    try {
      await h.call('POST', 'accounts', { name: 'soon on disk' });
      let saved: { tables?: { account?: unknown[] } } | undefined;
      for (let i = 0; i < 40 && !saved?.tables?.account?.length; i++) {
        await new Promise((r) => setTimeout(r, 50));
        saved = await readFile(file, 'utf8').then(JSON.parse, () => undefined);
      }
      assert.equal(saved?.tables?.account?.length, 1);
    } finally {
      await h.close();
    }
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
      const saved = JSON.parse(await readFile(file, 'utf8'));
      assert.equal(saved.tables.account[0].attributes.name, 'from the CLI test');
    } finally {
      if (child.exitCode === null) child.kill('SIGKILL');
    }
  });
});
