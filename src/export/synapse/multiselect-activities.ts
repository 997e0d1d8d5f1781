/**
 * Multi-select choice columns on the Synapse path: the Dataverse Copy sink cannot write a MultiSelectPicklist, so
 * after the copies the values go out as `UpsertMultiple` requests by Web activities (chunks prepared in staging, a
 * ForEach posting them). A block of its own, used by the inbound pipeline and its replay pipeline alike.
 */
import { FerryError } from '../../core/errors.js';
import type { ColumnPlan } from '../../core/mapping.js';
import type { PipelineDefinition } from '../../core/pipeline.js';
import { supportsBulk, type TableMetadata } from '../../core/table-metadata.js';
import type { StepRegistry, SynapseConversion } from '../../dialects/sql-steps.js';
import type { SynapseExportSettings } from './export-settings.js';
import {
  after,
  chainAfter,
  DATAVERSE_WEB_HEADERS,
  dataverseApiUrl,
  dataverseUrlParameter,
  dataverseWebAuthentication,
  expr,
  firstRowLookup,
  pipelineStep,
  policy,
  STAGING_SCHEMA,
  scriptActivity,
  sqlTableRef,
  stepQuery,
  stepText,
} from './pipeline-blocks.js';
import type { InboundView } from './stage-views.js';
import { NAMES } from './synapse-artifacts.js';

/** A ForEach takes at most 100,000 items (learn.microsoft.com/azure/data-factory/control-flow-for-each-activity). */
export const MULTISELECT_MAX_CHUNKS = 100_000;
/**
 * A chunk's body is read by a Lookup, whose output is at most 4 MB (control-flow-lookup-activity): a chunk is kept
 * under half of it, room for the JSON escaping of the body inside the Lookup's output.
 */
const MULTISELECT_CHUNK_BYTES = 2 * 1024 * 1024;
/** The upsert stage's default `batchSize` (the local writer's targets per UpsertMultiple). */
const DEFAULT_UPSERT_BATCH = 100;
/** "Up to 150 options can be selected" in a multi-select choice column (learn.microsoft.com, multi-select-picklist). */
const MULTISELECT_MAX_SELECTED = 150;

/**
 * The Web API takes a MultiSelectPicklist as a string of comma-separated option values (`"ferry_interests":
 * "100000000,100000002"`, learn.microsoft.com/power-apps/developer/data-platform/multi-select-picklist), which the
 * Dataverse Copy sink cannot write. After the copies created the records, the values go out as the local writer
 * sends them: `UpsertMultiple` requests by alternate key (`@odata.id`, webapi/reference/upsertmultiple) of at most
 * the pipeline's `batchSize` targets. Per group of columns (those that clear on null: a null is sent as `null`, as
 * the local writer sends it; those that omit on null: left out when null):
 * - `PrepareMultiSelect` (Script, `multiselect-chunks`) writes the request bodies into a staging table, one row per
 *   chunk, and returns the chunk numbers — only numbers go through the Script's output (at most 5,000 rows / 2 MB),
 *   never the bodies;
 * - `WriteMultiSelect` (ForEach over the numbers, `batchCount` from `dataverseParallelCopies`):
 *   `LookupMultiSelectChunk` reads one body (`multiselect-chunk`, first row: under the Lookup's 4 MB),
 *   `UpsertMultiSelectChunk` (Web activity) POSTs it to `<dataverseUrl>/api/data/v9.2/<entity set>/
 *   Microsoft.Dynamics.CRM.UpsertMultiple`.
 * A chunk the service refuses (an UpsertMultiple on a standard table rolls back whole) fails its Web activity, the
 * ForEach and the run: nothing after it runs (applied versions, processed files, cursor), so the next run repeats
 * the window — as a row the service refuses fails the copies. Upserts by key are idempotent, so the retries
 * (activity policy) and the repeated window only write the same values again. None when the mapping has no
 * multi-select column. The table must take bulk messages (refused at export otherwise).
 */
