/**
 * `npm run bench -- outbound [--rows 1000000] [--folders 4] [--files 2] [--repeat 1] [--keep] [--data <dir>]`: writes Synapse Link CSV (incremental
 * folders, headerless, quoted text with some line breaks, ~1% deletes, ~5% rows updated in a later folder), runs the
 * outbound pipeline (read → default extract → Parquet) through the real runner, then DuckDB's bare
 * `COPY (SELECT * FROM read_csv(...)) TO ... (FORMAT PARQUET)` over the same files, each pass in a child process of
 * its own (so the peak RSS reported for ferry is the ferry process's alone). `--data <dir>` keeps the generated CSV
 * there and reuses it on the next run. Prints both times, the ratio and the peak RSS; the last line is one JSON object.
 */
import { spawnSync } from 'node:child_process';
import { once } from 'node:events';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { LocalLake } from '../src/connectors/lake/local-lake.js';
import { SqliteStateStore } from '../src/connectors/state/sqlite-state-store.js';
import type { CdmAttribute } from '../src/connectors/synapse-link/cdm-model.js';
import { folderNameFor } from '../src/connectors/synapse-link/timestamp-folder.js';
import { resolveConfig } from '../src/core/config.js';
import { silentLogger } from '../src/core/log.js';
import { definePipeline } from '../src/core/pipeline.js';
import { runPipeline } from '../src/core/runner.js';
import { DuckDbStaging, openRunStaging } from '../src/dialects/duckdb/driver.js';
import { readCsvSql } from '../src/dialects/duckdb/synapse-link.js';
import { readSynapseLink } from '../src/stages/read-synapse-link.js';
import { stageRegistry } from '../src/stages/registry.js';
import { runSqlExtract } from '../src/stages/run-sql-extract.js';
import { writeParquet } from '../src/stages/write-parquet.js';

const dec = (name: string, precision: number, scale: number) => ({
  name,
  dataType: 'decimal',
  maxLength: -1,
  'cdm:traits': [
    {
      traitReference: 'is.dataFormat.numeric.shaped',
      arguments: [
        { name: 'precision', value: precision },
        { name: 'scale', value: scale },
      ],
    },
  ],
});
const ATTRIBUTES = [
  { name: 'Id', dataType: 'guid', maxLength: -1 },
  { name: 'SinkCreatedOn', dataType: 'dateTime', maxLength: -1 },
  { name: 'SinkModifiedOn', dataType: 'dateTime', maxLength: -1 },
  { name: 'name', dataType: 'string', maxLength: 160 },
  { name: 'accountnumber', dataType: 'string', maxLength: 20 },
  { name: 'emailaddress1', dataType: 'string', maxLength: 100 },
  { name: 'address1_city', dataType: 'string', maxLength: 80 },
  { name: 'description', dataType: 'string', maxLength: 2000 },
  dec('revenue', 38, 4),
  dec('creditlimit', 38, 4),
  { name: 'numberofemployees', dataType: 'int64', maxLength: -1 },
  { name: 'industrycode', dataType: 'int64', maxLength: -1 },
  { name: 'statecode', dataType: 'int64', maxLength: -1 },
  { name: 'donotphone', dataType: 'boolean', maxLength: -1 },
  { name: 'address1_latitude', dataType: 'double', maxLength: -1 },
  { name: 'ferry_onboardedon', dataType: 'dateTime', maxLength: -1 },
  { name: 'versionnumber', dataType: 'int64', maxLength: -1 },
  { name: 'createdon', dataType: 'dateTimeOffset', maxLength: -1 },
  { name: 'modifiedon', dataType: 'dateTime', maxLength: -1 },
  { name: 'IsDelete', dataType: 'boolean', maxLength: -1 },
];

const CITIES = ['Seattle', 'München', 'São Paulo', 'Zürich', '東京', 'Paris', 'Oslo', 'Kraków'];

function guid(n: number): string {
  const h = n.toString(16).padStart(12, '0');
  return `b0000000-0000-4000-8000-${h}`;
}

function usTime(ms: number): string {
  const d = new Date(ms);
  const h = d.getUTCHours();
  const p = (x: number) => String(x).padStart(2, '0');
  return `${d.getUTCMonth() + 1}/${d.getUTCDate()}/${d.getUTCFullYear()} ${h % 12 === 0 ? 12 : h % 12}:${p(d.getUTCMinutes())}:${p(d.getUTCSeconds())} ${h < 12 ? 'AM' : 'PM'}`;
}

