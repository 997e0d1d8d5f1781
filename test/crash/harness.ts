/**
 * The crash harness (`npm run test:crash`): runs the demo pipelines as separate `ferry run` processes against an
 * emulator in its own process (`ferry emulator --store`, so Dataverse survives the kill), SIGKILLs the ferry process
 * at 20 named kill points (`FERRY_KILL_AT=<name>#<n>`), lets a normal run recover, finishes the sequence, and
 * compares the final emulator store, warehouse Parquet rows, open rejects and processed windows with those of an
 * uninterrupted sequence. Prints a table; the last line is one JSON object
 * `{ killPoints, recovered, lost, duplicated, skippedWindows }`.
 *
 * Flags: `--only <n,m>` run some scenarios, `--jobs <n>` run n scenarios at once (default 1), `--keep` keep the temp
 * folder, `--verbose` print differences.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { LocalLake } from '../../src/connectors/lake/local-lake.js';
import { SqliteStateStore } from '../../src/connectors/state/sqlite-state-store.js';
import type { PipelineDefinition } from '../../src/core/pipeline.js';
import { loadPipelines } from '../../src/core/pipeline-loader.js';
import { DuckDbStaging } from '../../src/dialects/duckdb/driver.js';
import { startEmulator } from '../../src/emulator/server.js';
import { EmulatorStore } from '../../src/emulator/store.js';
import { exportSynapseLink } from '../../src/emulator/synapse-link-export.js';
import { compareEndStates, type Difference, type EndState, normaliseRow } from './compare.js';

const ROOT = path.resolve(import.meta.dirname, '../..');
const MAIN = path.join(ROOT, 'src/cli/main.ts');
const METADATA = path.join(ROOT, 'fixtures/metadata');
const FIXTURE_INBOUND = path.join(ROOT, 'fixtures/inbound');
const SYNAPSE_FOLDER = 'synapse-link/dataverse-demo';
// A fixed export time, so the Synapse Link folder (and the outbound window named after it) is the same every time.
const EXPORT_AT = new Date('2026-11-21T00:00:00Z');

type Step = { readonly kind: 'run'; readonly def: PipelineDefinition } | { readonly kind: 'export' };

interface Scenario {
  readonly pipeline: string;
  /** `FERRY_KILL_AT` value. */
  readonly point: string;
}

/** Twenty places over the inbound and outbound paths: loading, conversion, batches, requests, Parquet, commit. */
const SCENARIOS: readonly Scenario[] = [
  { pipeline: 'accounts-inbound', point: 'between-files#1' },
  { pipeline: 'accounts-inbound', point: 'between-files#2' },
  { pipeline: 'accounts-inbound', point: 'after-stage:read-parquet-deltas#1' },
  { pipeline: 'accounts-inbound', point: 'after-stage:convert-to-dataverse#1' },
  { pipeline: 'accounts-inbound', point: 'mid-request#1' },
  { pipeline: 'accounts-inbound', point: 'between-batches#1' },
  { pipeline: 'accounts-inbound', point: 'after-stage:upsert-dataverse#1' },
  { pipeline: 'accounts-inbound', point: 'before-commit#1' },
  { pipeline: 'accounts-inbound', point: 'after-commit#1' },
  { pipeline: 'contacts-inbound', point: 'between-files#1' },
  { pipeline: 'contacts-inbound', point: 'mid-request#1' },
  { pipeline: 'contacts-inbound', point: 'before-commit#1' },
  { pipeline: 'opportunities-inbound', point: 'after-stage:convert-to-dataverse#1' },
  { pipeline: 'opportunities-inbound', point: 'mid-request#1' },
  { pipeline: 'regions-inbound', point: 'between-batches#1' },
  { pipeline: 'currencies-inbound', point: 'after-commit#1' },
  { pipeline: 'accounts-outbound', point: 'after-stage:read-synapse-link#1' },
  { pipeline: 'accounts-outbound', point: 'write-parquet:before-rename#1' },
  { pipeline: 'accounts-outbound', point: 'write-parquet:before-manifest#1' },
  { pipeline: 'contacts-outbound', point: 'before-commit#1' },
];

