import { createHash } from 'node:crypto';
import { UsageError } from '../../../../core/errors.js';
import { isObject, type Json, type JsonObject } from '../expression/json-value.js';
import { type ActivityContext, type ActivityHandler, timeSpanMs } from '../pipeline-engine.js';
import { checkKeys } from '../property-check.js';
import { ActivityError, UnsupportedError } from '../runtime-error.js';
import type { RuntimeServices } from './runtime-services.js';

/**
 * typeProperties of the Web activity (learn.microsoft.com/azure/data-factory/control-flow-web-activity, "Type
 * properties"). `datasets` and `linkedServices` are accepted only empty (passing them in the body is not
 * implemented); `disableCertValidation: true` is refused by name, and `connectVia` (an integration runtime) is not
 * implemented (an error naming it, as for any unknown property).
 */
export const WEB_TYPE_PROPERTIES = [
  'method',
  'url',
  'headers',
  'body',
  'authentication',
  'httpRequestTimeout',
  'turnOffAsync',
  'disableCertValidation',
  'datasets',
  'linkedServices',
] as const;

/** Keys of each `authentication.type` the runtime implements (the page's "Authentication" section). */
export const WEB_AUTHENTICATION_KEYS: Readonly<Record<string, readonly string[]>> = {
  MSI: ['type', 'resource'],
  ServicePrincipal: ['type', 'tenant', 'servicePrincipalId', 'servicePrincipalKey', 'resource'],
};

const METHODS = ['GET', 'POST', 'PUT', 'PATCH', 'DELETE'] as const;
/** "The maximum supported output response payload size is 4 MB." */
export const WEB_OUTPUT_LIMIT_BYTES = 4 * 1024 * 1024;
/** "If not explicitly specified defaults to 00:01:00", "max value as 00:10:00". */
const DEFAULT_TIMEOUT_MS = 60_000;
const MAX_TIMEOUT_MS = 10 * 60_000;
/** The asynchronous request-reply pattern: "continue to wait … (up to 7 day)". */
const ASYNC_LIMIT_MS = 7 * 86_400_000;

export interface WebActivityOptions {
  /**
   * Root of the local Dataverse (the emulator). It stands in for every Dataverse environment a Web activity calls
   * (`https://<org>.crm*.dynamics.com/…`), as the runtime's `dataverseUrl` stands in for the Dataverse linked
   * service's `serviceUri`: the environment's URL is deployed (a pipeline parameter bound per environment), the
   * requests go to the local service.
   */
  readonly localDataverseUrl?: string;
  /** Waits between polls of a 202 `Location`; real time, since the called service's clock is. */
  readonly sleep?: (ms: number) => Promise<void>;
}

/**
 * The Web activity: one HTTP request (GET/POST/PUT/PATCH/DELETE) built from the evaluated `url`, `headers` and
 * `body`, with the documented authentication (managed identity or service principal: an access token for
 * `resource`), `httpRequestTimeout` (default 1 minute, at most 10), and the asynchronous request-reply pattern (a
 * 202 with `Location` is polled with GET until it completes, unless `turnOffAsync`). The response body, parsed as a
 * JSON object, is the activity's output. A non-2xx answer fails the activity with code 2108 ("Error calling the
 * endpoint '<url>'. Response status code: '<code>'", data-factory-troubleshoot-guide) followed by `More details: `
 * and the response body as the service sent it (a Dataverse error is `{"error":{"code","message"}}`); no answer (network, timeout) with 2128; an output over 4 MB with 2001 ("The length of execution output is
 * over limit (around 4MB currently)."). Retries are the activity policy's (`retry`, `retryIntervalInSeconds`).
 *
 * Choices where the page is silent: an empty response body (e.g. 204 No Content) is the output `{}`; a body that is
 * not a JSON object is refused (the page lists JSON arrays, values and non-JSON as unsupported responses); a body
 * without a `Content-Type` header is sent as `application/json` (the page: request bodies are JSON); the runtime
 * calls only loopback endpoints and Dataverse environments (mapped to the local Dataverse) — anything else is refused,
 * never sent to the internet. The response headers are not in the output (the page documents none).
 */
export function webActivityHandler(services: RuntimeServices, options: WebActivityOptions = {}): ActivityHandler {
  return (ctx) => webActivity(services, options, ctx);
}

