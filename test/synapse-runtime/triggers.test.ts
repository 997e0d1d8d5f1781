import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, describe, it } from 'node:test';
import { ArtifactStore } from '../../src/export/synapse/runtime/artifact-store.js';
import type { JsonObject } from '../../src/export/synapse/runtime/expression/json-value.js';
import { SynapseRuntime } from '../../src/export/synapse/runtime/synapse-runtime.js';
import { occurrences, readRecurrence } from '../../src/export/synapse/runtime/triggers/recurrence.js';

const MIN = 60_000;
const iso = (ms: number) => new Date(ms).toISOString().replace('.000', '');

// A pipeline that records its window (DuckDB SQL, hand-written) and fails for one chosen window start.
const PIPELINE = {
  name: 'pl_window',
  properties: {
    parameters: {
      windowStart: { type: 'String' },
      windowEnd: { type: 'String', defaultValue: '' },
      failAt: { type: 'String', defaultValue: '' },
    },
    activities: [
      {
        name: 'Record',
        type: 'Script',
        linkedServiceName: { referenceName: 'ls_sql', type: 'LinkedServiceReference' },
        typeProperties: {
          scripts: [
            {
              type: 'NonQuery',
              text: "CREATE TABLE IF NOT EXISTS fired (trigger VARCHAR, window_start VARCHAR, window_end VARCHAR); INSERT INTO fired VALUES ('@{pipeline().TriggerName}', '@{pipeline().parameters.windowStart}', '@{pipeline().parameters.windowEnd}')",
            },
          ],
        },
      },
      {
        name: 'MaybeFail',
        type: 'IfCondition',
        dependsOn: [{ activity: 'Record', dependencyConditions: ['Succeeded'] }],
        typeProperties: {
          expression: {
            type: 'Expression',
            value: '@equals(pipeline().parameters.windowStart, pipeline().parameters.failAt)',
          },
          ifTrueActivities: [
            { name: 'Boom', type: 'Fail', typeProperties: { message: 'window refused', errorCode: '1' } },
          ],
        },
      },
    ],
  },
};

const schedule = (name: string, recurrence: JsonObject): JsonObject => ({
  name,
  properties: {
    type: 'ScheduleTrigger',
    typeProperties: { recurrence },
    pipelines: [
      {
        pipelineReference: { referenceName: 'pl_window', type: 'PipelineReference' },
        parameters: { windowStart: '@trigger().scheduledTime' },
      },
    ],
  },
});

const tumbling = (name: string, extra: JsonObject, failAt = ''): JsonObject => ({
  name,
  properties: {
    type: 'TumblingWindowTrigger',
    pipeline: {
      pipelineReference: { referenceName: 'pl_window', type: 'PipelineReference' },
      parameters: {
        windowStart: '@trigger().outputs.windowStartTime',
        windowEnd: '@trigger().outputs.windowEndTime',
        failAt,
      },
    },
    typeProperties: {
      frequency: 'Minute',
      interval: 15,
      startTime: '2026-03-01T00:00:00Z',
      maxConcurrency: 2,
      ...extra,
    },
  },
});

const TRIGGERS = [
  schedule('tr_15m', {
    frequency: 'Minute',
    interval: 15,
    startTime: '2026-03-01T00:00:00Z',
    endTime: '2026-03-01T01:30:00Z',
    timeZone: 'UTC',
  }),
  schedule('tr_daily_local', {
    frequency: 'Day',
    interval: 1,
    startTime: '2026-03-28T06:00:00',
    timeZone: 'W. Europe Standard Time',
    schedule: { hours: [6], minutes: [0, 30] },
  }),
  tumbling('tr_backfill', {
    endTime: '2026-03-01T01:00:00Z',
    dependsOn: [{ type: 'SelfDependencyTumblingWindowTriggerReference', offset: '-00:15:00' }],
  }),
  tumbling(
    'tr_failing',
    {
      retryPolicy: { count: 1, intervalInSeconds: 120 },
      dependsOn: [{ type: 'SelfDependencyTumblingWindowTriggerReference', offset: '-00:15:00' }],
    },
    '2026-03-01T00:15:00Z',
  ),
  tumbling('tr_upstream', { endTime: '2026-03-01T00:30:00Z' }),
  tumbling('tr_downstream', {
    endTime: '2026-03-01T00:30:00Z',
    delay: '00:05:00',
    dependsOn: [
      {
        type: 'TumblingWindowTriggerDependencyReference',
        referenceTrigger: { referenceName: 'tr_upstream', type: 'TriggerReference' },
      },
    ],
  }),
];

const SLOW = {
  name: 'pl_slow',
  properties: {
    parameters: { windowStart: { type: 'String' } },
    activities: [{ name: 'Work', type: 'Wait', typeProperties: { waitTimeInSeconds: 600 } }],
  },
};
TRIGGERS.push({
  name: 'tr_parallel',
  properties: {
    type: 'TumblingWindowTrigger',
    pipeline: {
      pipelineReference: { referenceName: 'pl_slow', type: 'PipelineReference' },
      parameters: { windowStart: '@trigger().outputs.windowStartTime' },
    },
    typeProperties: {
      frequency: 'Minute',
      interval: 15,
      startTime: '2026-03-01T00:00:00Z',
      endTime: '2026-03-01T01:00:00Z',
      maxConcurrency: 2,
    },
  },
});

const artifacts = () =>
  ArtifactStore.fromObjects({
    linkedService: [{ name: 'ls_sql', properties: { type: 'AzureSqlDatabase', typeProperties: {} } }],
    pipeline: [PIPELINE, SLOW],
    trigger: TRIGGERS as { name: string; properties: JsonObject }[],
  });

