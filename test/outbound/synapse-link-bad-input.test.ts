import assert from 'node:assert/strict';
import fs from 'node:fs';
import { afterEach, beforeEach, describe, it } from 'node:test';
import { definePipeline } from '../../src/core/pipeline.js';
import type { RunReport } from '../../src/core/runner.js';
import { readSynapseLink } from '../../src/stages/read-synapse-link/spec.js';
import { runSqlExtract } from '../../src/stages/run-sql-extract/spec.js';
import { writeParquet } from '../../src/stages/write-parquet/spec.js';
import { OutboundSandbox, readParquetRows } from './helpers.js';

const FOLDER = 'synapse-link/demo';
const F2 = '2026-01-01T00.30.00Z';
const F3 = '2026-01-01T00.45.00Z';
const SOURCE = `synapse-link:${FOLDER}`;

const pipeline = definePipeline({
  name: 'bad-input-test',
  direction: 'outbound',
  stages: [
    readSynapseLink({ folder: FOLDER, format: 'csv', tables: ['account', 'contact'] }),
    runSqlExtract({ table: 'account' }),
    runSqlExtract({ table: 'contact' }),
    writeParquet(),
  ],
});

describe('outbound CSV: bad input fails the run with file and line, commits nothing, loses nothing', () => {
  let box: OutboundSandbox;
  beforeEach(() => {
    box = new OutboundSandbox();
    box.copy('synapse-link/incremental-with-deletes', FOLDER);
  });
  afterEach(() => box.close());

  /** The run failed with `code`, the cursor did not move and no window was published. */
  function assertNothingCommitted(report: RunReport, code: string, mentions: readonly string[]): void {
    assert.equal(report.status, 'failed');
    assert.equal(report.error?.code, code, report.error?.message);
    for (const m of mentions)
      assert.ok(report.error!.message.includes(m), `message names ${m}: ${report.error!.message}`);
    assert.equal(box.state.getCursor('bad-input-test', SOURCE), null);
    assert.equal(box.state.processedItems('bad-input-test', SOURCE).size, 0);
    const wh = box.warehouse('account');
    const manifests = fs.existsSync(wh)
      ? fs.readdirSync(wh, { recursive: true }).filter((f) => String(f).endsWith('_manifest.json'))
      : [];
    assert.deepEqual(manifests, []);
  }

  /** After the fix, the next run processes every folder, the repaired one included. */
  async function assertRecovers(): Promise<void> {
    const report = await box.run(pipeline);
    assert.equal(report.status, 'succeeded', report.error?.message);
    assert.equal(report.window.items, 3);
    assert.equal(box.state.getCursor('bad-input-test', SOURCE), F3);
    const rows = await readParquetRows(
      box.warehouse('account', `2026-01-01T00.15.00Z_${F3}`, 'part-00000.parquet'),
      'count(*) AS n',
    );
    assert.equal(rows[0]!.n, 5n);
  }

  it('malformed model.json: names the file, line and column', async () => {
    const file = box.lakePath(`${FOLDER}/${F2}/model.json`);
    const good = fs.readFileSync(file, 'utf8');
    fs.writeFileSync(file, '{\n  "name": "cdm",\n  "entities": [ { "name": "account", \n');
    const report = await box.run(pipeline);
    assertNothingCommitted(report, 'synapse_link.model_json', [`\`${FOLDER}/${F2}/model.json\``, 'line 4']);
    fs.writeFileSync(file, good);
    await assertRecovers();
  });

  it('model.json with an unknown dataType: names the JSON path', async () => {
    const file = box.lakePath(`${FOLDER}/${F2}/model.json`);
    const good = fs.readFileSync(file, 'utf8');
    fs.writeFileSync(file, good.replace('"dataType": "int64"', '"dataType": "bigint"'));
    const report = await box.run(pipeline);
    assertNothingCommitted(report, 'synapse_link.model_json', ['`$.entities[0].attributes[', '`bigint`']);
  });

  it('a row wider than the folder schema: names the file and the physical line', async () => {
    const file = box.lakePath(`${FOLDER}/${F2}/account/2026.csv`);
    const good = fs.readFileSync(file, 'utf8');
    // The first record spans lines 1-2 (a quoted line break), the second is line 3, the appended one line 4.
    fs.appendFileSync(
      file,
      'a0000009-0000-4000-8000-000000000009,"1/1/2026 12:29:00 AM","1/1/2026 12:29:00 AM","Wide",A-9,1,1,1,0,x,1009,"2026-01-01T00:00:00Z","2026-01-01T00:00:00Z",,surplus,fields\n',
    );
    const report = await box.run(pipeline);
    assertNothingCommitted(report, 'synapse_link.row_too_wide', [
      `\`${FOLDER}/${F2}/account/2026.csv\` line 4`,
      '14 columns',
    ]);
    fs.writeFileSync(file, good);
    await assertRecovers();
  });

  it('a file cut short mid-row: names the file and its last line', async () => {
    const file = box.lakePath(`${FOLDER}/${F3}/account/2026.csv`);
    const good = fs.readFileSync(file, 'utf8');
    fs.writeFileSync(file, good.slice(0, good.length - 40));
    const report = await box.run(pipeline);
    assertNothingCommitted(report, 'synapse_link.truncated_file', [`\`${FOLDER}/${F3}/account/2026.csv\` line 2`]);
    fs.writeFileSync(file, good);
    await assertRecovers();
  });

  it('a file cut inside a quoted value: names the file and the line the value starts on', async () => {
    const file = box.lakePath(`${FOLDER}/${F2}/account/2026.csv`);
    const good = fs.readFileSync(file, 'utf8');
    fs.writeFileSync(
      file,
      `${good}a0000009-0000-4000-8000-000000000009,"1/1/2026 12:29:00 AM","1/1/2026 12:29:00 AM","Cut here\n`,
    );
    const report = await box.run(pipeline);
    assertNothingCommitted(report, 'synapse_link.truncated_file', [`\`${FOLDER}/${F2}/account/2026.csv\``, 'line 4']);
  });

  it('an unparsable date: names the file, line, column and value', async () => {
    const file = box.lakePath(`${FOLDER}/${F3}/account/2026.csv`);
    const good = fs.readFileSync(file, 'utf8');
    fs.writeFileSync(file, good.replace('"2026-01-01T00:41:00Z"', '"2026-13-45T00:41:00Z"'));
    const report = await box.run(pipeline);
    assertNothingCommitted(report, 'synapse_link.bad_value', [
      `\`${FOLDER}/${F3}/account/2026.csv\` line 2`,
      '`modifiedon`',
      '`2026-13-45T00:41:00Z`',
    ]);
    fs.writeFileSync(file, good);
    await assertRecovers();
  });

  it('an unparsable Sink date in the US format: names the column', async () => {
    const file = box.lakePath(`${FOLDER}/${F3}/contact/2026.csv`);
    fs.writeFileSync(file, fs.readFileSync(file, 'utf8').replace('1/1/2026 12:44:30 AM', '13/1/2026 12:44:30 AM'));
    const report = await box.run(pipeline);
    assertNothingCommitted(report, 'synapse_link.bad_value', [
      `\`${FOLDER}/${F3}/contact/2026.csv\` line 1`,
      '`SinkModifiedOn`',
      '`13/1/2026 12:44:30 AM`',
    ]);
  });
});

