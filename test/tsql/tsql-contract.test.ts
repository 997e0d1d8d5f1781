import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { referenceConvert } from '../../src/core/reference-converter.js';
import { STAGING_TABLES } from '../../src/core/staging-contract.js';
import { duckdbDialect } from '../../src/dialects/duckdb/conversion.js';
import { DuckDbStaging, duckIdent, duckLiteral } from '../../src/dialects/duckdb/driver.js';
import { CONVERSION_WORK_TABLE, compileConversion as compileDuck } from '../../src/dialects/sql-dialect.js';
import {
  acquireLeaseSql,
  leaseResource,
  releaseLeaseSql,
  stateSchemaStatements,
  tsqlIdent,
  tsqlLiteral,
} from '../../src/dialects/tsql/staging.js';
import { describeStaged } from '../../src/stages/convert-to-dataverse.js';
import { CASES, columnsOf, compileCase } from './tsql-cases.js';

/*
 * One contract, every dialect: each case's rows must get the expected reason (null = converted). DuckDB executes
 * them here; the T-SQL compiled from the same plan parses and matches golden files (tsql-dialect.test.ts) and, with
 * FERRY_MSSQL_URL set, runs on that SQL Server and must give the same reasons.
 */

describe('conversion contract on DuckDB (executed)', () => {
  let duck: DuckDbStaging;
  before(async () => {
    duck = await DuckDbStaging.open({ threads: 1 });
  });
  after(async () => {
    await duck.close();
  });

  for (const c of CASES) {
    test(`case ${c.name}`, async () => {
      const { plan } = await compileCase(c.name, c.mapping);
      const cols = columnsOf(c);
      await duck.run(
        `CREATE OR REPLACE TABLE ${STAGING_TABLES.staged} (${cols.map((n) => `${duckIdent(n)} VARCHAR`).join(', ')}, __row_id BIGINT, __run_id VARCHAR, __source_file VARCHAR, __row_number BIGINT)`,
      );
      for (const [i, r] of c.rows.entries()) {
        const values = cols.map((n) =>
          r.values[n] === null || r.values[n] === undefined ? 'NULL' : duckLiteral(r.values[n]!),
        );
        await duck.run(
          `INSERT INTO ${STAGING_TABLES.staged} VALUES (${values.join(', ')}, ${i + 1}, 'run', 'f.parquet', ${i + 1})`,
        );
      }
      const sql = compileDuck(plan, duckdbDialect, { sources: await describeStaged(duck, duckdbDialect) });
      await duck.run(sql.classify);
      const got = await duck.all<{ __row_id: bigint; __reason: string | null; __payload: string | null }>(
        `SELECT __row_id, __reason, __payload FROM ${CONVERSION_WORK_TABLE} ORDER BY __row_id`,
      );
      assert.deepEqual(
        got.map((g) => g.__reason),
        c.rows.map((r) => r.reason),
      );
      c.rows.forEach((r, i) => {
        if (r.payload) assert.deepEqual(JSON.parse(got[i]!.__payload!), r.payload, `DuckDB payload of row ${i + 1}`);
      });
      // The reference converter agrees on every row (the oracle both dialects are held to).
      c.rows.forEach((r, i) => {
        const ref = referenceConvert(plan, r.values);
        assert.equal(ref.ok ? null : ref.reason, r.reason, `reference on row ${i + 1}`);
        if (r.payload && ref.ok)
          assert.deepEqual(JSON.parse(ref.payload), r.payload, `reference payload of row ${i + 1}`);
      });
    });
  }
});