export function multiSelectActivities(input: {
  def: PipelineDefinition;
  conversion: SynapseConversion;
  meta: TableMetadata;
  view: InboundView;
  steps: StepRegistry;
  settings: SynapseExportSettings;
  /** Step name prefix: `''` in the inbound pipeline, `replay-` in its replay pipeline. */
  stepPrefix: string;
  dependsOn: unknown[];
}): { activities: Record<string, unknown>[]; last?: string; parameters: Record<string, unknown> } {
  const { def, conversion, meta, view, steps, settings } = input;
  const { plan, names } = conversion;
  const columns = plan.columns.filter(
    (c): c is ColumnPlan & { rule: 'multiselect' } => c.inPayload && c.rule === 'multiselect',
  );
  if (columns.length === 0) return { activities: [], parameters: {} };
  if (!supportsBulk(meta))
    throw new FerryError(
      'export.copy_sink_unsupported',
      `Column \`${columns[0]!.attribute}\` of \`${def.name}\` (${meta.LogicalName}) is a MultiSelectPicklist, which the Synapse export writes with UpsertMultiple, but \`${meta.LogicalName}\` does not take bulk messages (SupportsBulk: false in its metadata snapshot). Remove the column from the mapping, or load this pipeline with the local runner (ferry run).`,
    );
  // Worst case of one target's bytes: annotations, the key predicate (quotes doubled, 3 bytes per UTF-16 unit),
  // and each column's most selected values.
  const keyBytes = plan.key.reduce((n, k) => {
    const a = meta.Attributes.find((x) => x.LogicalName === k.attribute);
    const max = a && 'MaxLength' in a && typeof a.MaxLength === 'number' ? a.MaxLength : 4000;
    return n + k.attribute.length + 3 + 6 * max;
  }, 0);
  const rowBytes = (group: readonly (ColumnPlan & { rule: 'multiselect' })[]) =>
    120 +
    plan.table.length +
    plan.entitySetName.length +
    keyBytes +
    group.reduce((n, c) => {
      const digits = Math.max(1, ...c.options.map((o) => String(o.value).length));
      return n + c.attribute.length + 6 + Math.min(MULTISELECT_MAX_SELECTED, c.options.length) * (digits + 1);
    }, 0);
  const batch = view.upsert.batchSize ?? DEFAULT_UPSERT_BATCH;
  const groups = [
    { suffix: '', columns: columns.filter((c) => c.nullMeans === 'clear'), includeNulls: true },
    { suffix: 'Omit', columns: columns.filter((c) => c.nullMeans !== 'clear'), includeNulls: false },
  ].filter((g) => g.columns.length > 0);
  const activities: Record<string, unknown>[] = [];
  let dependsOn = input.dependsOn;
  let last: string | undefined;
  for (const g of groups) {
    const part = g.suffix ? `-${g.suffix.toLowerCase()}` : '';
    const chunks = {
      schema: '',
      table: `${names.sink.table}_multiselect${g.suffix ? `_${g.suffix.toLowerCase()}` : ''}`,
    };
    const prepare = pipelineStep(steps, def.name, `${input.stepPrefix}multiselect-chunks${part}`, {
      kind: 'multiselect-chunks',
      conversion,
      columns: g.columns.map((c) => c.attribute),
      includeNulls: g.includeNulls,
      chunkRows: Math.max(1, Math.min(batch, Math.floor(MULTISELECT_CHUNK_BYTES / rowBytes(g.columns)))),
      maxChunks: MULTISELECT_MAX_CHUNKS,
      chunks,
    });
    const chunk = pipelineStep(
      steps,
      def.name,
      `${input.stepPrefix}multiselect-chunk${part}`,
      { kind: 'multiselect-chunk', chunks },
      [{ name: 'chunk', expression: '@item()', type: 'number' }],
    );
    const prepareName = `PrepareMultiSelect${g.suffix}`;
    const lookupName = `LookupMultiSelectChunk${g.suffix}`;
    const forEachName = `WriteMultiSelect${g.suffix}`;
    activities.push(scriptActivity(prepareName, NAMES.sql, stepText(prepare), dependsOn, [], 2, 'Query'), {
      name: forEachName,
      type: 'ForEach',
      dependsOn: [after(prepareName)],
      userProperties: [],
      typeProperties: {
        items: expr(`@json(activity('${prepareName}').output.resultSets[0].rows[0].chunks)`),
        isSequential: false,
        // ForEach's batchCount is at most 50.
        batchCount: Math.min(settings.dataverseParallelCopies, 50),
        activities: [
          firstRowLookup(lookupName, expr(stepQuery(chunk)), sqlTableRef(STAGING_SCHEMA, chunks.table)),
          {
            name: `UpsertMultiSelectChunk${g.suffix}`,
            type: 'WebActivity',
            dependsOn: [after(lookupName)],
            // Upserts by key are idempotent: a retry writes the same values again.
            policy: policy('0.00:30:00', 2),
            userProperties: [],
            typeProperties: {
              method: 'POST',
              url: dataverseApiUrl(`${plan.entitySetName}/Microsoft.Dynamics.CRM.UpsertMultiple`),
              headers: DATAVERSE_WEB_HEADERS,
              body: expr(`@activity('${lookupName}').output.firstRow.body`),
              httpRequestTimeout: '00:10:00',
              authentication: dataverseWebAuthentication(),
            },
          },
        ],
      },
    });
    dependsOn = [after(forEachName)];
    last = forEachName;
  }
  return { activities, last, parameters: dataverseUrlParameter(settings) };
}

/**
 * Places the multi-select block in a pipeline's chain of Dataverse writes: after the copies that create the records,
 * before the state copy and the deferred lookups' second pass (and so before the run's applied versions and
 * processed files). The same in the inbound pipeline and its replay pipeline. Returns the block and the name of the
 * chain's last write.
 */
export function multiSelectAfterCopies(
  input: Omit<Parameters<typeof multiSelectActivities>[0], 'dependsOn'>,
  dataverseCopies: readonly Record<string, unknown>[],
  deferred: { readonly activities: readonly Record<string, unknown>[]; readonly last?: string },
): { multiSelect: ReturnType<typeof multiSelectActivities>; lastCopy: string } {
  const anchor = String(dataverseCopies.filter((c) => c.name !== 'CopyStateToDataverse').at(-1)!.name);
  const multiSelect = multiSelectActivities({ ...input, dependsOn: [after(anchor)] });
  const lastCopy = chainAfter(
    [...dataverseCopies, ...deferred.activities],
    anchor,
    multiSelect.last,
    deferred.last ?? String(dataverseCopies[dataverseCopies.length - 1]!.name),
  );
  return { multiSelect, lastCopy };
}
