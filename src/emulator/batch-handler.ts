import { randomUUID } from 'node:crypto';
import { serviceRelativePath } from './odata-path.js';
import { faults, ServiceFault } from './service-fault.js';
import type { EmulatorStore } from './store.js';
import { type ApiRequest, type ApiResponse, errorResponse, type WebApi, type WorkKind } from './web-api.js';

/** Most operations one `$batch` may hold (reference §3.1). */
export const MAX_BATCH_OPERATIONS = 1000;

const CRLF = '\r\n';
const STATUS_TEXT: Record<number, string> = {
  200: 'OK',
  201: 'Created',
  204: 'No Content',
  400: 'Bad Request',
  401: 'Unauthorized',
  403: 'Forbidden',
  404: 'Not Found',
  405: 'Method Not Allowed',
  412: 'Precondition Failed',
  413: 'Payload Too Large',
  429: 'Too Many Requests',
  500: 'Internal Server Error',
  501: 'Not Implemented',
  503: 'Service Unavailable',
};

interface Operation {
  readonly method: string;
  readonly url: string;
  readonly headers: Record<string, string>;
  readonly body: string;
  readonly contentId?: string;
}

type Item = { readonly kind: 'op'; readonly op: Operation } | { readonly kind: 'changeset'; readonly ops: Operation[] };

/**
 * `$batch` over the emulator's Web API (reference §3, TV9–TV11): CRLF multipart/mixed, change sets that are atomic,
 * `Content-ID` references (`$1`), `Prefer: odata.continue-on-error`, and the response layout of the docs.
 */
export class BatchHandler {
  readonly #api: WebApi;
  readonly #store: EmulatorStore;

  constructor(api: WebApi, store: EmulatorStore) {
    this.#api = api;
    this.#store = store;
  }

  /** Runs a `$batch` request (`request.body` is the multipart text). */
  handle(request: ApiRequest): ApiResponse {
    try {
      return this.#run(request);
    } catch (error) {
      return errorResponse(error);
    }
  }

  #run(request: ApiRequest): ApiResponse {
    if (request.method.toUpperCase() !== 'POST') throw faults.methodNotAllowed(request.method, '$batch');
    const boundary = boundaryOf(request.headers['content-type'] ?? '');
    if (!boundary) {
      throw new ServiceFault(
        400,
        '0x80048d19',
        'The $batch request needs Content-Type: multipart/mixed with a boundary.',
      );
    }
    // A bare LF anywhere means the body was not written with CRLF line endings (reference §3.2, S-TS).
    if (/(^|[^\r])\n/.test(request.body)) {
      throw new ServiceFault(
        400,
        '0x80048d19',
        "Error identified in Payload provided by the user for Entity :''  ---->  InnerException : System.ArgumentException: Stream was not readable.",
      );
    }
    const items = parseBatch(request.body, boundary);
    const count = items.reduce((n, item) => n + (item.kind === 'op' ? 1 : item.ops.length), 0);
    if (count > MAX_BATCH_OPERATIONS) {
      throw new ServiceFault(
        400,
        '0x80048d19',
        `The batch contains ${count} operations; a maximum of ${MAX_BATCH_OPERATIONS} operations is allowed in a batch.`,
      );
    }
    const continueOnError = /odata\.continue-on-error/i.test(request.headers.prefer ?? '');
    const outer: Record<string, string> = {};
    // Caller-level headers (bypass logic, duplicate detection, caller id) apply to every inner request; a part's own
    // headers win. How the service treats them is UNVERIFIED (reference §3.2).
    for (const [k, v] of Object.entries(request.headers))
      if (k.startsWith('mscrm.') || k === 'callerobjectid') outer[k] = v;

