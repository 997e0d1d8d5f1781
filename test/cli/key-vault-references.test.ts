import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { AccessToken, TokenCredential } from '@azure/identity';
import { loadProjectSettings } from '../../src/cli/project.js';
import { createKeyVaultSecretResolver } from '../../src/connectors/keyvault/key-vault-secret-resolver.js';
import { silentLogger } from '../../src/core/log.js';
import { keyVaultReferenceOf } from '../../src/core/project-config.js';

/**
 * Key Vault references are read by the real `SecretClient` of `@azure/keyvault-secrets` over HTTPS on loopback: a
 * recording server with a throw-away certificate for `vault.localhost` answers like Key Vault (a 401 challenge
 * first, then the secret). The client keeps its challenge-resource check: the agent only resolves the vault's name
 * to 127.0.0.1 and trusts the test certificate.
 */
const SECRETS: Record<string, string> = {
  'ferry-writer-1': 's3cr3t-value-1',
  'alert-webhook': 'https://hooks.example/x',
};

interface Recorded {
  readonly method: string;
  readonly path: string;
  readonly authorized: boolean;
}

let dir: string;
let server: https.Server;
let port: number;
let agent: https.Agent;
const requests: Recorded[] = [];

before(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ferry-kv-'));
  execFileSync(
    'openssl',
    [
      'req',
      '-x509',
      '-newkey',
      'rsa:2048',
      '-nodes',
      '-keyout',
      path.join(dir, 'key.pem'),
      '-out',
      path.join(dir, 'cert.pem'),
      '-days',
      '1',
      '-subj',
      '/CN=vault.localhost',
      '-addext',
      'subjectAltName=DNS:vault.localhost',
    ],
    { stdio: 'ignore' },
  );
  const cert = fs.readFileSync(path.join(dir, 'cert.pem'));
  server = https.createServer({ key: fs.readFileSync(path.join(dir, 'key.pem')), cert }, (req, res) => {
    const url = new URL(req.url!, 'https://vault.localhost');
    const authorized = req.headers.authorization === 'Bearer test-token';
    requests.push({ method: req.method!, path: url.pathname, authorized });
    if (!authorized) {
      // What Key Vault answers an unauthenticated request with (the client's challenge-based auth starts here).
      res.writeHead(401, {
        'www-authenticate':
          'Bearer authorization="https://login.microsoftonline.com/00000000-0000-0000-0000-000000000001", resource="https://localhost"',
      });
      res.end();
      return;
    }
    const name = /^\/secrets\/([^/]+)\/?/.exec(url.pathname)?.[1];
    const value = name ? SECRETS[name] : undefined;
    res.setHeader('content-type', 'application/json');
    if (value === undefined) {
      res.writeHead(404);
      res.end(
        JSON.stringify({
          error: {
            code: 'SecretNotFound',
            message: `A secret with (name/id) ${name} was not found in this key vault.`,
          },
        }),
      );
      return;
    }
    res.end(
      JSON.stringify({
        value,
        id: `https://vault.localhost:${port}/secrets/${name}/0123456789abcdef`,
        attributes: { enabled: true },
      }),
    );
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  port = (server.address() as AddressInfo).port;
  agent = new https.Agent({
    ca: cert,
    lookup: (_host, options, callback) => {
      if ((options as { all?: boolean }).all)
        (callback as (e: null, a: Array<{ address: string; family: number }>) => void)(null, [
          { address: '127.0.0.1', family: 4 },
        ]);
      else (callback as (e: null, a: string, f: number) => void)(null, '127.0.0.1', 4);
    },
  });
});

after(async () => {
  agent.destroy();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  fs.rmSync(dir, { recursive: true, force: true });
});

const scopes: string[] = [];
const credential: TokenCredential = {
  async getToken(scope): Promise<AccessToken> {
    scopes.push(...(Array.isArray(scope) ? scope : [scope]));
    return { token: 'test-token', expiresOnTimestamp: Date.now() + 3_600_000 };
  },
};

describe('Key Vault references in ferry.config.json', () => {
  test('the three reference forms parse to vault, secret and version', () => {
    assert.deepEqual(
      keyVaultReferenceOf('@Microsoft.KeyVault(SecretUri=https://kv1.vault.azure.net/secrets/app/abc)'),
      {
        vaultUrl: 'https://kv1.vault.azure.net',
        secret: 'app',
        version: 'abc',
      },
    );
    assert.deepEqual(keyVaultReferenceOf('@Microsoft.KeyVault(VaultName=kv1;SecretName=app)'), {
      vaultUrl: 'https://kv1.vault.azure.net',
      secret: 'app',
    });
    assert.deepEqual(keyVaultReferenceOf({ keyVault: 'kv1', secret: 'app' }), {
      vaultUrl: 'https://kv1.vault.azure.net',
      secret: 'app',
    });
    assert.equal(keyVaultReferenceOf('plain value'), undefined);
    assert.throws(() => keyVaultReferenceOf('@Microsoft.KeyVault(SecretName=app)'), /needs SecretUri=… or VaultName=…/);
  });

  test('a target’s references are read with the real SecretClient (challenge, then token) and stay out of JSON', async () => {
    const resolveSecret = createKeyVaultSecretResolver({ credential, clientOptions: { agent } as never });
    const project = path.join(dir, 'project');
    fs.mkdirSync(project, { recursive: true });
    fs.writeFileSync(
      path.join(project, 'ferry.config.json'),
      JSON.stringify({
        defaultTarget: 'prod',
        targets: {
          prod: {
            dataverse: 'https://contoso.crm.dynamics.com',
            identities: [
              {
                name: 'writer-1',
                tenantId: '${env:TEST_TENANT}',
                clientId: '00000000-0000-0000-0000-000000000002',
                clientSecret: `@Microsoft.KeyVault(SecretUri=https://vault.localhost:${port}/secrets/ferry-writer-1)`,
              },
            ],
            alertWebhook: { keyVault: `https://vault.localhost:${port}`, secret: 'alert-webhook' },
            lake: 'lake',
          },
        },
      }),
    );
    const env: NodeJS.ProcessEnv = { TEST_TENANT: '00000000-0000-0000-0000-000000000001' };
    requests.length = 0;
    const settings = await loadProjectSettings({}, silentLogger, { cwd: path.join(project), env, resolveSecret });
    const identity = settings.config.identities![0]!;
    assert.equal(identity.clientSecret, SECRETS['ferry-writer-1']);
    assert.equal(identity.tenantId, '00000000-0000-0000-0000-000000000001');
    assert.equal(env.FERRY_ALERT_WEBHOOK, SECRETS['alert-webhook'], 'handed over as the variable schedule reads');
    assert.equal(settings.config.lake, path.join(project, 'lake'), 'relative to the project root');
    assert.doesNotMatch(JSON.stringify(settings.config), /s3cr3t/, 'the secret never reaches JSON output');
    // The real client: an unauthenticated request first, the 401 challenge, then the request with the token.
    assert.deepEqual(
      requests.filter((r) => r.path.startsWith('/secrets/ferry-writer-1')).map((r) => r.authorized),
      [false, true],
    );
    assert.ok(requests.every((r) => r.method === 'GET'));
    assert.deepEqual([...new Set(scopes)], ['https://localhost/.default']);
  });

  test('a secret the vault does not have is a configuration error naming it, not a value', async () => {
    const resolveSecret = createKeyVaultSecretResolver({ credential, clientOptions: { agent } as never });
    await assert.rejects(
      resolveSecret({ vaultUrl: `https://vault.localhost:${port}`, secret: 'no-such-secret' }),
      (e: Error & { code?: string }) => {
        assert.equal(e.code, 'usage');
        assert.match(
          e.message,
          /Key Vault secret `no-such-secret` in `https:\/\/vault\.localhost:\d+` could not be read: A secret with \(name\/id\) no-such-secret was not found/,
        );
        return true;
      },
    );
  });
});
