import { FerryError } from '../../core/errors.js';
import type { ConversionPlan, DataverseMapping } from '../../core/mapping.js';
import { type PipelineDefinition, parseDuration } from '../../core/pipeline.js';
import { loadMetadata, type TableMetadata } from '../../core/table-metadata.js';
import { keymapTargetsOf } from '../../dialects/sql-dialect.js';
import {
  type ConversionNames,
  type KeymapTarget,
  renderStep,
  type SqlStep,
  STEP_ID_PREFIX,
  type StepParameter,
  StepRegistry,
  type SynapseStepPlan,
} from '../../dialects/sql-steps.js';
import { STATE_SCHEMA, tsqlIdent, tsqlLiteral } from '../../dialects/tsql/staging.js';
import { tsqlSteps } from '../../dialects/tsql/steps.js';
import { loadConversionPlan } from '../../stages/convert-to-dataverse/conversion.js';
import type { SynapseExportSettings } from './export-settings.js';
import { type InboundView, type OutboundView, viewPipeline } from './stage-views.js';
import { type GeneratedFile, NAMES, type SynapseArtifact, type SynapseExport, snake } from './synapse-artifacts.js';

/** What the exporter needs besides the definitions. */
export interface ExportOptions {
  readonly settings: SynapseExportSettings;
  /** Dataverse metadata snapshots (`fixtures/metadata` by default). */
  readonly metadataDir: string;
  /** Extract SQL files by path (for `run-sql-extract` queries other than `default`); the T-SQL twin is `<name>.tsql.sql`. */
  readonly readExtract?: (file: string) => Promise<string | undefined>;
}

/** Staging tables live in the SQL user's default schema (`dbo`) with this prefix; see dialects/tsql/conversion.ts for why. */
const STAGING_SCHEMA = 'dbo';
const STAGING_PREFIX = 'stg_';
/** Hand-written T-SQL twins of custom extract queries (not generated; `--check` leaves them alone). */
export const TSQL_EXTRACT_DIR = 'sql/tsql/extract';
const ANNOTATION = 'generated-by-dataverse-ferry';

/**
 * Compiles pipeline definitions into Synapse artifacts (linked services, datasets, pipelines, triggers) and the
 * T-SQL they run. Pure: the same definitions and settings always give byte-identical output.
 */
export async function exportSynapse(
  defs: readonly PipelineDefinition[],
  options: ExportOptions,
): Promise<SynapseExport> {
  const { settings } = options;
  const steps = new StepRegistry();
  const artifacts: SynapseArtifact[] = [...linkedServices(settings), ...sharedDatasets(settings)];
  const stateSchema = steps.add({
    id: 'setup:ferry-state',
    plan: { kind: 'state-schema', schema: STATE_SCHEMA },
    parameters: [],
  });
  const sqlFiles: GeneratedFile[] = [
    {
      path: 'sql/tsql/setup/ferry-state.sql',
      content: stepFile('State store, error store and key map for ferry in Azure SQL.', stateSchema),
    },
    {
      path: 'sql/tsql/setup/azure-sql-access.sql',
      content: sqlFile(
        `One-time setup in the Azure SQL database \`${settings.sqlDatabase}\`, run by its Microsoft Entra admin: the workspace managed identity \`${settings.synapseWorkspaceName}\` as a database user with what the pipelines do (read/write state, DDL of staging tables in dbo).`,
        azureSqlAccess(settings),
      ),
    },
  ];
  if (defs.some((d) => d.direction === 'outbound')) {
    sqlFiles.push(
      {
        path: 'sql/tsql/setup/serverless-database.sql',
        content: sqlFile(
          `One-time setup on the serverless SQL endpoint, in \`master\`: the database the extracts run in (UTF-8 collation, as the serverless docs advise for Parquet and Delta strings).`,
          [
            `IF DB_ID(${tsqlLiteral(settings.serverlessDatabase)}) IS NULL CREATE DATABASE ${tsqlIdent(settings.serverlessDatabase)} COLLATE Latin1_General_100_BIN2_UTF8`,
          ],
        ),
      },
      {
        path: 'sql/tsql/setup/serverless.sql',
        content: sqlFile(
          `One-time setup in the serverless database \`${settings.serverlessDatabase}\` (after serverless-database.sql), run by a Synapse SQL admin with sqlcmd: \`sqlcmd -S ${settings.serverlessSqlServer} -d ${settings.serverlessDatabase} -G -v FERRY_MASTER_KEY="<from your vault>" -i serverless.sql\`. The master key (a database scoped credential needs one), credential, data sources, Parquet format, output schema, and the workspace managed identity's user with the rights OPENROWSET and CETAS need.`,
          serverlessSetup(settings),
        ),
      },
    );
  }
  const dataverseTables = new Set<string>();
  const keymapColumns = new Map<string, Set<string>>();
  for (const def of [...defs].sort((a, b) => a.name.localeCompare(b.name))) {
    const view = viewPipeline(def);
    if (view.direction === 'inbound') {
      const out = await inboundPipeline(def, view, options, steps);
      artifacts.push(out.pipeline);
      sqlFiles.push(...out.sql);
      for (const t of out.dataverseTables) dataverseTables.add(t);
      for (const [t, cols] of out.keymapColumns ?? []) {
        const set = keymapColumns.get(t) ?? new Set<string>();
        for (const c of cols) set.add(c);
        keymapColumns.set(t, set);
      }
    } else {
      const out = await outboundPipeline(def, view, options, steps);
      artifacts.push(out.pipeline);
      sqlFiles.push(...out.sql);
    }
    artifacts.push(backfillTrigger(def, defs, settings));
  }
  for (const t of [...dataverseTables].sort())
    artifacts.push(
      dataverseDataset(t, await loadMetadata(options.metadataDir, t), [...(keymapColumns.get(t) ?? [])].sort()),
    );
  artifacts.push(...schedules(defs, settings));
  for (const a of artifacts) labelActivities(a, defs);
  for (const a of artifacts) checkExpressionLengths(a);
  return {
    artifacts: sortArtifacts(artifacts),
    sqlFiles: [...sqlFiles].sort((a, b) => a.path.localeCompare(b.path)),
    steps: steps.all(),
  };
}

/** Data Factory / Synapse refuse expressions longer than 8,192 characters; say so at export, not at deploy. */
export const MAX_EXPRESSION_LENGTH = 8192;

