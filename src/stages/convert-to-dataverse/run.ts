import { mkdir, rename, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { FerryError } from '../../core/errors.js';
import type { ConversionPlan } from '../../core/mapping.js';
import type { RejectRecord } from '../../core/rejects.js';
import { appliedVersionsFile } from '../../core/run-folder.js';
import type { StageContext, StageImpl } from '../../core/stage.js';
import { StagedInputUnreadable } from '../../core/stage-handoff.js';
import { STAGING_TABLES } from '../../core/staging-contract.js';
import {
  type AppliedVersionsSource,
  checkSourceTypes,
  compileConversion,
  type SqlDialect,
} from '../../dialects/sql-dialect.js';
import { dataverseTargetOf, describeStaged, loadPlanAndTable, rejectMessage } from './conversion.js';
import { CONVERT_TO_DATAVERSE, type ConvertToDataverseSpec } from './spec.js';

/**
 * The convert-to-dataverse stage: one set-based pass in the staging engine, rejects read back as data.
 *
 * Every staged row ends as exactly one of: converted (in `converted`, `counts.converted`); rejected (first failing
 * column in mapping order, `ctx.reject`); superseded by a later version of its key in the same run, or not newer than
 * the version applied for that key by an earlier run (both `counts.skippedStale`, not rejects: they must not be sent).
 * Versions of one key collapse before validation, so an invalid older version is skipped, not rejected, and an
 * invalid latest version is rejected without sending an older one. An equal version counts as applied: versions are
 * saved only for rows Dataverse accepted (`upserted`), after every stage succeeded, so a repeated window re-sends
 * only what did not land. Applied versions live in `<state>/versions/<pipeline>.parquet`, updated on commit.
 */
export const convertToDataverseStage: StageImpl<ConvertToDataverseSpec> = {
  kind: CONVERT_TO_DATAVERSE,
  async run(spec, ctx) {
    // The engine carries its dialect: the compiler's hooks and what the engine can do.
    const dialect = ctx.staging.dialect;
    if (!dialect.conversion) {
      throw new FerryError(
        'convert.dialect',
        `No conversion SQL for staging dialect \`${dialect.name}\`; use the DuckDB staging engine.`,
      );
    }
    const { plan, own } = await loadPlanAndTable(spec, ctx.config.metadata);
    const sources = ctx.handoff.staged ? await describeStaged(ctx.staging, dialect) : [];
    if (sources.length === 0) {
      throw new FerryError(
        'convert.no_staged',
        `Staging table \`${STAGING_TABLES.staged}\` does not exist; put a read stage before convert-to-dataverse.`,
      );
    }
    const staged = new Set(sources.map((s) => s.name));
    const missing = plan.sourceColumns.filter((c) => !staged.has(c));
    if (missing.length) {
      throw new FerryError(
        'mapping.unknown_source_column',
        `Source column(s) \`${missing.join('`, `')}\` of the \`${spec.table}\` mapping are not in the staged data (columns: ${[...staged].filter((s) => !s.startsWith('__')).join(', ')}); fix the mapping or the source.`,
      );
    }

    checkSourceTypes(plan, sources);

    const file = appliedVersionsFile(ctx.config.state, ctx.pipeline.name);
    const previous: AppliedVersionsSource | null = (await exists(file)) ? { kind: 'parquet', path: file } : null;
    const sql = compileConversion(plan, dialect, { sources, appliedVersions: previous });
    const started = performance.now();
    try {
      await ctx.staging.run(sql.classify);
    } catch (error) {
      // A delta file whose pages cannot be decoded shows up here: the runner asks the stage that staged the rows to
      // hold it back and stage the rest, then runs this stage again.
      throw new StagedInputUnreadable(CONVERT_TO_DATAVERSE, error);
    }
    await ctx.staging.run(sql.converted);
    ctx.metrics['convert.sqlMs'] = Math.round(performance.now() - started);

    const outcomes = new Map<string, number>();
    for (const row of await ctx.staging.all<{ outcome: string; n: bigint | number }>(sql.counts)) {
      outcomes.set(String(row.outcome), Number(row.n));
    }
    ctx.counts.converted += outcomes.get('ok') ?? 0;
    ctx.counts.skippedStale += (outcomes.get('superseded') ?? 0) + (outcomes.get('stale') ?? 0);
    ctx.metrics['convert.superseded'] = outcomes.get('superseded') ?? 0;
    ctx.metrics['convert.stale'] = outcomes.get('stale') ?? 0;

    // Only the rejected rows come into JS, in chunks.
    if ((outcomes.get('reject') ?? 0) > 0) {
      const sourceNames = sources.filter((s) => !s.name.startsWith('__')).map((s) => s.name);
      for await (const chunk of ctx.staging.stream<Record<string, unknown>>(sql.rejects)) {
        ctx.reject(chunk.map((r) => toReject(r, plan, sourceNames)));
      }
    }

    ctx.handoff.converted = { relation: STAGING_TABLES.converted, target: dataverseTargetOf(own, plan) };
    ctx.progress.update('convert', ctx.counts);

    ctx.onCommit(async () => saveAppliedVersions(ctx, dialect, previous, file));
  },
};

/**
 * Saves `(key, version)` of every row Dataverse accepted (`upserted`, handed over by the upsert stage), merged with the earlier file, to a temp
 * name and renames it over the old one, so a kill leaves either the old or the new file.
 */
async function saveAppliedVersions(
  ctx: StageContext,
  dialect: SqlDialect,
  previous: AppliedVersionsSource | null,
  file: string,
): Promise<void> {
  // Set by the upsert stage; a pipeline without one has no accepted rows to record.
  if (!ctx.handoff.upserted) {
    ctx.log.warn(
      `No \`${STAGING_TABLES.upserted}\` table after the run; applied versions of \`${ctx.pipeline.name}\` not saved.`,
    );
    return;
  }
  await mkdir(path.dirname(file), { recursive: true });
  const temp = `${file}.${ctx.runId}.tmp`;
  try {
    await ctx.staging.run(dialect.saveAppliedVersionsSql(previous, { kind: 'parquet', path: temp }));
    await rename(temp, file);
  } finally {
    await rm(temp, { force: true });
  }
}

function toReject(row: Record<string, unknown>, plan: ConversionPlan, sourceNames: readonly string[]): RejectRecord {
  const reason = String(row.__reason);
  const index = row.__reason_column === null || row.__reason_column === undefined ? -1 : Number(row.__reason_column);
  const column = plan.columns[index];
  const values: Record<string, unknown> = {};
  for (const name of sourceNames) values[name] = row[name] ?? null;
  return {
    stage: CONVERT_TO_DATAVERSE,
    reason,
    message: rejectMessage(reason, column, values, plan),
    key: (row.__key as string | null) ?? null,
    sourceFile: (row.__source_file as string | null) ?? null,
    rowNumber: row.__row_number === null || row.__row_number === undefined ? null : Number(row.__row_number),
    row: values,
  };
}

async function exists(file: string): Promise<boolean> {
  try {
    await stat(file);
    return true;
  } catch {
    return false;
  }
}
