import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { ArtifactStore } from '../../src/export/synapse/runtime/artifact-store.js';
import type { JsonObject } from '../../src/export/synapse/runtime/expression/json-value.js';
import type { PipelineRun } from '../../src/export/synapse/runtime/run-records.js';
import { SynapseRuntime } from '../../src/export/synapse/runtime/synapse-runtime.js';

// Hand-written pipelines: their SQL is DuckDB SQL (no T-SQL), so the default engine runs it as written.
const after_ = (activity: string, ...conditions: string[]) => ({ activity, dependencyConditions: conditions });
const fail = (name: string, dependsOn: JsonObject[] = []): JsonObject => ({
  name,
  type: 'Fail',
  dependsOn,
  typeProperties: { message: `${name} failed on purpose`, errorCode: '42' },
});
const wait = (name: string, seconds: number, dependsOn: JsonObject[] = [], policy?: JsonObject): JsonObject => ({
  name,
  type: 'Wait',
  dependsOn,
  typeProperties: { waitTimeInSeconds: seconds },
  ...(policy ? { policy } : {}),
});
const script = (name: string, text: string, extra: JsonObject = {}): JsonObject => ({
  name,
  type: 'Script',
  linkedServiceName: { referenceName: 'ls_sql', type: 'LinkedServiceReference' },
  typeProperties: { scripts: [{ type: 'Query', text }] },
  ...extra,
});
const pipeline = (name: string, activities: JsonObject[], extra: JsonObject = {}) => ({
  name,
  properties: { activities, ...extra },
});

const LINKED = [
  { name: 'ls_sql', properties: { type: 'AzureSqlDatabase', typeProperties: { server: 'local', database: 'ferry' } } },
];