    const boundaryOut = `batchresponse_${randomUUID()}`;
    const parts: string[] = [];
    let status = 200;
    let records = 0;
    let operations = 0;
    let kind: WorkKind = 'read';
    for (const item of items) {
      if (item.kind === 'op') {
        const response = this.#execute(item.op, outer, new Map(), false);
        records += response.work?.records ?? 0;
        operations += 1;
        if (response.work && response.work.kind !== 'read') kind = response.work.kind;
        parts.push(httpPart(response));
        if (response.status >= 400 && !continueOnError) {
          status = response.status;
          break;
        }
        continue;
      }
      const point = this.#store.savepoint();
      const ids = new Map<string, string>();
      const done: string[] = [];
      let failed: string | undefined;
      let failedStatus = 0;
      let setRecords = 0;
      for (const op of item.ops) {
        const response = this.#execute(op, outer, ids, true);
        operations += 1;
        if (response.status >= 400) {
          failed = httpPart(response, op.contentId);
          failedStatus = response.status;
          break;
        }
        setRecords += response.work?.records ?? 0;
        if (response.work && response.work.kind !== 'read') kind = response.work.kind;
        const entityId = response.headers['OData-EntityId'];
        if (op.contentId !== undefined && entityId) ids.set(`$${op.contentId}`, entityId);
        done.push(httpPart(response, op.contentId));
      }
      if (failed !== undefined) {
        // A change set is one transaction: undo its completed operations and report the failing one.
        this.#store.rollback(point);
        parts.push(failed);
        if (!continueOnError) {
          status = failedStatus;
          break;
        }
        continue;
      }
      this.#store.release(point);
      records += setRecords;
      const inner = `changesetresponse_${randomUUID()}`;
      parts.push(
        `Content-Type: multipart/mixed; boundary=${inner}${CRLF}${CRLF}` +
          done.map((p) => `--${inner}${CRLF}${p}`).join('') +
          `--${inner}--${CRLF}`,
      );
    }
    const body = `${parts.map((p) => `--${boundaryOut}${CRLF}${p}`).join('')}--${boundaryOut}--${CRLF}`;
    return {
      status,
      headers: { 'Content-Type': `multipart/mixed; boundary=${boundaryOut}` },
      body,
      work: { kind, records, operations },
    };
  }

  #execute(op: Operation, outer: Record<string, string>, ids: Map<string, string>, inChangeSet: boolean): ApiResponse {
    // A Content-ID reference (`$1`) names the entity an earlier operation of the change set created, whether it starts
    // the part's URL or is an `@odata.bind` value in its body.
    const resolve = (reference: string): string => {
      const target = ids.get(reference);
      if (target === undefined) {
        throw new ServiceFault(400, '', `Content-ID Reference: '${reference}' does not exist in the batch context.`);
      }
      return target;
    };
    try {
      const method = op.method.toUpperCase();
      if (inChangeSet && method === 'GET') {
        throw new ServiceFault(
          400,
          '0x80048d19',
          'GET requests are not allowed inside a change set; move them out of the change set.',
        );
      }
      let url = op.url;
      const ref = /^\$(\d+)/.exec(url);
      if (ref) url = resolve(ref[0]) + url.slice(ref[0].length);
      const relative = serviceRelativePath(url.trim());
      const q = relative.indexOf('?');
      if (relative.replace(/\?.*$/, '') === '$batch')
        throw new ServiceFault(400, '0x80048d19', 'Nested $batch requests are not allowed.');
      return this.#api.handle(
        {
          method,
          path: q < 0 ? relative : relative.slice(0, q),
          query: q < 0 ? '' : relative.slice(q + 1),
          headers: { ...outer, ...op.headers },
          body: op.body,
        },
        { inBatch: true, resolve },
      );
    } catch (error) {
      return errorResponse(error);
    }
  }
}

function boundaryOf(contentType: string): string | undefined {
  if (!/^\s*multipart\/mixed/i.test(contentType)) return undefined;
  const m = /boundary=(?:"([^"]+)"|([^;\s]+))/i.exec(contentType);
  return m ? (m[1] ?? m[2]) : undefined;
}

