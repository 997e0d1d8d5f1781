/** Compiles an inbound pipeline: lake Parquet → Azure SQL staging → conversion → Dataverse Copy (upsert by alternate key). */

import { CLOSE_MESSAGES } from '../../core/close-messages.js';
import { FerryError } from '../../core/errors.js';
import type { ConversionPlan } from '../../core/mapping.js';
import type { PipelineDefinition } from '../../core/pipeline.js';
import { loadMetadata } from '../../core/table-metadata.js';
import { keymapTargetsOf, STATE_SINK_COLUMNS } from '../../dialects/sql-dialect.js';
import type { ConversionNames, KeymapTarget, StepRegistry } from '../../dialects/sql-steps.js';
import { STATE_SCHEMA } from '../../dialects/tsql/staging.js';
import { loadConversionPlan } from '../../stages/convert-to-dataverse/conversion.js';
import { closeMessageActivities, closeMessagePlan } from './close-activities.js';
import { dataverseCopyActivities } from './dataverse-copy-activities.js';
import {
  deferredLookupActivities,
  defersSelfLookups,
  keymapRawColumns,
  lookupTargetCheckActivities,
} from './lookup-activities.js';
import { multiSelectAfterCopies } from './multiselect-activities.js';
import {
  ANNOTATION,
  after,
  beginRunStep,
  dataverseUrlParameter,
  describe,
  type ExportOptions,
  expr,
  failRunActivity,
  finishRunStep,
  P,
  type PipelineOut,
  pipelineStep,
  policy,
  runParams,
  STAGING_PREFIX,
  STAGING_SCHEMA,
  scriptActivity,
  sqlTableRef,
  stepFile,
  stepQuery,
  stepText,
  thresholdCheck,
  WINDOW_PARAMETERS,
  watermarkLookup,
} from './pipeline-blocks.js';
import type { InboundView } from './stage-views.js';
import { type GeneratedFile, NAMES, type SynapseArtifact, snake } from './synapse-artifacts.js';

