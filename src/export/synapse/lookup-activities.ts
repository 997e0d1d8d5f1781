/**
 * Lookups on the Synapse path: the check of the lookup targets before the copies (a key-map entry of a record
 * deleted in Dataverse is dropped, so its row is rejected as the local runner rejects it) and the second pass for
 * lookups to the pipeline's own table whose target is a row of the same run. A block of its own, used by the inbound
 * pipeline and its replay pipeline alike.
 */
import { FerryError } from '../../core/errors.js';
import type { ConversionPlan } from '../../core/mapping.js';
import type { PipelineDefinition } from '../../core/pipeline.js';
import { loadMetadata, type TableMetadata } from '../../core/table-metadata.js';
import {
  type ConversionNames,
  type KeymapTarget,
  lookupCheckTable,
  lookupSeenTable,
  type RawColumn,
  type StepRegistry,
  type SynapseConversion,
} from '../../dialects/sql-steps.js';
import { DATAVERSE_INTERIM_TYPES } from './dataverse-copy-activities.js';
import {
  after,
  expr,
  firstRowLookup,
  pipelineStep,
  policy,
  runParams,
  STAGING_SCHEMA,
  scriptActivity,
  sqlTableRef,
  stepQuery,
  stepText,
} from './pipeline-blocks.js';
import { NAMES } from './synapse-artifacts.js';

/** Key-map ids per FetchXML query of the lookup-target check (about 25 KB of `<value>` elements). */
export const LOOKUP_CHECK_IDS_PER_QUERY = 500;

/**
 * The check of the lookup targets before the copies. An incremental key-map read cannot see a record deleted in
 * Dataverse, and a lookup sent with its GUID is refused (0x80040217), failing the copy after the rows before it were
 * written. So, per key-map table: `ListLookupTargets_<table>` numbers the key-map ids the converted rows point at in
 * chunks; `CheckLookupTargets_<table>` (ForEach, one chunk at a time) reads each chunk's ids
 * (`ReadLookupTargetChunk_<table>`) and the records among them that exist (`CopyLookupTargets_<table>`, FetchXML
 * `in` over the ids); `ApplyLookupTargetCheck` drops the key-map entries not found and builds the sink again, so such
 * a row is rejected `lookup.target_missing` (or deferred, when its target is a row of the run) as the local runner
 * rejects it, before anything is written. None without a key map.
 */
