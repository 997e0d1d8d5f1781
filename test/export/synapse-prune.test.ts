import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, afterEach, before, beforeEach, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { ArtifactsClient } from '@azure/synapse-artifacts';
import { SynapseArtifactsClient } from '../../src/connectors/synapse/synapse-artifacts-client.js';
import type { FerryError } from '../../src/core/errors.js';
import { loadPipelines } from '../../src/core/pipeline-loader.js';
import { exportFiles, writeFiles } from '../../src/export/synapse/artifact-files.js';
import { loadExportSettings } from '../../src/export/synapse/export-settings.js';
import type { SynapseArtifact } from '../../src/export/synapse/synapse-artifacts.js';
import { applyDeploy, formatEvent, planDeploy } from '../../src/export/synapse/synapse-deployer.js';
import { exportSynapse } from '../../src/export/synapse/synapse-exporter.js';
import { applyPrune, planPrune, pruneEvents } from '../../src/export/synapse/synapse-pruner.js';
import { startFakeSynapse } from './fake-synapse-server.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '..', '..');
const MADE_BY_FERRY = 'generated-by-dataverse-ferry';

let artifacts: SynapseArtifact[];
let server: Awaited<ReturnType<typeof startFakeSynapse>>;
let client: SynapseArtifactsClient;

before(async () => {
  const defs = await loadPipelines(path.join(here, 'fixtures', 'pipelines'));
  artifacts = [
    ...(
      await exportSynapse(defs, {
        settings: await loadExportSettings(path.join(root, 'synapse', 'settings.json')),
        metadataDir: path.join(root, 'fixtures', 'metadata'),
      })
    ).artifacts,
  ];
});

beforeEach(async () => {
  server = await startFakeSynapse({ pageSize: 4 });
  client = new SynapseArtifactsClient({
    endpoint: server.url,
    insecureLoopback: true,
    maxRetries: 0,
    pollIntervalMs: 5,
  });
});

afterEach(async () => {
  await server?.close();
});

/** Puts artifacts into the workspace as someone else (or an earlier ferry export) left them. */
function seed(list: { kind: string; name: string; properties: Record<string, unknown> }[]) {
  const path = { linkedService: 'linkedservices', dataset: 'datasets', pipeline: 'pipelines', trigger: 'triggers' };
  for (const a of list)
    server.store.set(`${path[a.kind as keyof typeof path]}/${a.name}`, { properties: a.properties });
}

/** An older export's chain: a started trigger → pipeline → dataset → linked service, all made by ferry. */
const orphanChain = (made = [MADE_BY_FERRY]) => [
  {
    kind: 'linkedService',
    name: 'ls_ferry_old_blob',
    properties: {
      type: 'AzureBlobFS',
      annotations: made,
      typeProperties: { url: 'https://old.dfs.core.windows.net/' },
    },
  },
  {
    kind: 'dataset',
    name: 'ds_ferry_old',
    properties: {
      type: 'Parquet',
      annotations: made,
      linkedServiceName: { referenceName: 'ls_ferry_old_blob', type: 'LinkedServiceReference' },
    },
  },
  {
    kind: 'pipeline',
    name: 'pl_old_child',
    properties: {
      annotations: made,
      activities: [
        {
          name: 'Read',
          type: 'GetMetadata',
          typeProperties: { dataset: { referenceName: 'ds_ferry_old', type: 'DatasetReference' } },
        },
      ],
    },
  },
  {
    kind: 'pipeline',
    name: 'pl_old_parent',
    properties: {
      annotations: made,
      activities: [
        {
          name: 'Child',
          type: 'ExecutePipeline',
          typeProperties: { pipeline: { referenceName: 'pl_old_child', type: 'PipelineReference' } },
        },
      ],
    },
  },
  {
    kind: 'trigger',
    name: 'tr_old',
    properties: {
      type: 'ScheduleTrigger',
      annotations: made,
      pipelines: [{ pipelineReference: { referenceName: 'pl_old_parent', type: 'PipelineReference' } }],
      typeProperties: { recurrence: { frequency: 'Hour', interval: 1, startTime: '2026-01-01T00:00:00Z' } },
    },
  },
];

