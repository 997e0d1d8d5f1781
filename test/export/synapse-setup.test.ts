/**
 * Review defect 7: the one-time setup scripts are complete and in order — database, master key before the
 * credential, the workspace managed identity's users (FROM EXTERNAL PROVIDER) and their grants — and parse as T-SQL.
 * node-sql-parser's TransactSQL grammar has no rule for a few security statements (CREATE MASTER KEY, CREATE USER …
 * FROM EXTERNAL PROVIDER, GRANT); those are held to their documented shape here instead.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import { createRequire } from 'node:module';
import path from 'node:path';
import { describe, test } from 'node:test';

const require = createRequire(import.meta.url);
const { Parser } = require('node-sql-parser/build/transactsql.js') as {
  Parser: new () => { astify(sql: string, opt: object): unknown };
};
const parser = new Parser();
const SETUP = path.join('sql', 'tsql', 'setup');

/** Statement shapes the grammar lacks, each with the documented syntax it must follow. */
const SECURITY_DDL: readonly [string, RegExp][] = [
  [
    'CREATE MASTER KEY (guarded, password from a sqlcmd variable)',
    /^IF NOT EXISTS \(SELECT 1 FROM sys\.symmetric_keys WHERE name = N'##MS_DatabaseMasterKey##'\) CREATE MASTER KEY ENCRYPTION BY PASSWORD = '\$\(FERRY_MASTER_KEY\)'$/,
  ],
  [
    'CREATE USER … FROM EXTERNAL PROVIDER (guarded)',
    /^IF USER_ID\(N'[^']+'\) IS NULL CREATE USER \[[^\]]+\] FROM EXTERNAL PROVIDER$/,
  ],
  [
    'GRANT',
    /^GRANT (REFERENCES ON DATABASE SCOPED CREDENTIAL::\[\w+\]|ADMINISTER DATABASE BULK OPERATIONS|CREATE TABLE|ALTER ON SCHEMA::\[\w+\]|SELECT ON SCHEMA::\[\w+\]|ALTER ANY EXTERNAL DATA SOURCE|ALTER ANY EXTERNAL FILE FORMAT) TO \[[^\]]+\]$/,
  ],
  [
    'serverless external objects (guarded)',
    /^IF NOT EXISTS \(SELECT 1 FROM sys\.(database_scoped_credentials|external_data_sources|external_file_formats) WHERE name = N'\w+'\) CREATE (DATABASE SCOPED CREDENTIAL|EXTERNAL DATA SOURCE|EXTERNAL FILE FORMAT) /,
  ],
];

async function statements(file: string): Promise<string[]> {
  const text = (await fs.readFile(path.join(SETUP, file), 'utf8')).replace(/^--.*$/gm, '');
  return text
    .split(/;\n\n/)
    .map((x) => x.trim().replace(/;$/, ''))
    .filter(Boolean);
}

function check(statement: string): string {
  try {
    parser.astify(statement, { database: 'TransactSQL' });
    return 'parsed';
  } catch {
    const shape = SECURITY_DDL.find(([, re]) => re.test(statement));
    assert.ok(shape, `neither parses nor has a known security-DDL shape: ${statement.slice(0, 200)}`);
    return shape[0];
  }
}

describe('export defect 7: one-time setup', () => {
  test('the serverless database is created in master, with a UTF-8 collation', async () => {
    const s = await statements('serverless-database.sql');
    assert.deepEqual(s, [
      "IF DB_ID(N'ferry_extract') IS NULL CREATE DATABASE [ferry_extract] COLLATE Latin1_General_100_BIN2_UTF8",
    ]);
    assert.equal(check(s[0]!), 'parsed');
  });

  test('serverless: master key, then credential, data sources, format, schema, user, grants', async () => {
    const s = await statements('serverless.sql');
    for (const x of s) check(x);
    const at = (re: RegExp) => s.findIndex((x) => re.test(x));
    assert.ok(at(/CREATE MASTER KEY/) >= 0, 'creates the master key');
    assert.ok(at(/CREATE MASTER KEY/) < at(/CREATE DATABASE SCOPED CREDENTIAL/), 'the master key comes first');
    assert.ok(at(/CREATE USER \[ferry-ws\] FROM EXTERNAL PROVIDER/) > at(/CREATE SCHEMA/));
    for (const g of [
      /GRANT REFERENCES ON DATABASE SCOPED CREDENTIAL::\[ferry_workspace_identity\] TO \[ferry-ws\]/,
      /GRANT ADMINISTER DATABASE BULK OPERATIONS TO \[ferry-ws\]/,
      /GRANT CREATE TABLE TO \[ferry-ws\]/,
      /GRANT ALTER ON SCHEMA::\[ferry_out\] TO \[ferry-ws\]/,
    ])
      assert.ok(at(g) > at(/CREATE USER/), `grants ${g.source}`);
    assert.ok(!s.some((x) => /PASSWORD = '(?!\$\()/.test(x)), 'no password literal');
  });

  test('Azure SQL: the workspace identity as a user with read/write and DDL in dbo', async () => {
    const s = await statements('azure-sql-access.sql');
    for (const x of s) check(x);
    assert.match(s[0]!, /CREATE USER \[ferry-ws\] FROM EXTERNAL PROVIDER/);
    for (const role of ['db_datareader', 'db_datawriter', 'db_ddladmin'])
      assert.ok(s.includes(`ALTER ROLE ${role} ADD MEMBER [ferry-ws]`), role);
    assert.ok(s.includes('GRANT ALTER ON SCHEMA::[dbo] TO [ferry-ws]'));
  });
});