async function webActivity(
  services: RuntimeServices,
  options: WebActivityOptions,
  ctx: ActivityContext,
): Promise<Json> {
  const tp = isObject(ctx.activity.typeProperties) ? ctx.activity.typeProperties : {};
  checkKeys(tp, WEB_TYPE_PROPERTIES, `WebActivity \`${ctx.name}\``);
  for (const list of ['datasets', 'linkedServices'] as const) {
    const value = tp[list];
    if (value !== undefined && !(Array.isArray(value) && value.length === 0))
      throw new UnsupportedError(
        `WebActivity \`${ctx.name}\` passes \`${list}\` to the endpoint; the local runtime does not implement passing datasets or linked services in the body (leave it empty).`,
      );
  }
  if (tp.disableCertValidation !== undefined && ctx.evaluate(tp.disableCertValidation) !== false)
    throw new UnsupportedError(
      `WebActivity \`${ctx.name}\` sets \`disableCertValidation\`; the local runtime does not implement turning off certificate validation.`,
    );

  const rawMethod = ctx.evaluate(tp.method);
  const method = typeof rawMethod === 'string' ? rawMethod.toUpperCase() : '';
  if (!(METHODS as readonly string[]).includes(method))
    throw new ActivityError(
      '2104',
      `WebActivity \`${ctx.name}\` method is \`${JSON.stringify(rawMethod)}\`; use one of ${METHODS.join(', ')}.`,
    );
  const url = ctx.evaluate(tp.url);
  if (typeof url !== 'string' || url === '')
    throw new ActivityError(
      '2103',
      `WebActivity \`${ctx.name}\` needs a \`url\` (a string), got \`${JSON.stringify(url)}\`.`,
    );
  const target = resolveTarget(url, options, ctx.name);

  const headers = headersOf(tp.headers, ctx);
  let body: string | undefined;
  if (tp.body !== undefined) {
    const value = ctx.evaluate(tp.body);
    if (method === 'GET')
      throw new ActivityError(
        '2104',
        `WebActivity \`${ctx.name}\` is a GET with a \`body\`; a GET sends none — remove it.`,
      );
    body = typeof value === 'string' ? value : JSON.stringify(value);
  } else if (method === 'POST' || method === 'PUT' || method === 'PATCH') {
    // "Required for POST/PUT/PATCH methods."
    throw new ActivityError(
      '2103',
      `WebActivity \`${ctx.name}\` is a ${method} without a \`body\`; the body is required for POST/PUT/PATCH.`,
    );
  }
  if (body !== undefined && !Object.keys(headers).some((h) => h.toLowerCase() === 'content-type'))
    headers['Content-Type'] = 'application/json';
  if (tp.authentication !== undefined) {
    if (Object.keys(headers).some((h) => h.toLowerCase() === 'authorization'))
      throw new ActivityError(
        '2104',
        `WebActivity \`${ctx.name}\` sets both an \`Authorization\` header and \`authentication\`; use one.`,
      );
    const token = accessToken(services, tp.authentication, ctx);
    if (token) headers.Authorization = `Bearer ${token}`;
  }

  const timeoutMs =
    tp.httpRequestTimeout === undefined ? DEFAULT_TIMEOUT_MS : timeoutOf(ctx.evaluate(tp.httpRequestTimeout), ctx.name);
  const turnOffAsync = tp.turnOffAsync === undefined ? false : ctx.evaluate(tp.turnOffAsync) === true;
  const sleep = options.sleep ?? ((ms: number) => new Promise<void>((r) => setTimeout(r, ms)));

  let response = await send(method, target, url, headers, body, timeoutMs, ctx);
  const started = Date.now();
  while (response.status === 202 && !turnOffAsync && response.headers.get('location')) {
    // The asynchronous request-reply pattern: GET the Location until the job signals completion.
    const location = new URL(response.headers.get('location')!, target).toString();
    const pollTarget = resolveTarget(location, options, ctx.name);
    if (Date.now() - started > ASYNC_LIMIT_MS)
      throw new ActivityError(
        '2108',
        `Error calling the endpoint '${url}'. Response status code: '202'. The asynchronous operation did not complete within 7 days.`,
      );
    const after = Number(response.headers.get('retry-after'));
    await sleep(Number.isFinite(after) && after >= 0 ? after * 1000 : 1000);
    const pollHeaders: Record<string, string> = {};
    if (headers.Authorization) pollHeaders.Authorization = headers.Authorization;
    response = await send('GET', pollTarget, location, pollHeaders, undefined, timeoutMs, ctx);
  }
  const text = await response.text();
  if (!response.ok) {
    throw new ActivityError(
      '2108',
      `Error calling the endpoint '${url}'. Response status code: '${response.status}'.${text.trim() ? ` More details: ${text.trim().slice(0, 3000)}` : ''}`,
    );
  }
  if (Buffer.byteLength(text, 'utf8') > WEB_OUTPUT_LIMIT_BYTES)
    throw new ActivityError('2001', 'The length of execution output is over limit (around 4MB currently).');
  if (text.trim() === '') return {};
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw new ActivityError(
      'WebActivityResponseNotJson',
      `WebActivity \`${ctx.name}\`: the endpoint '${url}' answered ${response.status} with a body that is not JSON (\`${text.slice(0, 120)}\`); the endpoint must return a JSON object.`,
    );
  }
  if (!isObject(parsed as Json))
    throw new ActivityError(
      'WebActivityResponseNotJson',
      `WebActivity \`${ctx.name}\`: the endpoint '${url}' answered a JSON ${Array.isArray(parsed) ? 'array' : 'value'}; a Web activity's response must be a JSON object.`,
    );
  return parsed as JsonObject;
}

