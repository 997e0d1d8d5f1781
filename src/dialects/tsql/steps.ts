import { type CloseSqlFunctions, closeSteps } from '../close-steps.js';
import {
  COPY_SKIPPED_MESSAGE,
  KEYMAP_CURSOR_PIPELINE,
  keymapCursorSource,
  keymapFullPendingPrefix,
  keymapFullSource,
  keymapPendingPrefix,
  lookupCheckTable,
  type RawColumn,
  type SqlStep,
  type StepParameter,
  type StepRenderer,
  type SynapseStepPlan,
} from '../sql-steps.js';
import { tsqlConversion, tsqlDialect } from './conversion.js';
import { compileExtract } from './extract.js';
import { tsqlRecoverySteps } from './recovery-steps.js';
import { STATE_SCHEMA, saveCursorSql, stateSchemaStatements, tsqlIdent, tsqlLiteral, tsqlTable } from './staging.js';

/**
 * T-SQL renderings of the Synapse export's SQL steps (Azure SQL and serverless SQL). A parameter marked `script` is
 * the Script activity's `@name`; any other is its pipeline expression interpolated into the text (`@{...}`), which
 * the pipeline engine evaluates before the text reaches the server.
 */
export const tsqlSteps: StepRenderer = {
  dialect: 'tsql',
  render: (step) => renderTsql(step as SqlStep<SynapseStepPlan>),
};

/** `@{expression}` of a parameter (its expression without the leading `@`). */
function interpolated(step: SqlStep, name: string): string {
  const p = parameter(step, name);
  if (p.script) return `@${p.name}`;
  return `@{${p.expression.replace(/^@/, '')}}`;
}

function parameter(step: SqlStep, name: string): StepParameter {
  const p = step.parameters.find((x) => x.name === name);
  if (!p) throw new Error(`SQL step \`${step.id}\` has no parameter \`${name}\`.`);
  return p;
}

const NOW = 'CONVERT(NVARCHAR(40), SYSUTCDATETIME(), 127)';

