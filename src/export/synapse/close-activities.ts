/**
 * Won/lost opportunities on the Synapse path: after a run's rows are written (open, by the copies), the rows whose
 * state only a message reaches are closed with that message, as the local writer does
 * (`connectors/dataverse/close-records.ts`): read the record's state by key; nothing when it already is in the
 * wanted state and status; reopened first (`statecode` 0, which an update may set) when it is closed the other way;
 * then `WinOpportunity` / `LoseOpportunity` with its `opportunityclose` activity. A Copy sink cannot send a message
 * (an update to Won/Lost is refused, 0x80100005), so Web activities do (learn.microsoft.com/azure/data-factory/
 * control-flow-web-activity), calling the environment's Web API (`dataverseUrl` pipeline parameter, bound per
 * environment like the linked-service parameter) as the workspace's managed identity.
 */
import { CLOSE_MESSAGES, closeSubjectPrefix } from '../../core/close-messages.js';
import type { PipelineDefinition } from '../../core/pipeline.js';
import type { TableMetadata } from '../../core/table-metadata.js';
import type { CloseMessagePlan, StepParameter, StepRegistry, SynapseConversion } from '../../dialects/sql-steps.js';
import { dataverseTargetOf } from '../../stages/convert-to-dataverse/conversion.js';
import type { SynapseExportSettings } from './export-settings.js';
import {
  after,
  DATAVERSE_WEB_HEADERS,
  dataverseApiUrl,
  dataverseWebAuthentication,
  expr,
  pipelineStep,
  runParams,
  scriptActivity,
  stepText,
} from './pipeline-blocks.js';
import { NAMES } from './synapse-artifacts.js';

/** The run parameters each close step uses. */
const RUN_PARAMETERS: Readonly<Record<'list' | 'record-state' | 'reopens' | 'sends' | 'refusal', readonly string[]>> = {
  list: ['run_id', 'pipeline'],
  'record-state': [],
  reopens: [],
  sends: ['run_id'],
  refusal: ['run_id', 'pipeline'],
};

/** Rows a Script activity's result set holds (the ForEach's items come from one). */
export const CLOSE_MESSAGES_PER_RUN = 5000;

/** The close plan of a table with message-only states, or undefined when it has none (or writes no `statecode`). */
export function closeMessagePlan(conversion: SynapseConversion, meta: TableMetadata): CloseMessagePlan | undefined {
  const { plan } = conversion;
  const rule = CLOSE_MESSAGES[plan.table];
  if (!rule || !plan.columns.some((c) => c.inPayload && c.attribute === 'statecode')) return undefined;
  const defaults = new Map(dataverseTargetOf(meta, plan).stateDefaults.map((d) => [d.state, d.status]));
  const textTypes = new Set(['StringType', 'MemoType']);
  return {
    table: plan.table,
    entitySet: meta.EntitySetName,
    primaryId: meta.PrimaryIdAttribute,
    activity: rule.activity,
    parameter: rule.parameter,
    states: Object.entries(rule.actions).map(([state, action]) => ({
      state: Number(state),
      action,
      subjectPrefix: closeSubjectPrefix(action),
      defaultStatus: defaults.get(Number(state)) ?? -1,
    })),
    key: plan.key.map((k) => {
      const type = meta.Attributes.find((a) => a.LogicalName === k.attribute)?.AttributeTypeName.Value;
      return { attribute: k.attribute, text: type === undefined || textTypes.has(type) };
    }),
    limit: CLOSE_MESSAGES_PER_RUN,
  };
}

/**
 * The activities, in order (each after the one before):
 * - `ListCloseMessages` (step phase `list`): the rows to close, at most 5,000 (the rest rejected for a later window);
 * - `ReadCloseStates`, a ForEach: `ReadCloseState` GETs the record by its alternate key, `RecordCloseState` keeps its
 *   id, state and status (a record that cannot be read fails the run, as the local writer fails on a row it cannot
 *   find; the next run sends the rows again);
 * - `ListReopens` + `ReopenRecords`: records closed the other way get `statecode` 0 (UpdateMultiple by id);
 * - `ListCloseSends` + `SendCloseMessages`: `WinOpportunity` / `LoseOpportunity` for the rows not yet in the
 *   wanted state and status (a rerun sends nothing) and not refused at their reopen.
 * A refusal of a reopen or a message records the row as a reject with the service's reason (`Record*Refusal`) and
 * the run goes on. The ForEach loops run `settings.dataverseParallelCopies` iterations at once (the copies' degree
 * of parallelism, within the service-protection limit of 52 concurrent requests per user); every Web activity
 * retries 5 times 30 s apart, so a 429 (Retry-After) or 503 from the service fails an attempt, not the row.
 */
