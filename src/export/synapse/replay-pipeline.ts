/**
 * The replay pipeline of an inbound pipeline (`pl_<name>_replay`): re-sends rows in `ferry.rejects` through the
 * pipeline's own conversion and Dataverse copy, with the outcome semantics of `ferry replay`. One replay pipeline
 * per inbound pipeline, not one parameterised for all: the conversion SQL, the key maps and the Copy mapping (sink
 * types, alternate key) are per pipeline, and a per-pipeline artifact shows in Monitor under its own name, runs
 * beside the scheduled pipeline on its own staging tables, and queues behind itself (`concurrency: 1`).
 */
import { CLOSE_MESSAGES } from '../../core/close-messages.js';
import type { PipelineDefinition } from '../../core/pipeline.js';
import { loadMetadata } from '../../core/table-metadata.js';
import type { RecoveryStepPlan, ReplaySelection } from '../../dialects/recovery-steps.js';
import { keymapTargetsOf, STATE_SINK_COLUMNS } from '../../dialects/sql-dialect.js';
import type {
  ConversionNames,
  KeymapTarget,
  RawColumn,
  StepParameter,
  StepRegistry,
  TableName,
} from '../../dialects/sql-steps.js';
import { STATE_SCHEMA } from '../../dialects/tsql/staging.js';
import { loadConversionPlan } from '../../stages/convert-to-dataverse/conversion.js';
import { closeMessageActivities, closeMessagePlan } from './close-activities.js';
import { dataverseCopyActivities } from './dataverse-copy-activities.js';
import { KEYMAP_OVERLAP_MINUTES } from './inbound-pipeline.js';
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
  dataverseUrlParameter,
  describe,
  type ExportOptions,
  expr,
  P,
  pipelineStep,
  policy,
  STAGING_PREFIX,
  STAGING_SCHEMA,
  scriptActivity,
  sqlTableRef,
  stepFile,
  stepQuery,
  stepText,
} from './pipeline-blocks.js';
import type { InboundView } from './stage-views.js';
import { type GeneratedFile, NAMES, type SynapseArtifact, snake } from './synapse-artifacts.js';

/** `accounts-inbound` → `pl_accounts_inbound_replay`. */
export const replayPipelineName = (name: string) => `${NAMES.pipeline(name)}_replay`;

/** The rejects a replay takes: those the conversion wrote with their source row. */
export const REPLAYED_STAGE = 'convert-to-dataverse';

/** Script parameters (T-SQL `@name`, DuckDB `$name`) of the replay steps. */
const R = {
  runId: P.scriptRunId,
  replayOf: { name: 'replay_of', expression: '@pipeline().parameters.runId', type: 'string', script: true },
  reason: { name: 'reason', expression: '@pipeline().parameters.reason', type: 'string', script: true },
  dataFactory: { name: 'data_factory', expression: '@pipeline().DataFactory', type: 'string', script: true },
} as const satisfies Record<string, StepParameter>;

/** The Script activity parameters of a step's `script` parameters. */
function scriptParameters(parameters: readonly StepParameter[]) {
  return parameters
    .filter((p) => p.script)
    .map((p) => ({
      name: p.name,
      type: p.type === 'number' ? 'Int64' : 'String',
      value: p.expression.startsWith('@') ? expr(p.expression) : p.expression,
      direction: 'Input',
      ...(p.type === 'number' ? {} : { size: 400 }),
    }));
}

