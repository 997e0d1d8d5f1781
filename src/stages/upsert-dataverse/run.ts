import { BulkWriter, type BulkWriterOptions, type WriteRow } from '../../connectors/dataverse/bulk-writer.js';
import { closeRecords, type PendingClose, splitClose } from '../../connectors/dataverse/close-records.js';
import { DataverseClient } from '../../connectors/dataverse/dataverse-client.js';
import { CLOSE_MESSAGES } from '../../core/close-messages.js';
import { FerryError } from '../../core/errors.js';
import type { StageContext, StageImpl } from '../../core/stage.js';
import type { DataverseTarget } from '../../core/stage-handoff.js';
import { STAGING_TABLES } from '../../core/staging-contract.js';
import { UPSERT_DATAVERSE, type UpsertDataverseSpec } from './spec.js';
import { writerTableOf } from './writer-table.js';

interface ConvertedRow {
  __row_id: bigint | number;
  __key: string;
  __key_predicate: string;
  __key_safe: boolean;
  __payload: string;
  __source_file: string | null;
  __row_number: bigint | number | null;
}

/** The code of `upsert-dataverse`. */
export const upsertDataverseStage: StageImpl<UpsertDataverseSpec> = {
  kind: UPSERT_DATAVERSE,
  async run(spec, ctx) {
    const endpoint = ctx.services.dataverse;
    if (!endpoint) {
      throw new FerryError(
        'dataverse.no_endpoint',
        `Stage upsert-dataverse of \`${ctx.pipeline.name}\` has no Dataverse to write to; pass --dataverse <url> (or FERRY_DATAVERSE_URL), or run without it to use the built-in emulator.`,
      );
    }
    const converted = ctx.handoff.converted;
    if (!converted) {
      throw new FerryError(
        'upsert.nothing_converted',
        `Stage upsert-dataverse of \`${ctx.pipeline.name}\` found no converted rows; put convertToDataverse before it in the pipeline.`,
      );
    }
    if (converted.target.table !== spec.table) {
      throw new FerryError(
        'upsert.table_mismatch',
        `Stage upsert-dataverse of \`${ctx.pipeline.name}\` writes \`${spec.table}\`, but the rows were converted for \`${converted.target.table}\`; name the same table in both stages.`,
      );
    }
    const table = writerTableOf(converted.target);
    const client = new DataverseClient({
      url: endpoint.url,
      ...(endpoint.getToken ? { getToken: endpoint.getToken } : {}),
      timeoutMs: spec.timeoutMs,
      ...(spec.bypass ? { bypass: spec.bypass } : {}),
      log: ctx.log,
      signal: ctx.signal,
    });
    // An identity pool: one client per application user, each with its own budget (see BulkWriter).
    const identities = endpoint.identities?.map(
      (identity) =>
        new DataverseClient({
          url: endpoint.url,
          identity: identity.name,
          ...(identity.getToken ? { getToken: identity.getToken } : {}),
          timeoutMs: spec.timeoutMs,
          ...(spec.bypass ? { bypass: spec.bypass } : {}),
          log: ctx.log,
          signal: ctx.signal,
        }),
    );
    // Only the keys Dataverse refused come back into staging: `upserted` is `converted` without them.
    const refused: string[] = [];
    let accepted = 0;
    const options: BulkWriterOptions = {
      client: identities?.[0] ?? client,
      ...(identities && identities.length > 0 ? { identities } : {}),
      table,
      mode: spec.mode,
      batchSize: spec.batchSize,
      maxConcurrency: spec.maxConcurrency,
      timeoutMs: spec.timeoutMs,
      signal: ctx.signal,
      log: ctx.log,
      onUpserted: (rows) => {
        accepted += rows.length;
        ctx.counts.upserted += rows.length;
        ctx.progress.update('upserting', ctx.counts);
      },
      onRejected: (rejects) => {
        for (const r of rejects) if (typeof r.key === 'string') refused.push(r.key);
        ctx.reject(rejects);
      },
    };
    const writer = new BulkWriter(options);
    // Rows to close (Won/Lost opportunities) are upserted open first, then closed through their message.
    const closes: PendingClose[] = [];
    const rows = CLOSE_MESSAGES[spec.table]
      ? openRows(convertedRows(ctx, converted.relation), spec.table, closes)
      : convertedRows(ctx, converted.relation);
    const result = await writer.write(rows);
    Object.assign(ctx.metrics, result.metrics);
    if (closes.length > 0) accepted -= await closeUpserted(ctx, client, converted.target, closes, refused);
    await recordUpserted(ctx, converted.relation, refused, accepted);
    ctx.log.info(`Upserted ${result.upserted} and rejected ${result.rejected} rows of \`${spec.table}\``, {
      mode: result.mode,
      requests: result.metrics.requests,
      rowsPerSec: result.metrics.rowsPerSec,
    });
  },
};

