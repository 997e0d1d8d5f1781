import fs from 'node:fs/promises';
import path from 'node:path';
import { FerryError } from '../../core/errors.js';
import type { PipelineDefinition } from '../../core/pipeline.js';
import { diffFiles, exportFiles, type FileDiff, type OutputLayout, writeFiles } from './artifact-files.js';
import { ArtifactValidator, defaultSchemaDir, formatProblems } from './artifact-validator.js';
import type { SynapseExportSettings } from './export-settings.js';
import type { GeneratedFile, SynapseExport } from './synapse-artifacts.js';
import { exportSynapse } from './synapse-exporter.js';

/** Inputs of one `ferry export synapse`. */
export interface SynapseExportRun {
  readonly pipelines: readonly PipelineDefinition[];
  readonly settings: SynapseExportSettings;
  readonly metadataDir: string;
  /** Project root the layout is relative to. */
  readonly root: string;
  readonly layout: OutputLayout;
  /** Compare only; write nothing. */
  readonly check: boolean;
  /** ARM schema folder; validation is skipped (with a warning by the caller) when it does not exist. */
  readonly schemaDir?: string;
}

/** What the export did or would do. */
export interface SynapseExportOutcome {
  readonly result: SynapseExport;
  readonly files: GeneratedFile[];
  readonly diff: FileDiff;
  readonly validated: boolean;
}

/**
 * Plans the export, validates every artifact against the ARM schema (a failure writes nothing), then writes the
 * files or, with `check`, only compares them.
 */
export async function runSynapseExport(run: SynapseExportRun): Promise<SynapseExportOutcome> {
  const result = await exportSynapse(run.pipelines, {
    settings: run.settings,
    metadataDir: run.metadataDir,
    readExtract: (file) => fs.readFile(path.resolve(run.root, file), 'utf8').catch(() => undefined),
  });
  const schemaDir = run.schemaDir ?? defaultSchemaDir();
  const haveSchema = await fs
    .stat(path.join(schemaDir, 'Microsoft.DataFactory-2018-06-01.json'))
    .then(() => true)
    .catch(() => false);
  if (haveSchema) {
    const problems = ArtifactValidator.load(schemaDir).validateAll(result.artifacts);
    if (problems.length > 0) {
      throw new FerryError(
        'export.invalid_artifact',
        `The generated artifacts do not validate against the Data Factory ARM schema; nothing was written:\n${formatProblems(problems)}`,
      );
    }
  }
  const files = exportFiles(result, run.layout);
  const diff = run.check ? await diffFiles(run.root, files, run.layout) : await writeFiles(run.root, files, run.layout);
  return { result, files, diff, validated: haveSchema };
}

/** True when the tree already matches the export. */
export function isUpToDate(diff: FileDiff): boolean {
  return diff.added.length + diff.changed.length + diff.removed.length === 0;
}
