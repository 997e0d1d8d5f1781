import { definePipeline } from '../src/core/pipeline.js';
import { convertToDataverse } from '../src/stages/convert-to-dataverse/spec.js';
import { readParquetDeltas } from '../src/stages/read-parquet-deltas/spec.js';
import { upsertDataverse } from '../src/stages/upsert-dataverse/spec.js';

/** Legacy accounts → Dataverse `account`, upserted by account number. */
export default definePipeline({
  name: 'accounts-inbound',
  description: 'Legacy CRM account deltas → account (alternate key accountnumber).',
  direction: 'inbound',
  dependsOn: ['currencies-inbound', 'regions-inbound'],
  // The bundled fixtures carry one bad row per reject reason on purpose.
  rejectThreshold: { maxRejectedRatio: 0.6 },
  stages: [
    readParquetDeltas({ folder: 'inbound/accounts' }),
    convertToDataverse({
      table: 'account',
      key: ['accountnumber'],
      changeTimestamp: 'modified_at',
      columns: {
        accountnumber: 'account_no',
        name: 'account_name',
        parentaccountid: { from: 'parent_account_no', lookup: { table: 'account', key: 'accountnumber' } },
        telephone1: 'phone',
        emailaddress1: 'email',
        address1_city: 'city',
        address1_country: 'country',
        address1_latitude: 'latitude',
        revenue: 'annual_revenue',
        creditlimit: 'credit_limit',
        numberofemployees: 'employees',
        industrycode: { from: 'industry', choice: 'label' },
        accountcategorycode: { from: 'category', choice: 'value' },
        creditonhold: 'credit_hold',
        donotemail: 'no_email',
        description: 'notes',
        statecode: { from: 'status', choice: 'label' },
        statuscode: { from: 'status_reason', choice: 'label' },
        ferry_regionid: { from: 'region_code', lookup: { table: 'ferry_region', key: 'ferry_code' } },
        transactioncurrencyid: { from: 'currency', lookup: { table: 'transactioncurrency', key: 'isocurrencycode' } },
        ownerid: { from: 'owner_id', lookup: { table: 'systemuser' } },
        ferry_legacyid: 'legacy_id',
        ferry_legacyrowversion: 'legacy_rowversion',
        ferry_riskscore: 'risk_score',
        ferry_interests: { from: 'interests', multiSelect: { separator: ';', choice: 'label' } },
        ferry_lastauditdate: 'last_audit',
        ferry_onboardedon: 'onboarded_at',
        ferry_lastcontactedon: 'last_contacted',
      },
    }),
    upsertDataverse({ table: 'account', batchSize: 100 }),
  ],
});
