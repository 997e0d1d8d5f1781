import { FerryError } from '../../core/errors.js';
import type { PipelineDefinition } from '../../core/pipeline.js';
import { loadMetadata } from '../../core/table-metadata.js';
import { StepRegistry } from '../../dialects/sql-steps.js';
import { STATE_SCHEMA, tsqlIdent, tsqlLiteral } from '../../dialects/tsql/staging.js';
import { dataverseDataset } from './dataverse-copy-activities.js';
import { housekeepingArtifacts } from './housekeeping-pipeline.js';
import { inboundPipeline } from './inbound-pipeline.js';
import { linkedServices, sharedDatasets } from './linked-services.js';
import { outboundPipeline } from './outbound-pipeline.js';
import { type ExportOptions, sqlFile, stepFile } from './pipeline-blocks.js';
import { replayPipeline } from './replay-pipeline.js';
import { azureSqlAccess, serverlessSetup } from './sql-setup.js';
import { viewPipeline } from './stage-views.js';
import { type GeneratedFile, NAMES, type SynapseArtifact, type SynapseExport } from './synapse-artifacts.js';
import { backfillTrigger, schedules } from './triggers.js';

export type { ExportOptions } from './pipeline-blocks.js';

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
      const replay = await replayPipeline(def, view, options, steps);
      artifacts.push(replay.pipeline);
      sqlFiles.push(...replay.sql);
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
  const housekeeping = housekeepingArtifacts(settings, steps);
  artifacts.push(...housekeeping.artifacts);
  sqlFiles.push(...housekeeping.sql);
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

export function checkExpressionLengths(a: SynapseArtifact): void {
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

export function sortArtifacts(list: SynapseArtifact[]): SynapseArtifact[] {
  const order = { linkedService: 0, dataset: 1, pipeline: 2, trigger: 3 };
  return list.sort((a, b) => order[a.kind] - order[b.kind] || a.name.localeCompare(b.name));
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

/** Activities that run before the window is known (the window then comes from the run's parameters). */
export const BEFORE_WINDOW = new Set(['BeginRun', 'LookupWatermark', 'LookupChangelog', 'SetWindowEnd', 'SetWindow']);

/**
 * `userProperties` on every activity of a ferry pipeline: the ferry pipeline, its Dataverse table(s) and the window,
 * so Monitor can filter and show activity runs by table and window.
 */
export function labelActivities(a: SynapseArtifact, defs: readonly PipelineDefinition[]): void {
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
      visit(tp?.activities);
    }
  };
  visit(a.properties.activities);
}
