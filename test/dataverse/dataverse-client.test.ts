import assert from 'node:assert/strict';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import type { AccessToken, TokenCredential } from '@azure/identity';
import { DataverseClient } from '../../src/connectors/dataverse/dataverse-client.js';
import { createTokenProvider, isLoopbackUrl } from '../../src/connectors/dataverse/token-provider.js';
import { createLogger } from '../../src/core/log.js';

describe('Dataverse client on the wire', () => {
  let server: Server;
  let url: string;
  const seen: Array<{ method: string; url: string; headers: IncomingHttpHeaders; body: string }> = [];
  let answers: Array<{ status: number; headers?: Record<string, string>; body?: string }> = [];
  before(async () => {
    server = createServer((req, res) => {
      let body = '';
      req.on('data', (c) => (body += c));
      req.on('end', () => {
        seen.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers, body });
        const a = answers.shift() ?? { status: 204 };
        // Every answer tries to pin the client to one web server; the client must not send it back.
        res.writeHead(a.status, { 'Set-Cookie': 'ARRAffinity=server-7; Path=/; HttpOnly', ...a.headers });
        res.end(a.body ?? '');
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  after(
    () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  );

  it('sends the OData headers, bypass headers and the token, and never returns the affinity cookie', async () => {
    seen.length = 0;
    const client = new DataverseClient({
      url,
      getToken: async () => 'tok-123',
      bypass: { businessLogic: 'CustomSync,CustomAsync', suppressFlows: true },
    });
    await client.send('PATCH', "accounts(accountnumber='A1')", { body: { name: 'x' } });
    await client.send('PATCH', "accounts(accountnumber='A2')", { body: { name: 'y' } });
    assert.equal(seen.length, 2);
    for (const r of seen) {
      assert.equal(r.headers.accept, 'application/json');
      assert.equal(r.headers['odata-maxversion'], '4.0');
      assert.equal(r.headers['odata-version'], '4.0');
      assert.equal(r.headers['if-none-match'], 'null');
      assert.equal(r.headers['content-type'], 'application/json; charset=utf-8');
      assert.equal(r.headers['mscrm.bypassbusinesslogicexecution'], 'CustomSync,CustomAsync');
      assert.equal(r.headers['mscrm.suppresscallbackregistrationexpanderjob'], 'true');
      assert.equal(r.headers.authorization, 'Bearer tok-123');
      assert.equal(r.headers.cookie, undefined);
    }
    assert.equal(seen[0]!.url, "/api/data/v9.2/accounts(accountnumber='A1')");
  });

  it('does not retry data errors and maps them to FerryError with the service code', async () => {
    seen.length = 0;
    answers = [
      {
        status: 400,
        headers: { 'Content-Type': 'application/json' },
        body: '{"error":{"code":"0x80044331","message":"too long"}}',
      },
    ];
    const client = new DataverseClient({ url });
    await assert.rejects(client.send('PATCH', "accounts(accountnumber='A1')", { body: {} }), (e: unknown) => {
      const err = e as { code: string; disposition: string; message: string };
      assert.equal(err.code, 'dataverse.0x80044331');
      assert.equal(err.disposition, 'fatal');
      assert.match(err.message, /too long/);
      return true;
    });
    assert.equal(seen.length, 1);
  });

  it('retries 503 with backoff and gives up with a retryable error', async () => {
    seen.length = 0;
    answers = Array.from({ length: 3 }, () => ({ status: 503 }));
    const client = new DataverseClient({ url, retry: { maxRetries: 2, baseDelayMs: 1 } });
    await assert.rejects(
      client.send('GET', 'WhoAmI'),
      (e: unknown) => (e as { disposition: string }).disposition === 'retry',
    );
    assert.equal(seen.length, 3);
    assert.equal(client.stats.retries, 2);
  });

  it('waits Retry-After on 429 before the next attempt', async () => {
    seen.length = 0;
    answers = [
      {
        status: 429,
        headers: { 'Retry-After': '0.15', 'Content-Type': 'application/json' },
        body: '{"error":{"code":"0x80072321","message":"Combined execution time"}}',
      },
    ];
    const client = new DataverseClient({ url });
    const kinds: string[] = [];
    client.subscribe({ onThrottled: (k) => kinds.push(k) });
    const started = performance.now();
    await client.send('GET', 'WhoAmI');
    const gap = performance.now() - started;
    assert.deepEqual(kinds, ['executionTime']);
    assert.equal(seen.length, 2);
    assert.ok(gap >= 140, `second attempt only after Retry-After (gap ${gap})`);
    assert.equal(client.stats.throttled.executionTime, 1);
  });

  it('says at info level when it is throttled and when it retries, with how long it waits', async () => {
    seen.length = 0;
    answers = [
      {
        status: 429,
        headers: { 'Retry-After': '2', 'Content-Type': 'application/json' },
        body: '{"error":{"code":"0x80072322","message":"Number of requests exceeded"}}',
      },
      { status: 503, body: '' },
    ];
    const lines: string[] = [];
    const log = createLogger({ level: 'info', write: (line) => lines.push(line) });
    const client = new DataverseClient({ url, log, retry: { baseDelayMs: 1, maxDelayMs: 1 } });
    await client.send('GET', 'WhoAmI');
    assert.equal(seen.length, 3);
    assert.match(lines[0]!, /^Dataverse throttled \(requests\), waiting 2 s path=WhoAmI/);
    assert.match(lines[1]!, /^Dataverse answered 503; retrying in 0\.0 s/);
  });
});

describe('token provider', () => {
  it('needs no token for loopback emulator URLs', () => {
    assert.equal(isLoopbackUrl('http://127.0.0.1:5555'), true);
    assert.equal(isLoopbackUrl('https://org.crm.dynamics.com'), false);
    assert.equal(createTokenProvider('http://127.0.0.1:5555'), undefined);
  });

  it('asks for <url>/.default and refreshes ahead of expiry, once for concurrent callers', async () => {
    let now = 1_000_000;
    const scopes: string[] = [];
    let n = 0;
    const credential: TokenCredential = {
      async getToken(scope): Promise<AccessToken> {
        scopes.push(String(scope));
        n += 1;
        return { token: `t${n}`, expiresOnTimestamp: now + 3_600_000 };
      },
    };
    const get = createTokenProvider('https://org.crm4.dynamics.com/', { credential, now: () => now })!;
    assert.deepEqual(await Promise.all([get(), get(), get()]), ['t1', 't1', 't1']);
    assert.deepEqual(scopes, ['https://org.crm4.dynamics.com/.default']);
    now += 3_600_000 - 240_000; // within the 5-minute refresh window, still valid
    assert.equal(await get(), 't1');
    await new Promise((r) => setImmediate(r));
    assert.equal(await get(), 't2');
    assert.equal(n, 2);
  });
});
