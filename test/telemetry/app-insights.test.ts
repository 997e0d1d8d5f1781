import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import zlib from 'node:zlib';
import { secretRedactor } from '../../src/connectors/telemetry/app-insights-telemetry.js';
import { type RunningEmulator, startEmulator } from '../../src/emulator/server.js';

/** One Breeze envelope as the Application Insights ingestion endpoint receives it. */
interface Envelope {
  name: string;
  iKey: string;
  tags?: Record<string, string>;
  data: { baseType: string; baseData: Record<string, unknown> };
}

/** A self-signed certificate for 127.0.0.1 (the exporter only speaks HTTPS); undefined without `openssl`. */
function selfSignedCertificate(dir: string): { key: string; cert: string; certFile: string } | undefined {
  const keyFile = path.join(dir, 'ingestion.key');
  const certFile = path.join(dir, 'ingestion.crt');
  try {
    execFileSync(
      'openssl',
      [
        'req',
        '-x509',
        '-newkey',
        'rsa:2048',
        '-nodes',
        '-keyout',
        keyFile,
        '-out',
        certFile,
        '-days',
        '1',
        '-subj',
        '/CN=127.0.0.1',
        '-addext',
        'subjectAltName=IP:127.0.0.1',
      ],
      { stdio: 'ignore' },
    );
  } catch {
    return undefined;
  }
  return { key: fs.readFileSync(keyFile, 'utf8'), cert: fs.readFileSync(certFile, 'utf8'), certFile };
}

/** A local stand-in for the ingestion endpoint: keeps every `/v2.1/track` body (gunzipped) and accepts it. */
async function startIngestion(tls: {
  key: string;
  cert: string;
}): Promise<{ url: string; bodies: string[]; paths: string[]; close(): Promise<void> }> {
  const bodies: string[] = [];
  const paths: string[] = [];
  const server = https.createServer(tls, (req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      paths.push(`${req.method} ${req.url}`);
      let body = Buffer.concat(chunks);
      if (req.headers['content-encoding'] === 'gzip') body = zlib.gunzipSync(body);
      const text = body.toString('utf8');
      bodies.push(text);
      const count = text.trim().startsWith('[')
        ? (JSON.parse(text) as unknown[]).length
        : text.split('\n').filter(Boolean).length;
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ itemsReceived: count, itemsAccepted: count, errors: [] }));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    // Named with http:// as a user might; the exporter upgrades it to https.
    url: `http://127.0.0.1:${port}/`,
    bodies,
    paths,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}

function envelopesOf(bodies: readonly string[]): Envelope[] {
  return bodies.flatMap((text) => {
    const trimmed = text.trim();
    if (trimmed.startsWith('[')) return JSON.parse(trimmed) as Envelope[];
    return trimmed
      .split('\n')
      .filter(Boolean)
      .map((line) => JSON.parse(line) as Envelope);
  });
}

function runFerry(
  args: readonly string[],
  env: NodeJS.ProcessEnv,
): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const recorder = path.resolve('test/telemetry/register-import-recorder.mjs');
    const child = spawn(process.execPath, ['--import', recorder, '--import', 'tsx', 'src/cli/main.ts', ...args], {
      env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => (stdout += c));
    child.stderr.on('data', (c: Buffer) => (stderr += c));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code: code ?? -1, stdout, stderr }));
  });
}

const CLIENT_SECRET = 'client-secret-Zq8~n3Tf0pW7xY2v';
const BEARER = 'eyJ0eXAiOiJKV1QiLCJhbGciOi.secret-bearer-payload.sig4711';

