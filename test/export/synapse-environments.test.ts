import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, afterEach, before, beforeEach, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { UsageError } from '../../src/core/errors.js';
import { loadPipelines } from '../../src/core/pipeline-loader.js';
import { exportFiles, writeFiles } from '../../src/export/synapse/artifact-files.js';
import { readArtifacts } from '../../src/export/synapse/artifact-reader.js';
import {
  bindEnvironment,
  type DeployEnvironment,
  loadEnvironment,
} from '../../src/export/synapse/deploy-environment.js';
import { DEFAULT_SETTINGS, loadExportSettings, mergeSettings } from '../../src/export/synapse/export-settings.js';
import type { SynapseArtifact } from '../../src/export/synapse/synapse-artifacts.js';
import { exportSynapse } from '../../src/export/synapse/synapse-exporter.js';
import { startFakeSynapse } from './fake-synapse-server.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '..', '..');

/**
 * A pipeline with Web activities to Dataverse declares the pipeline parameter `dataverseUrl`, which binding sets to
 * the environment's value as the linked-service parameter: the artifact with that default put back, to compare the
 * rest with what was exported.
 */
function withExportedDataverseUrl(a: SynapseArtifact): SynapseArtifact {
  const parameters = a.properties.parameters as Record<string, { defaultValue?: string }> | undefined;
  if (a.kind !== 'pipeline' || !parameters?.dataverseUrl) return a;
  const dataverseUrl = { ...parameters.dataverseUrl, defaultValue: DEFAULT_SETTINGS.dataverseUrl };
  return { ...a, properties: { ...a.properties, parameters: { ...parameters, dataverseUrl } } };
}

const PROD: DeployEnvironment = {
  name: 'prod',
  file: 'prod.json',
  parameters: {
    keyVaultUrl: 'https://contoso-prod-kv.vault.azure.net/',
    storageUrl: 'https://contosoprodlake.dfs.core.windows.net/',
    sqlServer: 'contoso-prod-sql.database.windows.net',
    sqlDatabase: 'ferry_prod',
    serverlessSqlServer: 'contoso-prod-ws-ondemand.sql.azuresynapse.net',
    serverlessDatabase: 'ferry_extract_prod',
    dataverseUrl: 'https://contoso.crm.dynamics.com',
    dataverseServicePrincipalId: '11111111-2222-3333-4444-555555555555',
  },
};

let artifacts: SynapseArtifact[];
before(async () => {
  artifacts = [
    ...(
      await exportSynapse(await loadPipelines(path.join(root, 'pipelines')), {
        settings: await loadExportSettings(path.join(root, 'synapse', 'settings.json')),
        metadataDir: path.join(root, 'fixtures', 'metadata'),
        readExtract: (f) => fs.readFile(path.join(root, f), 'utf8').catch(() => undefined),
      })
    ).artifacts,
  ];
});

const linked = (list: readonly SynapseArtifact[], name: string) =>
  list.find((a) => a.kind === 'linkedService' && a.name === name)!.properties as {
    parameters: Record<string, { type: string; defaultValue?: string }>;
    typeProperties: Record<string, unknown>;
  };

