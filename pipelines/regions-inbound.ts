import { definePipeline } from '../src/core/pipeline.js';
import { convertToDataverse } from '../src/stages/convert-to-dataverse/spec.js';
import { readParquetDeltas } from '../src/stages/read-parquet-deltas/spec.js';
import { upsertDataverse } from '../src/stages/upsert-dataverse/spec.js';

/** Reference data: sales regions (a custom table with a self-referencing custom lookup). */
export default definePipeline({
  name: 'regions-inbound',
  description: 'Legacy sales regions → ferry_region, by region code.',
  direction: 'inbound',
  stages: [
    readParquetDeltas({ folder: 'inbound/regions' }),
    convertToDataverse({
      table: 'ferry_region',
      key: ['ferry_code'],
      changeTimestamp: 'modified_at',
      columns: {
        ferry_code: 'region_code',
        ferry_name: 'region_name',
        ferry_parentregionid: { from: 'parent_region_code', lookup: { table: 'ferry_region', key: 'ferry_code' } },
      },
    }),
    upsertDataverse({ table: 'ferry_region' }),
  ],
});