export function closeMessageActivities(options: {
  readonly def: PipelineDefinition;
  /** Step id prefix (`<pipeline>` or `<pipeline>:replay`): the inbound and replay pipelines have their own tables. */
  readonly stepPrefix: string;
  readonly conversion: SynapseConversion;
  readonly close: CloseMessagePlan;
  readonly steps: StepRegistry;
  readonly settings: SynapseExportSettings;
  readonly dependsOn: unknown[];
}): { activities: Record<string, unknown>[]; last: string } {
  const { def, conversion, close, steps, settings } = options;
  const runParameters: StepParameter[] = [
    { name: 'run_id', expression: '@pipeline().RunId', type: 'string', script: true },
    { name: 'pipeline', expression: def.name, type: 'string', script: true },
  ];
  // Each step's parameters are those of its Script activity: T-SQL reads them as `@name`, the local runtime
  // evaluates the same expressions for the DuckDB rendering.
  const script = (
    name: string,
    phase: 'list' | 'record-state' | 'reopens' | 'sends' | 'refusal',
    dependsOn: unknown[],
    extra: readonly { name: string; expression: string; type: 'string' | 'number'; size?: number }[] = [],
    scriptType: 'Query' | 'NonQuery' = 'NonQuery',
  ) => {
    const id = phase === 'refusal' ? `close-messages:${phase}:${name}` : `close-messages:${phase}`;
    // Each step declares the parameters its statements use: the run (run_id, pipeline) where it writes rejects or
    // reads this run's, the row's values where it records one.
    const run = RUN_PARAMETERS[phase];
    const step = pipelineStep(steps, options.stepPrefix, id, { kind: 'close-messages', phase, conversion, close }, [
      ...runParameters.filter((p) => run.includes(p.name)),
      ...extra.map((p) => ({ name: p.name, expression: p.expression, type: p.type, script: true })),
    ]);
    return scriptActivity(
      name,
      NAMES.sql,
      stepText(step),
      dependsOn,
      [
        ...runParams(def.name).filter((p) => run.includes(p.name)),
        ...extra.map((p) => ({
          name: p.name,
          type: p.type === 'number' ? 'Int64' : 'String',
          value: expr(p.expression),
          direction: 'Input',
          ...(p.type === 'number' ? {} : { size: p.size ?? 400 }),
        })),
      ],
      2,
      scriptType,
    );
  };
  const rowId = { name: 'row_id', expression: '@item().row_id', type: 'number' } as const;
  const refusal = (name: string, failed: string) =>
    script(
      name,
      'refusal',
      [after(failed, 'Failed')],
      [rowId, { name: 'error', expression: `@activity('${failed}').error.message`, type: 'string', size: 4000 }],
    );
  // Web requests here are idempotent (a read; a reopen to Open; a close the next read sees as done), so they retry.
  const webPolicy = {
    timeout: '0.00:10:00',
    retry: 5,
    retryIntervalInSeconds: 30,
    secureInput: false,
    secureOutput: false,
  };
  const web = (name: string, dependsOn: unknown[], typeProperties: Record<string, unknown>) => ({
    name,
    type: 'WebActivity',
    dependsOn,
    policy: webPolicy,
    userProperties: [],
    typeProperties: {
      headers: DATAVERSE_WEB_HEADERS,
      authentication: dataverseWebAuthentication(),
      httpRequestTimeout: '00:02:00',
      ...typeProperties,
    },
  });
  const forEach = (name: string, list: string, dependsOn: unknown[], activities: unknown[]) => ({
    name,
    type: 'ForEach',
    dependsOn,
    userProperties: [],
    typeProperties: {
      items: expr(`@activity('${list}').output.resultSets[0].rows`),
      isSequential: false,
      batchCount: Math.min(Math.max(settings.dataverseParallelCopies, 1), 50),
      activities,
    },
  });
  const read = "activity('ReadCloseState').output.value[0]";
  return {
    activities: [
      script('ListCloseMessages', 'list', options.dependsOn, [], 'Query'),
      forEach(
        'ReadCloseStates',
        'ListCloseMessages',
        [after('ListCloseMessages')],
        [
          web('ReadCloseState', [], {
            method: 'GET',
            url: dataverseApiUrl(
              `${close.entitySet}?$select=${close.primaryId},statecode,statuscode&$filter=@{encodeUriComponent(item().key_filter)}`,
            ),
          }),
          script(
            'RecordCloseState',
            'record-state',
            [after('ReadCloseState')],
            [
              rowId,
              { name: 'record_id', expression: `@${read}.${close.primaryId}`, type: 'string' },
              { name: 'statecode', expression: `@${read}.statecode`, type: 'number' },
              { name: 'statuscode', expression: `@${read}.statuscode`, type: 'number' },
            ],
          ),
        ],
      ),
      script('ListReopens', 'reopens', [after('ReadCloseStates')], [], 'Query'),
      forEach(
        'ReopenRecords',
        'ListReopens',
        [after('ListReopens')],
        [
          web('ReopenRecord', [], {
            method: 'POST',
            url: dataverseApiUrl(`${close.entitySet}/Microsoft.Dynamics.CRM.UpdateMultiple`),
            body: expr('@item().body'),
          }),
          refusal('RecordReopenRefusal', 'ReopenRecord'),
        ],
      ),
      script('ListCloseSends', 'sends', [after('ReopenRecords')], [], 'Query'),
      forEach(
        'SendCloseMessages',
        'ListCloseSends',
        [after('ListCloseSends')],
        [
          web('SendCloseMessage', [], {
            method: 'POST',
            url: dataverseApiUrl('@{item().action}'),
            body: expr('@item().body'),
          }),
          refusal('RecordCloseRefusal', 'SendCloseMessage'),
        ],
      ),
    ],
    last: 'SendCloseMessages',
  };
}
