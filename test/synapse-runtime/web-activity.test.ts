import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { type RunningEmulator, startEmulator } from '../../src/emulator/server.js';
import { bindEnvironment } from '../../src/export/synapse/deploy-environment.js';
import { inspectArtifacts } from '../../src/export/synapse/runtime/artifact-inspector.js';
import { ArtifactStore } from '../../src/export/synapse/runtime/artifact-store.js';
import type { JsonObject } from '../../src/export/synapse/runtime/expression/json-value.js';
import type { PipelineRun } from '../../src/export/synapse/runtime/run-records.js';
import { SynapseRuntime } from '../../src/export/synapse/runtime/synapse-runtime.js';
import type { SynapseArtifact } from '../../src/export/synapse/synapse-artifacts.js';

// The Web activity against the real Dataverse emulator over HTTP, and a tiny local HTTP server for the edge cases the
// emulator has no reason to produce (202 polling, a slow answer, a 5 MB body, a non-JSON body).

const LINKED = [
  {
    name: 'ls_kv',
    properties: { type: 'AzureKeyVault', typeProperties: { baseUrl: 'https://kv.vault.azure.net/' } },
  },
  {
    name: 'ls_dataverse',
    properties: {
      type: 'CommonDataServiceForApps',
      parameters: { dataverseUrl: { type: 'String', defaultValue: 'https://dev.crm.dynamics.com' } },
      typeProperties: { deploymentType: 'Online', serviceUri: '@{linkedService().dataverseUrl}' },
    },
  },
];

function web(name: string, typeProperties: JsonObject, extra: JsonObject = {}): JsonObject {
  return { name, type: 'WebActivity', typeProperties, ...extra };
}

function pipeline(name: string, activities: JsonObject[], parameters: JsonObject = {}) {
  return { name, properties: { parameters, activities } };
}

/** The runtime on a store of the given pipelines (plus LINKED). */
function store(pipelines: ReturnType<typeof pipeline>[]): ArtifactStore {
  return ArtifactStore.fromObjects({ linkedService: LINKED, pipeline: pipelines });
}

function only(run: PipelineRun, activity: string) {
  const runs = run.activityRuns.filter((a) => a.activityName === activity);
  assert.ok(runs.length > 0, `no run of ${activity}`);
  return runs[runs.length - 1]!;
}

const MSI = { type: 'MSI', resource: '@pipeline().parameters.dataverseUrl' };
const DV = { dataverseUrl: { type: 'String', defaultValue: 'https://dev.crm.dynamics.com' } };