interface ChildResult {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly stdout: string;
  readonly stderr: string;
}

function runChild(args: readonly string[], env: Record<string, string> = {}): Promise<ChildResult> {
  return new Promise((resolve, reject) => {
    const proc = spawn(process.execPath, ['--import', 'tsx', MAIN, ...args], {
      cwd: ROOT,
      env: { ...process.env, FERRY_KILL_AT: '', FERRY_ALERT_WEBHOOK: '', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    proc.stdout.on('data', (d) => {
      stdout += d;
    });
    proc.stderr.on('data', (d) => {
      stderr += d;
    });
    proc.on('error', reject);
    proc.on('exit', (code, signal) => resolve({ code, signal, stdout, stderr }));
  });
}

/** `ferry emulator --store` in its own process. */
class EmulatorProcess {
  #proc: ChildProcess;
  readonly url: string;

  private constructor(proc: ChildProcess, url: string) {
    this.#proc = proc;
    this.url = url;
  }

  static start(storeFile: string): Promise<EmulatorProcess> {
    const proc = spawn(
      process.execPath,
      ['--import', 'tsx', MAIN, 'emulator', '--port', '0', '--store', storeFile, '--metadata', METADATA],
      {
        cwd: ROOT,
        env: { ...process.env, FERRY_KILL_AT: '' },
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    return new Promise((resolve, reject) => {
      let out = '';
      let err = '';
      proc.stderr!.on('data', (d) => {
        err += d;
      });
      proc.stdout!.on('data', (d) => {
        out += d;
        const m = /listening on (http:\/\/\S+)/.exec(out);
        if (m) resolve(new EmulatorProcess(proc, m[1]!));
      });
      proc.on('exit', (code) => reject(new Error(`emulator exited early (${code}): ${err}`)));
    });
  }

  /** SIGTERM: the emulator saves its store and exits. */
  async stop(): Promise<void> {
    this.#proc.removeAllListeners('exit');
    const exited = new Promise<void>((resolve) => this.#proc.once('exit', () => resolve()));
    this.#proc.kill('SIGTERM');
    await exited;
  }
}

/** One working folder: lake, state and the emulator's store file. */
class Workspace {
  readonly dir: string;
  #emulator: EmulatorProcess | undefined;

  constructor(dir: string) {
    this.dir = dir;
  }

  get lake(): string {
    return path.join(this.dir, 'lake');
  }
  get state(): string {
    return path.join(this.dir, 'state');
  }
  get store(): string {
    return path.join(this.dir, 'emulator-store.json');
  }

  async seed(): Promise<void> {
    await fs.cp(FIXTURE_INBOUND, path.join(this.lake, 'inbound'), {
      recursive: true,
      preserveTimestamps: true,
      filter: (src) => !src.endsWith('.ts'),
    });
  }

  async emulator(): Promise<EmulatorProcess> {
    this.#emulator ??= await EmulatorProcess.start(this.store);
    return this.#emulator;
  }

  async stopEmulator(): Promise<void> {
    await this.#emulator?.stop();
    this.#emulator = undefined;
  }

  async run(def: PipelineDefinition, killAt?: string): Promise<ChildResult> {
    const args = ['run', def.name, '--json', '--lake', this.lake, '--state', this.state, '--metadata', METADATA];
    if (def.direction === 'inbound') args.push('--dataverse', (await this.emulator()).url);
    return runChild(args, killAt ? { FERRY_KILL_AT: killAt } : {});
  }

  /** What Synapse Link would export of the emulator's store (the emulator is stopped first so its file is current). */
  async exportSynapseLink(): Promise<void> {
    await this.stopEmulator();
    const emulator = await startEmulator({ metadataDir: METADATA, storeFile: this.store });
    const state = SqliteStateStore.openIn(this.state);
    try {
      await exportSynapseLink(emulator.store, new LocalLake(this.lake), SYNAPSE_FOLDER, {
        metadataDir: METADATA,
        state,
        now: EXPORT_AT,
      });
    } finally {
      state.close();
      await emulator.close();
    }
  }

  async copyTo(dir: string): Promise<Workspace> {
    await this.stopEmulator();
    await fs.cp(this.dir, dir, { recursive: true, preserveTimestamps: true });
    return new Workspace(dir);
  }
}

interface StepOutcome {
  readonly step: number;
  readonly killed: boolean;
  readonly code: number | null;
  readonly rerunCode: number | null;
  readonly log: string;
}

async function runStep(ws: Workspace, step: Step, killAt?: string): Promise<StepOutcome & { index?: number }> {
  if (step.kind === 'export') {
    await ws.exportSynapseLink();
    return { step: -1, killed: false, code: 0, rerunCode: null, log: '' };
  }
  if (step.def.direction === 'outbound') await ws.stopEmulator();
  const first = await ws.run(step.def, killAt);
  if (first.signal !== 'SIGKILL') {
    return { step: -1, killed: false, code: first.code, rerunCode: null, log: `${first.stderr}${first.stdout}` };
  }
  const rerun = await ws.run(step.def);
  return {
    step: -1,
    killed: true,
    code: null,
    rerunCode: rerun.code,
    log: `${first.stderr}\n--- rerun ---\n${rerun.stderr}${rerun.stdout}`,
  };
}

async function endState(ws: Workspace, pipelines: readonly PipelineDefinition[]): Promise<EndState> {
  await ws.stopEmulator();
  const keys = new Map<string, string[]>();
  for (const name of await fs.readdir(METADATA)) {
    if (!name.endsWith('.json')) continue;
    const meta = JSON.parse(await fs.readFile(path.join(METADATA, name), 'utf8')) as {
      LogicalName: string;
      Keys?: Array<{ KeyAttributes: string[] }>;
    };
    if (meta.Keys?.[0]) keys.set(meta.LogicalName, meta.Keys[0].KeyAttributes);
  }
  const store = new EmulatorStore();
  await store.loadFrom(ws.store);
  const saved = {
    tables: Object.fromEntries(store.tables().map((t) => [t, store.rows(t)])) as Record<
      string,
      Array<{ id: string; attributes: Readonly<Record<string, unknown>> }>
    >,
  };
  // A record's identity is its alternate key (or, without one, its content): stable across runs, unlike its GUID.
  const identities = new Map<string, string>();
  const identityOf = (table: string, row: { attributes: Record<string, unknown> }) => {
    const k = keys.get(table);
    return k
      ? `${table}(${k.map((a) => String(row.attributes[a])).join(',')})`
      : `${table}${JSON.stringify(row.attributes)}`;
  };
  for (const [table, rows] of Object.entries(saved.tables))
    for (const row of rows) identities.set(row.id.toLowerCase(), identityOf(table, row));
  const dataverse: EndState['dataverse'] = {};
  for (const [table, rows] of Object.entries(saved.tables)) {
    for (const row of rows) {
      const id = identityOf(table, row);
      const byId = dataverse[table] ?? {};
      dataverse[table] = byId;
      byId[id] = [...(byId[id] ?? []), normaliseRow(row.attributes, identities)];
    }
  }

  const warehouse: EndState['warehouse'] = {};
  const root = path.join(ws.lake, 'warehouse');
  const files = (await fs.readdir(root, { recursive: true }).catch(() => [] as string[]))
    .filter((f) => f.endsWith('.parquet'))
    .sort();
  const duck = await DuckDbStaging.open({ memoryLimit: '256MB' });
  try {
    for (const file of files) {
      const table = file.split(path.sep)[0]!;
      const rows = await duck.all<{ j: string }>(
        `SELECT to_json(t)::VARCHAR AS j FROM read_parquet('${path.join(root, file).replaceAll("'", "''")}') t`,
      );
      const counts = warehouse[table] ?? {};
      warehouse[table] = counts;
      for (const r of rows) {
        const key = normaliseRow(JSON.parse(r.j) as Record<string, unknown>, identities);
        counts[key] = (counts[key] ?? 0) + 1;
      }
    }
  } finally {
    await duck.close();
  }

  const state = SqliteStateStore.openIn(ws.state);
  try {
    const rejects: EndState['rejects'] = {};
    for (const r of state.listRejects({ status: 'open' })) {
      const key = [r.pipeline, r.stage, r.reason, r.sourceFile, r.rowNumber, r.key].join('|');
      rejects[key] = (rejects[key] ?? 0) + 1;
    }
    const windows: EndState['windows'] = {};
    for (const def of pipelines) {
      const sources = new Set(
        state
          .listRuns({ pipeline: def.name, limit: 10_000 })
          .map((r) => r.window.source)
          .filter(Boolean),
      );
      windows[def.name] = [...sources]
        .flatMap((s) => [...state.processedItems(def.name, s).keys()].map((id) => `${s}/${id}`))
        .sort();
    }
    return { dataverse, warehouse, rejects, windows };
  } finally {
    state.close();
  }
}

function flag(name: string): string | undefined {
  const i = process.argv.indexOf(name);
  return i >= 0 ? (process.argv[i + 1] ?? '') : undefined;
}

async function main(): Promise<void> {
  const started = Date.now();
  const keep = process.argv.includes('--keep');
  const verbose = process.argv.includes('--verbose');
  const jobs = Math.max(1, Number(flag('--jobs') ?? 1));
  const only = flag('--only')
    ?.split(',')
    .map((n) => Number(n));
  const pipelines = await loadPipelines(path.join(ROOT, 'pipelines'));
  const demo = pipelines.filter(
    (p) => SCENARIOS.some((s) => s.pipeline === p.name) || p.direction === 'inbound' || p.direction === 'outbound',
  );
  const steps: Step[] = [
    ...demo.filter((p) => p.direction === 'inbound').map((def) => ({ kind: 'run' as const, def })),
    { kind: 'export' },
    ...demo.filter((p) => p.direction === 'outbound').map((def) => ({ kind: 'run' as const, def })),
  ];
  const tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'ferry-crash-'));
  process.stderr.write(`crash harness: working in ${tmp}\n`);
  try {
    // The uninterrupted sequence, with a copy of the workspace before each step to start the scenarios from.
    const baseline = new Workspace(path.join(tmp, 'baseline'));
    await baseline.seed();
    const snapshots: Workspace[] = [];
    const baselineCodes: Array<number | null> = [];
    for (const [i, step] of steps.entries()) {
      snapshots.push(await baseline.copyTo(path.join(tmp, `snapshot-${i}`)));
      const outcome = await runStep(baseline, step);
      baselineCodes.push(outcome.code);
      if (outcome.code !== 0 && outcome.code !== 3) {
        process.stderr.write(
          `baseline step ${i} (${step.kind === 'run' ? step.def.name : 'export'}) exited ${outcome.code}:\n${outcome.log}\n`,
        );
      }
    }
    const expected = await endState(baseline, demo);
    process.stderr.write(
      `baseline: ${Object.values(expected.dataverse).reduce((n, t) => n + Object.keys(t).length, 0)} Dataverse records, ${Object.values(expected.warehouse).reduce((n, t) => n + Object.values(t).reduce((a, b) => a + b, 0), 0)} warehouse rows, ${Object.values(expected.rejects).reduce((a, b) => a + b, 0)} open rejects, ${Object.values(expected.windows).reduce((n, w) => n + w.length, 0)} processed window items (steps exit ${baselineCodes.join(',')})\n`,
    );

    type Row = {
      n: number;
      scenario: Scenario;
      killed: boolean;
      rerun: number | null;
      diff: Difference;
      outcome: string;
    };
    const runScenario = async (n: number, scenario: Scenario): Promise<Row> => {
      const at = steps.findIndex((s) => s.kind === 'run' && s.def.name === scenario.pipeline);
      if (at < 0) throw new Error(`Scenario pipeline \`${scenario.pipeline}\` is not a demo pipeline.`);
      const ws = await snapshots[at]!.copyTo(path.join(tmp, `scenario-${n}`));
      let killed = false;
      let rerun: number | null = null;
      for (let i = at; i < steps.length; i++) {
        const outcome = await runStep(ws, steps[i]!, i === at ? scenario.point : undefined);
        const code = outcome.killed ? outcome.rerunCode : outcome.code;
        if (code !== baselineCodes[i]) {
          const step = steps[i]!;
          const what = step.kind === 'run' ? step.def.name : 'export';
          const tail = outcome.log.split('\n').slice(-15).join('\n');
          process.stderr.write(`[${n}] ${what} exited ${code} (uninterrupted: ${baselineCodes[i]}):\n${tail}\n`);
        }
        if (i === at) {
          killed = outcome.killed;
          rerun = outcome.killed ? outcome.rerunCode : outcome.code;
          if (verbose && outcome.killed) {
            const lines = outcome.log.split('\n').filter((l) => /FERRY_KILL_AT|Took over|did not finish/.test(l));
            process.stderr.write(`[${n}] ${lines.join(`\n[${n}] `)}\n`);
          }
        }
      }
      const diff = compareEndStates(expected, await endState(ws, demo));
      const clean = diff.lost === 0 && diff.duplicated === 0 && diff.skippedWindows === 0;
      const outcome = !killed
        ? rerun === baselineCodes[at]
          ? 'NOT REACHED'
          : `FAILED (exit ${rerun})`
        : rerun !== baselineCodes[at]
          ? `RERUN EXIT ${rerun}`
          : clean
            ? 'recovered'
            : 'DIFFERS';
      process.stderr.write(`[${n}/${SCENARIOS.length}] ${scenario.pipeline} ${scenario.point}: ${outcome}\n`);
      if (verbose || !clean) for (const d of diff.details.slice(0, 10)) process.stderr.write(`    ${d}\n`);
      if (!keep) await fs.rm(ws.dir, { recursive: true, force: true });
      return { n, scenario, killed, rerun, diff, outcome };
    };
    // Scenarios are independent (own folders, own emulator process, ephemeral ports), so they may run side by side.
    const queue = SCENARIOS.map((scenario, i) => ({ n: i + 1, scenario })).filter(({ n }) => !only || only.includes(n));
    const rows: Row[] = [];
    const worker = async () => {
      for (let next = queue.shift(); next; next = queue.shift()) rows.push(await runScenario(next.n, next.scenario));
    };
    await Promise.all(Array.from({ length: jobs }, worker));
    rows.sort((a, b) => a.n - b.n);
    const line = (cells: readonly (string | number)[]) =>
      cells.map((c, i) => String(c).padEnd([3, 22, 36, 7, 6, 5, 11, 15, 12][i] ?? 10)).join(' ');
    console.log(
      line(['#', 'pipeline', 'kill point', 'killed', 'rerun', 'lost', 'duplicated', 'skippedWindows', 'outcome']),
    );
    for (const r of rows) {
      console.log(
        line([
          r.n,
          r.scenario.pipeline,
          r.scenario.point,
          r.killed ? 'yes' : 'no',
          r.rerun ?? '-',
          r.diff.lost,
          r.diff.duplicated,
          r.diff.skippedWindows,
          r.outcome,
        ]),
      );
    }
    const summary = {
      killPoints: rows.filter((r) => r.killed).length,
      recovered: rows.filter((r) => r.outcome === 'recovered').length,
      lost: rows.reduce((n, r) => n + r.diff.lost, 0),
      duplicated: rows.reduce((n, r) => n + r.diff.duplicated, 0),
      skippedWindows: rows.reduce((n, r) => n + r.diff.skippedWindows, 0),
    };
    console.log(`${rows.length} scenario(s) in ${((Date.now() - started) / 1000).toFixed(0)} s`);
    console.log(JSON.stringify(summary));
    process.exitCode = summary.recovered === rows.length && rows.length > 0 ? 0 : 1;
  } finally {
    if (!keep) await fs.rm(tmp, { recursive: true, force: true });
  }
}

await main();
