import http from 'node:http';
import https from 'node:https';
import { FerryError } from '../../core/errors.js';
import type { Logger } from '../../core/log.js';
import { telemetry } from '../../core/telemetry.js';
import { mapDataverseError, parseServiceError } from './dataverse-errors.js';
import { type BatchItem, type BatchResponsePart, buildBatch, parseBatchResponse } from './odata-batch.js';
import { RetryPolicy, type RetryPolicyOptions, type ThrottleKind, throttleKindOf } from './retry-policy.js';
import { sleep, ThrottleGate } from './throttle-gate.js';

/** Headers that skip custom business logic during bulk loads (reference §10). */
export interface BypassOptions {
  /** `MSCRM.BypassBusinessLogicExecution`: `CustomSync`, `CustomAsync` or both. Needs `prvBypassCustomBusinessLogic`. */
  readonly businessLogic?: 'CustomSync' | 'CustomAsync' | 'CustomSync,CustomAsync';
  /** `MSCRM.BypassBusinessLogicExecutionStepIds`: plug-in step GUIDs to skip. */
  readonly stepIds?: readonly string[];
  /** `MSCRM.SuppressCallbackRegistrationExpanderJob: true`: do not trigger Power Automate flows. */
  readonly suppressFlows?: boolean;
}

export interface DataverseClientOptions {
  /** Environment root, e.g. `https://org.crm.dynamics.com` or the emulator's `http://127.0.0.1:port`. */
  readonly url: string;
  /** Bearer token source; omitted for the emulator. */
  readonly getToken?: () => Promise<string>;
  /**
   * Name of the application user the token is for, when a process writes through several (an identity pool). Only
   * a label for budgets and metrics; never a secret.
   */
  readonly identity?: string;
  /** Timeout of one HTTP attempt. Default `120000` ms (the CrmServiceClient default is 2 minutes). */
  readonly timeoutMs?: number;
  readonly retry?: RetryPolicy | RetryPolicyOptions;
  readonly bypass?: BypassOptions;
  /** Web API version segment. Default `v9.2`. */
  readonly apiVersion?: string;
  readonly log?: Logger;
  /** Aborts waits between retries (not requests in flight). */
  readonly signal?: AbortSignal;
}

/** Hears about throttling and timeouts, e.g. the adaptive writer. */
export interface ClientListener {
  /** `message` is the service's (an execution-time 429 states the limit in it). */
  onThrottled?(kind: ThrottleKind, retryAfterMs: number, message: string | undefined): void;
  onTimeout?(path: string): void;
}

export interface SendOptions {
  readonly body?: unknown;
  readonly headers?: Readonly<Record<string, string>>;
  readonly timeoutMs?: number;
  /**
   * Return data errors (400/403/404/412 and other non-retryable 4xx) as responses instead of throwing, so the
   * caller can turn them into rejects. Default `false`.
   */
  readonly returnDataErrors?: boolean;
}

export interface DataverseResponse {
  readonly status: number;
  readonly headers: Headers;
  readonly body: string;
  /** Wall time of the successful (last) attempt. */
  readonly elapsedMs: number;
  /** Server time of the request when the server reports it, else undefined. */
  readonly serverTimeMs: number | undefined;
  readonly attempts: number;
}

/** Figures the client keeps for the run report. */
export interface ClientStats {
  requests: number;
  retries: number;
  throttled: Record<ThrottleKind, number>;
  maxRetryAfterSec: number;
  transientFailures: number;
  timeouts: number;
}

/** Response headers a server may use to report its own time per request (the emulator's first). */
const SERVER_TIME_HEADERS = ['x-ferry-server-time-ms', 'x-ms-server-time-ms'];

/**
 * A thin HTTP client for the Dataverse Web API. It owns the retry (429 with a global pause for `Retry-After`,
 * exponential backoff with jitter for 5xx, resets and timeouts, never for data errors), sends the standard OData
 * headers, and keeps no cookies: it has no cookie jar and never echoes `Set-Cookie`, so the ARR affinity cookie is
 * dropped and requests spread over the web servers (reference §4.2).
 */
