import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { DataverseMapping } from '../../src/core/mapping.js';
import type { ConversionNames } from '../../src/dialects/sql-steps.js';
import { tsqlConversion } from '../../src/dialects/tsql/conversion.js';
import { loadConversionPlan } from '../../src/stages/convert-to-dataverse.js';

const metadataDir = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'fixtures', 'metadata');

/** A contract case: a mapping, staged rows (all text) and the reason each row must get (null = converted). */
export interface ContractCase {
  readonly name: string;
  readonly mapping: DataverseMapping;
  readonly rows: readonly {
    readonly values: Readonly<Record<string, string | null>>;
    readonly reason: string | null;
    /** The payload a converted row must get (checked where given). */
    readonly payload?: Readonly<Record<string, unknown>>;
  }[];
}

/**
 * DateTime behaviours × source forms, as every dialect stages them (text: T-SQL staging is text only, and this is
 * what DATE, TIMESTAMP and TIMESTAMPTZ values look like once copied as text). UserLocal → the UTC instant (no offset:
 * the source time zone, UTC here); TimeZoneIndependent → the wall clock as written, offset dropped; DateOnly → the
 * calendar date as written. Typed DuckDB sources have their own table in test/convert/datetime-behaviours.test.ts.
 */
const DATETIME_FORMS: ReadonlyArray<{
  form: string;
  value: string;
  userLocal: string;
  independent: string;
  dateOnly: string;
}> = [
  {
    form: 'text with an offset',
    value: '2024-05-31T23:30:00-05:00',
    userLocal: '2024-06-01T04:30:00Z',
    independent: '2024-05-31T23:30:00Z',
    dateOnly: '2024-05-31',
  },
  {
    form: 'text in UTC',
    value: '2024-05-31T23:30:00Z',
    userLocal: '2024-05-31T23:30:00Z',
    independent: '2024-05-31T23:30:00Z',
    dateOnly: '2024-05-31',
  },
  {
    form: 'text without an offset',
    value: '2024-05-31T23:30:00',
    userLocal: '2024-05-31T23:30:00Z',
    independent: '2024-05-31T23:30:00Z',
    dateOnly: '2024-05-31',
  },
  {
    form: 'DATE as text',
    value: '2024-05-31',
    userLocal: '2024-05-31T00:00:00Z',
    independent: '2024-05-31T00:00:00Z',
    dateOnly: '2024-05-31',
  },
  {
    form: 'TIMESTAMP as text',
    value: '2024-05-31 23:30:00.1234567',
    userLocal: '2024-05-31T23:30:00Z',
    independent: '2024-05-31T23:30:00Z',
    dateOnly: '2024-05-31',
  },
  {
    form: 'TIMESTAMPTZ as text (offset kept)',
    value: '2024-05-31 23:30:00+09:30',
    userLocal: '2024-05-31T14:00:00Z',
    independent: '2024-05-31T23:30:00Z',
    dateOnly: '2024-05-31',
  },
];

const long = 'x'.repeat(161);
const accountsBase = {
  account_no: 'A1',
  account_name: 'Contoso',
  revenue: '10.5',
  employees: '12',
  industry: 'Accounting',
  credit_hold: 'yes',
  parent_no: null,
  onboarded: '2024-01-02T03:04:05+02:00',
  audit: '2024-05-06',
  interests: 'Software;Hardware',
  latitude: '47.5',
  modified_at: '2026-01-01T00:00:00Z',
};

