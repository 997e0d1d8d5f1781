/**
 * Review "Recovery" — a parent and its child in one window: the same delta file through the local runner
 * (`regions-inbound`, its own emulator) and through the exported `pl_regions_inbound` on the runtime (another
 * emulator) gives the same records with the same parent links, and the same rejects (key and reason).
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
import { loadExportSettings } from '../../src/export/synapse/export-settings.js';
import { SynapseRuntime } from '../../src/export/synapse/runtime/synapse-runtime.js';
import { synapseDataSources, synapseStepRenderings } from '../../src/export/synapse/step-renderings.js';
import { stageRegistry } from '../../src/stages/registry.js';

const METADATA = 'fixtures/metadata';

describe('same-window parent and child: the exported pipeline agrees with the local runner', () => {
  let dir: string;
  let local: RunningEmulator;
  let synapse: RunningEmulator;
  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'synapse-vs-local-'));
    local = await startEmulator({ metadataDir: METADATA });
    synapse = await startEmulator({ metadataDir: METADATA });
  });
  after(async () => {
    await local.close();
    await synapse.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('records, parent links and rejects are the same', async () => {
    const lake = path.join(dir, 'lake');
    const file = path.join(lake, 'inbound', 'regions', '2026-11-20T08-00-00Z.parquet');
    await mkdir(path.dirname(file), { recursive: true });
    const rows: [string, string | null][] = [
      ['CH', 'DACH'],
      ['DACH', 'EMEA'],
      ['EMEA', null],
      ['ORPHAN', 'NOWHERE'],
      // A child whose parent of the same window is itself rejected: neither is written.
      ['KID', 'BADPARENT'],
      ['BADPARENT', 'NOWHERE'],
      // Enough rows that the rejects stay within the pipeline's threshold (5 %).
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

    // The local runner.
    const config = resolveConfig({ lake, state: path.join(dir, 'state'), metadata: METADATA }, {});
    const state = SqliteStateStore.openIn(config.state);
    let localRejects: string[];
    try {
      const report = await runPipeline(regions, {
        config,
        lake: new LocalLake(config.lake),
        state,
        registry: stageRegistry,
        log: silentLogger,
        services: { dataverse: { url: local.url }, openStaging: openRunStaging },
        mode: 'scheduled',
      });
      assert.equal(report.status, 'succeeded', JSON.stringify(report.error));
      localRejects = state
        .listRejects({ pipeline: 'regions-inbound' })
        .map((r) => `${r.key} ${r.reason}`)
        .sort();
    } finally {
      state.close();
    }

    // The exported pipeline on the runtime, over the same lake.
    const settings = await loadExportSettings('synapse/settings.json');
    const rt = await SynapseRuntime.open({
      artifacts: 'synapse',
      workspaceDir: path.join(dir, 'ws'),
      startTime: new Date(Date.now() + 3_600_000).toISOString(),
      dataverseUrl: synapse.url,
      dataverseSleep: async () => undefined,
      stepRenderings: await synapseStepRenderings(defs, { settings, metadataDir: METADATA }),
      dataSources: synapseDataSources(settings),
      fileSystems: { [settings.lakeFileSystem]: lake },
    });
    let synapseRejects: string[];
    try {
      await rt.runSetup(['sql/tsql/setup/ferry-state.sql']);
      const run = await rt.runPipeline('pl_regions_inbound', { mode: 'scheduled' });
      assert.equal(
        run.status,
        'Succeeded',
        run.activityRuns.map((a) => `${a.activityName} ${a.status} ${a.error?.message ?? ''}`).join('\n'),
      );
      synapseRejects = (
        await rt.services.sql.duck.all<{ key: string; reason: string }>(
          `SELECT key, reason FROM ferry.rejects WHERE pipeline = 'regions-inbound'`,
        )
      )
        .map((r) => `${r.key} ${r.reason}`)
        .sort();
    } finally {
      await rt.close();
    }

    // Records by code, each with its parent's code (ids differ between the two emulators).
    const links = (emulator: RunningEmulator) => {
      const all = emulator.store.rows('ferry_region');
      const code = new Map(all.map((r) => [r.id, String(r.attributes.ferry_code)]));
      return all
        .map((r) => `${r.attributes.ferry_code} → ${code.get(String(r.attributes.ferry_parentregionid)) ?? '-'}`)
        .sort();
    };
    assert.ok(links(local).includes('CH → DACH') && links(local).includes('DACH → EMEA'), links(local).join(', '));
    assert.deepEqual(links(synapse), links(local));
    assert.deepEqual(localRejects, [
      'ferry_code=BADPARENT lookup.target_missing',
      'ferry_code=KID lookup.target_missing',
      'ferry_code=ORPHAN lookup.target_missing',
    ]);
    assert.deepEqual(synapseRejects, localRejects);
  });
});
