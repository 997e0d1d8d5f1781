import { definePipeline } from '../src/core/pipeline.js';
import { convertToDataverse } from '../src/stages/convert-to-dataverse/spec.js';
import { readParquetDeltas } from '../src/stages/read-parquet-deltas/spec.js';
import { upsertDataverse } from '../src/stages/upsert-dataverse/spec.js';

/** Legacy contacts → Dataverse `contact`, upserted by the composite key (source system, legacy id). */
export default definePipeline({
  name: 'contacts-inbound',
  description: 'Legacy CRM contact deltas → contact (composite alternate key ferry_legacysource + ferry_legacyid).',
  direction: 'inbound',
  dependsOn: ['accounts-inbound'],
  rejectThreshold: { maxRejectedRatio: 0.6 },
  stages: [
    readParquetDeltas({ folder: 'inbound/contacts' }),
    convertToDataverse({
      table: 'contact',
      key: ['ferry_legacysource', 'ferry_legacyid'],
      changeTimestamp: 'modified_at',
      columns: {
        ferry_legacysource: 'source_system',
        ferry_legacyid: 'contact_no',
        firstname: 'first_name',
        lastname: 'last_name',
        emailaddress1: 'email',
        jobtitle: 'job_title',
        birthdate: 'birth_date',
        gendercode: { from: 'gender', choice: 'label' },
        donotemail: 'no_email',
        creditlimit: 'credit_limit',
        numberofchildren: 'children',
        ferry_loyaltytier: 'loyalty_tier',
        ferry_loyaltypoints: 'loyalty_points',
        ferry_preferredchannels: { from: 'channels', multiSelect: { separator: ';', choice: 'label' } },
        ferry_consentgivenon: 'consent_at',
        statecode: { from: 'status', choice: 'label' },
        // Polymorphic Customer lookup: the company is an account (by account number) or another contact.
        parentcustomerid: {
          from: 'company_ref',
          lookup: {
            tableFrom: 'company_type',
            keys: {
              account: 'accountnumber',
              contact: { key: ['ferry_legacysource', 'ferry_legacyid'], from: ['company_source', 'company_ref'] },
            },
          },
        },
        ferry_regionid: { from: 'region_code', lookup: { table: 'ferry_region', key: 'ferry_code' } },
        transactioncurrencyid: { from: 'currency', lookup: { table: 'transactioncurrency', key: 'isocurrencycode' } },
        ownerid: { from: 'owner_id', lookup: { table: 'systemuser' } },
      },
    }),
    upsertDataverse({ table: 'contact', batchSize: 100 }),
  ],
});