describe('outbound extract errors', () => {
  let box: OutboundSandbox;
  beforeEach(() => {
    box = new OutboundSandbox();
    box.copy('synapse-link/incremental-with-deletes', FOLDER);
  });
  afterEach(() => box.close());

  it('a custom query that fails on a row names the extract; nothing is committed', async () => {
    const sqlFile = `${box.dir}/bad.sql`;
    fs.writeFileSync(sqlFile, 'SELECT Id, CAST(accountnumber AS INTEGER) AS n, false AS IsDelete FROM account\n');
    const def = definePipeline({
      name: 'bad-extract-test',
      direction: 'outbound',
      stages: [
        readSynapseLink({ folder: FOLDER, tables: ['account'] }),
        runSqlExtract({ table: 'account', query: sqlFile, output: 'numbers' }),
        writeParquet(),
      ],
    });
    const report = await box.run(def);
    assert.equal(report.status, 'failed');
    assert.equal(report.error?.code, 'extract.sql');
    assert.match(report.error!.message, /`numbers` \(extract of `account`\)/);
    assert.match(report.error!.message, /A-001/);
    assert.equal(box.state.getCursor('bad-extract-test', SOURCE), null);
    assert.equal(
      fs.existsSync(box.warehouse('numbers', '2026-01-01T00.15.00Z_2026-01-01T00.45.00Z', '_manifest.json')),
      false,
    );
  });
});
