import { type RecoveryStepPlan, type ReplaySelection, replaySourceColumns } from '../recovery-steps.js';
import type { SqlStep, TableName } from '../sql-steps.js';
import { tsqlConversion } from './conversion.js';
import { STATE_SCHEMA, tsqlIdent, tsqlLiteral, tsqlTable } from './staging.js';

/**
 * T-SQL renderings of the recovery steps (replay of rejected rows, housekeeping); see `../recovery-steps.ts` for
 * what each does. Every value a user passes (run id, reason) and every time bound is a Script activity parameter
 * (`@name`), never text interpolated into the statement.
 */
const state = (table: string) => tsqlTable(STATE_SCHEMA, table);
const L = tsqlLiteral;
const t = (n: TableName) => (n.schema ? tsqlTable(n.schema, n.table) : tsqlIdent(n.table));
const NOW = 'CONVERT(NVARCHAR(40), SYSUTCDATETIME(), 127)';

/** The rejects a replay takes (alias `j`), following a run id to the replays that followed it. */
function selected(s: ReplaySelection): { chain: string; where: string } {
  return {
    chain: `WITH replay_chain AS (SELECT r0.[id] AS [id] FROM ${state('runs')} AS r0 WHERE r0.[id] = @replay_of UNION ALL SELECT r.[id] FROM ${state('runs')} AS r INNER JOIN replay_chain AS c ON r.[parent_run_id] = c.[id] WHERE r.[mode] = N'replay')`,
    where:
      `j.[pipeline] = ${L(s.pipeline)} AND j.[status] = N'open' AND j.[stage] = ${L(s.stage)} AND j.[row_json] IS NOT NULL` +
      // An empty Script parameter may arrive as NULL: both mean "every".
      ` AND (ISNULL(@replay_of, N'') = N'' OR j.[run_id] IN (SELECT [id] FROM replay_chain)) AND (ISNULL(@reason, N'') = N'' OR j.[reason] = @reason)` +
      ` AND j.[run_id] NOT IN (SELECT [id] FROM ${state('runs')} WHERE [status] = N'running')`,
  };
}

function reopen(runs: string): string[] {
  return [
    `UPDATE ${state('rejects')} SET [status] = N'open', [resolved_by_run] = NULL WHERE [resolved_by_run] IN (${runs})`,
    `DELETE FROM ${state('rejects')} WHERE [run_id] IN (${runs})`,
  ];
}