describe('linked-service parameters per environment', () => {
  test('every endpoint of every linked service is a parameter, referenced as @{linkedService().x}', () => {
    const expected: Record<string, Record<string, string>> = {
      ls_ferry_keyvault: { baseUrl: 'keyVaultUrl' },
      ls_ferry_adls: { url: 'storageUrl' },
      ls_ferry_sql: { server: 'sqlServer', database: 'sqlDatabase' },
      ls_ferry_serverless_sql: { server: 'serverlessSqlServer', database: 'serverlessDatabase' },
      ls_ferry_dataverse: { serviceUri: 'dataverseUrl', servicePrincipalId: 'dataverseServicePrincipalId' },
    };
    for (const [name, props] of Object.entries(expected)) {
      const ls = linked(artifacts, name);
      for (const [prop, param] of Object.entries(props)) {
        assert.equal(ls.typeProperties[prop], `@{linkedService().${param}}`, `${name}.${prop}`);
        assert.equal(ls.parameters[param]?.type, 'String', `${name} declares ${param}`);
      }
      assert.deepEqual(Object.keys(ls.parameters).sort(), Object.values(props).sort(), `${name}: no other parameter`);
    }
    // The exported defaults are the export settings' values (the development workspace), so the JSON runs as-is.
    assert.equal(
      linked(artifacts, 'ls_ferry_dataverse').parameters.dataverseUrl?.defaultValue,
      'https://ferrydemo.crm.dynamics.com',
    );
  });

  test('one export serves every environment: binding changes only the linked-service parameter defaults', () => {
    const prod = bindEnvironment(artifacts, PROD);
    assert.equal(prod.length, artifacts.length);
    for (const [i, a] of prod.entries()) {
      const original = artifacts[i]!;
      if (a.kind !== 'linkedService') {
        const url = (a.properties.parameters as Record<string, { defaultValue?: string }> | undefined)?.dataverseUrl;
        if (a.kind === 'pipeline' && url) {
          // Multi-select Web activities: the pipeline parameter gets the environment's Dataverse URL, nothing else.
          assert.equal(url.defaultValue, PROD.parameters.dataverseUrl, `${a.name}: dataverseUrl bound`);
          assert.deepEqual(withExportedDataverseUrl(a), original, `${a.name}: only dataverseUrl changes`);
        } else assert.equal(a, original, `${a.name} is the exported artifact itself`);
        continue;
      }
      const { parameters, ...rest } = a.properties as { parameters: Record<string, { defaultValue: string }> };
      const { parameters: _p, ...originalRest } = original.properties;
      assert.deepEqual(rest, originalRest, `${a.name}: only parameters change`);
      for (const [p, spec] of Object.entries(parameters)) assert.equal(spec.defaultValue, PROD.parameters[p]);
    }
    // The exported artifacts are not modified.
    assert.equal(linked(artifacts, 'ls_ferry_sql').parameters.sqlServer?.defaultValue, DEFAULT_SETTINGS.sqlServer);
  });

  test('an environment missing a value, or naming a parameter no linked service declares, is refused by name', () => {
    const { dataverseUrl: _dropped, ...rest } = PROD.parameters;
    assert.throws(
      () => bindEnvironment(artifacts, { ...PROD, parameters: rest }),
      (e: Error) => e instanceof UsageError && /no value for `dataverseUrl` \(ls_ferry_dataverse\)/.test(e.message),
    );
    assert.throws(
      () => bindEnvironment(artifacts, { ...PROD, parameters: { ...PROD.parameters, sqlDatabse: 'x' } }),
      /sets `sqlDatabse`, which no linked service declares/,
    );
  });

  test('containers named differently in an environment (the Synapse Link container is per environment) are renamed wherever the pipelines name them', () => {
    const env = {
      ...PROD,
      fileSystems: { 'dataverse-ferrydemo-unq00000000': 'dataverse-contoso-unq5f2a', lake: 'lake-prod' },
    };
    const bound = bindEnvironment(artifacts, env);
    const text = JSON.stringify(bound.filter((a) => a.kind !== 'linkedService'));
    assert.ok(!text.includes('dataverse-ferrydemo-unq00000000'));
    assert.ok(!/"lake"|"lake\//.test(text), 'no literal of the old lake container');
    assert.ok(text.includes('"fileSystem":"dataverse-contoso-unq5f2a"'));
    assert.ok(text.includes('"path":"lake-prod/errors/accounts-inbound"'));
    const lakeDataset = bound.find((a) => a.name === 'ds_ferry_lake_parquet')!.properties as {
      parameters: { fileSystem: { defaultValue: string } };
    };
    assert.equal(lakeDataset.parameters.fileSystem.defaultValue, 'lake-prod');
    // Nothing else changes: with the names mapped back, the artifacts are the exported ones.
    const back = bindEnvironment(bound, {
      ...PROD,
      fileSystems: { 'dataverse-contoso-unq5f2a': 'dataverse-ferrydemo-unq00000000', 'lake-prod': 'lake' },
    });
    assert.deepEqual(
      back.filter((a) => a.kind !== 'linkedService').map(withExportedDataverseUrl),
      artifacts.filter((a) => a.kind !== 'linkedService'),
    );

    assert.throws(
      () => bindEnvironment(artifacts, { ...PROD, fileSystems: { lakes: 'lake-prod' } }),
      /renames `lakes`, a container the exported artifacts do not use/,
    );
    // A container named where deploy does not rename it is refused, not deployed pointing at the old container.
    const odd = [
      ...artifacts,
      {
        kind: 'pipeline' as const,
        name: 'pl_odd',
        properties: {
          activities: [{ name: 'X', type: 'Wait', description: 'x', typeProperties: { folderPath: 'lake/odd' } }],
        },
      },
    ];
    assert.throws(
      () => bindEnvironment(odd, env),
      /pipeline\/pl_odd\/activities\/0\/typeProperties\/folderPath \(`lake\/odd`\)/,
    );
  });

  test('environment files: secrets are refused, unknown keys too, and a missing environment names the known ones', async () => {
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'ferry-env-'));
    try {
      await fs.mkdir(path.join(dir, 'environments'));
      const write = (name: string, body: unknown) =>
        fs.writeFile(path.join(dir, 'environments', `${name}.json`), JSON.stringify(body));
      await write('prod', { workspace: 'contoso-prod-ws', parameters: PROD.parameters });
      const env = await loadEnvironment(dir, 'prod');
      assert.equal(env.workspace, 'contoso-prod-ws');
      assert.deepEqual(env.parameters, PROD.parameters);
      await write('leaky', {
        parameters: { storageUrl: 'DefaultEndpointsProtocol=https;AccountName=x;AccountKey=abc123==' },
      });
      await assert.rejects(
        loadEnvironment(dir, 'leaky'),
        /`storageUrl`.*looks like it holds a secret; keep secrets in Key Vault/,
      );
      await write('plain', { parameters: { dataverseUrl: 'contoso.crm.dynamics.com' } });
      await assert.rejects(
        loadEnvironment(dir, 'plain'),
        /`dataverseUrl`.*is `contoso.crm.dynamics.com`; write the https endpoint/,
      );
      await write('appid', { parameters: { dataverseServicePrincipalId: 'ferry-app' } });
      await assert.rejects(
        loadEnvironment(dir, 'appid'),
        /`dataverseServicePrincipalId`.*is `ferry-app`; write the application \(client\) id/,
      );
      await write('badcontainer', { parameters: PROD.parameters, fileSystems: { lake: 'Lake_Prod' } });
      await assert.rejects(
        loadEnvironment(dir, 'badcontainer'),
        /Container `Lake_Prod` \(for `lake`\).*not a valid container name/,
      );
      await write('typo', { workspaces: 'x', parameters: {} });
      await assert.rejects(loadEnvironment(dir, 'typo'), /unknown key `workspaces`/);
      await assert.rejects(
        loadEnvironment(dir, 'staging'),
        /Environment `staging` has no file.*known environments: appid, badcontainer, leaky, plain, prod, typo/,
      );
    } finally {
      await fs.rm(dir, { recursive: true, force: true });
    }
  });

  test('the committed dev environment gives every parameter the exported linked services declare', async () => {
    const exported = await readArtifacts(path.join(root, 'synapse'));
    const dev = await loadEnvironment(path.join(root, 'synapse'), 'dev');
    const bound = bindEnvironment(exported, dev);
    assert.deepEqual(bound, exported, 'dev is the export settings: binding it changes nothing');
  });
});

