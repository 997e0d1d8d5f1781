import { definePipeline } from '../src/core/pipeline.js';
import { readSynapseLink } from '../src/stages/read-synapse-link/spec.js';
import { runSqlExtract } from '../src/stages/run-sql-extract/spec.js';
import { writeParquet } from '../src/stages/write-parquet/spec.js';

/** Synapse Link `account` changes → warehouse Parquet: the latest state per account, and a copy with choice labels. */
export default definePipeline({
  name: 'accounts-outbound',
  description: 'Synapse Link account (CSV incremental folders) → warehouse account/ and account_labelled/ Parquet.',
  direction: 'outbound',
  stages: [
    readSynapseLink({ folder: 'synapse-link/dataverse-demo', format: 'csv', tables: ['account'] }),
    runSqlExtract({ table: 'account', query: 'default' }),
    runSqlExtract({ table: 'account', query: 'sql/extract/account-with-labels.sql', output: 'account_labelled' }),
    writeParquet({ target: 'warehouse', deletes: 'flag-column', uuidAs: 'string' }),
  ],
});
