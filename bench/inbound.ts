/**
 * `npm run bench -- inbound --rows 1000000`: generates a delta Parquet file, runs ferry's local inbound stages
 * (Parquet → staging → conversion → payloads ready to send; no Dataverse involved) through the real runner, then a
 * DuckDB-only reference pass (`read_parquet` → `to_json`). Each pass runs in a child process of its own, so the peak
 * RSS reported for ferry is that of the process that ran the pipeline and nothing else (not the generator's, not the
 * reference's). Prints rows/s of both, their ratio and the peak RSS; the last line is one JSON object.
 *
 * `npm run bench -- inbound-e2e --rows 1000000 [--time-scale 100]`: the same rows end to end, through the upsert
 * stage, against the emulator (`default` profile, time-scaled) running in a process of its own; reports the ferry
 * process's peak RSS, rows/s and the emulator's ceiling for the workload.
 */

import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { LocalLake } from '../src/connectors/lake/local-lake.js';
import { SqliteStateStore } from '../src/connectors/state/sqlite-state-store.js';
import { resolveConfig } from '../src/core/config.js';
import { silentLogger } from '../src/core/log.js';
import { definePipeline } from '../src/core/pipeline.js';
import { runPipeline } from '../src/core/runner.js';
import { DuckDbStaging, openRunStaging } from '../src/dialects/duckdb/driver.js';
import { ceilingFor } from '../src/emulator/throttle-model.js';
import { convertToDataverse } from '../src/stages/convert-to-dataverse/spec.js';
import { readParquetDeltas } from '../src/stages/read-parquet-deltas/spec.js';
import { stageRegistry } from '../src/stages/registry.js';
import { upsertDataverse } from '../src/stages/upsert-dataverse/spec.js';

const INDUSTRIES = ['Accounting', 'Consulting', 'Brokers', 'Business Services', 'Durable Manufacturing'];

