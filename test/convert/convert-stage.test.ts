import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, it } from 'node:test';
import { LocalLake } from '../../src/connectors/lake/local-lake.js';
import { SqliteStateStore } from '../../src/connectors/state/sqlite-state-store.js';
import { resolveConfig } from '../../src/core/config.js';
import { FerryError } from '../../src/core/errors.js';
import { silentLogger } from '../../src/core/log.js';
import { definePipeline } from '../../src/core/pipeline.js';
import { runPipeline } from '../../src/core/runner.js';
import type { StageImpl } from '../../src/core/stage.js';
import { DuckDbStaging } from '../../src/dialects/duckdb/driver.js';
import { convertToDataverse, SHARED_TARGET_KEY, versionsFile } from '../../src/stages/convert-to-dataverse.js';
import { readParquetDeltas } from '../../src/stages/read-parquet-deltas.js';
import { registryWith } from '../../src/stages/registry.js';
import { METADATA_DIR } from './convert-helpers.js';

interface Sent {
  key: string;
  predicate: string;
  version: string;
  payload: string;
}

/** Stands in for upsert-dataverse: records what would be sent and "accepts" every row except the refused keys. */
function recordingSink(sent: Sent[][], refuse: Set<string>, shared: unknown[]): StageImpl {
  return {
    kind: 'test-upsert',
    async run(_spec, ctx) {
      shared.push(ctx.shared.get(SHARED_TARGET_KEY));
      const rows = await ctx.staging.all('SELECT * FROM converted ORDER BY __key');
      sent.push(
        rows.map((r) => ({
          key: String(r.__key),
          predicate: String(r.__key_predicate),
          version: String(r.__version),
          payload: String(r.__payload),
        })),
      );
      const refused = [...refuse].map((k) => `'${k.replaceAll("'", "''")}'`).join(', ') || "''";
      await ctx.staging.run(
        `CREATE OR REPLACE TABLE upserted AS SELECT __row_id FROM converted WHERE __key NOT IN (${refused})`,
      );
      const n = await ctx.staging.all('SELECT count(*) AS n FROM upserted');
      ctx.counts.upserted += Number(n[0]!.n);
    },
  };
}

async function writeParquet(file: string, selectSql: string): Promise<void> {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  const db = await DuckDbStaging.open({ threads: 1 });
  await db.run(`COPY (${selectSql}) TO '${file}' (FORMAT PARQUET)`);
  await db.close();
}

function rowsSql(rows: Array<[string | null, string, string]>): string {
  return rows
    .map(
      ([no, name, at]) =>
        `SELECT ${no === null ? 'NULL' : `'${no.replaceAll("'", "''")}'`}::VARCHAR AS account_no, '${name}'::VARCHAR AS account_name, TIMESTAMP '${at}' AS modified_at`,
    )
    .join(' UNION ALL ');
}

async function versions(file: string): Promise<Array<[string, string]>> {
  const db = await DuckDbStaging.open({ threads: 1 });
  try {
    const rows = await db.all(`SELECT key, version FROM read_parquet('${file}') ORDER BY key`);
    return rows.map((r) => [String(r.key), String(r.version)]);
  } finally {
    await db.close();
  }
}

