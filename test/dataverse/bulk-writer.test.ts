import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { BulkWriter, type BulkWriterOptions, type WriteRow } from '../../src/connectors/dataverse/bulk-writer.js';
import { DataverseClient } from '../../src/connectors/dataverse/dataverse-client.js';
import type { RejectRecord } from '../../src/core/rejects.js';
import type { RunningEmulator } from '../../src/emulator/server.js';
import {
  accountRow,
  accountsByNumber,
  assertEachAccountOnce,
  chunks,
  emulator,
  faultyProxy,
  metadataCopy,
} from './helpers.js';

const ACCOUNT = { logicalName: 'account', entitySet: 'accounts', primaryId: 'accountid' } as const;

/** Runs a writer and collects what it reports. */
async function write(
  url: string,
  rows: readonly WriteRow[],
  options: Partial<BulkWriterOptions> & { timeoutMs?: number } = {},
) {
  const client = new DataverseClient({
    url,
    retry: { baseDelayMs: 5, maxDelayMs: 50 },
    timeoutMs: options.timeoutMs ?? 10_000,
  });
  const upserted: WriteRow[] = [];
  const rejects: RejectRecord[] = [];
  const writer = new BulkWriter({
    client,
    table: ACCOUNT,
    onUpserted: (r) => upserted.push(...r),
    onRejected: (r) => rejects.push(...r),
    ...options,
  });
  const result = await writer.write(chunks(rows, 500));
  return { result, upserted, rejects, client };
}

function manyAccounts(n: number, prefix = 'A'): WriteRow[] {
  return Array.from({ length: n }, (_, i) =>
    accountRow(i, `${prefix}${i}`, { name: `Account ${prefix}${i}`, numberofemployees: i }),
  );
}

