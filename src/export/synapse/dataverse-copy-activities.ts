/**
 * The Dataverse side of the inbound path: the Dataverse datasets (typed where key maps are read) and the Copy
 * activities that write a pipeline's sink table to Dataverse (upsert by alternate key), with the connector's interim
 * types. A block of its own: the inbound and replay pipelines write with the same copies, the exporter emits the
 * datasets.
 */
import { FerryError } from '../../core/errors.js';
import type { ConversionPlan } from '../../core/mapping.js';
import type { PipelineDefinition } from '../../core/pipeline.js';
import type { TableMetadata } from '../../core/table-metadata.js';
import { STATE_SINK_COLUMNS } from '../../dialects/sql-dialect.js';
import type { SynapseExportSettings } from './export-settings.js';
import { ANNOTATION, after, policy, ref, STAGING_SCHEMA, sqlTableRef } from './pipeline-blocks.js';
import type { InboundView } from './stage-views.js';
import { NAMES, type SynapseArtifact } from './synapse-artifacts.js';

/**
 * A Dataverse table. Where key maps are read from it, its schema names the columns read with their types ("import
 * schema"): without one the connector infers columns from the first rows, drops columns null in them, and fails on
 * an empty table ("The valid structure information … are required for Dynamics source").
 */
export function dataverseDataset(table: string, meta: TableMetadata, columns: readonly string[]): SynapseArtifact {
  const typeOf = (c: string) => {
    const a = meta.Attributes.find((x) => x.LogicalName === c);
    if (!a) throw new FerryError('export.sink_mapping', `Key-map column \`${c}\` is not an attribute of \`${table}\`.`);
    return DATAVERSE_INTERIM_TYPES[a.AttributeTypeName.Value] ?? 'String';
  };
  return {
    kind: 'dataset',
    name: NAMES.dataverseEntity(table),
    properties: {
      type: 'CommonDataServiceForAppsEntity',
      annotations: [ANNOTATION],
      linkedServiceName: ref(NAMES.dataverse),
      typeProperties: { entityName: table },
      schema: columns.map((name) => ({ name, type: typeOf(name) })),
    },
  };
}

/** Interim types of the Dataverse connector per attribute type ("Data type mapping for Dynamics"). */
export const DATAVERSE_INTERIM_TYPES: Readonly<Record<string, string>> = {
  BigIntType: 'Int64',
  BooleanType: 'Boolean',
  CustomerType: 'Guid',
  DateTimeType: 'DateTime',
  DecimalType: 'Decimal',
  DoubleType: 'Double',
  EntityNameType: 'String',
  IntegerType: 'Int32',
  LookupType: 'Guid',
  MemoType: 'String',
  MoneyType: 'Decimal',
  OwnerType: 'Guid',
  PicklistType: 'Int32',
  UniqueidentifierType: 'Guid',
  StringType: 'String',
  StateType: 'Int32',
  StatusType: 'Int32',
};
/** Attribute types the Copy sink cannot write (same doc): refused at export, never emitted. */
export const COPY_SINK_UNSUPPORTED = new Set(['MultiSelectPicklistType', 'PartyListType', 'CalendarRulesType']);
export const DATAVERSE_DOC = 'learn.microsoft.com/azure/data-factory/connector-dynamics-crm-office-365';

/** Column names of the sink query's SELECT list (`SELECT [a], [b@EntityReference] FROM …`). */
export function sinkQueryColumns(sinkQuery: string): string[] {
  const select = sinkQuery.replace(/^(\s*--[^\n]*\n)*/, '').match(/^\s*SELECT\s+([\s\S]*?)\s+FROM\s/i)?.[1];
  if (!select)
    throw new FerryError('export.sink_mapping', `Sink query \`${sinkQuery.slice(0, 80)}\` is not a SELECT list.`);
  return select.split(',').map((c) => c.trim().replace(/^\[|\]$/g, ''));
}

