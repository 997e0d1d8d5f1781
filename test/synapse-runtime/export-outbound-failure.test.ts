/**
 * Review defect 6, finished: a failed outbound run leaves no partial output. The real exported outbound pipelines
 * (`synapse/`) run on the runtime over the Synapse Link CSV fixture with one SQL statement failed by the engine —
 * the deletes CETAS, the manifest CETAS, the cursor save in FinishRun — and then without failure:
 * - the failed run is Failed (its Fail activity names the window), its run folders are gone (data, deletes,
 *   manifest: the removal on its failure path), so are its extract tables, the cursor did not move;
 * - the next run publishes the window exactly once (one run folder, one manifest) with the rows the local runner
 *   writes for it;
 * - FinishRun failing after it saved the cursor leaves the window published (manifest and cursor agree);
 * - a run that died before its failure path could remove anything (simulated: that path's SQL fails too, and the
 *   run stays `running`) is cleaned by housekeeping once it started more than `staleRunHours` ago, not before.
 */
import assert from 'node:assert/strict';
import { cpSync, existsSync, readdirSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, describe, it } from 'node:test';
import accountsOutbound from '../../pipelines/accounts-outbound.js';
import contactsOutbound from '../../pipelines/contacts-outbound.js';
import type { PipelineDefinition } from '../../src/core/pipeline.js';
import { DuckDbStaging } from '../../src/dialects/duckdb/driver.js';
import type { PipelineRun } from '../../src/export/synapse/runtime/run-records.js';
import type { SynapseRuntime } from '../../src/export/synapse/runtime/synapse-runtime.js';
import { OutboundSandbox } from '../outbound/helpers.js';
import { describeRun, openDeployedRuntime } from './real-export.js';

const FIXTURE = 'fixtures/synapse-link/incremental-with-deletes';
const LOCAL_FOLDER = 'synapse-link/dataverse-demo';
/** The first window: two completed folders, 00.45 still being written. */
const WINDOW = '2026-01-01T00.15.00Z_2026-01-01T00.30.00Z';

function parquetFiles(dir: string): string[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir, { recursive: true })
    .map(String)
    .filter((f) => f.endsWith('.parquet'))
    .sort();
}

function children(dir: string): string[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir, { withFileTypes: true })
    .filter((e) => e.isDirectory() && !e.name.startsWith('.') && !e.name.startsWith('_'))
    .map((e) => e.name)
    .sort();
}

interface Case {
  readonly pipeline: string;
  readonly def: PipelineDefinition;
  readonly outputs: readonly string[];
  /** Roots of each output's run folders: data, deletes (separate-file), manifests. */
  readonly roots: (output: string) => string[];
}
const CONTACTS: Case = {
  pipeline: 'pl_contacts_outbound',
  def: contactsOutbound,
  outputs: ['contact'],
  roots: (o) => [o, `${o}_deletes`, `_manifests/${o}`],
};
const ACCOUNTS: Case = {
  pipeline: 'pl_accounts_outbound',
  def: accountsOutbound,
  outputs: ['account', 'account_labelled'],
  roots: (o) => [o, `_manifests/${o}`],
};

/** A workspace: the runtime on the deployed export, the local runner on the same folders, a failing SQL engine. */
class Sandbox {
  readonly dir: string;
  readonly link: string;
  readonly warehouse: string;
  readonly rt: SynapseRuntime;
  readonly box: OutboundSandbox;
  readonly duck: DuckDbStaging;
  /** Statements the engine fails (each once), by a predicate on the DuckDB statement. */
  readonly failing: ((sql: string) => boolean)[] = [];
  /** Statements the engine fails every time (an engine that stays down). */
  readonly down: ((sql: string) => boolean)[] = [];

  private constructor(dir: string, rt: SynapseRuntime, box: OutboundSandbox, duck: DuckDbStaging) {
    this.dir = dir;
    this.link = path.join(dir, 'link');
    this.warehouse = path.join(dir, 'warehouse');
    this.rt = rt;
    this.box = box;
    this.duck = duck;
    // The workspace database fails the statements a test names, as Azure SQL or serverless SQL would fail them
    // (a lost connection, a storage error): every statement of every step goes through `run` or `all`.
    const engine = rt.services.sql.duck as unknown as Record<'run' | 'all', (sql: string, p?: unknown) => unknown>;
    for (const method of ['run', 'all'] as const) {
      const real = engine[method]!.bind(engine);
      engine[method] = (sql: string, p?: unknown) => {
        const i = this.failing.findIndex((f) => f(sql));
        if (i >= 0 || this.down.some((f) => f(sql))) {
          if (i >= 0) this.failing.splice(i, 1);
          return Promise.reject(new Error(`injected by the test: the engine failed \`${sql.slice(0, 60)}…\``));
        }
        return real(sql, p);
      };
    }
  }

