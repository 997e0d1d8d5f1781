import { type RecoveryStepPlan, type ReplaySelection, replaySourceColumns } from '../recovery-steps.js';
import type { SqlStep, TableName } from '../sql-steps.js';
import { duckdbConversion } from './conversion.js';
import { duckIdent, duckLiteral } from './driver.js';
import { DUCK_NOW_TEXT, duckTable } from './staging.js';

/**
 * DuckDB renderings of the recovery steps (replay of rejected rows, housekeeping); see `../recovery-steps.ts` for
 * what each does. Parameters are `$name`, as in `steps.ts`.
 */
const STATE = 'ferry';
const state = (table: string) => duckTable(STATE, table);
const L = duckLiteral;
const t = (n: TableName) => duckTable(n.schema, n.table);

/** The rejects a replay takes (alias `j`), following a run id to the replays that followed it. */
function selected(s: ReplaySelection): { chain: string; where: string } {
  return {
    chain: `WITH RECURSIVE chain(id) AS (SELECT r0.id FROM ${state('runs')} r0 WHERE r0.id = $replay_of UNION ALL SELECT r.id FROM ${state('runs')} r JOIN chain c ON r.parent_run_id = c.id WHERE r.mode = 'replay')`,
    where:
      `j.pipeline = ${L(s.pipeline)} AND j.status = 'open' AND j.stage = ${L(s.stage)} AND j.row_json IS NOT NULL` +
      ` AND (COALESCE($replay_of, '') = '' OR j.run_id IN (SELECT id FROM chain)) AND (COALESCE($reason, '') = '' OR j.reason = $reason)` +
      // Rows of a run still in progress are not taken: it may yet fail and repeat its window.
      ` AND j.run_id NOT IN (SELECT id FROM ${state('runs')} WHERE status = 'running')`,
  };
}

/** A replay's run rows left `running` (cancelled): what they resolved opens again, their own rejects go. */
function reopen(runs: string): string[] {
  return [
    `UPDATE ${state('rejects')} SET status = 'open', resolved_by_run = NULL WHERE resolved_by_run IN (${runs})`,
    `DELETE FROM ${state('rejects')} WHERE run_id IN (${runs})`,
  ];
}

