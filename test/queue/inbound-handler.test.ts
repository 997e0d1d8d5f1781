import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import regions from '../../pipelines/regions-inbound.js';
import type { Alert, AlertSink } from '../../src/alerts/webhook-alerts.js';
import { LocalLake } from '../../src/connectors/lake/local-lake.js';
import { EmbeddedQueueTransport } from '../../src/connectors/queue/embedded-queue-transport.js';
import { SqliteStateStore } from '../../src/connectors/state/sqlite-state-store.js';
import { resolveConfig } from '../../src/core/config.js';
import { silentLogger } from '../../src/core/log.js';
import { definePipeline } from '../../src/core/pipeline.js';
import type { OutgoingMessage } from '../../src/core/queue-transport.js';
import { runPipeline } from '../../src/core/runner.js';
import { DuckDbStaging, openRunStaging } from '../../src/dialects/duckdb/driver.js';
import { type RunningEmulator, startEmulator } from '../../src/emulator/server.js';
import { type DeliveryOutcome, InboundMessageHandler } from '../../src/events/inbound-message-handler.js';
import { listenToQueue } from '../../src/events/session-listener.js';
import { runReplay } from '../../src/schedule/replay.js';
import { convertToDataverse } from '../../src/stages/convert-to-dataverse.js';
import { readParquetDeltas } from '../../src/stages/read-parquet-deltas.js';
import { stageRegistry } from '../../src/stages/registry.js';
import { upsertDataverse } from '../../src/stages/upsert-dataverse.js';

// The listener and the batch path share the pipeline, the metadata, the emulator and the applied-versions file.
const ROOT = path.resolve(import.meta.dirname, '../..');
let dir: string;
let emulator: RunningEmulator;
let state: SqliteStateStore;
let queue: EmbeddedQueueTransport;
let base: Omit<Parameters<typeof runPipeline>[1], 'mode'>;
const alerts: Alert[] = [];
const alertSink: AlertSink = {
  notify: async (a) => {
    alerts.push(a);
    return true;
  },
  recovered() {},
};

const accounts = definePipeline({
  name: 'accounts-listen',
  direction: 'inbound',
  rejectThreshold: { maxRejectedRatio: 0.5 },
  stages: [
    readParquetDeltas({ folder: 'in/accounts' }),
    convertToDataverse({
      table: 'account',
      key: ['accountnumber'],
      changeTimestamp: 'modified_at',
      columns: {
        accountnumber: 'account_no',
        name: 'account_name',
        ferry_regionid: { from: 'region_code', lookup: { table: 'ferry_region', key: 'ferry_code' } },
      },
    }),
    upsertDataverse({ table: 'account', batchSize: 10 }),
  ],
});

function change(no: string, name: string, at: string, region: string | null = null): OutgoingMessage {
  return {
    sessionId: no,
    body: {
      type: 'ferry.inbound.change',
      key: { account_no: no },
      changedAt: at,
      columns: { account_name: name, region_code: region },
    },
  };
}

async function writeParquet(relative: string, selectSql: string): Promise<void> {
  const file = path.join(dir, 'lake', relative);
  await fs.mkdir(path.dirname(file), { recursive: true });
  const duck = await DuckDbStaging.open({ memoryLimit: '128MB' });
  try {
    await duck.run(`COPY (${selectSql}) TO '${file}' (FORMAT PARQUET)`);
  } finally {
    await duck.close();
  }
}

async function getAccount(no: string): Promise<Record<string, unknown> | undefined> {
  const res = await fetch(`${emulator.url}/api/data/v9.2/accounts?$filter=accountnumber eq '${no}'`, {
    headers: { Accept: 'application/json', 'OData-Version': '4.0' },
  });
  assert.equal(res.status, 200);
  return ((await res.json()) as { value: Array<Record<string, unknown>> }).value[0];
}

async function handler(
  maxDeliveryCount = 5,
  onApplied?: (rows: ReadonlyArray<{ key: string; version: string; messageId: string }>) => void,
): Promise<InboundMessageHandler> {
  return InboundMessageHandler.open({
    ...(onApplied ? { onApplied } : {}),
    definition: accounts,
    config: base.config,
    state,
    dataverse: { url: emulator.url },
    log: silentLogger,
    queue: 'accounts',
    maxDeliveryCount,
    alerts: alertSink,
    backoffMs: () => 10,
  });
}