function row(id: number, version: number, sinkMs: number, deleted: boolean): string {
  const g = guid(id);
  const sink = `"${usTime(sinkMs)}"`;
  if (deleted) return `${g},${sink},${sink},,,,,,,,,,,,,,${version},,,True`;
  const created = new Date(Date.UTC(2020, 0, 1) + (id % 2000) * 86_400_000).toISOString();
  const desc = id % 50 === 0 ? `"Notes for ${id}:\nline two with ""quotes"", commas"` : `"Customer ${id}"`;
  return [
    g,
    sink,
    sink,
    `"Account ${id} ${CITIES[id % 8]}"`,
    `"AC-${id}"`,
    `"user${id}@example.com"`,
    `"${CITIES[id % 8]}"`,
    desc,
    `${(id * 37) % 100000000}.${String(id % 10000).padStart(4, '0')}`,
    `${id % 50000}.${String(id % 100).padStart(2, '0')}`,
    String(id % 5000),
    String((id % 30) + 1),
    String(id % 2),
    id % 3 === 0 ? 'True' : 'False',
    String(((id % 18000) / 100 - 90).toFixed(5)),
    `"${new Date(Date.UTC(2024, 0, 1) + (id % 1000) * 3_600_000).toISOString().replace('.000', '')}"`,
    String(version),
    `"${created.replace('.000Z', '.0000000+00:00')}"`,
    `"${new Date(sinkMs).toISOString().replace('.000', '')}"`,
    '',
  ].join(',');
}

/** Writes `rows` rows across `folders` timestamp folders × `files` CSVs; returns the CSV paths. */
async function generate(
  lakeRoot: string,
  folder: string,
  rows: number,
  folders: number,
  files: number,
): Promise<string[]> {
  const out: string[] = [];
  const perFolder = Math.ceil(rows / folders);
  const perFile = Math.ceil(perFolder / files);
  const model = JSON.stringify({
    name: 'cdm',
    version: '1.0',
    entities: [{ $type: 'LocalEntity', name: 'account', attributes: ATTRIBUTES, partitions: [{ name: 'x' }] }],
  });
  let written = 0;
  let version = 1;
  for (let f = 0; f < folders; f++) {
    const t = Date.UTC(2026, 0, 1, 0, 15 * (f + 1));
    const name = folderNameFor(new Date(t));
    const dir = path.join(lakeRoot, folder, name, 'account');
    fs.mkdirSync(dir, { recursive: true });
    for (let k = 0; k < files && written < rows; k++) {
      const file = path.join(dir, `2026-${k}.csv`);
      const stream = fs.createWriteStream(file);
      let buf: string[] = [];
      for (let i = 0; i < perFile && written < rows; i++, written++) {
        // After the first folder, 5% of rows update an id of an earlier folder and 1% delete one.
        const updates = f > 0 && written % 20 === 0;
        const id = updates ? written % (f * perFolder) : written;
        buf.push(row(id, version++, t + (i % 600) * 1000, f > 0 && written % 100 === 1));
        if (buf.length === 4096) {
          if (!stream.write(`${buf.join('\n')}\n`)) await once(stream, 'drain');
          buf = [];
        }
      }
      if (buf.length) stream.write(`${buf.join('\n')}\n`);
      stream.end();
      await once(stream, 'finish');
      out.push(file);
    }
    fs.writeFileSync(path.join(lakeRoot, folder, name, 'model.json'), model);
  }
  fs.mkdirSync(path.join(lakeRoot, folder, 'Changelog'), { recursive: true });
  fs.writeFileSync(
    path.join(lakeRoot, folder, 'Changelog', 'changelog.info'),
    folderNameFor(new Date(Date.UTC(2026, 0, 1, 0, 15 * (folders + 1)))),
  );
  return out;
}

