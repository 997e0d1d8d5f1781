/**
 * The real exported outbound pipelines (`synapse/`), run on the runtime over a Synapse Link CSV export (the fixture
 * `incremental-with-deletes`, in two ticks: a later folder adds two columns), against the local runner on the same
 * folders. Every SQL step runs through its DuckDB rendering (the step id in the artifact).
 * - review defect 5: columns bound and typed by each folder's model.json, a column added by a later folder; the
 *   labelled extract reads the labels of the newest folder of its window;
 * - defect 6: outputs in a folder per window and run; a rerun of the same window succeeds (CETAS never targets a
 *   folder holding data), a tick with no new folder writes nothing;
 * - defect 12 (outbound): FinishRun records the rows written;
 * - defect 14: typed Parquet (SinkModifiedOn a timestamp), deletes outside the data folder;
 * - both executors name the window folders the same way and hold the same rows; an empty Synapse Link folder (a
 *   retried export with no data) is left out of the window's name, as the local runner leaves it out of its window.
 */
import assert from 'node:assert/strict';
import { appendFileSync, cpSync, existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import accountsOutbound from '../../pipelines/accounts-outbound.js';
import contactsOutbound from '../../pipelines/contacts-outbound.js';
import { DuckDbStaging } from '../../src/dialects/duckdb/driver.js';
import type { SynapseRuntime } from '../../src/export/synapse/runtime/synapse-runtime.js';
import { OutboundSandbox } from '../outbound/helpers.js';
import { describeRun, openDeployedRuntime } from './real-export.js';

const FIXTURE = 'fixtures/synapse-link/incremental-with-deletes';
const LOCAL_FOLDER = 'synapse-link/dataverse-demo';
const F2 = '2026-01-01T00.30.00Z';
const F3 = '2026-01-01T00.45.00Z';
const F4 = '2026-01-01T01.00.00Z';

/** Parquet files under `dir` (recursive), relative paths. */
function parquetFiles(dir: string): string[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir, { recursive: true })
    .map(String)
    .filter((f) => f.endsWith('.parquet'))
    .sort();
}

/** Window folders of a warehouse table folder (direct children, not `_`/`.`-prefixed). */
function windowFolders(dir: string): string[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir, { withFileTypes: true })
    .filter((e) => e.isDirectory() && !e.name.startsWith('.') && !e.name.startsWith('_'))
    .map((e) => e.name)
    .sort();
}

