import type { SqlStep, StepRenderer, SynapseStepPlan } from '../sql-steps.js';
import { duckdbConversion } from './conversion.js';
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
      // DuckDB has no conditional TRUNCATE; dropping leaves the same state after the Copy (its sink creates the
      // table from the source schema, as `tableOption: autoCreate` does for a missing table).
      return [`DROP TABLE IF EXISTS ${duckIdent(plan.table)}`];
    case 'finish-run': {
      const rows = plan.rowsWritten ? 'CAST($rows AS BIGINT)' : 'CAST(0 AS BIGINT)';
      const cap = plan.maxRejected === undefined ? '' : ` OR rejected > ${plan.maxRejected}`;
      // T-SQL keeps rows, rejected and over in variables; here each statement computes them from the same tables.
      const totals = `(SELECT written, rejected, CASE WHEN rejected > ${plan.maxRejectedRatio} * (written + rejected)${cap} THEN 1 ELSE 0 END AS over_threshold FROM (SELECT ${rows} AS written, (SELECT COUNT(*) FROM ${state('rejects')} WHERE run_id = $run_id) AS rejected))`;
      const skipped = plan.copySkipped
        ? [
            `INSERT INTO ${state('rejects')} (run_id, pipeline, stage, reason, message, created_at) SELECT $run_id, ${L(plan.pipeline)}, 'upsert-dataverse', 'dataverse.copy_skipped', 'Dataverse refused ' || CAST($rows_skipped AS VARCHAR) || ${L(` rows; their rows and errors are in the lake under ${plan.copySkipped.errorsFolder}.`)}, ${DUCK_NOW_TEXT} WHERE $rows_skipped > 0`,
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
      return synapseExtractSql(plan.extract); // The replay and housekeeping pipelines' steps (recovery-steps.ts).
    case 'replay-pending':
    case 'replay-begin':
    case 'replay-convert':
    case 'replay-finish':
    case 'replay-failed':
    case 'staging-in-use':
    case 'drop-tables':
    case 'expire-state':
      return duckdbRecoverySteps({ ...step, plan });
  }
}
