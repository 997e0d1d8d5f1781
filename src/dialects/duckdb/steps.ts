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
  type StepRenderer,
  type SynapseStepPlan,
} from '../sql-steps.js';
import { duckdbConversion, duckdbDialect } from './conversion.js';
import { duckIdent, duckLiteral } from './driver.js';
import { synapseExtractSql } from './extract.js';
import { duckdbRecoverySteps } from './recovery-steps.js';
import { DUCK_NOW_TEXT, duckTable, stateSchemaStatements } from './staging.js';

/**
 * DuckDB renderings of the Synapse export's SQL steps: what a local runtime runs in place of the exported T-SQL.
 * Every parameter is `$name` (see `src/dialects/sql-steps.ts`); the state tables are in schema `ferry` of the same
 * database, staging tables are one-part names.
 */
export const duckdbSteps: StepRenderer = {
  dialect: 'duckdb',
  render: (step) => renderDuck(step as SqlStep<SynapseStepPlan>),
};

const STATE = 'ferry';
const state = (table: string) => duckTable(STATE, table);
const L = duckLiteral;

function renderDuck(step: SqlStep<SynapseStepPlan>): string[] {
  const plan = step.plan;
  switch (plan.kind) {
    case 'state-schema':
      return stateSchemaStatements(plan.schema);
    case 'begin-run':
      return [
        `INSERT INTO ${state('runs')} (id, pipeline, mode, status, window_json, started_at, counts_json, holder) ` +
          `VALUES ($run_id, ${L(plan.pipeline)}, $mode, 'running', '{"windowStart":"' || $window_start || '","windowEnd":"' || $window_end || '"}', ${DUCK_NOW_TEXT}, '{}', 'synapse:' || $data_factory)`,
        ...plan.dropTables.map((t) => `DROP TABLE IF EXISTS ${duckIdent(t)}`),
      ];
    case 'read-cursor':
      return [
        `SELECT COALESCE(MAX(value), ${L(plan.fallback)}) AS cursor_value FROM ${state('cursors')} WHERE pipeline = ${L(plan.pipeline)} AND source = ${L(plan.source)}`,
      ];
    case 'truncate-table':
      // As the T-SQL rendering: the table is kept (created typed when missing) and emptied, never dropped.
      return [
        `CREATE TABLE IF NOT EXISTS ${duckIdent(plan.table)} (${plan.columns.map((c) => `${duckIdent(c.name)} ${duckRawType(c)}`).join(', ')})`,
        `TRUNCATE ${duckIdent(plan.table)}`,
      ];
    case 'finish-run': {
      const rows = plan.rowsWritten ? 'CAST($rows AS BIGINT)' : 'CAST(0 AS BIGINT)';
      const cap = plan.maxRejected === undefined ? '' : ` OR rejected > ${plan.maxRejected}`;
      // T-SQL keeps rows, rejected and over in variables; here each statement computes them from the same tables.
      const totals = `(SELECT written, rejected, CASE WHEN rejected > ${plan.maxRejectedRatio} * (written + rejected)${cap} THEN 1 ELSE 0 END AS over_threshold FROM (SELECT ${rows} AS written, (SELECT COUNT(*) FROM ${state('rejects')} WHERE run_id = $run_id) AS rejected))`;
      const skipped = plan.copySkipped
        ? [
            `INSERT INTO ${state('rejects')} (run_id, pipeline, stage, reason, message, created_at) SELECT $run_id, ${L(plan.pipeline)}, 'upsert-dataverse', 'dataverse.copy_skipped', ${L(COPY_SKIPPED_MESSAGE[0])} || CAST($rows_skipped AS VARCHAR) || ${L(COPY_SKIPPED_MESSAGE[1].replace('{folder}', plan.copySkipped.errorsFolder))}, ${DUCK_NOW_TEXT} WHERE $rows_skipped > 0`,
          ]
        : [];
      return [
        ...skipped,
        `UPDATE ${state('runs')} SET status = CASE WHEN t.over_threshold = 1 THEN 'rejects_exceeded' ELSE 'succeeded' END, finished_at = ${DUCK_NOW_TEXT}, counts_json = '{"written":' || t.written || ',"rejected":' || t.rejected || '}' FROM ${totals} t WHERE id = $run_id`,
        // The cursor moves only within the threshold and never for backfills.
        `INSERT INTO ${state('cursors')} (pipeline, source, value, run_id, updated_at) SELECT ${L(plan.pipeline)}, ${L(plan.source)}, $cursor, $run_id, ${DUCK_NOW_TEXT} FROM ${totals} t WHERE t.over_threshold = 0 AND $mode <> 'backfill' ON CONFLICT (pipeline, source) DO UPDATE SET value = excluded.value, run_id = excluded.run_id, updated_at = excluded.updated_at`,
        `SELECT CAST(over_threshold AS INTEGER) AS over_threshold, rejected, written FROM ${totals} t`,
      ];
    }
    case 'mark-failed':
      return [
        `UPDATE ${state('runs')} SET status = 'failed', finished_at = ${DUCK_NOW_TEXT}, error_json = ${L(`{"code":"synapse.activity_failed","message":"${plan.failedActivity} failed; see the activity run in Synapse Studio. The cursor did not move, so the next run repeats the window."}`)} WHERE id = $run_id`,
      ];
    case 'convert':
    case 'sink-query':
    case 'save-versions':
      return duckdbConversion.compileSynapseStep(plan.kind, plan.conversion);
    case 'extract':
      return synapseExtractSql(plan.extract);
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
      return duckdbRecoverySteps({ ...step, plan });
    // State columns of new records.
    case 'state-sink-query':
      return [duckdbConversion.compileStateColumns(plan.conversion, plan.messageOnlyStates).sinkQuery];
    // Won/lost: close messages after the rows are written.
    case 'close-messages':
      return closeSteps(plan, duckdbDialect, duckClose);
    case 'keymap-since':
    case 'resolve-deferred':
    case 'deferred-sink-query':
    case 'select-new-files':
    case 'record-processed-files':
      return renderInboundDuck(plan);
    // Multi-select columns, written by Web activities.
    case 'multiselect-chunks':
    case 'multiselect-chunk':
      return renderMultiSelectDuck(plan);
    // Lookup targets deleted in Dataverse.
    case 'lookup-target-chunks': {
      const seen = `${plan.conversion.names.sink.table}_seen_${plan.table}`;
      const { check, chunks } = duckdbConversion.compileLookupCheck(plan.conversion, plan.table, plan.chunkSize);
      return [
        ...renderDuck({
          ...step,
          plan: { kind: 'truncate-table', schema: '', table: seen, columns: plan.seenColumns },
        }),
        ...check,
        chunks,
      ];
    }
    case 'lookup-target-chunk': {
      const check = lookupCheckTable(plan.conversion.names, plan.table);
      return [
        `SELECT string_agg('<value>' || CAST(${duckIdent('id')} AS VARCHAR) || '</value>', '' ORDER BY ${duckIdent('id')}) AS ${duckIdent('ids')} FROM ${duckTable(check.schema, check.table)} WHERE ${duckIdent('chunk')} = $chunk`,
      ];
    }
    case 'apply-lookup-check':
      return duckdbConversion.compileLookupCheckApply(plan.conversion);
    case 'run-since':
      return [
        `SELECT strftime(timezone('UTC', current_timestamp) - INTERVAL ${Math.trunc(plan.overlapMinutes)} MINUTE, '%Y-%m-%dT%H:%M:%SZ') AS run_since`,
      ];
  }
}