  static async open(): Promise<Sandbox> {
    const dir = await mkdtemp(path.join(tmpdir(), 'synapse-outbound-failure-'));
    cpSync(FIXTURE, path.join(dir, 'link'), { recursive: true });
    const box = new OutboundSandbox();
    box.copy('synapse-link/incremental-with-deletes', LOCAL_FOLDER);
    for (const root of [path.join(dir, 'link'), box.lakePath(LOCAL_FOLDER)])
      writeFileSync(path.join(root, 'Changelog', 'changelog.info'), '2026-01-01T00.45.00Z');
    const rt = await openDeployedRuntime({
      workspaceDir: path.join(dir, 'ws'),
      startTime: '2026-01-01T01:05:00Z',
      fileSystems: (settings) => ({
        [settings.synapseLinkFileSystem]: path.join(dir, 'link'),
        [settings.warehouseFileSystem]: path.join(dir, 'warehouse'),
      }),
    });
    const duck = await DuckDbStaging.open();
    await duck.run(`SET TimeZone = 'UTC'`);
    return new Sandbox(dir, rt, box, duck);
  }

  async close(): Promise<void> {
    await this.rt.close();
    await this.duck.close();
    this.box.close();
    await rm(this.dir, { recursive: true, force: true });
  }

  sql<T extends Record<string, unknown>>(q: string): Promise<T[]> {
    return this.rt.services.sql.duck.all<T>(q);
  }

  /** Rows of Parquet files, every value as text, in one order. */
  async rows(files: readonly string[]): Promise<Record<string, string | null>[]> {
    if (files.length === 0) return [];
    const list = files.map((f) => `'${f.replaceAll("'", "''")}'`).join(', ');
    const got = await this.duck.all<Record<string, unknown>>(
      `SELECT COLUMNS(*)::VARCHAR FROM read_parquet([${list}], union_by_name = true) ORDER BY ALL`,
    );
    return got.map((r) =>
      Object.fromEntries(
        Object.entries(r).map(([k, v]) => [k, v === null ? null : String(v).replace(/\+00(:00)?$/, '')]),
      ),
    );
  }

  async cursor(c: Case): Promise<string | undefined> {
    const [row] = await this.sql<{ value: string }>(`SELECT value FROM ferry.cursors WHERE pipeline = '${c.def.name}'`);
    return row?.value;
  }

  async status(runId: string): Promise<string | undefined> {
    const [row] = await this.sql<{ status: string }>(`SELECT status FROM ferry.runs WHERE id = '${runId}'`);
    return row?.status;
  }

  /** The run's folders (data, deletes, manifest) that exist, for every output. */
  leftovers(c: Case, runId: string): string[] {
    return c.outputs.flatMap((o) =>
      c
        .roots(o)
        .map((root) => `${root}/${WINDOW}/${runId}`)
        .filter((f) => existsSync(path.join(this.warehouse, f))),
    );
  }

  /** After a successful run: the window published once per output, with the local runner's rows. */
  async assertPublishedOnceAsLocal(c: Case): Promise<void> {
    const report = await this.box.run(c.def);
    assert.equal(report.status, 'succeeded', report.error?.message);
    for (const o of c.outputs) {
      assert.deepEqual(children(path.join(this.warehouse, o)), children(this.box.warehouse(o)), `${o}: windows`);
      const runs = children(path.join(this.warehouse, o, WINDOW));
      assert.equal(runs.length, 1, `${o}/${WINDOW}: one run folder (got ${runs.join(', ')})`);
      const manifests = children(path.join(this.warehouse, '_manifests', o, WINDOW));
      assert.deepEqual(manifests, runs, `${o}: one manifest, of that run`);
      const local = parquetFiles(this.box.warehouse(o, WINDOW)).map((f) => this.box.warehouse(o, WINDOW, f));
      const data = path.join(this.warehouse, o, WINDOW);
      assert.deepEqual(
        await this.rows(parquetFiles(data).map((f) => path.join(data, f))),
        await this.rows(local.filter((f) => !path.basename(f).startsWith('deletes-'))),
        `${o}/${WINDOW}: rows`,
      );
      if (c.roots(o).includes(`${o}_deletes`)) {
        const deletes = path.join(this.warehouse, `${o}_deletes`, WINDOW);
        assert.deepEqual(
          await this.rows(parquetFiles(deletes).map((f) => path.join(deletes, f))),
          await this.rows(local.filter((f) => path.basename(f).startsWith('deletes-'))),
          `${o}/${WINDOW}: deletes`,
        );
      }
    }
  }
}