/** Drains the queue through a listener; returns each message's outcomes by message id. */
async function drain(h: InboundMessageHandler): Promise<Map<string, DeliveryOutcome[]>> {
  const seen = new Map<string, DeliveryOutcome[]>();
  await listenToQueue({
    transport: queue,
    queue: 'accounts',
    handler: h,
    log: silentLogger,
    pollMs: 100,
    stopWhenIdleMs: 1000,
    onSettled: (m, o) => seen.set(m.messageId, [...(seen.get(m.messageId) ?? []), o]),
  });
  return seen;
}

before(async () => {
  dir = await fs.mkdtemp(path.join(os.tmpdir(), 'ferry-listen-'));
  emulator = await startEmulator({ metadataDir: path.join(ROOT, 'fixtures', 'metadata') });
  const config = resolveConfig(
    { lake: path.join(dir, 'lake'), state: path.join(dir, 'state'), metadata: path.join(ROOT, 'fixtures', 'metadata') },
    {},
  );
  state = SqliteStateStore.openIn(config.state);
  queue = EmbeddedQueueTransport.openIn(config.state, { lockDurationMs: 5000, maxDeliveryCount: 3 });
  base = {
    config,
    lake: new LocalLake(config.lake),
    state,
    registry: stageRegistry,
    log: silentLogger,
    services: { dataverse: { url: emulator.url }, openStaging: openRunStaging },
  };
  await writeParquet(
    'inbound/regions/2026-11-26T08-00-00Z.parquet',
    `SELECT * FROM (VALUES ('EAST', 'East', NULL::VARCHAR, TIMESTAMP '2026-11-26 08:00:00')) t(region_code, region_name, parent_region_code, modified_at)`,
  );
  const r = await runPipeline(regions, {
    openStaging: (dir: string) => openRunStaging(dir, {}),
    ...base,
    mode: 'manual',
  });
  assert.equal(r.status, 'succeeded', JSON.stringify(r.error));
});

after(async () => {
  await queue.close();
  state.close();
  await emulator.close();
  await fs.rm(dir, { recursive: true, force: true });
});

test('messages of many sessions are upserted with the pipeline mapping; an older change arriving later is stale', async () => {
  const h = await handler();
  try {
    await queue.send('accounts', [
      change('M-1', 'One', '2026-11-26T10:00:00Z', 'EAST'),
      change('M-2', 'Two v2', '2026-11-26T10:05:00Z'),
      change('M-2', 'Two v1', '2026-11-26T10:01:00Z'), // late: older than the change before it
      change('M-3', 'Three', '2026-11-26T10:00:00Z'),
    ]);
    const seen = await drain(h);
    assert.equal(seen.size, 4);
    assert.equal((await getAccount('M-1'))?.name, 'One');
    assert.ok((await getAccount('M-1'))?._ferry_regionid_value, 'the lookup is bound as in the batch path');
    assert.equal((await getAccount('M-2'))?.name, 'Two v2', 'the older change never overwrites the newer');
    assert.equal(h.counts.upserted, 3);
    assert.equal(h.counts.stale + h.counts.superseded, 1);
    assert.deepEqual(await queue.peek('accounts', 10), []);

    // The same older change again, alone, in a later micro-batch: stale against the applied versions.
    await queue.send('accounts', [change('M-2', 'Two v1 again', '2026-11-26T10:01:00Z')]);
    const again = await drain(h);
    assert.deepEqual([...again.values()][0], [{ kind: 'complete', result: 'stale' }]);
    assert.equal((await getAccount('M-2'))?.name, 'Two v2');
  } finally {
    await h.close();
  }
});

