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
  /** Items per page of a listing (`nextLink` beyond); default 50. */
  readonly pageSize?: number;
  /**
   * How a delete the service refuses is answered. `async` (default, what Synapse does): 202 with a `Location` to
   * `/operationResults/<id>`, whose GET answers 202 once, then 200 with `{"status":"Failed","error":{…}}`.
   * `sync` (what Data Factory does): 400 BadRequest with the same message at once.
   */
  readonly refuseDelete?: 'async' | 'sync';
}

const REFERENCE_TYPES: Readonly<Record<string, string>> = {
  linkedservices: 'LinkedServiceReference',
  datasets: 'DatasetReference',
  pipelines: 'PipelineReference',
  triggers: 'TriggerReference',
};

/** Names of stored artifacts (`<collection>/<name>`) whose JSON holds `{ referenceName: name, type }`. */
function referrersOf(store: Map<string, { properties: unknown }>, collection: string, name: string): string[] {
  const type = REFERENCE_TYPES[collection];
  const holds = (v: unknown): boolean => {
    if (Array.isArray(v)) return v.some(holds);
    if (!v || typeof v !== 'object') return false;
    const o = v as Record<string, unknown>;
    if (o.type === type && o.referenceName === name) return true;
    return Object.values(o).some(holds);
  };
  return [...store.entries()]
    .filter(([key, a]) => key !== `${collection}/${name}` && holds(a.properties))
    .map(([key]) => key.split('/')[1]!);
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
  /** Long-running delete operations: polls so far and the final body. */
  const operations = new Map<string, { polls: number; result: unknown }>();
  const pageSize = options.pageSize ?? 50;
  const statuses = options.runStatuses ?? ['InProgress', 'Succeeded'];
  let failOn = options.failOn;
  const send = (res: http.ServerResponse, status: number, body?: unknown, headers: Record<string, string> = {}) => {
    res.writeHead(status, { 'content-type': 'application/json', ...headers });
    res.end(body === undefined ? '' : JSON.stringify(body));
  };
  let base = '';
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
      if (req.method === 'GET' && parts.length === 2 && collection === 'operationResults') {
        const op = operations.get(name!);
        if (!op) return send(res, 404, { error: { code: 'NotFound', message: `operation ${name} not found` } });
        op.polls++;
        if (op.polls === 1) return send(res, 202, undefined, { location: `${base}/operationResults/${name}` });
        return send(res, 200, op.result);
      }
      if (req.method === 'GET' && parts.length === 1 && collection && REFERENCE_TYPES[collection]) {
        // GET /<collection>: a page of `{ value, nextLink }`, as the ...ByWorkspace list operations answer.
        const skip = Number(url.searchParams.get('skipToken') ?? '0');
        const all = [...store.entries()]
          .filter(([key]) => key.startsWith(`${collection}/`))
          .sort(([a], [b]) => a.localeCompare(b));
        const value = all.slice(skip, skip + pageSize).map(([key, a]) => {
          const itemName = key.split('/')[1]!;
          const properties =
            collection === 'triggers'
              ? { ...(a.properties as object), runtimeState: triggerState.get(itemName) ?? 'Stopped' }
              : a.properties;
          return { id: `/${key}`, name: itemName, type: collection, etag: '1', properties };
        });
        const next = skip + pageSize < all.length;
        return send(res, 200, {
          value,
          ...(next ? { nextLink: `${base}/${collection}?api-version=2020-12-01&skipToken=${skip + pageSize}` } : {}),
        });
      }
      if (req.method === 'DELETE' && parts.length === 2 && collection && REFERENCE_TYPES[collection]) {
        const key = `${collection}/${name}`;
        // A missing artifact deletes as a no-op (204), as ARM-style deletes do.
        if (!store.has(key)) return send(res, 204);
        const referrers = referrersOf(store, collection, name!);
        const started = collection === 'triggers' && triggerState.get(name!) === 'Started';
        const error =
          referrers.length > 0
            ? {
                code: 'DeleteDataFactoryResourceOrchestrationError',
                message: `The document cannot be deleted since it is referenced by ${referrers[0]}.`,
              }
            : started
              ? {
                  code: 'TriggerEnabledCannotUpdate',
                  message: `Cannot delete trigger ${name} while it is started; stop it first.`,
                }
              : undefined;
        if (error && options.refuseDelete === 'sync')
          return send(res, 400, { error: { ...error, code: 'BadRequest' } });
        if (!error) {
          store.delete(key);
          triggerState.delete(name!);
        }
        const id = `op-${operations.size + 1}`;
        operations.set(id, { polls: 0, result: error ? { status: 'Failed', error } : { status: 'Succeeded' } });
        return send(res, 202, undefined, { location: `${base}/operationResults/${id}` });
      }
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
  base = `http://127.0.0.1:${port}`;
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
