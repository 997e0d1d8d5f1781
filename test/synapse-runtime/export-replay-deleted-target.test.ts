/**
 * The exported replay pipeline and `ferry replay` on a row whose lookup target was deleted in Dataverse after the
 * Synapse path's key map learned it. The same regions files through the local runner (its own emulator) and through
 * `pl_regions_inbound` on the runtime (another emulator): the first run rejects X1 (its parent NEW does not exist);
 * NEW is created in Dataverse and a second run reads it into the key map; NEW is deleted again. Then `runReplay`
 * (what `ferry replay --run` calls) and `pl_regions_inbound_replay` with the first run's id: both reject X1 again
 * (`lookup.target_missing`), supersede the original reject and end with exit code 3 — the replay pipeline checks the
 * key-map ids before its copies, instead of sending the deleted record's GUID and failing on the service's refusal.
 */
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { LocalLake } from '../../src/connectors/lake/local-lake.js';
import { SqliteStateStore } from '../../src/connectors/state/sqlite-state-store.js';
import { resolveConfig } from '../../src/core/config.js';
import { silentLogger } from '../../src/core/log.js';
import { loadPipelines } from '../../src/core/pipeline-loader.js';
import { runPipeline } from '../../src/core/runner.js';
import { DuckDbStaging, duckLiteral, openRunStaging } from '../../src/dialects/duckdb/driver.js';
import { type RunningEmulator, startEmulator } from '../../src/emulator/server.js';
import { runReplay } from '../../src/schedule/replay.js';
import { stageRegistry } from '../../src/stages/registry.js';
import { describeRun, openDeployedRuntime } from './real-export.js';

const METADATA = 'fixtures/metadata';

