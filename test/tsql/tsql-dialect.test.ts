import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import { createRequire } from 'node:module';
import path from 'node:path';
import { describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import {
  acquireLeaseSql,
  insertValuesStatements,
  leaseResource,
  mergeStatement,
  releaseLeaseSql,
  rowsPerInsert,
  saveCursorSql,
  stagingTableDdl,
  stateSchemaStatements,
  TSQL_CAPABILITIES,
} from '../../src/dialects/tsql/staging.js';
import { CASES, compileCase } from './tsql-cases.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '..', '..');
const goldenDir = path.join(root, 'test', 'golden', 'tsql');
const require = createRequire(import.meta.url);
const { Parser } = require('node-sql-parser/build/transactsql.js') as {
  Parser: new () => { astify(sql: string, opt: object): unknown };
};
const parser = new Parser();

/** Statements node-sql-parser 5.4's TransactSQL grammar has no rule for; checked by decomposition or golden files. */
const PARSER_GAPS: readonly { readonly pattern: RegExp; readonly why: string }[] = [
  {
    pattern: /^MERGE INTO /,
    why: 'no MERGE in the grammar: checked by decomposing into UPDATE ... FROM and INSERT ... SELECT',
  },
  { pattern: /^(CREATE|DROP) EXTERNAL /, why: 'serverless-only DDL (CETAS, data sources): golden files and --check' },
  {
    pattern: /^IF NOT EXISTS \(SELECT 1 FROM sys\.(database_scoped_credentials|external_)/,
    why: 'serverless-only DDL',
  },
  {
    pattern:
      /^SELECT .* INTO \[stg_\w+_replay_rows\] FROM \[stg_\w+_replay_claimed\] AS c CROSS APPLY OPENJSON\(c\.\[row_json\]\) WITH \(/,
    why: 'no OPENJSON ... WITH in the grammar (a replay rebuilding source rows from the error store): held to its shape in test/synapse-runtime/export-replay.test.ts',
  },
  {
    pattern: /^(GRANT |IF NOT EXISTS \(SELECT 1 FROM sys\.symmetric_keys |IF USER_ID\(N'[^']+'\) IS NULL CREATE USER )/,
    why: 'security DDL (grants, master key, users FROM EXTERNAL PROVIDER): held to its shape in test/export/synapse-setup.test.ts',
  },
];

function parseTsql(statement: string): void {
  parser.astify(statement, { database: 'TransactSQL' });
}

/** Every statement parses, or is a known gap checked another way. */
function assertParses(statement: string): void {
  const gap = PARSER_GAPS.find((g) => g.pattern.test(statement));
  if (gap?.pattern.source.startsWith('^MERGE')) {
    assertMergeParts(statement);
    return;
  }
  if (gap) return;
  try {
    parseTsql(statement);
  } catch (error) {
    assert.fail(`T-SQL does not parse: ${(error as Error).message.slice(0, 200)}\n  ${statement.slice(0, 400)}`);
  }
}

/** MERGE → the equivalent UPDATE ... FROM and INSERT ... SELECT, each of which must parse. */
function assertMergeParts(statement: string): void {
  const m =
    /^MERGE INTO (\S+) WITH \(HOLDLOCK\) AS tgt USING (.+?) AS src ON (.+?)(?: WHEN MATCHED(?: AND (.+?))? THEN UPDATE SET (.+?))? WHEN NOT MATCHED BY TARGET THEN INSERT \((.+?)\) VALUES \((.+?)\);?$/.exec(
      statement,
    );
  assert.ok(m, `MERGE has the expected shape: ${statement.slice(0, 200)}`);
  const [, target, source, on, extra, set, cols, values] = m;
  const src = source!.startsWith('(') ? source : source;
  if (set)
    parseTsql(
      `UPDATE tgt SET ${set} FROM ${target} AS tgt INNER JOIN ${src} AS src ON ${on}${extra ? ` WHERE ${extra}` : ''}`,
    );
  parseTsql(`INSERT INTO ${target} (${cols}) SELECT ${values} FROM ${src} AS src`);
}

describe('T-SQL dialect: capabilities as data', () => {
  test('INSERT ... VALUES batches respect 1,000 rows and 2,100 parameters', () => {
    assert.equal(TSQL_CAPABILITIES.maxParameters, 2100);
    assert.equal(TSQL_CAPABILITIES.maxRowsPerInsertValues, 1000);
    assert.equal(rowsPerInsert(2), 1000);
    assert.equal(rowsPerInsert(3), 700);
    assert.equal(rowsPerInsert(5000), 1);
    const rows = Array.from({ length: 2500 }, (_, i) => [i, `n'${i}`]);
    const statements = insertValuesStatements('dbo', 't', ['id', 'name'], rows);
    assert.deepEqual(
      statements.map((s) => s.split('), (').length),
      [1000, 1000, 500],
    );
    assert.match(statements[0]!, /^INSERT INTO \[dbo\]\.\[t\] \(\[id\], \[name\]\) VALUES \(0, N'n''0'\), /);
    const wide = insertValuesStatements(
      'dbo',
      't',
      ['a', 'b', 'c'],
      Array.from({ length: 1500 }, () => [1, 2, 3]),
    );
    assert.deepEqual(
      wide.map((s) => s.split('), (').length),
      [700, 700, 100],
    );
    for (const s of [...statements, ...wide]) assertParses(s);
  });
});

describe('T-SQL dialect: every generated statement parses (node-sql-parser, TransactSQL)', () => {
  test('state and error store, staging DDL, leases, cursor MERGE', () => {
    const statements = [
      ...stateSchemaStatements(),
      ...stagingTableDdl('', 'stg_x', [
        { name: 'a', type: 'NVARCHAR(100)', nullable: false },
        { name: 'b', type: 'DECIMAL(38, 10)' },
      ]),
      ...acquireLeaseSql(leaseResource('accounts-inbound')),
      releaseLeaseSql(leaseResource('accounts-inbound')),
      saveCursorSql(),
      mergeStatement({
        target: { schema: 'ferry', table: 'kv' },
        source: { schema: '', table: 'stg_kv' },
        keys: ['namespace', 'key'],
        columns: ['value'],
      }),
    ];
    for (const s of statements) assertParses(s);
    // The state tables mirror the SQLite store's tables and columns.
    const tables = stateSchemaStatements().join('\n');
    for (const t of ['runs', 'processed_items', 'cursors', 'leases', 'lease_tokens', 'rejects', 'kv'])
      assert.match(tables, new RegExp(`CREATE TABLE \\[ferry\\]\\.\\[${t}\\]`));
    for (const c of [
      'window_json',
      'rejects_by_reason_json',
      'parent_run_id',
      'metrics_json',
      'item_timestamp',
      'expires_at_ms',
      'last_token',
      'service_error_json',
      'resolved_by_run',
    ]) {
      assert.match(tables, new RegExp(`\\[${c}\\]`));
    }
  });

  for (const c of CASES) {
    test(`conversion of case ${c.name}`, async () => {
      const { statements } = await compileCase(c.name, c.mapping);
      for (const s of statements) assertParses(s);
    });
  }

  test('the checked-in sql/tsql files', async () => {
    const files: string[] = [];
    const walk = async (dir: string) => {
      for (const e of await fs.readdir(dir, { withFileTypes: true })) {
        const p = path.join(dir, e.name);
        if (e.isDirectory()) await walk(p);
        else if (p.endsWith('.sql') && !p.includes(`${path.sep}extract${path.sep}`)) files.push(p);
      }
    };
    await walk(path.join(root, 'sql', 'tsql'));
    assert.ok(files.length >= 3);
    let n = 0;
    for (const f of files) {
      const text = (await fs.readFile(f, 'utf8')).replace(/^--.*$/gm, '');
      // Extract scripts carry pipeline expressions (@{...}) and serverless syntax: golden + --check cover them.
      if (f.includes(`${path.sep}extract-`)) continue;
      for (const s of text
        .split(/;\n\n/)
        .map((x) => x.trim().replace(/;$/, ''))
        .filter(Boolean)) {
        assertParses(s);
        n++;
      }
    }
    assert.ok(n > 20, `parsed ${n} statements`);
  });
});

describe('T-SQL in the checked-in Synapse pipelines parses', () => {
  test('every Script activity statement, with pipeline expressions (@{...}) replaced by a literal', async () => {
    const dir = path.join(root, 'synapse', 'pipeline');
    let n = 0;
    for (const f of (await fs.readdir(dir)).sort()) {
      const pipeline = JSON.parse(await fs.readFile(path.join(dir, f), 'utf8')) as {
        properties: {
          activities: { type: string; typeProperties: { scripts?: { text: string | { value: string } }[] } }[];
        };
      };
      for (const a of pipeline.properties.activities) {
        if (a.type !== 'Script') continue;
        for (const script of a.typeProperties.scripts ?? []) {
          const text = (typeof script.text === 'string' ? script.text : script.text.value).replace(/@\{[^}]*\}/g, '0');
          for (const s of text
            .split(/;\n/)
            .map((x) => x.trim().replace(/;$/, ''))
            .filter(Boolean)) {
            assertParses(s);
            n++;
          }
        }
      }
    }
    assert.ok(n > 50, `parsed ${n} statements`);
  });

  test('the lookup-target check inside IfNewFiles (chunks, the chunk Lookup query, the apply script) parses', async () => {
    const dir = path.join(root, 'synapse', 'pipeline');
    type Activity = { name: string; type: string; typeProperties?: Record<string, unknown> };
    const texts: string[] = [];
    const walk = (list: unknown) => {
      for (const a of (Array.isArray(list) ? list : []) as Activity[]) {
        const tp = a.typeProperties ?? {};
        walk(tp.ifTrueActivities);
        walk(tp.activities);
        if (!/^(ListLookupTargets_|ReadLookupTargetChunk_|ApplyLookupTargetCheck$)/.test(a.name)) continue;
        const scripts = (tp.scripts ?? []) as { text: string | { value: string } }[];
        for (const s of scripts) texts.push(typeof s.text === 'string' ? s.text : s.text.value);
        const query = (tp.source as { sqlReaderQuery?: string | { value: string } } | undefined)?.sqlReaderQuery;
        if (query) texts.push(typeof query === 'string' ? query : query.value);
      }
    };
    for (const f of (await fs.readdir(dir)).sort())
      walk(
        (JSON.parse(await fs.readFile(path.join(dir, f), 'utf8')) as { properties: { activities: unknown } }).properties
          .activities,
      );
    let n = 0;
    for (const text of texts) {
      for (const s of text
        .replace(/@\{[^}]*\}/g, '0')
        .split(/;\n/)
        .map((x) =>
          x
            .replace(/^(\s*--[^\n]*\n)*/, '')
            .trim()
            .replace(/;$/, ''),
        )
        .filter(Boolean)) {
        assertParses(s);
        n++;
      }
    }
    assert.ok(texts.length >= 10 && n > 30, `parsed ${n} statements of ${texts.length} scripts`);
  });
});

describe('T-SQL dialect: golden files (UPDATE_GOLDEN=1 rewrites them)', () => {
  for (const c of CASES) {
    test(`case ${c.name}`, async () => {
      const { statements } = await compileCase(c.name, c.mapping);
      const text = `${statements.map((s) => `${s};`).join('\n\n')}\n`;
      const file = path.join(goldenDir, `${c.name}.sql`);
      if (process.env.UPDATE_GOLDEN === '1') {
        await fs.mkdir(goldenDir, { recursive: true });
        await fs.writeFile(file, text);
      }
      const golden = await fs.readFile(file, 'utf8').catch(() => undefined);
      assert.ok(
        golden !== undefined,
        `golden file ${file} is missing; run UPDATE_GOLDEN=1 node --import tsx --test test/tsql/*.test.ts`,
      );
      assert.equal(
        text,
        golden,
        `T-SQL for ${c.name} differs from ${file}; if the change is intended, run with UPDATE_GOLDEN=1 and review the diff`,
      );
    });
  }
});
