import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { FerryError } from '../core/errors.js';
import { type Logger, silentLogger } from '../core/log.js';
import { BatchHandler } from './batch-handler.js';
import { callerOf } from './caller-identity.js';
import { EmulatorCatalog } from './emulator-catalog.js';
import { faults, ServiceFault } from './service-fault.js';
import { EmulatorStore } from './store.js';
import { type Admission, profileNamed, ThrottleModel } from './throttle-model.js';
import { type ApiRequest, type ApiResponse, errorResponse, WebApi } from './web-api.js';

/** How to start the emulator. */
export interface EmulatorOptions {
  /** TCP port; `0` picks an ephemeral port. Default `0`. */
  port?: number;
  /** Interface to listen on. Default `'127.0.0.1'`. */
  host?: string;
  /** Folder of metadata snapshots (one `<table>.json` per table). */
  metadataDir: string;
  /**
   * If set: the store is loaded from it at start, and every committed change is appended to it within about 100 ms
   * (and on close). The file is the change journal, one JSON line per change, never rewritten whole per change.
   */
  storeFile?: string;
  /** Every Nth write request (POST/PATCH/PUT/DELETE, a `$batch` counts once) answers 503. Default off. */
  failEvery?: number;
  /**
   * Every Nth write request is applied, then its connection is destroyed without an answer (the "applied but
   * unanswered" case a client must retry idempotently). Counted like `failEvery`, which wins on a tie. Default off.
   */
  resetEvery?: number;
  /** Every Nth request answers 429 with `Retry-After: retryAfterSec`. Default off. */
  throttleEvery?: number;
  /** Seconds in `Retry-After` for `throttleEvery`. Default `1`. */
  retryAfterSec?: number;
  /** Extra server time per record written or read, in ms, so a benchmark can see server time. Default `0`. */
  perRecordDelayMs?: number;
  /** Sent as `x-ms-dop-hint` on every response. Default `4`, or the profile's. */
  dopHint?: number;
  /**
   * Service-protection model: `default`, `trial` or `heavy-plugins` (see `throttle-model.ts`). Default off: no
   * throttling and no server time, so functional tests stay fast.
   */
  profile?: string;
  /** How much faster than the service time runs (60 ⇒ a 300 s window lasts 5 s). Default `1`. */
  timeScale?: number;
  log?: Logger;
}

/** A started emulator. */
export interface RunningEmulator {
  /** Environment root, e.g. `http://127.0.0.1:54321`; the Web API is under `${url}/api/data/v9.2/`. */
  url: string;
  store: EmulatorStore;
  /** The service-protection model when a profile is set (counters, mid-run limit changes). */
  throttle?: ThrottleModel;
  close(): Promise<void>;
}

const API_PREFIX = /^\/api\/data\/v9\.\d\/?/;
const SAVE_DELAY_MS = 100;

