import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, afterEach, before, beforeEach, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { SynapseArtifactsClient } from '../../src/connectors/synapse/synapse-artifacts-client.js';
import { FerryError } from '../../src/core/errors.js';
import { loadPipelines } from '../../src/core/pipeline-loader.js';
import { exportFiles, writeFiles } from '../../src/export/synapse/artifact-files.js';
import { DEFAULT_SETTINGS, loadExportSettings } from '../../src/export/synapse/export-settings.js';
import { NAMES, type SynapseArtifact } from '../../src/export/synapse/synapse-artifacts.js';
import {
  applyDeploy,
  deployOrder,
  formatEvent,
  partialDeployError,
  planDeploy,
} from '../../src/export/synapse/synapse-deployer.js';
import { exportSynapse } from '../../src/export/synapse/synapse-exporter.js';
import { type RecordedRequest, startFakeSynapse } from './fake-synapse-server.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '..', '..');
const fixtures = path.join(here, 'fixtures');
const PATH_OF = {
  linkedService: 'linkedservices',
  dataset: 'datasets',
  pipeline: 'pipelines',
  trigger: 'triggers',
} as const;

let artifacts: SynapseArtifact[];
let server: Awaited<ReturnType<typeof startFakeSynapse>>;
let client: SynapseArtifactsClient;

before(async () => {
  const defs = await loadPipelines(path.join(fixtures, 'pipelines'));
  artifacts = [
    ...(
      await exportSynapse(defs, {
        // The project's settings: they omit the multi-select columns the Copy sink cannot write.
        settings: await loadExportSettings(path.join(root, 'synapse', 'settings.json')),
        metadataDir: path.join(root, 'fixtures', 'metadata'),
      })
    ).artifacts,
  ];
});

beforeEach(async () => {
  server = await startFakeSynapse();
  client = new SynapseArtifactsClient({ endpoint: server.url, insecureLoopback: true, maxRetries: 0 });
});

afterEach(async () => {
  await server?.close();
});

const writes = (requests: readonly RecordedRequest[]) =>
  requests.filter((r) => r.method !== 'GET').map((r) => `${r.method} ${r.path}`);

describe('deploy synapse with the real @azure/synapse-artifacts SDK against a loopback server', () => {
  test('first deploy: GET everything, then PUT linked services → datasets → pipelines → triggers, then start schedules', async () => {
    const steps = await planDeploy(client, artifacts);
    assert.ok(steps.every((s) => s.action === 'create'));
    const report = await applyDeploy(client, steps);
    assert.equal(report.failed, undefined);
    const reqs = server.requests;
    assert.ok(reqs.every((r) => r.apiVersion === '2020-12-01' && r.authorization === 'Bearer loopback'));
    const gets = reqs.filter((r) => r.method === 'GET');
    assert.equal(gets.length, artifacts.length);
    const order = ['linkedservices', 'datasets', 'pipelines', 'triggers'];
    const puts = reqs.filter((r) => r.method === 'PUT');
    assert.equal(puts.length, artifacts.length);
    const kinds = puts.map((r) => order.indexOf(r.path.split('/')[1]));
    assert.deepEqual(
      kinds,
      [...kinds].sort((a, b) => a - b),
      'PUTs in dependency order',
    );
    // The body on the wire is the artifact JSON, unchanged.
    for (const a of artifacts) {
      const put = puts.find((r) => r.path === `/${PATH_OF[a.kind]}/${a.name}`);
      assert.ok(put, `PUT ${a.name}`);
      assert.deepEqual((put.body as { properties: unknown }).properties, a.properties, `body of ${a.name}`);
    }
    // New schedule triggers start after everything is written; backfill triggers stay stopped.
    const posts = reqs.filter((r) => r.method === 'POST').map((r) => r.path);
    assert.deepEqual(posts, ['/triggers/tr_ferry_every_15m/start', '/triggers/tr_ferry_every_60m/start']);
    assert.ok(reqs.indexOf(reqs.find((r) => r.method === 'POST')!) > reqs.lastIndexOf(puts.at(-1)!));
  });

  test('redeploy: unchanged artifacts are not written; a changed, running trigger is stopped, written and started', async () => {
    await applyDeploy(client, await planDeploy(client, artifacts));
    server.requests.length = 0;
    const again = await planDeploy(client, artifacts);
    assert.ok(again.every((s) => s.action === 'unchanged'));
    assert.deepEqual((await applyDeploy(client, again)).applied, []);
    assert.deepEqual(writes(server.requests), []);

    const changed = artifacts.map((a) =>
      a.name === 'tr_ferry_every_15m'
        ? { ...a, properties: { ...a.properties, description: 'every quarter hour' } }
        : a.name === 'pl_accounts_inbound'
          ? { ...a, properties: { ...a.properties, description: 'changed' } }
          : a,
    );
    server.requests.length = 0;
    const steps = await planDeploy(client, changed);
    assert.deepEqual(
      steps.filter((s) => s.action !== 'unchanged').map((s) => `${s.action} ${s.artifact.name}`),
      ['update pl_accounts_inbound', 'update tr_ferry_every_15m'],
    );
    const report = await applyDeploy(client, steps);
    assert.deepEqual(report.applied.map(formatEvent), [
      'stop   trigger tr_ferry_every_15m',
      'update pipeline pl_accounts_inbound',
      'update trigger tr_ferry_every_15m',
      'start  trigger tr_ferry_every_15m',
    ]);
    assert.deepEqual(writes(server.requests), [
      'POST /triggers/tr_ferry_every_15m/stop',
      'PUT /pipelines/pl_accounts_inbound',
      'PUT /triggers/tr_ferry_every_15m',
      'POST /triggers/tr_ferry_every_15m/start',
    ]);
  });

  test('a failure mid-deploy reports what was and was not applied, and restarts the triggers it stopped', async () => {
    await applyDeploy(client, await planDeploy(client, artifacts));
    const changed = artifacts.map((a) =>
      a.kind === 'pipeline' || a.name === 'tr_ferry_every_15m'
        ? { ...a, properties: { ...a.properties, description: 'v2' } }
        : a,
    );
    server.requests.length = 0;
    server.failNext('PUT', '/pipelines/pl_accounts_outbound', 400);
    const report = await applyDeploy(client, await planDeploy(client, changed));
    assert.ok(report.failed);
    assert.equal(formatEvent(report.failed.event), 'update pipeline pl_accounts_outbound');
    assert.match(report.failed.error, /HTTP 400.*Injected failure/);
    assert.deepEqual(report.applied.map(formatEvent), [
      'stop   trigger tr_ferry_every_15m',
      'update pipeline pl_accounts_inbound',
      'update pipeline pl_accounts_inbound_replay',
      'start  trigger tr_ferry_every_15m',
    ]);
    assert.deepEqual(report.notApplied.map(formatEvent), [
      'update pipeline pl_accounts_outbound',
      'update pipeline pl_contacts_inbound',
      'update pipeline pl_contacts_inbound_replay',
      'update pipeline pl_contacts_outbound',
      'update pipeline pl_ferry_every_15m',
      'update pipeline pl_ferry_every_60m',
      'update pipeline pl_ferry_housekeeping',
      'update trigger tr_ferry_every_15m',
    ]);
    assert.equal(server.triggerState.get('tr_ferry_every_15m'), 'Started');
    const error = partialDeployError(report);
    assert.ok(error instanceof FerryError);
    assert.match(error.message, /Applied \(4\):[\s\S]*Not applied \(8\):[\s\S]*pl_contacts_inbound/);
  });
});