describe('bulk writer against the emulator', () => {
  let emu: RunningEmulator;
  before(async () => {
    emu = await emulator();
  });
  after(() => emu.close());

  it('lands batches of good rows exactly, once each', async () => {
    const rows = manyAccounts(450, 'G');
    const { result, upserted, rejects, client } = await write(emu.url, rows, { batchSize: 100 });
    assert.equal(result.mode, 'upsert-multiple');
    assert.equal(result.upserted, 450);
    assert.equal(rejects.length, 0);
    assert.deepEqual(
      upserted.map((r) => Number(r.rowId)).sort((a, b) => a - b),
      rows.map((r) => Number(r.rowId)),
    );
    const stored = accountsByNumber(emu);
    for (let i = 0; i < 450; i += 1) {
      const found = stored.get(`G${i}`);
      assert.equal(found?.length, 1, `G${i}`);
      assert.equal(found[0]!.attributes.name, `Account G${i}`);
      assert.equal(found[0]!.attributes.numberofemployees, i);
    }
    // 5 UpsertMultiple requests plus WhoAmI and the two TV8 probes.
    assert.equal(client.stats.requests, 5 + 1 + 2);
  });

  it('sends payload texts as they are, the @odata annotations spliced in (empty, spaced, quotes in key and value)', async () => {
    const rows: WriteRow[] = [
      { ...accountRow(1, 'S-empty', {}), payload: '{}' },
      {
        ...accountRow(2, 'S-spaced', {}),
        payload: '  { "name" : "Spaced \\"quoted\\" name" , "numberofemployees": 7 }',
      },
      accountRow(3, "S-O'Brien", { name: 'Quote in key' }),
    ];
    const { result, rejects } = await write(emu.url, rows, { batchSize: 10 });
    assert.equal(result.mode, 'upsert-multiple');
    assert.deepEqual(rejects, []);
    const stored = accountsByNumber(emu);
    assert.equal(stored.get('S-empty')?.length, 1);
    assert.equal(stored.get('S-spaced')?.[0]?.attributes.name, 'Spaced "quoted" name');
    assert.equal(stored.get('S-spaced')?.[0]?.attributes.numberofemployees, 7);
    assert.equal(stored.get("S-O'Brien")?.[0]?.attributes.name, 'Quote in key');
  });

  it('rejects only the bad row of a failed bulk request, with the service error and its own payload', async () => {
    const rows = manyAccounts(50, 'B');
    rows[17] = accountRow(17, 'B17', { name: 'x'.repeat(161) });
    const { result, rejects } = await write(emu.url, rows, { batchSize: 50 });
    assert.equal(result.upserted, 49);
    assert.equal(rejects.length, 1);
    const reject = rejects[0]!;
    assert.equal(reject.reason, 'dataverse.0x80044331');
    assert.equal(reject.key, 'accountnumber=B17');
    assert.equal(reject.sourceFile, 'inbound/accounts/part-1.parquet');
    assert.equal(reject.rowNumber, 18);
    assert.deepEqual(reject.requestPayload, { name: 'x'.repeat(161) });
    assert.match(
      String((reject.serviceError as { message: string }).message),
      /exceeded the maximum allowed length of '160'/,
    );
    assert.match(reject.message, /B17/);
    const stored = accountsByNumber(emu);
    assert.equal(stored.has('B17'), false);
    for (let i = 0; i < 50; i += 1) if (i !== 17) assert.equal(stored.get(`B${i}`)?.length, 1);
    assert.equal(result.metrics.batchReplays, 1);
  });

  it('writes children before their parents by deferring the bind, and rejects targets that never appear', async () => {
    const rows = [
      accountRow(0, 'C-child', { name: 'child', 'parentaccountid@odata.bind': "/accounts(accountnumber='C-parent')" }),
      accountRow(1, 'C-grandchild', {
        name: 'grandchild',
        'parentaccountid@odata.bind': "/accounts(accountnumber='C-child')",
      }),
      accountRow(2, 'C-orphan', {
        name: 'orphan',
        'parentaccountid@odata.bind': "/accounts(accountnumber='C-nobody')",
      }),
      ...manyAccounts(30, 'C'),
      accountRow(99, 'C-parent', { name: 'parent' }),
    ];
    const { result, rejects } = await write(emu.url, rows, { batchSize: 10 });
    assert.equal(result.upserted, rows.length - 1);
    assert.deepEqual(
      rejects.map((r) => [r.key, r.reason]),
      [['accountnumber=C-orphan', 'lookup.target_missing']],
    );
    assert.ok(result.deferredRounds >= 1);
    const stored = accountsByNumber(emu);
    const parent = stored.get('C-parent')![0]!;
    const child = stored.get('C-child')![0]!;
    assert.equal(child.attributes.parentaccountid, parent.id);
    assert.equal(stored.get('C-grandchild')![0]!.attributes.parentaccountid, child.id);
    assert.equal(stored.has('C-orphan'), false);
  });

  it('addresses keys holding a quote', async () => {
    const rows = [accountRow(0, "Men's Shoes", { name: 'quoted' }), accountRow(1, "O''Brien", { name: 'two quotes' })];
    const { result, rejects } = await write(emu.url, rows);
    assert.equal(rejects.length, 0);
    assert.equal(result.upserted, 2);
    const stored = accountsByNumber(emu);
    assert.equal(stored.get("Men's Shoes")?.[0]?.attributes.name, 'quoted');
    assert.equal(stored.get("O''Brien")?.[0]?.attributes.name, 'two quotes');
  });

  it('sends payload text as the targets: an empty payload writes the key alone, a non-object is refused', async () => {
    const empty = { ...accountRow(0, 'E-0', {}), payload: ' { } ' };
    const quoted = accountRow(1, 'E-"1\\', { name: 'Quote " and backslash \\' });
    const { result } = await write(emu.url, [empty, quoted], { batchSize: 10 });
    assert.equal(result.upserted, 2);
    const stored = accountsByNumber(emu);
    assert.equal(stored.get('E-0')?.length, 1);
    assert.equal(stored.get('E-"1\\')?.[0]?.attributes.name, 'Quote " and backslash \\');
    const bad = { ...accountRow(2, 'E-2', {}), payload: '["not", "an object"]' };
    await assert.rejects(write(emu.url, [bad]), /payload of `accountnumber=E-2` is not a JSON object/);
  });

  it('writes rows whose key cannot go into a URL by $filter and GUID, creating then updating the same row', async () => {
    const first = await write(emu.url, [accountRow(0, 'U/1:2', { name: 'unsafe v1' }, false)]);
    assert.equal(first.result.upserted, 1, JSON.stringify(first.rejects));
    const second = await write(emu.url, [accountRow(0, 'U/1:2', { name: 'unsafe v2' }, false)]);
    assert.equal(second.result.upserted, 1, JSON.stringify(second.rejects));
    const stored = accountsByNumber(emu).get('U/1:2');
    assert.equal(stored?.length, 1);
    assert.equal(stored[0]!.attributes.name, 'unsafe v2');
  });

  it('keeps rows of one key (case-insensitively) out of one request and applies them in order', async () => {
    const rows = [
      accountRow(0, 'K1', { name: 'first' }),
      accountRow(1, 'k1', { name: 'second' }),
      accountRow(2, 'K2', { name: 'other' }),
    ];
    const { result, rejects } = await write(emu.url, rows, { batchSize: 100 });
    assert.equal(rejects.length, 0, JSON.stringify(rejects));
    assert.equal(result.upserted, 3);
    const all = emu.store.rows('account').filter((r) => String(r.attributes.accountnumber).toLowerCase() === 'k1');
    assert.equal(all.length, 1);
    assert.equal(all[0]!.attributes.name, 'second');
  });
});

