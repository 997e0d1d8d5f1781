/**
 * Multi-select columns on the Synapse path (review defect 4's other half: the Copy sink cannot write them, so the
 * export sends them by UpsertMultiple Web activities after the copies). The same delta files through the local
 * runner (one emulator) and through the exported `pl_accounts_inbound` on the runtime (another emulator): the same
 * `ferry_interests` on every account, a later null clearing it on both; a chunk the service refuses fails the run
 * with the service's reason, nothing of it is recorded as done, and the next run writes it.
 */
import assert from 'node:assert/strict';
import { cp, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { LocalLake } from '../../src/connectors/lake/local-lake.js';
import { SqliteStateStore } from '../../src/connectors/state/sqlite-state-store.js';
import { resolveConfig } from '../../src/core/config.js';
import { silentLogger } from '../../src/core/log.js';
import type { PipelineDefinition } from '../../src/core/pipeline.js';
import { loadPipelines } from '../../src/core/pipeline-loader.js';
import { runPipeline } from '../../src/core/runner.js';
import { DuckDbStaging, duckLiteral, openRunStaging } from '../../src/dialects/duckdb/driver.js';
import { type RunningEmulator, startEmulator } from '../../src/emulator/server.js';
import type { PipelineRun } from '../../src/export/synapse/runtime/run-records.js';
import type { SynapseRuntime } from '../../src/export/synapse/runtime/synapse-runtime.js';
import { stageRegistry } from '../../src/stages/registry.js';
import { openDeployedRuntime } from './real-export.js';

const METADATA = 'fixtures/metadata';
const FOLDERS = ['regions', 'currencies', 'accounts'] as const;

/** `accountnumber → ferry_interests` of every account in an emulator (the normalised `"1,9"` string, or null). */
function interests(emulator: RunningEmulator): Record<string, string | null> {
  const out: Record<string, string | null> = {};
  for (const r of emulator.store.rows('account'))
    out[String(r.attributes.accountnumber)] = (r.attributes.ferry_interests as string | null | undefined) ?? null;
  return out;
}

const explain = (run: PipelineRun) =>
  run.activityRuns.map((a) => `${a.activityName} ${a.status} ${a.error?.message ?? ''}`).join('\n');

/** A later delta of three fixture accounts: one cleared (null), one changed, one set. */
async function writeChanges(lake: string): Promise<void> {
  const file = path.join(lake, 'inbound', 'accounts', '2026-11-20T09-45-00Z.parquet');
  const duck = await DuckDbStaging.open({ path: ':memory:', threads: 1, memoryLimit: '256MB' });
  try {
    const source = duckLiteral(path.join('fixtures', 'inbound', 'accounts', '*.parquet'));
    await duck.run(
      `COPY (SELECT * REPLACE (CASE account_no WHEN 'A-1001' THEN NULL WHEN 'A-1002' THEN 'Consulting Services;Software' ELSE 'Cloud' END AS interests, TIMESTAMP '2026-11-20 09:40:00' AS modified_at) FROM (SELECT *, row_number() OVER (PARTITION BY account_no ORDER BY modified_at DESC) AS n FROM read_parquet(${source})) WHERE n = 1 AND account_no IN ('A-1001', 'A-1002', 'A-1003')) TO ${duckLiteral(file)} (FORMAT parquet)`,
    );
  } finally {
    await duck.close();
  }
}

describe('multi-select columns: the exported pipeline writes them as the local runner does', () => {
  let dir: string;
  let lake: string;
  let defs: PipelineDefinition[];
  let local: RunningEmulator;
  let synapse: RunningEmulator;
  let rt: SynapseRuntime;
  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'synapse-multiselect-'));
    lake = path.join(dir, 'lake');
    for (const f of FOLDERS)
      await cp(path.join('fixtures', 'inbound', f), path.join(lake, 'inbound', f), { recursive: true });
    defs = await loadPipelines('pipelines');
    local = await startEmulator({ metadataDir: METADATA });
    synapse = await startEmulator({ metadataDir: METADATA });
    rt = await openDeployedRuntime({
      workspaceDir: path.join(dir, 'ws'),
      startTime: new Date(Date.now() + 3_600_000).toISOString(),
      dataverseUrl: synapse.url,
      fileSystems: (s) => ({ [s.lakeFileSystem]: lake }),
    });
  });
  after(async () => {
    await rt.close();
    await local.close();
    await synapse.close();
    await rm(dir, { recursive: true, force: true });
  });

  /** One scheduled run of each pipeline, in dependency order, on both sides. */
  async function tick(): Promise<void> {
    const config = resolveConfig({ lake, state: path.join(dir, 'state'), metadata: METADATA }, {});
    const state = SqliteStateStore.openIn(config.state);
    try {
      for (const name of ['regions-inbound', 'currencies-inbound', 'accounts-inbound']) {
        const report = await runPipeline(defs.find((d) => d.name === name)!, {
          config,
          lake: new LocalLake(config.lake),
          state,
          registry: stageRegistry,
          log: silentLogger,
          services: { dataverse: { url: local.url }, openStaging: openRunStaging },
          mode: 'scheduled',
        });
        assert.equal(report.status, 'succeeded', `${name}: ${JSON.stringify(report.error)}`);
      }
    } finally {
      state.close();
    }
    for (const name of ['pl_regions_inbound', 'pl_currencies_inbound', 'pl_accounts_inbound']) {
      const run = await rt.runPipeline(name, { mode: 'scheduled' });
      assert.equal(run.status, 'Succeeded', `${name}\n${explain(run)}`);
    }
  }

  it('the same multi-select values on every account; a later null clears them on both sides', async () => {
    await tick();
    const first = interests(local);
    assert.equal(first['A-1001'], '100000000,100000003,100000004', 'the local runner wrote the latest version');
    assert.equal(first['A-1003'], null);
    assert.ok(Object.values(first).filter((v) => v !== null).length >= 3, JSON.stringify(first));
    assert.deepEqual(interests(synapse), first);
    // The Web activities ran once per chunk (100 rows each): one chunk here.
    const run = rt.runs.filter((r) => r.pipelineName === 'pl_accounts_inbound').at(-1)!;
    const web = run.activityRuns.filter((a) => a.activityName === 'UpsertMultiSelectChunk');
    assert.equal(web.length, 1);
    assert.equal(web[0]!.status, 'Succeeded');

    await writeChanges(lake);
    await tick();
    const second = interests(local);
    assert.equal(second['A-1001'], null, 'a null clears the column (the local writer sends null)');
    assert.equal(second['A-1002'], '100000002,100000000');
    assert.equal(second['A-1003'], '100000003');
    assert.deepEqual(interests(synapse), second);
  });
});

