/**
 * Housekeeping (`pl_ferry_housekeeping`, started daily by `tr_ferry_housekeeping_daily`): drops the staging tables of
 * pipelines with no run in progress, deletes state rows past their retention (resolved and superseded rejects,
 * finished runs nothing refers to) and, when `warehouseRetentionDays` is set, warehouse window folders older than
 * it (in `<output>/`, `<output>_deletes/` and `_manifests/<output>/`) — never the newest window of an output. What it drops is read from the SQL steps the export compiled, so a
 * staging table a pipeline creates is one housekeeping knows. It also deletes the unpublished run folders (no
 * manifest) of outbound runs that did not succeed and started more than `staleRunHours` ago: runs killed before
 * their failure path removed them (a run in progress is never touched).
 */
import type { OutboundRunFolders, RecoveryStepPlan } from '../../dialects/recovery-steps.js';
import type {
  ConversionNames,
  KeymapTarget,
  SqlStep,
  StepParameter,
  StepRegistry,
  SynapseStepPlan,
} from '../../dialects/sql-steps.js';
import { STATE_SCHEMA } from '../../dialects/tsql/staging.js';
import type { SynapseExportSettings } from './export-settings.js';
import {
  ANNOTATION,
  after,
  expr,
  pipelineStep,
  policy,
  STAGING_PREFIX,
  scriptActivity,
  stepFile,
  stepText,
} from './pipeline-blocks.js';
import { type GeneratedFile, NAMES, type SynapseArtifact, snake } from './synapse-artifacts.js';

export const HOUSEKEEPING_PIPELINE = 'pl_ferry_housekeeping';
export const HOUSEKEEPING_TRIGGER = 'tr_ferry_housekeeping_daily';
const STEP_PIPELINE = 'housekeeping';

/** A group of staging tables dropped together when none of its pipelines has a run in progress. */
interface StagingGroup {
  readonly name: string;
  readonly pipelines: Set<string>;
  readonly tables: Set<string>;
  readonly views: Set<string>;
}

/** The staging tables and views each pipeline's steps create, by pipeline; key maps shared by all pipelines apart. */
export function stagingGroups(steps: readonly SqlStep[]): StagingGroup[] {
  const groups = new Map<string, StagingGroup>();
  const group = (name: string) => {
    const known = groups.get(name);
    if (known) return known;
    const g: StagingGroup = { name, pipelines: new Set(), tables: new Set(), views: new Set() };
    groups.set(name, g);
    return g;
  };
  for (const step of steps) {
    const pipeline = step.id.split(':')[0]!;
    const plan = step.plan as SynapseStepPlan;
    const own = group(snake(pipeline));
    own.pipelines.add(pipeline);
    const conversion = (names: ConversionNames, targets: readonly KeymapTarget[]) => {
      for (const n of [names.staged, names.rows, names.work, names.sink]) own.tables.add(n.table);
      own.tables.add(`${names.work.table}_versions`);
      own.views.add(names.converted.table);
      // Key maps copied under the shared prefix are read by every pipeline with that lookup target.
      const keymaps = names.prefix === STAGING_PREFIX ? group('keymaps') : own;
      keymaps.pipelines.add(pipeline);
      for (const t of targets)
        keymaps.tables.add(`${names.prefix}keymap_${t.table}`).add(`${names.prefix}keymap_${t.table}_raw`);
    };
    if (plan.kind === 'convert' || plan.kind === 'replay-convert')
      conversion(plan.conversion.names, plan.conversion.keymapTargets);
    if (plan.kind === 'replay-begin') own.tables.add(plan.claimed.table);
    if (plan.kind === 'begin-run') for (const t of plan.dropTables) own.tables.add(t);
    // Multi-select columns, written by Web activities: the request bodies and their rows.
    if (plan.kind === 'multiselect-chunks') own.tables.add(plan.chunks.table).add(`${plan.chunks.table}_rows`);
  }
  return [...groups.values()]
    .filter((g) => g.tables.size + g.views.size > 0)
    .sort((a, b) => a.name.localeCompare(b.name));
}

/** Warehouse outputs (folders under the warehouse file system) of the outbound extracts. */
export function warehouseOutputs(steps: readonly SqlStep[]): string[] {
  const out = new Set<string>();
  for (const step of steps) {
    const plan = step.plan as SynapseStepPlan;
    if (plan.kind === 'extract') out.add(plan.extract.output ?? plan.extract.table);
  }
  return [...out].sort();
}

/**
 * The warehouse folders that hold window folders of each output: its data (`<output>/`, first), its deletes
 * (`<output>_deletes/`, with `deletes: 'separate-file'`) and its run manifests (`_manifests/<output>/`).
 */