const url = process.env.FERRY_MSSQL_URL;
describe('conversion contract on SQL Server (live)', {
  skip: url
    ? false
    : 'set FERRY_MSSQL_URL (e.g. "Server=localhost,1433;Database=ferry;User Id=sa;Password=...;TrustServerCertificate=true") to run the T-SQL contract against a real SQL Server',
}, () => {
  test('every case gives the expected reasons, and leases exclude each other', async () => {
    const { TsqlStaging } = await import('../../src/dialects/tsql/driver.js');
    const a = await TsqlStaging.open(url!);
    const b = await TsqlStaging.open(url!);
    try {
      for (const s of stateSchemaStatements()) await a.run(s);
      for (const c of CASES) {
        const { compiled } = await compileCase(c.name, c.mapping);
        const base = c.name.replaceAll('-', '_');
        const staged = tsqlIdent(`stg_${base}_staged`);
        const cols = columnsOf(c);
        await a.run(`DROP TABLE IF EXISTS ${staged}`);
        await a.run(
          `CREATE TABLE ${staged} (${cols.map((n) => `${tsqlIdent(n)} NVARCHAR(4000) NULL`).join(', ')}, [__source_file] NVARCHAR(400) NULL)`,
        );
        for (const r of c.rows) {
          await a.run(
            `INSERT INTO ${staged} VALUES (${cols.map((n) => (r.values[n] == null ? 'NULL' : tsqlLiteral(r.values[n]!))).join(', ')}, N'f.parquet')`,
          );
        }
        for (const s of [...compiled.lineage, ...compiled.classify, ...compiled.converted]) await a.run(s);
        for (const s of compiled.rejects) await a.runNamed(s, { run_id: `contract-${base}`, pipeline: 'contract' });
        const got = await a.all<{ __reason: string | null; __payload: string | null }>(
          `SELECT [__reason], [__payload] FROM ${tsqlIdent(`stg_${base}_work`)} ORDER BY [__row_id]`,
        );
        assert.deepEqual(
          got.map((g) => g.__reason),
          c.rows.map((r) => r.reason),
          `reasons of ${c.name}`,
        );
        c.rows.forEach((r, i) => {
          if (r.payload)
            assert.deepEqual(JSON.parse(got[i]!.__payload!), r.payload, `T-SQL payload of ${c.name} row ${i + 1}`);
        });
      }
      // Generated rows: T-SQL reasons equal the reference converter's on every row.
      const accounts = CASES.find((c) => c.name === 'account-rules')!;
      const { compiled: gen, plan } = await compileCase('generated', accounts.mapping);
      const pools: Record<string, readonly (string | null)[]> = {
        account_name: ['Contoso', 'x'.repeat(160), 'x'.repeat(161), "O'Brien", null],
        revenue: ['10.5', '0', '1.234', 'abc', '-1', '100000000000000', '100000000000001', null],
        employees: ['12', '-5', '1000000001', '3.5', 'x', null],
        industry: ['Accounting', 'accounting ', 'Nonsense', '1', null],
        credit_hold: ['yes', 'N', '0', 'maybe', null],
        parent_no: ['P1', "P'1", 'P/1', null],
        onboarded: ['2024-01-02T03:04:05+02:00', '2024-01-02T03:04:05Z', 'yesterday', '1700-01-01T00:00:00Z', null],
        audit: ['2024-05-06', '1700-01-01', '2024-13-01', null],
        interests: ['Software;Hardware', 'Software;Gardening', ';', null],
        latitude: ['47.5', '91', '-90', 'n/a', null],
      };
      let seed = 7;
      const rnd = () => {
        seed = (seed * 1103515245 + 12345) % 2147483648;
        return seed / 2147483648;
      };
      const rows = Array.from({ length: 400 }, (_, i) => {
        const values: Record<string, string | null> = { account_no: `G${i}`, modified_at: '2026-01-01T00:00:00Z' };
        for (const [k, pool] of Object.entries(pools)) values[k] = pool[Math.floor(rnd() * pool.length)] ?? null;
        return values;
      });
      const cols = Object.keys(rows[0]!);
      await a.run('DROP TABLE IF EXISTS [stg_generated_staged]');
      await a.run(
        `CREATE TABLE [stg_generated_staged] (${cols.map((n) => `${tsqlIdent(n)} NVARCHAR(4000) NULL`).join(', ')}, [__source_file] NVARCHAR(400) NULL)`,
      );
      for (let i = 0; i < rows.length; i += 100) {
        const chunk = rows.slice(i, i + 100);
        await a.run(
          `INSERT INTO [stg_generated_staged] VALUES ${chunk.map((r) => `(${cols.map((n) => (r[n] == null ? 'NULL' : tsqlLiteral(r[n]!))).join(', ')}, N'g.parquet')`).join(', ')}`,
        );
      }
      for (const s of [...gen.lineage, ...gen.classify]) await a.run(s);
      const generated = await a.all<{ __reason: string | null }>(
        'SELECT [__reason] FROM [stg_generated_work] ORDER BY [__row_id]',
      );
      rows.forEach((r, i) => {
        const ref = referenceConvert(plan, r);
        assert.equal(
          generated[i]?.__reason ?? null,
          ref.ok ? null : ref.reason,
          `generated row ${i + 1}: ${JSON.stringify(r)}`,
        );
      });
      const resource = leaseResource('contract-test');
      // One batch each: the lock belongs to the session that ran sp_getapplock.
      const lease = acquireLeaseSql(resource).join(';\n');
      assert.equal((await a.all<{ acquired: number }>(lease))[0]?.acquired, 1);
      assert.equal(
        (await b.all<{ acquired: number }>(lease))[0]?.acquired,
        0,
        'a second session cannot take the lease',
      );
      await a.run(releaseLeaseSql(resource));
    } finally {
      await a.close();
      await b.close();
    }
  });
});
