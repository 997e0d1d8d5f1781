/**
 * The differential harness: the same pipeline definitions on the same fixtures over the same ticks, through
 * (a) the local runner — the in-process `Scheduler` of `ferry schedule` with `runPipeline`, one Dataverse emulator,
 * one lake, one state store — and (b) the local Synapse runtime on the exported artifacts as deployed (`synapse/`),
 * with a second, fresh emulator and its own copy of the lake. Both sides share one virtual time: tick `k` runs at
 * `start + k × 15 min` on both, and every input (a delta file, a Synapse Link folder) is copied byte for byte into
 * both lakes with the same modified time before the tick that should see it.
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import { LocalLake } from '../../../src/connectors/lake/local-lake.js';
import { SqliteStateStore } from '../../../src/connectors/state/sqlite-state-store.js';
import { type FerryConfig, resolveConfig } from '../../../src/core/config.js';
import { silentLogger } from '../../../src/core/log.js';
import type { PipelineDefinition } from '../../../src/core/pipeline.js';
import { type RunReport, runPipeline } from '../../../src/core/runner.js';
import { openRunStaging } from '../../../src/dialects/duckdb/driver.js';
import { type EmulatorOptions, type RunningEmulator, startEmulator } from '../../../src/emulator/server.js';
import { exportSynapseLink } from '../../../src/emulator/synapse-link-export.js';
import type { SynapseExportSettings } from '../../../src/export/synapse/export-settings.js';
import { ArtifactStore } from '../../../src/export/synapse/runtime/artifact-store.js';
import type { StepRenderings } from '../../../src/export/synapse/runtime/connectors/sql-engine.js';
import type { PipelineRun } from '../../../src/export/synapse/runtime/run-records.js';
import { SynapseRuntime } from '../../../src/export/synapse/runtime/synapse-runtime.js';
import type { WindowState } from '../../../src/export/synapse/runtime/triggers/trigger-scheduler.js';
import { synapseDataSources } from '../../../src/export/synapse/step-renderings.js';
import { type BackfillResult, runBackfill } from '../../../src/schedule/backfill.js';
import type { Clock } from '../../../src/schedule/clock.js';
import { Scheduler } from '../../../src/schedule/scheduler.js';
import { stageRegistry } from '../../../src/stages/registry.js';

export const METADATA = 'fixtures/metadata';
export const TICK_MS = 15 * 60_000;
/** The lake folder the local outbound pipelines read (`readSynapseLink({ folder })`). */
export const LOCAL_SYNAPSE_LINK = 'synapse-link/dataverse-demo';

/** Fault injection of one emulator, changed between ticks (the emulator reads its options on every request). */
export type Faults = Pick<EmulatorOptions, 'throttleEvery' | 'retryAfterSec' | 'failEvery'>;

/** The shared virtual time of the local side: `sleep` moves it at once. */
class SharedClock implements Clock {
  nowMs: number;
  constructor(start: number) {
    this.nowMs = start;
  }
  now(): number {
    return this.nowMs;
  }
  async sleep(ms: number, signal?: AbortSignal): Promise<void> {
    if (signal?.aborted) return;
    this.nowMs += Math.max(0, ms);
    await new Promise((resolve) => setImmediate(resolve));
  }
}

export interface LocalSide {
  readonly config: FerryConfig;
  readonly lake: LocalLake;
  readonly state: SqliteStateStore;
  readonly emulator: RunningEmulator;
  readonly faults: Faults & { metadataDir: string };
  readonly reports: RunReport[];
}

export interface SynapseSide {
  readonly rt: SynapseRuntime;
  readonly emulator: RunningEmulator;
  readonly faults: Faults & { metadataDir: string };
  /** Container folders: the lake, the Synapse Link container, the warehouse. */
  readonly lakeDir: string;
  readonly synapseLinkDir: string;
  readonly warehouseDir: string;
}

