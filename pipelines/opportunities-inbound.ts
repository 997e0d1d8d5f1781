import { definePipeline } from '../src/core/pipeline.js';
import { convertToDataverse } from '../src/stages/convert-to-dataverse/spec.js';
import { readParquetDeltas } from '../src/stages/read-parquet-deltas/spec.js';
import { upsertDataverse } from '../src/stages/upsert-dataverse/spec.js';

/** Legacy opportunities → Dataverse `opportunity`, upserted by legacy id. */
export default definePipeline({
  name: 'opportunities-inbound',
  description: 'Legacy CRM opportunity deltas → opportunity (alternate key ferry_legacyid).',
  direction: 'inbound',
  dependsOn: ['accounts-inbound', 'contacts-inbound'],
  rejectThreshold: { maxRejectedRatio: 0.6 },
  stages: [
    readParquetDeltas({ folder: 'inbound/opportunities' }),
    convertToDataverse({
      table: 'opportunity',
      key: ['ferry_legacyid'],
      changeTimestamp: 'modified_at',
      columns: {
        ferry_legacyid: 'opp_id',
        ferry_legacynumber: 'opp_number',
        name: 'topic',
        customerid: {
          from: 'customer_ref',
          lookup: {
            tableFrom: 'customer_type',
            keys: {
              account: 'accountnumber',
              contact: { key: ['ferry_legacysource', 'ferry_legacyid'], from: ['customer_source', 'customer_ref'] },
            },
          },
        },
        estimatedvalue: 'est_value',
        closeprobability: 'probability',
        discountpercentage: 'discount',
        estimatedclosedate: 'est_close',
        opportunityratingcode: { from: 'rating', choice: 'label' },
        statecode: { from: 'status', choice: 'label' },
        statuscode: { from: 'status_reason', choice: 'label' },
        ferry_weightedamount: 'weighted',
        ferry_marginpercent: 'margin',
        ferry_externalrevision: 'ext_revision',
        ferry_contractstart: 'contract_start',
        ferry_lastsyncedon: 'last_synced',
        ferry_productlines: { from: 'product_lines', multiSelect: { separator: ';', choice: 'label' } },
        description: 'notes',
        transactioncurrencyid: { from: 'currency', lookup: { table: 'transactioncurrency', key: 'isocurrencycode' } },
        ferry_regionid: { from: 'region_code', lookup: { table: 'ferry_region', key: 'ferry_code' } },
        ownerid: { from: 'owner_id', lookup: { table: 'systemuser' } },
      },
    }),
    upsertDataverse({ table: 'opportunity', batchSize: 100 }),
  ],
});
