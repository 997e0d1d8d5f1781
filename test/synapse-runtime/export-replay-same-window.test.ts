/**
 * The exported replay pipeline and `ferry replay` on a parent and its child rejected in one run: the same regions
 * file through the local runner (its own emulator) and through `pl_regions_inbound` on the runtime (another
 * emulator) rejects both (the parent's own parent is missing; the child's parent is that rejected row). Once the
 * missing region arrives, `runReplay` (what `ferry replay --run` calls) and `pl_regions_inbound_replay` with the
 * run's id each replay both rows: the parent is written, the child's lookup to it — a row of the same replay — goes
 * in the replay's second pass, and both are resolved, on both sides, with the same links.
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
import type { PipelineRun } from '../../src/export/synapse/runtime/run-records.js';
import { runReplay } from '../../src/schedule/replay.js';
import { stageRegistry } from '../../src/stages/registry.js';
import { describeRun, openDeployedRuntime } from './real-export.js';

const METADATA = 'fixtures/metadata';

/** Regions by code, each with its parent's code (ids differ between the two emulators). */
const links = (emulator: RunningEmulator) => {
  const all = emulator.store.rows('ferry_region');
  const code = new Map(all.map((r) => [r.id, String(r.attributes.ferry_code)]));
  return all
    .map((r) => `${r.attributes.ferry_code} → ${code.get(String(r.attributes.ferry_parentregionid)) ?? '-'}`)
    .sort();
};

describe('replay of a parent and its child rejected in one run: the exported replay pipeline agrees with ferry replay', () => {
  let dir: string;
  let local: RunningEmulator;
  let synapse: RunningEmulator;
  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'synapse-replay-same-window-'));
    local = await startEmulator({ metadataDir: METADATA });
    synapse = await startEmulator({ metadataDir: METADATA });
  });
  after(async () => {
    await local.close();
    await synapse.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('both rows are resolved on both sides, the child linked to its replayed parent', async () => {
    const lake = path.join(dir, 'lake');
    const file = path.join(lake, 'inbound', 'regions', '2026-11-20T08-00-00Z.parquet');
    await mkdir(path.dirname(file), { recursive: true });
    const rows: [string, string | null][] = [
      // DACH's parent EMEA exists nowhere yet; CH's parent is DACH, a row of the same run.
      ['CH', 'DACH'],
      ['DACH', 'EMEA'],
      // Enough rows that the two rejects stay within the pipeline's threshold (5 %).
      ...Array.from({ length: 60 }, (_, i): [string, null] => [`F${i}`, null]),
    ];
    const duck = await DuckDbStaging.open({ path: ':memory:', threads: 1, memoryLimit: '256MB' });
    try {
      const values = rows
        .map(([c, p]) => `(${duckLiteral(c)}, ${duckLiteral(`Region ${c}`)}, ${p ? duckLiteral(p) : 'NULL'})`)
        .join(', ');
      await duck.run(
        `COPY (SELECT region_code, region_name, parent_region_code, TIMESTAMP '2026-11-20 07:00:00' AS modified_at FROM (VALUES ${values}) AS t(region_code, region_name, parent_region_code)) TO ${duckLiteral(file)} (FORMAT parquet)`,
      );
    } finally {
      await duck.close();
    }
    const defs = await loadPipelines('pipelines');
    const regions = defs.find((d) => d.name === 'regions-inbound')!;
    const emeaArrives = (emulator: RunningEmulator) =>
      emulator.store.put('ferry_region', crypto.randomUUID(), { ferry_code: 'EMEA', ferry_name: 'EMEA' });

    // The local runner, then `ferry replay --run <id>`.
    const config = resolveConfig({ lake, state: path.join(dir, 'state'), metadata: METADATA }, {});
    const state = SqliteStateStore.openIn(config.state);
    let localOriginal: string[];
    let localAfter: string[];
    let localCounts: [number, number, number];
    try {
      const options = {
        config,
        lake: new LocalLake(config.lake),
        state,
        registry: stageRegistry,
        log: silentLogger,
        services: { dataverse: { url: local.url }, openStaging: openRunStaging },
      };
      const report = await runPipeline(regions, { ...options, mode: 'scheduled' });
      assert.equal(report.status, 'succeeded', JSON.stringify(report.error));
      localOriginal = state
        .listRejects({ pipeline: 'regions-inbound' })
        .map((r) => `${r.key} ${r.reason}`)
        .sort();
      emeaArrives(local);
      const replayed = await runReplay(regions, { ...options, runId: report.runId });
      localCounts = [replayed.resolved, replayed.upserted, replayed.stillRejected];
      localAfter = state
        .listRejects({ pipeline: 'regions-inbound' })
        .map((r) => `${r.key} ${r.status}`)
        .sort();
    } finally {
      state.close();
    }

    // The exported pipeline and its replay pipeline on the runtime, over the same lake.
    const rt = await openDeployedRuntime({
      workspaceDir: path.join(dir, 'ws'),
      // Files are written with the wall clock's modified times: the runtime's clock runs ahead.
      startTime: new Date(Date.now() + 3_600_000).toISOString(),
      dataverseUrl: synapse.url,
      fileSystems: (settings) => ({ [settings.lakeFileSystem]: lake }),
    });
    let synapseOriginal: string[];
    let synapseAfter: string[];
    let replay: PipelineRun;
    try {
      const run = await rt.runPipeline('pl_regions_inbound', { mode: 'scheduled' });
      assert.equal(run.status, 'Succeeded', describeRun(run));
      const rejects = (column: 'reason' | 'status') =>
        rt.services.sql.duck.all<{ key: string; value: string }>(
          `SELECT key, ${column} AS value FROM ferry.rejects WHERE pipeline = 'regions-inbound' AND run_id = '${run.runId}'`,
        );
      synapseOriginal = (await rejects('reason')).map((r) => `${r.key} ${r.value}`).sort();
      emeaArrives(synapse);
      replay = await rt.runPipeline('pl_regions_inbound_replay', { runId: run.runId });
      synapseAfter = (await rejects('status')).map((r) => `${r.key} ${r.value}`).sort();
    } finally {
      await rt.close();
    }

    assert.deepEqual(localOriginal, ['ferry_code=CH lookup.target_missing', 'ferry_code=DACH lookup.target_missing']);
    assert.deepEqual(synapseOriginal, localOriginal, 'the same rows rejected by the original runs');
    // `ferry replay` resolves both: the parent, then the child deferred until its parent is written.
    assert.deepEqual(localCounts, [2, 2, 0]);
    assert.deepEqual(localAfter, ['ferry_code=CH resolved', 'ferry_code=DACH resolved']);
    assert.equal(replay.status, 'Succeeded', describeRun(replay));
    const finish = replay.activityRuns.find((a) => a.activityName === 'FinishReplay')?.output as {
      resultSets: { rows: Record<string, number>[] }[];
    };
    assert.deepEqual(finish.resultSets[0]?.rows[0], { claimed: 2, resolved: 2, upserted: 2, still_rejected: 0 });
    assert.deepEqual(synapseAfter, localAfter);
    assert.ok(links(local).includes('CH → DACH') && links(local).includes('DACH → EMEA'), links(local).join(', '));
    assert.deepEqual(links(synapse), links(local));
  });
});
