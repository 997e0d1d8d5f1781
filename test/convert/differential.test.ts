import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { DataverseMapping } from '../../src/core/mapping.js';
import { convertRows, openStaging } from './convert-helpers.js';

/** Deterministic PRNG (mulberry32), so a failure can be reproduced from the seed. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const SEED = Number(process.env.FERRY_DIFF_SEED ?? 20261126);
const ROWS = Number(process.env.FERRY_DIFF_ROWS ?? 3000);

test(`differential: SQL conversion and the reference converter agree on ${ROWS} generated rows (seed ${SEED})`, async () => {
  const rnd = prng(SEED);
  const int = (lo: number, hi: number) => lo + Math.floor(rnd() * (hi - lo + 1));
  const pick = <T>(xs: readonly T[]): T => xs[int(0, xs.length - 1)]!;
  const maybe = <T>(p: number, f: () => T, otherwise: T) => (rnd() < p ? f() : otherwise);
  const digits = (n: number) => Array.from({ length: n }, () => int(0, 9)).join('');
  const spaces = () => pick(['', '', '', ' ', '  ']);
  const CHARS = [
    'a',
    'b',
    'Z',
    '0',
    ' ',
    "'",
    '"',
    '\\',
    '/',
    '\n',
    'é',
    'ß',
    '😀',
    '中',
    ',',
    ';',
    ':',
    '?',
    '%',
    '&',
  ];
  const str = (max: number) => Array.from({ length: int(0, max) }, () => pick(CHARS)).join('');

  const numberText = () =>
    pick([
      () =>
        `${spaces()}${pick(['', '+', '-'])}${pick(['', '0', '00'])}${digits(int(1, 16))}${maybe(0.6, () => `.${digits(int(0, 6))}`, '')}${spaces()}`,
      () => `${pick(['', '-'])}.${digits(int(1, 5))}`,
      () => `${digits(int(1, 3))}.`,
      () => digits(int(30, 42)),
      () => pick(['', ' ', 'abc', '1e5', '+', '-', '.', '1.2.3', '--1', '1,5', 'NaN', '0', '-0', '-0.000']),
    ])();
  const dateText = () => {
    const y = pick([int(1740, 1760), int(1900, 2100), 1753, 2024]);
    const m = pick([int(1, 12), int(1, 12), 0, 13]);
    const d = pick([int(1, 28), int(29, 31), 0, 32]);
    const p2 = (n: number) => String(n).padStart(2, '0');
    let t = `${y}-${p2(m)}-${p2(d)}`;
    if (rnd() < 0.7) {
      t += `${pick(['T', ' '])}${p2(pick([int(0, 23), 24]))}:${p2(int(0, 59))}`;
      if (rnd() < 0.7) t += `:${p2(pick([int(0, 59), 60]))}${maybe(0.3, () => `.${digits(int(1, 9))}`, '')}`;
    }
    if (rnd() < 0.5) t += pick(['Z', '+02:00', '-05:30', '+0100', '-03', '+14:00', ' Z', '+25:00']);
    return rnd() < 0.05 ? pick(['yesterday', '31/12/2024', '2024-1-5', '']) : `${spaces()}${t}`;
  };
  const industry = () =>
    pick([
      () => pick(['Accounting', ' accounting ', 'CONSULTING', 'Brokers', 'Wholesale', "Doctor's Offices and Clinics"]),
      () => String(int(0, 35)),
      () => pick(['Space', 'Mining', '', '7.0', '+7']),
    ])();
  const interest = () => pick(['Cloud', 'software', ' Training ', '100000001', '100000005', 'Gardening', '42', '']);
  const guid = () =>
    rnd() < 0.85
      ? [8, 4, 4, 4, 12]
          .map((n) => Array.from({ length: n }, () => pick([...'0123456789abcdefABCDEF'])).join(''))
          .join('-')
      : pick(['not-a-guid', '{00000000-0000-0000-0000-000000000000}', '00000000000000000000000000000000', '']);
  const lookupKey = () =>
    maybe(
      0.8,
      () => `${pick(['A', 'B', "O'", 'X/', 'Y?', 'Z:', 'P%', 'Q"'])}${int(1, 999)}${spaces()}`,
      pick([null, '', ' ']),
    );

  // Each field: a generator of valid values and one of any values. A row draws one field (or none) from `any`
  // and the rest from `valid`, so every reason is reached and many rows convert.
  const validNumber = (intDigits: number, frac: number) =>
    `${spaces()}${pick(['', '+'])}${pick(['', '0'])}${digits(int(1, intDigits))}${frac ? maybe(0.6, () => `.${digits(int(0, frac))}`, '') : ''}${spaces()}`;
  const validDate = () =>
    `${int(1800, 2100)}-${String(int(1, 12)).padStart(2, '0')}-${String(int(1, 28)).padStart(2, '0')}${maybe(0.6, () => `T${String(int(0, 23)).padStart(2, '0')}:${String(int(0, 59)).padStart(2, '0')}${pick(['', 'Z', '+01:00', '-0530'])}`, '')}`;
  const F: Record<string, { valid: () => unknown; any: () => unknown }> = {
    name: { valid: () => maybe(0.9, () => str(20), null), any: () => str(int(0, 1) ? 10 : 170) },
    employees: { valid: () => maybe(0.9, () => validNumber(6, 0), null), any: numberText },
    rowversion: {
      valid: () => maybe(0.9, () => BigInt(int(-1000, 1000)) * 4294967296n, null),
      any: () => BigInt(pick([int(-1000, 1000), int(0, 2 ** 31)])) * BigInt(pick([1, 1, 4294967296])),
    },
    risk: { valid: () => maybe(0.9, () => validNumber(2, 4), null), any: numberText },
    risk_typed: {
      valid: () => `${digits(int(1, 3))}.${digits(2)}00`,
      any: () => `${pick(['', '-'])}${digits(int(1, 3))}.${digits(4)}`,
    },
    revenue: { valid: () => maybe(0.9, () => validNumber(12, 2), null), any: numberText },
    latitude: {
      valid: () => maybe(0.9, () => `${int(-89, 89)}.${digits(3)}`, null),
      any: () => pick([numberText(), `${int(1, 9)}e${int(-2, 2)}`]),
    },
    hold: {
      valid: () => maybe(0.9, () => pick(['true', 'FALSE', ' yes', 'No ', '1', '0', '']), null),
      any: () => pick(['maybe', '2', 'y', 'true']),
    },
    hold_typed: { valid: () => maybe(0.9, () => rnd() < 0.5, null), any: () => rnd() < 0.5 },
    audit: { valid: () => maybe(0.9, validDate, null), any: dateText },
    onboarded: { valid: () => maybe(0.9, validDate, null), any: dateText },
    contacted: { valid: () => maybe(0.9, validDate, null), any: dateText },
    industry: {
      valid: () => maybe(0.9, () => pick(['Accounting', ' accounting ', 'CONSULTING', '7', '33']), null),
      any: industry,
    },
    category: { valid: () => maybe(0.9, () => pick(['Standard', 'preferred customer']), null), any: industry },
    ownership: {
      valid: () => maybe(0.9, () => pick(['1', '2', '3', '4']), null),
      any: () => pick(['5', 'Public', '', '0']),
    },
    state: { valid: () => pick(['Active', null]), any: () => pick(['Active', 'Inactive', '0', '1', '2']) },
    status: { valid: () => pick(['1', 'active', null]), any: () => pick(['1', '2', 'Active', 'Inactive', '3']) },
    interests: {
      valid: () =>
        maybe(
          0.9,
          () =>
            Array.from({ length: int(0, 4) }, () => pick(['Cloud', 'software', ' Training ', '100000001'])).join(
              pick([';', '; ']),
            ),
          null,
        ),
      any: () => Array.from({ length: int(0, 4) }, interest).join(pick([';', '; ', ' ;'])),
    },
    owner: { valid: () => maybe(0.9, () => '0a0b0c0d-0000-0000-0000-00000000000f', null), any: guid },
    parent: { valid: () => maybe(0.8, () => `A${int(1, 999)}`, null), any: lookupKey },
    currency: { valid: () => pick(['EUR', 'USD', null]), any: () => pick(['EUR', 'E/R', '', ' ']) },
    region: { valid: () => maybe(0.8, () => `R${int(1, 99)}`, null), any: lookupKey },
  };
  const fields = Object.keys(F);
  const rows = Array.from({ length: ROWS }, (_, i) => {
    const bad = int(-4, fields.length - 1);
    const key = bad === -1 ? pick([`K${i}'x`, `K${i}/x`, `K${i}😀`, '', ' ', `K${i}${'x'.repeat(20)}`]) : `K${i}`;
    const row: Record<string, unknown> = { no: key, ts: '2024-01-01T00:00:00Z' };
    fields.forEach((f, j) => {
      row[f] = j === bad ? F[f]!.any() : F[f]!.valid();
    });
    return row;
  });

  const mapping: DataverseMapping = {
    table: 'account',
    key: ['accountnumber'],
    changeTimestamp: 'ts',
    columns: {
      accountnumber: 'no',
      name: 'name',
      numberofemployees: 'employees',
      ferry_legacyrowversion: 'rowversion',
      ferry_riskscore: 'risk',
      revenue: 'revenue',
      creditlimit: 'risk_typed',
      address1_latitude: 'latitude',
      creditonhold: 'hold',
      donotemail: 'hold_typed',
      ferry_lastauditdate: 'audit',
      ferry_onboardedon: 'onboarded',
      ferry_lastcontactedon: { from: 'contacted', nullMeans: 'omit' },
      industrycode: { from: 'industry', choice: 'auto' },
      accountcategorycode: { from: 'category', choice: 'label' },
      ownershipcode: { from: 'ownership', choice: 'value' },
      statecode: 'state',
      statuscode: 'status',
      ferry_interests: { from: 'interests', multiSelect: { separator: ';' } },
      ownerid: { from: 'owner', lookup: { table: 'systemuser' }, nullMeans: 'clear' },
      parentaccountid: { from: 'parent', lookup: { table: 'account', key: 'accountnumber' } },
      transactioncurrencyid: {
        from: 'currency',
        lookup: { table: 'transactioncurrency', key: 'isocurrencycode' },
        nullMeans: 'clear',
      },
      ferry_regionid: { from: 'region', lookup: { table: 'ferry_region', key: 'ferry_code' } },
    },
  };
  const types = {
    no: 'VARCHAR',
    ts: 'VARCHAR',
    name: 'VARCHAR',
    employees: 'VARCHAR',
    rowversion: 'BIGINT',
    risk: 'VARCHAR',
    risk_typed: 'DECIMAL(18,4)',
    revenue: 'VARCHAR',
    latitude: 'VARCHAR',
    hold: 'VARCHAR',
    hold_typed: 'BOOLEAN',
    audit: 'VARCHAR',
    onboarded: 'VARCHAR',
    contacted: 'VARCHAR',
    industry: 'VARCHAR',
    category: 'VARCHAR',
    ownership: 'VARCHAR',
    state: 'VARCHAR',
    status: 'VARCHAR',
    interests: 'VARCHAR',
    owner: 'VARCHAR',
    parent: 'VARCHAR',
    currency: 'VARCHAR',
    region: 'VARCHAR',
  };
  // The staged DECIMAL(18,4) column comes back with exactly 4 fractional digits; give the reference that text.
  const referenceRows = rows.map((r) => ({
    ...r,
    risk_typed: r.risk_typed === null ? null : normaliseDecimal(String(r.risk_typed), 4),
  }));
  const s = await openStaging();
  try {
    const out = await convertRows(s, mapping, types, rows, referenceRows);
    const reasons = new Map<string, number>();
    for (const o of out) {
      const k = 'reason' in o ? o.reason : 'ok';
      reasons.set(k, (reasons.get(k) ?? 0) + 1);
    }
    // The generator must exercise (almost) every reason, or the agreement above proves little.
    for (const r of [
      'ok',
      'string.too_long',
      'number.out_of_range',
      'number.precision',
      'number.unparsable',
      'guid.invalid',
      'choice.unknown_label',
      'choice.unknown_value',
      'multiselect.invalid_member',
      'date.before_min',
      'date.unparsable',
      'boolean.invalid',
      'key.missing',
      'lookup.key_unsafe',
      'status.invalid_for_state',
    ]) {
      assert.ok((reasons.get(r) ?? 0) > 0, `generated rows hit ${r} (got ${JSON.stringify([...reasons])})`);
    }
  } finally {
    await s.close();
  }
});

function normaliseDecimal(text: string, scale: number): string {
  const [i, f = ''] = text.split('.');
  return `${i}.${f.padEnd(scale, '0')}`;
}

test('differential: opportunity with an integer own key, per-row polymorphic lookups and wide DECIMAL sources', async () => {
  const rnd = prng(SEED + 1);
  const int = (lo: number, hi: number) => lo + Math.floor(rnd() * (hi - lo + 1));
  const pick = <T>(xs: readonly T[]): T => xs[int(0, xs.length - 1)]!;
  const digits = (n: number) => Array.from({ length: n }, () => int(0, 9)).join('');
  const rows = Array.from({ length: Math.ceil(ROWS / 3) }, (_, i) => ({
    // Unique integer keys, written in several ways; some rows without a usable key.
    no: pick([
      String(i + 1),
      ` ${i + 1} `,
      `+${i + 1}`,
      `00${i + 1}`,
      `${i + 1}.0`,
      `${i + 1}.5`,
      '',
      'x',
      String(i + 1),
    ]),
    ts: '2024-01-01',
    ctype: pick(['account', 'Contact', ' contact ', 'lead', '', null, 'account']),
    cref: pick([`A${i}`, `C'${i}`, `X/${i}`, '', null, `C${i}`]),
    csrc: pick(['CRM1', 'CRM2', '', null, 'CRM:3']),
    owner: pick(['0a0b0c0d-0000-0000-0000-00000000000f', '0A0B0C0D-0000-0000-0000-00000000000F', 'nope', null]),
    amount: pick([
      null,
      `${pick(['', '-'])}${digits(int(1, 15))}.${digits(6)}`,
      `${pick(['', '-'])}${digits(int(16, 20))}.${digits(2)}0000`,
      `${digits(int(1, 5))}.${digits(2)}0000`,
    ]),
    margin: pick([null, `${pick(['', '-'])}${int(0, 120)}.${digits(pick([1, 2, 3]))}`]),
    close: pick([null, '2024-02-29', '2023-02-29', '1753-01-01', '1752-12-31T23:59:59Z', '2024-12-31T23:30:00-02:00']),
    products: pick([null, 'Cloud;Software', 'cloud; CLOUD', '100000002;100000009', 'Hardware;;', '']),
  }));
  const mapping: DataverseMapping = {
    table: 'opportunity',
    key: ['ferry_legacynumber'],
    changeTimestamp: 'ts',
    columns: {
      ferry_legacynumber: 'no',
      customerid: {
        from: 'cref',
        lookup: {
          tableFrom: 'ctype',
          keys: {
            account: 'accountnumber',
            contact: { key: ['ferry_legacysource', 'ferry_legacyid'], from: ['csrc', 'cref'] },
          },
        },
        nullMeans: 'clear',
      },
      ownerid: { from: 'owner', lookup: { table: 'team' } },
      ferry_weightedamount: 'amount',
      ferry_marginpercent: 'margin',
      estimatedclosedate: 'close',
      ferry_lastsyncedon: 'close',
      ferry_productlines: { from: 'products', multiSelect: { choice: 'auto' } },
    },
  };
  const types = {
    no: 'VARCHAR',
    ts: 'VARCHAR',
    ctype: 'VARCHAR',
    cref: 'VARCHAR',
    csrc: 'VARCHAR',
    owner: 'VARCHAR',
    amount: 'DECIMAL(38,6)',
    margin: 'VARCHAR',
    close: 'VARCHAR',
    products: 'VARCHAR',
  };
  // Integer keys written differently may collide (`1` and `001`): keep the first of each so no row is superseded.
  const seen = new Set<string>();
  const unique = rows.filter((r) => {
    const t = r.no.trim();
    const k = /^[+-]?\d+$/.test(t) ? String(BigInt(t)) : `raw:${r.no}`;
    if (seen.has(k) && /^[+-]?\d+$/.test(t)) return false;
    seen.add(k);
    return true;
  });
  const referenceRows = unique.map((r) => ({ ...r, amount: r.amount === null ? null : normaliseDecimal(r.amount, 6) }));
  const s = await openStaging();
  try {
    const out = await convertRows(s, mapping, types, unique, referenceRows);
    const kinds = new Set(out.map((o) => ('reason' in o ? o.reason : 'ok')));
    for (const r of [
      'ok',
      'key.missing',
      'number.unparsable',
      'number.precision',
      'lookup.target_unknown',
      'lookup.key_unsafe',
      'guid.invalid',
      'number.out_of_range',
      'date.before_min',
      'date.unparsable',
      'multiselect.invalid_member',
    ]) {
      assert.ok(kinds.has(r), `hit ${r}: ${[...kinds].join(', ')}`);
    }
  } finally {
    await s.close();
  }
});
