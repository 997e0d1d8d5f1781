/**
 * The package's public API for a project that keeps its pipelines in its own repository (`ferry init`):
 * `definePipeline` and the stage factories. The `ferry` command runs those pipelines.
 */
export type { Direction, PipelineDefinition, PipelineInput, RejectThreshold, StageSpecBase } from './core/pipeline.js';
export { definePipeline } from './core/pipeline.js';
export { convertToDataverse } from './stages/convert-to-dataverse/spec.js';
export { readParquetDeltas } from './stages/read-parquet-deltas/spec.js';
export { readSynapseLink } from './stages/read-synapse-link/spec.js';
export { runSqlExtract } from './stages/run-sql-extract/spec.js';
export type { StageSpec } from './stages/stage-spec.js';
export { upsertDataverse } from './stages/upsert-dataverse/spec.js';
export { writeParquet } from './stages/write-parquet/spec.js';
