/**
 * Review defect 9 on the exported artifacts: backfill (tumbling-window) triggers have an end, stop creating
 * windows once past it, and a failed window does not hold back the windows after it.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { ArtifactStore } from '../../src/export/synapse/runtime/artifact-store.js';
import { isObject, type JsonObject } from '../../src/export/synapse/runtime/expression/json-value.js';
import { SynapseRuntime } from '../../src/export/synapse/runtime/synapse-runtime.js';
import { loadRealStore, storeWith, stubPipeline } from './real-export.js';

const MIN = 60_000;

/** Stands in for the pipeline's SQL: succeeds, except for the window starting at `failAt`. */
function windowStub(real: ArtifactStore, name: string, failAt: string): { name: string; properties: object } {
  return stubPipeline(real, name, [
    {
      name: 'MaybeFail',
      type: 'IfCondition',
      typeProperties: {
        expression: {
          type: 'Expression',
          value: `@equals(formatDateTime(pipeline().parameters.windowStart, 'yyyy-MM-ddTHH:mm:ssZ'), '${failAt}')`,
        },
        ifTrueActivities: [
          { name: 'Boom', type: 'Fail', typeProperties: { message: 'window refused', errorCode: '1' } },
        ],
      },
    },
  ]);
}

describe('export defect 9: backfill triggers are bounded', () => {
  let real: ArtifactStore;
  let dir: string;
  before(async () => {
    real = await loadRealStore();
    dir = await mkdtemp(path.join(tmpdir(), 'synapse-backfill-'));
  });
  after(async () => rm(dir, { recursive: true, force: true }));

  it('every backfill trigger names an endTime no later than the schedule start', () => {
    const schedule = real.get('trigger', 'tr_ferry_every_15m').properties.typeProperties as JsonObject;
    const scheduleStart = Date.parse(String((schedule.recurrence as JsonObject).startTime));
    const backfills = real.names('trigger').filter((n) => n.endsWith('_backfill'));
    assert.ok(backfills.length >= 4);
    for (const n of backfills) {
      const tp = real.get('trigger', n).properties.typeProperties as JsonObject;
      assert.equal(typeof tp.endTime, 'string', `${n} has an endTime`);
      assert.ok(Date.parse(String(tp.endTime)) <= scheduleStart, `${n} ends where the schedule takes over`);
      assert.ok(Date.parse(String(tp.startTime)) < Date.parse(String(tp.endTime)), `${n} starts before it ends`);
    }
  });

  it('runs its windows once, none after the end, and one failed window does not block the later ones', async () => {
    const tp = real.get('trigger', 'tr_currencies_inbound_backfill').properties.typeProperties as JsonObject;
    const startMs = Date.parse(String(tp.startTime));
    const sizeMs = Number(tp.interval) * MIN;
    const failAt = new Date(startMs + sizeMs).toISOString().replace('.000', '');
    const store = storeWith(real, { pipeline: [windowStub(real, 'pl_currencies_inbound', failAt)] });
    // Start the clock past the end when there is one, else two hours after the start (today's export).
    const endMs = typeof tp.endTime === 'string' ? Date.parse(tp.endTime) : startMs + 2 * 60 * MIN;
    const rt = await SynapseRuntime.open({
      artifacts: store,
      workspaceDir: path.join(dir, 'ws'),
      startTime: new Date(endMs + 60 * MIN).toISOString(),
    });
    try {
      rt.startTrigger('tr_currencies_inbound_backfill');
      await rt.triggers.evaluateNow();
      const first = rt.triggers.windows('tr_currencies_inbound_backfill').length;
      await rt.runTicks(8, 15 * MIN);
      const windows = rt.triggers.windows('tr_currencies_inbound_backfill');
      assert.equal(windows.length, first, 'no window is created after the end (a runaway trigger keeps adding)');
      assert.equal(first, Math.round((endMs - startMs) / sizeMs));
      assert.ok(windows.every((w) => w.endMs <= endMs));
      const failed = windows.filter((w) => w.status === 'Failed');
      assert.deepEqual(
        failed.map((w) => w.startMs),
        [startMs + sizeMs],
        'only the refused window failed; later windows ran (no self-dependency chain)',
      );
      assert.ok(windows.filter((w) => w.startMs > startMs + sizeMs).every((w) => w.status === 'Succeeded'));
      assert.deepEqual(rt.engine.unfinishedRuns(), []);
    } finally {
      await rt.close();
    }
  });

  it("a child's window waits for the same window of its parent's backfill", async () => {
    const tp = real.get('trigger', 'tr_contacts_inbound_backfill').properties.typeProperties as JsonObject;
    const deps = (tp.dependsOn as JsonObject[]).filter((d) => d.type === 'TumblingWindowTriggerDependencyReference');
    assert.deepEqual(
      deps.map((d) => (isObject(d.referenceTrigger) ? d.referenceTrigger.referenceName : '')),
      ['tr_accounts_inbound_backfill'],
    );
    assert.ok(!(tp.dependsOn as JsonObject[]).some((d) => d.type === 'SelfDependencyTumblingWindowTriggerReference'));
  });
});