describe('multi-select columns: a chunk the service refuses', () => {
  let dir: string;
  let lake: string;
  let strict: string;
  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'synapse-multiselect-refused-'));
    lake = path.join(dir, 'lake');
    for (const f of FOLDERS)
      await cp(path.join('fixtures', 'inbound', f), path.join(lake, 'inbound', f), { recursive: true });
    // A Dataverse whose `ferry_interests` lacks an option the export's snapshot has (Support Plans): the service
    // refuses the value, which the conversion (on the snapshot) let through.
    strict = path.join(dir, 'metadata');
    await mkdir(strict, { recursive: true });
    await cp(METADATA, strict, { recursive: true });
    const file = path.join(strict, 'account.json');
    const meta = JSON.parse(await readFile(file, 'utf8'));
    const column = meta.Attributes.find((a: { LogicalName: string }) => a.LogicalName === 'ferry_interests');
    column.OptionSet.Options = column.OptionSet.Options.filter((o: { Value: number }) => o.Value !== 100000005);
    await writeFile(file, JSON.stringify(meta, null, 2));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('fails the run with the service reason, records nothing as done; the next run writes the rows', async () => {
    const storeFile = path.join(dir, 'dataverse.jsonl');
    let emulator = await startEmulator({ metadataDir: strict, storeFile });
    const rt = await openDeployedRuntime({
      workspaceDir: path.join(dir, 'ws'),
      startTime: new Date(Date.now() + 3_600_000).toISOString(),
      dataverseUrl: emulator.url,
      fileSystems: (s) => ({ [s.lakeFileSystem]: lake }),
    });
    try {
      for (const name of ['pl_regions_inbound', 'pl_currencies_inbound'])
        assert.equal((await rt.runPipeline(name, { mode: 'scheduled' })).status, 'Succeeded');
      const refused = await rt.runPipeline('pl_accounts_inbound', { mode: 'scheduled' });
      assert.equal(refused.status, 'Failed', explain(refused));
      const web = refused.activityRuns.find((a) => a.activityName === 'UpsertMultiSelectChunk')!;
      assert.equal(web.status, 'Failed');
      assert.match(web.error!.message, /Response status code: '400'/);
      assert.match(web.error!.message, /100000005/, 'the service reason names the refused value');
      // Nothing after the refused chunk ran: no applied versions, no processed file, the run marked failed.
      for (const never of ['CopyStateToDataverse', 'SaveAppliedVersions', 'RecordProcessedFiles', 'FinishRun'])
        assert.ok(
          !refused.activityRuns.some((a) => a.activityName === never && a.status === 'Succeeded'),
          `${never} did not run`,
        );
      const duck = rt.services.sql.duck;
      const [files] = await duck.all<{ n: bigint }>(
        `SELECT count(*) AS n FROM ferry.processed_items WHERE pipeline = 'accounts-inbound'`,
      );
      assert.equal(Number(files!.n), 0);
      const [status] = await duck.all<{ status: string }>(
        `SELECT status FROM ferry.runs WHERE pipeline = 'accounts-inbound' ORDER BY started_at DESC LIMIT 1`,
      );
      assert.equal(status!.status, 'failed');

      // The service takes the value again (the option added back): the next run repeats the window and writes it.
      const port = Number(new URL(emulator.url).port);
      await emulator.close();
      emulator = await startEmulator({ metadataDir: METADATA, storeFile, port });
      const next = await rt.runPipeline('pl_accounts_inbound', { mode: 'scheduled' });
      assert.equal(next.status, 'Succeeded', explain(next));
      assert.equal(interests(emulator)['A-1002'], '100000001,100000005');
    } finally {
      await rt.close();
      await emulator.close();
    }
  });
});