/** Keys whose value would be a credential; each must be a Key Vault reference or absent. */
const CREDENTIAL_KEYS =
  /^(password|accountKey|sasUri|sasToken|servicePrincipalKey|servicePrincipalCredential|connectionString|encryptedCredential|functionKey|clientSecret|secret)$/i;
const SECRET_TEXT = [/AccountKey=/i, /Password=/i, /(^|[?&])sig=/i, /SharedAccessSignature/i, /Bearer\s+\S{20,}/];

function scanForSecrets(where: string, value: unknown, problems: string[]) {
  if (Array.isArray(value)) {
    for (const [i, v] of value.entries()) scanForSecrets(`${where}/${i}`, v, problems);
    return;
  }
  if (typeof value === 'string') {
    if (SECRET_TEXT.some((re) => re.test(value))) problems.push(`${where}: secret-like text`);
    return;
  }
  if (!value || typeof value !== 'object') return;
  const o = value as Record<string, unknown>;
  if (o.type === 'SecureString') problems.push(`${where}: inline SecureString`);
  for (const [k, v] of Object.entries(o)) {
    if (CREDENTIAL_KEYS.test(k)) {
      const ref = v as { type?: string; secretName?: unknown } | undefined;
      if (ref?.type !== 'AzureKeyVaultSecret' || typeof ref.secretName !== 'string')
        problems.push(`${where}/${k}: not a Key Vault reference`);
    }
    scanForSecrets(`${where}/${k}`, v, problems);
  }
}