export function duckdbRecoverySteps(step: SqlStep<RecoveryStepPlan>): string[] {
  const plan = step.plan;
  switch (plan.kind) {
    case 'replay-pending': {
      const s = selected(plan.selection);
      return [`${s.chain} SELECT COUNT(*) AS pending FROM ${state('rejects')} j WHERE ${s.where}`];
    }
    case 'replay-begin': {
      const s = selected(plan.selection);
      const { names } = plan.conversion;
      const abandoned = `SELECT id FROM ${state('runs')} WHERE pipeline = ${L(plan.selection.pipeline)} AND mode = 'replay' AND status = 'running'`;
      const columns = replaySourceColumns(plan.conversion).map(
        (c) => `json_extract_string(c.row_json, ${L(`$.${JSON.stringify(c)}`)}) AS ${duckIdent(c)}`,
      );
      return [
        ...reopen(abandoned),
        `UPDATE ${state('runs')} SET status = 'failed', finished_at = ${DUCK_NOW_TEXT}, error_json = ${L('{"code":"replay.abandoned","message":"The replay was cancelled; the rows it took were opened again for the next replay."}')} WHERE id IN (${abandoned})`,
        `INSERT INTO ${state('runs')} (id, pipeline, mode, status, window_json, started_at, counts_json, holder, parent_run_id) VALUES ($run_id, ${L(plan.selection.pipeline)}, 'replay', 'running', CAST(json_object('replayOf', $replay_of, 'reason', $reason) AS VARCHAR), ${DUCK_NOW_TEXT}, '{}', 'synapse:' || $data_factory, NULLIF($replay_of, ''))`,
        ...plan.dropTables.map((x) => `DROP TABLE IF EXISTS ${duckIdent(x)}`),
        `CREATE TABLE ${t(plan.claimed)} AS ${s.chain} SELECT j.id, j.source_file, j.row_number, j.row_json FROM ${state('rejects')} j WHERE ${s.where}`,
        // The source row as the lineage table held it (every mapped column as text), its place kept.
        `CREATE TABLE ${t(names.rows)} AS SELECT ${columns.join(', ')}, c.source_file AS __source_file, $run_id AS __run_id, CAST(ROW_NUMBER() OVER (ORDER BY c.id) AS BIGINT) AS __row_id, CAST(c.row_number AS BIGINT) AS __row_number, c.id AS __reject_id FROM ${t(plan.claimed)} c`,
      ];
    }
    case 'replay-convert': {
      const { plan: conversion, names, keymapTargets } = plan.conversion;
      // Lookups to the pipeline's own table whose target is a replayed row go in the second pass, as in the inbound pipeline.
      const compiled = duckdbConversion.compileSynapse(conversion, names, {
        deferSelfLookups: plan.conversion.deferSelfLookups === true,
      });
      return [
        ...keymapTargets.flatMap((k) => duckdbConversion.keymapRefresh(k, names)),
        ...compiled.classify,
        ...compiled.converted,
        ...compiled.rejects,
        ...compiled.sink,
      ];
    }
    case 'replay-finish': {
      const { names } = plan.conversion;
      const claimed = t(plan.claimed);
      const again = `SELECT c.id FROM ${claimed} c JOIN ${state('rejects')} n ON n.run_id = $run_id AND n.source_file IS NOT DISTINCT FROM c.source_file AND n.row_number IS NOT DISTINCT FROM c.row_number`;
      const sent = `SELECT r.__reject_id FROM ${t(names.rows)} r JOIN ${t(names.sink)} s ON s.__row_id = r.__row_id`;
      const totals = `(SELECT (SELECT COUNT(*) FROM ${claimed}) AS claimed, (SELECT COUNT(*) FROM ${state('rejects')} WHERE resolved_by_run = $run_id AND status = 'resolved') AS resolved, (SELECT COUNT(*) FROM ${state('rejects')} WHERE resolved_by_run = $run_id AND status = 'resolved' AND id IN (${sent})) AS upserted, (SELECT COUNT(*) FROM ${state('rejects')} WHERE resolved_by_run = $run_id AND status = 'superseded') AS still_rejected, (SELECT COUNT(*) FROM ${t(names.sink)}) AS written, (SELECT COUNT(*) FROM ${state('rejects')} WHERE run_id = $run_id) AS rejected)`;
      return [
        `INSERT INTO ${state('rejects')} (run_id, pipeline, stage, reason, message, created_at) SELECT $run_id, ${L(plan.selection.pipeline)}, 'upsert-dataverse', 'dataverse.copy_skipped', 'Dataverse refused ' || CAST($rows_skipped AS VARCHAR) || ' replayed rows; the rejects they came from stay open.', ${DUCK_NOW_TEXT} WHERE $rows_skipped > 0`,
        `UPDATE ${state('rejects')} SET status = 'superseded', resolved_by_run = $run_id WHERE status = 'open' AND id IN (${again})`,
        `UPDATE ${state('rejects')} SET status = 'resolved', resolved_by_run = $run_id WHERE status = 'open' AND id IN (SELECT id FROM ${claimed}) AND ($rows_skipped = 0 OR id NOT IN (${sent}))`,
        `UPDATE ${state('runs')} SET status = 'succeeded', finished_at = ${DUCK_NOW_TEXT}, counts_json = CAST(json_object('written', x.written, 'rejected', x.rejected, 'resolved', x.resolved, 'upserted', x.upserted, 'stillRejected', x.still_rejected) AS VARCHAR) FROM ${totals} x WHERE id = $run_id`,
        `SELECT claimed, resolved, upserted, still_rejected FROM ${totals} x`,
      ];
    }
    case 'replay-failed':
      return [
        ...reopen('$run_id'),
        `UPDATE ${state('runs')} SET status = 'failed', finished_at = ${DUCK_NOW_TEXT}, error_json = ${L('{"code":"synapse.activity_failed","message":"An activity of this replay failed; see the activity run in Synapse Studio. The rows it took are still open: replay again."}')} WHERE id = $run_id`,
      ];
    case 'staging-in-use':
      return [
        `SELECT ${plan.groups
          .map(
            (g) =>
              `CASE WHEN EXISTS (SELECT 1 FROM ${state('runs')} WHERE pipeline IN (${g.pipelines.map(L).join(', ')}) AND status = 'running' AND started_at >= $stale_before) THEN 1 ELSE 0 END AS ${duckIdent(`busy_${g.name}`)}`,
          )
          .join(', ')}`,
      ];
    case 'drop-tables':
      return [
        ...plan.views.map((x) => `DROP VIEW IF EXISTS ${duckIdent(x)}`),
        ...plan.tables.map((x) => `DROP TABLE IF EXISTS ${duckIdent(x)}`),
      ];
    case 'record-run-window':
      return [
        `UPDATE ${state('runs')} SET window_json = CAST(json_merge_patch(COALESCE(window_json, '{}'), json_object('windowName', $window_name)) AS VARCHAR) WHERE id = $run_id`,
      ];
    case 'unpublished-run-folders': {
      const parts = plan.pipelines.flatMap((p) =>
        p.outputs.flatMap((o) =>
          o.roots.map(
            (root) =>
              `SELECT r.id AS run_id, ${L(`${root}/`)} || r.window_name || '/' || r.id AS folder, ${L(`${o.manifestRoot}/`)} || r.window_name || '/' || r.id AS manifest FROM (SELECT id, json_extract_string(window_json, '$.windowName') AS window_name FROM ${state('runs')} WHERE pipeline = ${L(p.pipeline)} AND status <> 'succeeded' AND started_at < $stale_before) AS r WHERE r.window_name IS NOT NULL`,
          ),
        ),
      );
      return [
        parts.length
          ? `SELECT x.run_id, x.folder, x.manifest FROM (${parts.join(' UNION ALL ')}) AS x ORDER BY x.run_id, x.folder`
          : `SELECT CAST(NULL AS VARCHAR) AS run_id, CAST(NULL AS VARCHAR) AS folder, CAST(NULL AS VARCHAR) AS manifest WHERE false`,
      ];
    }
    case 'drop-run-tables':
      // The extract's DuckDB rendering (extract.ts) holds its result in a temporary table per output, in place of
      // the external tables; a failed run leaves it behind.
      return plan.outputs.map((o) => `DROP TABLE IF EXISTS ${duckIdent(`__extract_${o.output}`)}`);
    case 'expire-state': {
      const rejects = `FROM ${state('rejects')} WHERE status <> 'open' AND created_at < $rejects_before`;
      const runs = `FROM ${state('runs')} WHERE status <> 'running' AND started_at < $runs_before AND id NOT IN (SELECT run_id FROM ${state('rejects')} WHERE status = 'open') AND id NOT IN (SELECT run_id FROM ${state('cursors')})`;
      return [
        `SELECT (SELECT COUNT(*) ${rejects}) AS rejects_deleted, (SELECT COUNT(*) ${runs}) AS runs_deleted`,
        `DELETE ${rejects}`,
        `DELETE ${runs}`,
      ];
    }
  }
}
