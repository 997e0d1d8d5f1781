import {
  type ColumnPlan,
  type ConversionPlan,
  type DataverseMapping,
  planConversion,
  tablesNeeded,
} from '../../core/mapping.js';
import type { DataverseTarget } from '../../core/stage-handoff.js';
import type { StagingEngine } from '../../core/staging.js';
import { STAGING_TABLES } from '../../core/staging-contract.js';
import {
  findAttribute,
  isAttributeType,
  loadMetadata,
  type StateAttribute,
  supportsBulk,
  type TableMetadata,
} from '../../core/table-metadata.js';
import type { SourceColumn, SqlDialect } from '../../dialects/sql-dialect.js';

/*
 * What the convert stage shares with the queue listener (src/events) and the Synapse exporter: loading and checking
 * the conversion plan, the target's facts, the staged column types and the reject messages. Not the stage's run.
 */

/** Loads the snapshots a mapping needs (its table, every lookup target) and checks the mapping against them. */
export async function loadConversionPlan(mapping: DataverseMapping, metadataDir: string): Promise<ConversionPlan> {
  return (await loadPlanAndTable(mapping, metadataDir)).plan;
}

/** `loadConversionPlan`, also handing back the mapping's own table snapshot so it is read once. */
export async function loadPlanAndTable(
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

/** The facts of the target table the upsert stage needs, from its snapshot and the plan's key. */
export function dataverseTargetOf(own: TableMetadata, plan: ConversionPlan): DataverseTarget {
  const state = findAttribute(own, 'statecode') as StateAttribute | undefined;
  const stateDefaults: Array<{ state: number; status: number }> = [];
  for (const o of state?.OptionSet.Options ?? [])
    if (o.DefaultStatus !== undefined) stateDefaults.push({ state: o.Value, status: o.DefaultStatus });
  return {
    table: own.LogicalName,
    entitySetName: own.EntitySetName,
    primaryIdAttribute: own.PrimaryIdAttribute,
    keyName: plan.keyName,
    keyAttributes: plan.key.map((k) => k.attribute),
    supportsBulk: supportsBulk(own),
    stateDefaults,
  };
}

/** Reads the staged columns' types through the dialect. */
export async function describeStaged(staging: StagingEngine, dialect: SqlDialect): Promise<SourceColumn[]> {
  const rows = await staging.all<{ name: string; type: string }>(dialect.describeTableSql(STAGING_TABLES.staged));
  return rows.map((r) => ({ name: String(r.name), ...dialect.classifyType(String(r.type)) }));
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
