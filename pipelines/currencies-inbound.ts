import { definePipeline } from '../src/core/pipeline.js';
import { convertToDataverse } from '../src/stages/convert-to-dataverse/spec.js';
import { readParquetDeltas } from '../src/stages/read-parquet-deltas/spec.js';
import { upsertDataverse } from '../src/stages/upsert-dataverse/spec.js';

/** Reference data: currencies. `transactioncurrency` has no bulk messages, so this exercises the `$batch` fallback. */
export default definePipeline({
  name: 'currencies-inbound',
  description: 'Legacy currency list → transactioncurrency, by ISO code.',
  direction: 'inbound',
  stages: [
    readParquetDeltas({ folder: 'inbound/currencies' }),
    convertToDataverse({
      table: 'transactioncurrency',
      key: ['isocurrencycode'],
      changeTimestamp: 'modified_at',
      columns: {
        isocurrencycode: 'iso_code',
        currencyname: 'currency_name',
        currencysymbol: 'symbol',
        currencyprecision: 'currency_precision',
        exchangerate: 'rate_to_base',
      },
    }),
    upsertDataverse({ table: 'transactioncurrency' }),
  ],
});