describe('the exported outbound pipelines on the runtime, against the local runner', () => {
  let dir: string;
  let link: string;
  let warehouse: string;
  let rt: SynapseRuntime;
  let box: OutboundSandbox;
  let duck: DuckDbStaging;

  /** Rows of Parquet files, every value as text (timestamps as UTC wall time), in one order. */
  async function rows(files: readonly string[]): Promise<Record<string, string | null>[]> {
    if (files.length === 0) return [];
    const list = files.map((f) => `'${f.replaceAll("'", "''")}'`).join(', ');
    const got = await duck.all<Record<string, unknown>>(
      `SELECT COLUMNS(*)::VARCHAR FROM read_parquet([${list}], union_by_name = true) ORDER BY ALL`,
    );
    return got.map((r) =>
      Object.fromEntries(
        Object.entries(r).map(([k, v]) => [k, v === null ? null : String(v).replace(/\+00(:00)?$/, '')]),
      ),
    );
  }

  async function types(files: readonly string[]): Promise<Record<string, string>> {
    const list = files.map((f) => `'${f.replaceAll("'", "''")}'`).join(', ');
    const got = await duck.all<{ column_name: string; column_type: string }>(
      `DESCRIBE SELECT * FROM read_parquet([${list}], union_by_name = true)`,
    );
    return Object.fromEntries(got.map((r) => [r.column_name, r.column_type]));
  }

  /** Both copies of the export: the runtime's container and the local lake's folder. */
  function both(change: (root: string) => void): void {
    change(link);
    change(box.lakePath(LOCAL_FOLDER));
  }

  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'synapse-outbound-'));
    link = path.join(dir, 'link');
    warehouse = path.join(dir, 'warehouse');
    cpSync(FIXTURE, link, { recursive: true });
    box = new OutboundSandbox();
    box.copy('synapse-link/incremental-with-deletes', LOCAL_FOLDER);
    duck = await DuckDbStaging.open();
    await duck.run(`SET TimeZone = 'UTC'`);
    // A label renamed in the newest folder (alphabetically before the old one, so MAX(label) would keep the old),
    // and a stale root OptionsetMetadata that neither executor may read.
    both((root) => {
      const file = path.join(root, F3, 'OptionsetMetadata', 'OptionsetMetadata.csv');
      writeFileSync(
        file,
        readFileSync(file, 'utf8').replace(
          'account,industrycode,2,False,1033,Agriculture and Non-petrol Natural Resource Extraction',
          'account,industrycode,2,False,1033,Agri (renamed)',
        ),
      );
      appendFileSync(path.join(root, 'OptionsetMetadata', 'OptionsetMetadata.csv'), '');
      // The first tick sees 00.45 still being written.
      writeFileSync(path.join(root, 'Changelog', 'changelog.info'), F3);
    });
    rt = await openDeployedRuntime({
      workspaceDir: path.join(dir, 'ws'),
      startTime: '2026-01-01T01:05:00Z',
      fileSystems: (settings) => ({
        [settings.synapseLinkFileSystem]: link,
        [settings.warehouseFileSystem]: warehouse,
      }),
    });
  });
  after(async () => {
    await rt.close();
    await duck.close();
    box.close();
    await rm(dir, { recursive: true, force: true });
  });

  async function tick(): Promise<{ synapse: Record<string, number>; local: Record<string, number> }> {
    const synapse: Record<string, number> = {};
    const local: Record<string, number> = {};
    for (const [pipeline, def] of [
      ['pl_accounts_outbound', accountsOutbound],
      ['pl_contacts_outbound', contactsOutbound],
    ] as const) {
      const run = await rt.runPipeline(pipeline, { mode: 'manual' });
      assert.equal(run.status, 'Succeeded', describeRun(run));
      const [row] = await rt.services.sql.duck.all<{ counts_json: string }>(
        `SELECT counts_json FROM ferry.runs WHERE id = '${run.runId}'`,
      );
      synapse[def.name] = JSON.parse(row!.counts_json).written;
      const report = await box.run(def);
      assert.equal(report.status, 'succeeded', report.error?.message);
      local[def.name] = report.counts.written;
    }
    return { synapse, local };
  }

  /** Same window folders, same rows (every column) in each, data and deletes, for every output. */
  async function assertSameWarehouse(): Promise<void> {
    for (const output of ['account', 'account_labelled', 'contact']) {
      const windows = windowFolders(box.warehouse(output));
      assert.deepEqual(windowFolders(path.join(warehouse, output)), windows, `${output}: window folders`);
      for (const w of windows) {
        const localFiles = parquetFiles(box.warehouse(output, w)).map((f) => box.warehouse(output, w, f));
        const localData = localFiles.filter((f) => !path.basename(f).startsWith('deletes-'));
        const localDeletes = localFiles.filter((f) => path.basename(f).startsWith('deletes-'));
        const synData = parquetFiles(path.join(warehouse, output, w)).map((f) => path.join(warehouse, output, w, f));
        const delDir = path.join(warehouse, `${output}_deletes`, w);
        const synDeletes = parquetFiles(delDir).map((f) => path.join(delDir, f));
        assert.deepEqual(await rows(synData), await rows(localData), `${output}/${w}: rows`);
        assert.deepEqual(await rows(synDeletes), await rows(localDeletes), `${output}/${w}: deletes`);
      }
    }
  }

  it('tick 1 (two folders): same folders and rows as the local runner, typed, labels of the window', async () => {
    const counts = await tick();
    assert.deepEqual(counts.synapse, counts.local, 'FinishRun records the rows written, as the local run counts them');
    assert.ok(counts.synapse['accounts-outbound']! > 0);
    await assertSameWarehouse();
    const w = `2026-01-01T00.15.00Z_${F2}`;
    const files = parquetFiles(path.join(warehouse, 'account', w)).map((f) => path.join(warehouse, 'account', w, f));
    const t = await types(files);
    assert.equal(t.SinkModifiedOn, 'TIMESTAMP', 'SinkModifiedOn is a timestamp, not M/d/yyyy text');
    assert.equal(t.versionnumber, 'BIGINT');
    assert.equal(t.revenue, 'DECIMAL(38,4)');
    assert.equal(t.IsDelete, 'BOOLEAN');
    const got = await rows(files);
    const a3 = got.find((r) => r.accountnumber === 'A-003')!;
    assert.equal(a3.description, 'retried copy', 'same version: the latest SinkModifiedOn wins');
    assert.equal(a3.SinkModifiedOn, '2026-01-01 00:29:30');
    // Published: the manifest, written last, names the run and its rows (a run folder without one is unpublished).
    const [runFolder] = windowFolders(path.join(warehouse, 'account', w));
    const manifestDir = path.join(warehouse, '_manifests', 'account', w, runFolder!);
    const manifest = await rows(
      parquetFiles(manifestDir)
        .map((f) => path.join(manifestDir, f))
        .map(String),
    );
    assert.equal(manifest.length, 1);
    assert.equal(manifest[0]!.run_id, runFolder);
    assert.equal(manifest[0]!.window_name, w);
    assert.equal(Number(manifest[0]!.rows_written), got.filter((r) => r.IsDelete === 'false').length);
    // Contact deletes are not in the data folder: a recursive reader of contact/ reads rows of one schema.
    assert.ok(!parquetFiles(path.join(warehouse, 'contact')).some((f) => f.includes('deletes')));
  });

  it('tick 2: a later folder adds columns; labels come from the newest folder of the window', async () => {
    both((root) => writeFileSync(path.join(root, 'Changelog', 'changelog.info'), F4));
    const counts = await tick();
    assert.deepEqual(counts.synapse, counts.local);
    await assertSameWarehouse();
    const files = parquetFiles(path.join(warehouse, 'account', F3)).map((f) => path.join(warehouse, 'account', F3, f));
    const a4 = (await rows(files)).find((r) => r.accountnumber === 'A-004')!;
    assert.equal(a4.creditlimit, '12345678901234567.89');
    assert.equal(a4.donotphone, 'true');
    const labelled = parquetFiles(path.join(warehouse, 'account_labelled', F3)).map((f) =>
      path.join(warehouse, 'account_labelled', F3, f),
    );
    const l4 = (await rows(labelled)).find((r) => r.accountnumber === 'A-004')!;
    assert.equal(l4.industrycode_label, 'Agri (renamed)');
    // The contact delete of 00.45 is in contact_deletes/, with the data's columns.
    const deletes = parquetFiles(path.join(warehouse, 'contact_deletes', F3));
    assert.equal(deletes.length > 0, true);
  });

  it('tick 3: a window without contact changes — empty outputs with the root model.json columns on both sides', async () => {
    both((root) => {
      // 01.00 completes with account rows only (its model.json lists contact without partitions), 01.15 starts.
      const model = JSON.parse(readFileSync(path.join(root, F3, 'model.json'), 'utf8'));
      for (const e of model.entities) if (e.name === 'contact') e.partitions = [];
      writeFileSync(path.join(root, F4, 'model.json'), JSON.stringify(model));
      writeFileSync(path.join(root, 'Changelog', 'changelog.info'), '2026-01-01T01.15.00Z');
    });
    const counts = await tick();
    assert.deepEqual(counts.synapse, counts.local);
    assert.equal(counts.synapse['contacts-outbound'], 0);
    await assertSameWarehouse();
    const labelled = parquetFiles(path.join(warehouse, 'account_labelled', F4)).map((f) =>
      path.join(warehouse, 'account_labelled', F4, f),
    );
    assert.equal((await rows(labelled)).find((r) => r.accountnumber === 'A-004')?.name, 'Northwind late');
  });

  it('an empty retry folder in the window: both executors name the window after the folders holding data', async () => {
    const empty = '2026-01-01T01.15.00Z';
    const data = '2026-01-01T01.30.00Z';
    both((root) => {
      // A retried export left 01.15 without any file; 01.30 holds data; 01.45 is being written.
      mkdirSync(path.join(root, empty, 'account'), { recursive: true });
      cpSync(path.join(root, F4), path.join(root, data), { recursive: true });
      writeFileSync(path.join(root, 'Changelog', 'changelog.info'), '2026-01-01T01.45.00Z');
    });
    const counts = await tick();
    assert.deepEqual(counts.synapse, counts.local);
    assert.ok(counts.synapse['accounts-outbound']! > 0);
    await assertSameWarehouse();
    for (const output of ['account', 'account_labelled', 'contact']) {
      const windows = windowFolders(path.join(warehouse, output));
      assert.ok(windows.includes(data), `${output}: the window is named \`${data}\` (got ${windows.join(', ')})`);
      assert.ok(!windows.some((w) => w.includes(empty)), `${output}: no window name holds the empty folder`);
    }
    const manifests = windowFolders(path.join(warehouse, '_manifests', 'account'));
    assert.ok(manifests.includes(data) && !manifests.some((w) => w.includes(empty)));
    // The cursor is the last folder with data: the next tick (nothing new) writes nothing.
    const before = parquetFiles(warehouse);
    const again = await tick();
    assert.deepEqual(again.synapse, { 'accounts-outbound': 0, 'contacts-outbound': 0 });
    assert.deepEqual(parquetFiles(warehouse), before);
  });

  it('a tick with no new folder writes nothing and records 0 rows; a rerun of a window writes a new run folder', async () => {
    const before = parquetFiles(warehouse);
    const counts = await tick();
    assert.deepEqual(counts.synapse, { 'accounts-outbound': 0, 'contacts-outbound': 0 });
    assert.deepEqual(parquetFiles(warehouse), before);
    // A manual rerun of the last window (a retry after a failed FinishRun, a repair): no CETAS refusal.
    const rerun = await rt.runPipeline('pl_accounts_outbound', {
      mode: 'manual',
      windowStart: '2026-01-01T00:40:00Z',
      windowEnd: '2026-01-01T00:50:00Z',
    });
    assert.equal(rerun.status, 'Succeeded', describeRun(rerun));
    const runs = windowFolders(path.join(warehouse, 'account', F3));
    assert.equal(runs.length, 2, 'one folder per run that wrote the window');
  });
});
