import type { StageRegistry } from '../core/runner.js';
import type { StageImpl } from '../core/stage.js';
import { convertToDataverseStage } from './convert-to-dataverse.js';
import { readParquetDeltasStage } from './read-parquet-deltas.js';
import { readSynapseLinkStage } from './read-synapse-link.js';
import { runSqlExtractStage } from './run-sql-extract.js';
import { upsertDataverseStage } from './upsert-dataverse.js';
import { writeParquetStage } from './write-parquet.js';

/**
 * The one explicit map from stage kind to its code. Add a stage: write `src/stages/<kind>.ts` exporting its spec
 * factory and implementation, then add one line here.
 */
const STAGES: readonly StageImpl[] = [
  upsertDataverseStage as StageImpl,
  readParquetDeltasStage as StageImpl,
  convertToDataverseStage as StageImpl,
  readSynapseLinkStage as StageImpl,
  runSqlExtractStage as StageImpl,
  writeParquetStage as StageImpl,
];

const byKind = new Map(STAGES.map((s) => [s.kind, s]));

export const stageRegistry: StageRegistry = {
  get: (kind) => byKind.get(kind),
};

/** For tests and extensions: a registry with extra stages. */
export function registryWith(extra: readonly StageImpl[]): StageRegistry {
  const map = new Map(byKind);
  for (const s of extra) map.set(s.kind, s);
  return { get: (kind) => map.get(kind) };
}
