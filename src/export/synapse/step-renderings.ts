import fs from 'node:fs/promises';
import path from 'node:path';
import type { PipelineDefinition } from '../../core/pipeline.js';
import { duckdbSteps } from '../../dialects/duckdb/steps.js';
import { renderStep, type SynapseStepPlan } from '../../dialects/sql-steps.js';
import type { SynapseExportSettings } from './export-settings.js';
import type { StepRendering, StepRenderings } from './runtime/connectors/sql-engine.js';
import { planSynapseSteps } from './synapse-exporter.js';

/**
 * What the local runtime runs in place of the exported T-SQL: the DuckDB rendering of each plan step, by the id the
 * artifact carries (`-- ferry-step: <id>`), with the parameters the step binds and the Synapse Link relations an
 * extract reads. Built from the same definitions and settings as the export; a step id the artifacts carry that
 * these definitions do not produce has no rendering, and the runtime refuses it by name.
 */
export async function synapseStepRenderings(
  defs: readonly PipelineDefinition[],
  options: { settings: SynapseExportSettings; metadataDir: string; root?: string },
): Promise<StepRenderings> {
  const root = options.root ?? '.';
  const registry = await planSynapseSteps(defs, {
    settings: options.settings,
    metadataDir: options.metadataDir,
    readExtract: (file) => fs.readFile(path.resolve(root, file), 'utf8').catch(() => undefined),
  });
  const cache = new Map<string, StepRendering>();
  return (id) => {
    const step = registry.get(id);
    if (!step) return undefined;
    let out = cache.get(id);
    if (!out) {
      const plan = step.plan as SynapseStepPlan;
      out = {
        text: renderStep(step, duckdbSteps),
        parameters: step.parameters.map((p) => ({
          name: p.name,
          expression: p.expression,
          type: p.type,
          ...(p.dataSource ? { dataSource: p.dataSource } : {}),
        })),
        ...(plan.kind === 'extract'
          ? { synapseLinkTables: [{ table: plan.extract.table, format: plan.extract.format }] }
          : {}),
      };
      cache.set(id, out);
    }
    return out;
  };
}

/** The serverless external data sources `sql/tsql/setup/serverless.sql` creates, by the container each points at. */
export function synapseDataSources(settings: SynapseExportSettings): Record<string, string> {
  return { ferry_warehouse: settings.warehouseFileSystem, ferry_synapse_link: settings.synapseLinkFileSystem };
}
