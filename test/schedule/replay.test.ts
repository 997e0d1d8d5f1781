import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import regions from '../../pipelines/regions-inbound.js';
import { LocalLake } from '../../src/connectors/lake/local-lake.js';
import { SqliteStateStore } from '../../src/connectors/state/sqlite-state-store.js';
import { resolveConfig } from '../../src/core/config.js';
import { silentLogger } from '../../src/core/log.js';
import { definePipeline } from '../../src/core/pipeline.js';
import { runPipeline } from '../../src/core/runner.js';
import { DuckDbStaging, openRunStaging } from '../../src/dialects/duckdb/driver.js';
import { type RunningEmulator, startEmulator } from '../../src/emulator/server.js';
import { planReplay, runReplay } from '../../src/schedule/replay.js';
import { convertToDataverse } from '../../src/stages/convert-to-dataverse.js';
import { readParquetDeltas } from '../../src/stages/read-parquet-deltas.js';
import { stageRegistry } from '../../src/stages/registry.js';
import { upsertDataverse } from '../../src/stages/upsert-dataverse.js';

// The real inbound stages (reader, conversion, bulk upsert) against the emulator over loopback HTTP.
const ROOT = path.resolve(import.meta.dirname, '../..');
let dir: string;
let emulator: RunningEmulator;
let state: SqliteStateStore;
let base: Omit<Parameters<typeof runPipeline>[1], 'mode'>;