/**
 * The Copy activities writing the sink table to Dataverse (connector-dynamics-crm-office-365):
 * - an explicit `translator` with the sink type of every column (the connector needs column types; only mapped
 *   columns are written);
 * - a multi-target attribute (Owner, Customer, a lookup with several targets) always gets `<col>@EntityReference`:
 *   from the conversion when the mapping allows several targets, else as a constant `additionalColumns` entry;
 * - MultiSelectPicklist columns are not copied: `multiSelectActivities` writes them after the copies;
 * - PartyList / CalendarRules columns are refused here, naming the column, unless the settings' `omitColumns` leave
 *   them out of the Synapse export (the local runner still writes them);
 * - `writeBatchSize` at most 10 and `parallelCopies` set, as the connector doc advises against throttling;
 * - nulls: the local writer sends a null for `nullMeans: 'clear'` columns and omits it for `'omit'` ones (lookups by
 *   default). One copy cannot do both, so columns that clear go with `ignoreNullValues: false` and columns that
 *   omit with `ignoreNullValues: true` in a second copy of the same rows (two upserts per row, both idempotent).
 */
export function dataverseCopyActivities(
  def: PipelineDefinition,
  plan: ConversionPlan,
  meta: TableMetadata,
  sinkQuery: string,
  sinkTable: string,
  view: InboundView,
  settings: SynapseExportSettings,
  /** The state copy's query (`state-sink-query`): state columns then go in a copy of their own, after the others. */
  stateSinkQuery?: string,
): { name: string; [k: string]: unknown }[] {
  const attributes = new Map(meta.Attributes.map((a) => [a.LogicalName, a]));
  const omitted = new Set(settings.omitColumns[def.name] ?? []);
  // An entry naming a column the mapping does not write has no effect (a typo cannot hide a column: an unsupported
  // column not listed is refused below).
  const typeOf = (column: string): string => {
    const a = attributes.get(column);
    if (!a)
      throw new FerryError(
        'export.sink_mapping',
        `Sink column \`${column}\` is not an attribute of \`${meta.LogicalName}\`.`,
      );
    return a.AttributeTypeName.Value;
  };
  const columns = sinkQueryColumns(sinkQuery);
  const keyColumns = plan.key.map((k) => k.attribute);
  const clear: string[] = [];
  const omit: string[] = [];
  const constants: { name: string; value: string }[] = [];
  const state: string[] = [];
  for (const c of plan.columns) {
    if (!c.inPayload) continue;
    const type = typeOf(c.attribute);
    // Written after the copies by UpsertMultiple Web activities (multiSelectActivities).
    if (type === 'MultiSelectPicklistType') {
      if (omitted.has(c.attribute))
        throw new FerryError(
          'export.invalid_setting',
          `Setting \`omitColumns.${def.name}\` lists \`${c.attribute}\`, a MultiSelectPicklist: the Synapse export now writes multi-select columns (UpsertMultiple Web activities after the copies, see synapse/README.md), so it is no longer left out — remove it from \`omitColumns\` in synapse/settings.json.`,
        );
      continue;
    }
    if (COPY_SINK_UNSUPPORTED.has(type)) {
      if (omitted.has(c.attribute)) continue;
      throw new FerryError(
        'export.copy_sink_unsupported',
        `Column \`${c.attribute}\` of \`${def.name}\` (${meta.LogicalName}) is a ${type.replace(/Type$/, '')}, which the Dataverse Copy sink does not support (${DATAVERSE_DOC}, "Data type mapping for Dynamics"), so the Synapse export cannot write it. Remove it from the mapping, or list it under \`omitColumns\` → \`${def.name}\` in synapse/settings.json to export the pipeline without it (the local runner still writes it).`,
      );
    }
    if (omitted.has(c.attribute))
      throw new FerryError(
        'export.invalid_setting',
        `Setting \`omitColumns.${def.name}\` lists \`${c.attribute}\`, a ${type.replace(/Type$/, '')} the Copy sink can write; only columns the sink cannot write may be omitted — remove it from synapse/settings.json.`,
      );
    if (!columns.includes(c.attribute))
      throw new FerryError(
        'export.sink_mapping',
        `The sink query of \`${def.name}\` has no column \`${c.attribute}\`.`,
      );
    // Sent by the state copy once the records exist.
    if (stateSinkQuery !== undefined && (STATE_SINK_COLUMNS as readonly string[]).includes(c.attribute)) {
      state.push(c.attribute);
      continue;
    }
    const group = c.nullMeans === 'omit' ? omit : clear;
    group.push(c.attribute);
    const entityRef = `${c.attribute}@EntityReference`;
    const a = attributes.get(c.attribute);
    const multiTarget =
      type === 'OwnerType' || type === 'CustomerType' || (a && 'Targets' in a && (a.Targets?.length ?? 0) > 1);
    if (!multiTarget) continue;
    if (columns.includes(entityRef)) group.push(entityRef);
    else if (c.rule === 'lookup' && c.targets.length === 1) {
      constants.push({ name: entityRef, value: c.targets[0]!.table });
      group.push(entityRef);
    } else
      throw new FerryError(
        'export.sink_mapping',
        `Lookup \`${c.attribute}\` of \`${def.name}\` is multi-target, but the conversion gives no target table for it; name the lookup's target table(s) in the mapping.`,
      );
  }
  const sinkType = (column: string) =>
    column.endsWith('@EntityReference') ? 'String' : (DATAVERSE_INTERIM_TYPES[typeOf(column)] ?? 'String');
  const batch = Math.min(view.upsert.batchSize ?? 10, 10);
  const copy = (name: string, cols: string[], ignoreNullValues: boolean, dependsOn: unknown[], query = sinkQuery) => {
    const mapped = [...keyColumns, ...cols];
    const extra = constants.filter((k) => mapped.includes(k.name));
    return {
      name,
      type: 'Copy',
      dependsOn,
      // Upserts by key are idempotent: a retry repeats rows already written, harmlessly.
      policy: policy('0.04:00:00', 2),
      userProperties: [],
      typeProperties: {
        source: {
          type: 'AzureSqlSource',
          sqlReaderQuery: query,
          queryTimeout: '02:00:00',
          partitionOption: 'None',
          ...(extra.length ? { additionalColumns: extra } : {}),
        },
        sink: {
          type: 'CommonDataServiceForAppsSink',
          writeBehavior: 'Upsert',
          alternateKeyName: plan.keyName,
          ignoreNullValues,
          writeBatchSize: batch,
          maxConcurrentConnections: settings.dataverseParallelCopies,
        },
        enableStaging: false,
        parallelCopies: settings.dataverseParallelCopies,
        translator: {
          type: 'TabularTranslator',
          mappings: mapped.map((c) => ({ source: { name: c }, sink: { name: c, type: sinkType(c) } })),
        },
        // Covers rows the copy cannot convert to the column types (fault tolerance); a row the Dataverse service
        // refuses fails the copy with DynamicsOperationFailed (rows before it stay written; FinishRun does not run).
        enableSkipIncompatibleRow: true,
        redirectIncompatibleRowSettings: {
          linkedServiceName: ref(NAMES.adls),
          path: `${settings.lakeFileSystem}/errors/${def.name}`,
        },
      },
      inputs: [sqlTableRef(STAGING_SCHEMA, sinkTable)],
      outputs: [{ referenceName: NAMES.dataverseEntity(meta.LogicalName), type: 'DatasetReference' }],
    };
  };
  const first = copy('CopyStagingToDataverse', clear.length ? clear : omit, !clear.length, [
    after('ConvertToDataverse'),
  ]);
  const copies = [first];
  if (clear.length && omit.length)
    copies.push(copy('CopyLookupsToDataverse', omit, true, [after('CopyStagingToDataverse')]));
  // A new record cannot be created in a non-default state: Dataverse ignores statecode on create and refuses a
  // statuscode of another state (0x80040203). The copies above created the records without their state columns; an
  // upsert of an existing record is an update, which may set them (the local writer's second request).
  if (stateSinkQuery !== undefined && state.length)
    copies.push(copy('CopyStateToDataverse', state, true, [after(copies[copies.length - 1]!.name)], stateSinkQuery));
  return copies;
}