describe('no secret in the exported JSON', () => {
  test('the committed synapse/ artifacts, as exported and as bound to an environment, hold only Key Vault references and managed identity', async () => {
    const exported = await readArtifacts(path.join(root, 'synapse'));
    for (const list of [exported, bindEnvironment(exported, PROD)]) {
      const problems: string[] = [];
      for (const a of list) scanForSecrets(`${a.kind}/${a.name}`, a.properties, problems);
      assert.deepEqual(problems, []);
    }
    // Credentials exist and are Key Vault references (the scan above would pass on an export without any).
    const dv = linked(exported, 'ls_ferry_dataverse').typeProperties.servicePrincipalCredential as Record<
      string,
      unknown
    >;
    assert.equal(dv.type, 'AzureKeyVaultSecret');
    for (const name of ['ls_ferry_adls', 'ls_ferry_sql', 'ls_ferry_serverless_sql'])
      assert.deepEqual(
        Object.keys(linked(exported, name).typeProperties).filter((k) => CREDENTIAL_KEYS.test(k)),
        [],
        `${name} uses the managed identity`,
      );
  });

  test('with a SQL login, its password is a Key Vault secret reference; the scan catches an inline one', async () => {
    const settings = mergeSettings({
      sqlAuthentication: 'key-vault-password',
      sqlUserName: 'ferry_app',
      sqlPasswordSecretName: 'ferry-sql-password',
    });
    const out = await exportSynapse([], { settings, metadataDir: path.join(root, 'fixtures', 'metadata') });
    const sql = linked(out.artifacts, 'ls_ferry_sql');
    assert.deepEqual((sql.typeProperties.password as { secretName: string }).secretName, 'ferry-sql-password');
    assert.equal(sql.typeProperties.userName, '@{linkedService().sqlUserName}');
    const problems: string[] = [];
    for (const a of out.artifacts) scanForSecrets(a.name, a.properties, problems);
    assert.deepEqual(problems, []);
    // The scan is not blind: an inline password is caught.
    const leaked: string[] = [];
    scanForSecrets('ls', { typeProperties: { password: { type: 'SecureString', value: 'hunter2' } } }, leaked);
    assert.equal(leaked.length, 2);
  });
});