test('every change of a record is written, in order, one per request; a late older change is stale', async () => {
  const applied: string[] = [];
  const h = await handler(5, (rows) => applied.push(...rows.map((r) => `${r.key} ${r.version.slice(11, 16)}`)));
  try {
    await queue.send('accounts', [
      change('C-1', 'C1 v1', '2026-11-26T10:01:00Z'),
      change('C-2', 'C2 v1', '2026-11-26T10:01:00Z'),
      change('C-1', 'C1 v2', '2026-11-26T10:02:00Z'),
      change('C-1', 'C1 v4', '2026-11-26T10:04:00Z'),
      change('C-1', 'C1 v3', '2026-11-26T10:03:00Z'), // late
      change('C-2', 'C2 v2', '2026-11-26T10:02:00Z'),
      change('C-1', 'C1 v5', '2026-11-26T10:05:00Z'),
    ]);
    const seen = await drain(h);
    assert.equal(seen.size, 7);
    // One micro-batch, no collapsing: each record's changes reach Dataverse one after another, oldest first.
    assert.deepEqual(
      applied.filter((a) => a.startsWith("accountnumber='C-1'")),
      ['10:01', '10:02', '10:04', '10:05'].map((t) => `accountnumber='C-1' ${t}`),
    );
    assert.deepEqual(
      applied.filter((a) => a.startsWith("accountnumber='C-2'")),
      ['10:01', '10:02'].map((t) => `accountnumber='C-2' ${t}`),
    );
    assert.equal(h.counts.upserted, 6);
    assert.equal(h.counts.stale, 1);
    assert.equal(h.counts.superseded, 0);
    assert.equal((await getAccount('C-1'))?.name, 'C1 v5');
    assert.equal((await getAccount('C-2'))?.name, 'C2 v2');
  } finally {
    await h.close();
  }
});

test('redelivered changes of a record collapse to the newest of them (a kill after an upsert never re-sends an older one after it)', async () => {
  const applied: string[] = [];
  const h = await handler(5, (rows) => applied.push(...rows.map((r) => r.messageId)));
  try {
    await queue.send('accounts', [
      { ...change('C-3', 'C3 v1', '2026-11-26T10:01:00Z'), messageId: 'c3-v1' },
      { ...change('C-3', 'C3 v2', '2026-11-26T10:02:00Z'), messageId: 'c3-v2' },
      { ...change('C-3', 'C3 v3', '2026-11-26T10:03:00Z'), messageId: 'c3-v3' },
    ]);
    // A receiver that dies after taking them: the lock is given up, every message comes again (delivery 2).
    const session = await queue.acceptNextSession('accounts', { maxWaitMs: 1000 });
    assert.equal((await session!.receive(10, 0)).length, 3);
    for (const m of await queue.peek('accounts', 10)) assert.equal(m.sessionId, 'C-3');
    await session!.close();
    const seen = await drain(h);
    assert.deepEqual(applied, ['c3-v3']);
    assert.deepEqual(seen.get('c3-v1'), [{ kind: 'complete', result: 'superseded' }]);
    assert.deepEqual(seen.get('c3-v2'), [{ kind: 'complete', result: 'superseded' }]);
    assert.equal((await getAccount('C-3'))?.name, 'C3 v3');
  } finally {
    await h.close();
  }
});

test('a change that fails transiently does not hold back the newer ones; redelivered, it is stale', async () => {
  const h = await handler(5);
  try {
    await queue.send('accounts', [
      { ...change('C-4', 'C4 v1', '2026-11-26T10:01:00Z', 'NOWHERE'), messageId: 'c4-v1' },
      { ...change('C-4', 'C4 v2', '2026-11-26T10:02:00Z'), messageId: 'c4-v2' },
    ]);
    const seen = await drain(h);
    assert.equal(seen.get('c4-v1')?.[0]?.kind, 'abandon');
    assert.equal((seen.get('c4-v1')?.[0] as { reason?: string } | undefined)?.reason, 'lookup.target_missing');
    assert.deepEqual(seen.get('c4-v1')?.at(-1), { kind: 'complete', result: 'stale' });
    assert.deepEqual(seen.get('c4-v2'), [{ kind: 'complete', result: 'upserted' }]);
    assert.equal((await getAccount('C-4'))?.name, 'C4 v2');
    assert.equal((await queue.peekDeadLetters('accounts', 50)).filter((d) => d.sessionId === 'C-4').length, 0);
  } finally {
    await h.close();
  }
});