describe('replay of a row whose parent was deleted in Dataverse: the exported replay pipeline agrees with ferry replay', () => {
  let dir: string;
  let local: RunningEmulator;
  let synapse: RunningEmulator;
  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'synapse-replay-deleted-'));
    local = await startEmulator({ metadataDir: METADATA });
    synapse = await startEmulator({ metadataDir: METADATA });
  });
  after(async () => {
    await local.close();
    await synapse.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('the row is rejected again with the same reason on both sides, nothing refused', async () => {
    const lake = path.join(dir, 'lake');
    const folder = path.join(lake, 'inbound', 'regions');
    await mkdir(folder, { recursive: true });
    const duck = await DuckDbStaging.open({ path: ':memory:', threads: 1, memoryLimit: '256MB' });
    const deltaFile = async (name: string, rows: readonly [string, string | null][]) => {
      const values = rows
        .map(([c, p]) => `(${duckLiteral(c)}, ${duckLiteral(`Region ${c}`)}, ${p ? duckLiteral(p) : 'NULL'})`)
        .join(', ');
      await duck.run(
        `COPY (SELECT region_code, region_name, parent_region_code, TIMESTAMP '2026-11-20 07:00:00' AS modified_at FROM (VALUES ${values}) AS t(region_code, region_name, parent_region_code)) TO ${duckLiteral(path.join(folder, name))} (FORMAT parquet)`,
      );
    };
    const fillers = (prefix: string) => Array.from({ length: 40 }, (_, i): [string, null] => [`${prefix}${i}`, null]);
    const defs = await loadPipelines('pipelines');
    const regions = defs.find((d) => d.name === 'regions-inbound')!;
    const region = (emulator: RunningEmulator, code: string) =>
      emulator.store.rows('ferry_region').find((r) => r.attributes.ferry_code === code);
    const newArrives = (emulator: RunningEmulator) =>
      emulator.store.put('ferry_region', crypto.randomUUID(), { ferry_code: 'NEW', ferry_name: 'New' });
    const newDeleted = (emulator: RunningEmulator) =>
      emulator.store.delete('ferry_region', region(emulator, 'NEW')!.id);

    const config = resolveConfig({ lake, state: path.join(dir, 'state'), metadata: METADATA }, {});
    const state = SqliteStateStore.openIn(config.state);
    const rt = await openDeployedRuntime({
      workspaceDir: path.join(dir, 'ws'),
      startTime: new Date(Date.now() + 3_600_000).toISOString(),
      dataverseUrl: synapse.url,
      fileSystems: (settings) => ({ [settings.lakeFileSystem]: lake }),
    });
    try {
      const options = {
        config,
        lake: new LocalLake(config.lake),
        state,
        registry: stageRegistry,
        log: silentLogger,
        services: { dataverse: { url: local.url }, openStaging: openRunStaging },
      };
      // Run 1: X1's parent NEW exists nowhere.
      await deltaFile('2026-11-20T08-00-00Z.parquet', [['X1', 'NEW'], ...fillers('F')]);
      const localFirst = await runPipeline(regions, { ...options, mode: 'scheduled' });
      assert.equal(localFirst.status, 'succeeded', JSON.stringify(localFirst.error));
      const synapseFirst = await rt.runPipeline('pl_regions_inbound', { mode: 'scheduled' });
      assert.equal(synapseFirst.status, 'Succeeded', describeRun(synapseFirst));
      // NEW is created in Dataverse; run 2 (its key-map read) learns it; then NEW is deleted.
      newArrives(local);
      newArrives(synapse);
      await deltaFile('2026-11-20T08-15-00Z.parquet', fillers('G'));
      const localSecond = await runPipeline(regions, { ...options, mode: 'scheduled' });
      assert.equal(localSecond.status, 'succeeded', JSON.stringify(localSecond.error));
      const synapseSecond = await rt.runPipeline('pl_regions_inbound', { mode: 'scheduled' });
      assert.equal(synapseSecond.status, 'Succeeded', describeRun(synapseSecond));
      const [learnt] = await rt.services.sql.duck.all<{ n: bigint }>(
        `SELECT count(*) AS n FROM ferry.keymap WHERE key_predicate = 'ferry_code=''NEW'''`,
      );
      assert.equal(Number(learnt!.n), 1, 'the Synapse key map learnt NEW');
      newDeleted(local);
      newDeleted(synapse);

      // The replays of run 1.
      const localReplay = await runReplay(regions, { ...options, runId: localFirst.runId });
      const synapseReplay = await rt.runPipeline('pl_regions_inbound_replay', { runId: synapseFirst.runId });
      const refused = synapseReplay.activityRuns.filter((a) => /0x80040217/.test(a.error?.message ?? ''));
      assert.deepEqual(refused, [], 'no copy was refused for the deleted record');
      assert.deepEqual([localReplay.resolved, localReplay.upserted, localReplay.stillRejected], [0, 0, 1]);
      // Rows rejected again: exit code 3 on both sides (`ferry replay`'s, the Fail activity's errorCode).
      assert.equal(
        synapseReplay.activityRuns.find((a) => a.activityName === 'RowsRejectedAgain')?.error?.errorCode,
        '3',
        describeRun(synapseReplay),
      );
      const localRejects = state
        .listRejects({ pipeline: 'regions-inbound' })
        .map((r) => `${r.key} ${r.reason} ${r.status}`)
        .sort();
      const synapseRejects = (
        await rt.services.sql.duck.all<{ key: string; reason: string; status: string }>(
          `SELECT key, reason, status FROM ferry.rejects WHERE pipeline = 'regions-inbound'`,
        )
      )
        .map((r) => `${r.key} ${r.reason} ${r.status}`)
        .sort();
      assert.deepEqual(localRejects, [
        'ferry_code=X1 lookup.target_missing open',
        'ferry_code=X1 lookup.target_missing superseded',
      ]);
      assert.deepEqual(synapseRejects, localRejects);
      assert.equal(region(local, 'X1'), undefined);
      assert.equal(region(synapse, 'X1'), undefined, 'the row is not written on the Synapse path either');
      const [stale] = await rt.services.sql.duck.all<{ n: bigint }>(
        `SELECT count(*) AS n FROM ferry.keymap WHERE key_predicate = 'ferry_code=''NEW'''`,
      );
      assert.equal(Number(stale!.n), 0, 'the deleted record left the key map');
    } finally {
      await rt.close();
      state.close();
      await duck.close();
    }
  });
});
