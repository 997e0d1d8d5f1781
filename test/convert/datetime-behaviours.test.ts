import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import type { DataverseMapping } from '../../src/core/mapping.js';
import type { DuckDbStaging } from '../../src/dialects/duckdb/driver.js';
import { convertRows, openStaging } from './convert-helpers.js';

// The case table of DateTime behaviours × source types (text, DATE, TIMESTAMP, TIMESTAMPTZ), executed by DuckDB and
// checked against the reference converter on every row (convertRows). UserLocal: the UTC instant (a value without an
// offset is a wall clock in the pipeline's sourceTimeZone). TimeZoneIndependent: the wall clock as written, offset
// dropped. DateOnly: the calendar date as written. A TIMESTAMPTZ value is an instant (Parquet keeps no offset): its
// wall clock and date are taken in sourceTimeZone.

let s: DuckDbStaging;
before(async () => {
  s = await openStaging();
});
after(async () => {
  await s.close();
});

interface Case {
  readonly type: string;
  readonly value: string;
  /** [UserLocal, TimeZoneIndependent, DateOnly] */
  readonly expected: readonly [string, string, string];
}

async function convert(zone: string | undefined, cases: readonly Case[]): Promise<void> {
  for (const c of cases) {
    const mapping: DataverseMapping = {
      table: 'account',
      key: ['accountnumber'],
      changeTimestamp: 'ts',
      columns: {
        accountnumber: 'no',
        ferry_lastcontactedon: 'v', // UserLocal
        ferry_onboardedon: 'v', // TimeZoneIndependent
        ferry_lastauditdate: 'v', // DateOnly
      },
      ...(zone === undefined ? {} : { sourceTimeZone: zone }),
    };
    const [out] = await convertRows(s, mapping, { no: 'VARCHAR', ts: 'VARCHAR', v: c.type }, [
      { no: 'K1', ts: '2024-01-01T00:00:00Z', v: c.value },
    ]);
    assert.ok(out && 'payload' in out, `${c.type} ${c.value}: ${JSON.stringify(out)}`);
    assert.deepEqual(
      JSON.parse(out.payload),
      {
        ferry_lastcontactedon: c.expected[0],
        ferry_onboardedon: c.expected[1],
        ferry_lastauditdate: c.expected[2],
      },
      `${zone ?? 'default zone'}: ${c.type} ${c.value}`,
    );
  }
}

test('source time zone UTC (the default): each behaviour × source type', async () => {
  await convert(undefined, [
    // 23:30 at -05:00 is 04:30 UTC the next day.
    {
      type: 'VARCHAR',
      value: '2024-05-31T23:30:00-05:00',
      expected: ['2024-06-01T04:30:00Z', '2024-05-31T23:30:00Z', '2024-05-31'],
    },
    {
      type: 'VARCHAR',
      value: '2024-05-31 23:30:00',
      expected: ['2024-05-31T23:30:00Z', '2024-05-31T23:30:00Z', '2024-05-31'],
    },
    { type: 'DATE', value: '2024-05-31', expected: ['2024-05-31T00:00:00Z', '2024-05-31T00:00:00Z', '2024-05-31'] },
    {
      type: 'TIMESTAMP',
      value: '2024-05-31 23:30:00',
      expected: ['2024-05-31T23:30:00Z', '2024-05-31T23:30:00Z', '2024-05-31'],
    },
    // The instant 2024-06-01 04:30 UTC: its offset is lost, so "as written" is its wall clock in the source zone.
    {
      type: 'TIMESTAMPTZ',
      value: '2024-05-31 23:30:00-05:00',
      expected: ['2024-06-01T04:30:00Z', '2024-06-01T04:30:00Z', '2024-06-01'],
    },
  ]);
});

test('source time zone America/New_York: naive values are New York wall clocks, offsets still win', async () => {
  await convert('America/New_York', [
    {
      type: 'VARCHAR',
      value: '2024-05-31T23:30:00-05:00',
      expected: ['2024-06-01T04:30:00Z', '2024-05-31T23:30:00Z', '2024-05-31'],
    },
    // EDT (-04:00) in May, EST (-05:00) in January.
    {
      type: 'VARCHAR',
      value: '2024-05-31 23:30:00',
      expected: ['2024-06-01T03:30:00Z', '2024-05-31T23:30:00Z', '2024-05-31'],
    },
    {
      type: 'VARCHAR',
      value: '2024-01-15T08:00:00',
      expected: ['2024-01-15T13:00:00Z', '2024-01-15T08:00:00Z', '2024-01-15'],
    },
    { type: 'DATE', value: '2024-05-31', expected: ['2024-05-31T04:00:00Z', '2024-05-31T00:00:00Z', '2024-05-31'] },
    {
      type: 'TIMESTAMP',
      value: '2024-05-31 23:30:00',
      expected: ['2024-06-01T03:30:00Z', '2024-05-31T23:30:00Z', '2024-05-31'],
    },
    {
      type: 'TIMESTAMPTZ',
      value: '2024-05-31 23:30:00-05:00',
      expected: ['2024-06-01T04:30:00Z', '2024-06-01T00:30:00Z', '2024-06-01'],
    },
    {
      type: 'TIMESTAMPTZ',
      value: '2024-06-01 03:59:00+00:00',
      expected: ['2024-06-01T03:59:00Z', '2024-05-31T23:59:00Z', '2024-05-31'],
    },
  ]);
});

test('a source time zone that is not an IANA name is refused by name', async () => {
  await assert.rejects(
    convert('Mars/Olympus', [{ type: 'VARCHAR', value: '2024-05-31', expected: ['', '', ''] }]),
    /sourceTimeZone `Mars\/Olympus`.*not an IANA time zone/,
  );
});