export async function lookupTargetCheckActivities(
  def: PipelineDefinition,
  conversion: SynapseConversion,
  steps: StepRegistry,
  metadataDir: string,
  runParameters: readonly { name: string; expression: string; type: 'string'; script: true }[],
  /** Prefix of the step names (`replay-` in the replay pipeline, whose conversion has its own tables). */
  stepPrefix = '',
): Promise<{ activities: Record<string, unknown>[]; last?: string }> {
  const { names } = conversion;
  if (conversion.keymapTargets.length === 0) return { activities: [] };
  const activities: Record<string, unknown>[] = [];
  const checks: string[] = [];
  for (const t of conversion.keymapTargets) {
    const list = pipelineStep(steps, def.name, `${stepPrefix}lookup-target-chunks:${t.table}`, {
      kind: 'lookup-target-chunks',
      conversion,
      table: t.table,
      chunkSize: LOOKUP_CHECK_IDS_PER_QUERY,
      seenColumns: await keymapRawColumns(t, metadataDir),
    });
    const chunk = pipelineStep(
      steps,
      def.name,
      `${stepPrefix}lookup-target-chunk:${t.table}`,
      { kind: 'lookup-target-chunk', conversion, table: t.table },
      [{ name: 'chunk', expression: '@item().chunk', type: 'number' }],
    );
    const seen = lookupSeenTable(names, t.table).table;
    const listName = `ListLookupTargets_${t.table}`;
    const readName = `ReadLookupTargetChunk_${t.table}`;
    activities.push(scriptActivity(listName, NAMES.sql, stepText(list), [after('ConvertToDataverse')], [], 2, 'Query'));
    activities.push({
      name: `CheckLookupTargets_${t.table}`,
      type: 'ForEach',
      dependsOn: [after(listName)],
      userProperties: [],
      typeProperties: {
        items: expr(`@activity('${listName}').output.resultSets[0].rows`),
        isSequential: true,
        activities: [
          firstRowLookup(
            readName,
            expr(stepQuery(chunk)),
            sqlTableRef(STAGING_SCHEMA, lookupCheckTable(names, t.table).table),
          ),
          {
            name: `CopyLookupTargets_${t.table}`,
            type: 'Copy',
            dependsOn: [after(readName)],
            policy: policy('0.02:00:00', 2),
            userProperties: [],
            typeProperties: {
              source: {
                type: 'CommonDataServiceForAppsSource',
                query: expr(
                  `<fetch mapping="logical"><entity name="${t.table}"><attribute name="${t.idAttribute}" />${t.keyAttributes.map((a) => `<attribute name="${a}" />`).join('')}<filter type="and"><condition attribute="${t.idAttribute}" operator="in">@{activity('${readName}').output.firstRow.ids}</condition></filter></entity></fetch>`,
                ),
              },
              // Appends: `ListLookupTargets_<table>` emptied the table before the first chunk.
              sink: { type: 'AzureSqlSink', tableOption: 'autoCreate', writeBatchSize: 10000 },
              enableStaging: false,
            },
            inputs: [{ referenceName: NAMES.dataverseEntity(t.table), type: 'DatasetReference' }],
            outputs: [sqlTableRef(STAGING_SCHEMA, seen)],
          },
        ],
      },
    });
    checks.push(`CheckLookupTargets_${t.table}`);
  }
  const apply = pipelineStep(
    steps,
    def.name,
    `${stepPrefix}apply-lookup-check`,
    { kind: 'apply-lookup-check', conversion },
    [...runParameters],
  );
  activities.push(
    scriptActivity(
      'ApplyLookupTargetCheck',
      NAMES.sql,
      stepText(apply),
      checks.map((c) => after(c)),
      runParams(def.name),
    ),
  );
  return { activities, last: 'ApplyLookupTargetCheck' };
}

/** The columns of a key-map raw table (`<prefix>keymap_<table>_raw`): the id and the key attributes, typed. */
export async function keymapRawColumns(t: KeymapTarget, metadataDir: string): Promise<RawColumn[]> {
  const meta = await loadMetadata(metadataDir, t.table);
  return [t.idAttribute, ...t.keyAttributes].map((c) => ({ name: c, type: rawColumnType(meta, c) }));
}

/** The typed column of a key-map raw table: the connector's interim type of the attribute. */
function rawColumnType(meta: TableMetadata, column: string): RawColumn['type'] {
  if (column === meta.PrimaryIdAttribute) return 'uuid';
  const a = meta.Attributes.find((x) => x.LogicalName === column);
  if (!a)
    throw new FerryError(
      'export.sink_mapping',
      `Key-map column \`${column}\` is not an attribute of \`${meta.LogicalName}\`.`,
    );
  switch (DATAVERSE_INTERIM_TYPES[a.AttributeTypeName.Value]) {
    case 'Guid':
      return 'uuid';
    case 'Int32':
    case 'Int64':
      return 'bigint';
    case 'Decimal':
      return 'decimal';
    case 'Double':
      return 'double';
    case 'DateTime':
      return 'timestamp';
    case 'Boolean':
      return 'boolean';
    default:
      return 'text';
  }
}

/** True when the mapping has a lookup to its own table by key, whose key map the pipeline reads. */
export function defersSelfLookups(plan: ConversionPlan, keymapTargets: readonly KeymapTarget[]): boolean {
  return (
    keymapTargets.some((t) => t.table === plan.table) &&
    plan.columns.some(
      (c) => c.inPayload && c.rule === 'lookup' && c.targets.some((t) => t.table === plan.table && t.key !== null),
    )
  );
}