function checkExpressionLengths(a: SynapseArtifact): void {
  const walk = (v: unknown, at: string) => {
    if (Array.isArray(v)) {
      for (const [i, x] of v.entries()) walk(x, `${at}/${i}`);
      return;
    }
    if (!v || typeof v !== 'object') return;
    const o = v as Record<string, unknown>;
    if (o.type === 'Expression' && typeof o.value === 'string' && o.value.length > MAX_EXPRESSION_LENGTH) {
      throw new FerryError(
        'export.expression_too_long',
        `${a.kind} \`${a.name}\` has an expression of ${o.value.length} characters at \`${at}\` (limit ${MAX_EXPRESSION_LENGTH}); extract fewer columns (a custom extract listing the needed ones) or split the table.`,
      );
    }
    for (const [k, x] of Object.entries(o)) walk(x, `${at}/${k}`);
  };
  walk(a.properties, '/properties');
}

function sortArtifacts(list: SynapseArtifact[]): SynapseArtifact[] {
  const order = { linkedService: 0, dataset: 1, pipeline: 2, trigger: 3 };
  return list.sort((a, b) => order[a.kind] - order[b.kind] || a.name.localeCompare(b.name));
}

/** A statement ending in exactly one `;`. */
function terminated(statement: string): string {
  return `${statement.trim().replace(/;$/, '')};`;
}

function sqlFile(title: string, statements: readonly string[], step?: SqlStep): string {
  const id = step ? `${STEP_ID_PREFIX}${step.id}\n` : '';
  return `-- ${title}\n-- Generated by \`ferry export synapse\`; do not edit (regenerate instead).\n${id}\n${statements.map(terminated).join('\n\n')}\n`;
}

/** A generated SQL file holding one step's T-SQL. */
function stepFile(title: string, step: SqlStep): string {
  return sqlFile(title, tsqlSteps.render(step), step);
}

/** A step's T-SQL as one batch, first line `-- ferry-step: <id>` (what a local runtime looks its DuckDB rendering up by). */
function stepText(step: SqlStep): string {
  return `${STEP_ID_PREFIX}${step.id}\n${renderStep(step, tsqlSteps)}`;
}

/** A step's T-SQL for a Lookup or Copy source query: the id line, then the one statement (no `;`). */
function stepQuery(step: SqlStep): string {
  return `${STEP_ID_PREFIX}${step.id}\n${tsqlSteps.render(step)[0]!}`;
}

/** Adds a step of `pipeline` to the registry. */
function pipelineStep(
  steps: StepRegistry,
  pipeline: string,
  name: string,
  plan: SynapseStepPlan,
  parameters: readonly StepParameter[] = [],
): SqlStep<SynapseStepPlan> {
  return steps.add({ id: `${pipeline}:${name}`, plan, parameters });
}

/** Parameters of the run bookkeeping steps: pipeline expressions interpolated into the T-SQL. */
const P = {
  runId: { name: 'run_id', expression: '@pipeline().RunId', type: 'string' },
  mode: { name: 'mode', expression: '@pipeline().parameters.mode', type: 'string' },
  windowStart: { name: 'window_start', expression: '@pipeline().parameters.windowStart', type: 'string' },
  windowEnd: { name: 'window_end', expression: '@pipeline().parameters.windowEnd', type: 'string' },
  dataFactory: { name: 'data_factory', expression: '@pipeline().DataFactory', type: 'string' },
  cursor: { name: 'cursor', expression: "@variables('windowEnd')", type: 'string' },
  rowsCopied: { name: 'rows', expression: "@activity('CopyStagingToDataverse').output.rowsCopied", type: 'number' },
  rowsSkipped: {
    name: 'rows_skipped',
    expression: "@activity('CopyStagingToDataverse').output.rowsSkipped",
    type: 'number',
  },
  scriptRunId: { name: 'run_id', expression: '@pipeline().RunId', type: 'string', script: true },
} as const satisfies Record<string, StepParameter>;

function beginRunStep(steps: StepRegistry, pipeline: string, dropTables: readonly string[]): SqlStep {
  return pipelineStep(steps, pipeline, 'begin-run', { kind: 'begin-run', pipeline, dropTables }, [
    P.runId,
    P.mode,
    P.windowStart,
    P.windowEnd,
    P.dataFactory,
  ]);
}

const ref = (name: string) => ({ referenceName: name, type: 'LinkedServiceReference' });
const expr = (value: string) => ({ value, type: 'Expression' });
const kvSecret = (secretName: string) => ({ type: 'AzureKeyVaultSecret', store: ref(NAMES.keyVault), secretName });

function linkedServices(s: SynapseExportSettings): SynapseArtifact[] {
  const sqlProps =
    s.sqlAuthentication === 'managed-identity'
      ? {
          server: s.sqlServer,
          database: s.sqlDatabase,
          encrypt: 'mandatory',
          authenticationType: 'SystemAssignedManagedIdentity',
        }
      : {
          server: s.sqlServer,
          database: s.sqlDatabase,
          encrypt: 'mandatory',
          authenticationType: 'SQL',
          userName: s.sqlUserName,
          password: kvSecret(s.sqlPasswordSecretName ?? ''),
        };
  return [
    {
      kind: 'linkedService',
      name: NAMES.keyVault,
      properties: { type: 'AzureKeyVault', annotations: [ANNOTATION], typeProperties: { baseUrl: s.keyVaultUrl } },
    },
    {
      // No key, SAS or service principal: the workspace's managed identity reads and writes the lake.
      kind: 'linkedService',
      name: NAMES.adls,
      properties: {
        type: 'AzureBlobFS',
        annotations: [ANNOTATION],
        description: 'ADLS Gen2 via the workspace managed identity.',
        typeProperties: { url: s.storageUrl },
      },
    },
    {
      kind: 'linkedService',
      name: NAMES.sql,
      properties: {
        type: 'AzureSqlDatabase',
        annotations: [ANNOTATION],
        description: 'Azure SQL: staging tables, state, error store and key map.',
        typeProperties: sqlProps,
      },
    },
    {
      kind: 'linkedService',
      name: NAMES.serverless,
      properties: {
        type: 'AzureSqlDatabase',
        annotations: [ANNOTATION],
        description: 'Synapse serverless SQL: OPENROWSET over Synapse Link and CETAS to Parquet.',
        typeProperties: {
          server: s.serverlessSqlServer,
          database: s.serverlessDatabase,
          encrypt: 'mandatory',
          authenticationType: 'SystemAssignedManagedIdentity',
        },
      },
    },
    {
      kind: 'linkedService',
      name: NAMES.dataverse,
      properties: {
        type: 'CommonDataServiceForApps',
        annotations: [ANNOTATION],
        description: 'Dataverse as a service principal whose secret lives in Key Vault.',
        typeProperties: {
          deploymentType: 'Online',
          serviceUri: s.dataverseUrl,
          authenticationType: 'AADServicePrincipal',
          servicePrincipalId: s.dataverseServicePrincipalId,
          servicePrincipalCredentialType: 'ServicePrincipalKey',
          servicePrincipalCredential: kvSecret(s.dataverseSecretName),
        },
      },
    },
  ];
}