const PIPELINES = [
  pipeline('conditions', [
    fail('A'),
    wait('OnSuccess', 1, [after_('A', 'Succeeded')]),
    wait('OnFailure', 1, [after_('A', 'Failed')]),
    wait('OnCompletion', 1, [after_('A', 'Completed')]),
    wait('AfterSkip', 1, [after_('OnSuccess', 'Skipped')]),
    wait('AfterSkippedSuccess', 1, [after_('OnSuccess', 'Succeeded')]),
  ]),
  pipeline('try_catch', [fail('A'), wait('Handler', 1, [after_('A', 'Failed')])]),
  pipeline('do_if_else', [
    fail('A'),
    wait('Next', 1, [after_('A', 'Succeeded')]),
    wait('Handler', 1, [after_('A', 'Failed')]),
  ]),
  pipeline('do_if_skip_else', [
    fail('A'),
    wait('Next', 1, [after_('A', 'Succeeded')]),
    wait('Dummy', 1, [after_('Next', 'Skipped')]),
    wait('Handler', 1, [after_('A', 'Failed')]),
  ]),
  pipeline('generic_handler', [
    wait('A', 1),
    fail('B', [after_('A', 'Succeeded')]),
    wait('C', 1, [after_('B', 'Succeeded')]),
    wait('H', 1, [after_('C', 'Failed', 'Skipped')]),
  ]),
  pipeline('retries', [
    script('Setup', 'CREATE TABLE IF NOT EXISTS attempts (n INTEGER)'),
    script(
      'Flaky',
      "INSERT INTO attempts VALUES (1); SELECT CASE WHEN (SELECT count(*) FROM attempts) < 3 THEN error('not yet') ELSE 1 END AS ok",
      {
        dependsOn: [after_('Setup', 'Succeeded')],
        policy: { retry: 2, retryIntervalInSeconds: 60, timeout: '0.00:10:00' },
      },
    ),
  ]),
  pipeline('retries_exhausted', [
    script('AlwaysFails', "SELECT error('always')", { policy: { retry: 1, retryIntervalInSeconds: 30 } }),
  ]),
  pipeline('timeout', [wait('TooLong', 600, [], { timeout: '0.00:01:00', retry: 0 })]),
  pipeline(
    'foreach',
    [
      {
        name: 'Loop',
        type: 'ForEach',
        typeProperties: {
          items: { type: 'Expression', value: '@range(0, pipeline().parameters.n)' },
          isSequential: { type: 'Expression', value: '@pipeline().parameters.sequential' },
          batchCount: 3,
          activities: [
            wait('Pause', 60),
            {
              name: 'Collect',
              type: 'AppendVariable',
              dependsOn: [after_('Pause', 'Succeeded')],
              typeProperties: { variableName: 'seen', value: '@item()' },
            },
          ],
        },
      },
    ],
    {
      parameters: { n: { type: 'Int', defaultValue: 10 }, sequential: { type: 'Bool', defaultValue: false } },
      variables: { seen: { type: 'Array' } },
    },
  ),
  pipeline(
    'until',
    [
      {
        name: 'Repeat',
        type: 'Until',
        typeProperties: {
          expression: {
            type: 'Expression',
            value: "@and(equals(activity('Tick').status, 'Succeeded'), greaterOrEquals(length(variables('ticks')), 3))",
          },
          timeout: '0.01:00:00',
          activities: [
            { name: 'Tick', type: 'AppendVariable', typeProperties: { variableName: 'ticks', value: 'x' } },
            fail('AlsoFails'),
          ],
        },
      },
    ],
    { variables: { ticks: { type: 'Array' } } },
  ),
  pipeline('until_timeout', [
    {
      name: 'Forever',
      type: 'Until',
      typeProperties: {
        expression: { type: 'Expression', value: '@equals(1, 2)' },
        timeout: '0.00:05:00',
        activities: [wait('Pause', 60)],
      },
    },
  ]),
  pipeline(
    'child',
    [
      {
        name: 'Check',
        type: 'IfCondition',
        typeProperties: {
          expression: { type: 'Expression', value: "@equals(pipeline().parameters.mode, 'fail')" },
          ifTrueActivities: [fail('ChildFail')],
        },
      },
      {
        name: 'Return',
        type: 'SetVariable',
        dependsOn: [after_('Check', 'Succeeded')],
        typeProperties: {
          variableName: 'pipelineReturnValue',
          setSystemVariable: true,
          value: [
            {
              key: 'echo',
              value: {
                type: 'Expression',
                content: "@concat(pipeline().parameters.mode, '/', pipeline()?.TriggeredByPipelineName)",
              },
            },
          ],
        },
      },
    ],
    { parameters: { mode: { type: 'String' } } },
  ),
  pipeline(
    'parent',
    [
      {
        name: 'RunChild',
        type: 'ExecutePipeline',
        typeProperties: {
          pipeline: { referenceName: 'child', type: 'PipelineReference' },
          parameters: { mode: '@pipeline().parameters.mode' },
          waitOnCompletion: true,
        },
      },
      {
        name: 'Keep',
        type: 'SetVariable',
        dependsOn: [after_('RunChild', 'Succeeded')],
        typeProperties: { variableName: 'got', value: "@activity('RunChild').output.pipelineReturnValue.echo" },
      },
    ],
    { parameters: { mode: { type: 'String', defaultValue: 'ok' } }, variables: { got: { type: 'String' } } },
  ),
  pipeline('single', [wait('Hold', 300)], { concurrency: 1 }),
  pipeline(
    'switch_filter',
    [
      {
        name: 'Pick',
        type: 'Filter',
        typeProperties: { items: '@createArray(1, 5, 10, 15)', condition: '@greater(item(), 4)' },
      },
      {
        name: 'Route',
        type: 'Switch',
        dependsOn: [after_('Pick', 'Succeeded')],
        typeProperties: {
          on: "@string(activity('Pick').output.FilteredItemsCount)",
          cases: [
            {
              value: '3',
              activities: [
                { name: 'Three', type: 'SetVariable', typeProperties: { variableName: 'route', value: 'three' } },
              ],
            },
          ],
          defaultActivities: [fail('Other')],
        },
      },
    ],
    { variables: { route: { type: 'String' } } },
  ),
  pipeline(
    'inactive_and_async',
    [
      { ...wait('Off', 1), state: 'Inactive', onInactiveMarkAs: 'Failed' },
      wait('AfterOff', 1, [after_('Off', 'Failed')]),
      {
        name: 'FireAndForget',
        type: 'ExecutePipeline',
        typeProperties: { pipeline: { referenceName: 'single', type: 'PipelineReference' }, waitOnCompletion: false },
      },
      { name: 'Secret', type: 'SetVariable', typeProperties: { variableName: 'v', value: 'hidden' } },
      { name: 'SecretLookup', type: 'Wait', policy: { secureOutput: true }, typeProperties: { waitTimeInSeconds: 1 } },
      {
        name: 'ReadSecured',
        type: 'SetVariable',
        dependsOn: [after_('SecretLookup', 'Succeeded')],
        typeProperties: { variableName: 'v', value: "@string(activity('SecretLookup').output.waitTimeInSeconds)" },
      },
    ],
    { variables: { v: { type: 'String' } } },
  ),
  pipeline('unknown_type', [{ name: 'Hook', type: 'WebHook', typeProperties: { url: 'http://x' } }]),
  pipeline('unknown_property', [{ name: 'W', type: 'Wait', typeProperties: { waitTimeInSeconds: 1, jitter: true } }]),
  pipeline(
    'unknown_function',
    [{ name: 'S', type: 'SetVariable', typeProperties: { variableName: 'v', value: '@frobnicate()' } }],
    { variables: { v: { type: 'String' } } },
  ),
  pipeline('nested_foreach', [
    {
      name: 'Outer',
      type: 'ForEach',
      typeProperties: {
        items: '@range(0, 2)',
        activities: [{ name: 'Inner', type: 'ForEach', typeProperties: { items: '@range(0, 2)', activities: [] } }],
      },
    },
  ]),
];

