import type { StageRegistry } from '../core/runner.js';
import type { StageImpl } from '../core/stage.js';
import { convertToDataverseStage } from './convert-to-dataverse/run.js';
import { readParquetDeltasStage } from './read-parquet-deltas/run.js';
import { readSynapseLinkStage } from './read-synapse-link/run.js';
import { replayOutcomeStage } from './replay-outcome/run.js';
import { replaySourceStage } from './replay-source/run.js';
import { runSqlExtractStage } from './run-sql-extract/run.js';
import type { StageKind, StageSpecOf } from './stage-spec.js';
import { upsertDataverseStage } from './upsert-dataverse/run.js';
import { writeParquetStage } from './write-parquet/run.js';

/**
 * The one explicit map from stage kind to its code, typed by kind: every kind of `StageSpec` must have its code
 * here, and each entry's code takes that kind's spec. Add a stage kind: see src/stages/README.md.
 */
const STAGES: { readonly [K in StageKind]: StageImpl<StageSpecOf<K>> } = {
  'read-parquet-deltas': readParquetDeltasStage,
  'convert-to-dataverse': convertToDataverseStage,
  'upsert-dataverse': upsertDataverseStage,
  'read-synapse-link': readSynapseLinkStage,
  'run-sql-extract': runSqlExtractStage,
  'write-parquet': writeParquetStage,
  'replay-source': replaySourceStage,
  'replay-outcome': replayOutcomeStage,
};

const byKind = new Map<string, StageImpl>(Object.values(STAGES).map((s) => [s.kind, s]));

export const stageRegistry: StageRegistry = {
  get: (kind) => byKind.get(kind),
};

/** For tests and extensions: a registry with extra stages. */
export function registryWith(extra: readonly StageImpl[]): StageRegistry {
  const map = new Map(byKind);
  for (const s of extra) map.set(s.kind, s);
  return { get: (kind) => map.get(kind) };
}