export function warehouseWindowRoots(steps: readonly SqlStep[]): Map<string, string[]> {
  const roots = new Map<string, string[]>();
  for (const step of steps) {
    const plan = step.plan as SynapseStepPlan;
    if (plan.kind !== 'extract') continue;
    const output = plan.extract.output ?? plan.extract.table;
    const own = roots.get(output) ?? [output, `_manifests/${output}`];
    if (plan.extract.deletes === 'separate-file' && !own.includes(`${output}_deletes`))
      own.splice(1, 0, `${output}_deletes`);
    roots.set(output, own);
  }
  return roots;
}

/** The run folders each outbound pipeline writes, per output (what `unpublished-run-folders` lists). */
export function outboundRunFolders(steps: readonly SqlStep[]): OutboundRunFolders[] {
  const roots = warehouseWindowRoots(steps);
  const byPipeline = new Map<string, Set<string>>();
  for (const step of steps) {
    const plan = step.plan as SynapseStepPlan;
    if (plan.kind !== 'extract') continue;
    const pipeline = step.id.split(':')[0]!;
    const outputs = byPipeline.get(pipeline) ?? new Set<string>();
    outputs.add(plan.extract.output ?? plan.extract.table);
    byPipeline.set(pipeline, outputs);
  }
  return [...byPipeline]
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([pipeline, outputs]) => ({
      pipeline,
      outputs: [...outputs]
        .sort()
        .map((o) => ({ roots: roots.get(o) ?? [o, `_manifests/${o}`], manifestRoot: `_manifests/${o}` })),
    }));
}

const param = (name: string, expression: string): StepParameter => ({ name, expression, type: 'string', script: true });
const before = (add: string, amount: number, format: string) =>
  `@formatDateTime(${add}(utcNow(), -${amount}), '${format}')`;