/** Where the request really goes: a Dataverse environment maps to the local Dataverse; otherwise loopback only. */
function resolveTarget(url: string, options: WebActivityOptions, activity: string): string {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new ActivityError(
      '2108',
      `Error calling the endpoint '${url}'. Response status code: 'NA - Unknown'. Invalid Url: ${url} (WebActivity \`${activity}\`).`,
    );
  }
  if (parsed.protocol !== 'https:' && parsed.protocol !== 'http:')
    throw new ActivityError(
      '2108',
      `Error calling the endpoint '${url}': the scheme \`${parsed.protocol}\` is not http(s).`,
    );
  if (DATAVERSE_HOST.test(parsed.hostname)) {
    if (!options.localDataverseUrl)
      throw new UsageError(
        `WebActivity \`${activity}\` calls the Dataverse environment \`${parsed.origin}\`, but the runtime has no local Dataverse; pass \`dataverseUrl\` (the emulator's URL).`,
      );
    const local = new URL(options.localDataverseUrl);
    return `${local.origin}${parsed.pathname}${parsed.search}`;
  }
  if (!LOOPBACK_HOST.test(parsed.hostname))
    throw new UnsupportedError(
      `WebActivity \`${activity}\` calls \`${parsed.origin}\`; the local runtime calls only loopback endpoints and Dataverse environments (mapped to the local Dataverse).`,
    );
  return parsed.toString();
}

/** Dataverse environment hosts: `<org>.crm<n>.dynamics.com` and the sovereign clouds' `.dynamics.cn`/`.microsoftdynamics.us`. */
const DATAVERSE_HOST =
  /\.(crm\d*\.dynamics\.com|crm\d*\.dynamics\.cn|crm\d*\.microsoftdynamics\.us|crm\d*\.appsplatform\.us)$/i;
const LOOPBACK_HOST = /^(127\.\d+\.\d+\.\d+|localhost|\[::1\])$/i;

async function send(
  method: string,
  target: string,
  url: string,
  headers: Record<string, string>,
  body: string | undefined,
  timeoutMs: number,
  ctx: ActivityContext,
): Promise<Response> {
  try {
    return await fetch(target, {
      method,
      headers,
      ...(body === undefined ? {} : { body }),
      signal: AbortSignal.any([ctx.signal, AbortSignal.timeout(timeoutMs)]),
    });
  } catch (error) {
    const reason =
      error instanceof Error
        ? error.name === 'TimeoutError'
          ? `no response within ${timeoutMs / 1000} s (httpRequestTimeout)`
          : error.message
        : String(error);
    throw new ActivityError(
      '2128',
      `No response from the endpoint '${url}'. Possible causes: network connectivity, DNS failure, server certificate validation or timeout. (${reason})`,
      { cause: error, failureType: 'UserError' },
    );
  }
}

function headersOf(value: unknown, ctx: ActivityContext): Record<string, string> {
  if (value === undefined) return {};
  const evaluated = ctx.evaluate(value);
  if (!isObject(evaluated))
    throw new ActivityError(
      '2104',
      `WebActivity \`${ctx.name}\` headers must be an object of name → string value, got \`${JSON.stringify(evaluated)?.slice(0, 100)}\`.`,
    );
  const out: Record<string, string> = {};
  for (const [name, v] of Object.entries(evaluated)) {
    if (typeof v !== 'string')
      throw new ActivityError(
        '2104',
        `WebActivity \`${ctx.name}\` header \`${name}\` is \`${JSON.stringify(v)}\`; a header value is a string.`,
      );
    out[name] = v;
  }
  return out;
}

function timeoutOf(value: Json, activity: string): number {
  let ms: number | undefined;
  try {
    ms = timeSpanMs(value, 'httpRequestTimeout');
  } catch {
    ms = undefined;
  }
  if (ms === undefined || ms <= 0 || ms > MAX_TIMEOUT_MS)
    throw new ActivityError(
      '2104',
      `WebActivity \`${activity}\` httpRequestTimeout is \`${JSON.stringify(value)}\`; write hh:mm:ss up to 00:10:00 (default 00:01:00).`,
    );
  return ms;
}