/** Runs the outbound benchmark; see the file comment. */
export async function runOutboundBench(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    options: {
      rows: { type: 'string', default: '1000000' },
      folders: { type: 'string', default: '4' },
      files: { type: 'string', default: '2' },
      repeat: { type: 'string', default: '1' },
      keep: { type: 'boolean', default: false },
      data: { type: 'string' },
    },
  });
  const rows = Number(values.rows);
  const repeat = Math.max(1, Number(values.repeat));
  // `--data <dir>`: generate into that folder once and reuse it on later runs (3 GB of CSV take minutes to write).
  const dir = values.data ? path.resolve(values.data) : fs.mkdtempSync(path.join(os.tmpdir(), 'ferry-bench-outbound-'));
  const lakeRoot = path.join(dir, 'lake');
  const folder = 'synapse-link/bench';
  const stamp = path.join(dir, 'generated.json');
  try {
    const t = performance.now();
    const wanted = JSON.stringify({ rows, folders: values.folders, files: values.files });
    const generateNow = !fs.existsSync(stamp) || fs.readFileSync(stamp, 'utf8') !== wanted;
    if (generateNow) {
      fs.rmSync(lakeRoot, { recursive: true, force: true });
      // Generated in a child process, so its garbage and memory do not count against the measured run.
      const child = spawnSync(
        process.execPath,
        [
          '--import',
          'tsx',
          fileURLToPath(import.meta.url),
          GENERATE_FLAG,
          lakeRoot,
          folder,
          String(rows),
          values.folders!,
          values.files!,
        ],
        { stdio: 'inherit' },
      );
      if (child.status !== 0) throw new Error(`generator failed with ${child.status ?? child.signal}`);
      fs.writeFileSync(stamp, wanted);
    }
    const files = csvFiles(lakeRoot, folder);
    const bytes = files.reduce((n, f) => n + fs.statSync(f).size, 0);
    console.log(
      `${generateNow ? 'generated' : 'reused'}: ${rows} rows in ${files.length} CSV files (${(bytes / 2 ** 20).toFixed(0)} MiB) across ${values.folders} folders, ready in ${((performance.now() - t) / 1000).toFixed(2)} s`,
    );

    let ferrySeconds = Number.POSITIVE_INFINITY;
    let copySeconds = Number.POSITIVE_INFINITY;
    let ferryRssMiB = 0;
    let copyRssMiB = 0;
    for (let i = 0; i < repeat; i++) {
      // Each pass in a child process of its own: the peak RSS reported is that of the process that ran it.
      // A fresh state folder per repeat: otherwise the second run finds its window already processed.
      const ferry = passInChild<{
        seconds: number;
        read: number;
        written: number;
        deleted: number;
        peakRssMiB: number;
      }>(FERRY_FLAG, [lakeRoot, folder, path.join(dir, `state-${Date.now()}-${i}`)]);
      ferrySeconds = Math.min(ferrySeconds, ferry.seconds);
      ferryRssMiB = Math.max(ferryRssMiB, ferry.peakRssMiB);
      console.log(
        `ferry outbound: ${ferry.seconds.toFixed(2)} s (${Math.round(rows / ferry.seconds).toLocaleString('en')} rows/s); read ${ferry.read}, written ${ferry.written}, deletes ${ferry.deleted}; peak RSS of the ferry process ${ferry.peakRssMiB} MiB`,
      );
      const copy = passInChild<{ seconds: number; peakRssMiB: number }>(COPY_FLAG, [lakeRoot, folder, dir]);
      copySeconds = Math.min(copySeconds, copy.seconds);
      copyRssMiB = Math.max(copyRssMiB, copy.peakRssMiB);
      console.log(
        `bare DuckDB COPY read_csv → Parquet: ${copy.seconds.toFixed(2)} s (${Math.round(rows / copy.seconds).toLocaleString('en')} rows/s), peak RSS ${copy.peakRssMiB} MiB`,
      );
    }
    const ratio = ferrySeconds / copySeconds;
    console.log(
      `best of ${repeat}: ferry ${ferrySeconds.toFixed(2)} s, copy ${copySeconds.toFixed(2)} s, ratio ${ratio.toFixed(2)}× (target ≤ 2×); peak RSS of the ferry process ${ferryRssMiB} MiB (target ≤ 1024), of the COPY process ${copyRssMiB} MiB`,
    );
    console.log(
      JSON.stringify({
        rows,
        ferrySeconds: round(ferrySeconds),
        copySeconds: round(copySeconds),
        ratio: round(ratio),
        peakRssMiB: ferryRssMiB,
        copyPeakRssMiB: copyRssMiB,
      }),
    );
  } finally {
    for (const e of fs.existsSync(dir) ? fs.readdirSync(dir) : [])
      if (e.startsWith('state-') || e === 'bare-copy.parquet')
        fs.rmSync(path.join(dir, e), { recursive: true, force: true });
    if (!values.keep && !values.data) fs.rmSync(dir, { recursive: true, force: true });
  }
}

