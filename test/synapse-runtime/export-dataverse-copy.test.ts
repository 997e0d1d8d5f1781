/**
 * Review defects 3, 4 and 13 on the exported artifacts: the real copies to Dataverse of each inbound pipeline,
 * run by the runtime against the Dataverse emulator over HTTP.
 * - 3: a multi-target attribute (`ownerid`, Customer columns) always carries `<col>@EntityReference`, else the
 *   connector fails with `DynamicsMissingTargetForMultiTargetLookupField`;
 * - 4: no copy maps a MultiSelectPicklist column (the connector refuses it);
 * - 13: `writeBatchSize` ≤ 10 and `parallelCopies` set (connector doc), and a null lookup leaves the record's
 *   lookup unchanged, as the local writer (which omits it) does.
 */
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { loadPipelines } from '../../src/core/pipeline-loader.js';
import { DuckDbStaging, duckIdent, duckLiteral } from '../../src/dialects/duckdb/driver.js';
import { type RunningEmulator, startEmulator } from '../../src/emulator/server.js';
import { loadExportSettings } from '../../src/export/synapse/export-settings.js';
import type { ArtifactStore } from '../../src/export/synapse/runtime/artifact-store.js';
import type { StepRenderings } from '../../src/export/synapse/runtime/connectors/sql-engine.js';
import { isObject, type JsonObject } from '../../src/export/synapse/runtime/expression/json-value.js';
import { SynapseRuntime } from '../../src/export/synapse/runtime/synapse-runtime.js';
import { synapseStepRenderings } from '../../src/export/synapse/step-renderings.js';
import { allActivities, BracketProjectionEngine, loadRealStore, projectionColumns, storeWith } from './real-export.js';

const USER = '5f0c2a7e-1111-4a4a-9b9b-000000000001';
const PIPELINES = ['pl_accounts_inbound', 'pl_contacts_inbound', 'pl_opportunities_inbound'];

function dataverseCopies(real: ArtifactStore, pipeline: string): JsonObject[] {
  return allActivities(real, pipeline).filter(
    (a) =>
      a.type === 'Copy' &&
      isObject(a.typeProperties) &&
      isObject(a.typeProperties.sink) &&
      a.typeProperties.sink.type === 'CommonDataServiceForAppsSink',
  );
}

async function keyAttributes(table: string, keyName: string): Promise<string[]> {
  const meta = JSON.parse(await readFile(path.join('fixtures', 'metadata', `${table}.json`), 'utf8'));
  return meta.Keys.find((k: { LogicalName: string }) => k.LogicalName === keyName).KeyAttributes;
}