export async function replayPipeline(
  def: PipelineDefinition,
  view: InboundView,
  options: ExportOptions,
  steps: StepRegistry,
): Promise<{ pipeline: SynapseArtifact; sql: GeneratedFile[] }> {
  const { settings } = options;
  const base = `${snake(def.name)}_replay`;
  const plan = await loadConversionPlan(view.mapping.spec, options.metadataDir);
  // Its own staging tables (and key map copies): a replay may run while the scheduled pipeline runs.
  const table = (suffix: string): TableName => ({ schema: '', table: `${STAGING_PREFIX}${base}_${suffix}` });
  const names: ConversionNames = {
    prefix: `${STAGING_PREFIX}${base}_`,
    staged: table('staged'),
    rows: table('rows'),
    work: table('work'),
    converted: table('converted'),
    sink: table('sink'),
    rejects: { schema: STATE_SCHEMA, table: 'rejects' },
    keymap: { schema: STATE_SCHEMA, table: 'keymap' },
    appliedVersions: { schema: STATE_SCHEMA, table: 'applied_versions' },
  };
  const claimed = table('claimed');
  const keymapTargets: KeymapTarget[] = [];
  for (const t of keymapTargetsOf(plan))
    keymapTargets.push({ ...t, idAttribute: (await loadMetadata(options.metadataDir, t.table)).PrimaryIdAttribute });
  // Same-window lookups to the pipeline's own table (a parent and its child both replayed) go in the inbound
  // pipeline's second pass, as `ferry replay` defers them.
  const conversion = { plan, names, keymapTargets, deferSelfLookups: defersSelfLookups(plan, keymapTargets) };
  const rawColumns = new Map<string, RawColumn[]>();
  for (const t of keymapTargets) rawColumns.set(t.table, await keymapRawColumns(t, options.metadataDir));
  const selection: ReplaySelection = { pipeline: def.name, stage: REPLAYED_STAGE };
  const step = (name: string, p: RecoveryStepPlan, parameters: readonly StepParameter[] = []) =>
    pipelineStep(steps, def.name, name, p, parameters);
  const runParameters = [R.runId, { name: 'pipeline', expression: def.name, type: 'string', script: true }] as const;
  const pending = step('replay-pending', { kind: 'replay-pending', selection }, [R.replayOf, R.reason]);
  const begin = step(
    'replay-begin',
    {
      kind: 'replay-begin',
      selection,
      conversion,
      claimed,
      // What it creates without replacing; the conversion replaces the rest (work, converted, sink) itself.
      dropTables: [claimed.table, names.rows.table],
    },
    [R.runId, R.replayOf, R.reason, R.dataFactory],
  );
  const convert = step('replay-convert', { kind: 'replay-convert', conversion }, runParameters);
  const sinkStep = pipelineStep(steps, def.name, 'replay-sink-query', { kind: 'sink-query', conversion });
  const save = pipelineStep(
    steps,
    def.name,
    'replay-save-versions',
    { kind: 'save-versions', conversion },
    runParameters,
  );
  // State columns in a copy of their own, as in the inbound pipeline; a replayed won/lost opportunity is written open
  // and closed by its message afterwards, as in the inbound pipeline (close-activities.ts).
  const writesState = STATE_SINK_COLUMNS.some((c) => plan.columns.some((p) => p.inPayload && p.attribute === c));
  const closeRule = CLOSE_MESSAGES[plan.table];
  const stateStep = writesState
    ? pipelineStep(steps, def.name, 'replay-state-sink-query', {
        kind: 'state-sink-query',
        conversion,
        messageOnlyStates: closeRule ? Object.keys(closeRule.actions).map(Number) : [],
      })
    : undefined;
  const tableMeta = await loadMetadata(options.metadataDir, view.upsert.table);
  const dataverseCopies = dataverseCopyActivities(
    def,
    plan,
    tableMeta,
    stepQuery(sinkStep),
    names.sink.table,
    view,
    settings,
    stateStep && stepQuery(stateStep),
  );
  // The key-map copy of a target: the whole table at the start (the parents that arrived since); after the copies,
  // the records of the own table modified since this replay started (less the key maps' overlap).
  const keymapCopy = (t: KeymapTarget, name: string, dependsOn: unknown[], since?: string) => {
    const truncate = pipelineStep(steps, def.name, `replay-truncate-keymap:${t.table}`, {
      kind: 'truncate-table',
      schema: STAGING_SCHEMA,
      table: `${names.prefix}keymap_${t.table}_raw`,
      columns: rawColumns.get(t.table)!,
    });
    const attributes = `<attribute name="${t.idAttribute}" />${t.keyAttributes.map((a) => `<attribute name="${a}" />`).join('')}`;
    const filter = since
      ? `<filter type="and"><condition attribute="modifiedon" operator="ge" value="@{${since}}" /></filter>`
      : '';
    const query = `<fetch mapping="logical"><entity name="${t.table}">${attributes}${filter}</entity></fetch>`;
    return {
      name,
      type: 'Copy',
      dependsOn,
      policy: policy('0.02:00:00', 2),
      typeProperties: {
        source: { type: 'CommonDataServiceForAppsSource', query: since ? expr(query) : query },
        sink: {
          type: 'AzureSqlSink',
          tableOption: 'autoCreate',
          preCopyScript: stepQuery(truncate),
          writeBatchSize: 10000,
        },
        enableStaging: false,
      },
      inputs: [{ referenceName: NAMES.dataverseEntity(t.table), type: 'DatasetReference' }],
      outputs: [sqlTableRef(STAGING_SCHEMA, `${names.prefix}keymap_${t.table}_raw`)],
    };
  };
  // Key-map entries of records deleted in Dataverse are dropped before the copies, as in the inbound pipeline.
  const targetCheck = await lookupTargetCheckActivities(
    def,
    conversion,
    steps,
    options.metadataDir,
    runParameters,
    'replay-',
  );
  if (targetCheck.last)
    for (const a of dataverseCopies)
      a.dependsOn = (a.dependsOn as { activity: string }[]).map((d) =>
        d.activity === 'ConvertToDataverse' ? after(targetCheck.last!) : d,
      );
  const own = keymapTargets.find((t) => t.table === plan.table);
  const deferred = deferredLookupActivities(
    def,
    plan,
    conversion,
    steps,
    dataverseCopies,
    own &&
      ((name, dependsOn) =>
        keymapCopy(own, name, dependsOn, "activity('ReplaySince').output.resultSets[0].rows[0].run_since")),
    runParameters,
    'replay-',
  );
  // The start of this replay by the database's clock (as the inbound key-map reads take theirs), before any write.
  const since = deferred.last
    ? [
        scriptActivity(
          'ReplaySince',
          NAMES.sql,
          stepText(
            pipelineStep(steps, def.name, 'replay-since', {
              kind: 'run-since',
              overlapMinutes: KEYMAP_OVERLAP_MINUTES,
            }),
          ),
          [after('BeginReplay')],
          [],
          2,
          'Query',
        ),
      ]
    : [];
  const copies = [...dataverseCopies, ...deferred.copies];
  // Multi-select columns, written by Web activities once the copies created the records.
  const { multiSelect, lastCopy } = multiSelectAfterCopies(
    { def, conversion, meta: tableMeta, view, steps, settings, stepPrefix: 'replay-' },
    dataverseCopies,
    deferred,
  );
  const skipped = `@${copies
    .map((c) => `coalesce(activity('${c.name}').output?.rowsSkipped, 0)`)
    .reduce((a, b) => `add(${a}, ${b})`)}`;
  const closePlan = closeMessagePlan(conversion, tableMeta);
  const closing = closePlan
    ? closeMessageActivities({
        def,
        stepPrefix: `${def.name}:replay`,
        conversion,
        close: closePlan,
        steps,
        settings,
        dependsOn: [after(lastCopy)],
      })
    : undefined;
  const lastWrite = closing?.last ?? lastCopy;
  const finish = step('replay-finish', { kind: 'replay-finish', selection, conversion, claimed }, [
    R.runId,
    { name: 'rows_skipped', expression: skipped, type: 'number', script: true },
  ]);
  const failed = step('replay-failed', { kind: 'replay-failed', pipeline: def.name }, [R.runId]);
  const script = (
    name: string,
    s: { id: string; parameters: readonly StepParameter[] },
    dependsOn: unknown[],
    type: 'Query' | 'NonQuery' = 'NonQuery',
    retry = 0,
  ) =>
    scriptActivity(name, NAMES.sql, stepText(steps.get(s.id)!), dependsOn, scriptParameters(s.parameters), retry, type);
  const result = (activity: string, column: string) => `activity('${activity}').output.resultSets[0].rows[0].${column}`;
  const activities: Record<string, unknown>[] = [
    script('CheckPending', pending, [], 'Query', 2),
    {
      // Nothing to replay is not a success: the run fails with exit code 4 ("nothing was done"), as `ferry replay`
      // does (replay.nothing), and no replay run is recorded.
      name: 'IfNothingToReplay',
      type: 'IfCondition',
      dependsOn: [after('CheckPending')],
      typeProperties: {
        expression: expr(`@equals(${result('CheckPending', 'pending')}, 0)`),
        ifTrueActivities: [
          {
            name: 'NothingToReplay',
            type: 'Fail',
            dependsOn: [],
            userProperties: [],
            typeProperties: {
              message: expr(
                `@concat('replay.nothing: ${def.name} has no open rejects', if(empty(pipeline().parameters.runId), '', concat(' of run ', pipeline().parameters.runId)), if(empty(pipeline().parameters.reason), '', concat(' with reason ', pipeline().parameters.reason)), ' that can be replayed; see ${STATE_SCHEMA}.rejects.')`,
              ),
              errorCode: '4',
            },
          },
        ],
      },
    },
    script('BeginReplay', begin, [after('IfNothingToReplay')]),
    // The parents that arrived since: the key map is read again from Dataverse.
    ...keymapTargets.map((t) => keymapCopy(t, `CopyKeyMap_${t.table}`, [after('BeginReplay')])),
    ...since,
    script('ConvertToDataverse', convert, [
      after('BeginReplay'),
      ...keymapTargets.map((t) => after(`CopyKeyMap_${t.table}`)),
      ...since.map((a) => after(String(a.name))),
    ]),
    ...targetCheck.activities,
    ...dataverseCopies,
    ...multiSelect.activities,
    ...deferred.activities,
    ...(closing?.activities ?? []),
    script('SaveAppliedVersions', save, [after(lastWrite)], 'NonQuery', 2),
    script('FinishReplay', finish, [after('SaveAppliedVersions')], 'Query'),
    {
      // Rows rejected again fail the run with exit code 3, as `ferry replay` exits 3: the run did its work, and a
      // scheduler or an alert sees that rows are still out of Dataverse.
      name: 'CheckStillRejected',
      type: 'IfCondition',
      dependsOn: [after('FinishReplay')],
      typeProperties: {
        expression: expr(`@greater(${result('FinishReplay', 'still_rejected')}, 0)`),
        ifTrueActivities: [
          {
            name: 'RowsRejectedAgain',
            type: 'Fail',
            dependsOn: [],
            userProperties: [],
            typeProperties: {
              message: expr(
                `@concat(string(${result('FinishReplay', 'still_rejected')}), ' of ', string(${result('FinishReplay', 'claimed')}), ' replayed rows of ${def.name} were rejected again (', string(${result('FinishReplay', 'resolved')}), ' resolved); see ${STATE_SCHEMA}.rejects for run ', pipeline().RunId, ' for the new reasons.')`,
              ),
              errorCode: '3',
            },
          },
        ],
      },
    },
    // The generic error handling wiring (upon failure or skip of the last step), as in the scheduled pipelines:
    // skipped when nothing was replayed (BeginReplay never ran).
    script('MarkReplayFailed', failed, [
      { activity: 'FinishReplay', dependencyConditions: ['Failed', 'Skipped'] },
      { activity: 'BeginReplay', dependencyConditions: ['Succeeded', 'Failed'] },
    ]),
  ];
  const label = (list: unknown) => {
    for (const a of Array.isArray(list) ? (list as Record<string, unknown>[]) : []) {
      a.userProperties = [
        { name: 'ferryPipeline', value: def.name },
        { name: 'table', value: view.upsert.table },
        // The rows a replay takes stand in for a window: those of run `runId` (empty: every run).
        { name: 'window', value: 'replay of @{pipeline().parameters.runId}' },
      ];
      const tp = a.typeProperties as Record<string, unknown> | undefined;
      label(tp?.ifTrueActivities);
      label(tp?.activities);
    }
  };
  label(activities);
  const pipeline: SynapseArtifact = {
    kind: 'pipeline',
    name: replayPipelineName(def.name),
    properties: {
      description: describe(
        def,
        `Replays open rows of ${STATE_SCHEMA}.rejects (of run \`runId\`, or every run; of reason \`reason\`, or every reason) through the same conversion and Dataverse copy; resolves those that go through, supersedes those rejected again with their new reason.`,
      ),
      annotations: [ANNOTATION, `ferry:${def.name}`, 'ferry:replay'],
      folder: { name: 'ferry/replay' },
      concurrency: 1,
      parameters: {
        runId: { type: 'String', defaultValue: '' },
        reason: { type: 'String', defaultValue: '' },
        ...multiSelect.parameters,
        ...(closing ? dataverseUrlParameter(settings) : {}),
      },
      activities,
    },
  };
  const sqlPath = (f: string) => `sql/tsql/${def.name}/${f}`;
  const sql: GeneratedFile[] = [
    {
      path: sqlPath('replay-begin.sql'),
      content: stepFile(
        `Starts a replay of \`${def.name}\`: the open rejects taken, their source rows rebuilt. Parameters: @run_id, @replay_of, @reason, @data_factory.`,
        begin,
      ),
    },
    {
      path: sqlPath('replay-finish.sql'),
      content: stepFile(
        `Ends a replay of \`${def.name}\`: rejects resolved or superseded. Parameters: @run_id, @rows_skipped.`,
        finish,
      ),
    },
  ];
  return { pipeline, sql };
}