/**
 * Streams `converted` as writer rows, in the table's own order (file then row: the staging keeps insertion order).
 * Not `ORDER BY __row_id`: the sort held every payload of the window in the staging engine's memory (~440 MiB more
 * peak RSS at 1 M rows), and `converted` holds one row per key, so no two rows of a key can pass each other.
 */
async function* convertedRows(ctx: StageContext, relation: string): AsyncGenerator<WriteRow[]> {
  const sql = `SELECT __row_id, __key, __key_predicate, __key_safe, __payload, __source_file, __row_number FROM ${relation}`;
  for await (const chunk of ctx.staging.stream<ConvertedRow & Record<string, unknown>>(sql)) {
    yield chunk.map((r) => ({
      rowId: r.__row_id,
      key: r.__key,
      keyPredicate: r.__key_predicate,
      keySafe: r.__key_safe !== false,
      payload: r.__payload,
      sourceFile: r.__source_file,
      rowNumber: r.__row_number === null ? null : Number(r.__row_number),
    }));
  }
}

/** Passes rows through, taking the state columns off rows that must be closed by a message (`closes` collects them). */
async function* openRows(
  source: AsyncGenerator<WriteRow[]>,
  table: string,
  closes: PendingClose[],
): AsyncGenerator<WriteRow[]> {
  for await (const chunk of source) {
    yield chunk.map((row) => {
      const split = splitClose(table, row);
      if (!split) return row;
      closes.push(split.close);
      return split.open;
    });
  }
}

/**
 * Closes the rows that were upserted open. A row the service refuses to close is rejected (and no longer counted
 * as upserted), so its version is not recorded as applied and the next run or a replay sends it again. Returns how
 * many were refused; their keys join `refused`.
 */
async function closeUpserted(
  ctx: StageContext,
  client: DataverseClient,
  target: DataverseTarget,
  closes: readonly PendingClose[],
  refused: string[],
): Promise<number> {
  const notUpserted = new Set(refused);
  const defaultStatus = new Map(target.stateDefaults.map((d) => [d.state, d.status]));
  const result = await closeRecords(
    closes.filter((c) => !notUpserted.has(c.row.key)),
    { client, table: writerTableOf(target), defaultStatus, log: ctx.log },
  );
  if (result.rejects.length === 0) return 0;
  const keys = new Set(result.rejects.map((r) => r.row.key));
  for (const key of keys) refused.push(key);
  ctx.counts.upserted -= keys.size;
  ctx.reject(result.rejects.map((r) => r.reject));
  return keys.size;
}

/**
 * Hands over the rows Dataverse accepted as `upserted` (read by the conversion stage's commit hook): every
 * converted row but the refused ones, derived set-based in staging. Every converted row was either accepted or
 * refused (a stop or a failure throws before this), so its count must equal the accepted count.
 */
async function recordUpserted(
  ctx: StageContext,
  converted: string,
  refused: readonly string[],
  accepted: number,
): Promise<void> {
  const upserted = STAGING_TABLES.upserted;
  await ctx.staging.run('CREATE OR REPLACE TEMP TABLE __upsert_refused (__key VARCHAR)');
  for (let i = 0; i < refused.length; i += 1000) {
    const chunk = refused.slice(i, i + 1000);
    await ctx.staging.run(`INSERT INTO __upsert_refused VALUES ${chunk.map(() => '(?)').join(',')}`, chunk);
  }
  await ctx.staging.run(
    `CREATE OR REPLACE TABLE ${upserted} AS SELECT __row_id FROM ${converted} WHERE __key NOT IN (SELECT __key FROM __upsert_refused)`,
  );
  const [row] = await ctx.staging.all<{ n: bigint | number }>(`SELECT count(*) AS n FROM ${upserted}`);
  const rows = Number(row?.n ?? 0);
  if (rows !== accepted) {
    throw new FerryError(
      'upsert.accepted_mismatch',
      `Dataverse accepted ${accepted} rows of \`${ctx.pipeline.name}\`, but ${rows} converted rows were not refused; the applied versions cannot be recorded. Run again (upserts by key are idempotent) and report this.`,
    );
  }
  ctx.handoff.upserted = { relation: upserted, rows };
}