describe('WebActivity against the Dataverse emulator', () => {
  let emulator: RunningEmulator;
  let dir: string;
  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'ferry-web-'));
    emulator = await startEmulator({ metadataDir: 'fixtures/metadata' });
  });
  after(async () => {
    await emulator.close();
    await rm(dir, { recursive: true, force: true });
  });

  async function run(pipelines: ReturnType<typeof pipeline>[], name: string, env?: Record<string, string>) {
    const base = store(pipelines);
    const rt = await SynapseRuntime.open({
      artifacts: base,
      workspaceDir: path.join(dir, name),
      dataverseUrl: emulator.url,
      startTime: '2026-03-01T00:00:00Z',
      ...(env ? { linkedServiceParameters: env } : {}),
    });
    try {
      return await rt.runPipeline(name);
    } finally {
      await rt.close();
    }
  }

  it('POSTs a JSON body to the environment URL (mapped to the local Dataverse), then GETs the record back as output', async () => {
    const api = '@{pipeline().parameters.dataverseUrl}/api/data/v9.2';
    const result = await run(
      [
        pipeline(
          'pl_web',
          [
            web('Create', {
              method: 'POST',
              url: `${api}/accounts`,
              headers: { 'Content-Type': 'application/json', 'OData-Version': '4.0' },
              body: { name: "@concat('Web ', pipeline().parameters.suffix)", ferry_legacyid: 'WEB-1' },
              authentication: MSI,
            }),
            web(
              'Read',
              {
                method: 'GET',
                url: `${api}/accounts?$select=name,ferry_legacyid&$filter=ferry_legacyid eq 'WEB-1'`,
                authentication: MSI,
              },
              { dependsOn: [{ activity: 'Create', dependencyConditions: ['Succeeded'] }] },
            ),
          ],
          { ...DV, suffix: { type: 'String', defaultValue: 'one' } },
        ),
      ],
      'pl_web',
    );
    assert.equal(result.status, 'Succeeded', result.message);
    // 204 No Content: an empty body is the output {}.
    assert.deepEqual(only(result, 'Create').output, {});
    const read = only(result, 'Read').output as { value: { name: string; ferry_legacyid: string }[] };
    assert.equal(read.value.length, 1);
    assert.equal(read.value[0]!.name, 'Web one');
    // And the record is in the emulator, read with the emulator's own client-free HTTP API.
    const check = await fetch(`${emulator.url}/api/data/v9.2/accounts?$filter=ferry_legacyid eq 'WEB-1'&$select=name`);
    assert.equal(((await check.json()) as { value: { name: string }[] }).value[0]!.name, 'Web one');
  });

  it("fails with 2108, the status and the service's error message when the service refuses the request", async () => {
    const result = await run(
      [
        pipeline(
          'pl_refused',
          [
            web('Create', {
              method: 'POST',
              url: '@{pipeline().parameters.dataverseUrl}/api/data/v9.2/accounts',
              body: { name: 'x', ferry_no_such_column: 1 },
              authentication: MSI,
            }),
          ],
          DV,
        ),
      ],
      'pl_refused',
    );
    assert.equal(result.status, 'Failed');
    const error = only(result, 'Create').error!;
    assert.equal(error.errorCode, '2108');
    assert.match(error.message, /Response status code: '400'/);
    assert.match(error.message, /ferry_no_such_column/);
  });

  it("takes the environment's Dataverse URL from the pipeline parameter bound like the linked-service parameter", async () => {
    // An environment naming another Dataverse host: it is still the local Dataverse here, and the pipeline's
    // `dataverseUrl` default is the environment's value (what the URL and the token audience use).
    const result = await run(
      [
        pipeline(
          'pl_env',
          [
            web('WhoAmI', {
              method: 'GET',
              url: '@{pipeline().parameters.dataverseUrl}/api/data/v9.2/accounts?$top=1',
              authentication: MSI,
            }),
          ],
          DV,
        ),
      ],
      'pl_env',
      { dataverseUrl: 'https://contoso-prod.crm4.dynamics.com' },
    );
    assert.equal(result.status, 'Succeeded', result.message);
    assert.equal(result.parameters.dataverseUrl, 'https://contoso-prod.crm4.dynamics.com');
  });
});

