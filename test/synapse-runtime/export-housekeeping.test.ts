/**
 * The exported housekeeping pipeline and trigger (issue 12 "housekeeping of staging tables and old outputs"), run on
 * the runtime: staging tables of idle pipelines dropped, state rows past retention deleted, warehouse window folders
 * older than the retention deleted through the Delete activity — never the newest folder of an output — in the
 * output's data folder, its deletes folder (`<output>_deletes/`) and its run manifests (`_manifests/<output>/`).
 */
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { loadPipelines } from '../../src/core/pipeline-loader.js';
import { loadExportSettings, mergeSettings } from '../../src/export/synapse/export-settings.js';
import {
  HOUSEKEEPING_PIPELINE,
  HOUSEKEEPING_TRIGGER,
  warehouseOutputs,
  warehouseWindowRoots,
} from '../../src/export/synapse/housekeeping-pipeline.js';
import { ArtifactStore } from '../../src/export/synapse/runtime/artifact-store.js';
import { SynapseRuntime } from '../../src/export/synapse/runtime/synapse-runtime.js';
import { synapseDataSources, synapseStepRenderings } from '../../src/export/synapse/step-renderings.js';
import { exportSynapse } from '../../src/export/synapse/synapse-exporter.js';
import { describeRun } from './real-export.js';

const NOW = '2026-12-06T12:00:00Z';