describe('convert-to-dataverse through the runner', () => {
  let dir: string;
  let state: SqliteStateStore;
  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ferry-convert-'));
    state = SqliteStateStore.openIn(path.join(dir, 'state'));
  });
  afterEach(() => {
    state.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  const pipeline = definePipeline({
    name: 'accounts-test',
    direction: 'inbound',
    rejectThreshold: { maxRejectedRatio: 1 },
    stages: [
      readParquetDeltas({ folder: 'in', columns: ['account_no', 'account_name', 'modified_at'] }),
      convertToDataverse({
        table: 'account',
        key: ['accountnumber'],
        changeTimestamp: 'modified_at',
        columns: { accountnumber: 'account_no', name: 'account_name' },
      }),
      { kind: 'test-upsert' },
    ],
  });

  function options(sent: Sent[][], refuse: Set<string>, shared: unknown[] = []) {
    const config = resolveConfig(
      { lake: path.join(dir, 'lake'), state: path.join(dir, 'state'), metadata: METADATA_DIR },
      {},
    );
    return {
      mode: 'manual' as const,
      config,
      lake: new LocalLake(config.lake),
      state,
      registry: registryWith([recordingSink(sent, refuse, shared)]),
      log: silentLogger,
      openStaging: () => DuckDbStaging.open({ threads: 1, memoryLimit: '256MB' }),
    };
  }

  it('collapses versions, rejects bad rows as data, skips stale versions across runs, skips versions already applied', async () => {
    await writeParquet(
      path.join(dir, 'lake/in/2026-11-26T10-00-00Z.parquet'),
      rowsSql([
        ["A'1", 'Old name', '2026-11-26 10:00:00'],
        ['A2', 'Two', '2026-11-26 10:00:00'],
        ['A3', 'x'.repeat(161), '2026-11-26 10:00:00'],
        [null, 'No key', '2026-11-26 10:00:00'],
        ["A'1", 'New name', '2026-11-26 11:00:00'],
      ]),
    );
    const sent: Sent[][] = [];
    const shared: unknown[] = [];
    const first = await runPipeline(pipeline, options(sent, new Set(), shared));
    assert.equal(first.status, 'succeeded', JSON.stringify(first.error));
    assert.deepEqual(
      {
        read: first.counts.read,
        converted: first.counts.converted,
        skippedStale: first.counts.skippedStale,
        rejected: first.counts.rejected,
      },
      { read: 5, converted: 2, skippedStale: 1, rejected: 2 },
    );
    assert.deepEqual(first.rejectsByReason, { 'string.too_long': 1, 'key.missing': 1 });
    assert.deepEqual(sent[0], [
      {
        key: "accountnumber=A'1",
        predicate: "accountnumber='A''1'",
        version: '2026-11-26T11:00:00.000000Z',
        payload: '{"name":"New name"}',
      },
      {
        key: 'accountnumber=A2',
        predicate: "accountnumber='A2'",
        version: '2026-11-26T10:00:00.000000Z',
        payload: '{"name":"Two"}',
      },
    ]);
    assert.deepEqual(shared[0], {
      table: 'account',
      entitySetName: 'accounts',
      primaryIdAttribute: 'accountid',
      keyName: 'ferry_accountnumber_key',
      keyAttributes: ['accountnumber'],
      supportsBulk: true,
    });
    const rejects = state.listRejects({ runId: first.runId }).sort((a, b) => (a.rowNumber ?? 0) - (b.rowNumber ?? 0));
    assert.equal(rejects.length, 2);
    assert.equal(rejects[0]!.stage, 'convert-to-dataverse');
    assert.equal(rejects[0]!.reason, 'string.too_long');
    assert.equal(rejects[0]!.key, 'accountnumber=A3');
    assert.equal(rejects[0]!.sourceFile, 'in/2026-11-26T10-00-00Z.parquet');
    assert.equal(rejects[0]!.rowNumber, 3);
    assert.match(rejects[0]!.message, /Column `name` \(from `account_name` = `xxx/);
    assert.match(rejects[0]!.message, /MaxLength 160/);
    assert.deepEqual(Object.keys(rejects[0]!.row as object).sort(), ['account_name', 'account_no', 'modified_at']);
    assert.equal(rejects[1]!.reason, 'key.missing');
    assert.equal(rejects[1]!.key, null);
    assert.match(rejects[1]!.message, /`accountnumber` \(from `account_no` = `null`\) is empty/);

    const file = versionsFile(path.join(dir, 'state'), 'accounts-test');
    assert.deepEqual(await versions(file), [
      ["accountnumber='A''1'", '2026-11-26T11:00:00.000000Z'],
      ["accountnumber='A2'", '2026-11-26T10:00:00.000000Z'],
    ]);

    // Run 2: an older version of A'1 (stale), the same version of A2 (already applied: skipped), A3 fixed.
    // Dataverse "refuses" A3, so its version is not recorded.
    await writeParquet(
      path.join(dir, 'lake/in/2026-11-26T12-00-00Z.parquet'),
      rowsSql([
        ["A'1", 'Older', '2026-11-26 10:30:00'],
        ['A2', 'Two again', '2026-11-26 10:00:00'],
        ['A3', 'Three', '2026-11-26 09:00:00'],
      ]),
    );
    const second = await runPipeline(pipeline, options(sent, new Set(['accountnumber=A3'])));
    assert.equal(second.status, 'succeeded');
    assert.deepEqual(
      { converted: second.counts.converted, skippedStale: second.counts.skippedStale },
      { converted: 1, skippedStale: 2 },
    );
    assert.deepEqual(
      sent[1]!.map((s) => [s.key, s.payload]),
      [['accountnumber=A3', '{"name":"Three"}']],
    );
    assert.deepEqual(await versions(file), [
      ["accountnumber='A''1'", '2026-11-26T11:00:00.000000Z'],
      ["accountnumber='A2'", '2026-11-26T10:00:00.000000Z'],
    ]);
    assert.deepEqual(
      fs.readdirSync(path.dirname(file)).filter((n) => n.endsWith('.tmp')),
      [],
      'no temp file is left behind',
    );

    // Run 3: A3 at an even older version is still sent: nothing was applied for it.
    await writeParquet(
      path.join(dir, 'lake/in/2026-11-26T13-00-00Z.parquet'),
      rowsSql([['A3', 'Three', '2026-11-26 08:00:00']]),
    );
    const third = await runPipeline(pipeline, options(sent, new Set()));
    assert.deepEqual(
      { converted: third.counts.converted, skippedStale: third.counts.skippedStale },
      { converted: 1, skippedStale: 0 },
    );
    assert.deepEqual(
      (await versions(file)).map(([k]) => k),
      ["accountnumber='A''1'", "accountnumber='A2'", "accountnumber='A3'"],
    );
  });

  it('ties on the change timestamp: the later file, then the later row wins', async () => {
    await writeParquet(
      path.join(dir, 'lake/in/2026-11-26T10-00-00Z.parquet'),
      rowsSql([['T1', 'file1', '2026-11-26 10:00:00']]),
    );
    await writeParquet(
      path.join(dir, 'lake/in/2026-11-26T10-15-00Z.parquet'),
      rowsSql([
        ['T1', 'file2-row1', '2026-11-26 10:00:00'],
        ['T1', 'file2-row2', '2026-11-26 10:00:00'],
      ]),
    );
    const sent: Sent[][] = [];
    const report = await runPipeline(pipeline, options(sent, new Set()));
    assert.deepEqual(
      sent[0]!.map((s) => s.payload),
      ['{"name":"file2-row2"}'],
    );
    assert.equal(report.counts.skippedStale, 2);
  });

  it('a mapping that does not fit the metadata fails the run with a mapping.* error naming the attribute', async () => {
    await writeParquet(
      path.join(dir, 'lake/in/2026-11-26T10-00-00Z.parquet'),
      rowsSql([['A1', 'One', '2026-11-26 10:00:00']]),
    );
    const bad = definePipeline({
      ...pipeline,
      stages: [
        pipeline.stages[0]!,
        convertToDataverse({
          table: 'account',
          key: ['name'],
          changeTimestamp: 'modified_at',
          columns: { name: 'account_name' },
        }),
      ],
    });
    const report = await runPipeline(bad, options([], new Set()));
    assert.equal(report.status, 'failed');
    assert.equal(report.error?.code, 'mapping.key_undefined');
    assert.match(
      report.error?.message ?? '',
      /Key `name` is not an alternate key of `account` \(keys: ferry_accountnumber_key \(accountnumber\)\)/,
    );
    const missingSource = definePipeline({
      ...pipeline,
      stages: [
        pipeline.stages[0]!,
        convertToDataverse({
          table: 'account',
          key: ['accountnumber'],
          changeTimestamp: 'modified_at',
          columns: { accountnumber: 'acct_no' },
        }),
      ],
    });
    const report2 = await runPipeline(missingSource, options([], new Set()));
    assert.equal(report2.error?.code, 'mapping.unknown_source_column');
    assert.match(report2.error?.message ?? '', /`acct_no`/);
  });
});

describe('mapping validation', () => {
  it('rejects unknown attributes, wrong options, read-only columns and bad lookup keys with clear errors', async () => {
    const { plan } = await import('./convert-helpers.js');
    const base = { table: 'account', key: ['accountnumber'], changeTimestamp: 't' } as const;
    const cases: Array<[Record<string, unknown>, string, RegExp]> = [
      [{ accountnumber: 'a', nmae: 'x' }, 'mapping.unknown_attribute', /`nmae` does not exist on `account`/],
      [{ accountnumber: 'a', name: { from: 'x', choice: 'label' } }, 'mapping.wrong_option', /not a choice/],
      [{ accountnumber: 'a', createdon: 'x' }, 'mapping.not_writable', /read-only/],
      [{ accountnumber: 'a', ownerid: 'x' }, 'mapping.lookup_spec', /systemuser or team/],
      [
        { accountnumber: 'a', parentaccountid: { from: 'x', lookup: { table: 'account', key: 'name' } } },
        'mapping.lookup_key',
        /not an Active alternate key of `account`/,
      ],
      [
        { accountnumber: 'a', parentaccountid: { from: 'x', lookup: { table: 'contact' } } },
        'mapping.lookup_target',
        /cannot point to `contact`/,
      ],
      [{ name: 'x' }, 'mapping.key_unmapped', /Key attribute `accountnumber`/],
    ];
    for (const [columns, code, message] of cases) {
      await assert.rejects(plan({ ...base, columns: columns as never }), (e: unknown) => {
        assert.ok(e instanceof FerryError, String(e));
        assert.equal(e.code, code);
        assert.match(e.message, message);
        return true;
      });
    }
  });
});