export function tsqlRecoverySteps(step: SqlStep<RecoveryStepPlan>): string[] {
  const plan = step.plan;
  switch (plan.kind) {
    case 'replay-pending': {
      const s = selected(plan.selection);
      return [`${s.chain} SELECT COUNT(*) AS [pending] FROM ${state('rejects')} AS j WHERE ${s.where}`];
    }
    case 'replay-begin': {
      const s = selected(plan.selection);
      const { names } = plan.conversion;
      const abandoned = `SELECT [id] FROM ${state('runs')} WHERE [pipeline] = ${L(plan.selection.pipeline)} AND [mode] = N'replay' AND [status] = N'running'`;
      const sources = replaySourceColumns(plan.conversion);
      return [
        ...reopen(abandoned),
        `UPDATE ${state('runs')} SET [status] = N'failed', [finished_at] = ${NOW}, [error_json] = ${L('{"code":"replay.abandoned","message":"The replay was cancelled; the rows it took were opened again for the next replay."}')} WHERE [id] IN (${abandoned})`,
        `INSERT INTO ${state('runs')} ([id], [pipeline], [mode], [status], [window_json], [started_at], [counts_json], [holder], [parent_run_id]) SELECT @run_id, ${L(plan.selection.pipeline)}, N'replay', N'running', (SELECT @replay_of AS [replayOf], @reason AS [reason] FOR JSON PATH, WITHOUT_ARRAY_WRAPPER), ${NOW}, N'{}', CONCAT(N'synapse:', @data_factory), NULLIF(@replay_of, N'')`,
        ...plan.dropTables.map((x) => `DROP TABLE IF EXISTS ${tsqlIdent(x)}`),
        `${s.chain} SELECT j.[id], j.[source_file], j.[row_number], j.[row_json] INTO ${t(plan.claimed)} FROM ${state('rejects')} AS j WHERE ${s.where}`,
        // The source row as text (the T-SQL classification converts every value from text itself), its place kept.
        `SELECT ${sources.map((c) => `v.${tsqlIdent(c)}`).join(', ')}, c.[source_file] AS [__source_file], @run_id AS [__run_id], ROW_NUMBER() OVER (ORDER BY c.[id]) AS [__row_id], c.[row_number] AS [__row_number], c.[id] AS [__reject_id] INTO ${t(names.rows)} FROM ${t(plan.claimed)} AS c CROSS APPLY OPENJSON(c.[row_json]) WITH (${sources.map((c) => `${tsqlIdent(c)} NVARCHAR(MAX) ${L(`$.${JSON.stringify(c)}`)}`).join(', ')}) AS v`,
      ];
    }
    case 'replay-convert': {
      const { plan: conversion, names, keymapTargets } = plan.conversion;
      // Lookups to the pipeline's own table whose target is a replayed row go in the second pass, as in the inbound pipeline.
      const compiled = tsqlConversion.compileSynapse(conversion, names, {
        deferSelfLookups: plan.conversion.deferSelfLookups === true,
      });
      return [
        ...keymapTargets.flatMap((k) => tsqlConversion.keymapRefresh(k, names)),
        ...compiled.classify,
        ...compiled.converted,
        ...compiled.rejects,
        ...compiled.sink,
      ];
    }
    case 'replay-finish': {
      const { names } = plan.conversion;
      const claimed = t(plan.claimed);
      const again = `SELECT c.[id] FROM ${claimed} AS c INNER JOIN ${state('rejects')} AS n ON n.[run_id] = @run_id AND (n.[source_file] = c.[source_file] OR (n.[source_file] IS NULL AND c.[source_file] IS NULL)) AND (n.[row_number] = c.[row_number] OR (n.[row_number] IS NULL AND c.[row_number] IS NULL))`;
      const sent = `SELECT r.[__reject_id] FROM ${t(names.rows)} AS r INNER JOIN ${t(names.sink)} AS s ON s.[__row_id] = r.[__row_id]`;
      const count = (where: string) => `(SELECT COUNT(*) FROM ${state('rejects')} WHERE ${where})`;
      return [
        // One transaction: a replay either settles its rejects or leaves them all as they were.
        'SET XACT_ABORT ON',
        'BEGIN TRANSACTION',
        `INSERT INTO ${state('rejects')} ([run_id], [pipeline], [stage], [reason], [message], [created_at]) SELECT @run_id, ${L(plan.selection.pipeline)}, N'upsert-dataverse', N'dataverse.copy_skipped', CONCAT(N'Dataverse refused ', @rows_skipped, N' replayed rows; the rejects they came from stay open.'), ${NOW} WHERE @rows_skipped > 0`,
        `UPDATE ${state('rejects')} SET [status] = N'superseded', [resolved_by_run] = @run_id WHERE [status] = N'open' AND [id] IN (${again})`,
        `UPDATE ${state('rejects')} SET [status] = N'resolved', [resolved_by_run] = @run_id WHERE [status] = N'open' AND [id] IN (SELECT [id] FROM ${claimed}) AND (@rows_skipped = 0 OR [id] NOT IN (${sent}))`,
        `DECLARE @claimed BIGINT = (SELECT COUNT(*) FROM ${claimed})`,
        `DECLARE @resolved BIGINT = ${count(`[resolved_by_run] = @run_id AND [status] = N'resolved'`)}`,
        `DECLARE @upserted BIGINT = ${count(`[resolved_by_run] = @run_id AND [status] = N'resolved' AND [id] IN (${sent})`)}`,
        `DECLARE @still BIGINT = ${count(`[resolved_by_run] = @run_id AND [status] = N'superseded'`)}`,
        `DECLARE @written BIGINT = (SELECT COUNT(*) FROM ${t(names.sink)})`,
        `DECLARE @rejected BIGINT = ${count('[run_id] = @run_id')}`,
        `UPDATE ${state('runs')} SET [status] = N'succeeded', [finished_at] = ${NOW}, [counts_json] = CONCAT(N'{"written":', @written, N',"rejected":', @rejected, N',"resolved":', @resolved, N',"upserted":', @upserted, N',"stillRejected":', @still, N'}') WHERE [id] = @run_id`,
        'COMMIT TRANSACTION',
        `SELECT @claimed AS [claimed], @resolved AS [resolved], @upserted AS [upserted], @still AS [still_rejected]`,
      ];
    }
    case 'replay-failed':
      return [
        ...reopen('@run_id'),
        `UPDATE ${state('runs')} SET [status] = N'failed', [finished_at] = ${NOW}, [error_json] = ${L('{"code":"synapse.activity_failed","message":"An activity of this replay failed; see the activity run in Synapse Studio. The rows it took are still open: replay again."}')} WHERE [id] = @run_id`,
      ];
    case 'staging-in-use':
      return [
        `SELECT ${plan.groups
          .map(
            (g) =>
              `CASE WHEN EXISTS (SELECT 1 FROM ${state('runs')} WHERE [pipeline] IN (${g.pipelines.map(L).join(', ')}) AND [status] = N'running' AND [started_at] >= @stale_before) THEN 1 ELSE 0 END AS ${tsqlIdent(`busy_${g.name}`)}`,
          )
          .join(', ')}`,
      ];
    case 'drop-tables':
      return [
        ...plan.views.map((x) => `DROP VIEW IF EXISTS ${tsqlIdent(x)}`),
        ...plan.tables.map((x) => `DROP TABLE IF EXISTS ${tsqlIdent(x)}`),
      ];
    case 'record-run-window':
      return [
        `UPDATE ${state('runs')} SET [window_json] = JSON_MODIFY(COALESCE([window_json], N'{}'), '$.windowName', @window_name) WHERE [id] = @run_id`,
      ];
    case 'unpublished-run-folders': {
      const parts = plan.pipelines.flatMap((p) =>
        p.outputs.flatMap((o) =>
          o.roots.map(
            (root) =>
              `SELECT r.[id] AS [run_id], CONCAT(${L(`${root}/`)}, r.[window_name], N'/', r.[id]) AS [folder], CONCAT(${L(`${o.manifestRoot}/`)}, r.[window_name], N'/', r.[id]) AS [manifest] FROM (SELECT [id], JSON_VALUE([window_json], '$.windowName') AS [window_name] FROM ${state('runs')} WHERE [pipeline] = ${L(p.pipeline)} AND [status] <> N'succeeded' AND [started_at] < @stale_before) AS r WHERE r.[window_name] IS NOT NULL`,
          ),
        ),
      );
      return [
        parts.length
          ? `SELECT x.[run_id], x.[folder], x.[manifest] FROM (${parts.join(' UNION ALL ')}) AS x ORDER BY x.[run_id], x.[folder]`
          : `SELECT CAST(NULL AS NVARCHAR(100)) AS [run_id], CAST(NULL AS NVARCHAR(400)) AS [folder], CAST(NULL AS NVARCHAR(400)) AS [manifest] WHERE 1 = 0`,
      ];
    }
    case 'drop-run-tables': {
      // The names compileExtract (extract.ts) gives the CETAS of each output.
      const names = plan.outputs.flatMap((o) =>
        [o.output, ...(o.separateDeletes ? [`${o.output}_deletes`] : []), `${o.output}_manifest`].map(
          (n) => `CONCAT(${L(`${n}_`)}, @tag)`,
        ),
      );
      return [
        `DECLARE @tag NVARCHAR(64) = REPLACE(@run_id, N'-', N'')`,
        `DECLARE @drop NVARCHAR(MAX) = COALESCE((SELECT STRING_AGG(CAST(CONCAT(N'DROP EXTERNAL TABLE [ferry_out].', QUOTENAME(t.[name])) AS NVARCHAR(MAX)), N'; ') FROM sys.external_tables AS t WHERE t.[schema_id] = SCHEMA_ID(N'ferry_out') AND t.[name] IN (${names.join(', ')})), N'')`,
        'EXEC(@drop)',
      ];
    }
    case 'expire-state': {
      const rejects = `FROM ${state('rejects')} WHERE [status] <> N'open' AND [created_at] < @rejects_before`;
      const runs = `FROM ${state('runs')} WHERE [status] <> N'running' AND [started_at] < @runs_before AND [id] NOT IN (SELECT [run_id] FROM ${state('rejects')} WHERE [status] = N'open') AND [id] NOT IN (SELECT [run_id] FROM ${state('cursors')})`;
      return [
        `SELECT (SELECT COUNT(*) ${rejects}) AS [rejects_deleted], (SELECT COUNT(*) ${runs}) AS [runs_deleted]`,
        `DELETE ${rejects}`,
        `DELETE ${runs}`,
      ];
    }
  }
}
