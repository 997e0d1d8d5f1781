import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { LocalLake } from '../../src/connectors/lake/local-lake.js';
import { SqliteStateStore } from '../../src/connectors/state/sqlite-state-store.js';
import { resolveConfig } from '../../src/core/config.js';
import { silentLogger } from '../../src/core/log.js';
import { definePipeline } from '../../src/core/pipeline.js';
import { runPipeline } from '../../src/core/runner.js';
import { DuckDbStaging, openRunStaging } from '../../src/dialects/duckdb/driver.js';
import { type RunningEmulator, startEmulator } from '../../src/emulator/server.js';
import { runBackfill } from '../../src/schedule/backfill.js';
import { convertToDataverse } from '../../src/stages/convert-to-dataverse.js';
import { readParquetDeltas } from '../../src/stages/read-parquet-deltas.js';
import { readSynapseLink } from '../../src/stages/read-synapse-link.js';
import { stageRegistry } from '../../src/stages/registry.js';
import { runSqlExtract } from '../../src/stages/run-sql-extract.js';
import { upsertDataverse } from '../../src/stages/upsert-dataverse.js';
import { writeParquet } from '../../src/stages/write-parquet.js';

// Backfills over windows the scheduled runs already processed, with the real stages: nothing changes.
const ROOT = path.resolve(import.meta.dirname, '../..');
const METADATA = path.join(ROOT, 'fixtures', 'metadata');
let dir: string;
let emulator: RunningEmulator;
let state: SqliteStateStore;
let base: Omit<Parameters<typeof runPipeline>[1], 'mode'>;

before(async () => {
  dir = await fs.mkdtemp(path.join(os.tmpdir(), 'ferry-backfill-real-'));
  emulator = await startEmulator({ metadataDir: METADATA });
  const config = resolveConfig(
    { lake: path.join(dir, 'lake'), state: path.join(dir, 'state'), metadata: METADATA },
    {},
  );
  state = SqliteStateStore.openIn(config.state);
  base = {
    config,
    lake: new LocalLake(config.lake),
    state,
    registry: stageRegistry,
    log: silentLogger,
    services: { dataverse: { url: emulator.url }, openStaging: openRunStaging },
  };
});

after(async () => {
  state.close();
  await emulator.close();
  await fs.rm(dir, { recursive: true, force: true });
});

test('inbound backfill over processed windows: Dataverse unchanged, cursor unchanged', async () => {
  const accounts = definePipeline({
    name: 'accounts-bf',
    direction: 'inbound',
    stages: [
      readParquetDeltas({ folder: 'in/accounts' }),
      convertToDataverse({
        table: 'account',
        key: ['accountnumber'],
        changeTimestamp: 'modified_at',
        columns: { accountnumber: 'account_no', name: 'account_name' },
      }),
      upsertDataverse({ table: 'account' }),
    ],
  });
  const duck = await DuckDbStaging.open({ memoryLimit: '128MB' });
  try {
    await fs.mkdir(path.join(dir, 'lake', 'in', 'accounts'), { recursive: true });
    for (const [stamp, rows] of [
      [
        '2026-11-26T09-00-00Z',
        `('B-1', 'One', TIMESTAMP '2026-11-26 09:00:00'), ('B-2', 'Two', TIMESTAMP '2026-11-26 09:00:00')`,
      ],
      [
        '2026-11-26T09-20-00Z',
        `('B-1', 'One v2', TIMESTAMP '2026-11-26 09:20:00'), ('B-3', 'Three', TIMESTAMP '2026-11-26 09:20:00')`,
      ],
    ] as const) {
      const file = path.join(dir, 'lake', 'in', 'accounts', `${stamp}.parquet`);
      await duck.run(
        `COPY (SELECT * FROM (VALUES ${rows}) t(account_no, account_name, modified_at)) TO '${file}' (FORMAT PARQUET)`,
      );
    }
  } finally {
    await duck.close();
  }
  const scheduled = await runPipeline(accounts, {
    openStaging: (dir: string) => openRunStaging(dir, {}),
    ...base,
    mode: 'scheduled',
  });
  assert.equal(scheduled.status, 'succeeded', JSON.stringify(scheduled.error));
  assert.equal(scheduled.counts.upserted, 3);
  // Ids, values and version numbers: the backfill sends nothing Dataverse already has (versions not newer than the
  // applied ones are skipped), so not even versionNumber moves.
  const snapshot = () =>
    emulator.store
      .rows('account')
      .map((r) =>
        JSON.stringify({
          id: r.id,
          versionNumber: r.versionNumber,
          modifiedOn: r.modifiedOn,
          attributes: r.attributes,
        }),
      )
      .sort();
  const before = snapshot();
  const processed = [...state.processedItems('accounts-bf', 'lake:in/accounts').entries()];

  const result = await runBackfill(accounts, {
    ...base,
    from: '2026-11-26T09:00:00Z',
    to: '2026-11-26T10:00:00Z',
    windowMs: 15 * 60_000,
  });
  assert.equal(result.status, 'succeeded');
  assert.deepEqual(
    result.windows.map((w) => w.items),
    [1, 1, 0, 0],
  );
  const read = result.windows.reduce((n, w) => n + (w.counts?.read ?? 0), 0);
  const accounted = result.windows.reduce(
    (n, w) => n + (w.counts ? w.counts.upserted + w.counts.skippedStale + w.counts.rejected : 0),
    0,
  );
  assert.equal(read, 4);
  assert.equal(accounted, read, 'every row accounted for');
  assert.deepEqual(snapshot(), before, 'no change in Dataverse');
  assert.equal(
    result.windows.reduce((n, w) => n + (w.counts?.upserted ?? 0), 0),
    0,
    'nothing re-sent',
  );
  assert.deepEqual([...state.processedItems('accounts-bf', 'lake:in/accounts').entries()], processed);
});