/** Starts the Dataverse Web API emulator on loopback and resolves once it listens. */
export async function startEmulator(options: EmulatorOptions): Promise<RunningEmulator> {
  const log = options.log ?? silentLogger;
  const catalog = await EmulatorCatalog.load(options.metadataDir);
  const store = new EmulatorStore();
  for (const table of catalog.tables()) {
    store.defineTable(
      table.logicalName,
      table.keys.map((k) => ({ name: k.LogicalName, attributes: k.KeyAttributes })),
    );
  }
  const loadStarted = performance.now();
  if (options.storeFile && (await store.loadFrom(options.storeFile))) {
    log.info('Emulator store loaded', {
      file: options.storeFile,
      tables: store.tables().length,
      changes: store.journal().length,
      ms: Math.round(performance.now() - loadStarted),
    });
  }

  const host = options.host ?? '127.0.0.1';
  const throttle = options.profile
    ? new ThrottleModel(profileNamed(options.profile), options.timeScale ?? 1)
    : undefined;
  const dopHint = () => options.dopHint ?? throttle?.profile.dopHint ?? 4;
  let api: WebApi | undefined;
  let batch: BatchHandler | undefined;
  let requests = 0;
  let writes = 0;
  const toReset = new WeakSet<ApiResponse>();

  // Debounced append: at most one append per 100 ms after changes, and a final one on close.
  let saveTimer: NodeJS.Timeout | undefined;
  let saving: Promise<void> = Promise.resolve();
  let dirty = false;
  const save = () => {
    if (!options.storeFile || !dirty) return saving;
    dirty = false;
    const file = options.storeFile;
    saving = saving
      .then(async () => {
        await store.appendTo(file);
      })
      .catch((error) => log.error('Emulator store could not be saved', { file, error: String(error) }));
    return saving;
  };
  if (options.storeFile) {
    store.onChange(() => {
      dirty = true;
      if (!saveTimer) {
        saveTimer = setTimeout(() => {
          saveTimer = undefined;
          void save();
        }, SAVE_DELAY_MS);
        saveTimer.unref();
      }
    });
  }

  const handle = async (req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const body = Buffer.concat(chunks).toString('utf8');
    const rawUrl = req.url ?? '/';
    const q = rawUrl.indexOf('?');
    const rawPath = q < 0 ? rawUrl : rawUrl.slice(0, q);
    const headers: Record<string, string> = {};
    for (const [k, v] of Object.entries(req.headers))
      if (v !== undefined) headers[k] = Array.isArray(v) ? v.join(', ') : v;
    const method = (req.method ?? 'GET').toUpperCase();
    let response: ApiResponse;
    try {
      response = await dispatch(method, rawPath, q < 0 ? '' : rawUrl.slice(q + 1), headers, body);
    } catch (error) {
      response = errorResponse(error);
    }
    if (toReset.delete(response)) {
      log.debug('emulator reset a connection after applying the request', { method, path: rawPath });
      req.socket.destroy();
      return;
    }
    const out: Record<string, string> = {
      'OData-Version': '4.0',
      'x-ms-dop-hint': String(dopHint()),
      // Emulator only: how much faster than the service's its clock runs, so a client can size the 300 s window.
      ...(throttle ? { 'x-ferry-time-scale': String(throttle.timeScale) } : {}),
      ...response.headers,
    };
    if (response.body === '') delete out['Content-Type'];
    res.writeHead(response.status, out);
    res.end(response.body);
    log.debug('emulator', { method, path: rawPath, status: response.status });
  };

  const dispatch = async (
    method: string,
    rawPath: string,
    query: string,
    headers: Record<string, string>,
    body: string,
  ): Promise<ApiResponse> => {
    requests += 1;
    if (options.throttleEvery && requests % options.throttleEvery === 0) {
      const retryAfter = String(options.retryAfterSec ?? 1);
      throw new ServiceFault(
        429,
        '0x80072322',
        'Number of requests exceeded the limit of 6000 over time window of 300 seconds.',
        { 'Retry-After': retryAfter },
      );
    }
    let reset = false;
    if (method !== 'GET' && method !== 'HEAD') {
      writes += 1;
      if (options.failEvery && writes % options.failEvery === 0) {
        throw new ServiceFault(
          503,
          '',
          `Service Unavailable (fault injected by the emulator: every ${options.failEvery}th write).`,
        );
      }
      reset = Boolean(options.resetEvery && writes % options.resetEvery === 0);
    }
    // A token that names no user is refused whether or not limits apply (the service checks every request).
    callerOf(headers);
    const m = API_PREFIX.exec(rawPath);
    if (!m) throw faults.notFoundSegment(rawPath.replace(/^\/+/, '').split('/')[0] ?? '');
    const path = rawPath.slice(m[0].length);
    // Throws the 429 when a limit is hit; otherwise the request holds a concurrency slot until it is answered.
    const admission: Admission | undefined = throttle?.admit(headers);
    const request: ApiRequest = { method, path, query, headers, body };
    const response = path === '$batch' ? batch!.handle(request) : api!.handle(request);
    const records = response.work?.records ?? 0;
    if (options.perRecordDelayMs && records > 0) await sleep(options.perRecordDelayMs * records);
    if (throttle && admission) {
      const work = response.work;
      const serviceMs = throttle.serverTimeMs(work?.kind, records, work?.bulk ?? false, work?.operations ?? 1);
      const wallMs = throttle.wallMs(serviceMs);
      // The write is already applied: a client that times out now sees the "applied but unanswered" case.
      await sleep(wallMs);
      throttle.finish(admission, serviceMs);
      response.headers['x-ferry-server-time-ms'] = String(Math.round(wallMs * 1000) / 1000);
      Object.assign(response.headers, throttle.remaining(admission));
      if (admission.setCookie) response.headers['Set-Cookie'] = admission.setCookie;
    }
    if (reset) toReset.add(response);
    return response;
  };

  const server = createServer((req, res) => {
    handle(req, res).catch((error) => {
      log.error('Emulator request failed', { error: String(error) });
      if (!res.headersSent) res.writeHead(500);
      res.end();
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', (error: NodeJS.ErrnoException) =>
      reject(
        new FerryError(
          'emulator.listen',
          `The emulator cannot listen on \`${host}:${options.port ?? 0}\` (${error.code}); pick another --port or stop the process using it.`,
          { cause: error },
        ),
      ),
    );
    server.listen(options.port ?? 0, host, () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  const url = `http://${host}:${port}`;
  api = new WebApi(catalog, store, url);
  batch = new BatchHandler(api, store);
  log.info('Dataverse emulator started', { url, tables: catalog.tables().length });

  let closed: Promise<void> | undefined;
  return {
    url,
    store,
    ...(throttle ? { throttle } : {}),
    close() {
      closed ??= (async () => {
        await new Promise<void>((resolve) => {
          server.close(() => resolve());
          server.closeIdleConnections();
        });
        if (saveTimer) clearTimeout(saveTimer);
        saveTimer = undefined;
        dirty = true;
        await save();
      })();
      return closed;
    },
  };
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