let dir: string | undefined;
let rt: SynapseRuntime | undefined;
async function open(startTime: string): Promise<SynapseRuntime> {
  dir = await mkdtemp(path.join(tmpdir(), 'synapse-trig-'));
  rt = await SynapseRuntime.open({ artifacts: artifacts(), workspaceDir: dir, startTime });
  return rt;
}
async function fired(r: SynapseRuntime, trigger: string): Promise<string[]> {
  const rows = await r.services.sql.duck.all(
    `SELECT window_start FROM fired WHERE trigger = '${trigger}' ORDER BY window_start`,
  );
  return rows.map((x) => String(x.window_start));
}

describe('triggers over ticks', () => {
  afterEach(async () => {
    await rt?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
    rt = undefined;
  });

  it('fires a schedule trigger at each occurrence up to its endTime, never backfilling', async () => {
    const r = await open('2026-03-01T00:20:00Z');
    r.startTrigger('tr_15m');
    await r.runTicks(8, 15 * MIN);
    assert.deepEqual(await fired(r, 'tr_15m'), [
      '2026-03-01T00:30:00Z',
      '2026-03-01T00:45:00Z',
      '2026-03-01T01:00:00Z',
      '2026-03-01T01:15:00Z',
      '2026-03-01T01:30:00Z',
    ]);
    assert.ok(r.runs.every((x) => x.invokedBy.invokedByType === 'ScheduleTrigger' && x.status === 'Succeeded'));
  });

  it('computes schedule occurrences in a time zone across a DST change', () => {
    const rec = readRecurrence(
      ((TRIGGERS[1]!.properties as JsonObject).typeProperties as JsonObject).recurrence,
      'tr_daily_local',
    );
    const got = occurrences(rec, Date.parse('2026-03-27T00:00:00Z'), Date.parse('2026-03-30T00:00:00Z')).map(iso);
    // CET is UTC+1 until 29 March 2026 02:00, then CEST UTC+2.
    assert.deepEqual(got, [
      '2026-03-28T05:00:00Z',
      '2026-03-28T05:30:00Z',
      '2026-03-29T04:00:00Z',
      '2026-03-29T04:30:00Z',
    ]);
  });

  it('backfills tumbling windows oldest first, bounded by endTime', async () => {
    const r = await open('2026-03-01T02:00:00Z');
    r.startTrigger('tr_backfill');
    await r.triggers.evaluateNow();
    assert.deepEqual(await fired(r, 'tr_backfill'), [
      '2026-03-01T00:00:00Z',
      '2026-03-01T00:15:00Z',
      '2026-03-01T00:30:00Z',
      '2026-03-01T00:45:00Z',
    ]);
    await r.runTicks(4, 15 * MIN);
    assert.equal(r.triggers.windows('tr_backfill').length, 4, 'no window after endTime');
    assert.ok(r.triggers.windows('tr_backfill').every((w) => w.status === 'Succeeded'));
  });

  it('runs at most maxConcurrency windows at once', async () => {
    const r = await open('2026-03-01T02:00:00Z');
    r.startTrigger('tr_parallel');
    await r.triggers.evaluateNow();
    const runs = r.runs
      .filter((x) => x.pipelineName === 'pl_slow')
      .map((x) => [x.parameters.windowStart, x.runStart, x.runEnd]);
    // Four 10-minute runs, two at a time: two rounds.
    assert.deepEqual(runs, [
      ['2026-03-01T00:00:00Z', '2026-03-01T02:00:00.0000000Z', '2026-03-01T02:10:00.0000000Z'],
      ['2026-03-01T00:15:00Z', '2026-03-01T02:00:00.0000000Z', '2026-03-01T02:10:00.0000000Z'],
      ['2026-03-01T00:30:00Z', '2026-03-01T02:10:00.0000000Z', '2026-03-01T02:20:00.0000000Z'],
      ['2026-03-01T00:45:00Z', '2026-03-01T02:10:00.0000000Z', '2026-03-01T02:20:00.0000000Z'],
    ]);
  });

  it('retries a failed window per retryPolicy; the self-dependency holds later windows', async () => {
    const r = await open('2026-03-01T01:00:00Z');
    r.startTrigger('tr_failing');
    await r.triggers.evaluateNow();
    const windows = r.triggers.windows('tr_failing');
    assert.deepEqual(
      windows.map((w) => [w.status, w.attempts]),
      [
        ['Succeeded', 1],
        ['Failed', 2],
        ['Waiting', 0],
        ['Waiting', 0],
      ],
    );
    await r.runTicks(2, 15 * MIN);
    assert.equal(
      r.triggers.windows('tr_failing').filter((w) => w.status === 'Waiting').length,
      4,
      'later windows keep waiting',
    );
  });

  it('waits for a dependency trigger and honours delay', async () => {
    const r = await open('2026-03-01T00:00:00Z');
    r.startTrigger('tr_downstream');
    r.startTrigger('tr_upstream');
    await r.runTicks(1, 15 * MIN);
    assert.deepEqual(await fired(r, 'tr_upstream'), ['2026-03-01T00:00:00Z']);
    assert.deepEqual(await fired(r, 'tr_downstream'), [], 'the 5-minute delay has not passed');
    await r.runTicks(1, 5 * MIN);
    assert.deepEqual(await fired(r, 'tr_downstream'), ['2026-03-01T00:00:00Z']);
    await r.runTicks(3, 15 * MIN);
    assert.deepEqual(await fired(r, 'tr_downstream'), ['2026-03-01T00:00:00Z', '2026-03-01T00:15:00Z']);
  });
});
