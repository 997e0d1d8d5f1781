import assert from 'node:assert/strict';
import path from 'node:path';
import { describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import type { DataverseMapping } from '../../src/core/mapping.js';
import { duckdbConversion, duckdbDialect } from '../../src/dialects/duckdb/conversion.js';
import { DuckDbStaging } from '../../src/dialects/duckdb/driver.js';
import { compileConversion } from '../../src/dialects/sql-dialect.js';
import { tsqlConversion, tsqlDialect } from '../../src/dialects/tsql/conversion.js';
import { loadConversionPlan } from '../../src/stages/convert-to-dataverse/conversion.js';

const metadataDir = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'fixtures', 'metadata');
const mapping: DataverseMapping = {
  table: 'account',
  key: ['accountnumber'],
  changeTimestamp: 'modified_at',
  columns: { accountnumber: 'account_no', name: 'account_name', creditlimit: 'credit' },
};
const names = (base: string) => ({
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

describe('one conversion compiler, dialect hooks', () => {
  test('the local classification reads the capabilities: T-SQL (FOR JSON payload, no regex) is refused by name', async () => {
    const plan = await loadConversionPlan(mapping, metadataDir);
    assert.throws(
      () => compileConversion(plan, tsqlDialect, { sources: [] }),
      (e: Error & { code?: string }) =>
        e.code === 'convert.dialect' && /`tsql`/.test(e.message) && /payload for-json-path/.test(e.message),
    );
    const noParquet = { ...duckdbDialect, capabilities: { ...duckdbDialect.capabilities, readsParquet: false } };
    assert.throws(
      () =>
        compileConversion(plan, noParquet, {
          sources: plan.sourceColumns.map((name) => ({ name, kind: 'text' as const })),
          appliedVersions: { kind: 'parquet', path: 'v.parquet' },
        }),
      /cannot read the applied versions file `v.parquet`/,
    );
  });

  test('the shared statements differ between the dialects only by their hooks', async () => {
    const plan = await loadConversionPlan(mapping, metadataDir);
    const t = tsqlConversion.compileSynapse(plan, names('a'));
    const d = duckdbConversion.compileSynapse(plan, names('a'));
    // Same statement structure through each dialect's tokens.
    assert.equal(t.sinkQuery, 'SELECT [accountnumber], [name], [creditlimit] FROM [stg_a_sink]');
    assert.equal(d.sinkQuery, 'SELECT "accountnumber", "name", "creditlimit" FROM "stg_a_sink"');
    assert.match(t.saveVersions.at(-1)!, /^MERGE INTO \[ferry\]\.\[applied_versions\] WITH \(HOLDLOCK\)/);
    assert.match(
      d.saveVersions.at(-1)!,
      /^INSERT INTO "ferry"\."applied_versions" .* ON CONFLICT \("pipeline", "key"\)/,
    );
    assert.equal(t.saveVersions.length, 3, 'T-SQL: DROP, SELECT INTO, MERGE');
    assert.equal(d.saveVersions.length, 2, 'DuckDB: CREATE OR REPLACE TABLE AS, INSERT ON CONFLICT');
    assert.match(t.rejects[0]!, /@run_id, @pipeline, N'convert-to-dataverse'/);
    assert.match(d.rejects[0]!, /\$run_id, \$pipeline, 'convert-to-dataverse'/);
    // T-SQL overrides the classification (FOR JSON PATH payload); DuckDB uses the shared one.
    assert.ok(t.classify.some((s) => s.includes('FOR JSON PATH')));
    assert.ok(!d.classify.some((s) => s.includes('FOR JSON')));
    assert.ok(d.classify.some((s) => s.includes('DESC NULLS LAST')));
    assert.ok(
      t.classify.some((s) => s.includes('CASE WHEN k.[__version] IS NULL THEN 1 ELSE 0 END, k.[__version] DESC')),
    );
  });

  test('DuckDB: the local work table is a TEMP table of the run connection, the exported steps use a named table', async () => {
    const plan = await loadConversionPlan(mapping, metadataDir);
    const db = await DuckDbStaging.open();
    try {
      await db.run(
        "CREATE TABLE staged AS SELECT * FROM (VALUES ('A-1', 'One', 12.5, TIMESTAMP '2026-01-01 10:00:00', 1, 'run', 'f.parquet', 1), ('A-2', 'Two', NULL, TIMESTAMP '2026-01-01 11:00:00', 2, 'run', 'f.parquet', 2)) x(account_no, account_name, credit, modified_at, __row_id, __run_id, __source_file, __row_number)",
      );
      const sources = plan.sourceColumns
        .concat('modified_at')
        .map((name) => ({
          name,
          ...duckdbDialect.classifyType(
            name === 'modified_at' ? 'TIMESTAMP' : name === 'credit' ? 'DECIMAL(18,1)' : 'VARCHAR',
          ),
        }));
      const sql = compileConversion(plan, duckdbDialect, { sources });
      await db.run(sql.classify);
      await db.run(sql.converted);
      const [work] = await db.all<{ temporary: boolean }>(
        "SELECT temporary FROM duckdb_tables() WHERE table_name = '__ferry_convert'",
      );
      assert.equal(work?.temporary, true);
      const rows = await db.all<{ payload: string }>('SELECT __payload AS payload FROM converted ORDER BY __row_id');
      assert.deepEqual(
        rows.map((r) => r.payload),
        ['{"name":"One","creditlimit":12.5}', '{"name":"Two","creditlimit":null}'],
      );
    } finally {
      await db.close();
    }
    const exported = duckdbConversion.compileSynapse(plan, names('a'));
    assert.ok(exported.classify.some((s) => s.startsWith('CREATE OR REPLACE TABLE "stg_a_work" AS')));
    assert.ok(!exported.classify.some((s) => s.includes('TEMP TABLE')));
  });

  test('the DuckDB rendering of the applied-versions upsert keeps the newer version', async () => {
    const db = await DuckDbStaging.open();
    try {
      await db.run('CREATE SCHEMA ferry');
      await db.run('CREATE TABLE ferry.t (k VARCHAR PRIMARY KEY, v VARCHAR, r VARCHAR)');
      await db.run("INSERT INTO ferry.t VALUES ('a', '2', 'old'), ('b', '5', 'old')");
      await db.run(
        "CREATE TABLE s AS SELECT * FROM (VALUES ('a', '3', 'new'), ('b', '4', 'new'), ('c', '1', 'new')) x(k, v, r)",
      );
      await db.run(
        duckdbDialect.upsert({
          target: { schema: 'ferry', table: 't' },
          source: { schema: '', table: 's' },
          keys: ['k'],
          columns: ['v', 'r'],
          versionColumn: 'v',
        }),
      );
      const rows = await db.all<{ k: string; v: string; r: string }>('SELECT k, v, r FROM ferry.t ORDER BY k');
      assert.deepEqual(
        rows.map((x) => [x.k, x.v, x.r]),
        [
          ['a', '3', 'new'],
          ['b', '5', 'old'],
          ['c', '1', 'new'],
        ],
      );
    } finally {
      await db.close();
    }
  });
});