// Multi-select columns, written by Web activities.
function renderMultiSelectDuck(
  plan: Extract<SynapseStepPlan, { kind: 'multiselect-chunks' | 'multiselect-chunk' }>,
): string[] {
  const chunks = duckTable(plan.chunks.schema, plan.chunks.table);
  if (plan.kind === 'multiselect-chunk') return [`SELECT body FROM ${chunks} WHERE chunk = CAST($chunk AS BIGINT)`];
  const { plan: conversion, names } = plan.conversion;
  const rows = duckTable(plan.chunks.schema, `${plan.chunks.table}_rows`);
  const column = (c: string) => `r.${duckIdent(c)}`;
  const cols = plan.columns.map((c) => `s.${duckIdent(c)}`);
  // The target's JSON text, members in column order; a column that omits on null is left out when null.
  const member = (c: string) =>
    plan.includeNulls
      ? `${L(`,${JSON.stringify(c)}:`)} || COALESCE(CAST(to_json(${column(c)}) AS VARCHAR), 'null')`
      : `CASE WHEN ${column(c)} IS NULL THEN '' ELSE ${L(`,${JSON.stringify(c)}:`)} || CAST(to_json(${column(c)}) AS VARCHAR) END`;
  const target = [
    L(`{"@odata.type":${JSON.stringify(`Microsoft.Dynamics.CRM.${conversion.table}`)},"@odata.id":`),
    `CAST(to_json(${L(`${conversion.entitySetName}(`)} || r.__key_predicate || ')') AS VARCHAR)`,
    ...plan.columns.map(member),
    `'}'`,
  ].join(' || ');
  const size = Math.trunc(plan.chunkRows);
  const max = Math.trunc(plan.maxChunks);
  // As the T-SQL rendering: more rows than maxChunks chunks hold make larger chunks, never more than maxChunks.
  const rowsPerChunk = `CASE WHEN COUNT(*) OVER () > ${size * max} THEN (COUNT(*) OVER () + ${max - 1}) // ${max} ELSE ${size} END`;
  return [
    `DROP TABLE IF EXISTS ${rows}`,
    `CREATE TABLE ${rows} AS SELECT s.__row_id, w.__key_predicate, ${cols.join(', ')}, CAST((ROW_NUMBER() OVER (ORDER BY s.__row_id) - 1) // (${rowsPerChunk}) + 1 AS BIGINT) AS __chunk FROM ${duckTable(names.sink.schema, names.sink.table)} AS s INNER JOIN ${duckTable(names.work.schema, names.work.table)} AS w ON w.__row_id = s.__row_id${plan.includeNulls ? '' : ` WHERE ${cols.map((c) => `${c} IS NOT NULL`).join(' OR ')}`}`,
    `DROP TABLE IF EXISTS ${chunks}`,
    `CREATE TABLE ${chunks} AS SELECT r.__chunk AS chunk, '{"Targets":[' || string_agg(${target}, ',' ORDER BY r.__row_id) || ']}' AS body FROM ${rows} AS r GROUP BY r.__chunk`,
    `SELECT COALESCE(CAST(to_json(list(chunk ORDER BY chunk)) AS VARCHAR), '[]') AS chunks FROM ${chunks}`,
  ];
}

// Inbound key maps, processed files and same-window lookups.
function renderInboundDuck(
  plan: Extract<
    SynapseStepPlan,
    {
      kind: 'keymap-since' | 'resolve-deferred' | 'deferred-sink-query' | 'select-new-files' | 'record-processed-files';
    }
  >,
): string[] {
  const iso = (t: string) => `strftime(${t}, '%Y-%m-%dT%H:%M:%SZ')`;
  const files = `(SELECT DISTINCT json_extract_string(e.value, '$.name') AS name FROM json_each(CAST($files AS JSON)) AS e)`;
  switch (plan.kind) {
    case 'keymap-since': {
      const overlap = `INTERVAL ${Math.trunc(plan.overlapMinutes)} MINUTE`;
      const cursor = (source: string) =>
        `(SELECT MAX(value) FROM ${state('cursors')} WHERE pipeline = ${L(KEYMAP_CURSOR_PIPELINE)} AND source = ${L(source)})`;
      const upsert = (source: string, value: string) =>
        `INSERT INTO ${state('cursors')} (pipeline, source, value, run_id, updated_at) SELECT ${L(KEYMAP_CURSOR_PIPELINE)}, ${L(source)}, ${value}, $run_id, ${DUCK_NOW_TEXT} ON CONFLICT (pipeline, source) DO UPDATE SET value = excluded.value, run_id = excluded.run_id, updated_at = excluded.updated_at`;
      const fullPending = `${keymapFullPendingPrefix(plan.table)}${plan.pipeline}`;
      const full = `${cursor(keymapCursorSource(plan.table))} IS NULL OR NOT EXISTS (SELECT 1 FROM ${state('keymap')} WHERE entity_set = ${L(plan.entitySet)}) OR COALESCE(${cursor(keymapFullSource(plan.table))}, '') < strftime(timezone('UTC', current_timestamp) - INTERVAL ${Math.trunc(plan.fullEveryHours)} HOUR, '%Y-%m-%dT%H:%M:%S.%f')`;
      return [
        upsert(`${keymapPendingPrefix(plan.table)}${plan.pipeline}`, DUCK_NOW_TEXT),
        upsert(fullPending, `CASE WHEN ${full} THEN '1' ELSE '0' END`),
        `SELECT CASE WHEN ${cursor(fullPending)} = '1' THEN '1900-01-01T00:00:00Z' ELSE ${iso(`CAST(${cursor(keymapCursorSource(plan.table))} AS TIMESTAMP) - ${overlap}`)} END AS since, ${iso(`timezone('UTC', current_timestamp) - ${overlap}`)} AS run_since`,
      ];
    }
    case 'resolve-deferred':
      return duckdbConversion.compileDeferredLookups(plan.conversion).resolve;
    case 'deferred-sink-query':
      return [duckdbConversion.compileDeferredLookups(plan.conversion).sinkQuery];
    case 'select-new-files':
      // A run with a window takes every listed file again (the local runner reprocesses a range).
      return [
        `SELECT f.name FROM ${files} AS f WHERE COALESCE($window_start, '') <> '' OR NOT EXISTS (SELECT 1 FROM ${state('processed_items')} AS i WHERE i.pipeline = ${L(plan.pipeline)} AND i.source = ${L(plan.source)} AND i.item_id = ${L(`${plan.folder}/`)} || f.name) ORDER BY f.name LIMIT ${Math.trunc(plan.limit)}`,
      ];
    case 'record-processed-files':
      return [
        `INSERT INTO ${state('processed_items')} (pipeline, source, item_id, size, modified_ms, item_timestamp, run_id, processed_at) SELECT ${L(plan.pipeline)}, ${L(plan.source)}, ${L(`${plan.folder}/`)} || f.name, NULL, NULL, NULL, $run_id, ${DUCK_NOW_TEXT} FROM ${files} AS f WHERE f.name IS NOT NULL ON CONFLICT (pipeline, source, item_id) DO UPDATE SET run_id = excluded.run_id, processed_at = excluded.processed_at`,
      ];
  }
}

function duckRawType(c: RawColumn): string {
  switch (c.type) {
    case 'text':
      return 'VARCHAR';
    case 'uuid':
      return 'UUID';
    case 'bigint':
      return 'BIGINT';
    case 'decimal':
      return 'DECIMAL(38,10)';
    case 'double':
      return 'DOUBLE';
    case 'timestamp':
      return 'TIMESTAMP';
    case 'boolean':
      return 'BOOLEAN';
  }
}

// Won/lost: close messages after the rows are written.
const duckClose: CloseSqlFunctions = {
  jsonString: (expr) => `CAST(to_json(${expr}) AS VARCHAR)`,
  int: (expr) => `CAST(${expr} AS INTEGER)`,
  types: { bigint: 'BIGINT', int: 'INTEGER', text: 'VARCHAR' },
  refusal: (error) => {
    const detail = `CASE WHEN strpos(${error}, '{"error"') > 0 THEN substr(${error}, strpos(${error}, '{"error"')) END`;
    const field = (name: string) =>
      `CASE WHEN json_valid(x.detail) THEN json_extract_string(x.detail, '$.error.${name}') END`;
    return `CROSS JOIN (SELECT ${field('code')} AS code, ${field('message')} AS message, NULLIF(regexp_extract(${error}, 'Response status code: ''([0-9]{3})''', 1), '') AS status FROM (SELECT ${detail} AS detail) AS x) AS e`;
  },
};
