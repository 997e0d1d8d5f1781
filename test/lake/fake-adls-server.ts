import { randomUUID } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';

/** A request the fake account received. */
export interface RecordedStorageRequest {
  readonly method: string;
  /** The endpoint asked: `<account>.blob.core.windows.net` or `<account>.dfs.core.windows.net`. */
  readonly host: string;
  /** Decoded path, e.g. `/lake/root/file.parquet`. */
  readonly path: string;
  readonly query: Readonly<Record<string, string>>;
  /** The headers that decide the operation (lower-case names). */
  readonly headers: Readonly<Record<string, string | undefined>>;
}

/**
 * A loopback stand-in for a storage account's blob and DFS endpoints, just the operations the lake uses for a rename:
 * Get Account Information (`x-ms-is-hns-enabled`), Put Blob, Copy Blob, Delete Blob, and the DFS rename (Path - Create
 * with `x-ms-rename-source`, answered 201 as documented, 404 `SourcePathNotFound` when the source does not exist).
 * It records every request, so tests drive the real `@azure/storage-blob` / `@azure/storage-file-datalake` clients and
 * assert what they sent. Anything else answers 400 `UnsupportedByFake`, which a test sees as a failure.
 * It is reached as the HTTP proxy of `http://<account>.blob|dfs.core.windows.net` URLs (`HTTP_PROXY`), so the clients
 * address the account host-style, as on Azure, and the request line names the endpoint.
 * https://learn.microsoft.com/rest/api/storageservices/datalakestoragegen2/path/create
 * https://learn.microsoft.com/rest/api/storageservices/get-account-information
 */
export async function startFakeAdls(options: { readonly hierarchicalNamespace: boolean }) {
  const requests: RecordedStorageRequest[] = [];
  const files = new Map<string, Buffer>();
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      // A proxy receives the absolute URL in the request line.
      const url = new URL(req.url ?? '/', `http://${req.headers.host ?? '127.0.0.1'}`);
      const path = decodeURIComponent(url.pathname);
      const query = Object.fromEntries(url.searchParams);
      const header = (name: string) => {
        const v = req.headers[name];
        return Array.isArray(v) ? v.join(',') : v;
      };
      requests.push({
        method: req.method ?? '',
        host: url.host,
        path,
        query,
        headers: {
          authorization: header('authorization'),
          'x-ms-version': header('x-ms-version'),
          'x-ms-rename-source': header('x-ms-rename-source'),
          'x-ms-copy-source': header('x-ms-copy-source'),
          'x-ms-blob-type': header('x-ms-blob-type'),
        },
      });
      const common = {
        'x-ms-request-id': randomUUID(),
        'x-ms-version': header('x-ms-version') ?? '2025-01-05',
        date: new Date().toUTCString(),
      };
      const done = (status: number, headers: Record<string, string> = {}, body = '') => {
        res.writeHead(status, { ...common, 'content-length': String(Buffer.byteLength(body)), ...headers });
        res.end(body);
      };
      const written = () => ({ etag: `"0x${Date.now().toString(16).toUpperCase()}"`, 'last-modified': common.date });
      if (req.method === 'GET' && query.restype === 'account' && query.comp === 'properties') {
        return done(200, {
          'x-ms-sku-name': 'Standard_LRS',
          'x-ms-account-kind': 'StorageV2',
          'x-ms-is-hns-enabled': String(options.hierarchicalNamespace),
        });
      }
      const renameSource = header('x-ms-rename-source');
      if (req.method === 'PUT' && renameSource !== undefined) {
        if (!options.hierarchicalNamespace) return unsupported(done, 'a DFS rename on a flat account');
        const source = decodeURIComponent(renameSource.split('?')[0]!);
        const data = files.get(source);
        if (!data) {
          const body = JSON.stringify({
            error: {
              code: 'SourcePathNotFound',
              message: `The source path for a rename operation does not exist.\nRequestId:${common['x-ms-request-id']}`,
            },
          });
          return done(404, { 'x-ms-error-code': 'SourcePathNotFound', 'content-type': 'application/json' }, body);
        }
        files.delete(source);
        files.set(path, data);
        return done(201, written());
      }
      const copySource = header('x-ms-copy-source');
      if (req.method === 'PUT' && copySource !== undefined) {
        const data = files.get(decodeURIComponent(new URL(copySource).pathname));
        if (!data) return done(404, { 'x-ms-error-code': 'CannotVerifyCopySource' });
        files.set(path, data);
        return done(202, { ...written(), 'x-ms-copy-id': randomUUID(), 'x-ms-copy-status': 'success' });
      }
      if (req.method === 'PUT' && header('x-ms-blob-type') === 'BlockBlob') {
        files.set(path, Buffer.concat(chunks));
        return done(201, { ...written(), 'x-ms-request-server-encrypted': 'true' });
      }
      if (req.method === 'DELETE' && files.delete(path)) return done(202, { 'x-ms-delete-type-permanent': 'true' });
      return unsupported(done, `${req.method} ${path}`);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    files,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

function unsupported(done: (status: number, headers?: Record<string, string>, body?: string) => void, what: string) {
  done(400, { 'x-ms-error-code': 'UnsupportedByFake', 'x-ms-fake-request': what });
}