export async function inboundPipeline(
  def: PipelineDefinition,
  view: InboundView,
  options: ExportOptions,
  steps: StepRegistry,
): Promise<PipelineOut> {
  const { settings } = options;
  const base = snake(def.name);
  const table = view.upsert.table;
  // The same plan the local runner converts with: one definition, two executors.
  const plan = await loadConversionPlan(view.mapping.spec, options.metadataDir);
  const names: ConversionNames = {
    prefix: STAGING_PREFIX,
    staged: { schema: '', table: `${STAGING_PREFIX}${base}_staged` },
    rows: { schema: '', table: `${STAGING_PREFIX}${base}_rows` },
    work: { schema: '', table: `${STAGING_PREFIX}${base}_work` },
    converted: { schema: '', table: `${STAGING_PREFIX}${base}_converted` },
    sink: { schema: '', table: `${STAGING_PREFIX}${base}_sink` },
    rejects: { schema: STATE_SCHEMA, table: 'rejects' },
    keymap: { schema: STATE_SCHEMA, table: 'keymap' },
    appliedVersions: { schema: STATE_SCHEMA, table: 'applied_versions' },
  };
  const keymapTargets: KeymapTarget[] = [];
  for (const t of keymapTargetsOf(plan)) {
    keymapTargets.push({ ...t, idAttribute: (await loadMetadata(options.metadataDir, t.table)).PrimaryIdAttribute });
  }
  const _keyName = plan.keyName;
  // Lookups to the own table by key are resolved in a second pass when its key map is read (deferredLookupActivities).
  const deferSelfLookups = defersSelfLookups(plan, keymapTargets);
  const conversion = { plan, names, keymapTargets, deferSelfLookups };
  const runParameters = [
    P.scriptRunId,
    { name: 'pipeline', expression: def.name, type: 'string', script: true },
  ] as const;
  const convertStep = pipelineStep(steps, def.name, 'convert', { kind: 'convert', conversion }, runParameters);
  const sinkStep = pipelineStep(steps, def.name, 'sink-query', { kind: 'sink-query', conversion });
  const saveStep = pipelineStep(steps, def.name, 'save-versions', { kind: 'save-versions', conversion }, runParameters);
  const source = `lake:${view.source.folder}`;
  const sqlPath = (f: string) => `sql/tsql/${def.name}/${f}`;

  const activities: Record<string, unknown>[] = [
    scriptActivity(
      'BeginRun',
      NAMES.sql,
      expr(stepText(beginRunStep(steps, def.name, [names.staged.table]))),
      [],
      [],
      2,
    ),
    watermarkLookup(steps, def.name, source, '1900-01-01T00:00:00Z'),
    {
      name: 'SetWindowEnd',
      type: 'SetVariable',
      dependsOn: [after('LookupWatermark')],
      userProperties: [],
      typeProperties: {
        variableName: 'windowEnd',
        value: expr(`@if(empty(pipeline().parameters.windowEnd), utcNow(), pipeline().parameters.windowEnd)`),
      },
    },
    {
      // The files SelectNewFiles chose (not yet processed, oldest name first), one Copy each, one after the other
      // (the first creates the staging table from the file's schema; the next ones append to it).
      name: 'CopyNewFiles',
      type: 'ForEach',
      dependsOn: [after('SetWindowEnd')],
      userProperties: [],
      typeProperties: {
        items: expr(`@activity('SelectNewFiles').output.resultSets[0].rows`),
        isSequential: true,
        activities: [
          {
            name: 'CopyParquetToStaging',
            type: 'Copy',
            dependsOn: [],
            policy: policy('0.02:00:00', 2),
            userProperties: [],
            typeProperties: {
              source: {
                type: 'ParquetSource',
                storeSettings: {
                  type: 'AzureBlobFSReadSettings',
                  // One named file directly in the folder: Spark's uncommitted part files under `_temporary/` are
                  // never read (the local runner skips `_`/`.` segments).
                  recursive: false,
                  wildcardFolderPath: view.source.folder,
                  wildcardFileName: expr(`@item().name`),
                  enablePartitionDiscovery: false,
                },
                additionalColumns: [
                  { name: '__source_file', value: '$$FILEPATH' },
                  { name: '__run_id', value: expr('@pipeline().RunId') },
                ],
              },
              sink: {
                type: 'AzureSqlSink',
                tableOption: 'autoCreate',
                writeBatchSize: 10000,
                sqlWriterUseTableLock: true,
              },
              enableStaging: false,
              // By name, only the columns the conversion reads: a file with a column the mapping does not use (one
              // added at the source) appends to the table the first file created, as the local runner ignores it.
              translator: {
                type: 'TabularTranslator',
                mappings: [...new Set([...plan.sourceColumns, plan.changeTimestamp]), '__source_file', '__run_id'].map(
                  (c) => ({ source: { name: c }, sink: { name: c } }),
                ),
              },
            },
            inputs: [
              {
                referenceName: NAMES.lakeParquet,
                type: 'DatasetReference',
                parameters: { fileSystem: settings.lakeFileSystem, folderPath: view.source.folder },
              },
            ],
            outputs: [sqlTableRef(STAGING_SCHEMA, names.staged.table)],
          },
        ],
      },
    },
  ];
  // Key maps: Dataverse GUIDs of lookup targets by alternate key, so lookups become GUID columns the Copy sink takes.
  const keymapActivities: string[] = [];
  // Incremental (review defect 8): records modified since the table's watermark less an overlap, merged into the
  // key map by the conversion; a full read when the key map holds nothing of the table and once a day, which also
  // drops entries of records deleted in Dataverse (KEYMAP_OVERLAP_MINUTES, KEYMAP_FULL_EVERY_HOURS).
  const keymapCopies = new Map<
    string,
    (name: string, since: string, dependsOn: unknown[]) => Record<string, unknown>
  >();
  for (const t of keymapTargets) {
    const raw = `${STAGING_PREFIX}keymap_${t.table}_raw`;
    const truncate = pipelineStep(steps, def.name, `truncate-keymap:${t.table}`, {
      kind: 'truncate-table',
      schema: STAGING_SCHEMA,
      table: raw,
      columns: await keymapRawColumns(t, options.metadataDir),
    });
    const since = pipelineStep(
      steps,
      def.name,
      `keymap-since:${t.table}`,
      {
        kind: 'keymap-since',
        pipeline: def.name,
        table: t.table,
        entitySet: t.entitySet,
        overlapMinutes: KEYMAP_OVERLAP_MINUTES,
        fullEveryHours: KEYMAP_FULL_EVERY_HOURS,
      },
      [P.runId],
    );
    const sinceActivity = `KeyMapSince_${t.table}`;
    activities.push(
      scriptActivity(sinceActivity, NAMES.sql, expr(stepText(since)), [after('BeginRun')], [], 2, 'Query'),
    );
    const copy = (name: string, column: string, dependsOn: unknown[]) => ({
      name,
      type: 'Copy',
      dependsOn,
      policy: policy('0.02:00:00', 2),
      userProperties: [],
      typeProperties: {
        source: {
          type: 'CommonDataServiceForAppsSource',
          query: expr(
            `<fetch mapping="logical"><entity name="${t.table}"><attribute name="${t.idAttribute}" />${t.keyAttributes.map((a) => `<attribute name="${a}" />`).join('')}<filter type="and"><condition attribute="modifiedon" operator="ge" value="@{activity('${sinceActivity}').output.resultSets[0].rows[0].${column}}" /></filter></entity></fetch>`,
          ),
        },
        sink: {
          type: 'AzureSqlSink',
          tableOption: 'autoCreate',
          preCopyScript: stepQuery(truncate),
          writeBatchSize: 10000,
        },
        enableStaging: false,
      },
      inputs: [{ referenceName: NAMES.dataverseEntity(t.table), type: 'DatasetReference' }],
      outputs: [sqlTableRef(STAGING_SCHEMA, raw)],
    });
    activities.push(copy(`CopyKeyMap_${t.table}`, 'since', [after(sinceActivity)]));
    keymapCopies.set(t.table, (name, column, dependsOn) => copy(name, column, dependsOn));
    keymapActivities.push(sinceActivity, `CopyKeyMap_${t.table}`);
  }
  const state = stateColumnActivities(def, conversion, steps);
  const tableMeta = await loadMetadata(options.metadataDir, table);
  const dataverseCopies = dataverseCopyActivities(
    def,
    plan,
    tableMeta,
    stepQuery(sinkStep),
    names.sink.table,
    view,
    settings,
    state.sinkQuery,
  );
  // Lookup targets deleted in Dataverse since the last full key-map read: checked before anything is written, and
  // what comes after the conversion comes after the check.
  const targetCheck = await lookupTargetCheckActivities(def, conversion, steps, options.metadataDir, runParameters);
  if (targetCheck.last) {
    for (const a of dataverseCopies)
      a.dependsOn = (a.dependsOn as { activity: string }[]).map((d) =>
        d.activity === 'ConvertToDataverse' ? after(targetCheck.last!) : d,
      );
  }
  // Same-window lookups to the pipeline's own table (a parent and its child, a self-referencing parent): the copies
  // above send them empty; the key map of the own table is read again after them, the lookups resolved and sent.
  const ownKeymapCopy = keymapCopies.get(table);
  const deferred = deferredLookupActivities(
    def,
    plan,
    conversion,
    steps,
    dataverseCopies,
    ownKeymapCopy && ((name, dependsOn) => ownKeymapCopy(name, 'run_since', dependsOn)),
    runParameters,
  );
  const copies = [...dataverseCopies, ...deferred.copies];
  // Multi-select columns, written by Web activities once the copies created the records.
  const { multiSelect, lastCopy } = multiSelectAfterCopies(
    { def, conversion, meta: tableMeta, view, steps, settings, stepPrefix: '' },
    dataverseCopies,
    deferred,
  );
  // Won/lost rows, written open by the copies, closed with their message once every write is done.
  const closePlan = closeMessagePlan(conversion, tableMeta);
  const closing = closePlan
    ? closeMessageActivities({
        def,
        stepPrefix: def.name,
        conversion,
        close: closePlan,
        steps,
        settings,
        dependsOn: [after(lastCopy)],
      })
    : undefined;
  const lastWrite = closing?.last ?? lastCopy;
  // `rowsSkipped` is in a Copy's output only with fault tolerance on; read it null-safe so FinishRun always runs.
  const skipped = `@string(${copies
    .map((c) => `coalesce(activity('${c.name}').output?.rowsSkipped, 0)`)
    .reduce((a, b) => `add(${a}, ${b})`)})`;
  const filesParameter = (name: string, value: string) => ({
    name,
    type: 'String',
    value: expr(value),
    direction: 'Input',
  });
  const selectStep = pipelineStep(
    steps,
    def.name,
    'select-new-files',
    { kind: 'select-new-files', pipeline: def.name, source, folder: view.source.folder, limit: NEW_FILES_PER_RUN },
    [
      { name: 'files', expression: "@string(activity('FilterDeltaFiles').output.value)", type: 'string', script: true },
      { name: 'window_start', expression: '@pipeline().parameters.windowStart', type: 'string', script: true },
    ],
  );
  const selectedFiles = "@string(activity('SelectNewFiles').output.resultSets[0].rows)";
  const recordStep = pipelineStep(
    steps,
    def.name,
    'record-processed-files',
    { kind: 'record-processed-files', pipeline: def.name, source, folder: view.source.folder },
    [{ name: 'files', expression: selectedFiles, type: 'string', script: true }, P.scriptRunId],
  );
  activities.push(
    scriptActivity(
      'ConvertToDataverse',
      NAMES.sql,
      stepText(convertStep),
      [after('CopyNewFiles'), ...keymapActivities.map((a) => after(a))],
      runParams(def.name),
    ),
    ...targetCheck.activities,
    ...dataverseCopies,
    ...multiSelect.activities,
    ...deferred.activities,
    ...(closing?.activities ?? []),
    // Versions sent become the applied versions per key, so a later, older version is skipped as stale.
    scriptActivity('SaveAppliedVersions', NAMES.sql, stepText(saveStep), [after(lastWrite)], runParams(def.name), 2),
    // Every file of the run is processed once, whatever its modified time: recorded after its rows were written.
    scriptActivity(
      'RecordProcessedFiles',
      NAMES.sql,
      stepText(recordStep),
      [after('SaveAppliedVersions')],
      [
        filesParameter('files', selectedFiles),
        { name: 'run_id', type: 'String', value: '@pipeline().RunId', direction: 'Input', size: 200 },
      ],
      2,
    ),
    scriptActivity(
      'FinishRun',
      NAMES.sql,
      expr(stepText(finishRunStep(steps, def, source, true, "@variables('rowsSkipped')", "@variables('rowsCopied')"))),
      [after('IfNewFiles')],
      [],
      0,
      'Query',
    ),
    thresholdCheck(def),
    failRunActivity(steps, def.name),
  );
  // A window without a new delta file skips the copies and the conversion (their staging table would not exist:
  // the copy creates it from the files' schema) and still finishes the run, moving the cursor (review defect 2).
  const work = new Set([
    'CopyNewFiles',
    ...keymapActivities,
    'ConvertToDataverse',
    ...targetCheck.activities.map((a) => String(a.name)),
    ...dataverseCopies.map((c) => c.name),
    ...multiSelect.activities.map((a) => String(a.name)),
    ...deferred.activities.map((a) => String(a.name)),
    ...(closing?.activities ?? []).map((a) => String(a.name)),
    'SaveAppliedVersions',
    'RecordProcessedFiles',
  ]);
  const inner = activities.filter((a) => work.has(String(a.name)));
  for (const a of inner) a.dependsOn = (a.dependsOn as { activity: string }[]).filter((d) => work.has(d.activity));
  inner.push(
    {
      name: 'SetRowsCopied',
      type: 'SetVariable',
      dependsOn: [after('SaveAppliedVersions')],
      userProperties: [],
      typeProperties: {
        variableName: 'rowsCopied',
        value: expr(`@string(activity('CopyStagingToDataverse').output.rowsCopied)`),
      },
    },
    {
      name: 'SetRowsSkipped',
      type: 'SetVariable',
      dependsOn: [after('SetRowsCopied'), after(lastCopy)],
      userProperties: [],
      typeProperties: { variableName: 'rowsSkipped', value: expr(skipped) },
    },
  );
  const outer = activities.filter((a) => !work.has(String(a.name)));
  const at = outer.findIndex((a) => a.name === 'FinishRun');
  outer.splice(
    at,
    0,
    {
      // Every file directly in the folder (not recursive: Spark's `_temporary/` stays unread), modified before the
      // window's end; a run with a window (manual, backfill) lists the files modified in it.
      name: 'ListDeltaFiles',
      type: 'GetMetadata',
      dependsOn: [after('SetWindowEnd')],
      policy: policy('0.00:10:00', 2),
      userProperties: [],
      typeProperties: {
        dataset: {
          referenceName: NAMES.lakeParquet,
          type: 'DatasetReference',
          parameters: { fileSystem: settings.lakeFileSystem, folderPath: view.source.folder },
        },
        fieldList: ['exists', 'childItems'],
        storeSettings: {
          type: 'AzureBlobFSReadSettings',
          modifiedDatetimeStart: expr(
            `@if(empty(pipeline().parameters.windowStart), '1900-01-01T00:00:00Z', pipeline().parameters.windowStart)`,
          ),
          modifiedDatetimeEnd: expr(`@variables('windowEnd')`),
        },
      },
    },
    {
      name: 'FilterDeltaFiles',
      type: 'Filter',
      dependsOn: [after('ListDeltaFiles')],
      userProperties: [],
      typeProperties: {
        items: expr(`@coalesce(activity('ListDeltaFiles').output?.childItems, json('[]'))`),
        condition: expr(`@and(equals(item().type, 'File'), ${globCondition(view.source.pattern, def.name)})`),
      },
    },
    // The listed files not yet in ferry.processed_items (review defect 11): a file made visible after later ones
    // (a rename-based commit keeps its older modified time) is still read, once.
    scriptActivity(
      'SelectNewFiles',
      NAMES.sql,
      stepText(selectStep),
      [after('FilterDeltaFiles')],
      [
        filesParameter('files', "@string(activity('FilterDeltaFiles').output.value)"),
        filesParameter('window_start', '@pipeline().parameters.windowStart'),
      ],
      2,
      'Query',
    ),
    {
      name: 'IfNewFiles',
      type: 'IfCondition',
      dependsOn: [after('SelectNewFiles')],
      userProperties: [],
      typeProperties: {
        expression: expr(`@greater(length(activity('SelectNewFiles').output.resultSets[0].rows), 0)`),
        ifTrueActivities: inner,
      },
    },
  );
  activities.length = 0;
  activities.push(...outer);
  const pipeline: SynapseArtifact = {
    kind: 'pipeline',
    name: NAMES.pipeline(def.name),
    properties: {
      description: describe(
        def,
        'Parquet deltas → Azure SQL staging → T-SQL conversion → Dataverse upsert by alternate key.',
      ),
      annotations: [ANNOTATION, `ferry:${def.name}`],
      folder: { name: 'ferry/inbound' },
      // One run at a time per pipeline: the Synapse equivalent of the local lease.
      concurrency: 1,
      parameters: {
        ...WINDOW_PARAMETERS,
        ...multiSelect.parameters,
        ...(closing ? dataverseUrlParameter(settings) : {}),
      },
      variables: {
        windowEnd: { type: 'String' },
        rowsCopied: { type: 'String', defaultValue: '0' },
        rowsSkipped: { type: 'String', defaultValue: '0' },
      },
      activities,
    },
  };
  const sql: GeneratedFile[] = [
    {
      path: sqlPath('convert.sql'),
      content: stepFile(
        `Conversion of \`${def.name}\` (${view.mapping.table}) to Dataverse column types. Parameters: @run_id, @pipeline.`,
        convertStep,
      ),
    },
    {
      path: sqlPath('save-versions.sql'),
      content: stepFile(
        `Applied versions of \`${def.name}\` after the Copy to Dataverse succeeded. Parameters: @run_id, @pipeline.`,
        saveStep,
      ),
    },
    {
      path: sqlPath('sink-query.sql'),
      content: stepFile(`Rows the Copy activity sends to Dataverse for \`${def.name}\`.`, sinkStep),
    },
    // Multi-select columns, written by Web activities.
    ...['', '-omit'].flatMap((part) => {
      const step = steps.get(`${def.name}:multiselect-chunks${part}`);
      return step
        ? [
            {
              path: sqlPath(`multiselect-chunks${part}.sql`),
              content: stepFile(
                `Multi-select values of \`${def.name}\` as UpsertMultiple request bodies, one row per chunk, for the Web activities after the copies.`,
                step,
              ),
            },
          ]
        : [];
    }),
  ];
  const dataverseTables = [table, ...keymapTargets.map((t: KeymapTarget) => t.table)];
  const keymapColumns = keymapTargets.map((t): [string, string[]] => [t.table, [t.idAttribute, ...t.keyAttributes]]);
  return { pipeline, sql, dataverseTables, keymapColumns };
}

