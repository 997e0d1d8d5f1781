import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';

const root = process.cwd();
const run = promisify(execFile);

// Hand-written artifacts written to disk as `ferry export synapse` lays them out (no SQL: nothing to translate).
const ARTIFACTS: Record<string, object> = {
  'pipeline/pl_hello.json': {
    name: 'pl_hello',
    properties: {
      parameters: { who: { type: 'String', defaultValue: 'world' }, fail: { type: 'Bool', defaultValue: false } },
      variables: { greeting: { type: 'String' } },
      activities: [
        {
          name: 'Greet',
          type: 'SetVariable',
          typeProperties: { variableName: 'greeting', value: "@concat('hello ', pipeline().parameters.who)" },
        },
        {
          name: 'Pause',
          type: 'Wait',
          dependsOn: [{ activity: 'Greet', dependencyConditions: ['Succeeded'] }],
          typeProperties: { waitTimeInSeconds: 90 },
        },
        {
          name: 'MaybeFail',
          type: 'IfCondition',
          dependsOn: [{ activity: 'Pause', dependencyConditions: ['Succeeded'] }],
          typeProperties: {
            expression: '@pipeline().parameters.fail',
            ifTrueActivities: [
              { name: 'Boom', type: 'Fail', typeProperties: { message: 'asked to fail', errorCode: '7' } },
            ],
          },
        },
      ],
    },
  },
  // A linked service whose endpoint has no exported default: only an environment gives it a value.
  'linkedService/ls_probe_adls.json': {
    name: 'ls_probe_adls',
    properties: {
      type: 'AzureBlobFS',
      parameters: { storageUrl: { type: 'String' } },
      typeProperties: { url: '@{linkedService().storageUrl}' },
    },
  },
  'dataset/ds_probe.json': {
    name: 'ds_probe',
    properties: {
      type: 'Parquet',
      linkedServiceName: { referenceName: 'ls_probe_adls', type: 'LinkedServiceReference' },
      typeProperties: { location: { type: 'AzureBlobFSLocation', fileSystem: 'lake', folderPath: 'inbound' } },
    },
  },
  'pipeline/pl_probe.json': {
    name: 'pl_probe',
    properties: {
      activities: [
        {
          name: 'Probe',
          type: 'GetMetadata',
          typeProperties: {
            dataset: { referenceName: 'ds_probe', type: 'DatasetReference' },
            fieldList: ['exists'],
          },
        },
      ],
    },
  },
  'environments/test.json': { parameters: { storageUrl: 'https://contosotest.dfs.core.windows.net/' } },
  'environments/typo.json': {
    parameters: { storageUrl: 'https://contosotest.dfs.core.windows.net/', storageUri: 'https://x.example/' },
  },
  'environments/partial.json': { parameters: {} },
  'trigger/tr_hourly.json': {
    name: 'tr_hourly',
    properties: {
      type: 'ScheduleTrigger',
      typeProperties: {
        recurrence: { frequency: 'Hour', interval: 1, startTime: '2026-01-01T00:00:00Z', timeZone: 'UTC' },
      },
      pipelines: [
        {
          pipelineReference: { referenceName: 'pl_hello', type: 'PipelineReference' },
          parameters: { who: '@trigger().scheduledTime' },
        },
      ],
    },
  },
};