/** Deterministic accounts-like rows: strings, exact decimals, timestamps, choices, lookups. */
export function sourceSql(rows: number): string {
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

export const MAPPING = {
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

const out = (line: string) => process.stdout.write(`${line}\n`);
const SELF = fileURLToPath(import.meta.url);

/** Runs `bench/inbound.ts <flag> ...args` in a child process and returns the JSON object its last line holds. */
function child<T>(flag: string, args: readonly string[]): T {
  const result = spawnSync(process.execPath, ['--import', 'tsx', SELF, flag, ...args], {
    stdio: ['ignore', 'pipe', 'inherit'],
    encoding: 'utf8',
    maxBuffer: 64 * 2 ** 20,
  });
  const lines = (result.stdout ?? '').trim().split('\n');
  for (const line of lines.slice(0, -1)) out(line);
  if (result.status !== 0) throw new Error(`bench child ${flag} failed with ${result.status ?? result.signal}`);
  return JSON.parse(lines.at(-1)!) as T;
}

function ownPeakRssMiB(): number {
  return Math.round(process.resourceUsage().maxRSS / 1024);
}

async function generate(file: string, rows: number): Promise<void> {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  const gen = await DuckDbStaging.open({ tempDirectory: fs.mkdtempSync(path.join(os.tmpdir(), 'ferry-bench-spill-')) });
  await gen.run(`COPY (${sourceSql(rows)}) TO '${file}' (FORMAT PARQUET, COMPRESSION zstd, ROW_GROUP_SIZE 122880)`);
  await gen.close();
}

interface FerryPass {
  seconds: number;
  converted: number;
  upserted: number;
  rejected: number;
  skippedStale: number;
  stageMs: unknown;
  convertSqlMs: unknown;
  metrics: Record<string, unknown>;
  peakRssMiB: number;
  /** Where the memory was when RSS peaked: seconds into the run, JS heap and native (ArrayBuffers, DuckDB). */
  atPeak: { sec: number; rssMiB: number; heapUsedMiB: number; externalMiB: number };
}

/** Samples the process's memory every 200 ms; `stop` returns the sample with the highest RSS. */
function memorySampler(): { stop: () => FerryPass['atPeak'] } {
  const started = performance.now();
  let peak: FerryPass['atPeak'] = { sec: 0, rssMiB: 0, heapUsedMiB: 0, externalMiB: 0 };
  const mib = (n: number) => Math.round(n / 2 ** 20);
  const sample = () => {
    const m = process.memoryUsage();
    if (mib(m.rss) > peak.rssMiB)
      peak = {
        sec: Math.round((performance.now() - started) / 100) / 10,
        rssMiB: mib(m.rss),
        heapUsedMiB: mib(m.heapUsed),
        externalMiB: mib(m.external),
      };
  };
  const timer = setInterval(sample, 200);
  timer.unref();
  return {
    stop: () => {
      clearInterval(timer);
      sample();
      return peak;
    },
  };
}

/** Child: the real runner over the lake in `dir`, with or without the upsert stage. */
async function ferryPass(dir: string, dataverseUrl: string | undefined): Promise<FerryPass> {
  const lakeDir = path.join(dir, 'lake');
  const config = resolveConfig(
    { lake: lakeDir, state: path.join(dir, 'state'), metadata: path.resolve('fixtures/metadata') },
    process.env,
  );
  const state = SqliteStateStore.openIn(config.state);
  // End to end against an empty emulator: no currency records exist, so the currency lookup stays out.
  const { transactioncurrencyid: _currency, ...columns } = MAPPING.columns;
  const pipeline = definePipeline({
    name: 'bench-inbound',
    direction: 'inbound',
    stages: dataverseUrl
      ? [
          readParquetDeltas({ folder: 'inbound/accounts' }),
          convertToDataverse({ ...MAPPING, columns }),
          upsertDataverse({ table: 'account', batchSize: 100 }),
        ]
      : [readParquetDeltas({ folder: 'inbound/accounts' }), convertToDataverse(MAPPING)],
  });
  const sampler = memorySampler();
  const started = performance.now();
  const report = await runPipeline(pipeline, {
    openStaging: (dir: string) => openRunStaging(dir, {}),
    mode: 'manual',
    config,
    lake: new LocalLake(lakeDir),
    state,
    registry: stageRegistry,
    log: silentLogger,
    ...(dataverseUrl ? { services: { dataverse: { url: dataverseUrl } } } : {}),
  });
  const seconds = (performance.now() - started) / 1000;
  const atPeak = sampler.stop();
  state.close();
  if (report.status !== 'succeeded')
    throw new Error(`bench run ${report.status}: ${report.error?.message ?? JSON.stringify(report.rejectsByReason)}`);
  return {
    seconds,
    converted: report.counts.converted,
    upserted: report.counts.upserted,
    rejected: report.counts.rejected,
    skippedStale: report.counts.skippedStale,
    stageMs: report.metrics.stageMs,
    convertSqlMs: report.metrics['convert.sqlMs'],
    metrics: report.metrics,
    peakRssMiB: ownPeakRssMiB(),
    atPeak,
  };
}

/** Child: DuckDB alone, read_parquet → to_json, materialised like ferry's payload table. */
async function referencePass(file: string): Promise<{ seconds: number; rows: number; peakRssMiB: number }> {
  const started = performance.now();
  // Its own spill folder: DuckDB's default (`.tmp` in the working directory) is shared with any other DuckDB there.
  const ref = await DuckDbStaging.open({
    memoryLimit: '1GB',
    tempDirectory: fs.mkdtempSync(path.join(os.tmpdir(), 'ferry-bench-spill-')),
  });
  await ref.run(`CREATE TABLE payloads AS SELECT to_json(t)::VARCHAR AS payload FROM read_parquet('${file}') t`);
  const [{ n }] = (await ref.all<{ n: bigint }>('SELECT count(*) AS n FROM payloads')) as [{ n: bigint }];
  await ref.close();
  return { seconds: (performance.now() - started) / 1000, rows: Number(n), peakRssMiB: ownPeakRssMiB() };
}

function prepare(rows: number): { dir: string; file: string } {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ferry-bench-inbound-'));
  const file = path.join(dir, 'lake', 'inbound/accounts/2026-11-20T09-00-00Z.parquet');
  const started = performance.now();
  child('--generate', [file, String(rows)]);
  out(
    `generated ${rows} rows (${(fs.statSync(file).size / 1048576).toFixed(1)} MiB Parquet) in ${((performance.now() - started) / 1000).toFixed(1)} s`,
  );
  return { dir, file };
}

export async function runInboundBench(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    options: { rows: { type: 'string', default: '1000000' }, keep: { type: 'boolean', default: false } },
  });
  const rows = Number(values.rows);
  const { dir, file } = prepare(rows);
  try {
    const ferry = child<FerryPass>('--ferry-pass', [dir]);
    const ferryRowsPerSec = Math.round(rows / ferry.seconds);
    out(
      `ferry stages (ms): ${JSON.stringify(ferry.stageMs)}, convert SQL ${ferry.convertSqlMs} ms; memory at the sampled RSS peak ${JSON.stringify(ferry.atPeak)}`,
    );
    out(
      `ferry: ${rows} rows → ${ferry.converted} payloads, ${ferry.rejected} rejected, ${ferry.skippedStale} skipped, in ${ferry.seconds.toFixed(2)} s = ${ferryRowsPerSec} rows/s, peak RSS of the ferry process ${ferry.peakRssMiB} MiB`,
    );
    const ref = child<{ seconds: number; rows: number; peakRssMiB: number }>('--reference-pass', [file]);
    const referenceRowsPerSec = Math.round(ref.rows / ref.seconds);
    out(
      `reference (read_parquet → to_json): ${ref.rows} rows in ${ref.seconds.toFixed(2)} s = ${referenceRowsPerSec} rows/s, peak RSS ${ref.peakRssMiB} MiB`,
    );
    const ratio = Number((ferryRowsPerSec / referenceRowsPerSec).toFixed(3));
    const peakRssMiB = ferry.peakRssMiB;
    out(`ratio ferry/reference ${ratio} (target ≥ 0.6), peak RSS ${peakRssMiB} MiB (target ≤ 1024)`);
    out(
      JSON.stringify({
        rows,
        ferryRowsPerSec,
        referenceRowsPerSec,
        ratio,
        peakRssMiB,
        referencePeakRssMiB: ref.peakRssMiB,
      }),
    );
  } finally {
    if (!values.keep) fs.rmSync(dir, { recursive: true, force: true });
  }
}