function splitMultipart(body: string, boundary: string): string[] {
  const delimiter = `--${boundary}`;
  const parts: string[] = [];
  let at = body.startsWith(delimiter) ? 0 : body.indexOf(`${CRLF}${delimiter}`);
  if (at < 0)
    throw new ServiceFault(400, '0x80048d19', `The $batch body has no part with the boundary \`${boundary}\`.`);
  if (at > 0) at += 2;
  for (;;) {
    const after = at + delimiter.length;
    if (body.startsWith('--', after)) return parts;
    const lineEnd = body.indexOf(CRLF, after);
    if (lineEnd < 0) break;
    const start = lineEnd + 2;
    const next = body.indexOf(`${CRLF}${delimiter}`, start - 2);
    if (next < 0) break;
    parts.push(body.slice(start, Math.max(start, next)));
    at = next + 2;
  }
  throw new ServiceFault(400, '0x80048d19', `The $batch body is not terminated by \`--${boundary}--\`.`);
}

function splitHeaders(text: string): { headers: Record<string, string>; rest: string } {
  const end = text.indexOf(`${CRLF}${CRLF}`);
  const head = end < 0 ? text : text.slice(0, end);
  const rest = end < 0 ? '' : text.slice(end + 4);
  const headers: Record<string, string> = {};
  for (const line of head.split(CRLF)) {
    const colon = line.indexOf(':');
    if (colon > 0) headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
  }
  return { headers, rest };
}

/** One `application/http` part, given as its split MIME headers and the HTTP request after them. */
function parseOperation(part: { headers: Record<string, string>; rest: string }): Operation {
  const { headers: partHeaders, rest } = part;
  if (!/application\/http/i.test(partHeaders['content-type'] ?? '')) {
    throw new ServiceFault(400, '0x80048d19', 'Every $batch part needs Content-Type: application/http.');
  }
  const lineEnd = rest.indexOf(CRLF);
  const requestLine = (lineEnd < 0 ? rest : rest.slice(0, lineEnd)).trim();
  const m = /^([A-Z]+)\s+(\S+)(?:\s+HTTP\/\d\.\d)?$/.exec(requestLine);
  if (!m)
    throw new ServiceFault(400, '0x80048d19', `Cannot read the request line \`${requestLine}\` of a $batch part.`);
  const { headers, rest: body } = splitHeaders(lineEnd < 0 ? '' : rest.slice(lineEnd + 2));
  return {
    method: m[1],
    url: m[2],
    headers,
    body: body.replace(/(\r\n)+$/, ''),
    contentId: partHeaders['content-id'],
  };
}

function parseBatch(body: string, boundary: string): Item[] {
  return splitMultipart(body, boundary).map((text): Item => {
    const part = splitHeaders(text);
    const inner = boundaryOf(part.headers['content-type'] ?? '');
    if (!inner) return { kind: 'op', op: parseOperation(part) };
    const ops = splitMultipart(part.rest, inner).map((p) => parseOperation(splitHeaders(p)));
    return { kind: 'changeset', ops };
  });
}

function httpPart(response: ApiResponse, contentId?: string): string {
  const lines = ['Content-Type: application/http', 'Content-Transfer-Encoding: binary'];
  if (contentId !== undefined) lines.push(`Content-ID: ${contentId}`);
  const inner = [`HTTP/1.1 ${response.status} ${STATUS_TEXT[response.status] ?? 'Unknown'}`];
  if (response.status >= 400) inner.push(`REQ_ID: ${randomUUID()}`);
  const headers = { ...response.headers };
  if (response.status < 300 && headers['Content-Type']?.startsWith('application/json')) {
    headers['Content-Type'] = `${headers['Content-Type']}; odata.streaming=true`;
  }
  for (const [k, v] of Object.entries(headers)) if (k !== 'OData-Version') inner.push(`${k}: ${v}`);
  inner.push('OData-Version: 4.0');
  return `${lines.join(CRLF)}${CRLF}${CRLF}${inner.join(CRLF)}${CRLF}${CRLF}${response.body}${CRLF}`;
}
