import assert from 'node:assert/strict';
import fs from 'node:fs';
import { afterEach, beforeEach, describe, it } from 'node:test';
import { silentLogger } from '../../src/core/log.js';
import { definePipeline } from '../../src/core/pipeline.js';
import { openRunStaging } from '../../src/dialects/duckdb/driver.js';
import { alignBackfillWindows, runBackfill } from '../../src/schedule/backfill.js';
import { readSynapseLink } from '../../src/stages/read-synapse-link.js';
import { stageRegistry } from '../../src/stages/registry.js';
import { runSqlExtract } from '../../src/stages/run-sql-extract.js';
import { CURRENT_INDEX_FILE, type WarehouseCurrentIndex, writeParquet } from '../../src/stages/write-parquet.js';
import { OutboundSandbox, readParquetRows } from './helpers.js';

// A backfill over a range the schedule already wrote, with other window sizes, must leave each record's latest state
// exactly once in the warehouse's current windows (`<table>/_current.json`), not add files next to the old ones.

const FOLDER = 'synapse-link/demo';
const F1 = '2026-01-01T00.15.00Z';
const F2 = '2026-01-01T00.30.00Z';
const F3 = '2026-01-01T00.45.00Z';
const A = (n: number) => `a000000${n}-0000-4000-8000-00000000000${n}`;
const MIN = 60_000;
// The latest version of each account over F1..F3 (F4 is still being written): A2's is its delete.
const LATEST = [
  { Id: A(1), versionnumber: 1007n, IsDelete: false },
  { Id: A(2), versionnumber: 1008n, IsDelete: true },
  { Id: A(3), versionnumber: 1003n, IsDelete: false },
  { Id: A(4), versionnumber: 1010n, IsDelete: false },
  { Id: A(5), versionnumber: 1011n, IsDelete: false },
];

function pipeline(maxFolders?: number) {
  return definePipeline({
    name: 'rewindow-test',
    direction: 'outbound',
    stages: [
      readSynapseLink({
        folder: FOLDER,
        format: 'csv',
        tables: ['account'],
        ...(maxFolders === undefined ? {} : { maxFolders }),
      }),
      runSqlExtract({ table: 'account', query: 'default' }),
      writeParquet({ deletes: 'flag-column' }),
    ],
  });
}

