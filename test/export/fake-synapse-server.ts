import http from 'node:http';
import type { AddressInfo } from 'node:net';

/** A request the fake workspace received. */
export interface RecordedRequest {
  readonly method: string;
  readonly path: string;
  readonly apiVersion: string | null;
  readonly authorization: string | undefined;
  readonly body: unknown;
}

/** Options: fail one request (method + path) with a status, and the statuses a run goes through. */
export interface FakeSynapseOptions {
  readonly failOn?: { readonly method: string; readonly path: string; readonly status: number };
  readonly runStatuses?: readonly string[];
}

/**
 * A loopback stand-in for the Synapse artifacts REST API (api-version 2020-12-01) that stores artifacts and records
 * every request, so tests drive the real `@azure/synapse-artifacts` SDK and assert what it sent.
 */
export async function startFakeSynapse(options: FakeSynapseOptions = {}) {
  const requests: RecordedRequest[] = [];
  const store = new Map<string, { properties: unknown }>();
  const triggerState = new Map<string, string>();
  const runs = new Map<string, number>();
  const statuses = options.runStatuses ?? ['InProgress', 'Succeeded'];
  let failOn = options.failOn;
  const send = (res: http.ServerResponse, status: number, body?: unknown) => {
    res.writeHead(status, { 'content-type': 'application/json' });
    res.end(body === undefined ? '' : JSON.stringify(body));
  };
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      const url = new URL(req.url ?? '/', 'http://127.0.0.1');
      const text = Buffer.concat(chunks).toString('utf8');
      const body = text ? JSON.parse(text) : undefined;
      requests.push({
        method: req.method ?? '',
        path: url.pathname,
        apiVersion: url.searchParams.get('api-version'),
        authorization: req.headers.authorization,
        body,
      });
      if (failOn && failOn.method === req.method && failOn.path === url.pathname) {
        const status = failOn.status;
        failOn = undefined;
        return send(res, status, { error: { code: 'BadRequest', message: `Injected failure for ${url.pathname}` } });
      }
      const parts = url.pathname.split('/').filter(Boolean);
      const [collection, name, action, runId] = parts;
      if (req.method === 'GET' && parts.length === 2 && collection === 'pipelineruns') {
        const n = (runs.get(name) ?? 0) + 1;
        runs.set(name, n);
        return send(res, 200, {
          runId: name,
          pipelineName: 'x',
          status: statuses[Math.min(n, statuses.length) - 1],
          message: '',
        });
      }
      if (parts.length === 2) {
        const key = `${collection}/${name}`;
        if (req.method === 'GET') {
          const found = store.get(key);
          if (!found) return send(res, 404, { error: { code: 'NotFound', message: `${key} not found` } });
          const properties =
            collection === 'triggers'
              ? { ...(found.properties as object), runtimeState: triggerState.get(name) ?? 'Stopped' }
              : found.properties;
          return send(res, 200, { id: `/${key}`, name, type: collection, etag: '1', properties });
        }
        if (req.method === 'PUT') {
          store.set(key, { properties: (body as { properties: unknown }).properties });
          return send(res, 200, {
            id: `/${key}`,
            name,
            type: collection,
            etag: '2',
            properties: (body as { properties: unknown }).properties,
          });
        }
      }
      if (req.method === 'POST' && collection === 'triggers' && (action === 'start' || action === 'stop')) {
        triggerState.set(name, action === 'start' ? 'Started' : 'Stopped');
        return send(res, 200);
      }
      if (req.method === 'POST' && collection === 'pipelines' && action === 'createRun') {
        return send(res, 202, { runId: `run-${name}-${runs.size + 1}` });
      }
      void runId;
      return send(res, 404, { error: { code: 'NotFound', message: `no route ${req.method} ${url.pathname}` } });
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    store,
    triggerState,
    failNext(method: string, path: string, status: number) {
      failOn = { method, path, status };
    },
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
