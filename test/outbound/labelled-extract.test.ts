import assert from 'node:assert/strict';
import fs from 'node:fs';
import { afterEach, beforeEach, describe, it } from 'node:test';
import { definePipeline } from '../../src/core/pipeline.js';
import { compileExtract } from '../../src/dialects/tsql/extract.js';
import { readSynapseLink } from '../../src/stages/read-synapse-link/spec.js';
import { runSqlExtract } from '../../src/stages/run-sql-extract/spec.js';
import { writeParquet } from '../../src/stages/write-parquet/spec.js';
import { OutboundSandbox, readParquetRows } from './helpers.js';

const FOLDER = 'synapse-link/demo';
const F1 = '2026-01-01T00.15.00Z';
const F2 = '2026-01-01T00.30.00Z';
const F3 = '2026-01-01T00.45.00Z';
const A = (n: number) => `a000000${n}-0000-4000-8000-00000000000${n}`;
const LABELLED = 'sql/extract/account-with-labels.sql';

function pipeline(name: string, query: string) {
  return definePipeline({
    name,
    direction: 'outbound',
    stages: [
      readSynapseLink({ folder: FOLDER, format: 'csv', tables: ['account'] }),
      runSqlExtract({ table: 'account', query, output: 'out' }),
      writeParquet({ deletes: 'flag-column' }),
    ],
  });
}

describe('the labelled extract: the default extract’s latest-row rule, the labels of its own window', () => {
  let box: OutboundSandbox;
  beforeEach(() => {
    box = new OutboundSandbox();
    box.copy('synapse-link/incremental-with-deletes', FOLDER);
  });
  afterEach(() => box.close());

  async function rows(select: string): Promise<Record<string, unknown>[]> {
    const files = fs
      .readdirSync(box.warehouse('out'), { recursive: true })
      .map(String)
      .filter((f) => f.endsWith('.parquet'))
      .map((f) => box.warehouse('out', f));
    return readParquetRows(files, select, 'Id');
  }

  it('keeps a delete row that has no versionnumber, as the default extract does', async () => {
    // Some exports write a delete with only Id, the Sink columns and IsDelete: it must win over versions 1001..1007.
    fs.appendFileSync(
      box.lakePath(`${FOLDER}/${F3}/account/2026.csv`),
      `${A(1)},"1/1/2026 12:44:50 AM","1/1/2026 12:44:50 AM",,,,,,,,,,,True,,\n`,
    );
    const labelled = await box.run(pipeline('labelled', LABELLED));
    assert.equal(labelled.status, 'succeeded', labelled.error?.message);
    const got = await rows('Id, IsDelete');
    fs.rmSync(box.warehouse('out'), { recursive: true });
    const plain = await box.run(pipeline('plain', 'default'));
    assert.equal(plain.status, 'succeeded', plain.error?.message);
    assert.deepEqual(got, await rows('Id, IsDelete'));
    assert.deepEqual(
      got.find((r) => r.Id === A(1)),
      { Id: A(1), IsDelete: true },
    );
    assert.equal(labelled.counts.deleted, plain.counts.deleted);
  });

  it('joins the labels of the window’s newest folder that has them, never a later folder’s', async () => {
    // F3 (outside the backfilled window [F1, F2]) renames the labels; the window must keep its own.
    const later = box.lakePath(`${FOLDER}/${F3}/OptionsetMetadata/OptionsetMetadata.csv`);
    fs.writeFileSync(later, fs.readFileSync(later, 'utf8').replace(',Accounting', ',Accounting (renamed later)'));
    const report = await box.run(pipeline('labelled', LABELLED), 'backfill', {
      range: { from: '2026-01-01T00:15:00Z', to: '2026-01-01T00:31:00Z' },
    });
    assert.equal(report.status, 'succeeded', report.error?.message);
    assert.deepEqual([report.window.first, report.window.last], [F1, F2]);
    const got = await rows('Id, industrycode_label');
    assert.deepEqual(
      got.find((r) => r.Id === A(1)),
      { Id: A(1), industrycode_label: 'Accounting' },
    );
  });

  it('reads no OptionsetMetadata outside the window’s folders (a stale root folder is not the window’s)', async () => {
    for (const f of [F1, F2, F3]) fs.rmSync(box.lakePath(`${FOLDER}/${f}/OptionsetMetadata`), { recursive: true });
    box.copy(`synapse-link/incremental-with-deletes/${F1}/OptionsetMetadata`, `${FOLDER}/OptionsetMetadata`);
    const report = await box.run(pipeline('labelled', LABELLED));
    assert.equal(report.status, 'succeeded', report.error?.message);
    const got = await rows('Id, industrycode_label, statecode_label');
    assert.ok(got.length > 0);
    for (const r of got) assert.deepEqual([r.industrycode_label, r.statecode_label], [null, null], JSON.stringify(r));
  });

  it('T-SQL: the dedup ranks a versionless delete first, and the labels come from the window’s folders only', () => {
    const select = fs.readFileSync('sql/tsql/extract/account-with-labels.sql', 'utf8');
    const statements = compileExtract({
      table: 'account',
      output: 'account_labelled',
      metadata: { Attributes: [{ LogicalName: 'name' }, { LogicalName: 'industrycode' }] },
      format: 'csv',
      synapseLinkFolder: FOLDER,
      deletes: 'flag-column',
      customSelect: select,
    });
    const latest = statements.find((s) => s.startsWith('DECLARE @latest '));
    const text = statements.find((s) => s.startsWith('DECLARE @select '));
    assert.ok(latest && text);
    // The dedup: a delete without a version ranks above every version (NULLs sort last in DESC), then the
    // highest version, then the latest SinkModifiedOn (retries repeat a version).
    assert.match(
      latest,
      /ORDER BY CASE WHEN r\.\[versionnumber\] IS NULL AND TRY_CONVERT\(BIT, r\.\[IsDelete\]\) = 1 THEN 1 ELSE 0 END DESC, r\.\[versionnumber\] DESC, r\.\[SinkModifiedOn\] DESC/,
    );
    // Every OPENROWSET over OptionsetMetadata is bounded by the window's folders, and no label is a MAX().
    const labelReads = text.split('OPENROWSET(BULK ').filter((p) => p.startsWith("''*/OptionsetMetadata/"));
    assert.equal(labelReads.length, 2);
    assert.equal((text.match(/\.filepath\(1\) > N''', REPLACE\(@window_start/g) ?? []).length, 2);
    assert.equal((text.match(/\.filepath\(1\) < N''', REPLACE\(@window_end/g) ?? []).length, 2);
    assert.doesNotMatch(text, /MAX\(/);
    assert.doesNotMatch(text, /\{window_(start|end)\}/);
  });
});