/** Reads a process's peak RSS (`VmHWM`) from /proc, in MiB; undefined where /proc is not there. */
function procPeakRssMiB(pid: number): number | undefined {
  try {
    const m = /VmHWM:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Math.round(Number(m[1]) / 1024) : undefined;
  } catch {
    return undefined;
  }
}

export async function runInboundE2eBench(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    options: {
      rows: { type: 'string', default: '1000000' },
      'time-scale': { type: 'string', default: '100' },
      profile: { type: 'string', default: 'default' },
      keep: { type: 'boolean', default: false },
    },
  });
  const rows = Number(values.rows);
  const timeScale = Number(values['time-scale']);
  const { dir } = prepare(rows);
  // The emulator in its own process: its store of `rows` records is not ferry's memory.
  const emulator = spawn(
    process.execPath,
    [
      '--import',
      'tsx',
      path.resolve('src/cli/main.ts'),
      'emulator',
      '--port',
      '0',
      '--profile',
      values.profile!,
      '--time-scale',
      String(timeScale),
      '--metadata',
      path.resolve('fixtures/metadata'),
    ],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  try {
    const url = await new Promise<string>((resolve, reject) => {
      let text = '';
      emulator.stdout!.on('data', (chunk: Buffer) => {
        text += chunk.toString('utf8');
        const m = /listening on (http:\/\/\S+)/.exec(text);
        if (m) resolve(m[1]!);
      });
      emulator.once('exit', (code) => reject(new Error(`emulator exited with ${code}`)));
    });
    out(`emulator (${values.profile}, time scale ${timeScale}) at ${url}, pid ${emulator.pid}`);
    const ferry = child<FerryPass>('--ferry-pass', [dir, url]);
    const emulatorPeakRssMiB = procPeakRssMiB(emulator.pid!);
    const rowsPerSec = Math.round(ferry.upserted / ferry.seconds);
    const ceilingRowsPerSec = Math.round(
      ceilingFor(values.profile!, { operation: 'upsert', batchSize: 100, timeScale }),
    );
    const m = ferry.metrics;
    out(
      `ferry stages (ms): ${JSON.stringify(ferry.stageMs)}; memory at the sampled RSS peak ${JSON.stringify(ferry.atPeak)}`,
    );
    out(
      `ferry end to end: ${rows} rows → ${ferry.upserted} upserted, ${ferry.rejected} rejected, ${ferry.skippedStale} skipped, in ${ferry.seconds.toFixed(1)} s; upsert ${rowsPerSec} rows/s overall vs the emulator's ceiling ${ceilingRowsPerSec} rows/s for the upsert stage alone; ${String(m.requests)} requests, ${String(m.throttled429Total)} × 429; peak RSS of the ferry process ${ferry.peakRssMiB} MiB (target ≤ 1024), of the emulator ${emulatorPeakRssMiB ?? '?'} MiB`,
    );
    out(
      JSON.stringify({
        rows,
        timeScale,
        profile: values.profile,
        seconds: Math.round(ferry.seconds * 10) / 10,
        upserted: ferry.upserted,
        rejected: ferry.rejected,
        rowsPerSec,
        upsertStageRowsPerSec: m.rowsPerSec ?? null,
        ceilingRowsPerSec,
        requests: m.requests ?? null,
        throttled429: m.throttled429Total ?? null,
        peakRssMiB: ferry.peakRssMiB,
        emulatorPeakRssMiB: emulatorPeakRssMiB ?? null,
      }),
    );
  } finally {
    emulator.kill('SIGTERM');
    if (!values.keep) fs.rmSync(dir, { recursive: true, force: true });
  }
}

// Child-process entries (see `child`).
if (path.resolve(process.argv[1] ?? '') === SELF) {
  const [flag, a, b] = process.argv.slice(2);
  if (flag === '--generate') {
    await generate(a!, Number(b));
    out('{}');
  } else if (flag === '--ferry-pass') out(JSON.stringify(await ferryPass(a!, b)));
  else if (flag === '--reference-pass') out(JSON.stringify(await referencePass(a!)));
  else out('{}');
}