describe('telemetry to Application Insights', () => {
  let dir: string;
  let emulator: RunningEmulator;
  let ingestion: Awaited<ReturnType<typeof startIngestion>>;
  let certFile = '';

  before(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ferry-telemetry-'));
    fs.cpSync('fixtures/inbound/currencies', path.join(dir, 'lake/inbound/currencies'), { recursive: true });
    // Every 2nd request is throttled with Retry-After 1 s, so the run has 429s to report.
    emulator = await startEmulator({ port: 0, metadataDir: 'fixtures/metadata', throttleEvery: 2, retryAfterSec: 1 });
    const tls = selfSignedCertificate(dir);
    if (!tls) return;
    certFile = tls.certFile;
    ingestion = await startIngestion(tls);
  });
  after(async () => {
    await emulator?.close();
    await ingestion?.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('sends the run, its stages, Dataverse requests with 429s, metrics and logs; no secret', async (t) => {
    if (!certFile) return t.skip('openssl is not installed: no certificate for the local HTTPS ingestion endpoint');
    const env = {
      ...process.env,
      NODE_EXTRA_CA_CERTS: certFile,
      FERRY_TEST_IMPORTS: path.join(dir, 'imports-with.txt'),
      APPLICATIONINSIGHTS_CONNECTION_STRING: `InstrumentationKey=11111111-2222-3333-4444-555555555555;IngestionEndpoint=${ingestion.url}`,
      AZURE_CLIENT_SECRET: CLIENT_SECRET,
      FERRY_DATAVERSE_TOKEN: BEARER,
    };
    const result = await runFerry(
      [
        'run',
        'currencies-inbound',
        '--json',
        '--lake',
        path.join(dir, 'lake'),
        '--state',
        path.join(dir, 'state'),
        '--dataverse',
        emulator.url,
      ],
      env,
    );
    assert.equal(result.code, 0, result.stderr);
    const report = JSON.parse(result.stdout.trim().split('\n').at(-1)!) as {
      runId: string;
      counts: { read: number; upserted: number };
      metrics: { throttled429Total: number };
    };
    assert.ok(report.metrics.throttled429Total > 0, 'the emulator throttled the run');

    assert.match(fs.readFileSync(path.join(dir, 'imports-with.txt'), 'utf8'), /monitor-opentelemetry/);
    assert.ok(ingestion.paths.length > 0, 'something reached the ingestion endpoint');
    assert.ok(
      ingestion.paths.every((p) => p === 'POST /v2.1/track'),
      ingestion.paths.join(', '),
    );
    const envelopes = envelopesOf(ingestion.bodies);
    assert.ok(envelopes.every((e) => e.iKey === '11111111-2222-3333-4444-555555555555'));

    // Traces: the run as a request-like span, its stages and the Dataverse requests as dependencies.
    const spans = envelopes.filter(
      (e) => e.data.baseType === 'RequestData' || e.data.baseType === 'RemoteDependencyData',
    );
    const props = (e: Envelope) => (e.data.baseData.properties ?? {}) as Record<string, string>;
    const run = spans.find((e) => e.data.baseData.name === 'run currencies-inbound');
    assert.ok(run, `a run span among ${spans.map((s) => s.data.baseData.name).join(', ')}`);
    assert.equal(props(run)['ferry.run_id'], report.runId);
    assert.equal(props(run)['ferry.pipeline'], 'currencies-inbound');
    assert.equal(props(run)['ferry.rows.read'], String(report.counts.read));
    assert.equal(props(run)['ferry.rows.upserted'], String(report.counts.upserted));
    assert.equal(props(run)['ferry.dataverse.throttled'], String(report.metrics.throttled429Total));
    const operationId = run.tags?.['ai.operation.id'];
    for (const stage of ['read-parquet-deltas', 'convert-to-dataverse', 'upsert-dataverse']) {
      const span = spans.find((e) => e.data.baseData.name === `stage ${stage}`);
      assert.ok(span, `stage span ${stage}`);
      assert.equal(span.tags?.['ai.operation.id'], operationId, 'stages belong to the run');
    }
    const requests = spans.filter((e) => props(e)['dataverse.operation'] !== undefined);
    assert.ok(requests.length >= 3, 'Dataverse requests as spans');
    assert.ok(
      requests.every((e) => e.tags?.['ai.operation.id'] === operationId),
      'requests belong to the run',
    );
    const throttled = requests.filter((e) => String(e.data.baseData.resultCode) === '429');
    assert.equal(throttled.length, report.metrics.throttled429Total);
    assert.ok(throttled.every((e) => props(e)['dataverse.retry_after_s'] === '1'));
    assert.ok(!requests.some((e) => JSON.stringify(e).includes("isocurrencycode='")), 'no key values in spans');

    // Metrics and logs.
    const metricNames = envelopes
      .filter((e) => e.data.baseType === 'MetricData')
      .flatMap((e) => (e.data.baseData.metrics as Array<{ name: string }>).map((m) => m.name));
    for (const name of [
      'ferry.runs',
      'ferry.stage.duration_ms',
      'ferry.rows',
      'ferry.dataverse.requests',
      'ferry.dataverse.throttled',
      'ferry.dataverse.retry_after_s',
    ])
      assert.ok(metricNames.includes(name), `metric ${name} among ${[...new Set(metricNames)].join(', ')}`);
    const messages = envelopes.filter((e) => e.data.baseType === 'MessageData');
    const runLog = messages.find((e) =>
      String(e.data.baseData.message).startsWith(`Run ${report.runId} of currencies-inbound succeeded`),
    );
    assert.ok(runLog, 'the run as a log record');

    const everything = ingestion.bodies.join('\n');
    assert.ok(!everything.includes(CLIENT_SECRET), 'the client secret never leaves');
    assert.ok(!everything.includes(BEARER), 'the bearer token never leaves');
  });

  it('loads nothing and sends nothing without the connection string', async (t) => {
    if (!certFile) return t.skip('openssl is not installed');
    const before = ingestion.bodies.length;
    const imports = path.join(dir, 'imports-without.txt');
    const env: NodeJS.ProcessEnv = { ...process.env, FERRY_LOG_LEVEL: 'debug', FERRY_TEST_IMPORTS: imports };
    delete env.APPLICATIONINSIGHTS_CONNECTION_STRING;
    const result = await runFerry(
      [
        'run',
        'currencies-inbound',
        '--reprocess',
        '--lake',
        path.join(dir, 'lake'),
        '--state',
        path.join(dir, 'state-2'),
        '--dataverse',
        emulator.url,
      ],
      env,
    );
    assert.equal(result.code, 0, result.stderr);
    assert.equal(ingestion.bodies.length, before, 'nothing sent');
    assert.ok(!result.stderr.includes('Application Insights'));
    // The same recorder saw the SDK load in the run above; here no OpenTelemetry module was even resolved.
    assert.equal(fs.existsSync(imports) ? fs.readFileSync(imports, 'utf8') : '', '');
  });

  it('refuses a connection string without an instrumentation key before doing any work', async () => {
    const result = await runFerry(
      [
        'run',
        'currencies-inbound',
        '--lake',
        path.join(dir, 'lake'),
        '--state',
        path.join(dir, 'state-3'),
        '--dataverse',
        emulator.url,
      ],
      { ...process.env, APPLICATIONINSIGHTS_CONNECTION_STRING: 'IngestionEndpoint=https://example.invalid/' },
    );
    assert.equal(result.code, 2);
    assert.match(result.stderr, /APPLICATIONINSIGHTS_CONNECTION_STRING has no valid `InstrumentationKey=<guid>`/);
    assert.equal(fs.existsSync(path.join(dir, 'state-3', 'ferry.sqlite')), false, 'no run was started');
  });

  it('redacts secret environment values and bearer tokens from any text', () => {
    const redact = secretRedactor({
      AZURE_CLIENT_SECRET: CLIENT_SECRET,
      PATH: '/usr/bin',
      FERRY_SAS_TOKEN: 'sv=2024&sig=abcdef',
    });
    assert.equal(
      redact(`failed with ${CLIENT_SECRET} and Authorization: Bearer ${BEARER} sv=2024&sig=abcdef in /usr/bin`),
      'failed with [redacted] and Authorization: Bearer [redacted] [redacted] in /usr/bin',
    );
  });
});
