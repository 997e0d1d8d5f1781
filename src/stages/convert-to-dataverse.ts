import { mkdir, rename, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { FerryError } from '../core/errors.js';
import {
  type ColumnPlan,
  type ConversionPlan,
  type DataverseMapping,
  planConversion,
  tablesNeeded,
} from '../core/mapping.js';
import type { StageSpec } from '../core/pipeline.js';
import type { RejectRecord } from '../core/rejects.js';
import type { StageContext, StageImpl } from '../core/stage.js';
import type { StagingEngine } from '../core/staging.js';
import { STAGING_TABLES } from '../core/staging-contract.js';
import { isAttributeType, loadMetadata, supportsBulk, type TableMetadata } from '../core/table-metadata.js';
import {
  type AppliedVersionsSource,
  checkSourceTypes,
  compileConversion,
  type SourceColumn,
  type SqlDialect,
} from '../dialects/sql-dialect.js';
import { STAGED_VALIDATOR, type StagedValidator } from './read-parquet-deltas.js';

/** The stage kind. */
export const CONVERT_TO_DATAVERSE = 'convert-to-dataverse' as const;

/** The stage spec: the mapping itself, plain data. */
export interface ConvertToDataverseSpec extends StageSpec, DataverseMapping {
  readonly kind: typeof CONVERT_TO_DATAVERSE;
}

/**
 * What this stage leaves in `ctx.shared` under `dataverse.target` for the upsert stage: where the rows go.
 */
export interface DataverseTarget {
  readonly table: string;
  readonly entitySetName: string;
  readonly primaryIdAttribute: string;
  readonly keyName: string;
  readonly keyAttributes: readonly string[];
  readonly supportsBulk: boolean;
}
/** Key of the `DataverseTarget` in `ctx.shared`. */
export const SHARED_TARGET_KEY = 'dataverse.target';

/**
 * Declares the conversion of staged rows into Dataverse payloads, validated against the table's metadata snapshot.
 *
 * @example
 * convertToDataverse({
 *   table: 'account', key: ['accountnumber'], changeTimestamp: 'modified_at',
 *   columns: { accountnumber: 'account_no', name: 'account_name', industrycode: { from: 'industry', choice: 'label' } },
 * })
 */
export function convertToDataverse(mapping: DataverseMapping): ConvertToDataverseSpec {
  return {
    kind: CONVERT_TO_DATAVERSE,
    table: mapping.table,
    key: [...mapping.key],
    changeTimestamp: mapping.changeTimestamp,
    columns: structuredClone(mapping.columns) as DataverseMapping['columns'],
    ...(mapping.sourceTimeZone === undefined ? {} : { sourceTimeZone: mapping.sourceTimeZone }),
  };
}

/** Loads the snapshots a mapping needs (its table, every lookup target) and checks the mapping against them. */
export async function loadConversionPlan(mapping: DataverseMapping, metadataDir: string): Promise<ConversionPlan> {
  return (await loadPlanAndTable(mapping, metadataDir)).plan;
}

/** `loadConversionPlan`, also handing back the mapping's own table snapshot so it is read once. */
async function loadPlanAndTable(
  mapping: DataverseMapping,
  metadataDir: string,
): Promise<{ plan: ConversionPlan; own: TableMetadata }> {
  const own = await loadMetadata(metadataDir, mapping.table);
  const targetsOf = (attribute: string) => {
    const a = own.Attributes.find((x) => x.LogicalName === attribute);
    return a && isAttributeType(a, 'LookupType', 'CustomerType', 'OwnerType') && a.Targets.length === 1
      ? a.Targets
      : [];
  };
  const tables = new Map<string, TableMetadata>([[own.LogicalName, own]]);
  for (const name of tablesNeeded(mapping, targetsOf)) {
    if (!tables.has(name)) tables.set(name, await loadMetadata(metadataDir, name));
  }
  return { plan: planConversion(mapping, tables), own };
}

/** Where the versions applied per key are kept for a pipeline. */
export function versionsFile(stateDir: string, pipeline: string): string {
  return path.join(stateDir, 'versions', `${pipeline}.parquet`);
}

/** Reads the staged columns' types through the dialect. */
export async function describeStaged(staging: StagingEngine, dialect: SqlDialect): Promise<SourceColumn[]> {
  const rows = await staging.all<{ name: string; type: string }>(dialect.describeTableSql(STAGING_TABLES.staged));
  return rows.map((r) => ({ name: String(r.name), ...dialect.classifyType(String(r.type)) }));
}

/** Dialects by the staging engine's name. */

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
    const sources = await describeStaged(ctx.staging, dialect);
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

    const file = versionsFile(ctx.config.state, ctx.pipeline.name);
    const previous: AppliedVersionsSource | null = (await exists(file)) ? { kind: 'parquet', path: file } : null;
    const sql = compileConversion(plan, dialect, { sources, appliedVersions: previous });
    const started = performance.now();
    try {
      await ctx.staging.run(sql.classify);
    } catch (error) {
      // A delta file whose pages cannot be decoded shows up here; the read stage can find it, hold it back and
      // rebuild `staged` without it, and the conversion then runs on the other files.
      const validate = ctx.shared.get(STAGED_VALIDATOR) as StagedValidator | undefined;
      if (!validate || (await validate()) === 0) throw error;
      await ctx.staging.run(sql.classify);
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

    ctx.shared.set(SHARED_TARGET_KEY, {
      table: own.LogicalName,
      entitySetName: own.EntitySetName,
      primaryIdAttribute: own.PrimaryIdAttribute,
      keyName: plan.keyName,
      keyAttributes: plan.key.map((k) => k.attribute),
      supportsBulk: supportsBulk(own),
    } satisfies DataverseTarget);
    ctx.progress.update('convert', ctx.counts);

    ctx.onCommit(async () => saveAppliedVersions(ctx, dialect, previous, file));
  },
};