describe('ferry deploy synapse --environment (CLI)', () => {
  const run = promisify(execFile);
  let dir: string;
  let server: Awaited<ReturnType<typeof startFakeSynapse>>;
  before(async () => {
    dir = await fs.mkdtemp(path.join(os.tmpdir(), 'ferry-deploy-env-'));
    const layout = { synapseDir: 'synapse', sqlDir: 'sql/tsql' };
    await writeFiles(dir, exportFiles({ artifacts, sqlFiles: [] }, layout), layout);
    await fs.mkdir(path.join(dir, 'synapse', 'environments'));
    await fs.writeFile(
      path.join(dir, 'synapse', 'environments', 'prod.json'),
      JSON.stringify({ parameters: PROD.parameters }),
    );
  });
  beforeEach(async () => {
    server = await startFakeSynapse();
  });
  afterEach(async () => {
    await server.close();
  });
  after(async () => {
    await fs.rm(dir, { recursive: true, force: true });
  });
  const ferry = (args: string[]) =>
    run(process.execPath, ['--import', 'tsx', path.join(root, 'src/cli/main.ts'), ...args], {
      cwd: root,
      env: { ...process.env, FERRY_SYNAPSE_ENDPOINT: server.url },
    });

  test('deploys the environment values as the linked-service parameter defaults; everything else as exported', async () => {
    await ferry(['deploy', 'synapse', '--from', path.join(dir, 'synapse'), '--environment', 'prod']);
    const put = (p: string) =>
      server.requests.find((r) => r.method === 'PUT' && r.path === p)?.body as { properties: Record<string, unknown> };
    const dv = put('/linkedservices/ls_ferry_dataverse').properties as ReturnType<typeof linked>;
    assert.equal(dv.parameters.dataverseUrl?.defaultValue, 'https://contoso.crm.dynamics.com');
    assert.equal(dv.typeProperties.serviceUri, '@{linkedService().dataverseUrl}');
    const pipeline = artifacts.find((a) => a.name === 'pl_accounts_inbound')!;
    const deployed = { ...pipeline, properties: put('/pipelines/pl_accounts_inbound').properties };
    assert.equal(
      (deployed.properties.parameters as Record<string, { defaultValue?: string }>).dataverseUrl?.defaultValue,
      'https://contoso.crm.dynamics.com',
    );
    assert.deepEqual(withExportedDataverseUrl(deployed).properties, pipeline.properties);
    assert.ok(
      !JSON.stringify(server.requests.map((r) => r.body)).includes('ferrydemo.crm.dynamics.com'),
      'no dev endpoint reaches prod',
    );
  });

  test('an environment deployed to another workspace than its own is refused (exit 2), nothing written', async () => {
    await fs.writeFile(
      path.join(dir, 'synapse', 'environments', 'test.json'),
      JSON.stringify({ workspace: 'contoso-test-ws', parameters: PROD.parameters }),
    );
    try {
      await assert.rejects(
        ferry([
          'deploy',
          'synapse',
          '--from',
          path.join(dir, 'synapse'),
          '--environment',
          'test',
          '--workspace',
          'contoso-prod-ws',
        ]),
        (e: { code: number; stderr: string }) => {
          assert.equal(e.code, 2);
          assert.match(e.stderr, /`contoso-prod-ws`.*is not environment `test`'s workspace `contoso-test-ws`/);
          return true;
        },
      );
      assert.deepEqual(server.requests, []);
    } finally {
      await fs.rm(path.join(dir, 'synapse', 'environments', 'test.json'));
    }
  });

  test('without --environment, a folder that defines environments is refused (exit 2) before anything is read or written', async () => {
    await assert.rejects(
      ferry(['deploy', 'synapse', '--from', path.join(dir, 'synapse')]),
      (e: { code: number; stderr: string }) => {
        assert.equal(e.code, 2);
        assert.match(e.stderr, /defines environments \(prod\); pass --environment <name>/);
        return true;
      },
    );
    assert.deepEqual(server.requests, []);
  });
});

describe("ferry export synapse --environment (CLI): an environment's one-time setup SQL", () => {
  const run = promisify(execFile);
  test("writes the setup scripts with the environment's workspace identity, storage account, databases and containers; refuses to write into synapse/", async () => {
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'ferry-export-env-'));
    try {
      await fs.writeFile(
        path.join(dir, 'settings.json'),
        await fs.readFile(path.join(root, 'synapse', 'settings.json'), 'utf8'),
      );
      await fs.mkdir(path.join(dir, 'environments'));
      await fs.writeFile(
        path.join(dir, 'environments', 'prod.json'),
        JSON.stringify({
          workspace: 'contoso-prod-ws',
          parameters: PROD.parameters,
          fileSystems: { 'dataverse-ferrydemo-unq00000000': 'dataverse-contoso-unq5f2a' },
        }),
      );
      const ferry = (args: string[]) =>
        run(process.execPath, ['--import', 'tsx', path.join(root, 'src/cli/main.ts'), ...args], { cwd: root });
      await ferry([
        'export',
        'synapse',
        '--settings',
        path.join(dir, 'settings.json'),
        '--environment',
        'prod',
        '--out',
        path.join(dir, 'out'),
      ]);
      const setup = (f: string) => fs.readFile(path.join(dir, 'out', 'sql', 'tsql', 'setup', f), 'utf8');
      const serverless = await setup('serverless.sql');
      assert.match(
        serverless,
        /LOCATION = N'https:\/\/contosoprodlake\.dfs\.core\.windows\.net\/dataverse-contoso-unq5f2a'/,
      );
      assert.match(serverless, /CREATE USER \[contoso-prod-ws\] FROM EXTERNAL PROVIDER/);
      assert.match(await setup('azure-sql-access.sql'), /database `ferry_prod`[\s\S]*CREATE USER \[contoso-prod-ws\]/);
      assert.ok(!serverless.includes('ferrylake') && !serverless.includes('ferry-ws'), 'no development name left');
      await assert.rejects(
        ferry(['export', 'synapse', '--settings', path.join(dir, 'settings.json'), '--environment', 'prod']),
        (e: { code: number; stderr: string }) => {
          assert.equal(e.code, 2);
          assert.match(e.stderr, /pass --out <dir>/);
          return true;
        },
      );
    } finally {
      await fs.rm(dir, { recursive: true, force: true });
    }
  });
});
