/**
 * `npm run bench -- inbound --rows 1000000`: generates a delta Parquet file, runs ferry's local inbound stages
 * (Parquet → staging → conversion → payloads ready to send; no Dataverse involved) through the real runner, then, in
 * the same process, a DuckDB-only reference pass (`read_parquet` → `to_json`). Prints rows/s of both, their ratio and
 * the peak RSS; the last line is one JSON object.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { LocalLake } from '../src/connectors/lake/local-lake.js';
import { SqliteStateStore } from '../src/connectors/state/sqlite-state-store.js';
import { resolveConfig } from '../src/core/config.js';
import { silentLogger } from '../src/core/log.js';
import { definePipeline } from '../src/core/pipeline.js';
import { runPipeline } from '../src/core/runner.js';
import { DuckDbStaging } from '../src/dialects/duckdb/duckdb-staging.js';
import { convertToDataverse } from '../src/stages/convert-to-dataverse.js';
import { readParquetDeltas } from '../src/stages/read-parquet-deltas.js';
import { stageRegistry } from '../src/stages/registry.js';

const INDUSTRIES = ['Accounting', 'Consulting', 'Brokers', 'Business Services', 'Durable Manufacturing'];

/** Deterministic accounts-like rows: strings, exact decimals, timestamps, choices, lookups. */
function sourceSql(rows: number): string {
  return `SELECT
      'A-' || lpad(i::VARCHAR, 9, '0') AS account_no,
      'Account ' || i || ' ' || repeat(chr(65 + (i % 26)::INTEGER), (i % 40)::INTEGER) AS account_name,
      CASE WHEN i % 10 = 0 THEN NULL ELSE 'A-' || lpad((i // 10)::VARCHAR, 9, '0') END AS parent_account_no,
      ((hash(i) % 100000000000)::DECIMAL(19,4) / 100)::DECIMAL(19,4) AS annual_revenue,
      ((hash(i * 7) % 10000000)::DECIMAL(18,2) / 100)::DECIMAL(18,2) AS credit_limit,
      (hash(i * 3) % 100000)::INTEGER AS employees,
      ${sqlArray(INDUSTRIES)}[(i % ${INDUSTRIES.length})::INTEGER + 1] AS industry,
      (i % 3 = 0) AS credit_hold,
      CASE WHEN i % 5 = 0 THEN NULL ELSE 'Notes for account ' || i || ', with "quotes" and unicode é ✓' END AS notes,
      ((hash(i * 11) % 18000000)::DOUBLE / 100000 - 90)::DOUBLE AS latitude,
      ((hash(i * 13) % 1000000)::DECIMAL(18,4) / 10000)::DECIMAL(9,4) AS risk_score,
      DATE '2020-01-01' + (i % 2000)::INTEGER AS last_audit,
      TIMESTAMP '2015-01-01 00:00:00' + INTERVAL (i % 100000000) SECOND AS onboarded_at,
      ['EUR', 'USD', 'GBP'][(i % 3)::INTEGER + 1] AS currency,
      CASE WHEN i % 7 = 0 THEN 'Inactive' ELSE 'Active' END AS status,
      TIMESTAMP '2026-11-20 08:00:00' + INTERVAL (i % 3600) SECOND AS modified_at
    FROM range(${rows}) t(i)`;
}

function sqlArray(values: readonly string[]): string {
  return `[${values.map((v) => `'${v}'`).join(', ')}]`;
}

const MAPPING = {
  table: 'account',
  key: ['accountnumber'],
  changeTimestamp: 'modified_at',
  columns: {
    accountnumber: 'account_no',
    name: 'account_name',
    parentaccountid: { from: 'parent_account_no', lookup: { table: 'account', key: 'accountnumber' } },
    revenue: 'annual_revenue',
    creditlimit: 'credit_limit',
    numberofemployees: 'employees',
    industrycode: { from: 'industry', choice: 'label' as const },
    creditonhold: 'credit_hold',
    description: 'notes',
    address1_latitude: 'latitude',
    ferry_riskscore: 'risk_score',
    ferry_lastauditdate: 'last_audit',
    ferry_onboardedon: 'onboarded_at',
    transactioncurrencyid: { from: 'currency', lookup: { table: 'transactioncurrency', key: 'isocurrencycode' } },
    statecode: { from: 'status', choice: 'label' as const },
  },
};