describe('deploy synapse --prune against a loopback workspace through the real SDK', () => {
  test('finds only what ferry made and no longer produces; deletes triggers (stopped first), pipelines (parents first), datasets, linked services', async () => {
    await applyDeploy(client, await planDeploy(client, artifacts));
    seed(orphanChain());
    // Someone else's artifacts: never touched, even when they look like ferry's.
    seed([{ kind: 'pipeline', name: 'pl_ferry_lookalike', properties: { annotations: ['team-x'], activities: [] } }]);
    server.triggerState.set('tr_old', 'Started');
    server.requests.length = 0;

    const plan = await planPrune(client, artifacts);
    assert.deepEqual(
      plan.targets.map((t) => `${t.kind}/${t.name}`),
      [
        'trigger/tr_old',
        'pipeline/pl_old_parent',
        'pipeline/pl_old_child',
        'dataset/ds_ferry_old',
        'linkedService/ls_ferry_old_blob',
      ],
    );
    assert.deepEqual(plan.blocked, []);
    assert.equal(plan.foreign, 1);
    // Listing went through every page (4 per page, more artifacts than that per kind).
    assert.ok(server.requests.some((r) => r.method === 'GET' && r.path === '/pipelines'));
    assert.ok(server.requests.filter((r) => r.path === '/datasets').length > 1, 'datasets span several pages');
    assert.deepEqual(
      server.requests.filter((r) => r.method !== 'GET'),
      [],
      'planning writes nothing',
    );

    const report = await applyPrune(client, plan);
    assert.equal(report.failed, undefined);
    assert.deepEqual(report.applied.map(formatEvent), [
      'stop   trigger tr_old',
      'delete trigger tr_old',
      'delete pipeline pl_old_parent',
      'delete pipeline pl_old_child',
      'delete dataset ds_ferry_old',
      'delete linkedService ls_ferry_old_blob',
    ]);
    assert.deepEqual(
      server.requests.filter((r) => r.method === 'DELETE' || r.method === 'POST').map((r) => `${r.method} ${r.path}`),
      [
        'POST /triggers/tr_old/stop',
        'DELETE /triggers/tr_old',
        'DELETE /pipelines/pl_old_parent',
        'DELETE /pipelines/pl_old_child',
        'DELETE /datasets/ds_ferry_old',
        'DELETE /linkedservices/ls_ferry_old_blob',
      ],
    );
    for (const key of [
      'triggers/tr_old',
      'pipelines/pl_old_child',
      'datasets/ds_ferry_old',
      'linkedservices/ls_ferry_old_blob',
    ])
      assert.equal(server.store.has(key), false, `${key} deleted`);
    assert.ok(server.store.has('pipelines/pl_ferry_lookalike'), 'foreign artifact kept');
    for (const a of artifacts) assert.ok((await client.get(a.kind, a.name)) !== undefined, `${a.name} kept`);
    // Nothing left to prune.
    assert.deepEqual((await planPrune(client, artifacts)).targets, []);
  });

  test('a pipeline removed from the definitions: its pipeline and trigger are pruned, though the deployed orchestrator still runs it until the deploy', async () => {
    await applyDeploy(client, await planDeploy(client, artifacts));
    server.triggerState.set('tr_contacts_inbound_backfill', 'Started');
    const defs = (await loadPipelines(path.join(here, 'fixtures', 'pipelines'))).filter(
      (d) => d.name !== 'contacts-inbound',
    );
    const smaller = [
      ...(
        await exportSynapse(defs, {
          settings: await loadExportSettings(path.join(root, 'synapse', 'settings.json')),
          metadataDir: path.join(root, 'fixtures', 'metadata'),
        })
      ).artifacts,
    ];
    const plan = await planPrune(client, smaller);
    // The workspace's orchestrator still executes pl_contacts_inbound, but the one being deployed does not.
    assert.deepEqual(plan.blocked, []);
    // Exactly what the full export has and the smaller one does not, triggers first, linked services last.
    const keys = (list: readonly { kind: string; name: string }[]) => list.map((a) => `${a.kind}/${a.name}`);
    const gone = keys(artifacts).filter((k) => !keys(smaller).includes(k));
    assert.deepEqual([...keys(plan.targets)].sort(), [...gone].sort());
    for (const k of [
      'trigger/tr_contacts_inbound_backfill',
      'pipeline/pl_contacts_inbound',
      // Only contacts-inbound wrote these Dataverse tables.
      'dataset/ds_ferry_dataverse_ferry_region',
      'dataset/ds_ferry_dataverse_contact',
    ])
      assert.ok(keys(plan.targets).includes(k), k);
    const rank = { trigger: 0, pipeline: 1, dataset: 2, linkedService: 3 };
    const ranks = plan.targets.map((t) => rank[t.kind]);
    assert.deepEqual(
      ranks,
      [...ranks].sort((a, b) => a - b),
      'delete order by kind',
    );
    const report = await applyDeploy(client, await planDeploy(client, smaller));
    assert.equal(report.failed, undefined);
    const pruned = await applyPrune(client, plan);
    assert.equal(pruned.failed, undefined, pruned.failed?.error);
    assert.equal(server.store.has('pipelines/pl_contacts_inbound'), false);
    assert.equal(server.store.has('triggers/tr_contacts_inbound_backfill'), false);
    assert.equal(server.store.has('datasets/ds_ferry_dataverse_contact'), false);
    assert.ok(server.store.has('datasets/ds_ferry_dataverse_account'), 'still used by accounts-inbound');
    assert.deepEqual((await planPrune(client, smaller)).targets, []);
  });

  test('refuses while an artifact that stays references one to delete, and keeps what the blocked one references', async () => {
    await applyDeploy(client, await planDeploy(client, artifacts));
    seed(orphanChain());
    // A pipeline ferry did not make still runs the old child pipeline.
    seed([
      {
        kind: 'pipeline',
        name: 'pl_team_report',
        properties: {
          activities: [
            {
              name: 'Run',
              type: 'ExecutePipeline',
              typeProperties: { pipeline: { referenceName: 'pl_old_child', type: 'PipelineReference' } },
            },
          ],
        },
      },
    ]);
    const plan = await planPrune(client, artifacts);
    assert.deepEqual(
      plan.blocked.map((b) => `${b.kind}/${b.name} <- ${b.referencedBy.join(',')}`),
      [
        'dataset/ds_ferry_old <- pipeline/pl_old_child',
        'linkedService/ls_ferry_old_blob <- dataset/ds_ferry_old',
        'pipeline/pl_old_child <- pipeline/pl_team_report',
      ],
    );
    assert.deepEqual(
      plan.targets.map((t) => `${t.kind}/${t.name}`),
      ['trigger/tr_old', 'pipeline/pl_old_parent'],
    );
    server.requests.length = 0;
    await assert.rejects(applyPrune(client, plan), (e: FerryError) => {
      assert.equal(e.code, 'deploy.prune_blocked');
      assert.match(e.message, /nothing was deleted[\s\S]*pipeline pl_old_child ← pipeline\/pl_team_report/);
      return true;
    });
    assert.deepEqual(
      server.requests.filter((r) => r.method !== 'GET'),
      [],
      'a refused prune writes nothing',
    );
  });

  for (const refuseDelete of ['async', 'sync'] as const) {
    test(`a delete the service refuses (${refuseDelete}: ${refuseDelete === 'async' ? '202, then a Failed operation result' : '400'}) stops the prune with the service's message`, async () => {
      await server.close();
      server = await startFakeSynapse({ refuseDelete });
      client = new SynapseArtifactsClient({
        endpoint: server.url,
        insecureLoopback: true,
        maxRetries: 0,
        pollIntervalMs: 5,
      });
      seed(orphanChain());
      server.triggerState.set('tr_old', 'Started');
      const plan = await planPrune(client, []);
      // Between planning and deleting, someone adds a pipeline that runs the old child.
      seed([
        {
          kind: 'pipeline',
          name: 'pl_added_meanwhile',
          properties: {
            activities: [
              {
                name: 'Run',
                type: 'ExecutePipeline',
                typeProperties: { pipeline: { referenceName: 'pl_old_child', type: 'PipelineReference' } },
              },
            ],
          },
        },
      ]);
      const report = await applyPrune(client, plan);
      assert.ok(report.failed);
      assert.equal(formatEvent(report.failed.event), 'delete pipeline pl_old_child');
      assert.match(report.failed.error, /cannot be deleted since it is referenced by pl_added_meanwhile/);
      assert.deepEqual(report.applied.map(formatEvent), [
        'stop   trigger tr_old',
        'delete trigger tr_old',
        'delete pipeline pl_old_parent',
      ]);
      assert.deepEqual(report.notApplied.map(formatEvent), [
        'delete pipeline pl_old_child',
        'delete dataset ds_ferry_old',
        'delete linkedService ls_ferry_old_blob',
      ]);
      assert.ok(server.store.has('pipelines/pl_old_child'));
    });
  }

  test('the SDK alone reports a refused asynchronous delete as success (why the client reads the result and the artifact back)', async () => {
    seed(orphanChain());
    const sdk = new ArtifactsClient(
      { getToken: async () => ({ token: 'loopback', expiresOnTimestamp: Date.now() + 60_000 }) },
      server.url,
      { allowInsecureConnection: true },
    );
    sdk.pipeline.removePolicy({ name: 'bearerTokenAuthenticationPolicy' });
    await sdk.linkedServiceOperations.beginDeleteLinkedServiceAndWait('ls_ferry_old_blob', { updateIntervalInMs: 1 });
    assert.ok(server.store.has('linkedservices/ls_ferry_old_blob'), 'still there after a "successful" delete');
    await assert.rejects(client.delete('linkedService', 'ls_ferry_old_blob'), /referenced by ds_ferry_old/);
  });

  test('deploy refuses to overwrite an artifact of the same name that ferry did not make', async () => {
    seed([
      {
        kind: 'linkedService',
        name: 'ls_ferry_adls',
        properties: { type: 'AzureBlobFS', typeProperties: { url: 'https://theirs.dfs.core.windows.net/' } },
      },
    ]);
    await assert.rejects(
      planDeploy(client, artifacts),
      /already has linkedService ls_ferry_adls, not made by ferry.*nothing was written/,
    );
    assert.deepEqual(
      server.requests.filter((r) => r.method !== 'GET'),
      [],
    );
  });

  test('a started trigger is stopped before its delete; if the delete fails it is started again', async () => {
    seed(orphanChain());
    server.triggerState.set('tr_old', 'Started');
    const plan = await planPrune(client, []);
    assert.deepEqual(pruneEvents(plan).slice(0, 2).map(formatEvent), [
      'stop   trigger tr_old',
      'delete trigger tr_old',
    ]);
    server.failNext('DELETE', '/triggers/tr_old', 500);
    const report = await applyPrune(client, plan);
    assert.equal(report.failed?.event.name, 'tr_old');
    assert.equal(server.triggerState.get('tr_old'), 'Started');
    assert.deepEqual(report.applied.map(formatEvent), ['stop   trigger tr_old', 'start  trigger tr_old']);
  });
});