test('outbound backfill over a processed Synapse Link window writes byte-identical warehouse files', async () => {
  await fs.cp(
    path.join(ROOT, 'fixtures', 'synapse-link', 'incremental-with-deletes'),
    path.join(dir, 'lake', 'synapse-link', 'sl'),
    { recursive: true },
  );
  const outbound = definePipeline({
    name: 'accounts-out-bf',
    direction: 'outbound',
    stages: [
      readSynapseLink({ folder: 'synapse-link/sl', format: 'csv', tables: ['account'] }),
      runSqlExtract({ table: 'account', query: 'default' }),
      writeParquet({ target: 'warehouse', deletes: 'flag-column', uuidAs: 'string' }),
    ],
  });
  const scheduled = await runPipeline(outbound, {
    openStaging: (dir: string) => openRunStaging(dir, {}),
    ...base,
    mode: 'scheduled',
  });
  assert.equal(scheduled.status, 'succeeded', JSON.stringify(scheduled.error));
  assert.ok(scheduled.counts.written > 0);
  const warehouse = path.join(dir, 'lake', 'warehouse');
  const files = async () => {
    const out: Record<string, string> = {};
    for (const f of (await fs.readdir(warehouse, { recursive: true })).sort()) {
      const abs = path.join(warehouse, f);
      if (!(await fs.stat(abs)).isFile()) continue;
      const bytes = await fs.readFile(abs);
      // The manifest names the run that wrote it and its cursors; the data files must match byte for byte.
      if (f.endsWith('_manifest.json')) {
        const m = JSON.parse(bytes.toString('utf8'));
        out[f] = JSON.stringify({ ...m, runId: '-', window: { ...m.window, cursorBefore: '-', cursorAfter: '-' } });
      } else if (f.endsWith('_current.json')) {
        // The index of current windows names the run that wrote each window, too.
        const index = JSON.parse(bytes.toString('utf8'));
        out[f] = JSON.stringify({ ...index, windows: index.windows.map((w: object) => ({ ...w, runId: '-' })) });
      } else {
        out[f] = createHash('sha256').update(bytes).digest('hex');
      }
    }
    return out;
  };
  const before = await files();
  assert.ok(Object.keys(before).some((f) => f.endsWith('.parquet')));
  const cursor = state.getCursor('accounts-out-bf', 'synapse-link:synapse-link/sl');
  // One window over the whole range: the same items as the scheduled run, so the same window name and files.
  const result = await runBackfill(outbound, {
    ...base,
    from: '2026-01-01T00:00:00Z',
    to: '2026-01-01T02:00:00Z',
    windowMs: 2 * 3_600_000,
  });
  assert.equal(result.status, 'succeeded', JSON.stringify(result.windows));
  assert.equal(result.windows[0]!.items, scheduled.window.items);
  assert.deepEqual(await files(), before);
  assert.equal(state.getCursor('accounts-out-bf', 'synapse-link:synapse-link/sl'), cursor);
});
