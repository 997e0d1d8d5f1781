import { randomUUID } from 'node:crypto';
import { FerryError } from '../../core/errors.js';

/** One operation inside a `$batch` request. */
export interface BatchOperation {
  readonly method: 'GET' | 'POST' | 'PATCH' | 'PUT' | 'DELETE';
  /** Path relative to the Web API root (`accounts(accountnumber='A1')`) or server-relative (`/api/data/v9.2/...`). */
  readonly url: string;
  readonly headers?: Readonly<Record<string, string>>;
  /** JSON-able object or preformatted text. */
  readonly body?: unknown;
  /** Only inside a change set: lets later operations say `$n`. */
  readonly contentId?: string;
}

/** A group of operations: a plain operation, or a change set (atomic: any failure rolls the set back). */
export type BatchItem = BatchOperation | { readonly changeSet: readonly BatchOperation[] };

/** One response part of a `$batch` answer, in request order. */
export interface BatchResponsePart {
  readonly status: number;
  readonly statusText: string;
  /** Header names lower-cased. */
  readonly headers: Readonly<Record<string, string>>;
  readonly body: string;
  readonly contentId?: string;
  /** Set for parts that came from a change set. */
  readonly changeSet?: number;
}

export interface BuiltBatch {
  readonly contentType: string;
  readonly body: string;
}

const CRLF = '\r\n';

/**
 * Builds a `multipart/mixed` `$batch` body with CRLF line endings (the service answers LF-only bodies with
 * `0x80048d19 ... Stream was not readable`, reference §3.2). `apiPath` is the server-relative Web API root used to
 * make relative operation URLs server-relative. Default `/api/data/v9.2/`.
 */
export function buildBatch(
  items: readonly BatchItem[],
  options: { apiPath?: string; boundary?: string } = {},
): BuiltBatch {
  if (items.length === 0) throw new FerryError('dataverse.batch', 'A `$batch` needs at least one operation.');
  const count = items.reduce((n, item) => n + ('changeSet' in item ? item.changeSet.length : 1), 0);
  if (count > 1000) {
    throw new FerryError(
      'dataverse.batch',
      `A \`$batch\` holds at most 1000 operations, got \`${count}\`; send smaller batches.`,
    );
  }
  const apiPath = options.apiPath ?? '/api/data/v9.2/';
  const boundary = options.boundary ?? `batch_${randomUUID()}`;
  const lines: string[] = [];
  for (const item of items) {
    lines.push(`--${boundary}`);
    if ('changeSet' in item) {
      const cs = `changeset_${randomUUID()}`;
      lines.push(`Content-Type: multipart/mixed; boundary="${cs}"`, '');
      for (const op of item.changeSet) {
        lines.push(`--${cs}`);
        pushOperation(lines, op, apiPath, true);
      }
      lines.push(`--${cs}--`, '');
    } else {
      pushOperation(lines, item, apiPath, false);
    }
  }
  lines.push(`--${boundary}--`, '');
  return { contentType: `multipart/mixed; boundary="${boundary}"`, body: lines.join(CRLF) };
}

function pushOperation(lines: string[], op: BatchOperation, apiPath: string, inChangeSet: boolean): void {
  lines.push('Content-Type: application/http', 'Content-Transfer-Encoding: binary');
  if (inChangeSet && op.contentId !== undefined) lines.push(`Content-ID: ${op.contentId}`);
  lines.push('');
  const url = /^([a-z]+:\/\/|\/|\$)/i.test(op.url) ? op.url : `${apiPath}${op.url}`;
  lines.push(`${op.method} ${url} HTTP/1.1`);
  const hasBody = op.body !== undefined && op.method !== 'GET' && op.method !== 'DELETE';
  const headers: Record<string, string> = {
    ...(hasBody ? { 'Content-Type': 'application/json; type=entry' } : {}),
    ...op.headers,
  };
  for (const [name, value] of Object.entries(headers)) lines.push(`${name}: ${value}`);
  lines.push('');
  if (hasBody) lines.push(typeof op.body === 'string' ? op.body : JSON.stringify(op.body));
  else lines.push('');
}