describe('export defects 3, 4, 13: the copies to Dataverse', () => {
  let real: ArtifactStore;
  let dir: string;
  let emulator: RunningEmulator;
  let renderings: StepRenderings;
  before(async () => {
    real = await loadRealStore();
    // The state copy's query (`state-sink-query`) is not a bare projection: it runs as the export's DuckDB rendering.
    renderings = await synapseStepRenderings(await loadPipelines('pipelines'), {
      settings: await loadExportSettings('synapse/settings.json'),
      metadataDir: 'fixtures/metadata',
    });
    dir = await mkdtemp(path.join(tmpdir(), 'synapse-dvcopy-'));
    emulator = await startEmulator({ metadataDir: 'fixtures/metadata' });
    emulator.store.put('systemuser', USER, { systemuserid: USER, fullname: 'Ferry Owner' });
  });
  after(async () => {
    await emulator.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('sink tuning follows the connector doc: writeBatchSize ≤ 10, parallelCopies set, typed explicit mapping', () => {
    for (const p of PIPELINES) {
      for (const c of dataverseCopies(real, p)) {
        const tp = c.typeProperties as JsonObject;
        const sink = tp.sink as JsonObject;
        assert.ok(Number(sink.writeBatchSize) <= 10, `${p}/${c.name} writeBatchSize ${sink.writeBatchSize}`);
        assert.ok(Number(tp.parallelCopies) >= 1, `${p}/${c.name} sets parallelCopies`);
        assert.ok(isObject(tp.translator), `${p}/${c.name} has an explicit mapping`);
      }
    }
  });

  for (const pipeline of PIPELINES) {
    it(`${pipeline}: the real copies upsert a row with an owner, then a null owner leaves it unchanged`, async () => {
      const copies = dataverseCopies(real, pipeline);
      const first = copies[0]!;
      const tp = first.typeProperties as JsonObject;
      const sinkQuery = String((tp.source as JsonObject).sqlReaderQuery);
      const sinkTable = String(((first.inputs as JsonObject[])[0]!.parameters as JsonObject).tableName);
      const dataset = String((first.outputs as JsonObject[])[0]!.referenceName);
      const table = String((real.get('dataset', dataset).properties.typeProperties as JsonObject).entityName);
      const keys = await keyAttributes(table, String((tp.sink as JsonObject).alternateKeyName));
      const columns = projectionColumns(sinkQuery);
      const ws = path.join(dir, pipeline);
      const duck = await DuckDbStaging.open({ path: ':memory:', threads: 1, memoryLimit: '256MB' });
      await duck.run(
        `CREATE TABLE ${duckIdent(sinkTable)} (${columns.map((c) => `${duckIdent(c)} VARCHAR`).join(', ')})`,
      );
      const row = (owner: string | null, label: string) =>
        columns.map((c) =>
          keys.includes(c)
            ? duckLiteral(`K-${c}`)
            : c === 'ownerid'
              ? owner
                ? duckLiteral(owner)
                : 'NULL'
              : c === 'name' || c === 'lastname'
                ? duckLiteral(label)
                : c === 'statecode'
                  ? "'0'"
                  : 'NULL',
        );
      await duck.run(`INSERT INTO ${duckIdent(sinkTable)} VALUES (${row(USER, 'first').join(', ')})`);
      // The second pass for same-window lookups reads its own table: empty here (no lookup was deferred).
      for (const c of copies) {
        const input = String(((c.inputs as JsonObject[])[0]!.parameters as JsonObject).tableName);
        if (input === sinkTable) continue;
        const cols = projectionColumns(String(((c.typeProperties as JsonObject).source as JsonObject).sqlReaderQuery));
        await duck.run(`CREATE TABLE ${duckIdent(input)} (${cols.map((x) => `${duckIdent(x)} VARCHAR`).join(', ')})`);
      }
      const store = storeWith(real, {
        pipeline: [
          {
            name: 'pl_dataverse_copies',
            properties: {
              activities: copies.map((c, i) => ({
                ...c,
                dependsOn: i === 0 ? [] : [{ activity: copies[i - 1]!.name, dependencyConditions: ['Succeeded'] }],
              })),
            },
          },
        ],
      });
      const rt = await SynapseRuntime.open({
        artifacts: store,
        workspaceDir: ws,
        startTime: '2026-01-02T00:00:00Z',
        dataverseUrl: emulator.url,
        sqlEngine: new BracketProjectionEngine(duck, renderings),
      });
      try {
        const run1 = await rt.runPipeline('pl_dataverse_copies');
        assert.equal(
          run1.status,
          'Succeeded',
          run1.activityRuns.map((a) => `${a.activityName}: ${a.error?.errorCode} ${a.error?.message}`).join('\n'),
        );
        const owned = () => emulator.store.rows(table).filter((r) => r.attributes[keys[0]!] === `K-${keys[0]}`);
        assert.equal(owned().length, 1);
        assert.equal(owned()[0]!.attributes.ownerid, USER);
        await duck.run(`DELETE FROM ${duckIdent(sinkTable)}`);
        await duck.run(`INSERT INTO ${duckIdent(sinkTable)} VALUES (${row(null, 'second').join(', ')})`);
        const run2 = await rt.runPipeline('pl_dataverse_copies');
        assert.equal(run2.status, 'Succeeded', run2.message);
        assert.equal(owned().length, 1);
        assert.equal(owned()[0]!.attributes.ownerid, USER, 'a null lookup is omitted, not cleared');
      } finally {
        await rt.close();
        await duck.close();
      }
    });
  }
});