function renderTsql(step: SqlStep<SynapseStepPlan>): string[] {
  const plan = step.plan;
  const v = (name: string) => interpolated(step, name);
  switch (plan.kind) {
    case 'state-schema':
      return stateSchemaStatements(plan.schema);
    case 'begin-run':
      return [
        `INSERT INTO ${tsqlTable(STATE_SCHEMA, 'runs')} ([id], [pipeline], [mode], [status], [window_json], [started_at], [counts_json], [holder]) ` +
          `VALUES (N'${v('run_id')}', ${tsqlLiteral(plan.pipeline)}, N'${v('mode')}', N'running', ` +
          `N'{"windowStart":"${v('window_start')}","windowEnd":"${v('window_end')}"}', ${NOW}, N'{}', N'synapse:${v('data_factory')}')`,
        ...plan.dropTables.map((t) => `DROP TABLE IF EXISTS ${tsqlIdent(t)}`),
      ];
    case 'read-cursor':
      return [
        `SELECT COALESCE(MAX([value]), ${tsqlLiteral(plan.fallback)}) AS [cursor_value] FROM ${tsqlTable(STATE_SCHEMA, 'cursors')} WHERE [pipeline] = ${tsqlLiteral(plan.pipeline)} AND [source] = ${tsqlLiteral(plan.source)}`,
      ];
    case 'truncate-table':
      return [
        `IF OBJECT_ID(N'${plan.schema}.${plan.table}', N'U') IS NULL CREATE TABLE ${tsqlTable(plan.schema, plan.table)} (${plan.columns.map((c) => `${tsqlIdent(c.name)} ${tsqlRawType(c)} NULL`).join(', ')})`,
        `TRUNCATE TABLE ${tsqlTable(plan.schema, plan.table)}`,
      ];
    case 'finish-run': {
      const ratio = plan.maxRejectedRatio;
      const cap = plan.maxRejected;
      // The cursor moves only within the threshold and never for backfills: the condition sits in MERGE's source.
      const saveCursor = saveCursorSql()
        .replace('@pipeline AS', `${tsqlLiteral(plan.pipeline)} AS`)
        .replace('@source AS', `${tsqlLiteral(plan.source)} AS`)
        .replace('@value AS', `N'${v('cursor')}' AS`)
        .replace('@run_id AS', `N'${v('run_id')}' AS`)
        .replace(') AS src', ` WHERE @over = 0 AND N'${v('mode')}' <> N'backfill') AS src`);
      const runs = tsqlTable(STATE_SCHEMA, 'runs');
      const rejects = tsqlTable(STATE_SCHEMA, 'rejects');
      const skipped = plan.copySkipped
        ? [
            `INSERT INTO ${rejects} ([run_id], [pipeline], [stage], [reason], [message], [created_at]) SELECT N'${v('run_id')}', ${tsqlLiteral(plan.pipeline)}, N'upsert-dataverse', N'dataverse.copy_skipped', CONCAT(${tsqlLiteral(COPY_SKIPPED_MESSAGE[0])}, ${v('rows_skipped')}, ${tsqlLiteral(COPY_SKIPPED_MESSAGE[1].replace('{folder}', plan.copySkipped.errorsFolder))}), ${NOW} WHERE ${v('rows_skipped')} > 0`,
          ]
        : [];
      return [
        ...skipped,
        `DECLARE @rows BIGINT = ${plan.rowsWritten ? v('rows') : '0'}`,
        `DECLARE @rejected BIGINT = (SELECT COUNT(*) FROM ${rejects} WHERE [run_id] = N'${v('run_id')}')`,
        `DECLARE @over BIT = CASE WHEN @rejected > ${ratio} * (@rows + @rejected)${cap === undefined ? '' : ` OR @rejected > ${cap}`} THEN 1 ELSE 0 END`,
        `UPDATE ${runs} SET [status] = CASE WHEN @over = 1 THEN N'rejects_exceeded' ELSE N'succeeded' END, [finished_at] = ${NOW}, [counts_json] = CONCAT(N'{"written":', @rows, N',"rejected":', @rejected, N'}') WHERE [id] = N'${v('run_id')}'`,
        saveCursor,
        // The pipeline fails through a Fail activity on this result (readable in monitoring; exit code 3 locally).
        `SELECT CAST(@over AS INT) AS [over_threshold], @rejected AS [rejected], @rows AS [written]`,
      ];
    }
    case 'mark-failed':
      return [
        `UPDATE ${tsqlTable(STATE_SCHEMA, 'runs')} SET [status] = N'failed', [finished_at] = ${NOW}, [error_json] = N'{"code":"synapse.activity_failed","message":"${plan.failedActivity} failed; see the activity run in Synapse Studio. The cursor did not move, so the next run repeats the window."}' WHERE [id] = N'${v('run_id')}'`,
      ];
    case 'convert':
    case 'sink-query':
    case 'save-versions':
      return tsqlConversion.compileSynapseStep(plan.kind, plan.conversion);
    case 'extract':
      return compileExtract(plan.extract);
    // The replay and housekeeping pipelines' steps (recovery-steps.ts).
    case 'replay-pending':
    case 'replay-begin':
    case 'replay-convert':
    case 'replay-finish':
    case 'replay-failed':
    case 'staging-in-use':
    case 'drop-tables':
    case 'expire-state':
    case 'record-run-window':
    case 'unpublished-run-folders':
    case 'drop-run-tables':
      return tsqlRecoverySteps({ ...step, plan });
    // State columns of new records.
    case 'state-sink-query':
      return [tsqlConversion.compileStateColumns(plan.conversion, plan.messageOnlyStates).sinkQuery];
    // Won/lost: close messages after the rows are written.
    case 'close-messages':
      return closeSteps(plan, tsqlDialect, tsqlClose);
    case 'keymap-since':
    case 'resolve-deferred':
    case 'deferred-sink-query':
    case 'select-new-files':
    case 'record-processed-files':
      return renderInboundTsql(step, plan);
    // Multi-select columns, written by Web activities.
    case 'multiselect-chunks':
    case 'multiselect-chunk':
      return renderMultiSelectTsql(step, plan);
    // Lookup targets deleted in Dataverse.
    case 'lookup-target-chunks': {
      const seen = `${plan.conversion.names.sink.table}_seen_${plan.table}`;
      const { check, chunks } = tsqlConversion.compileLookupCheck(plan.conversion, plan.table, plan.chunkSize);
      return [
        ...renderTsql({
          ...step,
          plan: { kind: 'truncate-table', schema: 'dbo', table: seen, columns: plan.seenColumns },
        }),
        ...check,
        chunks,
      ];
    }
    case 'lookup-target-chunk': {
      const check = lookupCheckTable(plan.conversion.names, plan.table);
      // NVARCHAR(MAX) before STRING_AGG: without it the result is cut at 8,000 bytes.
      return [
        `SELECT STRING_AGG(CONVERT(NVARCHAR(MAX), CONCAT(N'<value>', CONVERT(NVARCHAR(36), [id]), N'</value>')), N'') AS [ids] FROM ${check.schema ? tsqlTable(check.schema, check.table) : tsqlIdent(check.table)} WHERE [chunk] = ${v('chunk')}`,
      ];
    }
    case 'apply-lookup-check':
      return tsqlConversion.compileLookupCheckApply(plan.conversion);
    case 'run-since':
      return [
        `SELECT CONVERT(NVARCHAR(19), DATEADD(MINUTE, ${-Math.trunc(plan.overlapMinutes)}, SYSUTCDATETIME()), 126) + N'Z' AS [run_since]`,
      ];
  }
}

