import assert from 'node:assert/strict';
import { cp, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer, request as httpRequest, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import type { WriteRow } from '../../src/connectors/dataverse/bulk-writer.js';
import type { StageHandoff } from '../../src/core/stage-handoff.js';
import { type EmulatorOptions, type RunningEmulator, startEmulator } from '../../src/emulator/server.js';
import { dataverseTargetOf, loadPlanAndTable } from '../../src/stages/convert-to-dataverse/conversion.js';

export const FIXTURES = path.resolve('fixtures/metadata');

/** A copy of the shared metadata fixtures in a temp dir, with optional edits per table. */
export async function metadataCopy(
  edit: Record<string, (table: Record<string, unknown>) => void> = {},
): Promise<{ dir: string; cleanup: () => Promise<void> }> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'ferry-dv-meta-'));
  await cp(FIXTURES, dir, { recursive: true });
  for (const [table, fn] of Object.entries(edit)) {
    const file = path.join(dir, `${table}.json`);
    const json = JSON.parse(await readFile(file, 'utf8')) as Record<string, unknown>;
    fn(json);
    await writeFile(file, JSON.stringify(json, null, 2));
  }
  return { dir, cleanup: () => rm(dir, { recursive: true, force: true }) };
}

export function emulator(options: Partial<EmulatorOptions> = {}): Promise<RunningEmulator> {
  return startEmulator({ port: 0, metadataDir: FIXTURES, ...options });
}

/** An account row to write, keyed by `accountnumber`. */
export function accountRow(
  rowId: number,
  accountnumber: string,
  payload: Record<string, unknown>,
  keySafe = true,
): WriteRow {
  return {
    rowId,
    key: `accountnumber=${accountnumber}`,
    keyPredicate: `accountnumber='${accountnumber.replaceAll("'", "''")}'`,
    keySafe,
    payload: JSON.stringify(payload),
    sourceFile: 'inbound/accounts/part-1.parquet',
    rowNumber: rowId + 1,
  };
}

export async function* chunks(rows: readonly WriteRow[], size = 1000): AsyncGenerator<WriteRow[]> {
  for (let i = 0; i < rows.length; i += size) yield rows.slice(i, i + size);
}

/** Stored accounts by accountnumber. */
export function accountsByNumber(
  emu: RunningEmulator,
): Map<string, { id: string; attributes: Readonly<Record<string, unknown>> }[]> {
  const out = new Map<string, { id: string; attributes: Readonly<Record<string, unknown>> }[]>();
  for (const row of emu.store.rows('account')) {
    const n = String(row.attributes.accountnumber);
    out.set(n, [...(out.get(n) ?? []), row]);
  }
  return out;
}

/** Asserts the emulator holds exactly `count` accounts, each key once (nothing lost, nothing written twice). */
export function assertEachAccountOnce(emu: RunningEmulator, count: number): void {
  const stored = accountsByNumber(emu);
  assert.equal(stored.size, count);
  for (const [, list] of stored) assert.equal(list.length, 1);
}

/**
 * A loopback proxy in front of the emulator that spoils the answer of chosen requests after the emulator has
 * applied them: `reset` destroys the connection, `hang` never answers (the client times out).
 */
export async function faultyProxy(
  target: string,
  spoil: (req: IncomingMessage, index: number) => 'reset' | 'hang' | undefined,
): Promise<{ url: string; spoiled: number; forwarded: number; close: () => Promise<void> }> {
  const upstream = new URL(target);
  let index = 0;
  const state = { url: '', spoiled: 0, forwarded: 0, close: async (): Promise<void> => undefined };
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const action = spoil(req, index++);
      const headers = { ...req.headers, host: upstream.host };
      const up = httpRequest(
        { hostname: upstream.hostname, port: upstream.port, path: req.url, method: req.method, headers },
        (upRes) => {
          const body: Buffer[] = [];
          upRes.on('data', (c: Buffer) => body.push(c));
          upRes.on('end', () => {
            state.forwarded += 1;
            if (action) {
              state.spoiled += 1;
              // The emulator applied the request; the client never learns it.
              if (action === 'reset') req.socket.destroy();
              return;
            }
            res.writeHead(upRes.statusCode ?? 502, upRes.headers);
            res.end(Buffer.concat(body));
          });
        },
      );
      up.on('error', () => res.destroy());
      up.end(Buffer.concat(chunks));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  state.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  state.close = () =>
    new Promise<void>((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    });
  return state;
}

/** What the convert stage hands the upsert stage for `converted` rows of `table` keyed by `key` (from the fixtures). */
export async function convertedHandoff(table: string, key: string): Promise<StageHandoff> {
  const { plan, own } = await loadPlanAndTable(
    { table, key: [key], changeTimestamp: 'changed_at', columns: { [key]: key } },
    FIXTURES,
  );
  return { extracts: [], converted: { relation: 'converted', target: dataverseTargetOf(own, plan) } };
}