export function housekeepingArtifacts(
  settings: SynapseExportSettings,
  steps: StepRegistry,
): { artifacts: SynapseArtifact[]; sql: GeneratedFile[] } {
  const compiled = steps.all();
  const groups = stagingGroups(compiled);
  const outputs = warehouseOutputs(compiled);
  const roots = warehouseWindowRoots(compiled);
  const step = (name: string, plan: RecoveryStepPlan, parameters: readonly StepParameter[] = []) =>
    pipelineStep(steps, STEP_PIPELINE, name, plan, parameters);
  const scriptParams = (s: SqlStep) =>
    s.parameters.map((p) => ({
      name: p.name,
      type: 'String',
      value: expr(p.expression),
      direction: 'Input',
      size: 40,
    }));
  const label = (table: string, window: string) => [
    { name: 'ferryPipeline', value: STEP_PIPELINE },
    { name: 'table', value: table },
    { name: 'window', value: window },
  ];
  const inUse = step(
    'staging-in-use',
    { kind: 'staging-in-use', groups: groups.map((g) => ({ name: g.name, pipelines: [...g.pipelines].sort() })) },
    [param('stale_before', before('addHours', settings.staleRunHours, 'yyyy-MM-ddTHH:mm:ss'))],
  );
  const expire = step('expire-state', { kind: 'expire-state' }, [
    param('rejects_before', before('addDays', settings.rejectsRetentionDays, 'yyyy-MM-ddTHH:mm:ss')),
    param('runs_before', before('addDays', settings.runsRetentionDays, 'yyyy-MM-ddTHH:mm:ss')),
  ]);
  const activities: Record<string, unknown>[] = [
    {
      ...scriptActivity('CheckStagingInUse', NAMES.sql, stepText(inUse), [], scriptParams(inUse), 2, 'Query'),
      userProperties: label('staging', `runs started after ${settings.staleRunHours} h ago`),
    },
  ];
  for (const g of groups) {
    const drop = step(`drop-staging:${g.name}`, {
      kind: 'drop-tables',
      tables: [...g.tables].sort(),
      views: [...g.views].sort(),
    });
    activities.push({
      // Dropped only between runs: a run in progress (or one that started less than staleRunHours ago and never
      // finished) keeps its tables; the next run would drop and refill them anyway.
      name: `IfIdle_${g.name}`,
      type: 'IfCondition',
      dependsOn: [after('CheckStagingInUse')],
      userProperties: label(g.name, 'no run in progress'),
      typeProperties: {
        expression: expr(`@equals(activity('CheckStagingInUse').output.resultSets[0].rows[0].busy_${g.name}, 0)`),
        ifTrueActivities: [
          {
            ...scriptActivity(`DropStaging_${g.name}`, NAMES.sql, stepText(drop), [], [], 2),
            userProperties: label(g.name, 'no run in progress'),
          },
        ],
      },
    });
  }
  activities.push({
    ...scriptActivity('ExpireStateRows', NAMES.sql, stepText(expire), [], scriptParams(expire), 2, 'Query'),
    userProperties: label(
      `${STATE_SCHEMA}.rejects,${STATE_SCHEMA}.runs`,
      `rejects ${settings.rejectsRetentionDays} d, runs ${settings.runsRetentionDays} d`,
    ),
  });
  const runFolders = outboundRunFolders(compiled);
  if (runFolders.length > 0) {
    // Run folders of outbound runs that died so hard their failure path never ran (outbound-pipeline.ts removes
    // them otherwise): a run that did not succeed and started more than staleRunHours ago (so never a run still
    // in progress); each of its folders goes (data, deletes, an empty manifest folder a failed CETAS may leave)
    // unless the output's manifest of that run holds its file (published).
    const unpublished = step('unpublished-run-folders', { kind: 'unpublished-run-folders', pipelines: runFolders }, [
      param('stale_before', before('addHours', settings.staleRunHours, 'yyyy-MM-ddTHH:mm:ss')),
    ]);
    const window = `runs that did not succeed, started over ${settings.staleRunHours} h ago`;
    const folder = (folderPath: unknown) => ({
      referenceName: NAMES.lakeParquet,
      type: 'DatasetReference',
      parameters: { fileSystem: settings.warehouseFileSystem, folderPath },
    });
    activities.push(
      {
        ...scriptActivity(
          'ListUnpublishedRunFolders',
          NAMES.sql,
          stepText(unpublished),
          [],
          scriptParams(unpublished),
          2,
          'Query',
        ),
        userProperties: label('warehouse run folders', window),
      },
      {
        name: 'DeleteUnpublishedRunFolders',
        type: 'ForEach',
        dependsOn: [after('ListUnpublishedRunFolders')],
        userProperties: label('warehouse run folders', window),
        typeProperties: {
          items: expr(`@activity('ListUnpublishedRunFolders').output.resultSets[0].rows`),
          isSequential: true,
          activities: [
            {
              name: 'RunManifestExists',
              type: 'GetMetadata',
              dependsOn: [],
              policy: policy('0.00:10:00', 2),
              userProperties: label('warehouse run folders', window),
              typeProperties: { dataset: folder(expr('@item().manifest')), fieldList: ['exists', 'childItems'] },
            },
            {
              name: 'RunFolderExists',
              type: 'GetMetadata',
              dependsOn: [],
              policy: policy('0.00:10:00', 2),
              userProperties: label('warehouse run folders', window),
              typeProperties: { dataset: folder(expr('@item().folder')), fieldList: ['exists'] },
            },
            {
              name: 'IfRunFolderUnpublished',
              type: 'IfCondition',
              dependsOn: [after('RunManifestExists'), after('RunFolderExists')],
              userProperties: label('warehouse run folders', window),
              typeProperties: {
                expression: expr(
                  `@and(activity('RunFolderExists').output.exists, empty(coalesce(activity('RunManifestExists').output?.childItems, json('[]'))))`,
                ),
                ifTrueActivities: [
                  {
                    name: 'DeleteUnpublishedRunFolder',
                    type: 'Delete',
                    dependsOn: [],
                    policy: policy('0.01:00:00', 2),
                    userProperties: label('warehouse run folders', window),
                    typeProperties: {
                      dataset: folder(expr('@item().folder')),
                      enableLogging: false,
                      storeSettings: { type: 'AzureBlobFSReadSettings', recursive: true },
                    },
                  },
                ],
              },
            },
          ],
        },
      },
    );
  }
  if (settings.warehouseRetentionDays > 0) {
    const cutoff = `formatDateTime(addDays(utcNow(), -${settings.warehouseRetentionDays}), 'yyyy-MM-dd')`;
    // A window folder is named by its window's end (or `<first>_<last>` folder times): its date is the last part.
    const day = `take(last(split(item().name, '_')), 10)`;
    for (const output of outputs) {
      const o = snake(output);
      const window = `older than ${settings.warehouseRetentionDays} d`;
      const folder = (folderPath: unknown) => ({
        referenceName: NAMES.lakeParquet,
        type: 'DatasetReference',
        parameters: { fileSystem: settings.warehouseFileSystem, folderPath },
      });
      // The data folder decides, for its deletes and manifests too: windows are expired together, and only when a
      // data window newer than the cutoff stays (the newest window of an output is never deleted, however old).
      (roots.get(output) ?? [output]).forEach((root, i) => {
        const r = i === 0 ? o : snake(root.replaceAll('/', '_').replace(/^_+/, ''));
        const folders = `@coalesce(activity('ListWarehouse_${r}').output?.childItems, json('[]'))`;
        activities.push(
          {
            name: `ListWarehouse_${r}`,
            type: 'GetMetadata',
            dependsOn: [],
            policy: policy('0.00:10:00', 2),
            userProperties: label(root, window),
            typeProperties: { dataset: folder(root), fieldList: ['exists', 'childItems'] },
          },
          {
            name: `FilterExpired_${r}`,
            type: 'Filter',
            dependsOn: [after(`ListWarehouse_${r}`)],
            userProperties: label(root, window),
            typeProperties: {
              items: expr(folders),
              condition: expr(`@and(equals(item().type, 'Folder'), less(${day}, ${cutoff}))`),
            },
          },
          ...(i === 0
            ? [
                {
                  name: `FilterKept_${o}`,
                  type: 'Filter',
                  dependsOn: [after(`ListWarehouse_${o}`)],
                  userProperties: label(output, window),
                  typeProperties: {
                    items: expr(folders),
                    condition: expr(`@and(equals(item().type, 'Folder'), greaterOrEquals(${day}, ${cutoff}))`),
                  },
                },
              ]
            : []),
          {
            name: `DeleteExpired_${r}`,
            type: 'ForEach',
            dependsOn: [after(`FilterExpired_${r}`), after(`FilterKept_${o}`)],
            userProperties: label(root, window),
            typeProperties: {
              items: expr(
                `@if(greater(length(activity('FilterKept_${o}').output.value), 0), activity('FilterExpired_${r}').output.value, json('[]'))`,
              ),
              isSequential: false,
              batchCount: 4,
              activities: [
                {
                  name: `DeleteWindowFolder_${r}`,
                  type: 'Delete',
                  dependsOn: [],
                  policy: policy('0.01:00:00', 2),
                  userProperties: label(root, window),
                  typeProperties: {
                    dataset: folder(expr(`@concat('${root}/', item().name)`)),
                    enableLogging: false,
                    storeSettings: { type: 'AzureBlobFSReadSettings', recursive: true },
                  },
                },
              ],
            },
          },
        );
      });
    }
  }
  const pipeline: SynapseArtifact = {
    kind: 'pipeline',
    name: HOUSEKEEPING_PIPELINE,
    properties: {
      description: `Daily housekeeping: drops staging tables of pipelines with no run in progress; deletes resolved and superseded rejects older than ${settings.rejectsRetentionDays} days and finished runs older than ${settings.runsRetentionDays} days that no open reject or cursor names (open rejects are never deleted); deletes the run folders without a manifest of outbound runs that did not succeed and started over ${settings.staleRunHours} hours ago; ${settings.warehouseRetentionDays > 0 ? `deletes warehouse window folders older than ${settings.warehouseRetentionDays} days (data, deletes and run manifests), never the newest window of an output` : 'keeps every published warehouse window (warehouseRetentionDays is 0)'}. Generated by ferry export synapse.`,
      annotations: [ANNOTATION, 'ferry:housekeeping'],
      folder: { name: 'ferry/housekeeping' },
      concurrency: 1,
      activities,
    },
  };
  const [hours, minutes] = settings.housekeepingTime.split(':').map(Number) as [number, number];
  const trigger: SynapseArtifact = {
    kind: 'trigger',
    name: HOUSEKEEPING_TRIGGER,
    properties: {
      type: 'ScheduleTrigger',
      description: `Daily at ${settings.housekeepingTime} UTC: ${HOUSEKEEPING_PIPELINE}.`,
      annotations: [ANNOTATION, 'ferry:housekeeping'],
      typeProperties: {
        recurrence: {
          frequency: 'Day',
          interval: 1,
          startTime: settings.triggerStartTime,
          timeZone: 'UTC',
          schedule: { hours: [hours], minutes: [minutes] },
        },
      },
      pipelines: [
        { pipelineReference: { referenceName: HOUSEKEEPING_PIPELINE, type: 'PipelineReference' }, parameters: {} },
      ],
    },
  };
  const sql: GeneratedFile[] = [
    {
      path: 'sql/tsql/housekeeping/expire-state.sql',
      content: stepFile(
        'Housekeeping: state rows past their retention. Parameters: @rejects_before, @runs_before (UTC text).',
        expire,
      ),
    },
  ];
  return { artifacts: [pipeline, trigger], sql };
}
