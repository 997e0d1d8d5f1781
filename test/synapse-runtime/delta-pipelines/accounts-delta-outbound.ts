import { definePipeline } from '../../../src/core/pipeline.js';
import { readSynapseLink } from '../../../src/stages/read-synapse-link/spec.js';
import { runSqlExtract } from '../../../src/stages/run-sql-extract/spec.js';
import { writeParquet } from '../../../src/stages/write-parquet/spec.js';

/**
 * Synapse Link `account` as Delta (the Spark pool conversion, `deltalake/account_partitioned/`) → warehouse Parquet,
 * deletes in `account_deletes/`. Used by the runtime tests only: `pipelines/` has no Delta pipeline (the demo's
 * Synapse Link export is CSV).
 */
export default definePipeline({
  name: 'accounts-delta-outbound',
  description: 'Synapse Link account (Delta) → warehouse account/ Parquet, deletes in account_deletes/.',
  direction: 'outbound',
  stages: [
    readSynapseLink({ folder: 'synapse-link/dataverse-demo', format: 'delta', tables: ['account'] }),
    runSqlExtract({ table: 'account', query: 'default' }),
    writeParquet({ target: 'warehouse', deletes: 'separate-file', uuidAs: 'string' }),
  ],
});