export interface TwinOptions {
  readonly root: string;
  readonly startTime: string;
  readonly pipelines: readonly PipelineDefinition[];
  readonly settings: SynapseExportSettings;
  readonly renderings: StepRenderings;
  /**
   * `backfillStartTime`/`backfillEndTime` as a user sets them in `synapse/settings.json` before exporting: the
   * exported backfill triggers get this range (nothing else of the artifacts changes).
   */
  readonly backfillRange?: { readonly start: string; readonly end: string };
  /** Artifacts exported from `pipelines` for the test (default: `synapse/` as deployed). */
  readonly artifacts?: ArtifactStore;
}

export class DifferentialTwin {
  readonly local: LocalSide;
  readonly synapse: SynapseSide;
  readonly pipelines: readonly PipelineDefinition[];
  readonly #clock: SharedClock;
  readonly #backfillRange: TwinOptions['backfillRange'];
  ticks = 0;

  private constructor(local: LocalSide, synapse: SynapseSide, options: TwinOptions, clock: SharedClock) {
    this.local = local;
    this.synapse = synapse;
    this.pipelines = options.pipelines;
    this.#backfillRange = options.backfillRange;
    this.#clock = clock;
  }

  static async open(options: TwinOptions): Promise<DifferentialTwin> {
    const start = Date.parse(options.startTime);
    const localDir = path.join(options.root, 'local');
    const synapseDir = path.join(options.root, 'synapse');
    const config = resolveConfig(
      { lake: path.join(localDir, 'lake'), state: path.join(localDir, 'state'), metadata: METADATA },
      {},
    );
    await fs.mkdir(config.lake, { recursive: true });
    const localFaults = { metadataDir: METADATA };
    const localEmulator = await startEmulator(localFaults);
    const synapseFaults = { metadataDir: METADATA };
    const synapseEmulator = await startEmulator(synapseFaults);
    const lakeDir = path.join(synapseDir, 'storage', options.settings.lakeFileSystem);
    const synapseLinkDir = path.join(synapseDir, 'storage', options.settings.synapseLinkFileSystem);
    const warehouseDir = path.join(synapseDir, 'storage', options.settings.warehouseFileSystem);
    for (const d of [lakeDir, synapseLinkDir, warehouseDir]) await fs.mkdir(d, { recursive: true });
    const rt = await SynapseRuntime.open({
      artifacts: await deployedArtifacts(options.backfillRange, options.artifacts),
      workspaceDir: synapseDir,
      startTime: options.startTime,
      dataverseUrl: synapseEmulator.url,
      dataverseSleep: async () => undefined,
      stepRenderings: options.renderings,
      dataSources: synapseDataSources(options.settings),
    });
    await rt.runSetup(['sql/tsql/setup/ferry-state.sql']);
    rt.startTrigger('tr_ferry_every_15m');
    const local: LocalSide = {
      config,
      lake: new LocalLake(config.lake),
      state: SqliteStateStore.openIn(config.state),
      emulator: localEmulator,
      faults: localFaults,
      reports: [],
    };
    return new DifferentialTwin(
      local,
      { rt, emulator: synapseEmulator, faults: synapseFaults, lakeDir, synapseLinkDir, warehouseDir },
      options,
      new SharedClock(start),
    );
  }

