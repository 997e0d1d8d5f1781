import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { type EmulatorOptions, type RunningEmulator, startEmulator } from '../../src/emulator/server.js';

/** The emulator tests' own small snapshots (the shared fixtures may still change). */
export const FIXTURE_METADATA = path.join(path.dirname(fileURLToPath(import.meta.url)), 'fixtures', 'metadata');

/** Headers a Web API client sends on every request (reference §9). */
export const ODATA_HEADERS = {
  'OData-MaxVersion': '4.0',
  'OData-Version': '4.0',
  Accept: 'application/json',
  'Content-Type': 'application/json; charset=utf-8',
  'If-None-Match': 'null',
};

/** A started emulator plus a small fetch helper relative to the Web API root. */
export interface Harness {
  readonly emulator: RunningEmulator;
  readonly api: string;
  call(
    method: string,
    relative: string,
    body?: unknown,
    headers?: Record<string, string>,
    // biome-ignore lint/suspicious/noExplicitAny: response JSON is asserted field by field in tests
  ): Promise<{ status: number; headers: Headers; text: string; json: any }>;
  close(): Promise<void>;
}

/** Starts an emulator on an ephemeral loopback port with the test snapshots. */
export async function startHarness(options: Partial<EmulatorOptions> = {}): Promise<Harness> {
  const emulator = await startEmulator({ metadataDir: FIXTURE_METADATA, ...options });
  const api = `${emulator.url}/api/data/v9.2/`;
  return {
    emulator,
    api,
    async call(method, relative, body, headers = {}) {
      const response = await fetch(api + relative, {
        method,
        headers: { ...ODATA_HEADERS, ...headers },
        body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
      });
      const text = await response.text();
      let parsed: unknown;
      try {
        parsed = text ? JSON.parse(text) : undefined;
      } catch {
        parsed = undefined;
      }
      return { status: response.status, headers: response.headers, text, json: parsed };
    },
    close: () => emulator.close(),
  };
}

/** Builds a CRLF `$batch` body from parts; `changeset` groups operations into one change set. */
export function batchBody(
  boundary: string,
  items: Array<string | { changeset: string; parts: string[] }>,
  eol = '\r\n',
): string {
  const lines: string[] = [];
  for (const item of items) {
    lines.push(`--${boundary}`);
    if (typeof item === 'string') {
      lines.push('Content-Type: application/http', 'Content-Transfer-Encoding: binary', '', item);
    } else {
      lines.push(`Content-Type: multipart/mixed; boundary="${item.changeset}"`, '');
      item.parts.forEach((part, i) => {
        lines.push(
          `--${item.changeset}`,
          'Content-Type: application/http',
          'Content-Transfer-Encoding: binary',
          `Content-ID: ${i + 1}`,
          '',
          part,
        );
      });
      lines.push(`--${item.changeset}--`, '');
    }
  }
  lines.push(`--${boundary}--`, '');
  return lines.join(eol);
}

/** One inner request of a `$batch` part: request line, headers, blank line, body. */
export function httpRequest(method: string, url: string, body?: unknown): string {
  if (body === undefined) return `${method} ${url} HTTP/1.1\r\n\r\n`;
  return `${method} ${url} HTTP/1.1\r\nContent-Type: application/json; type=entry\r\n\r\n${JSON.stringify(body)}`;
}

/** Splits a multipart response body into its `application/http` parts (status line, headers, body). */
export function responseParts(
  text: string,
): Array<{ status: number; headers: Record<string, string>; body: string; contentId?: string }> {
  const out: Array<{ status: number; headers: Record<string, string>; body: string; contentId?: string }> = [];
  const re =
    /Content-Type: application\/http\r\nContent-Transfer-Encoding: binary\r\n(?:Content-ID: (\d+)\r\n)?\r\nHTTP\/1\.1 (\d{3})[^\r]*\r\n([\s\S]*?)\r\n\r\n([\s\S]*?)\r\n--/g;
  for (let m = re.exec(text); m; m = re.exec(text)) {
    const headers: Record<string, string> = {};
    for (const line of m[3].split('\r\n')) {
      const colon = line.indexOf(':');
      if (colon > 0) headers[line.slice(0, colon).toLowerCase()] = line.slice(colon + 1).trim();
    }
    out.push({ status: Number(m[2]), headers, body: m[4], contentId: m[1] });
  }
  return out;
}
