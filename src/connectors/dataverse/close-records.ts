import { CLOSE_MESSAGES, closeSubjectPrefix } from '../../core/close-messages.js';
import { FerryError } from '../../core/errors.js';
import type { Logger } from '../../core/log.js';
import type { RejectRecord } from '../../core/rejects.js';
import type { WriteRow, WriterTable } from './bulk-writer.js';
import type { DataverseClient } from './dataverse-client.js';
import { parseServiceError, rejectReasonFor } from './dataverse-errors.js';
import { keyFilter, keySegment, parseKeyPredicate } from './odata-key.js';

// The close messages per table (`CLOSE_MESSAGES`) live in core: the Synapse export sends the same ones.

/** A row upserted open that is to be closed afterwards. */
export interface PendingClose {
  /** The row as converted, state columns included (kept for its reject). */
  readonly row: WriteRow;
  readonly state: number;
  /** The status reason to close with; the state's default status when the row has none. */
  readonly status: number | undefined;
}

/**
 * For a table with close messages and a row whose `statecode` is a closed state: the row to upsert (without
 * `statecode`/`statuscode`, so it is written open or left as it is) and the close that must follow. Otherwise
 * undefined, and the row goes out as it is.
 */
export function splitClose(table: string, row: WriteRow): { open: WriteRow; close: PendingClose } | undefined {
  const rule = CLOSE_MESSAGES[table];
  if (!rule || !row.payload.includes('"statecode"')) return undefined;
  const payload = JSON.parse(row.payload) as Record<string, unknown>;
  const state = payload.statecode;
  if (typeof state !== 'number' || rule.actions[state] === undefined) return undefined;
  const status = typeof payload.statuscode === 'number' ? payload.statuscode : undefined;
  delete payload.statecode;
  delete payload.statuscode;
  return { open: { ...row, payload: JSON.stringify(payload) }, close: { row, state, status } };
}

export interface CloseRecordsOptions {
  readonly client: DataverseClient;
  readonly table: WriterTable;
  /** Default status per state (the metadata's `DefaultStatus`), for rows without a statuscode. */
  readonly defaultStatus: ReadonlyMap<number, number>;
  readonly stage?: string;
  readonly concurrency?: number;
  readonly log?: Logger;
}

export interface CloseResult {
  /** Rows closed now. */
  readonly closed: number;
  /** Rows already in the wanted state and status (a rerun). */
  readonly alreadyClosed: number;
  /** Rows the service refused to close, as rejects. */
  readonly rejects: ReadonlyArray<{ readonly row: WriteRow; readonly reject: RejectRecord }>;
}

/**
 * Closes rows that were just upserted open, one message each: reads the record's state by key; leaves it when it is
 * already in the wanted state and status; reopens it (an update to `statecode` 0, which the service allows) when it
 * is closed the other way; then sends the close message with its activity. A refusal becomes a reject of that row.
 */
export async function closeRecords(
  closes: readonly PendingClose[],
  options: CloseRecordsOptions,
): Promise<CloseResult> {
  const rule = CLOSE_MESSAGES[options.table.logicalName];
  if (!rule || closes.length === 0) return { closed: 0, alreadyClosed: 0, rejects: [] };
  let closed = 0;
  let alreadyClosed = 0;
  const rejects: Array<{ row: WriteRow; reject: RejectRecord }> = [];
  let next = 0;
  const worker = async () => {
    while (next < closes.length) {
      const close = closes[next++]!;
      const outcome = await closeOne(close, rule, options);
      if (outcome === 'closed') closed += 1;
      else if (outcome === 'already') alreadyClosed += 1;
      else rejects.push({ row: close.row, reject: outcome });
    }
  };
  await Promise.all(Array.from({ length: Math.min(options.concurrency ?? 4, closes.length) }, worker));
  options.log?.info(`Closed ${closed} \`${options.table.logicalName}\` rows through their close messages`, {
    alreadyClosed,
    refused: rejects.length,
  });
  return { closed, alreadyClosed, rejects };
}

type Outcome = 'closed' | 'already' | RejectRecord;

async function closeOne(
  close: PendingClose,
  rule: (typeof CLOSE_MESSAGES)[string],
  options: CloseRecordsOptions,
): Promise<Outcome> {
  const { client, table } = options;
  const action = rule.actions[close.state]!;
  const status = close.status ?? options.defaultStatus.get(close.state);
  const select = `$select=${table.primaryId},statecode,statuscode`;
  const path = close.row.keySafe
    ? `${keySegment(table.entitySet, close.row.keyPredicate)}?${select}`
    : `${table.entitySet}?$filter=${encodeURIComponent(keyFilter(parseKeyPredicate(close.row.keyPredicate)))}&${select}`;
  const read = await client.send('GET', path, { returnDataErrors: true });
  if (read.status >= 400) return reject(close, options, read.status, read.body, undefined);
  const body = JSON.parse(read.body) as Record<string, unknown> & { value?: Array<Record<string, unknown>> };
  const current = close.row.keySafe ? body : body.value?.[0];
  if (!current) {
    throw new FerryError(
      'dataverse.close_missing',
      `Row \`${close.row.key}\` of \`${table.logicalName}\` was upserted but cannot be found to close it; check the table's alternate key.`,
    );
  }
  const id = String(current[table.primaryId]);
  if (current.statecode === close.state && (status === undefined || current.statuscode === status)) return 'already';
  if (current.statecode !== 0) {
    // Closed the other way (Won → Lost): the service reopens with a plain update, then closes again.
    const reopen = await client.send('PATCH', `${table.entitySet}(${id})`, {
      body: { statecode: 0 },
      headers: { 'If-Match': '*' },
      returnDataErrors: true,
    });
    if (reopen.status >= 400) return reject(close, options, reopen.status, reopen.body, { statecode: 0 });
  }
  const request = {
    [rule.parameter]: {
      '@odata.type': `Microsoft.Dynamics.CRM.${rule.activity}`,
      subject: `${closeSubjectPrefix(action)}${close.row.key}`,
      [`${table.primaryId}@odata.bind`]: `/${table.entitySet}(${id})`,
    },
    Status: status ?? -1,
  };
  const sent = await client.send('POST', action, { body: request, returnDataErrors: true });
  if (sent.status >= 400) return reject(close, options, sent.status, sent.body, request);
  return 'closed';
}

function reject(
  close: PendingClose,
  options: CloseRecordsOptions,
  status: number,
  body: string,
  requestPayload: unknown,
): RejectRecord {
  const error = parseServiceError(body);
  const row = close.row;
  return {
    stage: options.stage ?? 'upsert-dataverse',
    reason: rejectReasonFor(status, error),
    message: `Dataverse upserted \`${row.key}\` open but refused to close it: ${error?.message ?? `HTTP ${status}`} Fix statecode/statuscode, then replay the row.`,
    key: row.key,
    sourceFile: row.sourceFile ?? null,
    rowNumber: row.rowNumber ?? null,
    row: {
      __row_id: String(row.rowId),
      __key: row.key,
      __key_predicate: row.keyPredicate,
      payload: JSON.parse(row.payload) as unknown,
    },
    requestPayload,
    serviceError: error ?? body.slice(0, 2000),
  };
}