  /**
   * The later of the two sides' clocks: the runtime's moves on during a run (retry intervals and waits cost virtual
   * time), so an input arriving "now" arrives after both sides finished the tick.
   */
  nowMs(): number {
    return Math.max(this.#clock.nowMs, this.synapse.rt.clock.nowMs());
  }

  /** The same fault injection on both emulators (from the next request on). */
  setFaults(faults: Faults): void {
    for (const f of [this.local.faults, this.synapse.faults]) {
      delete f.throttleEvery;
      delete f.failEvery;
      delete f.retryAfterSec;
      Object.assign(f, faults);
    }
  }

  /** Copies a file into both lakes at `lakePath` (relative to the lake), modified `atMs` (default a minute from now). */
  async arriveFile(from: string, lakePath: string, atMs = this.nowMs() + 60_000): Promise<void> {
    for (const root of [this.local.config.lake, this.synapse.lakeDir]) {
      const to = path.join(root, lakePath);
      await fs.mkdir(path.dirname(to), { recursive: true });
      await fs.copyFile(from, to);
      const at = new Date(atMs);
      await fs.utimes(to, at, at);
    }
  }

  /**
   * Copies files of a Synapse Link export (paths relative to its root) into both Synapse Link locations: the local
   * lake's `synapse-link/dataverse-demo` and the runtime's Synapse Link container.
   */
  async arriveSynapseLink(exportRoot: string, relativePaths: readonly string[]): Promise<void> {
    for (const root of [path.join(this.local.config.lake, LOCAL_SYNAPSE_LINK), this.synapse.synapseLinkDir]) {
      for (const rel of relativePaths) {
        const to = path.join(root, rel);
        const from = path.join(exportRoot, rel);
        const st = await fs.stat(from);
        await fs.mkdir(path.dirname(to), { recursive: true });
        if (st.isDirectory()) await fs.mkdir(to, { recursive: true });
        else await fs.copyFile(from, to);
      }
    }
  }

  /** An empty timestamp folder in both Synapse Link locations (what a retried export leaves). */
  async emptySynapseLinkFolder(name: string): Promise<void> {
    for (const root of [path.join(this.local.config.lake, LOCAL_SYNAPSE_LINK), this.synapse.synapseLinkDir])
      await fs.mkdir(path.join(root, name), { recursive: true });
  }

  #runOne(def: PipelineDefinition, mode: 'scheduled' | 'manual', signal: AbortSignal, extra = {}): Promise<RunReport> {
    return runPipeline(def, {
      mode,
      config: this.local.config,
      lake: this.local.lake,
      state: this.local.state,
      registry: stageRegistry,
      services: { dataverse: { url: this.local.emulator.url }, openStaging: openRunStaging },
      log: silentLogger,
      signal,
      ...extra,
    }).then((r) => {
      this.local.reports.push(r);
      return r;
    });
  }

  /** One 15-minute tick on both sides: the local scheduler's tick, and the runtime's schedule trigger. */
  async tick(): Promise<void> {
    const scheduler = new Scheduler({
      pipelines: this.pipelines,
      state: this.local.state,
      clock: this.#clock,
      maxTicks: 1,
      every: '15m',
      retry: { attempts: 2, delayMs: 0 },
      runOne: (def, o) => this.#runOne(def, o.mode === 'scheduled' ? 'scheduled' : 'manual', o.signal),
    });
    // Both sides tick at the next 15-minute boundary after the later of their clocks.
    const boundary = (Math.floor(this.nowMs() / TICK_MS) + 1) * TICK_MS;
    this.#clock.nowMs = boundary - 1;
    await scheduler.run();
    this.#clock.nowMs = boundary;
    await this.synapse.rt.runTicks(1, boundary - this.synapse.rt.clock.nowMs());
    this.ticks++;
  }

