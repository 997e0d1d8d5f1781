import assert from 'node:assert/strict';
import fs from 'node:fs';
import { afterEach, beforeEach, describe, it } from 'node:test';
import { definePipeline } from '../../src/core/pipeline.js';
import { readSynapseLink } from '../../src/stages/read-synapse-link/spec.js';
import { runSqlExtract } from '../../src/stages/run-sql-extract/spec.js';
import { writeParquet } from '../../src/stages/write-parquet/spec.js';
import { OutboundSandbox, readParquetRows } from './helpers.js';

// Dataverse multi-line text typed on Windows holds CRLF, and Synapse Link writes it as is inside a quoted value.
// DuckDB's CSV reader takes a file's line terminator from its first line break, quoted or not: a CRLF inside the
// first record of an LF file used to stop the run ("CSV Parser state machine reached an invalid state").

const FOLDER = 'synapse-link/demo';
const F1 = '2026-01-01T00.15.00Z';
const F2 = '2026-01-01T00.30.00Z';
const F3 = '2026-01-01T00.45.00Z';
const id = (n: number) => `b000000${n}-0000-4000-8000-00000000000${n}`;

const pipeline = definePipeline({
  name: 'crlf-test',
  direction: 'outbound',
  stages: [
    readSynapseLink({ folder: FOLDER, format: 'csv', tables: ['account'] }),
    runSqlExtract({ table: 'account', query: 'default' }),
    writeParquet(),
  ],
});

/** Account records (the 14 fields of the fixture's model.json, ending with a value: DuckDB misreads those) with the given descriptions. */
function accountCsv(first: number, descriptions: readonly string[], terminator: '\n' | '\r\n'): string {
  return descriptions
    .map((d, i) => {
      const n = first + i;
      const quoted = `"${d.replaceAll('"', '""')}"`;
      return `${id(n)},"1/1/2026 12:15:03 AM","1/1/2026 12:15:03 AM","Account ${n}","B-00${n}",1.5,10,2,0,${quoted},${2000 + n},"2025-11-30T08:30:00.0000000+00:00","2026-01-01T00:11:00Z",False${terminator}`;
    })
    .join('');
}

const multiLine = (n: number) => `Line one of ${n}\r\nLine two, with comma\r\n"quoted" third`;

describe('outbound CSV: CRLF inside quoted values and CRLF record terminators', () => {
  let box: OutboundSandbox;
  beforeEach(() => {
    box = new OutboundSandbox();
    box.copy('synapse-link/incremental-with-deletes', FOLDER);
    // Only our files: F1 and F2 hold the accounts under test, F3 none.
    for (const f of [F1, F2, F3]) fs.rmSync(box.lakePath(`${FOLDER}/${f}/account`), { recursive: true, force: true });
    fs.rmSync(box.lakePath(`${FOLDER}/${F2}/contact`), { recursive: true, force: true });
  });
  afterEach(() => box.close());

  /** Runs the pipeline and returns Id → description of the warehouse window. */
  async function descriptions(): Promise<Map<string, string>> {
    const report = await box.run(pipeline);
    assert.equal(report.status, 'succeeded', report.error?.message);
    const files = fs
      .readdirSync(box.warehouse('account'), { recursive: true })
      .map(String)
      .filter((f) => f.endsWith('.parquet'))
      .map((f) => box.warehouse('account', f));
    const rows = await readParquetRows(files, 'Id, description', 'Id');
    return new Map(rows.map((r) => [String(r.Id), String(r.description)]));
  }

  function write(folder: string, file: string, text: string): void {
    fs.mkdirSync(box.lakePath(`${FOLDER}/${folder}/account`), { recursive: true });
    fs.writeFileSync(box.lakePath(`${FOLDER}/${folder}/account/${file}`), text);
  }

  const values = (first: number) => [
    multiLine(first),
    'plain',
    multiLine(first + 2),
    'plain too',
    multiLine(first + 4),
  ];

  it('reads CRLF line breaks exactly in the first, a middle and the last record of an LF file', async () => {
    write(F1, '2026.csv', accountCsv(1, values(1), '\n'));
    const got = await descriptions();
    assert.deepEqual(
      [...got.entries()],
      values(1).map((d, i) => [id(1 + i), d]),
    );
  });

  it('reads a file whose only record holds CRLF line breaks', async () => {
    write(F1, '2026.csv', accountCsv(1, [multiLine(1)], '\n'));
    assert.deepEqual([...(await descriptions()).entries()], [[id(1), multiLine(1)]]);
  });

  it('reads files with CRLF record terminators, CRLF values included, next to LF files in the same window', async () => {
    write(F1, '2026.csv', accountCsv(1, values(1), '\r\n'));
    write(F2, '2026.csv', accountCsv(6, [multiLine(6), 'lf file'], '\n'));
    write(F2, '2026-part2.csv', accountCsv(8, ['crlf file', multiLine(9)], '\r\n'));
    const got = await descriptions();
    const expected = [
      ...values(1).map((d, i) => [id(1 + i), d]),
      [id(6), multiLine(6)],
      [id(7), 'lf file'],
      [id(8), 'crlf file'],
      [id(9), multiLine(9)],
    ];
    assert.deepEqual([...got.entries()], expected);
  });

  it('refuses, by file name, a CRLF file whose first record holds a bare LF in a quoted value', async () => {
    write(F1, '2026.csv', accountCsv(1, ['bare\nLF', 'x'], '\r\n'));
    const report = await box.run(pipeline);
    assert.equal(report.status, 'failed');
    assert.equal(report.error?.code, 'synapse_link.csv');
    assert.match(report.error!.message, new RegExp(`\`${FOLDER}/${F1}/account/2026.csv\` ends its records with CRLF`));
    assert.equal(box.state.getCursor('crlf-test', `synapse-link:${FOLDER}`), null);
  });
});