describe('ferry synapse run', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'synapse-cli-'));
    for (const [file, body] of Object.entries(ARTIFACTS)) {
      await mkdir(path.join(dir, 'synapse', path.dirname(file)), { recursive: true });
      await writeFile(path.join(dir, 'synapse', file), JSON.stringify(body, null, 2));
    }
  });
  after(async () => rm(dir, { recursive: true, force: true }));

  const ferry = (args: string[]) =>
    run(
      process.execPath,
      [
        '--import',
        'tsx',
        path.join(root, 'src/cli/main.ts'),
        'synapse',
        'run',
        ...args,
        '--artifacts',
        path.join(dir, 'synapse'),
        '--state',
        path.join(dir, 'state'),
      ],
      { cwd: root },
    );

  it('runs a pipeline once and prints the monitoring view', async () => {
    const { stdout } = await ferry(['pl_hello', '--from', '2026-05-01T08:00:00Z', '--param', 'who=ferry']);
    assert.match(
      stdout,
      /^pl_hello {2}Succeeded {2}run [0-9a-f-]{36} {2}2026-05-01T08:00:00\.0000000Z → 2026-05-01T08:01:30\.0000000Z {2}1m30s {2}by Manual$/m,
    );
    assert.match(stdout, /^ {2}Greet +SetVariable +Succeeded/m);
    assert.match(stdout, /^ {2}Pause +Wait +Succeeded +1m30s/m);
  });

  it('exits 1 with the failing activity named when the run fails, and prints JSON with --json', async () => {
    await assert.rejects(
      ferry(['pl_hello', '--from', '2026-05-01T08:00:00Z', '--param', 'fail=true', '--json']),
      (error: { code: number; stdout: string }) => {
        assert.equal(error.code, 1);
        const out = JSON.parse(error.stdout) as {
          runs: {
            status: string;
            message: string;
            activityRuns: { activityName: string; error?: { errorCode: string } }[];
          }[];
        };
        assert.equal(out.runs[0]!.status, 'Failed');
        assert.match(out.runs[0]!.message, /Operation on target Boom failed: asked to fail/);
        assert.equal(out.runs[0]!.activityRuns.find((a) => a.activityName === 'Boom')!.error!.errorCode, '7');
        return true;
      },
    );
  });

  it('drives a trigger over ticks', async () => {
    const { stdout } = await ferry([
      'tr_hourly',
      '--from',
      '2026-05-01T08:00:00Z',
      '--ticks',
      '3',
      '--tick',
      '1h',
      '--json',
    ]);
    const out = JSON.parse(stdout) as {
      ticks: number;
      runs: { parameters: { who: string }; invokedBy: { invokedByType: string } }[];
    };
    assert.equal(out.ticks, 3);
    assert.deepEqual(
      out.runs.map((r) => r.parameters.who),
      ['2026-05-01T09:00:00Z', '2026-05-01T10:00:00Z', '2026-05-01T11:00:00Z'],
    );
    assert.ok(out.runs.every((r) => r.invokedBy.invokedByType === 'ScheduleTrigger'));
  });

  it('refuses an unknown name and --ticks for a pipeline, saying what to do', async () => {
    await assert.rejects(ferry(['pl_nope']), (error: { code: number; stderr: string }) => {
      assert.equal(error.code, 2);
      assert.match(error.stderr, /`pl_nope` is neither a pipeline nor a trigger/);
      return true;
    });
    await assert.rejects(ferry(['pl_hello', '--ticks', '2']), /--ticks drives triggers/);
  });

  it('--environment binds the linked-service parameters of synapse/environments/<name>.json, as the deploy does', async () => {
    // Without an environment the endpoint has no value: the activity fails naming the linked service and parameter.
    await assert.rejects(
      ferry(['pl_probe', '--from', '2026-05-01T08:00:00Z', '--json', '--fs', `lake=${dir}`]),
      (error: { code: number; stdout: string }) => {
        assert.equal(error.code, 1);
        const out = JSON.parse(error.stdout) as { runs: { activityRuns: { error?: { message: string } }[] }[] };
        assert.match(
          out.runs[0]!.activityRuns[0]!.error!.message,
          /linked service `ls_probe_adls` needs parameter `storageUrl`/,
        );
        return true;
      },
    );
    const { stdout } = await ferry([
      'pl_probe',
      '--from',
      '2026-05-01T08:00:00Z',
      '--json',
      '--fs',
      `lake=${dir}`,
      '--environment',
      'test',
    ]);
    const out = JSON.parse(stdout) as { runs: { status: string; activityRuns: { output: unknown }[] }[] };
    assert.equal(out.runs[0]!.status, 'Succeeded');
    assert.deepEqual(out.runs[0]!.activityRuns[0]!.output, { exists: false });
  });

  it('--environment refuses an unknown environment, a value no linked service declares and a missing value', async () => {
    const refused = (args: string[], pattern: RegExp) =>
      assert.rejects(ferry(['pl_probe', ...args]), (error: { code: number; stderr: string }) => {
        assert.equal(error.code, 2);
        assert.match(error.stderr, pattern);
        return true;
      });
    await refused(
      ['--environment', 'prod'],
      /Environment `prod` has no file .*known environments: partial, test, typo/,
    );
    await refused(['--environment', 'typo'], /`storageUri` given to the runtime is declared by no linked service/);
    await refused(
      ['--environment', 'partial'],
      /Environment `partial` .* gives no value for `storageUrl` \(ls_probe_adls\)/,
    );
  });
});