  /** Two manual runs of one pipeline started together on each side. */
  async overlappingManualRuns(name: string): Promise<{ local: RunReport[]; synapse: PipelineRun[]; queued: boolean }> {
    const def = this.#def(name);
    const signal = new AbortController().signal;
    const local = await Promise.all([this.#runOne(def, 'manual', signal), this.#runOne(def, 'manual', signal)]);
    const pl = `pl_${name.replaceAll('-', '_')}`;
    const a = this.synapse.rt.engine.startRun(pl, { parameters: { mode: 'manual' } });
    const b = this.synapse.rt.engine.startRun(pl, { parameters: { mode: 'manual' } });
    const queued = b.run.status === 'Queued';
    const synapse = await Promise.all([a.done, b.done]);
    return { local, synapse, queued };
  }

  /**
   * A bounded backfill of one pipeline over [from, to) on both sides: `ferry backfill` (windows of 15 minutes) and
   * the pipeline run per window with `windowStart`/`windowEnd` as the exported backfill trigger passes them.
   */
  /**
   * A bounded backfill of a pipeline and the pipelines it depends on over the twin's backfill range: `ferry backfill`
   * of each (dependencies first, windows of 15 minutes), and their exported backfill triggers started together (a
   * window waits for the same window of its parents' triggers).
   */
  async backfill(name: string): Promise<{ local: BackfillResult[]; synapse: Record<string, readonly WindowState[]> }> {
    const range = this.#backfillRange;
    if (!range) throw new Error('The twin was opened without a backfill range.');
    const order: PipelineDefinition[] = [];
    const visit = (n: string) => {
      const def = this.#def(n);
      for (const d of def.dependsOn) visit(d);
      if (!order.includes(def)) order.push(def);
    };
    visit(name);
    const local: BackfillResult[] = [];
    for (const def of order)
      local.push(
        await runBackfill(def, {
          from: range.start,
          to: range.end,
          windowMs: TICK_MS,
          config: this.local.config,
          lake: this.local.lake,
          state: this.local.state,
          registry: stageRegistry,
          services: { dataverse: { url: this.local.emulator.url }, openStaging: openRunStaging },
          log: silentLogger,
        }),
      );
    const triggers = order.map((def) => `tr_${def.name.replaceAll('-', '_')}_backfill`);
    for (const t of triggers) this.synapse.rt.startTrigger(t);
    await this.synapse.rt.triggers.evaluateNow();
    return { local, synapse: Object.fromEntries(triggers.map((t) => [t, this.synapse.rt.triggers.windows(t)])) };
  }

  #def(name: string): PipelineDefinition {
    const def = this.pipelines.find((p) => p.name === name);
    if (!def) throw new Error(`No pipeline \`${name}\`.`);
    return def;
  }

  async close(): Promise<void> {
    await this.synapse.rt.close();
    this.local.state.close();
    await this.local.emulator.close();
    await this.synapse.emulator.close();
  }
}

/** The artifacts under `synapse/` as deployed (or the given ones); with a backfill range, the backfill triggers carry it. */
async function deployedArtifacts(
  range: TwinOptions['backfillRange'],
  artifacts?: ArtifactStore,
): Promise<ArtifactStore> {
  const real = artifacts ?? (await ArtifactStore.load('synapse'));
  if (!range) return real;
  const kinds = ['linkedService', 'dataset', 'pipeline', 'trigger'] as const;
  const objects = Object.fromEntries(
    kinds.map((kind) => [
      kind,
      real.names(kind).map((name) => {
        const properties = structuredClone(real.get(kind, name).properties) as Record<string, unknown>;
        const tp = properties.typeProperties as Record<string, unknown> | undefined;
        if (kind === 'trigger' && properties.type === 'TumblingWindowTrigger' && tp) {
          tp.startTime = range.start;
          tp.endTime = range.end;
        }
        return { name, properties };
      }),
    ]),
  );
  return ArtifactStore.fromObjects(objects);
}

/**
 * What Synapse Link writes for a Dataverse between ticks: `exportSynapseLink` (the emulator's own exporter) of one
 * emulator's changes into a staging folder, whose new files are then copied into both lakes by the twin. The
 * changes come from the local side's emulator; both emulators hold the same records whenever the executors agree.
 */
export class SynapseLinkSource {
  readonly root: string;
  readonly #lake: LocalLake;
  #copied = new Set<string>();
  constructor(root: string) {
    this.root = root;
    this.#lake = new LocalLake(root);
  }

  /** Exports the changes since the last export as a folder named `atMs`; returns the new files (relative paths). */
  async export(
    store: RunningEmulator['store'],
    atMs: number,
    metadataDir = METADATA,
  ): Promise<{ folder: string | null; files: string[] }> {
    const result = await exportSynapseLink(store, this.#lake, '', { metadataDir, now: new Date(atMs) });
    const files: string[] = [];
    for (const e of await fs.readdir(this.root, { recursive: true, withFileTypes: true })) {
      if (!e.isFile()) continue;
      const rel = path.relative(this.root, path.join(e.parentPath, e.name));
      if (rel.startsWith('Changelog/ferry-export')) continue;
      const st = await fs.stat(path.join(this.root, rel));
      const id = `${rel}@${st.mtimeMs}@${st.size}`;
      if (this.#copied.has(id)) continue;
      this.#copied.add(id);
      files.push(rel);
    }
    return { folder: result.folder, files };
  }
}