function csvFiles(lakeRoot: string, folder: string): string[] {
  return fs
    .readdirSync(path.join(lakeRoot, folder), { recursive: true })
    .map(String)
    .filter((f) => f.endsWith('.csv') && !f.startsWith('Changelog'))
    .sort()
    .map((f) => path.join(lakeRoot, folder, f));
}

/** Runs `bench/outbound.ts <flag> ...args` in a child process; returns the JSON object of its last stdout line. */
function passInChild<T>(flag: string, args: readonly string[]): T {
  const result = spawnSync(process.execPath, ['--import', 'tsx', fileURLToPath(import.meta.url), flag, ...args], {
    stdio: ['ignore', 'pipe', 'inherit'],
    encoding: 'utf8',
  });
  if (result.status !== 0) throw new Error(`bench pass ${flag} failed with ${result.status ?? result.signal}`);
  return JSON.parse((result.stdout ?? '').trim().split('\n').at(-1)!) as T;
}

/** Child: the outbound pipeline through the real runner. */
async function ferryPass(lakeRoot: string, folder: string, stateDir: string): Promise<object> {
  const def = definePipeline({
    name: 'bench-outbound',
    direction: 'outbound',
    stages: [
      readSynapseLink({ folder, tables: ['account'] }),
      runSqlExtract({ table: 'account' }),
      writeParquet({ deletes: 'flag-column' }),
    ],
  });
  const config = resolveConfig({ lake: lakeRoot, state: stateDir }, process.env);
  const state = SqliteStateStore.openIn(config.state);
  const t = performance.now();
  const report = await runPipeline(def, {
    openStaging: (dir: string) => openRunStaging(dir, {}),
    mode: 'manual',
    config,
    lake: new LocalLake(config.lake),
    state,
    registry: stageRegistry,
    log: silentLogger,
  });
  const seconds = (performance.now() - t) / 1000;
  state.close();
  if (report.status !== 'succeeded') throw new Error(`outbound run ${report.status}: ${report.error?.message}`);
  return {
    seconds,
    read: report.counts.read,
    written: report.counts.written,
    deleted: report.counts.deleted,
    peakRssMiB: Math.round(process.resourceUsage().maxRSS / 1024),
  };
}

/** Child: DuckDB's bare COPY over the same files (in memory, 1 GB like DuckDB's usual setting here). */
async function copyPass(lakeRoot: string, folder: string, dir: string): Promise<object> {
  const files = csvFiles(lakeRoot, folder);
  // Its own spill folder: DuckDB's default (`.tmp` in the working directory) is shared with any other DuckDB there.
  const db = await DuckDbStaging.open({ memoryLimit: '1GB', tempDirectory: path.join(dir, 'copy-spill') });
  const target = path.join(dir, 'bare-copy.parquet');
  const t = performance.now();
  await db.run(
    `COPY (SELECT * FROM ${readCsvSql(files, ATTRIBUTES as CdmAttribute[])}) TO '${target}' (FORMAT PARQUET)`,
  );
  const seconds = (performance.now() - t) / 1000;
  await db.close();
  fs.rmSync(target, { force: true });
  fs.rmSync(path.join(dir, 'copy-spill'), { recursive: true, force: true });
  return { seconds, peakRssMiB: Math.round(process.resourceUsage().maxRSS / 1024) };
}

function round(n: number): number {
  return Math.round(n * 100) / 100;
}

const GENERATE_FLAG = '--generate-synapse-link-csv';
const FERRY_FLAG = '--ferry-pass';
const COPY_FLAG = '--copy-pass';

// Child-process entry: `node --import tsx bench/outbound.ts --generate-synapse-link-csv <lake> <folder> <rows> <folders> <files>`.
if (process.argv[2] === GENERATE_FLAG && path.resolve(process.argv[1] ?? '') === fileURLToPath(import.meta.url)) {
  const [lakeRoot, folder, rows, folders, files] = process.argv.slice(3);
  await generate(lakeRoot!, folder!, Number(rows), Number(folders), Number(files));
}
if (path.resolve(process.argv[1] ?? '') === fileURLToPath(import.meta.url)) {
  const [flag, a, b, c] = process.argv.slice(2);
  if (flag === FERRY_FLAG) console.log(JSON.stringify(await ferryPass(a!, b!, c!)));
  if (flag === COPY_FLAG) console.log(JSON.stringify(await copyPass(a!, b!, c!)));
}