/** The same cases run on every dialect: DuckDB executes them; T-SQL parses, matches golden files, and runs live when asked. */
export const CASES: readonly ContractCase[] = [
  {
    name: 'datetime-behaviours',
    mapping: {
      table: 'account',
      key: ['accountnumber'],
      changeTimestamp: 'modified_at',
      columns: {
        accountnumber: 'account_no',
        ferry_lastcontactedon: 'v', // UserLocal
        ferry_onboardedon: 'v', // TimeZoneIndependent
        ferry_lastauditdate: 'v', // DateOnly
      },
    },
    rows: DATETIME_FORMS.map((f, i) => ({
      values: { account_no: `D${i + 1}`, v: f.value, modified_at: '2026-01-01T00:00:00Z' },
      reason: null,
      payload: {
        ferry_lastcontactedon: f.userLocal,
        ferry_onboardedon: f.independent,
        ferry_lastauditdate: f.dateOnly,
      },
    })),
  },
  {
    name: 'account-rules',
    mapping: {
      table: 'account',
      key: ['accountnumber'],
      changeTimestamp: 'modified_at',
      columns: {
        accountnumber: 'account_no',
        name: 'account_name',
        revenue: 'revenue',
        numberofemployees: 'employees',
        industrycode: { from: 'industry', choice: 'label' },
        creditonhold: 'credit_hold',
        parentaccountid: { from: 'parent_no', lookup: { table: 'account', key: 'accountnumber' } },
        ferry_onboardedon: 'onboarded',
        ferry_lastauditdate: 'audit',
        ferry_interests: { from: 'interests', multiSelect: { separator: ';', choice: 'label' } },
        address1_latitude: 'latitude',
      },
    },
    rows: [
      { values: { ...accountsBase }, reason: null },
      { values: { ...accountsBase, account_no: 'A2', account_name: long }, reason: 'string.too_long' },
      { values: { ...accountsBase, account_no: 'A3', revenue: 'abc' }, reason: 'number.unparsable' },
      { values: { ...accountsBase, account_no: 'A4', revenue: '1.234' }, reason: 'number.precision' },
      { values: { ...accountsBase, account_no: 'A5', employees: '-5' }, reason: 'number.out_of_range' },
      { values: { ...accountsBase, account_no: 'A6', industry: 'Nonsense' }, reason: 'choice.unknown_label' },
      { values: { ...accountsBase, account_no: 'A7', credit_hold: 'maybe' }, reason: 'boolean.invalid' },
      { values: { ...accountsBase, account_no: '  ' }, reason: 'key.missing' },
      { values: { ...accountsBase, account_no: 'A9', parent_no: 'P/1' }, reason: 'lookup.key_unsafe' },
      { values: { ...accountsBase, account_no: 'A10', onboarded: 'yesterday' }, reason: 'date.unparsable' },
      { values: { ...accountsBase, account_no: 'A11', audit: '1700-01-01' }, reason: 'date.before_min' },
      {
        values: { ...accountsBase, account_no: 'A12', interests: 'Software;Gardening' },
        reason: 'multiselect.invalid_member',
      },
      { values: { ...accountsBase, account_no: 'A13', latitude: '91' }, reason: 'number.out_of_range' },
      // First failing column wins, in mapping order: name (too long) before revenue (unparsable).
      { values: { ...accountsBase, account_no: 'A14', account_name: long, revenue: 'abc' }, reason: 'string.too_long' },
      { values: { ...accountsBase, account_no: "A'15", parent_no: "P'1" }, reason: null },
    ],
  },
  {
    name: 'contact-composite-polymorphic',
    mapping: {
      table: 'contact',
      key: ['ferry_legacysource', 'ferry_legacyid'],
      changeTimestamp: 'modified_at',
      columns: {
        ferry_legacysource: 'source_system',
        ferry_legacyid: 'contact_no',
        lastname: 'last_name',
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
        ownerid: { from: 'owner_id', lookup: { table: 'systemuser' } },
      },
    },
    rows: [
      {
        values: {
          source_system: 'crm1',
          contact_no: 'C1',
          last_name: 'Doe',
          company_type: 'account',
          company_ref: 'A1',
          company_source: null,
          owner_id: null,
          modified_at: '2026-01-01T00:00:00Z',
        },
        reason: null,
      },
      {
        values: {
          source_system: 'crm1',
          contact_no: 'C2',
          last_name: 'Roe',
          company_type: 'contact',
          company_ref: 'C1',
          company_source: 'crm1',
          owner_id: '8A3F0C1E-0000-4000-8000-000000000001',
          modified_at: '2026-01-01T00:00:00Z',
        },
        reason: null,
      },
      {
        values: {
          source_system: 'crm1',
          contact_no: 'C3',
          last_name: 'Poe',
          company_type: 'lead',
          company_ref: 'L1',
          company_source: null,
          owner_id: null,
          modified_at: '2026-01-01T00:00:00Z',
        },
        reason: 'lookup.target_unknown',
      },
      {
        values: {
          source_system: 'crm1',
          contact_no: 'C4',
          last_name: 'Moe',
          company_type: null,
          company_ref: null,
          company_source: null,
          owner_id: 'not-a-guid',
          modified_at: '2026-01-01T00:00:00Z',
        },
        reason: 'guid.invalid',
      },
      {
        values: {
          source_system: null,
          contact_no: 'C5',
          last_name: 'Zoe',
          company_type: null,
          company_ref: null,
          company_source: null,
          owner_id: null,
          modified_at: '2026-01-01T00:00:00Z',
        },
        reason: 'key.missing',
      },
    ],
  },
];

/** Source columns of a case, in first-seen order. */
export function columnsOf(c: ContractCase): string[] {
  const names: string[] = [];
  for (const r of c.rows) for (const k of Object.keys(r.values)) if (!names.includes(k)) names.push(k);
  return names;
}

const names = (base: string): ConversionNames => ({
  prefix: 'stg_',
  staged: { schema: '', table: `stg_${base}_staged` },
  rows: { schema: '', table: `stg_${base}_rows` },
  work: { schema: '', table: `stg_${base}_work` },
  converted: { schema: '', table: `stg_${base}_converted` },
  sink: { schema: '', table: `stg_${base}_sink` },
  rejects: { schema: 'ferry', table: 'rejects' },
  keymap: { schema: 'ferry', table: 'keymap' },
  appliedVersions: { schema: 'ferry', table: 'applied_versions' },
});

/** The T-SQL conversion of a case, compiled from the same plan the DuckDB conversion runs. */
export async function compileCase(name: string, mapping: DataverseMapping) {
  const plan = await loadConversionPlan(mapping, metadataDir);
  const c = tsqlConversion.compileSynapse(plan, names(name.replaceAll('-', '_')));
  return {
    plan,
    compiled: c,
    statements: [...c.lineage, ...c.classify, ...c.converted, ...c.rejects, c.counts, ...c.sink, ...c.saveVersions],
  };
}