describe('bulk writer: $batch fallback for tables without bulk support', () => {
  it('probes, falls back to $batch upserts with continue-on-error and isolates the bad row', async () => {
    const meta = await metadataCopy({ account: (t) => (t.SupportsBulk = false) });
    const emu = await emulator({ metadataDir: meta.dir });
    try {
      const rows = manyAccounts(120, 'F');
      rows[5] = accountRow(5, 'F5', { name: 'ok', numberofemployees: 'many' });
      // mode auto with the snapshot flag unknown to the writer: the TV8 probe must find no bulk support.
      const { result, rejects } = await write(emu.url, rows, { batchSize: 50 });
      assert.equal(result.mode, 'batch');
      assert.equal(result.upserted, 119);
      assert.equal(rejects.length, 1);
      assert.equal(rejects[0]!.key, 'accountnumber=F5');
      assert.match(rejects[0]!.reason, /^dataverse\./);
      const stored = accountsByNumber(emu);
      assert.equal(stored.size, 119);
      assert.equal(stored.get('F119')?.[0]?.attributes.name, 'Account F119');
    } finally {
      await emu.close();
      await meta.cleanup();
    }
  });
});

describe('bulk writer under faults', () => {
  it('gets everything through a 429 storm and injected 503s, each row once', async () => {
    const emu = await emulator({ throttleEvery: 3, retryAfterSec: 0.05, failEvery: 4 });
    try {
      const rows = manyAccounts(300, 'S');
      const { result, rejects, client } = await write(emu.url, rows, { batchSize: 20 });
      assert.equal(rejects.length, 0, JSON.stringify(rejects[0]));
      assert.equal(result.upserted, 300);
      assert.ok(client.stats.throttled.requests > 0, 'saw 429s');
      assert.ok(client.stats.transientFailures > 0, 'saw 503s');
      assert.equal(result.metrics.maxRetryAfterSec, 0.05);
      assertEachAccountOnce(emu, 300);
    } finally {
      await emu.close();
    }
  });

  it('retries a request whose answer was lost after the server applied it, without duplicates', async () => {
    const emu = await emulator();
    // First UpsertMultiple: connection reset after applying. Second: no answer at all (client timeout).
    let bulk = 0;
    const proxy = await faultyProxy(emu.url, (req) => {
      if (!req.url?.includes('UpsertMultiple')) return undefined;
      bulk += 1;
      return bulk === 1 ? 'reset' : bulk === 2 ? 'hang' : undefined;
    });
    try {
      const rows = manyAccounts(60, 'T');
      const { result, rejects, client } = await write(proxy.url, rows, {
        batchSize: 30,
        timeoutMs: 400,
        maxConcurrency: 1,
      });
      assert.equal(rejects.length, 0);
      assert.equal(result.upserted, 60);
      assert.equal(proxy.spoiled, 2);
      assert.ok(client.stats.timeouts >= 1);
      assertEachAccountOnce(emu, 60);
    } finally {
      await proxy.close();
      await emu.close();
    }
  });

  it('pauses every lane on a 429, not only the one that got it', async () => {
    const emu = await emulator({ throttleEvery: 5, retryAfterSec: 0.2 });
    try {
      const client = new DataverseClient({ url: emu.url });
      const started: number[] = [];
      const unsubscribe = client.subscribe({ onThrottled: () => started.push(Date.now()) });
      // Eight parallel readers: after the 429, the gate holds the others back until Retry-After passes.
      await Promise.all(Array.from({ length: 8 }, () => client.getJson('WhoAmI')));
      unsubscribe();
      assert.ok(started.length >= 1);
      assert.ok(client.gate.remainingMs() <= 200);
      assert.equal(client.stats.maxRetryAfterSec, 0.2);
    } finally {
      await emu.close();
    }
  });

  it('takes the execution-time limit a 429 states when the limit drops mid-run, each row once', async () => {
    // Time runs 600× faster: the 300 s window lasts 0.5 s. Half-way the limit drops from 1,200 s to 30 s per window.
    const emu = await emulator({ profile: 'default', timeScale: 600 });
    try {
      let written = 0;
      const { result, rejects, client } = await write(emu.url, manyAccounts(2000, 'L'), {
        batchSize: 100,
        onUpserted: (r) => {
          written += r.length;
          if (written >= 1000) emu.throttle!.update({ maxExecutionSec: 30 });
        },
      });
      assert.equal(rejects.length, 0);
      assert.equal(result.upserted, 2000);
      assert.ok(client.stats.throttled.executionTime > 0, 'the drop was felt');
      // 30 s per 300 s window = 0.1 server-seconds per second, taken from the message in one step instead of
      // cut down to by 20% per 429 episode (that would take some 17 episodes).
      assert.equal(result.metrics.executionBudgetPerSec, 0.1);
      assertEachAccountOnce(emu, 2000);
    } finally {
      await emu.close();
    }
  });

  it('stops after the requests in flight when aborted, with a retryable error', async () => {
    const emu = await emulator({ perRecordDelayMs: 1 });
    try {
      const controller = new AbortController();
      let seen = 0;
      const client = new DataverseClient({ url: emu.url });
      const writer = new BulkWriter({
        client,
        table: ACCOUNT,
        batchSize: 20,
        maxConcurrency: 2,
        signal: controller.signal,
        onUpserted: (r) => {
          seen += r.length;
          controller.abort();
        },
      });
      await assert.rejects(
        writer.write(chunks(manyAccounts(400, 'X'), 100)),
        (e: unknown) => (e as { disposition?: string }).disposition === 'retry',
      );
      assert.ok(seen > 0 && seen < 400);
      // Every row reported upserted is stored; nothing more was sent after the stop.
      assert.equal(emu.store.count('account'), seen);
    } finally {
      await emu.close();
    }
  });
});

describe('bulk writer: forced UpsertMultiple on a table without bulk support', () => {
  it('switches to $batch when the service says the message is not implemented', async () => {
    const meta = await metadataCopy({ account: (t) => (t.SupportsBulk = false) });
    const emu = await emulator({ metadataDir: meta.dir });
    try {
      const { result, rejects, client } = await write(emu.url, manyAccounts(90, 'N'), {
        batchSize: 30,
        mode: 'upsert-multiple',
        maxConcurrency: 1,
      });
      assert.equal(rejects.length, 0);
      assert.equal(result.upserted, 90);
      assert.equal(result.mode, 'batch');
      // WhoAmI, one refused UpsertMultiple, then three $batch requests.
      assert.equal(client.stats.requests, 1 + 1 + 3);
      assert.equal(accountsByNumber(emu).size, 90);
    } finally {
      await emu.close();
      await meta.cleanup();
    }
  });
});