describe('ferry deploy synapse / run-remote CLI', () => {
  const run = promisify(execFile);
  let dir: string;
  before(async () => {
    dir = await fs.mkdtemp(path.join(os.tmpdir(), 'ferry-deploy-'));
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

  test('--dry-run reads the workspace and writes nothing', async () => {
    const { stdout } = await ferry(['deploy', 'synapse', '--from', path.join(dir, 'synapse'), '--dry-run']);
    assert.deepEqual(writes(server.requests), []);
    assert.match(stdout, /would create linkedService ls_ferry_adls/);
    assert.match(stdout, /would start {2}trigger tr_ferry_every_15m/);
    assert.match(stdout, new RegExp(`${artifacts.length + 2} changes, 0 unchanged`));
  });

  test('run-remote starts a run (202) and follows it until it ends', async () => {
    const { stdout } = await ferry(['run-remote', 'accounts-inbound', '--poll-seconds', '0.05']);
    assert.match(stdout, /started pl_accounts_inbound run run-pl_accounts_inbound-1/);
    assert.match(stdout, /InProgress[\s\S]*Succeeded/);
    const create = server.requests.find((r) => r.method === 'POST');
    assert.equal(create?.path, '/pipelines/pl_accounts_inbound/createRun');
    assert.deepEqual(create?.body, { windowStart: '', windowEnd: '', mode: 'manual' });
  });

  test('run-remote exits 1 when the run fails', async () => {
    await server.close();
    server = await startFakeSynapse({ runStatuses: ['Queued', 'InProgress', 'Failed'] });
    await assert.rejects(
      ferry([
        'run-remote',
        'pl_contacts_inbound',
        '--poll-seconds',
        '0.05',
        '--window-start',
        '2026-01-01T00:00:00Z',
        '--window-end',
        '2026-01-01T00:15:00Z',
      ]),
      (e: { code: number; stdout: string }) => {
        assert.equal(e.code, 1);
        assert.match(e.stdout, /Queued[\s\S]*InProgress[\s\S]*Failed/);
        return true;
      },
    );
    assert.deepEqual(server.requests.find((r) => r.method === 'POST')?.body, {
      windowStart: '2026-01-01T00:00:00Z',
      windowEnd: '2026-01-01T00:15:00Z',
      mode: 'backfill',
    });
  });
});

describe('deploy order', () => {
  test('within a kind, referenced artifacts come first (orchestrator after its pipelines, dependent backfill triggers after their parents)', async () => {
    const defs = await loadPipelines(path.join(root, 'pipelines'));
    const demo = (
      await exportSynapse(defs, {
        // The project's settings: they omit the multi-select columns the Copy sink cannot write.
        settings: await loadExportSettings(path.join(root, 'synapse', 'settings.json')),
        metadataDir: path.join(root, 'fixtures', 'metadata'),
        readExtract: (f) => fs.readFile(path.join(root, f), 'utf8').catch(() => undefined),
      })
    ).artifacts;
    const order = deployOrder(demo).map((a) => `${a.kind}/${a.name}`);
    const at = (n: string) => order.indexOf(n);
    const orchestrator = at('pipeline/pl_ferry_every_15m');
    for (const d of defs)
      assert.ok(at(`pipeline/${NAMES.pipeline(d.name)}`) < orchestrator, `${d.name} before the orchestrator`);
    assert.ok(at('trigger/tr_currencies_inbound_backfill') < at('trigger/tr_accounts_inbound_backfill'));
    assert.ok(at('trigger/tr_regions_inbound_backfill') < at('trigger/tr_accounts_inbound_backfill'));
    assert.ok(at('trigger/tr_accounts_inbound_backfill') < at('trigger/tr_contacts_inbound_backfill'));
    assert.ok(at('dataset/ds_ferry_sql_table') > at('linkedService/ls_ferry_sql'));
    assert.ok(at('trigger/tr_ferry_every_15m') > orchestrator);
  });
});
