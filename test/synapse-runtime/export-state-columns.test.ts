/**
 * State columns on the exported Synapse path, run by the runtime on the real copies to Dataverse against the
 * Dataverse emulator over HTTP. A new record cannot be created in a non-default state (the service refuses the
 * statuscode, 0x80040203): the copies create the records without `statecode`/`statuscode`, then
 * `CopyStateToDataverse` sets them on the existing records. Won/Lost opportunities (reached only through
 * WinOpportunity/LoseOpportunity) are left out of the state copy; the close messages that follow are tested in
 * export-close-messages.test.ts.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
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
import type { PipelineRun } from '../../src/export/synapse/runtime/run-records.js';
import { SynapseRuntime } from '../../src/export/synapse/runtime/synapse-runtime.js';
import { synapseStepRenderings } from '../../src/export/synapse/step-renderings.js';
import { allActivities, BracketProjectionEngine, loadRealStore, projectionColumns, storeWith } from './real-export.js';

const USER = '5f0c2a7e-1111-4a4a-9b9b-000000000002';
const STATE = ['statecode', 'statuscode'];

function dataverseCopies(real: ArtifactStore, pipeline: string): JsonObject[] {
  return allActivities(real, pipeline).filter(
    (a) =>
      a.type === 'Copy' &&
      isObject(a.typeProperties) &&
      isObject(a.typeProperties.sink) &&
      a.typeProperties.sink.type === 'CommonDataServiceForAppsSink',
  );
}

const mapped = (copy: JsonObject) =>
  ((copy.typeProperties as JsonObject).translator as { mappings: { sink: { name: string } }[] }).mappings.map(
    (m) => m.sink.name,
  );
const inputTable = (copy: JsonObject) => String(((copy.inputs as JsonObject[])[0]!.parameters as JsonObject).tableName);
const failures = (run: PipelineRun) =>
  run.activityRuns.map((a) => `${a.activityName}: ${a.error?.errorCode} ${a.error?.message}`).join('\n');

describe('state columns on the Synapse path: new records in an inactive state, won/lost opportunities', () => {
  let real: ArtifactStore;
  let dir: string;
  let emulator: RunningEmulator;
  let renderings: StepRenderings;
  before(async () => {
    real = await loadRealStore();
    renderings = await synapseStepRenderings(await loadPipelines('pipelines'), {
      settings: await loadExportSettings('synapse/settings.json'),
      metadataDir: 'fixtures/metadata',
    });
    dir = await mkdtemp(path.join(tmpdir(), 'synapse-state-'));
    emulator = await startEmulator({ metadataDir: 'fixtures/metadata' });
    emulator.store.put('systemuser', USER, { systemuserid: USER, fullname: 'Ferry Owner' });
  });
  after(async () => {
    await emulator.close();
    await rm(dir, { recursive: true, force: true });
  });

  /** Runs `copies` (in this order) over a sink table holding `rows`; other columns NULL, the owner set. */
  async function runCopies(
    name: string,
    copies: readonly JsonObject[],
    rows: readonly Record<string, string>[],
  ): Promise<PipelineRun> {
    const sinkTable = inputTable(copies[0]!);
    const query = String(((copies[0]!.typeProperties as JsonObject).source as JsonObject).sqlReaderQuery);
    const columns = projectionColumns(query);
    const duck = await DuckDbStaging.open({ path: ':memory:', threads: 1, memoryLimit: '256MB' });
    await duck.run(
      `CREATE TABLE ${duckIdent(sinkTable)} (${columns.map((c) => `${duckIdent(c)} VARCHAR`).join(', ')})`,
    );
    for (const r of rows) {
      const values = columns.map((c) =>
        c === 'ownerid' ? duckLiteral(USER) : r[c] === undefined ? 'NULL' : duckLiteral(r[c]!),
      );
      await duck.run(`INSERT INTO ${duckIdent(sinkTable)} VALUES (${values.join(', ')})`);
    }
    const store = storeWith(real, {
      pipeline: [
        {
          name,
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
      workspaceDir: path.join(dir, name),
      startTime: '2026-01-02T00:00:00Z',
      dataverseUrl: emulator.url,
      sqlEngine: new BracketProjectionEngine(duck, renderings),
    });
    try {
      return await rt.runPipeline(name);
    } finally {
      await rt.close();
      await duck.close();
    }
  }

  const record = (table: string, key: string, value: string) =>
    emulator.store.rows(table).filter((r) => r.attributes[key] === value);

  it('only CopyStateToDataverse maps the state columns: key and state, nulls ignored, after the other copies', () => {
    for (const p of ['pl_accounts_inbound', 'pl_contacts_inbound', 'pl_opportunities_inbound']) {
      const copies = dataverseCopies(real, p);
      const state = copies.find((c) => c.name === 'CopyStateToDataverse');
      assert.ok(state, `${p} has CopyStateToDataverse`);
      for (const c of copies.filter((x) => x !== state))
        for (const col of STATE) assert.ok(!mapped(c).includes(col), `${p}/${c.name} does not map ${col}`);
      // The key (the first copy's leading columns), then the state columns the mapping writes.
      const written = mapped(state).filter((c) => STATE.includes(c));
      const key = mapped(state).filter((c) => !STATE.includes(c));
      assert.ok(written.length > 0 && key.length > 0, `${p}: ${mapped(state).join(', ')}`);
      assert.deepEqual(mapped(state), [...key, ...written]);
      assert.deepEqual(key, mapped(copies[0]!).slice(0, key.length));
      assert.equal(((state.typeProperties as JsonObject).sink as JsonObject).ignoreNullValues, true);
      // Transitively after every other copy of the first pass (the deferred lookups' copy comes after it).
      const byName = new Map(allActivities(real, p).map((a) => [String(a.name), a]));
      const before = new Set<string>();
      const walk = (a: JsonObject) => {
        for (const d of (a.dependsOn as { activity: string }[]) ?? [])
          if (!before.has(d.activity)) {
            before.add(d.activity);
            walk(byName.get(d.activity)!);
          }
      };
      walk(state);
      for (const c of copies.filter((x) => x !== state && x.name !== 'CopyDeferredLookupsToDataverse'))
        assert.ok(before.has(String(c.name)), `${p}: CopyStateToDataverse runs after ${c.name}`);
    }
  });

  it('a new account in an inactive state is created, then its state is set (one copy with its state is refused)', async () => {
    const copies = dataverseCopies(real, 'pl_accounts_inbound').filter(
      (c) => c.name !== 'CopyDeferredLookupsToDataverse',
    );
    const run = await runCopies('pl_state_accounts', copies, [
      { accountnumber: 'S-1', name: 'inactive', statecode: '1', statuscode: '2' },
      { accountnumber: 'S-2', name: 'active', statecode: '0', statuscode: '1' },
      { accountnumber: 'S-3', name: 'no state' },
    ]);
    assert.equal(run.status, 'Succeeded', failures(run));
    const s1 = record('account', 'accountnumber', 'S-1');
    assert.equal(s1.length, 1);
    assert.equal(s1[0]!.attributes.statecode, 1);
    assert.equal(s1[0]!.attributes.statuscode, 2);
    assert.equal(record('account', 'accountnumber', 'S-2')[0]!.attributes.statecode, 0);
    assert.equal(record('account', 'accountnumber', 'S-3')[0]!.attributes.statecode, 0, 'created in the default');

    // Control: the first copy with the state columns mapped (what the export emitted before) is refused.
    const first = copies[0]!;
    const tp = first.typeProperties as JsonObject;
    const translator = tp.translator as { mappings: { source: { name: string }; sink: { name: string } }[] };
    const withState = {
      ...first,
      typeProperties: {
        ...tp,
        translator: {
          ...translator,
          mappings: [
            ...translator.mappings,
            ...STATE.map((c) => ({ source: { name: c }, sink: { name: c, type: 'Int32' } })),
          ],
        },
      },
    };
    const refused = await runCopies(
      'pl_state_refused',
      [withState],
      [{ accountnumber: 'S-4', name: 'inactive', statecode: '1', statuscode: '2' }],
    );
    assert.equal(refused.status, 'Failed');
    assert.match(failures(refused), /is not a valid status code for state code/);
    assert.equal(record('account', 'accountnumber', 'S-4').length, 0);
  });

  it('a won opportunity is written open by the copies and left out of the state copy; the close messages follow them', async () => {
    const copies = dataverseCopies(real, 'pl_opportunities_inbound').filter(
      (c) => c.name !== 'CopyDeferredLookupsToDataverse',
    );
    const run = await runCopies('pl_state_opportunities', copies, [
      { ferry_legacyid: 'SO-1', name: 'won', statecode: '1', statuscode: '3' },
      { ferry_legacyid: 'SO-2', name: 'open', statecode: '0', statuscode: '2' },
    ]);
    assert.equal(run.status, 'Succeeded', failures(run));
    const won = record('opportunity', 'ferry_legacyid', 'SO-1');
    assert.equal(won.length, 1);
    assert.equal(won[0]!.attributes.statecode, 0, 'not closed: only WinOpportunity closes it');
    assert.equal(record('opportunity', 'ferry_legacyid', 'SO-2')[0]!.attributes.statuscode, 2);
    // Closed afterwards by WinOpportunity (web-activity close tests: export-close-messages.test.ts).
    const list = allActivities(real, 'pl_opportunities_inbound').find((a) => a.name === 'ListCloseMessages');
    assert.ok(list, 'pl_opportunities_inbound lists the won/lost rows to close');
    assert.deepEqual(list.dependsOn, [{ activity: 'CopyStateToDataverse', dependencyConditions: ['Succeeded'] }]);
    assert.equal(
      allActivities(real, 'pl_accounts_inbound').some((a) => a.name === 'ListCloseMessages'),
      false,
      'accounts have no message-only state',
    );
  });
});
