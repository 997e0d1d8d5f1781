/**
 * The Delta outbound pipeline of the runtime tests (`delta-pipelines/`), exported with the real exporter as
 * `ferry export synapse` would export it, and the DuckDB renderings of its steps: what a workspace holding only
 * that pipeline would run.
 */

import type { PipelineDefinition } from '../../src/core/pipeline.js';
import { loadPipelines } from '../../src/core/pipeline-loader.js';
import type { SynapseExportSettings } from '../../src/export/synapse/export-settings.js';
import { ArtifactStore } from '../../src/export/synapse/runtime/artifact-store.js';
import type { StepRenderings } from '../../src/export/synapse/runtime/connectors/sql-engine.js';
import { synapseStepRenderings } from '../../src/export/synapse/step-renderings.js';
import { exportSynapse } from '../../src/export/synapse/synapse-exporter.js';

export const DELTA_PIPELINES = 'test/synapse-runtime/delta-pipelines';

export interface DeltaExport {
  readonly pipelines: readonly PipelineDefinition[];
  readonly artifacts: ArtifactStore;
  readonly renderings: StepRenderings;
}

export async function exportDeltaPipelines(settings: SynapseExportSettings): Promise<DeltaExport> {
  const pipelines = await loadPipelines(DELTA_PIPELINES);
  const options = { settings, metadataDir: 'fixtures/metadata' };
  const out = await exportSynapse(pipelines, options);
  const byKind: Record<string, { name: string; properties: object }[]> = {};
  for (const a of out.artifacts)
    byKind[a.kind] = [...(byKind[a.kind] ?? []), { name: a.name, properties: a.properties }];
  return {
    pipelines,
    artifacts: ArtifactStore.fromObjects(byKind),
    renderings: await synapseStepRenderings(pipelines, options),
  };
}