/**
 * The second pass for lookups to the pipeline's own table whose target is a row of the same run (the local writer
 * defers such a row until its target is written): after the copies, `CopyKeyMapAfterWrite_<table>` reads the
 * records modified since this run started (`keymapCopy`: the pipeline's key-map copy of its own table),
 * `ResolveDeferredLookups` merges them into the key map and resolves the deferred lookups (rejecting those whose
 * target still does not exist), `CopyDeferredLookupsToDataverse` sends the key and those lookups
 * (`ignoreNullValues: true`). None when the mapping has no such lookup. The inbound and replay pipelines use it.
 */
export function deferredLookupActivities(
  def: PipelineDefinition,
  plan: ConversionPlan,
  conversion: {
    plan: ConversionPlan;
    names: ConversionNames;
    keymapTargets: KeymapTarget[];
    deferSelfLookups: boolean;
  },
  steps: StepRegistry,
  copies: readonly { name: string; [k: string]: unknown }[],
  keymapCopy: ((name: string, dependsOn: unknown[]) => Record<string, unknown>) | undefined,
  runParameters: readonly { name: string; expression: string; type: 'string'; script: true }[],
  /** Prefix of the step names (`replay-` in the replay pipeline, whose conversion has its own tables). */
  stepPrefix = '',
): { activities: Record<string, unknown>[]; copies: { name: string; [k: string]: unknown }[]; last?: string } {
  const self = plan.columns.filter(
    (c) => c.inPayload && c.rule === 'lookup' && c.targets.some((t) => t.table === plan.table && t.key !== null),
  );
  if (!conversion.deferSelfLookups || self.length === 0 || !keymapCopy) return { activities: [], copies: [] };
  const resolve = pipelineStep(
    steps,
    def.name,
    `${stepPrefix}resolve-deferred`,
    { kind: 'resolve-deferred', conversion },
    [...runParameters],
  );
  const sinkQuery = pipelineStep(steps, def.name, `${stepPrefix}deferred-sink-query`, {
    kind: 'deferred-sink-query',
    conversion,
  });
  const reread = keymapCopy(`CopyKeyMapAfterWrite_${plan.table}`, [after(copies[copies.length - 1]!.name)]);
  const script = scriptActivity(
    'ResolveDeferredLookups',
    NAMES.sql,
    stepText(resolve),
    [after(String(reread.name))],
    runParams(def.name),
  );
  // The same sink settings, mapping only the key and the deferred lookups (and their `@EntityReference`).
  const wanted = new Set([
    ...plan.key.map((k) => k.attribute),
    ...self.flatMap((c) => [c.attribute, `${c.attribute}@EntityReference`]),
  ]);
  type Mapping = { source: { name: string } };
  const mappings = copies.flatMap(
    (c) => ((c.typeProperties as { translator: { mappings: Mapping[] } }).translator.mappings ?? []) as Mapping[],
  );
  const seen = new Set<string>();
  const mapped = mappings.filter(
    (m) => wanted.has(m.source.name) && !seen.has(m.source.name) && seen.add(m.source.name),
  );
  const constants = copies.flatMap(
    (c) => (c.typeProperties as { source: { additionalColumns?: { name: string }[] } }).source.additionalColumns ?? [],
  );
  const extra = constants.filter((k, i) => seen.has(k.name) && constants.findIndex((x) => x.name === k.name) === i);
  const base = copies[0]!;
  const tp = base.typeProperties as Record<string, unknown> & {
    source: Record<string, unknown>;
    sink: Record<string, unknown>;
  };
  const { additionalColumns: _unused, ...source } = tp.source;
  const copy = {
    ...base,
    name: 'CopyDeferredLookupsToDataverse',
    dependsOn: [after('ResolveDeferredLookups')],
    typeProperties: {
      ...tp,
      source: {
        ...source,
        sqlReaderQuery: stepQuery(sinkQuery),
        ...(extra.length ? { additionalColumns: extra } : {}),
      },
      sink: { ...tp.sink, ignoreNullValues: true },
      translator: { type: 'TabularTranslator', mappings: mapped },
    },
    inputs: [sqlTableRef(STAGING_SCHEMA, `${conversion.names.sink.table}_deferred`)],
  };
  return { activities: [reread, script, copy], copies: [copy], last: copy.name };
}