/**
 * An access token for `resource`, as the service gets one from Entra ID for the workspace's managed identity or the
 * service principal. Locally there is no Entra ID: the token is an unsigned JWT naming the caller (`oid`/`appid`),
 * which is how the service — and the emulator — know who calls (as the runtime's Dataverse connector does). The
 * service principal's key is checked for shape (a SecureString, or a Key Vault secret reference to an AzureKeyVault
 * linked service) and never read, logged or put in the output.
 */
function accessToken(services: RuntimeServices, value: unknown, ctx: ActivityContext): string | undefined {
  const auth = ctx.evaluate(value);
  if (!isObject(auth))
    throw new ActivityError('2104', `WebActivity \`${ctx.name}\` authentication must be an object with a \`type\`.`);
  const type = String(auth.type);
  const known = WEB_AUTHENTICATION_KEYS[type];
  if (!known)
    throw new UnsupportedError(
      `Authentication type \`${type}\` of WebActivity \`${ctx.name}\` is not implemented by the local runtime (implemented: ${Object.keys(WEB_AUTHENTICATION_KEYS).join(', ')}).`,
    );
  checkKeys(auth, known, `the authentication of WebActivity \`${ctx.name}\``);
  const resource = auth.resource;
  if (typeof resource !== 'string' || resource === '')
    throw new ActivityError(
      '2103',
      `WebActivity \`${ctx.name}\` authentication \`${type}\` needs a \`resource\` (the token's audience, e.g. the Dataverse URL).`,
    );
  if (type === 'MSI') {
    // The workspace's system-assigned managed identity: one per workspace.
    const pipeline = ctx.scope.pipeline?.();
    const workspace = isObject(pipeline) ? String(pipeline.DataFactory) : 'ferry-local';
    return unsignedJwt({
      aud: resource,
      oid: stableGuid(`msi:${workspace}`),
      appid: stableGuid(`msi-app:${workspace}`),
      idtyp: 'app',
    });
  }
  const tenant = auth.tenant;
  const clientId = auth.servicePrincipalId;
  if (typeof tenant !== 'string' || tenant === '')
    throw new ActivityError('2103', `WebActivity \`${ctx.name}\` ServicePrincipal authentication needs \`tenant\`.`);
  if (typeof clientId !== 'string' || clientId === '')
    throw new ActivityError(
      '2103',
      `WebActivity \`${ctx.name}\` ServicePrincipal authentication needs \`servicePrincipalId\`.`,
    );
  checkSecret(services, auth.servicePrincipalKey, ctx);
  return unsignedJwt({ aud: resource, tid: tenant, appid: clientId, oid: stableGuid(`sp:${clientId}`), idtyp: 'app' });
}

function checkSecret(services: RuntimeServices, key: Json | undefined, ctx: ActivityContext): void {
  const where = `servicePrincipalKey of WebActivity \`${ctx.name}\``;
  if (!isObject(key))
    throw new ActivityError('2103', `${where} is missing; give a SecureString or an AzureKeyVaultSecret reference.`);
  if (key.type === 'SecureString') {
    checkKeys(key, ['type', 'value'], where);
    if (typeof key.value !== 'string' || key.value === '') throw new ActivityError('2103', `${where} has no value.`);
    return;
  }
  if (key.type === 'AzureKeyVaultSecret') {
    checkKeys(key, ['type', 'store', 'secretName', 'secretVersion'], where);
    const store = key.store;
    if (!isObject(store) || store.type !== 'LinkedServiceReference' || typeof store.referenceName !== 'string')
      throw new ActivityError(
        '2103',
        `${where} needs \`store\`: a LinkedServiceReference to an AzureKeyVault linked service.`,
      );
    const linked = services.artifacts.get('linkedService', store.referenceName);
    if (linked.properties.type !== 'AzureKeyVault')
      throw new ActivityError(
        '2103',
        `${where} names \`${store.referenceName}\`, a ${String(linked.properties.type)} linked service, not AzureKeyVault.`,
      );
    if (typeof key.secretName !== 'string' || key.secretName === '')
      throw new ActivityError('2103', `${where} needs \`secretName\`.`);
    return;
  }
  throw new UnsupportedError(`${where} has type \`${String(key.type)}\`; use SecureString or AzureKeyVaultSecret.`);
}

function unsignedJwt(claims: Record<string, string>): string {
  return [{ alg: 'none', typ: 'JWT' }, claims]
    .map((part) => Buffer.from(JSON.stringify(part)).toString('base64url'))
    .join('.')
    .concat('.');
}

function stableGuid(seed: string): string {
  const h = createHash('sha256').update(seed).digest('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-4${h.slice(13, 16)}-8${h.slice(17, 20)}-${h.slice(20, 32)}`;
}
