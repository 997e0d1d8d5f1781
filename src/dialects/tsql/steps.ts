import type { SqlStep, StepParameter, StepRenderer, SynapseStepPlan } from '../sql-steps.js';
import { tsqlConversion } from './conversion.js';
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
        `IF OBJECT_ID(N'${plan.schema}.${plan.table}', N'U') IS NOT NULL TRUNCATE TABLE ${tsqlTable(plan.schema, plan.table)}`,
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
            `INSERT INTO ${rejects} ([run_id], [pipeline], [stage], [reason], [message], [created_at]) SELECT N'${v('run_id')}', ${tsqlLiteral(plan.pipeline)}, N'upsert-dataverse', N'dataverse.copy_skipped', CONCAT(N'Dataverse refused ', ${v('rows_skipped')}, N' rows; their rows and errors are in the lake under ${plan.copySkipped.errorsFolder}.'), ${NOW} WHERE ${v('rows_skipped')} > 0`,
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
      return compileExtract(plan.extract); // The replay and housekeeping pipelines' steps (recovery-steps.ts).
    case 'replay-pending':
    case 'replay-begin':
    case 'replay-convert':
    case 'replay-finish':
    case 'replay-failed':
    case 'staging-in-use':
    case 'drop-tables':
    case 'expire-state':
      return tsqlRecoverySteps({ ...step, plan });
  }
}