/**
 * Parses a `$batch` response body into its parts in order, descending into change sets. Accepts CRLF (what the
 * service sends) and, leniently, LF.
 */
export function parseBatchResponse(contentType: string, body: string): BatchResponsePart[] {
  const boundary = boundaryOf(contentType);
  if (!boundary) {
    throw new FerryError(
      'dataverse.batch_response',
      `The \`$batch\` response has content type \`${contentType}\` without a boundary; expected multipart/mixed.`,
    );
  }
  const out: BatchResponsePart[] = [];
  let changeSets = 0;
  for (const part of splitMultipart(body, boundary)) {
    const { headers, rest } = splitHeaders(part);
    const type = headers['content-type'] ?? '';
    if (/^multipart\/mixed/i.test(type)) {
      const inner = boundaryOf(type);
      if (!inner) continue;
      changeSets += 1;
      for (const sub of splitMultipart(rest, inner)) {
        const subParsed = splitHeaders(sub);
        out.push({ ...parseHttpMessage(subParsed.rest), ...contentIdOf(subParsed.headers), changeSet: changeSets });
      }
    } else {
      out.push({ ...parseHttpMessage(rest), ...contentIdOf(headers) });
    }
  }
  return out;
}

function contentIdOf(headers: Record<string, string>): { contentId?: string } {
  return headers['content-id'] === undefined ? {} : { contentId: headers['content-id'] };
}

function boundaryOf(contentType: string): string | undefined {
  const m = /boundary=(?:"([^"]+)"|([^;\s]+))/i.exec(contentType);
  return m ? (m[1] ?? m[2]) : undefined;
}

/** The parts between `--boundary` delimiters, up to `--boundary--`. */
function splitMultipart(body: string, boundary: string): string[] {
  const text = body.replaceAll('\r\n', '\n');
  const delimiter = `--${boundary}`;
  const parts: string[] = [];
  let pos = text.indexOf(delimiter);
  while (pos >= 0) {
    const afterDelim = pos + delimiter.length;
    if (text.startsWith('--', afterDelim)) break;
    const start = text.indexOf('\n', afterDelim);
    if (start < 0) break;
    const next = text.indexOf(`\n${delimiter}`, start);
    const end = next < 0 ? text.length : next;
    parts.push(text.slice(start + 1, end));
    pos = next < 0 ? -1 : next + 1;
  }
  return parts;
}

function splitHeaders(text: string): { headers: Record<string, string>; rest: string } {
  const headers: Record<string, string> = {};
  let i = 0;
  for (;;) {
    const eol = text.indexOf('\n', i);
    const line = eol < 0 ? text.slice(i) : text.slice(i, eol);
    i = eol < 0 ? text.length : eol + 1;
    if (line.trim() === '') break;
    const colon = line.indexOf(':');
    if (colon > 0) headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
    if (eol < 0) break;
  }
  return { headers, rest: text.slice(i) };
}

function parseHttpMessage(text: string): {
  status: number;
  statusText: string;
  headers: Record<string, string>;
  body: string;
} {
  const trimmed = text.replace(/^\n+/, '');
  const eol = trimmed.indexOf('\n');
  const statusLine = eol < 0 ? trimmed : trimmed.slice(0, eol);
  const m = /^HTTP\/\d(?:\.\d)?\s+(\d{3})\s*(.*)$/.exec(statusLine.trim());
  if (!m) {
    throw new FerryError(
      'dataverse.batch_response',
      `A \`$batch\` response part starts with \`${statusLine.slice(0, 80)}\`, not an HTTP status line.`,
    );
  }
  const { headers, rest } = splitHeaders(eol < 0 ? '' : trimmed.slice(eol + 1));
  return { status: Number(m[1]), statusText: m[2] ?? '', headers, body: rest.trim() };
}