let dir: string;
let rt: SynapseRuntime;
const START = Date.parse('2026-03-01T00:00:00Z');

const statuses = (run: PipelineRun) => Object.fromEntries(run.activityRuns.map((a) => [a.activityName, a.status]));
const durationS = (run: PipelineRun) => (Date.parse(run.runEnd!) - Date.parse(run.runStart!)) / 1000;

describe('orchestration on hand-written pipelines', () => {
  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'synapse-orch-'));
    rt = await SynapseRuntime.open({
      artifacts: ArtifactStore.fromObjects({ linkedService: LINKED, pipeline: PIPELINES }),
      workspaceDir: dir,
      startTime: new Date(START).toISOString(),
    });
  });
  after(async () => {
    await rt.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('applies dependency conditions with skip propagation', async () => {
    const run = await rt.runPipeline('conditions');
    assert.deepEqual(statuses(run), {
      A: 'Failed',
      OnSuccess: 'Skipped',
      OnFailure: 'Succeeded',
      OnCompletion: 'Succeeded',
      AfterSkip: 'Succeeded',
      AfterSkippedSuccess: 'Skipped',
    });
    // Leaves: OnFailure, OnCompletion, AfterSkip succeeded; AfterSkippedSuccess skipped → its parent OnSuccess
    // skipped → A failed: the pipeline fails.
    assert.equal(run.status, 'Failed');
    assert.match(run.message, /A failed on purpose/);
  });

  it('computes the documented final status of the error-handling patterns', async () => {
    assert.equal((await rt.runPipeline('try_catch')).status, 'Succeeded');
    assert.equal((await rt.runPipeline('do_if_else')).status, 'Failed');
    assert.equal((await rt.runPipeline('do_if_skip_else')).status, 'Succeeded');
    const generic = await rt.runPipeline('generic_handler');
    assert.equal(statuses(generic).H, 'Succeeded');
    assert.equal(statuses(generic).C, 'Skipped');
    assert.equal(generic.status, 'Succeeded');
  });

  it('retries per policy with the retry interval on the clock', async () => {
    const run = await rt.runPipeline('retries');
    const flaky = run.activityRuns.filter((a) => a.activityName === 'Flaky');
    assert.deepEqual(
      flaky.map((a) => [a.attempt, a.status]),
      [
        [1, 'Failed'],
        [2, 'Failed'],
        [3, 'Succeeded'],
      ],
    );
    assert.match(flaky[0]!.error!.message, /not yet/);
    assert.equal(run.status, 'Succeeded');
    assert.ok(durationS(run) >= 120, `two 60 s retry intervals elapsed on the clock, got ${durationS(run)} s`);
    const exhausted = await rt.runPipeline('retries_exhausted');
    assert.equal(exhausted.activityRuns.length, 2);
    assert.equal(exhausted.status, 'Failed');
  });

  it('fails an activity that exceeds its policy timeout', async () => {
    const run = await rt.runPipeline('timeout');
    assert.equal(run.status, 'Failed');
    assert.equal(run.activityRuns[0]!.error!.errorCode, 'ActivityTimedOut');
    assert.equal(run.activityRuns[0]!.durationInMs, 60_000);
  });

  it('runs ForEach in batches of batchCount, or sequentially', async () => {
    const parallel = await rt.runPipeline('foreach');
    assert.equal(parallel.status, 'Succeeded');
    assert.equal(parallel.activityRuns.filter((a) => a.activityName === 'Collect').length, 10);
    assert.equal(durationS(parallel), 240, '10 items of 60 s in batches of 3 take 4 rounds');
    const sequential = await rt.runPipeline('foreach', { n: 4, sequential: true });
    assert.equal(durationS(sequential), 240, '4 items of 60 s one after another');
    const order = sequential.activityRuns.filter((a) => a.activityName === 'Collect').map((a) => a.scope);
    assert.deepEqual(order, ['Loop[0]', 'Loop[1]', 'Loop[2]', 'Loop[3]']);
  });

  it('Until runs its activities first, continues past inner failures, stops on its condition or timeout', async () => {
    const run = await rt.runPipeline('until');
    assert.equal(run.activityRuns.filter((a) => a.activityName === 'Tick').length, 3);
    assert.equal(run.activityRuns.filter((a) => a.activityName === 'AlsoFails').length, 3);
    assert.equal(run.status, 'Failed', 'the last iteration failed');
    const timeout = await rt.runPipeline('until_timeout');
    assert.equal(timeout.status, 'Failed');
    assert.equal(timeout.activityRuns.find((a) => a.activityName === 'Forever')!.error!.errorCode, 'ActivityTimedOut');
    assert.equal(timeout.activityRuns.filter((a) => a.activityName === 'Pause').length, 5);
  });

  it('ExecutePipeline passes parameters, waits, returns the child value and fails with the child', async () => {
    const run = await rt.runPipeline('parent');
    assert.equal(run.status, 'Succeeded', run.message);
    const child = rt.runs.find((r) => r.parentRunId === run.runId)!;
    assert.equal(child.invokedBy.invokedByType, 'PipelineActivity');
    assert.deepEqual(child.output, { echo: 'ok/parent' });
    const failing = await rt.runPipeline('parent', { mode: 'fail' });
    assert.equal(failing.status, 'Failed');
    assert.equal(
      failing.activityRuns.find((a) => a.activityName === 'RunChild')!.error!.errorCode,
      'PipelineRunFailed',
    );
    assert.match(failing.message, /ChildFail failed on purpose/);
  });

  it('queues runs beyond the pipeline concurrency', async () => {
    const first = rt.engine.startRun('single');
    const second = rt.engine.startRun('single');
    assert.equal(second.run.status, 'Queued');
    const [a, b] = await Promise.all([first.done, second.done]);
    assert.equal(a.status, 'Succeeded');
    assert.equal(b.status, 'Succeeded');
    assert.ok(Date.parse(b.runStart!) >= Date.parse(a.runEnd!), 'the queued run starts after the first ends');
  });

  it('runs Filter and Switch', async () => {
    const run = await rt.runPipeline('switch_filter');
    assert.equal(run.status, 'Succeeded', run.message);
    assert.deepEqual(run.activityRuns.find((a) => a.activityName === 'Pick')!.output, {
      ItemsCount: 4,
      FilteredItemsCount: 3,
      Value: [5, 10, 15],
    });
    assert.equal(statuses(run).Three, 'Succeeded');
  });

  it('marks inactive activities per onInactiveMarkAs, starts fire-and-forget children, hides secure outputs', async () => {
    const run = await rt.runPipeline('inactive_and_async');
    assert.equal(run.status, 'Succeeded', run.message);
    assert.equal(statuses(run).Off, undefined, 'an inactive activity does not run');
    assert.equal(statuses(run).AfterOff, 'Succeeded');
    const fire = run.activityRuns.find((a) => a.activityName === 'FireAndForget')!;
    assert.equal(fire.durationInMs, 0, 'waitOnCompletion false: succeeds once the child is started');
    await rt.engine.settle();
    const child = rt.runs.find((r) => r.parentRunId === run.runId)!;
    assert.equal(child.status, 'Succeeded');
    assert.equal(run.activityRuns.find((a) => a.activityName === 'SecretLookup')!.output, '**secured**');
    assert.equal(
      run.activityRuns.find((a) => a.activityName === 'ReadSecured')!.output &&
        (run.activityRuns.find((a) => a.activityName === 'ReadSecured')!.output as { value: string }).value,
      '1',
    );
  });

  it('names what it does not implement instead of passing', async () => {
    const type = await rt.runPipeline('unknown_type');
    assert.equal(type.status, 'Failed');
    assert.match(type.activityRuns[0]!.error!.message, /Activity type `WebHook`/);
    const prop = await rt.runPipeline('unknown_property');
    assert.match(prop.activityRuns[0]!.error!.message, /Property `jitter` of Wait activity `W`/);
    const fn = await rt.runPipeline('unknown_function');
    assert.match(fn.activityRuns[0]!.error!.message, /Unknown expression function `frobnicate\(\)`/);
    const nested = await rt.runPipeline('nested_foreach');
    assert.match(nested.message, /cannot be nested/);
  });

  it('fails a run that lacks a required parameter, naming it', async () => {
    const run = await rt.runPipeline('child');
    assert.equal(run.status, 'Failed');
    assert.match(run.message, /needs parameter `mode`/);
  });
});