export async function runInboundBench(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    options: { rows: { type: 'string', default: '1000000' }, keep: { type: 'boolean', default: false } },
  });
  const rows = Number(values.rows);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ferry-bench-inbound-'));
  const lakeDir = path.join(dir, 'lake');
  const file = path.join(lakeDir, 'inbound/accounts/2026-11-20T09-00-00Z.parquet');
  fs.mkdirSync(path.dirname(file), { recursive: true });
  const out = (line: string) => process.stdout.write(`${line}\n`);

  let started = performance.now();
  const gen = await DuckDbStaging.open();
  await gen.run(`COPY (${sourceSql(rows)}) TO '${file}' (FORMAT PARQUET, COMPRESSION zstd, ROW_GROUP_SIZE 122880)`);
  await gen.close();
  out(
    `generated ${rows} rows (${(fs.statSync(file).size / 1048576).toFixed(1)} MiB Parquet) in ${((performance.now() - started) / 1000).toFixed(1)} s`,
  );

  // ferry: the real runner with the two local stages.
  const config = resolveConfig(
    { lake: lakeDir, state: path.join(dir, 'state'), metadata: path.resolve('fixtures/metadata') },
    {},
  );
  const state = SqliteStateStore.openIn(config.state);
  const pipeline = definePipeline({
    name: 'bench-inbound',
    direction: 'inbound',
    stages: [readParquetDeltas({ folder: 'inbound/accounts' }), convertToDataverse(MAPPING)],
  });
  started = performance.now();
  const report = await runPipeline(pipeline, {
    mode: 'manual',
    config,
    lake: new LocalLake(lakeDir),
    state,
    registry: stageRegistry,
    log: silentLogger,
  });
  const ferrySeconds = (performance.now() - started) / 1000;
  state.close();
  if (report.status !== 'succeeded')
    throw new Error(`bench run ${report.status}: ${report.error?.message ?? JSON.stringify(report.rejectsByReason)}`);
  const ferryRowsPerSec = Math.round(rows / ferrySeconds);
  const ferryPeakRssMiB = Math.round(process.resourceUsage().maxRSS / 1024);
  out(
    `ferry stages (ms): ${JSON.stringify(report.metrics.stageMs)}, convert SQL ${report.metrics['convert.sqlMs']} ms`,
  );
  out(
    `ferry: ${rows} rows → ${report.counts.converted} payloads, ${report.counts.rejected} rejected, ${report.counts.skippedStale} skipped, in ${ferrySeconds.toFixed(2)} s = ${ferryRowsPerSec} rows/s, peak RSS so far ${ferryPeakRssMiB} MiB`,
  );

  // Reference: DuckDB alone, read_parquet → to_json, materialised like ferry's payload table.
  started = performance.now();
  const ref = await DuckDbStaging.open({ memoryLimit: '1GB' });
  await ref.run(`CREATE TABLE payloads AS SELECT to_json(t)::VARCHAR AS payload FROM read_parquet('${file}') t`);
  const [{ n }] = (await ref.all<{ n: bigint }>('SELECT count(*) AS n FROM payloads')) as [{ n: bigint }];
  await ref.close();
  const referenceSeconds = (performance.now() - started) / 1000;
  const referenceRowsPerSec = Math.round(Number(n) / referenceSeconds);
  out(
    `reference (read_parquet → to_json): ${n} rows in ${referenceSeconds.toFixed(2)} s = ${referenceRowsPerSec} rows/s`,
  );

  const peakRssMiB = Math.round(process.resourceUsage().maxRSS / 1024);
  const ratio = Number((ferryRowsPerSec / referenceRowsPerSec).toFixed(3));
  out(`ratio ferry/reference ${ratio} (target ≥ 0.6), peak RSS ${peakRssMiB} MiB (target ≤ 1024)`);
  if (!values.keep) fs.rmSync(dir, { recursive: true, force: true });
  out(JSON.stringify({ rows, ferryRowsPerSec, referenceRowsPerSec, ratio, peakRssMiB }));
}