function sharedDatasets(s: SynapseExportSettings): SynapseArtifact[] {
  const str = { type: 'String' };
  return [
    {
      kind: 'dataset',
      name: NAMES.lakeParquet,
      properties: {
        type: 'Parquet',
        annotations: [ANNOTATION],
        linkedServiceName: ref(NAMES.adls),
        parameters: { fileSystem: { type: 'String', defaultValue: s.lakeFileSystem }, folderPath: str },
        typeProperties: {
          location: {
            type: 'AzureBlobFSLocation',
            fileSystem: expr('@dataset().fileSystem'),
            folderPath: expr('@dataset().folderPath'),
          },
          compressionCodec: 'snappy',
        },
        schema: [],
      },
    },
    {
      kind: 'dataset',
      name: NAMES.lakeText,
      properties: {
        type: 'DelimitedText',
        annotations: [ANNOTATION],
        description: 'Small text files in the lake, e.g. Synapse Link `Changelog/changelog.info`.',
        linkedServiceName: ref(NAMES.adls),
        parameters: { fileSystem: str, folderPath: str, fileName: str },
        typeProperties: {
          location: {
            type: 'AzureBlobFSLocation',
            fileSystem: expr('@dataset().fileSystem'),
            folderPath: expr('@dataset().folderPath'),
            fileName: expr('@dataset().fileName'),
          },
          columnDelimiter: ',',
          escapeChar: '"',
          quoteChar: '"',
          firstRowAsHeader: false,
          encodingName: 'UTF-8',
        },
        schema: [],
      },
    },
    {
      kind: 'dataset',
      name: NAMES.sqlTable,
      properties: {
        type: 'AzureSqlTable',
        annotations: [ANNOTATION],
        linkedServiceName: ref(NAMES.sql),
        parameters: { schemaName: str, tableName: str },
        typeProperties: { schema: expr('@dataset().schemaName'), table: expr('@dataset().tableName') },
        schema: [],
      },
    },
  ];
}

/**
 * A Dataverse table. Where key maps are read from it, its schema names the columns read with their types ("import
 * schema"): without one the connector infers columns from the first rows, drops columns null in them, and fails on
 * an empty table ("The valid structure information … are required for Dynamics source").
 */