describe('ferry deploy synapse --prune / --yes / --environment (CLI)', () => {
  const run = promisify(execFile);
  let dir: string;
  before(async () => {
    dir = await fs.mkdtemp(path.join(os.tmpdir(), 'ferry-prune-'));
    const layout = { synapseDir: 'synapse', sqlDir: 'sql/tsql' };
    await writeFiles(dir, exportFiles({ artifacts, sqlFiles: [] }, layout), layout);
  });
  after(async () => {
    await fs.rm(dir, { recursive: true, force: true });
  });
  const ferry = (args: string[]) =>
    run(process.execPath, ['--import', 'tsx', path.join(root, 'src/cli/main.ts'), ...args], {
      cwd: root,
      env: { ...process.env, FERRY_SYNAPSE_ENDPOINT: server.url },
    });
  const deletes = () => server.requests.filter((r) => r.method === 'DELETE').map((r) => r.path);

  test('--prune without --yes deploys and lists what it would delete; --yes deletes; --yes alone is refused', async () => {
    seed(orphanChain());
    const first = await ferry(['deploy', 'synapse', '--from', path.join(dir, 'synapse'), '--prune']);
    assert.match(first.stdout, /prune dry run: nothing is deleted without --yes/);
    assert.match(first.stdout, /would delete pipeline pl_old_parent/);
    assert.match(first.stdout, /prune: 5 to delete, 0 blocked, 0 not made by ferry/);
    assert.deepEqual(deletes(), []);
    assert.ok(server.store.has('pipelines/pl_accounts_inbound'), 'the deploy itself ran');

    const second = await ferry([
      'deploy',
      'synapse',
      '--from',
      path.join(dir, 'synapse'),
      '--prune',
      '--yes',
      '--json',
    ]);
    const out = JSON.parse(second.stdout.trim().split('\n').at(-1)!);
    assert.equal(out.prune.deleted, true);
    assert.equal(out.prune.targets.length, 5);
    assert.deepEqual(deletes(), [
      '/triggers/tr_old',
      '/pipelines/pl_old_parent',
      '/pipelines/pl_old_child',
      '/datasets/ds_ferry_old',
      '/linkedservices/ls_ferry_old_blob',
    ]);

    await assert.rejects(
      ferry(['deploy', 'synapse', '--from', path.join(dir, 'synapse'), '--yes']),
      (e: { code: number; stderr: string }) => {
        assert.equal(e.code, 2);
        assert.match(e.stderr, /--yes.*--prune/);
        return true;
      },
    );
  });

  test('--dry-run --prune writes nothing and exits 1 when the prune is blocked', async () => {
    seed(orphanChain());
    seed([
      {
        kind: 'dataset',
        name: 'ds_team',
        properties: {
          type: 'Parquet',
          linkedServiceName: { referenceName: 'ls_ferry_old_blob', type: 'LinkedServiceReference' },
        },
      },
    ]);
    await assert.rejects(
      ferry(['deploy', 'synapse', '--from', path.join(dir, 'synapse'), '--dry-run', '--prune']),
      (e: { code: number; stdout: string }) => {
        assert.equal(e.code, 1);
        assert.match(e.stdout, /blocked linkedService ls_ferry_old_blob: still referenced by dataset\/ds_team/);
        return true;
      },
    );
    assert.deepEqual(
      server.requests.filter((r) => r.method !== 'GET'),
      [],
    );
  });
});
