/**
 * The package's public API for a project that keeps its pipelines in its own repository (`ferry init`):
 * `definePipeline` and the stage factories. The `ferry` command runs those pipelines.
 */
export type { Direction, PipelineDefinition, PipelineInput, RejectThreshold, StageSpec } from './core/pipeline.js';
export { definePipeline } from './core/pipeline.js';
export { convertToDataverse } from './stages/convert-to-dataverse.js';
export { readParquetDeltas } from './stages/read-parquet-deltas.js';
export { readSynapseLink } from './stages/read-synapse-link.js';
export { runSqlExtract } from './stages/run-sql-extract.js';
export { upsertDataverse } from './stages/upsert-dataverse.js';
export { writeParquet } from './stages/write-parquet.js';