/**
 * Saves `(key, version)` of every row Dataverse accepted (table `upserted`), merged with the earlier file, to a temp
 * name and renames it over the old one, so a kill leaves either the old or the new file.
 */
async function saveAppliedVersions(
  ctx: StageContext,
  dialect: SqlDialect,
  previous: AppliedVersionsSource | null,
  file: string,
): Promise<void> {
  const exists = await ctx.staging.all<{ n: bigint | number }>(dialect.tableExistsSql(STAGING_TABLES.upserted));
  if (Number(exists[0]?.n ?? 0) === 0) {
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

/** A reject message naming the column, the value and what to do next. */
export function rejectMessage(
  reason: string,
  column: ColumnPlan | undefined,
  values: Readonly<Record<string, unknown>>,
  plan: ConversionPlan,
): string {
  if (!column) return `Row rejected (${reason}); check the mapping of \`${plan.table}\`.`;
  const sources = column.rule === 'lookup' && column.tableFrom ? [column.tableFrom, ...column.sources] : column.sources;
  const shown = sources.map((s) => `\`${s}\` = \`${show(values[s])}\``).join(', ');
  const where = `Column \`${column.attribute}\` (from ${shown})`;
  switch (reason) {
    case 'string.too_long':
      return `${where} is longer than MaxLength ${column.rule === 'string' ? column.maxLength : '?'} of \`${plan.table}.${column.attribute}\`; shorten it in the source or map a longer column.`;
    case 'number.out_of_range':
      return `${where} is out of range${'min' in column ? ` (${column.min}..${column.max})` : ''} for ${column.attributeType}; fix the source or map another column.`;
    case 'number.precision':
      return `${where} has more fractional digits than the column allows${column.rule === 'decimal' ? ` (${column.precision})` : ' (whole numbers only)'}; round it in the source.`;
    case 'number.unparsable':
      return `${where} is not a number; write digits with an optional sign and \`.\` fraction.`;
    case 'guid.invalid':
      return `${where} is not a GUID (\`xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx\`); fix the source or bind the lookup by an alternate key.`;
    case 'choice.unknown_label':
    case 'choice.unknown_value':
    case 'multiselect.invalid_member': {
      const all = 'options' in column ? column.options.map((o) => `${o.value} ${o.label}`) : [];
      const options = all.length > 8 ? `${all.slice(0, 8).join(', ')}, … ${all.length - 8} more` : all.join(', ');
      const what =
        reason === 'choice.unknown_label'
          ? 'an option label'
          : reason === 'choice.unknown_value'
            ? 'an option value'
            : 'all options';
      return `${where} is not ${what} of \`${column.attribute}\` (${options}); add the option in Dataverse and re-pull the metadata, or fix the source.`;
    }
    case 'status.invalid_for_state':
      return `${where} does not belong to the mapped statecode; pick a status reason of that state.`;
    case 'date.before_min':
      return `${where} is before 1753-01-01, the earliest date Dataverse stores; fix the source or leave it empty.`;
    case 'date.unparsable':
      return `${where} is not a date/time; write \`YYYY-MM-DD\` or \`YYYY-MM-DDTHH:MM:SS\` with an optional \`Z\`/\`±HH:MM\`.`;
    case 'boolean.invalid':
      return `${where} is not a yes/no value; write true/false, 1/0, yes/no or y/n.`;
    case 'key.missing':
      return `${where} is empty but is part of ${column.inPayload ? 'the lookup key' : `the key of \`${plan.table}\``}; fill it in the source.`;
    case 'lookup.key_unsafe':
      return `${where} holds a character (/ \\ < > * % & : ?) that cannot go into an alternate-key reference; bind this lookup by GUID or clean the key.`;
    case 'lookup.target_unknown':
      return `${where}: the target table is not one of ${column.rule === 'lookup' ? column.targets.map((t) => `\`${t.table}\``).join(', ') : '?'}; fix the source or add the target to the mapping.`;
    default:
      return `${where} was rejected (${reason}).`;
  }
}

function show(value: unknown): string {
  if (value === null || value === undefined) return 'null';
  const text = String(value);
  return text.length > 80 ? `${text.slice(0, 77)}...` : text;
}

async function exists(file: string): Promise<boolean> {
  try {
    await stat(file);
    return true;
  } catch {
    return false;
  }
}