test('a conversion reject and a malformed message go to the error store and the dead-letter queue, with an alert', async () => {
  const h = await handler();
  try {
    alerts.length = 0;
    await queue.send('accounts', [
      change('M-4', 'x'.repeat(200), '2026-11-26T11:00:00Z'),
      { sessionId: 'junk', body: { hello: 'world' } },
      {
        sessionId: 'M-5',
        body: {
          type: 'ferry.inbound.change',
          key: { account_no: 'M-5' },
          changedAt: '2026-11-26T11:00:00Z',
          columns: {},
        },
      },
    ]);
    await drain(h);
    const dead = await queue.peekDeadLetters('accounts', 10);
    const reasons = new Map(dead.map((d) => [d.sessionId, d.deadLetterReason]));
    assert.equal(reasons.get('M-4'), 'string.too_long', 'the same reason code as the batch path');
    assert.equal(reasons.get('junk'), 'message.invalid');
    assert.equal(reasons.get('M-5'), 'message.missing_columns');
    const rejects = state.listRejects({ runId: h.runId! });
    const tooLong = rejects.find((r) => r.reason === 'string.too_long');
    assert.ok(tooLong);
    assert.equal(tooLong.key, 'accountnumber=M-4');
    assert.match(tooLong.sourceFile!, /^queue:accounts\//);
    assert.equal((tooLong.row as Record<string, unknown>).account_name, 'x'.repeat(200));
    const invalid = rejects.find((r) => r.reason === 'message.invalid');
    assert.deepEqual(invalid?.requestPayload, { hello: 'world' });
    assert.equal(state.getRun(h.runId!)?.mode, 'listen');
    assert.deepEqual(
      new Set(alerts.map((a) => a.reason)),
      new Set(['string.too_long', 'message.invalid', 'message.missing_columns']),
    );
    assert.ok(alerts.every((a) => a.kind === 'dead_lettered' && a.pipeline === 'accounts-listen'));
    assert.equal(await getAccount('M-4'), undefined);
  } finally {
    await h.close();
  }
});

test('a missing lookup target is retried with backoff, then dead-lettered as poison; replay re-sends it once fixed', async () => {
  const h = await handler(3);
  let runId: string;
  try {
    await queue.send('accounts', [change('M-6', 'Six', '2026-11-26T12:00:00Z', 'WEST')]);
    const seen = await drain(h);
    const outcomes = [...seen.values()][0]!;
    assert.deepEqual(
      outcomes.map((o) => o.kind),
      ['abandon', 'abandon', 'dead-letter'],
    );
    assert.equal((outcomes[0] as { reason: string }).reason, 'lookup.target_missing');
    const dead = (await queue.peekDeadLetters('accounts', 20)).find((d) => d.sessionId === 'M-6');
    assert.equal(dead?.deadLetterReason, 'MaxDeliveryCountExceeded');
    runId = h.runId!;
    const [poison] = state.listRejects({ runId, reason: 'message.max_deliveries' });
    assert.ok(poison, 'the poison message is in the error store');
  } finally {
    await h.close();
  }
  // The cause is fixed (the region arrives); `ferry replay --run <listener run>` re-sends the row.
  await writeParquet(
    'inbound/regions/2026-11-26T12-00-00Z.parquet',
    `SELECT * FROM (VALUES ('WEST', 'West', NULL::VARCHAR, TIMESTAMP '2026-11-26 12:00:00')) t(region_code, region_name, parent_region_code, modified_at)`,
  );
  assert.equal(
    (
      await runPipeline(regions, {
        openStaging: (dir: string) => openRunStaging(dir, {}),
        ...base,
        mode: 'manual',
      })
    ).counts.upserted,
    1,
  );
  const replay = await runReplay(accounts, { ...base, runId, reason: 'message.max_deliveries' });
  assert.equal(replay.report.status, 'succeeded', JSON.stringify(replay.report.error));
  assert.equal(replay.resolved, 1);
  assert.equal((await getAccount('M-6'))?.name, 'Six');
});

test('batch file then older message: the message is stale; message then older batch row: the row is stale', async () => {
  // Interleaving 1: the batch path applies 13:00, then a 12:30 message for the same key arrives.
  await writeParquet(
    'in/accounts/2026-11-26T13-00-00Z.parquet',
    `SELECT * FROM (VALUES ('B-1', 'Batch newer', NULL::VARCHAR, TIMESTAMP '2026-11-26 13:00:00')) t(account_no, account_name, region_code, modified_at)`,
  );
  const run1 = await runPipeline(accounts, {
    openStaging: (dir: string) => openRunStaging(dir, {}),
    ...base,
    mode: 'manual',
  });
  assert.equal(run1.counts.upserted, 1, JSON.stringify(run1));
  const h = await handler();
  try {
    await queue.send('accounts', [change('B-1', 'Message older', '2026-11-26T12:30:00Z')]);
    const seen1 = await drain(h);
    assert.deepEqual([...seen1.values()][0], [{ kind: 'complete', result: 'stale' }]);
    assert.equal((await getAccount('B-1'))?.name, 'Batch newer');

    // Interleaving 2: a 14:00 message is applied, then a batch file with 13:30 for the same key.
    await queue.send('accounts', [change('B-2', 'Message newer', '2026-11-26T14:00:00Z')]);
    await drain(h);
    assert.equal((await getAccount('B-2'))?.name, 'Message newer');
  } finally {
    await h.close();
  }
  await writeParquet(
    'in/accounts/2026-11-26T13-30-00Z.parquet',
    `SELECT * FROM (VALUES ('B-2', 'Batch older', NULL::VARCHAR, TIMESTAMP '2026-11-26 13:30:00')) t(account_no, account_name, region_code, modified_at)`,
  );
  const run2 = await runPipeline(accounts, {
    openStaging: (dir: string) => openRunStaging(dir, {}),
    ...base,
    mode: 'manual',
  });
  assert.equal(run2.status, 'succeeded', JSON.stringify(run2.error));
  assert.equal(run2.counts.upserted, 0);
  assert.equal(run2.counts.skippedStale, 1);
  assert.equal((await getAccount('B-2'))?.name, 'Message newer');
});

test('a message and a batch row with the same values give the same payload or the same reject', async () => {
  const rows = [
    ['S-1', 'Same', 'EAST'],
    ['S-2', 'y'.repeat(170), null],
    ['S-3', 'Bad region', 'NOPE/1'],
  ] as const;
  await writeParquet(
    'in/accounts/2026-11-26T15-00-00Z.parquet',
    `SELECT * FROM (VALUES ${rows.map(([n, name, r]) => `('${n}b', '${name}', ${r ? `'${r}'` : 'NULL::VARCHAR'}, TIMESTAMP '2026-11-26 15:00:00')`).join(', ')}) t(account_no, account_name, region_code, modified_at)`,
  );
  const run = await runPipeline(accounts, {
    openStaging: (dir: string) => openRunStaging(dir, {}),
    ...base,
    mode: 'manual',
  });
  const batchReasons = new Map(state.listRejects({ runId: run.runId }).map((r) => [r.key, r.reason]));
  const h = await handler(1);
  try {
    await queue.send(
      'accounts',
      rows.map(([n, name, r]) => change(`${n}m`, name, '2026-11-26T15:00:00Z', r)),
    );
    await drain(h);
    const messageReasons = new Map(state.listRejects({ runId: h.runId! }).map((r) => [r.key, r.reason]));
    for (const [n] of rows) {
      assert.equal(messageReasons.get(`accountnumber=${n}m`), batchReasons.get(`accountnumber=${n}b`), n);
      const viaBatch = await getAccount(`${n}b`);
      const viaMessage = await getAccount(`${n}m`);
      assert.equal(viaMessage?.name, viaBatch?.name);
      assert.equal(viaMessage?._ferry_regionid_value, viaBatch?._ferry_regionid_value);
    }
    assert.equal(batchReasons.get('accountnumber=S-2b'), 'string.too_long');
  } finally {
    await h.close();
  }
});

test('while a batch run holds the pipeline lease the listener waits, then applies', async () => {
  // Another machine's run: not judged dead, its lease simply expires.
  const held = state.acquireLease('pipeline:accounts-listen', 'other-host:4242', 1500);
  assert.ok(held);
  const h = await handler();
  try {
    await queue.send('accounts', [change('L-1', 'After the lease', '2026-11-26T16:00:00Z')]);
    const seen = await drain(h);
    assert.deepEqual(
      [...seen.values()][0],
      [{ kind: 'complete', result: 'upserted' }],
      'no delivery was spent waiting',
    );
    assert.equal((await getAccount('L-1'))?.name, 'After the lease');
  } finally {
    await h.close();
  }
});
