import { UsageError } from '../core/errors.js';
import type { PipelineDefinition, StageSpecBase } from '../core/pipeline.js';
import { type ConvertToDataverseSpec, convertToDataverseKind } from './convert-to-dataverse/spec.js';
import { type ReadParquetDeltasSpec, readParquetDeltasKind } from './read-parquet-deltas/spec.js';
import { type ReadSynapseLinkSpec, readSynapseLinkKind } from './read-synapse-link/spec.js';
import { type ReplayOutcomeSpec, replayOutcomeKind } from './replay-outcome/spec.js';
import { type ReplaySourceSpec, replaySourceKind } from './replay-source/spec.js';
import { type RunSqlExtractSpec, runSqlExtractKind } from './run-sql-extract/spec.js';
import type { StageKindSpec } from './stage-kind.js';
import { type UpsertDataverseSpec, upsertDataverseKind } from './upsert-dataverse/spec.js';
import { type WriteParquetSpec, writeParquetKind } from './write-parquet/spec.js';

/** Every stage the project has, told apart by `kind`. Pure data: what pipeline files and the exporter read. */
export type StageSpec =
  | ReadParquetDeltasSpec
  | ConvertToDataverseSpec
  | UpsertDataverseSpec
  | ReadSynapseLinkSpec
  | RunSqlExtractSpec
  | WriteParquetSpec
  | ReplaySourceSpec
  | ReplayOutcomeSpec;

/** One of the stage kinds. */
export type StageKind = StageSpec['kind'];

/** The spec of kind `K`. */
export type StageSpecOf<K extends StageKind> = Extract<StageSpec, { readonly kind: K }>;

/** What each kind's spec module declares. A kind added to {@link StageSpec} without an entry here does not compile. */
export const STAGE_KINDS: { readonly [K in StageKind]: StageKindSpec<StageSpecOf<K>> } = {
  'read-parquet-deltas': readParquetDeltasKind,
  'convert-to-dataverse': convertToDataverseKind,
  'upsert-dataverse': upsertDataverseKind,
  'read-synapse-link': readSynapseLinkKind,
  'run-sql-extract': runSqlExtractKind,
  'write-parquet': writeParquetKind,
  'replay-source': replaySourceKind,
  'replay-outcome': replayOutcomeKind,
};

function isStageKind(kind: string): kind is StageKind {
  return Object.hasOwn(STAGE_KINDS, kind);
}

/**
 * A stage read as data (a loaded pipeline, a run's kept definition), checked and typed: an unknown kind or a wrong
 * field fails with a message naming it.
 */
export function stageSpecOf(spec: StageSpecBase, pipeline: string): StageSpec {
  if (!isStageKind(spec.kind)) {
    throw new UsageError(
      `Pipeline \`${pipeline}\` has a stage of kind \`${spec.kind}\`, which is not one of ${Object.keys(STAGE_KINDS).join(', ')}; fix the kind or add the stage kind (src/stages/README.md).`,
    );
  }
  return parseAs(spec.kind, spec);
}

function parseAs<K extends StageKind>(kind: K, spec: StageSpecBase): StageSpecOf<K> {
  const declared: StageKindSpec<StageSpecOf<K>> = STAGE_KINDS[kind];
  return declared.parse(spec);
}

function stagedColumnsOf<K extends StageKind>(kind: K, spec: StageSpecOf<K>): readonly string[] {
  const declared: StageKindSpec<StageSpecOf<K>> = STAGE_KINDS[kind];
  return declared.stagedColumns(spec);
}

/**
 * The source columns a pipeline's stages read from the staged rows (each kind declares its own: a convert stage its
 * mapping's columns), so a read stage stages them without knowing which stages come after it. A stage of a kind
 * that is not registered fails with its name: its needs cannot be known.
 */
export function sourceColumnsOf(pipeline: PipelineDefinition): string[] {
  const out = new Set<string>();
  for (const stage of pipeline.stages) {
    if (!isStageKind(stage.kind)) {
      throw new UsageError(
        `Pipeline \`${pipeline.name}\` has a stage of kind \`${stage.kind}\`, which declares no source columns it reads (it is not in src/stages/stage-spec.ts); name the columns to stage with \`readParquetDeltas({ columns: [...] })\`, or add the kind there.`,
      );
    }
    const spec = stageSpecOf(stage, pipeline.name);
    for (const column of stagedColumnsOf(spec.kind, spec)) out.add(column);
  }
  return [...out];
}