export class DataverseClient {
  readonly url: string;
  readonly apiPath: string;
  /** The identity's name in a pool (see {@link DataverseClientOptions.identity}). */
  readonly identity: string | undefined;
  readonly gate = new ThrottleGate();
  readonly stats: ClientStats = {
    requests: 0,
    retries: 0,
    throttled: { requests: 0, executionTime: 0, concurrency: 0, unknown: 0 },
    maxRetryAfterSec: 0,
    transientFailures: 0,
    timeouts: 0,
  };
  readonly #options: DataverseClientOptions;
  readonly #retry: RetryPolicy;
  readonly #baseHeaders: Record<string, string>;
  readonly #listeners = new Set<ClientListener>();

  constructor(options: DataverseClientOptions) {
    if (!/^https?:\/\//i.test(options.url)) {
      throw new FerryError(
        'dataverse.url',
        `Dataverse URL \`${options.url}\` is not an http(s) URL; pass e.g. https://org.crm.dynamics.com.`,
      );
    }
    this.#options = options;
    this.url = options.url.replace(/\/+$/, '');
    this.identity = options.identity;
    this.apiPath = `/api/data/${options.apiVersion ?? 'v9.2'}/`;
    this.#retry = options.retry instanceof RetryPolicy ? options.retry : new RetryPolicy(options.retry);
    this.#baseHeaders = {
      Accept: 'application/json',
      'OData-MaxVersion': '4.0',
      'OData-Version': '4.0',
      // Defeats caching only; the service treats it as no precondition (reference §1.1).
      'If-None-Match': 'null',
      ...bypassHeaders(options.bypass),
    };
  }

  /** Adds a listener for 429s and timeouts; returns the function that removes it. */
  subscribe(listener: ClientListener): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** The absolute URL of a Web API path (`accounts(...)`). */
  apiUrl(path: string): string {
    return `${this.url}${this.apiPath}${path.replace(/^\/+/, '')}`;
  }

  /** Sends one request with the retry policy; throws a mapped `FerryError` unless the caller asked for data errors. */
  async send(method: string, path: string, options: SendOptions = {}): Promise<DataverseResponse> {
    const url = this.apiUrl(path);
    const body =
      options.body === undefined
        ? undefined
        : typeof options.body === 'string'
          ? options.body
          : JSON.stringify(options.body);
    const timeoutMs = options.timeoutMs ?? this.#options.timeoutMs ?? 120_000;
    for (let attempt = 0; ; attempt += 1) {
      await this.gate.wait(this.#options.signal);
      const headers: Record<string, string> = { ...this.#baseHeaders };
      if (body !== undefined) headers['Content-Type'] = 'application/json; charset=utf-8';
      Object.assign(headers, options.headers);
      if (this.#options.getToken) {
        try {
          headers.Authorization = `Bearer ${await this.#options.getToken()}`;
        } catch (error) {
          // This caller may be the one the gate let through first after a pause; the others must not wait on it.
          this.gate.open();
          throw error;
        }
      }
      const started = performance.now();
      let response: HttpAnswer;
      let text: string;
      this.stats.requests += 1;
      try {
        ({ response, text } = await httpSend(url, method, headers, body, timeoutMs));
      } catch (error) {
        // No 429: whatever went wrong, the gate need not hold the other lanes back for it.
        this.gate.open();
        const timedOut = isTimeout(error);
        reportRequest(method, path, started, attempt, { outcome: timedOut ? 'timeout' : 'transient' });
        if (timedOut) {
          this.stats.timeouts += 1;
          for (const l of this.#listeners) l.onTimeout?.(path);
        }
        this.stats.transientFailures += 1;
        // Resets, refused connections and timeouts: the request may or may not have been applied. Everything this
        // client sends is an upsert by key (or a read), so sending it again cannot create a second row.
        if (!this.#retry.shouldRetry('transient', attempt)) {
          throw mapDataverseError({
            method,
            url,
            cause: timedOut ? new Error(`no answer within ${timeoutMs} ms`) : error,
            attempts: attempt + 1,
          });
        }
        const backoffMs = this.#retry.backoffMs(attempt);
        // At info level: an operator watching an unreachable URL sees why nothing happens.
        this.#options.log?.info(
          `Dataverse request failed (${describe(error)}); retrying in ${(backoffMs / 1000).toFixed(1)} s (attempt ${attempt + 2})`,
          { method, path: shortPath(path) },
        );
        this.stats.retries += 1;
        await sleep(backoffMs, this.#options.signal);
        continue;
      }
      const elapsedMs = performance.now() - started;
      const serviceError = response.status >= 400 ? parseServiceError(text) : undefined;
      const kind = this.#retry.classify(response.status, serviceError?.code);
      if (kind !== 'throttled') this.gate.open();
      const retryAfter =
        kind === 'throttled' ? this.#retry.throttleDelayMs(response.headers.get('retry-after'), attempt) : undefined;
      reportRequest(method, path, started, attempt, {
        status: response.status,
        outcome: kind,
        serverTimeMs: serverTimeOf(response.headers),
        ...(retryAfter === undefined
          ? {}
          : { retryAfterMs: retryAfter, throttleKind: throttleKindOf(serviceError?.code) }),
        ...(serviceError?.code ? { errorCode: serviceError.code } : {}),
      });
      if (kind === 'success' || (kind === 'data' && options.returnDataErrors)) {
        return {
          status: response.status,
          headers: response.headers,
          body: text,
          elapsedMs,
          serverTimeMs: serverTimeOf(response.headers),
          attempts: attempt + 1,
        };
      }
      if (kind === 'throttled') {
        const throttleKind = throttleKindOf(serviceError?.code);
        const waitMs = retryAfter!;
        this.stats.throttled[throttleKind] += 1;
        this.stats.maxRetryAfterSec = Math.max(this.stats.maxRetryAfterSec, waitMs / 1000);
        // Every lane pauses, not only this one: the limits are per user, so others would only be refused too.
        this.gate.pause(waitMs);
        this.#options.log?.info(`Dataverse throttled (${throttleKind}), waiting ${Math.ceil(waitMs / 1000)} s`, {
          path: shortPath(path),
        });
        for (const l of this.#listeners) l.onThrottled?.(throttleKind, waitMs, serviceError?.message);
      }
      const backoffMs = kind === 'transient' ? this.#retry.backoffMs(attempt) : 0;
      if (kind === 'transient') {
        this.stats.transientFailures += 1;
        if (this.#retry.shouldRetry(kind, attempt))
          this.#options.log?.info(
            `Dataverse answered ${response.status}${serviceError?.code ? ` (${serviceError.code})` : ''}; retrying in ${(backoffMs / 1000).toFixed(1)} s`,
            { method, path: shortPath(path) },
          );
      }
      if (!this.#retry.shouldRetry(kind, attempt)) {
        throw mapDataverseError({ method, url, status: response.status, body: text, attempts: attempt + 1 });
      }
      this.stats.retries += 1;
      if (kind === 'transient') await sleep(backoffMs, this.#options.signal);
    }
  }

  /** `GET` returning parsed JSON. */
  async getJson<T = unknown>(path: string, options: SendOptions = {}): Promise<T> {
    const response = await this.send('GET', path, options);
    return parseJson<T>(response.body, path);
  }

  /**
   * `GET WhoAmI`; the `x-ms-dop-hint` header is the service's recommended degree of parallelism (reference §4.2).
   * `timeScale` is set only by ferry's emulator (`x-ferry-time-scale`), whose clock runs that many times faster than
   * the service's, so its 300 s window lasts 300 / timeScale wall-clock seconds.
   */
  async whoAmI(): Promise<{ userId: string | undefined; dopHint: number | undefined; timeScale: number | undefined }> {
    const response = await this.send('GET', 'WhoAmI');
    const hint = Number(response.headers.get('x-ms-dop-hint'));
    const scale = Number(response.headers.get('x-ferry-time-scale'));
    const body = safeJson(response.body) as { UserId?: string } | undefined;
    return {
      userId: body?.UserId,
      dopHint: Number.isInteger(hint) && hint > 0 ? hint : undefined,
      timeScale: response.headers.has('x-ferry-time-scale') && scale > 0 ? scale : undefined,
    };
  }

  /**
   * True when the table supports the bulk messages: the TV8 `sdkmessagefilters` probe for CreateMultiple and
   * UpdateMultiple (a table with both supports UpsertMultiple, reference §2.2).
   */
  async supportsBulk(logicalName: string): Promise<boolean> {
    for (const message of ['CreateMultiple', 'UpdateMultiple']) {
      const query =
        `sdkmessagefilters?$select=sdkmessagefilterid&$filter=${encodeURIComponent('sdkmessageid/name eq @message and primaryobjecttypecode eq @table')}` +
        `&@message=${encodeURIComponent(`'${message}'`)}&@table=${encodeURIComponent(`'${logicalName}'`)}`;
      const result = await this.getJson<{ value?: unknown[] }>(query);
      if (!Array.isArray(result.value) || result.value.length === 0) return false;
    }
    return true;
  }

  /**
   * `POST <set>/Microsoft.Dynamics.CRM.UpsertMultiple`; data errors come back as the response (whole request rolled
   * back). `targets` are JSON object texts, spliced into the body as they are (no parse and re-serialise per row).
   */
  upsertMultiple(
    entitySet: string,
    targets: readonly string[],
    options: { timeoutMs?: number } = {},
  ): Promise<DataverseResponse> {
    return this.send('POST', `${entitySet}/Microsoft.Dynamics.CRM.UpsertMultiple`, {
      body: `{"Targets":[${targets.join(',')}]}`,
      returnDataErrors: true,
      ...(options.timeoutMs ? { timeoutMs: options.timeoutMs } : {}),
    });
  }

  /**
   * Sends a `$batch` and returns its parts in request order. With `continueOnError` every part runs and carries
   * its own status (reference §3.3).
   */
  async batch(
    items: readonly BatchItem[],
    options: { continueOnError?: boolean; timeoutMs?: number } = {},
  ): Promise<{ response: DataverseResponse; parts: BatchResponsePart[] }> {
    const built = buildBatch(items, { apiPath: this.apiPath });
    const response = await this.send('POST', '$batch', {
      body: built.body,
      headers: {
        'Content-Type': built.contentType,
        ...(options.continueOnError ? { Prefer: 'odata.continue-on-error' } : {}),
      },
      returnDataErrors: true,
      ...(options.timeoutMs ? { timeoutMs: options.timeoutMs } : {}),
    });
    const contentType = response.headers.get('content-type') ?? '';
    if (!/multipart\/mixed/i.test(contentType)) {
      // A batch the service refused as a whole (e.g. malformed) answers with a plain JSON error.
      throw mapDataverseError({
        method: 'POST',
        url: this.apiUrl('$batch'),
        status: response.status,
        body: response.body,
      });
    }
    return { response, parts: parseBatchResponse(contentType, response.body) };
  }
}

/** What {@link httpSend} answers: the parts of a `fetch` Response the client reads. */
interface HttpAnswer {
  readonly status: number;
  readonly headers: Headers;
}

/** Keep-alive agents shared by every client of the process: one connection pool per origin, as `fetch` had. */
const AGENTS = {
  http: new http.Agent({ keepAlive: true, maxSockets: 256 }),
  https: new https.Agent({ keepAlive: true, maxSockets: 256 }),
};

/**
 * One HTTP exchange with `node:http`/`node:https` (never follows redirects). Not `fetch`: at thousands of rows per
 * second its web streams were most of the writer's CPU (profiled: undici and web streams about three times the
 * writer's own code), which a busy machine then took from the writes. A timeout rejects with a `TimeoutError`; a
 * reset or refused connection with the socket's error (its `code` kept as the cause).
 */
function httpSend(
  url: string,
  method: string,
  headers: Record<string, string>,
  body: string | undefined,
  timeoutMs: number,
): Promise<{ response: HttpAnswer; text: string }> {
  return new Promise((resolve, reject) => {
    const target = new URL(url);
    const secure = target.protocol === 'https:';
    const payload = body === undefined ? undefined : Buffer.from(body, 'utf8');
    let settled = false;
    const fail = (error: Error) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      reject(error);
    };
    const request = (secure ? https : http).request(
      target,
      {
        method,
        headers: payload ? { ...headers, 'Content-Length': String(payload.length) } : headers,
        agent: secure ? AGENTS.https : AGENTS.http,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.on('error', (error) => fail(requestError(error)));
        // A connection closed before the whole body arrived: a reset, whatever event reports it first.
        res.on('close', () => {
          if (!res.complete)
            fail(requestError(Object.assign(new Error('socket closed mid-answer'), { code: 'ECONNRESET' })));
        });
        res.on('end', () => {
          if (settled) return;
          settled = true;
          clearTimeout(timer);
          const answer = new Headers();
          for (const [name, value] of Object.entries(res.headers)) {
            if (value === undefined) continue;
            if (Array.isArray(value)) for (const v of value) answer.append(name, v);
            else answer.set(name, value);
          }
          resolve({
            response: { status: res.statusCode ?? 0, headers: answer },
            text: Buffer.concat(chunks).toString('utf8'),
          });
        });
      },
    );
    const timer = setTimeout(() => {
      const error = new Error(`no answer within ${timeoutMs} ms`);
      error.name = 'TimeoutError';
      fail(error);
      request.destroy();
    }, timeoutMs);
    request.on('error', (error) => fail(requestError(error)));
    request.end(payload);
  });
}

/** A socket error as the client reports it: a plain message with the socket's error (and `code`) as the cause. */
function requestError(error: Error): Error {
  return new Error(`request failed: ${error.message}`, { cause: error });
}

function bypassHeaders(bypass: BypassOptions | undefined): Record<string, string> {
  const headers: Record<string, string> = {};
  if (!bypass) return headers;
  if (bypass.businessLogic) headers['MSCRM.BypassBusinessLogicExecution'] = bypass.businessLogic;
  if (bypass.stepIds?.length) headers['MSCRM.BypassBusinessLogicExecutionStepIds'] = bypass.stepIds.join(',');
  if (bypass.suppressFlows) headers['MSCRM.SuppressCallbackRegistrationExpanderJob'] = 'true';
  return headers;
}

function serverTimeOf(headers: Headers): number | undefined {
  for (const name of SERVER_TIME_HEADERS) {
    const value = Number(headers.get(name));
    if (headers.has(name) && Number.isFinite(value)) return value;
  }
  return undefined;
}

function isTimeout(error: unknown): boolean {
  return error instanceof Error && (error.name === 'TimeoutError' || error.name === 'AbortError');
}

function describe(error: unknown): string {
  if (!(error instanceof Error)) return String(error);
  const cause = (error as { cause?: { code?: string } }).cause;
  return cause?.code ? `${error.message} (${cause.code})` : error.message;
}

/**
 * One HTTP attempt as a client span (`PATCH accounts(…)`) and metrics. The path is reduced to its operation (`accounts(…)`,
 * `$batch`): key values are business data and stay out of telemetry, as do bodies and headers.
 */
function reportRequest(
  method: string,
  path: string,
  startedAt: number,
  attempt: number,
  outcome: {
    status?: number;
    outcome: string;
    serverTimeMs?: number | undefined;
    retryAfterMs?: number;
    throttleKind?: string;
    errorCode?: string;
  },
): void {
  const sink = telemetry();
  const durationMs = performance.now() - startedAt;
  // Greedy: a key value may itself hold `)`; everything between the first `(` and the last `)` goes.
  const operation = shortPath(path).replace(/\(.*\)/, '(…)');
  const attributes = {
    'http.request.method': method,
    'dataverse.operation': operation,
    'http.response.status_code': outcome.status,
    'dataverse.outcome': outcome.outcome,
    'dataverse.attempt': attempt + 1,
    'dataverse.server_time_ms': outcome.serverTimeMs,
    'dataverse.retry_after_s': outcome.retryAfterMs === undefined ? undefined : outcome.retryAfterMs / 1000,
    'dataverse.throttle_kind': outcome.throttleKind,
    'dataverse.error_code': outcome.errorCode,
  };
  sink.recordSpan(`${method} ${operation}`, {
    startTimeMs: performance.timeOrigin + startedAt,
    durationMs,
    attributes,
    ...(outcome.outcome === 'success' ? {} : { error: `${outcome.status ?? outcome.outcome}` }),
  });
  sink.count('ferry.dataverse.requests', 1, {
    'dataverse.outcome': outcome.outcome,
    'http.response.status_code': outcome.status,
  });
  if (outcome.retryAfterMs !== undefined) {
    sink.count('ferry.dataverse.throttled', 1, { 'dataverse.throttle_kind': outcome.throttleKind });
    sink.record('ferry.dataverse.retry_after_s', outcome.retryAfterMs / 1000, {
      'dataverse.throttle_kind': outcome.throttleKind,
    });
  }
}

function shortPath(path: string): string {
  const q = path.indexOf('?');
  return q < 0 ? path : path.slice(0, q);
}

function safeJson(text: string): unknown {
  try {
    return text ? JSON.parse(text) : undefined;
  } catch {
    return undefined;
  }
}

function parseJson<T>(text: string, path: string): T {
  try {
    return JSON.parse(text) as T;
  } catch (error) {
    throw new FerryError(
      'dataverse.bad_json',
      `Dataverse answered \`GET ${shortPath(path)}\` with a body that is not JSON; check the URL points at a Dataverse environment.`,
      {
        cause: error,
      },
    );
  }
}
