import { definePipeline } from '../src/core/pipeline.js';
import { readSynapseLink } from '../src/stages/read-synapse-link/spec.js';
import { runSqlExtract } from '../src/stages/run-sql-extract/spec.js';
import { writeParquet } from '../src/stages/write-parquet/spec.js';

/** Synapse Link `contact` changes → warehouse Parquet, deletes in their own file. */
export default definePipeline({
  name: 'contacts-outbound',
  description: 'Synapse Link contact (CSV incremental folders) → warehouse contact/ Parquet with deletes-*.parquet.',
  direction: 'outbound',
  stages: [
    readSynapseLink({ folder: 'synapse-link/dataverse-demo', format: 'csv', tables: ['contact'] }),
    runSqlExtract({ table: 'contact', query: 'default' }),
    writeParquet({ target: 'warehouse', deletes: 'separate-file', uuidAs: 'string' }),
  ],
});