function dataverseDataset(table: string, meta: TableMetadata, columns: readonly string[]): SynapseArtifact {
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

const WINDOW_PARAMETERS = {
  windowStart: { type: 'String', defaultValue: '' },
  windowEnd: { type: 'String', defaultValue: '' },
  mode: { type: 'String', defaultValue: 'manual' },
};

const policy = (timeout: string, retry: number) => ({
  timeout,
  retry,
  retryIntervalInSeconds: 60,
  secureInput: false,
  secureOutput: false,
});
const after = (activity: string, condition: 'Succeeded' | 'Failed' | 'Completed' = 'Succeeded') => ({
  activity,
  dependencyConditions: [condition],
});
const sqlTableRef = (schema: string, table: string) => ({
  referenceName: NAMES.sqlTable,
  type: 'DatasetReference',
  parameters: { schemaName: schema, tableName: table },
});

function scriptActivity(
  name: string,
  linkedService: string,
  text: unknown,
  dependsOn: unknown[],
  parameters: unknown[] = [],
  retry = 0,
  scriptType: 'NonQuery' | 'Query' = 'NonQuery',
) {
  return {
    name,
    type: 'Script',
    dependsOn,
    policy: policy('0.02:00:00', retry),
    userProperties: [],
    linkedServiceName: ref(linkedService),
    typeProperties: {
      scripts: [{ type: scriptType, text, ...(parameters.length ? { parameters } : {}) }],
      scriptBlockExecutionTimeout: '02:00:00',
    },
  };
}

const runParams = (pipelineName: string) => [
  { name: 'run_id', type: 'String', value: '@pipeline().RunId', direction: 'Input', size: 200 },
  { name: 'pipeline', type: 'String', value: pipelineName, direction: 'Input', size: 200 },
];

function watermarkLookup(steps: StepRegistry, name: string, source: string, fallback: string) {
  const step = pipelineStep(steps, name, 'read-cursor', { kind: 'read-cursor', pipeline: name, source, fallback });
  return {
    name: 'LookupWatermark',
    type: 'Lookup',
    dependsOn: [after('BeginRun')],
    policy: policy('0.00:10:00', 2),
    userProperties: [],
    typeProperties: {
      source: {
        type: 'AzureSqlSource',
        sqlReaderQuery: stepQuery(step),
        queryTimeout: '00:10:00',
        partitionOption: 'None',
      },
      dataset: sqlTableRef(STATE_SCHEMA, 'cursors'),
      firstRowOnly: true,
    },
  };
}

/**
 * Ends the run: counts rejects, fails it past the pipeline's threshold, and moves the cursor only for non-backfill
 * runs that are within it (backfills never move the cursor — the same rule as the local runner).
 */
function finishRunStep(
  steps: StepRegistry,
  def: PipelineDefinition,
  source: string,
  inbound: boolean,
  rowsSkippedExpression = P.rowsSkipped.expression as string,
  rowsExpression = P.rowsCopied.expression as string,
  cursorValue = "variables('windowEnd')",
): SqlStep {
  const plan: SynapseStepPlan = {
    kind: 'finish-run',
    pipeline: def.name,
    source,
    maxRejectedRatio: def.rejectThreshold.maxRejectedRatio,
    ...(def.rejectThreshold.maxRejected === undefined ? {} : { maxRejected: def.rejectThreshold.maxRejected }),
    rowsWritten: inbound,
    ...(inbound ? { copySkipped: { errorsFolder: `errors/${def.name}/` } } : {}),
  };
  // Never backwards: a manual run over a past window saves the later of the stored cursor and its window end
  // (runs of one pipeline do not overlap: concurrency 1).
  const stored = "activity('LookupWatermark').output.firstRow.cursor_value";
  const cursor = {
    ...P.cursor,
    expression: `@if(greater(${stored}, ${cursorValue}), ${stored}, ${cursorValue})`,
  };
  const parameters = inbound
    ? [
        P.runId,
        P.mode,
        cursor,
        { ...P.rowsCopied, expression: rowsExpression },
        { ...P.rowsSkipped, expression: rowsSkippedExpression },
      ]
    : [P.runId, P.mode, cursor];
  return pipelineStep(steps, def.name, 'finish-run', plan, parameters);
}

/** Fails the run (a Fail activity) when FinishRun reported rejects beyond the pipeline's threshold. */
function thresholdCheck(def: PipelineDefinition) {
  return {
    name: 'CheckRejectThreshold',
    type: 'IfCondition',
    dependsOn: [after('FinishRun')],
    userProperties: [],
    typeProperties: {
      expression: expr(`@equals(activity('FinishRun').output.resultSets[0].rows[0].over_threshold, 1)`),
      ifTrueActivities: [
        {
          name: 'RejectThresholdExceeded',
          type: 'Fail',
          dependsOn: [],
          userProperties: [],
          typeProperties: {
            message: expr(
              `@concat('Rejected rows (', string(activity('FinishRun').output.resultSets[0].rows[0].rejected), ') exceed the threshold of ${def.name}; see ${STATE_SCHEMA}.rejects for run ', pipeline().RunId, ', fix the source or the mapping, then replay.')`,
            ),
            errorCode: '3',
          },
        },
      ],
    },
  };
}

/**
 * Marks the run failed when any activity failed. FinishRun is the end of every success path, so it is Skipped when
 * anything before it failed (and Failed when it fails itself): the documented "generic error handling" wiring
 * (upon failure + upon skip from the last step) catches a failure anywhere, not only in one activity.
 */
function failRunActivity(steps: StepRegistry, pipeline: string) {
  const step = pipelineStep(
    steps,
    pipeline,
    'mark-failed',
    { kind: 'mark-failed', failedActivity: 'An activity of this run' },
    [P.runId],
  );
  return scriptActivity('MarkRunFailed', NAMES.sql, expr(stepText(step)), [
    { activity: 'FinishRun', dependencyConditions: ['Failed', 'Skipped'] },
  ]);
}

interface PipelineOut {
  readonly pipeline: SynapseArtifact;
  readonly sql: GeneratedFile[];
  readonly dataverseTables: string[];
  /** Columns read from each key-map table (its primary id and alternate-key attributes). */
  readonly keymapColumns?: readonly [string, string[]][];
}

async function inboundPipeline(
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
  const keyName = plan.keyName;
  const conversion = { plan, names, keymapTargets };
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
      // Files are selected by modification time in (watermark or windowStart, windowEnd]: the same window rule as
      // the local runner's cursor, so a failed run repeats its window.
      name: 'CopyParquetToStaging',
      type: 'Copy',
      dependsOn: [after('SetWindowEnd')],
      policy: policy('0.02:00:00', 2),
      userProperties: [],
      typeProperties: {
        source: {
          type: 'ParquetSource',
          storeSettings: {
            type: 'AzureBlobFSReadSettings',
            // Not recursive: Spark writes uncommitted part files under `_temporary/` below the folder, and the
            // wildcards cannot exclude a segment (the local runner skips `_`/`.` segments). Deltas sit directly
            // in the folder.
            recursive: false,
            wildcardFolderPath: view.source.folder,
            wildcardFileName: view.source.pattern,
            modifiedDatetimeStart: expr(
              `@if(empty(pipeline().parameters.windowStart), activity('LookupWatermark').output.firstRow.cursor_value, pipeline().parameters.windowStart)`,
            ),
            modifiedDatetimeEnd: expr(`@variables('windowEnd')`),
            enablePartitionDiscovery: false,
          },
          additionalColumns: [
            { name: '__source_file', value: '$$FILEPATH' },
            { name: '__run_id', value: expr('@pipeline().RunId') },
          ],
        },
        sink: { type: 'AzureSqlSink', tableOption: 'autoCreate', writeBatchSize: 10000, sqlWriterUseTableLock: true },
        enableStaging: false,
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
  ];
  // Key maps: Dataverse GUIDs of lookup targets by alternate key, so lookups become GUID columns the Copy sink takes.
  const keymapActivities: string[] = [];
  for (const t of keymapTargets) {
    const raw = `${STAGING_PREFIX}keymap_${t.table}_raw`;
    const truncate = pipelineStep(steps, def.name, `truncate-keymap:${t.table}`, {
      kind: 'truncate-table',
      schema: STAGING_SCHEMA,
      table: raw,
    });
    activities.push({
      name: `CopyKeyMap_${t.table}`,
      type: 'Copy',
      dependsOn: [after('BeginRun')],
      policy: policy('0.02:00:00', 2),
      userProperties: [],
      typeProperties: {
        source: {
          type: 'CommonDataServiceForAppsSource',
          query: `<fetch mapping="logical"><entity name="${t.table}"><attribute name="${t.idAttribute}" />${t.keyAttributes.map((a) => `<attribute name="${a}" />`).join('')}</entity></fetch>`,
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
    keymapActivities.push(`CopyKeyMap_${t.table}`);
  }
  const dataverseCopies = dataverseCopyActivities(
    def,
    plan,
    await loadMetadata(options.metadataDir, table),
    stepQuery(sinkStep),
    names.sink.table,
    view,
    settings,
  );
  // `rowsSkipped` is in a Copy's output only with fault tolerance on; read it null-safe so FinishRun always runs.
  const skipped = `@string(${dataverseCopies
    .map((c) => `coalesce(activity('${c.name}').output?.rowsSkipped, 0)`)
    .reduce((a, b) => `add(${a}, ${b})`)})`;
  activities.push(
    scriptActivity(
      'ConvertToDataverse',
      NAMES.sql,
      stepText(convertStep),
      [after('CopyParquetToStaging'), ...keymapActivities.map((a) => after(a))],
      runParams(def.name),
    ),
    ...dataverseCopies,
    // Versions sent become the applied versions per key, so a later, older version is skipped as stale.
    scriptActivity(
      'SaveAppliedVersions',
      NAMES.sql,
      stepText(saveStep),
      [after(dataverseCopies[dataverseCopies.length - 1]!.name as string)],
      runParams(def.name),
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
    'CopyParquetToStaging',
    ...keymapActivities,
    'ConvertToDataverse',
    ...dataverseCopies.map((c) => c.name),
    'SaveAppliedVersions',
  ]);
  const inner = activities.filter((a) => work.has(String(a.name)));
  for (const a of inner) a.dependsOn = (a.dependsOn as { activity: string }[]).filter((d) => work.has(d.activity));
  const lastCopy = dataverseCopies[dataverseCopies.length - 1]!.name;
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
  const windowStartExpr = `@if(empty(pipeline().parameters.windowStart), activity('LookupWatermark').output.firstRow.cursor_value, pipeline().parameters.windowStart)`;
  const outer = activities.filter((a) => !work.has(String(a.name)));
  const at = outer.findIndex((a) => a.name === 'FinishRun');
  outer.splice(
    at,
    0,
    {
      // Lists the folder's files in the copy's window: `modifiedDatetimeStart/End` filter files in childItems.
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
          modifiedDatetimeStart: expr(windowStartExpr),
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
    {
      name: 'IfNewFiles',
      type: 'IfCondition',
      dependsOn: [after('FilterDeltaFiles')],
      userProperties: [],
      typeProperties: {
        expression: expr(`@greater(length(activity('FilterDeltaFiles').output.value), 0)`),
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
      parameters: WINDOW_PARAMETERS,
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
  ];
  const dataverseTables = [table, ...keymapTargets.map((t: KeymapTarget) => t.table)];
  const keymapColumns = keymapTargets.map((t): [string, string[]] => [t.table, [t.idAttribute, ...t.keyAttributes]]);
  return { pipeline, sql, dataverseTables, keymapColumns };
}

async function outboundPipeline(
  def: PipelineDefinition,
  view: OutboundView,
  options: ExportOptions,
  steps: StepRegistry,
): Promise<PipelineOut> {
  const { settings } = options;
  const source = `synapse-link:${view.source.folder}`;
  const csv = view.source.format === 'csv';
  const activities: Record<string, unknown>[] = [
    scriptActivity('BeginRun', NAMES.sql, expr(stepText(beginRunStep(steps, def.name, []))), [], [], 2),
    watermarkLookup(steps, def.name, source, ''),
  ];
  let windowEndExpr: string;
  if (csv) {
    // Synapse Link names the folder it is still writing in Changelog/changelog.info: the window stops before it.
    activities.push({
      name: 'LookupChangelog',
      type: 'Lookup',
      dependsOn: [after('BeginRun')],
      policy: policy('0.00:10:00', 2),
      userProperties: [],
      typeProperties: {
        source: {
          type: 'DelimitedTextSource',
          storeSettings: { type: 'AzureBlobFSReadSettings', recursive: false },
          formatSettings: { type: 'DelimitedTextReadSettings' },
        },
        dataset: {
          referenceName: NAMES.lakeText,
          type: 'DatasetReference',
          parameters: {
            fileSystem: settings.synapseLinkFileSystem,
            // Relative to the Synapse Link container's root; the local lake folder only names the container.
            folderPath: 'Changelog',
            fileName: 'changelog.info',
          },
        },
        firstRowOnly: true,
      },
    });
    // A requested window end never reaches past the in-progress folder either (a backfill of the current window).
    windowEndExpr = `@if(or(empty(pipeline().parameters.windowEnd), less(activity('LookupChangelog').output.firstRow.Prop_0, formatDateTime(pipeline().parameters.windowEnd, 'yyyy-MM-ddTHH.mm.ssZ'))), activity('LookupChangelog').output.firstRow.Prop_0, formatDateTime(pipeline().parameters.windowEnd, 'yyyy-MM-ddTHH.mm.ssZ'))`;
  } else {
    windowEndExpr = `@if(empty(pipeline().parameters.windowEnd), utcNow('yyyy-MM-ddTHH:mm:ssZ'), pipeline().parameters.windowEnd)`;
  }
  activities.push({
    name: 'SetWindow',
    type: 'SetVariable',
    dependsOn: csv ? [after('LookupWatermark'), after('LookupChangelog')] : [after('LookupWatermark')],
    userProperties: [],
    typeProperties: { variableName: 'windowEnd', value: expr(windowEndExpr) },
  });
  activities.push({
    name: 'SetWindowStart',
    type: 'SetVariable',
    dependsOn: [after('SetWindow')],
    userProperties: [],
    typeProperties: {
      variableName: 'windowStart',
      value: expr(
        csv
          ? `@if(empty(pipeline().parameters.windowStart), activity('LookupWatermark').output.firstRow.cursor_value, formatDateTime(pipeline().parameters.windowStart, 'yyyy-MM-ddTHH.mm.ssZ'))`
          : `@if(empty(pipeline().parameters.windowStart), activity('LookupWatermark').output.firstRow.cursor_value, pipeline().parameters.windowStart)`,
      ),
    },
  });
  const sql: GeneratedFile[] = [];
  const extractNames: string[] = [];
  for (const x of view.extracts) {
    const meta = await loadMetadata(options.metadataDir, x.table);
    let custom: string | undefined;
    if (x.query !== 'default') {
      // Custom extracts are DuckDB SQL; serverless SQL runs a hand-written T-SQL twin reading from `src`.
      const twin = `${TSQL_EXTRACT_DIR}/${x.query.split('/').pop()}`;
      custom = await options.readExtract?.(twin);
      if (custom === undefined) {
        throw new FerryError(
          'export.extract_not_portable',
          `Extract query \`${x.query}\` of pipeline \`${def.name}\` is DuckDB SQL; write its T-SQL twin \`${twin}\` (a SELECT reading from \`src\`, the latest row per Id) so the export can run it on serverless SQL.`,
        );
      }
      custom = custom
        .split('\n')
        .filter((line) => !line.trim().startsWith('--'))
        .join('\n')
        .trim();
    }
    const output = x.output ?? x.table;
    const extractStep = pipelineStep(
      steps,
      def.name,
      `extract:${output}`,
      {
        kind: 'extract',
        extract: {
          table: x.table,
          output,
          metadata: { Attributes: meta.Attributes.map((a) => ({ LogicalName: String(a.LogicalName) })) },
          format: view.source.format,
          synapseLinkFolder: view.source.folder,
          deletes: view.sink.deletes,
          ...(custom === undefined ? {} : { customSelect: custom, duckdbSelect: await duckdbQuery(x.query, options) }),
        },
      },
      [
        { name: 'window_start', expression: "@variables('windowStart')", type: 'string', script: true },
        { name: 'window_end', expression: "@variables('windowEnd')", type: 'string', script: true },
        {
          name: 'location',
          expression: `@concat('${output}/', variables('windowEnd'), '/')`,
          type: 'string',
          dataSource: 'ferry_warehouse',
        },
        ...(view.sink.deletes === 'separate-file'
          ? [
              {
                name: 'location_deletes',
                expression: `@concat('${output}/', variables('windowEnd'), '/deletes/')`,
                type: 'string' as const,
                dataSource: 'ferry_warehouse',
              },
            ]
          : []),
      ],
    );
    sql.push({
      path: `sql/tsql/${def.name}/extract-${output}.sql`,
      content: stepFile(
        `Extract of \`${x.table}\` for \`${def.name}\` (serverless SQL). Parameters: @window_start, @window_end.`,
        extractStep,
      ),
    });
    const name = `ExtractToParquet_${output}`;
    // Plain text (no pipeline expression, so no 8,192-character limit); the window comes in as parameters.
    const windowParams = [
      { name: 'window_start', type: 'String', value: expr(`@variables('windowStart')`), direction: 'Input', size: 64 },
      { name: 'window_end', type: 'String', value: expr(`@variables('windowEnd')`), direction: 'Input', size: 64 },
    ];
    activities.push(
      scriptActivity(name, NAMES.serverless, stepText(extractStep), [after('SetWindowStart')], windowParams, 1),
    );
    extractNames.push(name);
  }
  // CSV: the completed timestamp folders of the window are listed first (direct children of the container, in the
  // storage's lexical order). None → the extracts are skipped (no empty output folder, no CETAS on a location a
  // previous run used); the cursor becomes the last folder actually processed (review defects 1 and 6).
  let cursorValue = "variables('windowEnd')";
  if (csv) {
    const extracts = activities.filter((a) => extractNames.includes(String(a.name)));
    for (const a of extracts) a.dependsOn = [];
    const rest = activities.filter((a) => !extractNames.includes(String(a.name)));
    rest.push(
      {
        name: 'ListSynapseLinkFolders',
        type: 'GetMetadata',
        dependsOn: [after('SetWindowStart')],
        policy: policy('0.00:10:00', 2),
        userProperties: [],
        typeProperties: {
          dataset: {
            referenceName: NAMES.lakeParquet,
            type: 'DatasetReference',
            parameters: { fileSystem: settings.synapseLinkFileSystem, folderPath: '' },
          },
          fieldList: ['childItems'],
          storeSettings: { type: 'AzureBlobFSReadSettings' },
        },
      },
      {
        name: 'FilterNewFolders',
        type: 'Filter',
        dependsOn: [after('ListSynapseLinkFolders')],
        userProperties: [],
        typeProperties: {
          items: expr(`@activity('ListSynapseLinkFolders').output.childItems`),
          // Timestamp folders after the cursor and before the one still being written (`Changelog`, `OptionsetMetadata`
          // sort after digits, so they fall outside).
          condition: expr(
            `@and(equals(item().type, 'Folder'), and(greater(item().name, variables('windowStart')), less(item().name, variables('windowEnd'))))`,
          ),
        },
      },
      {
        name: 'IfNewFolders',
        type: 'IfCondition',
        dependsOn: [after('FilterNewFolders')],
        userProperties: [],
        typeProperties: {
          expression: expr(`@greater(length(activity('FilterNewFolders').output.value), 0)`),
          ifTrueActivities: [
            ...extracts,
            {
              name: 'SetLastFolder',
              type: 'SetVariable',
              dependsOn: extractNames.map((n) => after(n)),
              userProperties: [],
              typeProperties: {
                variableName: 'lastFolder',
                value: expr(`@last(activity('FilterNewFolders').output.value).name`),
              },
            },
          ],
        },
      },
    );
    activities.length = 0;
    activities.push(...rest);
    extractNames.length = 0;
    extractNames.push('IfNewFolders');
    cursorValue = `if(empty(variables('lastFolder')), activity('LookupWatermark').output.firstRow.cursor_value, variables('lastFolder'))`;
  }
  activities.push(
    scriptActivity(
      'FinishRun',
      NAMES.sql,
      expr(stepText(finishRunStep(steps, def, source, false, undefined, undefined, cursorValue))),
      extractNames.map((n) => after(n)),
      [],
      0,
      'Query',
    ),
    thresholdCheck(def),
    failRunActivity(steps, def.name),
  );
  const pipeline: SynapseArtifact = {
    kind: 'pipeline',
    name: NAMES.pipeline(def.name),
    properties: {
      description: describe(
        def,
        `Synapse Link (${view.source.format}) → serverless SQL OPENROWSET → CETAS Parquet into a fresh folder per window.`,
      ),
      annotations: [ANNOTATION, `ferry:${def.name}`],
      folder: { name: 'ferry/outbound' },
      concurrency: 1,
      parameters: WINDOW_PARAMETERS,
      variables: {
        windowStart: { type: 'String' },
        windowEnd: { type: 'String' },
        ...(csv ? { lastFolder: { type: 'String', defaultValue: '' } } : {}),
      },
      activities,
    },
  };
  return { pipeline, sql, dataverseTables: [] };
}

function serverlessSetup(s: SynapseExportSettings): string[] {
  const account = s.storageUrl.replace(/\/$/, '');
  const ws = tsqlIdent(s.synapseWorkspaceName);
  return [
    // A database scoped credential needs a database master key first (error 15581 otherwise). The password is a
    // sqlcmd variable, so no secret is ever written here.
    `IF NOT EXISTS (SELECT 1 FROM sys.symmetric_keys WHERE name = N'##MS_DatabaseMasterKey##') CREATE MASTER KEY ENCRYPTION BY PASSWORD = '$(FERRY_MASTER_KEY)'`,
    `IF NOT EXISTS (SELECT 1 FROM sys.database_scoped_credentials WHERE name = N'ferry_workspace_identity') CREATE DATABASE SCOPED CREDENTIAL [ferry_workspace_identity] WITH IDENTITY = 'Managed Identity'`,
    `IF NOT EXISTS (SELECT 1 FROM sys.external_data_sources WHERE name = N'ferry_synapse_link') CREATE EXTERNAL DATA SOURCE [ferry_synapse_link] WITH (LOCATION = ${tsqlLiteral(`${account}/${s.synapseLinkFileSystem}`)}, CREDENTIAL = [ferry_workspace_identity])`,
    `IF NOT EXISTS (SELECT 1 FROM sys.external_data_sources WHERE name = N'ferry_warehouse') CREATE EXTERNAL DATA SOURCE [ferry_warehouse] WITH (LOCATION = ${tsqlLiteral(`${account}/${s.warehouseFileSystem}`)}, CREDENTIAL = [ferry_workspace_identity])`,
    `IF NOT EXISTS (SELECT 1 FROM sys.external_file_formats WHERE name = N'ferry_parquet') CREATE EXTERNAL FILE FORMAT [ferry_parquet] WITH (FORMAT_TYPE = PARQUET, DATA_COMPRESSION = 'org.apache.hadoop.io.compress.SnappyCodec')`,
    `IF SCHEMA_ID(N'ferry_out') IS NULL EXEC(N'CREATE SCHEMA ${tsqlIdent('ferry_out')}')`,
    // The pipelines' serverless linked service signs in as the workspace managed identity.
    `IF USER_ID(${tsqlLiteral(s.synapseWorkspaceName)}) IS NULL CREATE USER ${ws} FROM EXTERNAL PROVIDER`,
    `GRANT REFERENCES ON DATABASE SCOPED CREDENTIAL::[ferry_workspace_identity] TO ${ws}`,
    `GRANT ADMINISTER DATABASE BULK OPERATIONS TO ${ws}`,
    `GRANT CREATE TABLE TO ${ws}`,
    `GRANT ALTER ON SCHEMA::[ferry_out] TO ${ws}`,
    `GRANT SELECT ON SCHEMA::[ferry_out] TO ${ws}`,
    `GRANT ALTER ANY EXTERNAL DATA SOURCE TO ${ws}`,
    `GRANT ALTER ANY EXTERNAL FILE FORMAT TO ${ws}`,
  ];
}

/** The workspace managed identity in the Azure SQL database: state, error store, key map, staging DDL in dbo. */
function azureSqlAccess(s: SynapseExportSettings): string[] {
  const mi = s.sqlAuthentication === 'managed-identity';
  // With key-vault-password the pipelines sign in as that SQL login, whose database user already exists.
  const ws = tsqlIdent(mi ? s.synapseWorkspaceName : (s.sqlUserName ?? ''));
  return [
    ...(mi
      ? [`IF USER_ID(${tsqlLiteral(s.synapseWorkspaceName)}) IS NULL CREATE USER ${ws} FROM EXTERNAL PROVIDER`]
      : []),
    `ALTER ROLE db_datareader ADD MEMBER ${ws}`,
    `ALTER ROLE db_datawriter ADD MEMBER ${ws}`,
    // Staging tables are dropped, created (SELECT … INTO, TRUNCATE) in dbo on every run.
    `ALTER ROLE db_ddladmin ADD MEMBER ${ws}`,
    `GRANT CREATE TABLE TO ${ws}`,
    `GRANT ALTER ON SCHEMA::[dbo] TO ${ws}`,
    `GRANT ALTER ON SCHEMA::[${STATE_SCHEMA}] TO ${ws}`,
  ];
}

/** A custom extract's DuckDB query without its comment lines (the DuckDB rendering of the extract step). */
async function duckdbQuery(file: string, options: ExportOptions): Promise<string> {
  const text = await options.readExtract?.(file);
  if (text === undefined)
    throw new FerryError(
      'export.extract_missing',
      `Extract query \`${file}\` cannot be read; paths are relative to the project root.`,
    );
  return text
    .split('\n')
    .filter((line) => !line.trim().startsWith('--'))
    .join('\n')
    .trim();
}

function describe(def: PipelineDefinition, what: string): string {
  return `${def.description ? `${def.description} — ` : ''}${what} Generated from pipelines/${def.name}.ts by ferry export synapse.`;
}

function minutesOf(def: PipelineDefinition): number {
  return Math.max(1, Math.round(parseDuration(def.every) / 60_000));
}

/**
 * Scheduled runs: one ScheduleTrigger per distinct `every`, starting an orchestrator pipeline that runs its
 * pipelines in dependency order (ExecutePipeline, wait on completion) — the local scheduler's tick order.
 */
function schedules(defs: readonly PipelineDefinition[], s: SynapseExportSettings): SynapseArtifact[] {
  const groups = new Map<number, PipelineDefinition[]>();
  for (const d of defs) {
    const m = minutesOf(d);
    groups.set(m, [...(groups.get(m) ?? []), d]);
  }
  const out: SynapseArtifact[] = [];
  for (const [minutes, group] of [...groups.entries()].sort((a, b) => a[0] - b[0])) {
    const inGroup = new Set(group.map((d) => d.name));
    const activities = [...group]
      .sort((a, b) => a.name.localeCompare(b.name))
      .map((d) => ({
        name: `Run_${snake(d.name)}`,
        type: 'ExecutePipeline',
        // A dependent pipeline waits for its parents to succeed in the same tick (accounts before contacts).
        dependsOn: d.dependsOn
          .filter((p) => inGroup.has(p))
          .sort()
          .map((p) => after(`Run_${snake(p)}`)),
        userProperties: [],
        typeProperties: {
          pipeline: { referenceName: NAMES.pipeline(d.name), type: 'PipelineReference' },
          waitOnCompletion: true,
          parameters: {
            windowStart: '',
            // Empty: each pipeline runs from its watermark to now (inbound) or to the in-progress folder (outbound).
            windowEnd: '',
            mode: 'scheduled',
          },
        },
      }));
    out.push({
      kind: 'pipeline',
      name: NAMES.schedulePipeline(minutes),
      properties: {
        description: `Runs every ${minutes} minutes, in dependency order: ${group
          .map((d) => d.name)
          .sort()
          .join(', ')}.`,
        annotations: [ANNOTATION],
        folder: { name: 'ferry/schedule' },
        concurrency: 1,
        parameters: { scheduledTime: { type: 'String', defaultValue: '' } },
        activities,
      },
    });
    out.push({
      kind: 'trigger',
      name: NAMES.scheduleTrigger(minutes),
      properties: {
        type: 'ScheduleTrigger',
        description: `Every ${minutes} minutes (scheduled runs). Schedule triggers do not backfill missed ticks; the next run catches up from the watermark.`,
        annotations: [ANNOTATION, 'ferry:schedule'],
        typeProperties: {
          recurrence: { frequency: 'Minute', interval: minutes, startTime: s.triggerStartTime, timeZone: 'UTC' },
        },
        pipelines: [
          {
            pipelineReference: { referenceName: NAMES.schedulePipeline(minutes), type: 'PipelineReference' },
            parameters: { scheduledTime: '@trigger().scheduledTime' },
          },
        ],
      },
    });
  }
  return out;
}

/**
 * Backfills: a TumblingWindowTrigger per pipeline (windows of `every`, at least 15 minutes) over
 * [backfillStartTime, backfillEndTime) — bounded, so it does not keep firing beside the schedule — each window after
 * the same window of the pipelines it depends on. No self-dependency: windows are independent (inbound files are
 * selected by their own window, outbound output goes to its own folder, stale versions are skipped by
 * `applied_versions`), so one failed window does not hold back every later one; rerun it from monitoring.
 */
function backfillTrigger(
  def: PipelineDefinition,
  all: readonly PipelineDefinition[],
  s: SynapseExportSettings,
): SynapseArtifact {
  const minutes = Math.max(15, minutesOf(def));
  const known = new Set(all.map((d) => d.name));
  const parents = def.dependsOn.filter((p) => known.has(p)).sort();
  return {
    kind: 'trigger',
    name: NAMES.backfillTrigger(def.name),
    properties: {
      type: 'TumblingWindowTrigger',
      description: `Backfill of ${def.name} in ${minutes}-minute windows from ${s.backfillStartTime} to ${s.backfillEndTime} (settings backfillStartTime/backfillEndTime); created stopped — start it (or rerun windows) to backfill. Backfill runs never move the cursor. Frequency and interval cannot change after publish: deploy replaces the trigger when they do.`,
      annotations: [ANNOTATION, 'ferry:backfill'],
      typeProperties: {
        frequency: 'Minute',
        interval: minutes,
        startTime: s.backfillStartTime,
        endTime: s.backfillEndTime,
        delay: s.windowDelay,
        maxConcurrency: s.backfillMaxConcurrency,
        retryPolicy: { count: 2, intervalInSeconds: 120 },
        ...(parents.length
          ? {
              dependsOn: parents.map((p) => ({
                type: 'TumblingWindowTriggerDependencyReference',
                referenceTrigger: { referenceName: NAMES.backfillTrigger(p), type: 'TriggerReference' },
              })),
            }
          : {}),
      },
      pipeline: {
        pipelineReference: { referenceName: NAMES.pipeline(def.name), type: 'PipelineReference' },
        parameters: {
          windowStart: '@trigger().outputs.windowStartTime',
          windowEnd: '@trigger().outputs.windowEndTime',
          mode: 'backfill',
        },
      },
    },
  };
}

/** Interim types of the Dataverse connector per attribute type ("Data type mapping for Dynamics"). */
const DATAVERSE_INTERIM_TYPES: Readonly<Record<string, string>> = {
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
const COPY_SINK_UNSUPPORTED = new Set(['MultiSelectPicklistType', 'PartyListType', 'CalendarRulesType']);
const DATAVERSE_DOC = 'learn.microsoft.com/azure/data-factory/connector-dynamics-crm-office-365';

/** Column names of the sink query's SELECT list (`SELECT [a], [b@EntityReference] FROM …`). */
function sinkQueryColumns(sinkQuery: string): string[] {
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
 * - MultiSelectPicklist / PartyList / CalendarRules columns are refused here, naming the column, unless the
 *   settings' `omitColumns` leave them out of the Synapse export (the local runner still writes them);
 * - `writeBatchSize` at most 10 and `parallelCopies` set, as the connector doc advises against throttling;
 * - nulls: the local writer sends a null for `nullMeans: 'clear'` columns and omits it for `'omit'` ones (lookups by
 *   default). One copy cannot do both, so columns that clear go with `ignoreNullValues: false` and columns that
 *   omit with `ignoreNullValues: true` in a second copy of the same rows (two upserts per row, both idempotent).
 */
function dataverseCopyActivities(
  def: PipelineDefinition,
  plan: ConversionPlan,
  meta: TableMetadata,
  sinkQuery: string,
  sinkTable: string,
  view: InboundView,
  settings: SynapseExportSettings,
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
  for (const c of plan.columns) {
    if (!c.inPayload) continue;
    const type = typeOf(c.attribute);
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
  const copy = (name: string, cols: string[], ignoreNullValues: boolean, dependsOn: unknown[]) => {
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
          sqlReaderQuery: sinkQuery,
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
  if (!clear.length || !omit.length) return [first];
  return [first, copy('CopyLookupsToDataverse', omit, true, [after('CopyStagingToDataverse')])];
}

/**
 * The SQL steps of the export of `defs`, by id: what a runtime executing the artifacts under `synapse/` renders in
 * another dialect (see `src/dialects/sql-steps.ts`). The same definitions and settings give the same steps.
 */
export async function planSynapseSteps(
  defs: readonly PipelineDefinition[],
  options: ExportOptions,
): Promise<StepRegistry> {
  const registry = new StepRegistry();
  for (const step of (await exportSynapse(defs, options)).steps ?? []) registry.add(step);
  return registry;
}

/** The Filter condition on `item().name` for a file pattern with at most one `*` (ADF name functions). */
function globCondition(pattern: string, pipeline: string): string {
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

/** Activities that run before the window is known (the window then comes from the run's parameters). */
const BEFORE_WINDOW = new Set(['BeginRun', 'LookupWatermark', 'LookupChangelog', 'SetWindowEnd', 'SetWindow']);

/**
 * `userProperties` on every activity of a ferry pipeline: the ferry pipeline, its Dataverse table(s) and the window,
 * so Monitor can filter and show activity runs by table and window.
 */
function labelActivities(a: SynapseArtifact, defs: readonly PipelineDefinition[]): void {
  if (a.kind !== 'pipeline') return;
  const def = defs.find((d) => NAMES.pipeline(d.name) === a.name);
  if (!def) return;
  const view = viewPipeline(def);
  const tables = view.direction === 'inbound' ? view.upsert.table : view.extracts.map((x) => x.table).join(',');
  const params = `@{pipeline().parameters.windowStart}..@{pipeline().parameters.windowEnd}`;
  const known =
    view.direction === 'inbound'
      ? `@{pipeline().parameters.windowStart}..@{variables('windowEnd')}`
      : `@{variables('windowStart')}..@{variables('windowEnd')}`;
  const visit = (list: unknown) => {
    for (const act of Array.isArray(list) ? (list as Record<string, unknown>[]) : []) {
      act.userProperties = [
        { name: 'ferryPipeline', value: def.name },
        { name: 'table', value: tables },
        { name: 'window', value: BEFORE_WINDOW.has(String(act.name)) ? params : known },
      ];
      const tp = act.typeProperties as Record<string, unknown> | undefined;
      visit(tp?.ifTrueActivities);
      visit(tp?.ifFalseActivities);
    }
  };
  visit(a.properties.activities);
}