describe('the exported housekeeping pipeline, run on the runtime', () => {
  let dir: string;
  let warehouse: string;
  let rt: SynapseRuntime;
  let outputs: string[];
  let roots: Map<string, string[]>;
  const sql = <T extends Record<string, unknown>>(q: string) => rt.services.sql.duck.all<T>(q);
  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'synapse-housekeeping-'));
    warehouse = path.join(dir, 'warehouse');
    const defs = await loadPipelines('pipelines');
    // The checked-in settings keep every warehouse folder (the default); this workspace keeps 30 days.
    const base = await loadExportSettings('synapse/settings.json');
    const { $comment: _c, ...rest } = { ...base, $comment: '' };
    const settings = mergeSettings({ ...rest, warehouseRetentionDays: 30 });
    const exported = await exportSynapse(defs, {
      settings,
      metadataDir: 'fixtures/metadata',
      readExtract: (file) => readFile(file, 'utf8').catch(() => undefined),
    });
    outputs = warehouseOutputs(exported.steps ?? []);
    roots = warehouseWindowRoots(exported.steps ?? []);
    const objects: Record<string, { name: string; properties: object }[]> = {};
    for (const a of exported.artifacts) {
      objects[a.kind] = [...(objects[a.kind] ?? []), { name: a.name, properties: a.properties }];
    }
    rt = await SynapseRuntime.open({
      artifacts: ArtifactStore.fromObjects(objects),
      workspaceDir: dir,
      startTime: NOW,
      stepRenderings: await synapseStepRenderings(defs, { settings, metadataDir: 'fixtures/metadata' }),
      dataSources: synapseDataSources(settings),
      fileSystems: { [settings.warehouseFileSystem]: warehouse },
    });
    await rt.runSetup(['sql/tsql/setup/ferry-state.sql']);
  });
  after(async () => {
    await rt.close();
    await rm(dir, { recursive: true, force: true });
  });

  const windowFolder = async (output: string, name: string) => {
    await mkdir(path.join(warehouse, output, name, 'deletes'), { recursive: true });
    await writeFile(path.join(warehouse, output, name, 'part-00000.parquet'), 'x');
    await writeFile(path.join(warehouse, output, name, 'deletes', 'part-00000.parquet'), 'x');
  };
  const tables = async () =>
    (
      await sql<{ name: string }>(
        `SELECT table_name AS name FROM information_schema.tables WHERE table_name LIKE 'stg_%' ORDER BY 1`,
      )
    ).map((r) => r.name);

  it('drops staging of idle pipelines, expires state rows, deletes old window folders but the newest', async () => {
    assert.deepEqual(outputs.length >= 2, true, `outputs ${outputs}`);
    const [first, second] = outputs as [string, string];
    // Staging left by finished runs (accounts: its last run was cancelled 3 days ago) and a contacts run in progress.
    for (const t of [
      'stg_accounts_inbound_staged',
      'stg_accounts_inbound_sink',
      'stg_accounts_inbound_replay_claimed',
      'stg_contacts_inbound_staged',
      'stg_keymap_account_raw',
      'stg_currencies_inbound_work',
    ])
      await rt.services.sql.duck.run(`CREATE TABLE ${t} AS SELECT 1 AS x`);
    await rt.services.sql.duck.run(`CREATE VIEW stg_accounts_inbound_converted AS SELECT 1 AS x`);
    await rt.services.sql.duck.run(`CREATE TABLE stg_unrelated AS SELECT 1 AS x`);
    const run = (id: string, pipeline: string, status: string, started: string) =>
      rt.services.sql.duck.run(
        `INSERT INTO ferry.runs (id, pipeline, mode, status, window_json, started_at, counts_json, holder) VALUES ('${id}', '${pipeline}', 'scheduled', '${status}', '{}', '${started}', '{}', 'test')`,
      );
    await run('r-cancelled', 'accounts-inbound', 'running', '2026-12-03T10:00:00.000000');
    await run('r-now', 'contacts-inbound', 'running', '2026-12-06T11:30:00.000000');
    await run('r-old', 'currencies-inbound', 'succeeded', '2026-07-01T00:00:00.000000');
    await run('r-old-open', 'currencies-inbound', 'succeeded', '2026-07-02T00:00:00.000000');
    await run('r-old-cursor', 'currencies-inbound', 'succeeded', '2026-07-03T00:00:00.000000');
    await run('r-recent', 'currencies-inbound', 'succeeded', '2026-11-30T00:00:00.000000');
    await rt.services.sql.duck.run(
      `INSERT INTO ferry.cursors (pipeline, source, value, run_id, updated_at) VALUES ('currencies-inbound', 'lake:x', 'v', 'r-old-cursor', '2026-07-03T00:00:00')`,
    );
    const reject = (run: string, status: string, created: string) =>
      rt.services.sql.duck.run(
        `INSERT INTO ferry.rejects (run_id, pipeline, stage, reason, message, status, created_at) VALUES ('${run}', 'currencies-inbound', 'convert-to-dataverse', 'x', '${status} ${created}', '${status}', '${created}')`,
      );
    await reject('r-old', 'resolved', '2026-07-01T00:00:01.000000');
    await reject('r-old', 'superseded', '2026-07-01T00:00:02.000000');
    await reject('r-old-open', 'open', '2026-07-02T00:00:01.000000');
    await reject('r-recent', 'resolved', '2026-11-30T00:00:01.000000');
    // Window folders (named by window end, or `<first>_<last>`): the first output has old and recent ones, the
    // second only old ones, so its newest stays.
    for (const f of [
      '2026-10-01T00.15.00Z',
      '2026-10-02T00.00.00Z_2026-10-02T00.15.00Z',
      '2026-11-20T09.00.00Z',
      '2026-12-06T11.45.00Z',
    ])
      await windowFolder(first, f);
    for (const f of ['2026-09-01T00.15.00Z', '2026-09-02T00.15.00Z']) await windowFolder(second, f);

    const hk = await rt.runPipeline(HOUSEKEEPING_PIPELINE);
    assert.equal(hk.status, 'Succeeded', describeRun(hk));

    assert.deepEqual(await tables(), [
      'stg_contacts_inbound_staged', // its run is in progress
      'stg_keymap_account_raw', // shared key map: contacts-inbound (in progress) reads it
      'stg_unrelated', // not a table the export creates
    ]);
    assert.deepEqual(
      (await sql<{ message: string }>(`SELECT message FROM ferry.rejects ORDER BY id`)).map((r) => r.message),
      ['open 2026-07-02T00:00:01.000000', 'resolved 2026-11-30T00:00:01.000000'],
    );
    assert.deepEqual(
      (await sql<{ id: string }>(`SELECT id FROM ferry.runs ORDER BY id`)).map((r) => r.id),
      ['r-cancelled', 'r-now', 'r-old-cursor', 'r-old-open', 'r-recent'],
    );
    const expire = hk.activityRuns.find((a) => a.activityName === 'ExpireStateRows')?.output as {
      resultSets: { rows: Record<string, number>[] }[];
    };
    assert.deepEqual(expire.resultSets[0]!.rows[0], { rejects_deleted: 2, runs_deleted: 1 });
    assert.deepEqual((await readdir(path.join(warehouse, first))).sort(), [
      '2026-11-20T09.00.00Z',
      '2026-12-06T11.45.00Z',
    ]);
    assert.deepEqual((await readdir(path.join(warehouse, second))).sort(), [
      '2026-09-01T00.15.00Z',
      '2026-09-02T00.15.00Z',
    ]);
    const deletes = hk.activityRuns.filter(
      (a) => a.activityName === `DeleteWindowFolder_${first.replaceAll('-', '_')}`,
    );
    assert.deepEqual(
      deletes.map((a) => (a.output as { filesDeleted: number }).filesDeleted),
      [2, 2],
    );

    // A second run finds nothing more to do, and succeeds: housekeeping keeps retention, whatever it finds.
    const again = await rt.runPipeline(HOUSEKEEPING_PIPELINE);
    assert.equal(again.status, 'Succeeded', describeRun(again));
    assert.deepEqual((await readdir(path.join(warehouse, first))).length, 2);
  });

  it('expires the deletes and manifests of an output with its data windows, never those of the newest window', async () => {
    // The output whose extract writes deletes to their own folder (`separate-file`).
    const [output, own] = [...roots].find(([, r]) => r.length === 3)!;
    assert.deepEqual(own, [output, `${output}_deletes`, `_manifests/${output}`]);
    // A run folder per window, in each of the three folders (`<root>/<window>/<run id>/<file>`).
    const runFolder = async (root: string, window: string) => {
      await mkdir(path.join(warehouse, root, window, 'run-1'), { recursive: true });
      await writeFile(path.join(warehouse, root, window, 'run-1', 'part-00000.parquet'), 'x');
    };
    const old = ['2026-10-01T00.15.00Z', '2026-10-02T00.00.00Z_2026-10-02T00.15.00Z'];
    const recent = '2026-12-06T11.45.00Z';
    for (const root of own) for (const w of [...old, recent]) await runFolder(root, w);
    // Another output with only old windows (the second of the first test): its newest data window stays, and so do
    // its deletes and manifests.
    const other = outputs[1]!;
    assert.notEqual(other, output);
    const otherRoots = roots.get(other)!;
    for (const root of otherRoots) for (const w of old) await runFolder(root, w);

    const hk = await rt.runPipeline(HOUSEKEEPING_PIPELINE);
    assert.equal(hk.status, 'Succeeded', describeRun(hk));
    for (const root of own) assert.deepEqual(await readdir(path.join(warehouse, root)), [recent], root);
    for (const root of otherRoots) {
      const left = await readdir(path.join(warehouse, root));
      for (const w of old) assert.ok(left.includes(w), `${root}/${w} stays (got ${left.join(', ')})`);
    }
  });

  it('the checked-in export: a replay pipeline per inbound pipeline, housekeeping keeps warehouse folders by default', async () => {
    const real = await ArtifactStore.load('synapse');
    const defs = await loadPipelines('pipelines');
    for (const d of defs)
      assert.equal(real.has('pipeline', `pl_${d.name.replaceAll('-', '_')}_replay`), d.direction === 'inbound', d.name);
    const text = JSON.stringify(real.get('pipeline', HOUSEKEEPING_PIPELINE).properties);
    // No window folder is deleted by age; only unpublished run folders of runs that died (their own test below).
    assert.doesNotMatch(text, /"name":"DeleteExpired_|"name":"DeleteWindowFolder_/);
    assert.match(text, /"name":"DeleteUnpublishedRunFolder"/);
    assert.match(text, /keeps every published warehouse window/);
    assert.deepEqual(
      (real.get('trigger', HOUSEKEEPING_TRIGGER).properties.typeProperties as { recurrence: unknown }).recurrence,
      {
        frequency: 'Day',
        interval: 1,
        startTime: '2026-01-01T00:00:00Z',
        timeZone: 'UTC',
        schedule: { hours: [3], minutes: [0] },
      },
    );
  });

  it('retention settings are checked, naming the value', () => {
    assert.throws(() => mergeSettings({ rejectsRetentionDays: 0 }), /`rejectsRetentionDays` is `0`.*at least 1/);
    assert.throws(
      () => mergeSettings({ warehouseRetentionDays: -1 }),
      /`warehouseRetentionDays` is `-1`.*0 keeps every/,
    );
    assert.throws(() => mergeSettings({ staleRunHours: 1.5 }), /`staleRunHours` is `1.5`/);
    assert.throws(() => mergeSettings({ housekeepingTime: '3am' }), /`housekeepingTime` is `3am`.*like `03:00`/);
    assert.equal(mergeSettings({ housekeepingTime: '23:59' }).housekeepingTime, '23:59');
  });

  it('the daily trigger starts it once a day at the configured time', async () => {
    const before = rt.runs.filter((r) => r.pipelineName === HOUSEKEEPING_PIPELINE).length;
    rt.startTrigger(HOUSEKEEPING_TRIGGER);
    await rt.runTicks(8, 6 * 3_600_000); // two days in steps of 6 hours
    const runs = rt.runs.filter((r) => r.pipelineName === HOUSEKEEPING_PIPELINE).slice(before);
    assert.deepEqual(
      runs.map((r) => [r.status, r.invokedBy.name]),
      [
        ['Succeeded', HOUSEKEEPING_TRIGGER],
        ['Succeeded', HOUSEKEEPING_TRIGGER],
      ],
    );
  });
});