const isCopyTo = (root: string) => (sql: string) =>
  /^\s*COPY\b/i.test(sql) && sql.includes(`${path.sep}${root}${path.sep}${WINDOW}${path.sep}`);
const isCursorSave = (sql: string) => /^\s*INSERT INTO\s+"?ferry"?\."?cursors"?/i.test(sql);

describe('a failed outbound run leaves no partial output (review defect 6)', () => {
  let box: Sandbox | undefined;
  afterEach(async () => {
    await box?.close();
    box = undefined;
  });

  async function failThenRecover(c: Case, fail: (sql: string) => boolean): Promise<PipelineRun> {
    box = await Sandbox.open();
    box.failing.push(fail);
    const failed = await box.rt.runPipeline(c.pipeline, { mode: 'manual' });
    assert.equal(box.failing.length, 0, 'the injected failure happened');
    assert.equal(failed.status, 'Failed', describeRun(failed));
    const failRun = failed.activityRuns.find((a) => a.activityName === 'FailRun');
    assert.equal(failRun?.status, 'Failed', describeRun(failed));
    assert.match(failRun!.error!.message, new RegExp(`${c.def.name} failed writing window ${WINDOW}.*next run`));
    assert.ok(
      failed.activityRuns.some((a) => a.activityName === 'DeleteRunFolder' && a.status === 'Succeeded'),
      describeRun(failed),
    );
    assert.deepEqual(box.leftovers(c, failed.runId), [], 'no folder of the failed run remains');
    assert.deepEqual(parquetFiles(box.warehouse), [], 'no file of the failed run remains');
    assert.equal(await box.status(failed.runId), 'failed');
    // The DuckDB stand-in of the CETAS external tables (the extract's temporary result) is dropped too.
    assert.deepEqual(
      await box.sql(`SELECT table_name FROM duckdb_tables() WHERE starts_with(table_name, '__extract_')`),
      [],
    );
    assert.equal(await box.cursor(c), undefined, 'the cursor did not move');
    const next = await box.rt.runPipeline(c.pipeline, { mode: 'manual' });
    assert.equal(next.status, 'Succeeded', describeRun(next));
    await box.assertPublishedOnceAsLocal(c);
    assert.equal(await box.cursor(c), '2026-01-01T00.30.00Z');
    return failed;
  }

  it('the deletes CETAS fails after the data CETAS: both removed, the run Failed, the next run publishes once', async () => {
    await failThenRecover(CONTACTS, isCopyTo('contact_deletes'));
  });

  it('the manifest CETAS fails after data and deletes: both removed, the next run publishes once', async () => {
    await failThenRecover(CONTACTS, isCopyTo(path.join('_manifests', 'contact')));
  });

  it('one output published, the other fails: the published manifest goes too (all outputs or none)', async () => {
    const failed = await failThenRecover(ACCOUNTS, isCopyTo(path.join('_manifests', 'account_labelled')));
    assert.ok(
      failed.activityRuns.some((a) => a.activityName === 'ExtractToParquet_account' && a.status === 'Succeeded'),
      `the account extract published its manifest before the failure\n${describeRun(failed)}`,
    );
  });

  it('FinishRun fails to save the cursor after the manifests: unpublished again, the next run publishes once', async () => {
    await failThenRecover(CONTACTS, isCursorSave);
  });

  it('FinishRun fails after it saved the cursor: the window stays published (manifest and cursor agree)', async () => {
    box = await Sandbox.open();
    // The statement after the cursor save (the activity fails although the cursor moved).
    box.failing.push((sql) => /^\s*SELECT CAST\(over_threshold AS INTEGER\)/i.test(sql));
    const run = await box.rt.runPipeline(CONTACTS.pipeline, { mode: 'manual' });
    assert.equal(box.failing.length, 0, 'the injected failure happened');
    assert.equal(run.status, 'Failed', describeRun(run));
    assert.equal(await box.cursor(CONTACTS), '2026-01-01T00.30.00Z');
    assert.deepEqual(box.leftovers(CONTACTS, run.runId).sort(), [
      `_manifests/contact/${WINDOW}/${run.runId}`,
      `contact/${WINDOW}/${run.runId}`,
      `contact_deletes/${WINDOW}/${run.runId}`,
    ]);
    // The failure path ran, found the cursor moved and deleted nothing; the run still fails, saying so.
    const status = (name: string) => run.activityRuns.filter((a) => a.activityName === name).map((a) => a.status);
    assert.deepEqual(status('RemoveUnpublishedOutput'), ['Succeeded'], describeRun(run));
    assert.deepEqual(status('DeleteRunFolder'), [], describeRun(run));
    assert.deepEqual(status('FailRun'), ['Failed'], describeRun(run));
    assert.match(
      run.activityRuns.find((a) => a.activityName === 'FailRun')!.error!.message,
      /unless FinishRun saved the cursor before it failed/,
    );
    // The next run has nothing new: the window is published once.
    const next = await box.rt.runPipeline(CONTACTS.pipeline, { mode: 'manual' });
    assert.equal(next.status, 'Succeeded', describeRun(next));
    await box.assertPublishedOnceAsLocal(CONTACTS);
    // Housekeeping, a day later, leaves it: the run is `failed`, but its manifest holds its file.
    assert.equal(await box.status(run.runId), 'failed');
    await box.sql(`UPDATE ferry.runs SET started_at = '2025-12-30T00:00:00.000000' WHERE id = '${run.runId}'`);
    const files = parquetFiles(box.warehouse);
    const housekeeping = await box.rt.runPipeline('pl_ferry_housekeeping', {});
    assert.equal(housekeeping.status, 'Succeeded', describeRun(housekeeping));
    assert.ok(
      housekeeping.activityRuns.some((a) => a.activityName === 'IfRunFolderUnpublished'),
      `housekeeping looked at the failed run's folders\n${describeRun(housekeeping)}`,
    );
    assert.deepEqual(parquetFiles(box.warehouse), files);
  });

  it('a run that died before its failure path ran: housekeeping removes its folders after staleRunHours, not before', async () => {
    box = await Sandbox.open();
    // The manifest CETAS fails, then the database stays down for the failure path's SQL (the cursor read again,
    // MarkRunFailed): the run is left `running` with data and deletes but no manifest, as a run killed there is.
    let down = false;
    box.failing.push((sql) => {
      down = isCopyTo(path.join('_manifests', 'contact'))(sql);
      return down;
    });
    box.down.push(
      (sql) =>
        down && (sql.includes('cursor_value') || /^\s*UPDATE\s+"?ferry"?\."?runs"?\s+SET status = 'failed'/i.test(sql)),
    );
    const died = await box.rt.runPipeline(CONTACTS.pipeline, { mode: 'manual' });
    assert.equal(box.failing.length, 0, `every injected failure happened\n${describeRun(died)}`);
    assert.equal(died.status, 'Failed', describeRun(died));
    box.down.length = 0;
    assert.equal(await box.status(died.runId), 'running');
    const [{ window_json }] = (await box.sql<{ window_json: string }>(
      `SELECT window_json FROM ferry.runs WHERE id = '${died.runId}'`,
    )) as [{ window_json: string }];
    assert.equal(JSON.parse(window_json).windowName, WINDOW, 'the run recorded its window before its first CETAS');
    const leftovers = [`contact/${WINDOW}/${died.runId}`, `contact_deletes/${WINDOW}/${died.runId}`];
    assert.deepEqual(
      box.leftovers(CONTACTS, died.runId),
      leftovers.concat(`_manifests/contact/${WINDOW}/${died.runId}`),
    );
    assert.ok(parquetFiles(path.join(box.warehouse, 'contact')).length > 0, 'the data CETAS wrote files');

    // A published run of another window stays whatever its status: housekeeping never deletes a folder whose
    // manifest exists.
    const housekeeping = async () => {
      const run = await box!.rt.runPipeline('pl_ferry_housekeeping', {});
      assert.equal(run.status, 'Succeeded', describeRun(run));
    };
    // Started less than staleRunHours ago (it may still be running): kept.
    await box.sql(`UPDATE ferry.runs SET started_at = '2026-01-01T00:30:00.000000' WHERE id = '${died.runId}'`);
    await housekeeping();
    assert.deepEqual(box.leftovers(CONTACTS, died.runId).slice(0, 2), leftovers);
    // Started more than staleRunHours (24 h) ago and never finished: its unpublished folders go.
    await box.sql(`UPDATE ferry.runs SET started_at = '2025-12-30T00:00:00.000000' WHERE id = '${died.runId}'`);
    await housekeeping();
    assert.deepEqual(box.leftovers(CONTACTS, died.runId), [], 'data, deletes and the empty manifest folder removed');
    assert.deepEqual(parquetFiles(box.warehouse), []);
    const next = await box.rt.runPipeline(CONTACTS.pipeline, { mode: 'manual' });
    assert.equal(next.status, 'Succeeded', describeRun(next));
    assert.equal(children(path.join(box.warehouse, 'contact', WINDOW)).length, 1);
    // Housekeeping again: the published window of the next run (a manifest) stays.
    const before = parquetFiles(box.warehouse);
    await box.sql(`UPDATE ferry.runs SET started_at = '2025-12-30T00:00:00.000000'`);
    await housekeeping();
    assert.deepEqual(parquetFiles(box.warehouse), before);
  });
});