const accounts = definePipeline({
  name: 'accounts-replay',
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
  const body = (await res.json()) as { value: Array<Record<string, unknown>> };
  return body.value[0];
}

before(async () => {
  dir = await fs.mkdtemp(path.join(os.tmpdir(), 'ferry-replay-'));
  // A copy of the metadata snapshots, so a test can change them after a run (as a metadata pull would).
  const metadata = path.join(dir, 'metadata');
  await fs.cp(path.join(ROOT, 'fixtures', 'metadata'), metadata, { recursive: true });
  emulator = await startEmulator({ metadataDir: path.join(ROOT, 'fixtures', 'metadata') });
  const config = resolveConfig({ lake: path.join(dir, 'lake'), state: path.join(dir, 'state'), metadata }, {});
  state = SqliteStateStore.openIn(config.state);
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
  await writeParquet(
    'in/accounts/2026-11-26T09-00-00Z.parquet',
    `SELECT * FROM (VALUES
       ('A-1', 'One', NULL::VARCHAR, TIMESTAMP '2026-11-26 09:00:00'),
       ('A-2', 'Two', 'EAST', TIMESTAMP '2026-11-26 09:00:00'),
       ('A-3', 'Three', 'WEST', TIMESTAMP '2026-11-26 09:00:00')) t(account_no, account_name, region_code, modified_at)`,
  );
});

after(async () => {
  state.close();
  await emulator.close();
  await fs.rm(dir, { recursive: true, force: true });
});

test('replay after fixing the cause: the rejected row is upserted and its reject resolved', async () => {
  const regionRun = await runPipeline(regions, {
    openStaging: (dir: string) => openRunStaging(dir, {}),
    ...base,
    mode: 'manual',
  });
  assert.equal(regionRun.status, 'succeeded', JSON.stringify(regionRun.error));
  const first = await runPipeline(accounts, {
    openStaging: (dir: string) => openRunStaging(dir, {}),
    ...base,
    mode: 'manual',
  });
  assert.equal(first.status, 'succeeded', JSON.stringify(first.error));
  assert.equal(first.counts.upserted, 2);
  assert.equal(first.counts.rejected, 1);
  const [original] = state.listRejects({ runId: first.runId });
  assert.equal(original!.reason, 'lookup.target_missing');
  assert.equal(original!.rowNumber, 3);
  assert.equal(await getAccount('A-3'), undefined);

  // Dry run: what would be re-sent, from the staged input the reader kept.
  const plan = await planReplay(accounts, { ...base, runId: first.runId });
  assert.equal(plan.source, 'staged-parquet');
  assert.deepEqual(
    plan.rejects.map((r) => r.id),
    [original!.id],
  );
  assert.equal(state.listRuns({ pipeline: 'accounts-replay' }).length, 1, 'dry run changes nothing');

  // Replaying before the cause is fixed: rejected again, the new reject replaces the original.
  const early = await runReplay(accounts, { ...base, runId: first.runId });
  assert.equal(early.report.mode, 'replay');
  assert.equal(early.report.counts.read, 1, 'only the rejected row is re-sent');
  assert.equal(early.stillRejected, 1);
  assert.equal(early.resolved, 0);
  assert.equal(state.listRejects({ runId: first.runId })[0]!.status, 'superseded');
  assert.equal(state.countOpenRejects('accounts-replay'), 1);
  assert.equal(state.getRun(early.report.runId)?.parentRunId, first.runId);

  // Fix the cause: the missing region arrives.
  await writeParquet(
    'inbound/regions/2026-11-26T10-00-00Z.parquet',
    `SELECT * FROM (VALUES ('WEST', 'West', NULL::VARCHAR, TIMESTAMP '2026-11-26 10:00:00')) t(region_code, region_name, parent_region_code, modified_at)`,
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

  // The same command again follows the chain to the rows still open and re-sends them.
  const fixed = await runReplay(accounts, { ...base, runId: first.runId });
  assert.equal(fixed.report.status, 'succeeded', JSON.stringify(fixed.report.error));
  assert.equal(fixed.report.counts.upserted, 1);
  assert.equal(fixed.resolved, 1);
  assert.equal(fixed.upserted, 1);
  assert.equal(state.countOpenRejects('accounts-replay'), 0);
  const stored = await getAccount('A-3');
  assert.equal(stored?.name, 'Three');
  assert.ok(stored?._ferry_regionid_value, 'the region lookup is bound');
  // The scheduled path is untouched: the delta file stays processed once, by the first run.
  assert.equal(
    state.processedItems('accounts-replay', 'lake:in/accounts').get('in/accounts/2026-11-26T09-00-00Z.parquet') !==
      undefined,
    true,
  );
});

test('a replay builds the request from the metadata the run used; --re-resolve uses the current metadata', async () => {
  await writeParquet(
    'in/accounts/2026-11-26T11-00-00Z.parquet',
    `SELECT * FROM (VALUES
       ('A-5', 'Five', NULL::VARCHAR, TIMESTAMP '2026-11-26 11:00:00'),
       ('A-6', 'Six', NULL::VARCHAR, TIMESTAMP '2026-11-26 11:00:00'),
       ('A-4', 'Four', 'NORTH', TIMESTAMP '2026-11-26 11:00:00')) t(account_no, account_name, region_code, modified_at)`,
  );
  const run = await runPipeline(accounts, {
    openStaging: (dir: string) => openRunStaging(dir, {}),
    ...base,
    mode: 'manual',
  });
  assert.equal(run.status, 'succeeded', JSON.stringify(run.error));
  assert.equal(run.counts.rejected, 1);
  assert.equal(typeof run.metrics.metadataSnapshot, 'string', 'the runner kept the metadata it used');

  // Later the metadata changes (account name shortened to 3 characters) and the missing region arrives.
  const file = path.join(base.config.metadata, 'account.json');
  const account = JSON.parse(await fs.readFile(file, 'utf8')) as {
    Attributes: Array<{ LogicalName: string; MaxLength?: number }>;
  };
  account.Attributes.find((a) => a.LogicalName === 'name')!.MaxLength = 3;
  await fs.writeFile(file, JSON.stringify(account));
  await writeParquet(
    'inbound/regions/2026-11-26T11-00-00Z.parquet',
    `SELECT * FROM (VALUES ('NORTH', 'North', NULL::VARCHAR, TIMESTAMP '2026-11-26 11:00:00')) t(region_code, region_name, parent_region_code, modified_at)`,
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

  // Re-resolved against today's metadata, `Four` no longer fits.
  const resolvedNow = await runReplay(accounts, { ...base, runId: run.runId, reResolve: true });
  assert.deepEqual(resolvedNow.inputs, { definition: 'current', metadata: null });
  assert.equal(resolvedNow.stillRejected, 1);
  assert.deepEqual(Object.keys(resolvedNow.report.rejectsByReason), ['string.too_long']);

  // By default the replay uses what the run used: the same request as then, now accepted.
  const same = await runReplay(accounts, { ...base, runId: run.runId });
  assert.equal(same.inputs.definition, 'original');
  assert.ok(same.inputs.metadata?.endsWith(String(run.metrics.metadataSnapshot)));
  assert.equal(same.resolved, 1);
  assert.equal(same.upserted, 1);
  assert.equal((await getAccount('A-4'))?.name, 'Four');
});
