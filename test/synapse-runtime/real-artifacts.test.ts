import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { inspectArtifacts } from '../../src/export/synapse/runtime/artifact-inspector.js';
import { ArtifactStore } from '../../src/export/synapse/runtime/artifact-store.js';
import { isObject, type JsonObject } from '../../src/export/synapse/runtime/expression/json-value.js';
import { SynapseRuntime } from '../../src/export/synapse/runtime/synapse-runtime.js';

const SYNAPSE = 'synapse';

describe('the real exported artifacts under synapse/', () => {
  let store: ArtifactStore;
  let dir: string;
  before(async () => {
    store = await ArtifactStore.load(SYNAPSE);
    dir = await mkdtemp(path.join(tmpdir(), 'synapse-real-'));
  });
  after(async () => rm(dir, { recursive: true, force: true }));

  it('loads every artifact kind with its parameters and variables', () => {
    assert.ok(store.names('pipeline').includes('pl_accounts_inbound'));
    assert.ok(store.names('trigger').includes('tr_ferry_every_15m'));
    assert.ok(store.names('dataset').includes('ds_ferry_lake_parquet'));
    assert.ok(store.names('linkedService').includes('ls_ferry_sql'));
  });

  it('lists every SQL step it cannot run on DuckDB by name, and nothing else it does not implement', () => {
    const findings = inspectArtifacts(store);
    const unsupported = findings.filter((f) => f.kind !== 'sql-without-duckdb-rendering');
    assert.deepEqual(
      unsupported,
      [],
      'every activity type, property and expression function of the export is implemented',
    );
    const sql = findings.filter((f) => f.kind === 'sql-without-duckdb-rendering').map((f) => f.where);
    // Every Script block, source query and preCopyScript of the export names its plan step (`-- ferry-step: <id>`).
    let expected = 0;
    const ids: string[] = [];
    const idOf = (v: unknown) => {
      const text = isObject(v) ? String(v.value) : String(v);
      const id = /^-- ferry-step: (\S+)\n/.exec(text)?.[1];
      if (id) ids.push(id);
    };
    for (const name of store.names('pipeline')) {
      const walk = (activities: unknown) => {
        for (const a of Array.isArray(activities) ? activities : []) {
          if (!isObject(a)) continue;
          const tp = (a.typeProperties ?? {}) as JsonObject;
          if (a.type === 'Script') {
            expected += (tp.scripts as unknown[]).length;
            for (const s of tp.scripts as JsonObject[]) idOf(s.text);
          }
          if (isObject(tp.source) && tp.source.sqlReaderQuery) {
            expected++;
            idOf(tp.source.sqlReaderQuery);
          }
          if (isObject(tp.sink) && tp.sink.preCopyScript) {
            expected++;
            idOf(tp.sink.preCopyScript);
          }
          walk(tp.ifTrueActivities);
          walk(tp.ifFalseActivities);
          walk(tp.activities);
        }
      };
      walk(store.get('pipeline', name).properties.activities);
    }
    assert.deepEqual(sql, [], 'no SQL step without a plan step id');
    assert.equal(ids.length, expected, 'every SQL step starts with its `-- ferry-step:` line');
    assert.ok(ids.includes('accounts-inbound:begin-run'));
    assert.ok(ids.includes('accounts-outbound:extract:account'));
  });

  it('names an activity type, property or function it does not implement', () => {
    const p = store.get('pipeline', 'pl_currencies_inbound').properties;
    const mutated = ArtifactStore.fromObjects({
      pipeline: [
        {
          name: 'pl_mutated',
          properties: {
            ...p,
            activities: [
              ...(p.activities as JsonObject[]),
              { name: 'Notify', type: 'WebHook', typeProperties: { url: 'https://example.org' } },
              {
                name: 'Odd',
                type: 'Wait',
                typeProperties: { waitTimeInSeconds: "@xpath(xml('<a/>'), '/a')", jitter: 1 },
              },
            ],
          },
        },
      ],
    });
    const findings = inspectArtifacts(mutated).filter((f) => f.kind !== 'sql-without-duckdb-rendering');
    assert.deepEqual(
      findings.map((f) => [f.kind, f.where, f.detail]),
      [
        ['activity-type', 'pipeline pl_mutated / Notify', '`WebHook`'],
        ['function', 'pipeline pl_mutated / Odd', '`xpath()`'],
        ['function', 'pipeline pl_mutated / Odd', '`xml()`'],
        ['property', 'pipeline pl_mutated / Odd / typeProperties', '`jitter`'],
      ],
    );
  });

  it('runs a real pipeline until its first T-SQL step and fails there, naming it — never a silent pass', async () => {
    const rt = await SynapseRuntime.open({
      artifacts: store,
      workspaceDir: path.join(dir, 'ws'),
      startTime: '2026-11-20T10:00:00Z',
    });
    try {
      const run = await rt.runPipeline('pl_accounts_inbound', { mode: 'manual' });
      assert.equal(run.status, 'Failed');
      const begin = run.activityRuns.filter((a) => a.activityName === 'BeginRun');
      assert.equal(begin.length, 3, 'BeginRun is retried twice per its policy');
      assert.equal(begin[0]!.error!.errorCode, 'SqlStepNotRunnable');
      assert.match(
        begin[0]!.error!.message,
        /Script `BeginRun` block 1 names plan step `accounts-inbound:begin-run`, which has no DuckDB rendering/,
      );
      const others = run.activityRuns.filter(
        (a) => a.activityName !== 'BeginRun' && a.activityName !== 'MarkRunFailed',
      );
      assert.ok(others.every((a) => a.status === 'Skipped'));
      // The failure handler runs after any failure; without renderings it is refused by name as well.
      const marked = run.activityRuns.filter((a) => a.activityName === 'MarkRunFailed');
      assert.ok(marked.length >= 1 && marked.every((a) => a.error?.errorCode === 'SqlStepNotRunnable'));
      rt.startTrigger('tr_ferry_every_15m');
      await rt.runTicks(1);
      const scheduled = rt.runs.filter((r) => r.pipelineName === 'pl_ferry_every_15m');
      assert.equal(scheduled.length, 1);
      assert.equal(scheduled[0]!.status, 'Failed');
      assert.equal(scheduled[0]!.invokedBy.invokedByType, 'ScheduleTrigger');
      assert.equal(scheduled[0]!.parameters.scheduledTime, '2026-11-20T10:15:00Z');
      assert.deepEqual(rt.engine.unfinishedRuns(), []);
    } finally {
      await rt.close();
    }
  });
});