describe('outbound windows stay idempotent whatever their boundaries', () => {
  let box: OutboundSandbox;
  beforeEach(() => {
    box = new OutboundSandbox();
    box.copy('synapse-link/incremental-with-deletes', FOLDER);
  });
  afterEach(() => box.close());

  function index(): WarehouseCurrentIndex {
    return JSON.parse(fs.readFileSync(box.warehouse('account', CURRENT_INDEX_FILE), 'utf8')) as WarehouseCurrentIndex;
  }

  /** The rows of the current windows; also checks that no other Parquet file is left in the table folder. */
  async function current(): Promise<Record<string, unknown>[]> {
    const listed = index().windows.flatMap((w) => w.files);
    const onDisk = fs
      .readdirSync(box.warehouse('account'), { recursive: true })
      .map(String)
      .filter((f) => f.endsWith('.parquet'))
      .sort();
    assert.deepEqual(onDisk, [...listed].sort(), 'superseded window folders are gone');
    return readParquetRows(
      listed.map((f) => box.warehouse('account', f)),
      'Id, versionnumber, IsDelete',
      'Id, versionnumber',
    );
  }

  async function backfill(windowMin: number, def = pipeline()) {
    const result = await runBackfill(def, {
      config: box.config,
      lake: box.lake,
      state: box.state,
      registry: stageRegistry,
      openStaging: (dir: string) => openRunStaging(dir, {}),
      log: silentLogger,
      from: '2026-01-01T00:15:00Z',
      to: '2026-01-01T01:00:00Z',
      windowMs: windowMin * MIN,
    });
    assert.equal(result.status, 'succeeded', JSON.stringify(result.windows.map((w) => w.error)));
    return result;
  }

  it('a scheduled hour, then backfills of 15, 60 and 30 minutes: one current window, each latest state once', async () => {
    const scheduled = await box.run(pipeline(), 'scheduled');
    assert.equal(scheduled.status, 'succeeded', scheduled.error?.message);
    const before = await current();
    assert.deepEqual(before, LATEST);
    const bytes = fs.readFileSync(box.warehouse('account', `${F1}_${F3}`, 'part-00000.parquet'));
    for (const size of [15, 60, 30]) {
      await backfill(size);
      assert.deepEqual(
        index().windows.map((w) => [w.name, w.items]),
        [[`${F1}_${F3}`, [F1, F2, F3]]],
        `after the ${size}-minute backfill`,
      );
      assert.deepEqual(await current(), LATEST);
      assert.ok(bytes.equals(fs.readFileSync(box.warehouse('account', `${F1}_${F3}`, 'part-00000.parquet'))));
    }
  });

  it('scheduled 15-minute windows, then a one-hour backfill supersedes them, then 15 and 30 minutes keep it', async () => {
    const def = pipeline(1);
    for (let i = 0; i < 3; i++) assert.equal((await box.run(def, 'scheduled')).status, 'succeeded');
    assert.deepEqual(
      index().windows.map((w) => w.name),
      [F1, F2, F3],
    );
    // (Three windows are three change sets: A3's retried copy of version 1003 is in F1 and F2, so in both windows.)
    await backfill(60, pipeline());
    assert.deepEqual(
      index().windows.map((w) => w.name),
      [`${F1}_${F3}`],
    );
    assert.deepEqual(await current(), LATEST);
    for (const size of [15, 30]) {
      const result = await backfill(size);
      assert.equal(result.windows.length, 1, 'the backfill window covers the current window whole');
      assert.deepEqual(await current(), LATEST);
    }
  });

  it('a superseded folder left by a run killed after the index was written goes with the next write', async () => {
    const def = pipeline(1);
    for (let i = 0; i < 3; i++) assert.equal((await box.run(def, 'scheduled')).status, 'succeeded');
    const saved = fs.mkdtempSync(`${box.dir}/saved-`);
    fs.cpSync(box.warehouse('account', F2), saved, { recursive: true });
    await backfill(60);
    // As if killed at write-parquet:before-supersede: the index names the new window, an old folder is still there.
    fs.cpSync(saved, box.warehouse('account', F2), { recursive: true });
    assert.deepEqual(
      index().windows.map((w) => w.name),
      [`${F1}_${F3}`],
    );
    await backfill(30);
    assert.equal(fs.existsSync(box.warehouse('account', F2)), false);
    assert.deepEqual(await current(), LATEST);
  });

  it('a backfill window never cuts through a current window: edges inside one are dropped, the range widened', () => {
    const windows = [
      { index: 0, from: '2026-01-01T00:00:00Z', to: '2026-01-01T00:15:00Z' },
      { index: 1, from: '2026-01-01T00:15:00Z', to: '2026-01-01T00:30:00Z' },
      { index: 2, from: '2026-01-01T00:30:00Z', to: '2026-01-01T00:45:00Z' },
      { index: 3, from: '2026-01-01T00:45:00Z', to: '2026-01-01T01:00:00Z' },
    ];
    assert.deepEqual(
      alignBackfillWindows(windows, [
        { first: '2026-01-01T00:15:00Z', last: '2026-01-01T00:45:00Z' },
        { first: '2026-01-01T00:50:00Z', last: '2026-01-01T01:05:00Z' },
      ]).map((w) => `${w.index} ${w.from}..${w.to}`),
      ['0 2026-01-01T00:00:00Z..2026-01-01T00:15:00Z', '1 2026-01-01T00:15:00Z..2026-01-01T01:05:01Z'],
    );
    // A range starting inside a current window starts at its first item; spans of one item never split.
    assert.deepEqual(
      alignBackfillWindows(windows.slice(2), [
        { first: '2026-01-01T00:15:00Z', last: '2026-01-01T00:30:00Z' },
        { first: '2026-01-01T00:45:00Z', last: '2026-01-01T00:45:00Z' },
      ]).map((w) => `${w.from}..${w.to}`),
      ['2026-01-01T00:15:00Z..2026-01-01T00:45:00Z', '2026-01-01T00:45:00Z..2026-01-01T01:00:00Z'],
    );
  });
});