/** The Filter condition on `item().name` for a file pattern with at most one `*` (ADF name functions). */
export function globCondition(pattern: string, pipeline: string): string {
  const star = pattern.split('*');
  if (star.length > 2 || pattern.includes('?'))
    throw new FerryError(
      'export.file_pattern',
      `File pattern \`${pattern}\` of \`${pipeline}\` has more than one \`*\` or a \`?\`; the Synapse export supports \`prefix*suffix\` patterns (e.g. \`*.parquet\`).`,
    );
  const lit = (t: string) => `'${t.replaceAll("'", "''")}'`;
  if (star.length === 1) return `equals(item().name, ${lit(pattern)})`;
  const [prefix, suffix] = star as [string, string];
  const parts = [
    ...(prefix ? [`startsWith(item().name, ${lit(prefix)})`] : []),
    ...(suffix ? [`endsWith(item().name, ${lit(suffix)})`] : []),
  ];
  return parts.length === 0 ? 'true' : parts.length === 1 ? parts[0]! : `and(${parts.join(', ')})`;
}

/** Minutes a key-map read reaches back before its watermark: covers clock skew and records committed late. */
export const KEYMAP_OVERLAP_MINUTES = 10;
/** Hours between full key-map reads: a full read drops the entries of records deleted in Dataverse. */
export const KEYMAP_FULL_EVERY_HOURS = 24;
/** At most this many new delta files per run (oldest name first); the rest are read by the next runs. */
export const NEW_FILES_PER_RUN = 500;

// State columns of new records.
/**
 * The state copy's query (`state-sink-query`) when the mapping writes `statecode`/`statuscode`. For a table whose
 * closed states only a message reaches (opportunity Won/Lost) those rows are left out of it: the copies write them
 * open and `closeMessageActivities` closes them with the message.
 */
function stateColumnActivities(
  def: PipelineDefinition,
  conversion: {
    plan: ConversionPlan;
    names: ConversionNames;
    keymapTargets: KeymapTarget[];
    deferSelfLookups: boolean;
  },
  steps: StepRegistry,
): { sinkQuery?: string } {
  const { plan } = conversion;
  const written = STATE_SINK_COLUMNS.some((c) => plan.columns.some((p) => p.inPayload && p.attribute === c));
  if (!written) return {};
  const close = CLOSE_MESSAGES[plan.table];
  const messageOnlyStates = close ? Object.keys(close.actions).map(Number) : [];
  return {
    sinkQuery: stepQuery(
      pipelineStep(steps, def.name, 'state-sink-query', { kind: 'state-sink-query', conversion, messageOnlyStates }),
    ),
  };
}