// Multi-select columns, written by Web activities.
function renderMultiSelectTsql(
  step: SqlStep,
  plan: Extract<SynapseStepPlan, { kind: 'multiselect-chunks' | 'multiselect-chunk' }>,
): string[] {
  const chunks = tsqlTable(plan.chunks.schema, plan.chunks.table);
  if (plan.kind === 'multiselect-chunk')
    return [`SELECT [body] FROM ${chunks} WHERE [chunk] = ${interpolated(step, 'chunk')}`];
  const { plan: conversion, names } = plan.conversion;
  const rows = tsqlTable(plan.chunks.schema, `${plan.chunks.table}_rows`);
  const cols = plan.columns.map((c) => `s.${tsqlIdent(c)}`);
  // FOR JSON PATH writes the targets in column order; with INCLUDE_NULL_VALUES a null column is `null` (clear),
  // without it the column is left out (omit).
  const targets = `(SELECT ${tsqlLiteral(`Microsoft.Dynamics.CRM.${conversion.table}`)} AS [@odata.type], CONCAT(${tsqlLiteral(`${conversion.entitySetName}(`)}, r.[__key_predicate], N')') AS [@odata.id], ${plan.columns.map((c) => `r.${tsqlIdent(c)} AS ${tsqlIdent(c)}`).join(', ')} FROM ${rows} AS r WHERE r.[__chunk] = c.[chunk] ORDER BY r.[__row_id] FOR JSON PATH, ${plan.includeNulls ? 'INCLUDE_NULL_VALUES, ' : ''}ROOT('Targets'))`;
  const size = Math.trunc(plan.chunkRows);
  const max = Math.trunc(plan.maxChunks);
  // More rows than maxChunks chunks hold: larger chunks, never more than maxChunks.
  const rowsPerChunk = `CASE WHEN COUNT(*) OVER () > ${size * max} THEN (COUNT(*) OVER () + ${max - 1}) / ${max} ELSE ${size} END`;
  return [
    `DROP TABLE IF EXISTS ${rows}`,
    `SELECT s.[__row_id], w.[__key_predicate], ${cols.join(', ')}, (ROW_NUMBER() OVER (ORDER BY s.[__row_id]) - 1) / (${rowsPerChunk}) + 1 AS [__chunk] INTO ${rows} FROM ${tsqlTable(names.sink.schema, names.sink.table)} AS s INNER JOIN ${tsqlTable(names.work.schema, names.work.table)} AS w ON w.[__row_id] = s.[__row_id]${plan.includeNulls ? '' : ` WHERE ${cols.map((c) => `${c} IS NOT NULL`).join(' OR ')}`}`,
    `DROP TABLE IF EXISTS ${chunks}`,
    `SELECT c.[chunk], ${targets} AS [body] INTO ${chunks} FROM (SELECT DISTINCT [__chunk] AS [chunk] FROM ${rows}) AS c`,
    // The chunk numbers as a JSON array: an ordered FOR JSON list, unwrapped (`[{"chunk":1}]` → `[1]`).
    `SELECT COALESCE(REPLACE(REPLACE((SELECT [chunk] FROM ${chunks} ORDER BY [chunk] FOR JSON PATH), N'{"chunk":', N''), N'}', N''), N'[]') AS [chunks]`,
  ];
}

// Inbound key maps, processed files and same-window lookups.
function renderInboundTsql(
  step: SqlStep,
  plan: Extract<
    SynapseStepPlan,
    {
      kind: 'keymap-since' | 'resolve-deferred' | 'deferred-sink-query' | 'select-new-files' | 'record-processed-files';
    }
  >,
): string[] {
  const v = (name: string) => interpolated(step, name);
  const cursors = tsqlTable(STATE_SCHEMA, 'cursors');
  const processed = tsqlTable(STATE_SCHEMA, 'processed_items');
  const iso = (t: string) => `CONVERT(NVARCHAR(19), ${t}, 126) + N'Z'`;
  const files = () => `(SELECT DISTINCT JSON_VALUE(j.[value], '$.name') AS [name] FROM OPENJSON(${v('files')}) AS j)`;
  switch (plan.kind) {
    case 'keymap-since': {
      const upsert = (source: string, value: string) =>
        saveCursorSql()
          .replace('@pipeline AS', `${tsqlLiteral(KEYMAP_CURSOR_PIPELINE)} AS`)
          .replace('@source AS', `${tsqlLiteral(source)} AS`)
          .replace('@value AS', `${value} AS`)
          .replace('@run_id AS', `N'${v('run_id')}' AS`);
      const cursor = (source: string) =>
        `(SELECT MAX([value]) FROM ${cursors} WHERE [pipeline] = ${tsqlLiteral(KEYMAP_CURSOR_PIPELINE)} AND [source] = ${tsqlLiteral(source)})`;
      const fullPending = `${keymapFullPendingPrefix(plan.table)}${plan.pipeline}`;
      const full = `${cursor(keymapCursorSource(plan.table))} IS NULL OR NOT EXISTS (SELECT 1 FROM ${tsqlTable(STATE_SCHEMA, 'keymap')} WHERE [entity_set] = ${tsqlLiteral(plan.entitySet)}) OR ISNULL(${cursor(keymapFullSource(plan.table))}, N'') < CONVERT(NVARCHAR(40), DATEADD(HOUR, ${-Math.trunc(plan.fullEveryHours)}, SYSUTCDATETIME()), 127)`;
      const back = -Math.trunc(plan.overlapMinutes);
      return [
        upsert(`${keymapPendingPrefix(plan.table)}${plan.pipeline}`, NOW),
        upsert(fullPending, `CASE WHEN ${full} THEN N'1' ELSE N'0' END`),
        `SELECT CASE WHEN ${cursor(fullPending)} = N'1' THEN N'1900-01-01T00:00:00Z' ELSE ${iso(`DATEADD(MINUTE, ${back}, CAST(${cursor(keymapCursorSource(plan.table))} AS DATETIME2))`)} END AS [since], ${iso(`DATEADD(MINUTE, ${back}, SYSUTCDATETIME())`)} AS [run_since]`,
      ];
    }
    case 'resolve-deferred':
      return tsqlConversion.compileDeferredLookups(plan.conversion).resolve;
    case 'deferred-sink-query':
      return [tsqlConversion.compileDeferredLookups(plan.conversion).sinkQuery];
    case 'select-new-files':
      // A run with a window takes every listed file again (the local runner reprocesses a range).
      return [
        `SELECT TOP (${Math.trunc(plan.limit)}) f.[name] FROM ${files()} AS f WHERE ISNULL(${v('window_start')}, N'') <> N'' OR NOT EXISTS (SELECT 1 FROM ${processed} AS i WHERE i.[pipeline] = ${tsqlLiteral(plan.pipeline)} AND i.[source] = ${tsqlLiteral(plan.source)} AND i.[item_id] = CONCAT(${tsqlLiteral(`${plan.folder}/`)}, f.[name])) ORDER BY f.[name]`,
      ];
    case 'record-processed-files':
      return [
        `MERGE INTO ${processed} WITH (HOLDLOCK) AS tgt USING (SELECT ${tsqlLiteral(plan.pipeline)} AS [pipeline], ${tsqlLiteral(plan.source)} AS [source], CONCAT(${tsqlLiteral(`${plan.folder}/`)}, f.[name]) AS [item_id] FROM ${files()} AS f WHERE f.[name] IS NOT NULL) AS src ON tgt.[pipeline] = src.[pipeline] AND tgt.[source] = src.[source] AND tgt.[item_id] = src.[item_id] WHEN MATCHED THEN UPDATE SET tgt.[run_id] = ${v('run_id')}, tgt.[processed_at] = ${NOW} WHEN NOT MATCHED BY TARGET THEN INSERT ([pipeline], [source], [item_id], [run_id], [processed_at]) VALUES (src.[pipeline], src.[source], src.[item_id], ${v('run_id')}, ${NOW});`,
      ];
  }
}

function tsqlRawType(c: RawColumn): string {
  switch (c.type) {
    case 'text':
      return 'NVARCHAR(4000)';
    case 'uuid':
      return 'UNIQUEIDENTIFIER';
    case 'bigint':
      return 'BIGINT';
    case 'decimal':
      return 'DECIMAL(38,10)';
    case 'double':
      return 'FLOAT';
    case 'timestamp':
      return 'DATETIME2';
    case 'boolean':
      return 'BIT';
  }
}

// Won/lost: close messages after the rows are written.
const tsqlClose: CloseSqlFunctions = {
  jsonString: (expr) => `N'"' + STRING_ESCAPE(${expr}, 'json') + N'"'`,
  int: (expr) => `CONVERT(INT, ${expr})`,
  types: { bigint: 'BIGINT', int: 'INT', text: 'NVARCHAR(100)' },
  refusal: (error) => {
    const at = `CHARINDEX(N'{"error"', ${error})`;
    const statusAt = `CHARINDEX(N'Response status code: ''', ${error})`;
    const status = `SUBSTRING(${error}, ${statusAt} + 23, 3)`;
    return `CROSS APPLY (SELECT CASE WHEN ${at} > 0 THEN SUBSTRING(${error}, ${at}, 4000) END AS [detail]) AS x CROSS APPLY (SELECT CASE WHEN ISJSON(x.[detail]) = 1 THEN JSON_VALUE(x.[detail], '$.error.code') END AS [code], CASE WHEN ISJSON(x.[detail]) = 1 THEN JSON_VALUE(x.[detail], '$.error.message') END AS [message], CASE WHEN ${statusAt} > 0 AND ${status} LIKE N'[0-9][0-9][0-9]' THEN ${status} END AS [status]) AS e`;
  },
};