describe('WebActivity edge cases (a local HTTP server)', () => {
  let server: Server;
  let base: string;
  let dir: string;
  const seen: { method: string; url: string; headers: IncomingMessage['headers']; body: string }[] = [];
  let flaky = 0;
  let polls = 0;
  const routes: Record<string, (req: IncomingMessage, res: ServerResponse) => void> = {
    '/json': (_req, res) => res.writeHead(200, { 'content-type': 'application/json' }).end('{"ok":true,"n":3}'),
    '/flaky': (_req, res) => {
      flaky++;
      if (flaky === 1)
        res
          .writeHead(429, { 'retry-after': '0', 'content-type': 'application/json' })
          .end('{"error":{"code":"0x80072322","message":"Number of requests exceeded the limit."}}');
      else res.writeHead(200, { 'content-type': 'application/json' }).end('{"attempt":2}');
    },
    '/job': (_req, res) => res.writeHead(202, { location: '/job/status', 'retry-after': '0' }).end(),
    '/job/status': (_req, res) => {
      polls++;
      if (polls < 3) res.writeHead(202, { location: '/job/status', 'retry-after': '0' }).end();
      else res.writeHead(200, { 'content-type': 'application/json' }).end('{"status":"done"}');
    },
    '/slow': (_req, res) => {
      setTimeout(() => res.writeHead(200).end('{}'), 2500).unref();
    },
    '/big': (_req, res) =>
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ x: 'a'.repeat(4_300_000) })),
    '/text': (_req, res) => res.writeHead(200, { 'content-type': 'text/plain' }).end('hello'),
    '/array': (_req, res) => res.writeHead(200, { 'content-type': 'application/json' }).end('[1,2]'),
  };

  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'ferry-web-edge-'));
    server = createServer((req, res) => {
      let body = '';
      req.on('data', (c) => {
        body += c;
      });
      req.on('end', () => {
        seen.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers, body });
        const route = routes[(req.url ?? '').split('?')[0]!];
        if (route) route(req, res);
        else res.writeHead(404).end('{"error":{"message":"no route"}}');
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  after(async () => {
    server.closeAllConnections();
    await new Promise<void>((r) => server.close(() => r()));
    await rm(dir, { recursive: true, force: true });
  });

  async function runOne(name: string, activity: JsonObject): Promise<PipelineRun> {
    const rt = await SynapseRuntime.open({
      artifacts: store([pipeline(name, [activity])]),
      workspaceDir: path.join(dir, name),
      startTime: '2026-03-01T00:00:00Z',
      webSleep: async () => undefined,
    });
    try {
      return await rt.runPipeline(name);
    } finally {
      await rt.close();
    }
  }

  it('a JSON object answer is the output', async () => {
    const r = await runOne('pl_json', web('Get', { method: 'get', url: `${base}/json` }));
    assert.equal(r.status, 'Succeeded', r.message);
    assert.deepEqual(only(r, 'Get').output, { ok: true, n: 3 });
  });

  it('a 429 fails the attempt; the activity policy retry sends it again and succeeds', async () => {
    const r = await runOne(
      'pl_flaky',
      web('Call', { method: 'GET', url: `${base}/flaky` }, { policy: { retry: 2, retryIntervalInSeconds: 30 } }),
    );
    assert.equal(r.status, 'Succeeded', r.message);
    const attempts = r.activityRuns.filter((a) => a.activityName === 'Call');
    assert.deepEqual(
      attempts.map((a) => a.status),
      ['Failed', 'Succeeded'],
    );
    assert.match(attempts[0]!.error!.message, /'429'.*Number of requests exceeded the limit/);
    assert.deepEqual(attempts[1]!.output, { attempt: 2 });
  });

  it('a 202 with Location is polled with GET until it completes; turnOffAsync stops at the 202', async () => {
    const r = await runOne('pl_async', web('Start', { method: 'POST', url: `${base}/job`, body: { go: 1 } }));
    assert.equal(r.status, 'Succeeded', r.message);
    assert.deepEqual(only(r, 'Start').output, { status: 'done' });
    assert.equal(polls, 3);
    polls = 0;
    const off = await runOne(
      'pl_async_off',
      web('Start', { method: 'POST', url: `${base}/job`, body: { go: 1 }, turnOffAsync: true }),
    );
    assert.equal(off.status, 'Succeeded', off.message);
    assert.deepEqual(only(off, 'Start').output, {});
    assert.equal(polls, 0);
  });

  it('httpRequestTimeout bounds the wait for an answer (2128); more than 10 minutes is refused', async () => {
    const r = await runOne(
      'pl_slow',
      web('Slow', { method: 'GET', url: `${base}/slow`, httpRequestTimeout: '00:00:01' }),
    );
    assert.equal(r.status, 'Failed');
    assert.equal(only(r, 'Slow').error!.errorCode, '2128');
    assert.match(only(r, 'Slow').error!.message, /httpRequestTimeout/);
    const tooLong = await runOne(
      'pl_too_long',
      web('Slow', { method: 'GET', url: `${base}/json`, httpRequestTimeout: '00:11:00' }),
    );
    assert.equal(tooLong.status, 'Failed');
    assert.match(only(tooLong, 'Slow').error!.message, /up to 00:10:00/);
  });

  it('an answer over 4 MB fails with 2001; a non-JSON or array answer fails naming it', async () => {
    const big = await runOne('pl_big', web('Big', { method: 'GET', url: `${base}/big` }));
    assert.equal(only(big, 'Big').error!.errorCode, '2001');
    assert.match(only(big, 'Big').error!.message, /over limit \(around 4MB currently\)/);
    const text = await runOne('pl_text', web('Text', { method: 'GET', url: `${base}/text` }));
    assert.match(only(text, 'Text').error!.message, /not JSON/);
    const array = await runOne('pl_array', web('Array', { method: 'GET', url: `${base}/array` }));
    assert.match(only(array, 'Array').error!.message, /JSON array/);
  });

  it('sends headers and a string body as given; a body without Content-Type goes as application/json', async () => {
    seen.length = 0;
    const r = await runOne(
      'pl_headers',
      web('Put', {
        method: 'PUT',
        url: `${base}/json`,
        headers: { 'X-Ferry': "@concat('a', 'b')" },
        body: '{"raw":1}',
      }),
    );
    assert.equal(r.status, 'Succeeded', r.message);
    const request = seen.find((s) => s.method === 'PUT')!;
    assert.equal(request.headers['x-ferry'], 'ab');
    assert.equal(request.headers['content-type'], 'application/json');
    assert.equal(request.body, '{"raw":1}');
    assert.equal(request.headers.authorization, undefined);
  });

  it('ServicePrincipal with a Key Vault secret: a token naming the application for the resource; the secret never appears', async () => {
    seen.length = 0;
    const r = await runOne(
      'pl_sp',
      web('Call', {
        method: 'GET',
        url: `${base}/json`,
        authentication: {
          type: 'ServicePrincipal',
          tenant: '11111111-1111-1111-1111-111111111111',
          servicePrincipalId: '22222222-2222-2222-2222-222222222222',
          servicePrincipalKey: {
            type: 'AzureKeyVaultSecret',
            store: { referenceName: 'ls_kv', type: 'LinkedServiceReference' },
            secretName: 'dv-secret',
          },
          resource: 'https://dev.crm.dynamics.com',
        },
      }),
    );
    assert.equal(r.status, 'Succeeded', r.message);
    const auth = String(seen[0]!.headers.authorization);
    const claims = JSON.parse(Buffer.from(auth.split('.')[1]!, 'base64url').toString()) as Record<string, string>;
    assert.equal(claims.appid, '22222222-2222-2222-2222-222222222222');
    assert.equal(claims.aud, 'https://dev.crm.dynamics.com');
    assert.equal(claims.tid, '11111111-1111-1111-1111-111111111111');
    // A Key Vault reference to a linked service that is not a Key Vault is refused by name.
    const wrong = await runOne(
      'pl_sp_wrong',
      web('Call', {
        method: 'GET',
        url: `${base}/json`,
        authentication: {
          type: 'ServicePrincipal',
          tenant: 't',
          servicePrincipalId: 'c',
          servicePrincipalKey: {
            type: 'AzureKeyVaultSecret',
            store: { referenceName: 'ls_dataverse', type: 'LinkedServiceReference' },
            secretName: 's',
          },
          resource: 'https://dev.crm.dynamics.com',
        },
      }),
    );
    assert.match(only(wrong, 'Call').error!.message, /`ls_dataverse`, a CommonDataServiceForApps linked service/);
    const secure = await runOne(
      'pl_sp_secure',
      web('Call', {
        method: 'GET',
        url: `${base}/json`,
        authentication: {
          type: 'ServicePrincipal',
          tenant: 't',
          servicePrincipalId: 'c',
          servicePrincipalKey: { type: 'SecureString', value: 'very-secret-value' },
          resource: 'https://dev.crm.dynamics.com',
        },
      }),
    );
    assert.equal(secure.status, 'Succeeded');
    assert.doesNotMatch(JSON.stringify(secure.activityRuns.map((a) => [a.output, a.error])), /very-secret-value/);
    assert.doesNotMatch(String(seen[seen.length - 1]!.headers.authorization), /very-secret-value/);
  });

  it('refuses what it does not implement, naming it, and what the page requires but is missing', async () => {
    const cases: [string, JsonObject, RegExp][] = [
      [
        'basic',
        { method: 'GET', url: `${base}/json`, authentication: { type: 'Basic', username: 'u', password: 'p' } },
        /Authentication type `Basic`/,
      ],
      [
        'ir',
        {
          method: 'GET',
          url: `${base}/json`,
          connectVia: { referenceName: 'ir', type: 'IntegrationRuntimeReference' },
        },
        /Property `connectVia`/,
      ],
      [
        'datasets',
        { method: 'GET', url: `${base}/json`, datasets: [{ referenceName: 'd', type: 'DatasetReference' }] },
        /passes `datasets`/,
      ],
      ['nobody', { method: 'POST', url: `${base}/json` }, /without a `body`/],
      ['method', { method: 'HEAD', url: `${base}/json` }, /method is `"HEAD"`/],
      [
        'remote',
        { method: 'GET', url: 'https://example.com/api' },
        /only loopback endpoints and Dataverse environments/,
      ],
      ['nolocal', { method: 'GET', url: 'https://org.crm.dynamics.com/api/data/v9.2/accounts' }, /no local Dataverse/],
      ['msi', { method: 'GET', url: `${base}/json`, authentication: { type: 'MSI' } }, /needs a `resource`/],
    ];
    for (const [name, tp, expected] of cases) {
      const r = await runOne(`pl_${name}`, web('Call', tp));
      assert.equal(r.status, 'Failed', name);
      assert.match(only(r, 'Call').error!.message, expected, name);
    }
    // The inspector lists the same without running.
    const findings = inspectArtifacts(
      store([
        pipeline('pl_inspect', [
          web('A', { method: 'GET', url: 'x', connectVia: {} }),
          web('B', { method: 'GET', url: 'x', authentication: { type: 'Basic' } }),
          web('C', { method: 'GET', url: 'x', authentication: { type: 'MSI', resource: 'r' } }),
        ]),
      ]),
    );
    assert.deepEqual(
      findings.map((f) => `${f.where}: ${f.detail}`),
      [
        'pipeline pl_inspect / A / typeProperties: `connectVia`',
        'pipeline pl_inspect / B / authentication: authentication type `Basic`',
      ],
    );
  });
});

