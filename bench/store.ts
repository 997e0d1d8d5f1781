/**
 * `npm run bench -- store --records 1000000`: fills an emulator store with that many account records (through the
 * store's own `put`, alternate keys indexed), writes it to a store file, appends 1,000 more changes the way the running
 * emulator does, then loads the file into a fresh store in a child process and reports the load time and that
 * process's peak RSS. The last line is one JSON object.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { EmulatorStore } from '../src/emulator/store.js';

const KEYS = [{ name: 'ferry_accountnumber_key', attributes: ['accountnumber'] }];

function record(i: number): Record<string, unknown> {
  return {
    accountnumber: `S-${i}`,
    name: `Store bench account ${i}`,
    numberofemployees: i % 5000,
    creditonhold: i % 3 === 0,
    revenue: (i * 37) % 100000,
    description: `Notes for account ${i}, with "quotes" and unicode é`,
    statecode: 0,
    statuscode: 1,
  };
}

export async function runStoreBench(argv: string[]): Promise<void> {
  const { values } = parseArgs({ args: argv, options: { records: { type: 'string', default: '1000000' } } });
  const records = Number(values.records);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ferry-bench-store-'));
  const file = path.join(dir, 'store.json');
  try {
    const store = new EmulatorStore();
    store.defineTable('account', KEYS);
    let t = performance.now();
    for (let i = 0; i < records; i++)
      store.put('account', `00000000-0000-4000-8000-${i.toString(16).padStart(12, '0')}`, record(i));
    const fillSec = (performance.now() - t) / 1000;
    t = performance.now();
    await store.saveTo(file);
    const saveSec = (performance.now() - t) / 1000;
    for (let i = 0; i < 1000; i++)
      store.put('account', `00000000-0000-4000-8000-${i.toString(16).padStart(12, '0')}`, record(i));
    t = performance.now();
    const appended = await store.appendTo(file);
    const appendMs = performance.now() - t;
    const bytes = fs.statSync(file).size;
    console.log(
      `filled ${records} records in ${fillSec.toFixed(1)} s; wrote the file (${(bytes / 2 ** 20).toFixed(0)} MiB) in ${saveSec.toFixed(1)} s; appended ${appended} changes in ${appendMs.toFixed(1)} ms`,
    );
    const child = spawnSync(process.execPath, ['--import', 'tsx', fileURLToPath(import.meta.url), LOAD_FLAG, file], {
      stdio: ['ignore', 'pipe', 'inherit'],
      encoding: 'utf8',
    });
    if (child.status !== 0) throw new Error(`load child failed with ${child.status ?? child.signal}`);
    const load = JSON.parse(child.stdout.trim().split('\n').at(-1)!) as {
      loadSec: number;
      loadCpuSec: number;
      rows: number;
      changes: number;
      peakRssMiB: number;
    };
    console.log(
      `loaded ${load.rows} records (${load.changes} changes replayed) in ${load.loadSec.toFixed(2)} s (${load.loadCpuSec.toFixed(2)} s of CPU), peak RSS of the loading process ${load.peakRssMiB} MiB`,
    );
    console.log(
      JSON.stringify({
        records,
        fileMiB: Math.round(bytes / 2 ** 20),
        saveSec: Math.round(saveSec * 100) / 100,
        appendMs: Math.round(appendMs * 10) / 10,
        loadSec: Math.round(load.loadSec * 100) / 100,
        // CPU seconds of the load: on a shared machine the wall time above is mostly the scheduler's.
        loadCpuSec: Math.round(load.loadCpuSec * 100) / 100,
        loadedRecords: load.rows,
        loadPeakRssMiB: load.peakRssMiB,
        loadAverage1m: Math.round(os.loadavg()[0]! * 100) / 100,
      }),
    );
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

const LOAD_FLAG = '--load-store';
if (process.argv[2] === LOAD_FLAG && path.resolve(process.argv[1] ?? '') === fileURLToPath(import.meta.url)) {
  const store = new EmulatorStore();
  store.defineTable('account', KEYS);
  const t = performance.now();
  const cpu = process.cpuUsage();
  await store.loadFrom(process.argv[3]!);
  const loadSec = (performance.now() - t) / 1000;
  const used = process.cpuUsage(cpu);
  console.log(
    JSON.stringify({
      loadSec,
      loadCpuSec: (used.user + used.system) / 1e6,
      rows: store.count('account'),
      changes: store.journal().length,
      peakRssMiB: Math.round(process.resourceUsage().maxRSS / 1024),
    }),
  );
}