describe('an environment sets a pipeline parameter named like a linked-service parameter', () => {
  const artifacts: SynapseArtifact[] = [
    { kind: 'linkedService', name: 'ls_dataverse', properties: LINKED[1]!.properties },
    {
      kind: 'pipeline',
      name: 'pl_close',
      properties: { parameters: { ...DV, other: { type: 'String', defaultValue: 'kept' } }, activities: [] },
    },
  ];
  const env = {
    name: 'prod',
    file: 'prod.json',
    parameters: { dataverseUrl: 'https://contoso.crm.dynamics.com' },
  };

  it('ferry deploy synapse --environment: the pipeline default becomes the environment value', () => {
    const bound = bindEnvironment(artifacts, env);
    const params = bound.find((a) => a.name === 'pl_close')!.properties.parameters as Record<
      string,
      { defaultValue: string }
    >;
    assert.equal(params.dataverseUrl!.defaultValue, 'https://contoso.crm.dynamics.com');
    assert.equal(params.other!.defaultValue, 'kept');
  });

  it('the runtime store (ferry synapse run --environment) binds it the same way', () => {
    const s = ArtifactStore.fromObjects({
      linkedService: [LINKED[1]!],
      pipeline: [{ name: 'pl_close', properties: artifacts[1]!.properties }],
    }).withLinkedServiceParameters(env.parameters);
    const params = s.get('pipeline', 'pl_close').properties.parameters as Record<string, { defaultValue: string }>;
    assert.equal(params.dataverseUrl!.defaultValue, 'https://contoso.crm.dynamics.com');
    assert.equal(params.other!.defaultValue, 'kept');
  });
});
