import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { LocalLake } from '../../src/connectors/lake/local-lake.js';
import { SqliteStateStore } from '../../src/connectors/state/sqlite-state-store.js';
import { type FerryConfig, resolveConfig } from '../../src/core/config.js';
import { silentLogger } from '../../src/core/log.js';
import { definePipeline, type PipelineDefinition, type PipelineInput } from '../../src/core/pipeline.js';
import { type RunReport, runPipeline, type StageRegistry } from '../../src/core/runner.js';
import type { PlanContext, StageContext, StageImpl } from '../../src/core/stage.js';
import type { RunWindow, WindowItem } from '../../src/core/window.js';
import { openRunStaging } from '../../src/dialects/duckdb/driver.js';
import type { Clock } from '../../src/schedule/clock.js';
import type { RunOne } from '../../src/schedule/scheduler.js';
import { registryWith } from '../../src/stages/registry.js';

/**
 * A small stand-in source+sink stage for scheduler tests: each file under `folder` is an item (its time is in its
 * name: `<iso>.txt`, `:` written as `-`), each line a row; the sink writes `<out>/<file>.out` (replaced, so
 * repeating is harmless) and appends every delivery to `<out>/deliveries.log`, so a test can count duplicates.
 */
export interface FileStageSpec {
  readonly kind: 'test-files';
  readonly folder: string;
  readonly out: string;
}

/** Per-pipeline hooks a test runs inside a stage (to block, advance the clock, or fail). */
export const stageHooks = new Map<string, (ctx: StageContext) => Promise<void> | void>();

export function fileTime(name: string): string {
  const m = /(\d{4}-\d{2}-\d{2}T\d{2})-(\d{2})-(\d{2})Z/.exec(name);
  return m ? `${m[1]}:${m[2]}:${m[3]}Z` : '1970-01-01T00:00:00Z';
}

export const fileStage: StageImpl<FileStageSpec> = {
  kind: 'test-files',
  async plan(spec, ctx: PlanContext): Promise<RunWindow> {
    const source = `lake:${spec.folder}`;
    const processed =
      ctx.reprocess || ctx.range ? new Map<string, WindowItem>() : ctx.state.processedItems(ctx.pipeline.name, source);
    const items: WindowItem[] = [];
    for (const e of await ctx.lake.list(spec.folder)) {
      if (e.isDirectory || processed.has(e.path)) continue;
      const timestamp = fileTime(e.path);
      if (ctx.range && !(timestamp >= ctx.range.from && timestamp < ctx.range.to)) continue;
      items.push({ id: e.path, size: e.size, modifiedMs: e.modifiedMs, timestamp });
    }
    return { source, items, cursorBefore: null, cursorAfter: items.at(-1)?.timestamp ?? null };
  },
  async run(spec, ctx: StageContext): Promise<void> {
    await stageHooks.get(ctx.pipeline.name)?.(ctx);
    for (const item of ctx.window.items) {
      const lines = (await ctx.lake.readText(item.id)).split('\n').filter(Boolean);
      ctx.counts.read += lines.length;
      const name = item.id.split('/').at(-1)!;
      await ctx.lake.write(`${spec.out}/${name}.out`, lines.join('\n'));
      await fs.appendFile(path.join(ctx.lake.root, spec.out, 'deliveries.log'), `${name} ${ctx.runId}\n`);
      ctx.counts.upserted += lines.length;
    }
  },
};

export const testRegistry: StageRegistry = registryWith([fileStage as StageImpl]);

export function filePipeline(name: string, extra: Partial<PipelineInput> = {}): PipelineDefinition {
  return definePipeline({
    name,
    direction: 'inbound',
    stages: [{ kind: 'test-files', folder: `in/${name}`, out: `out/${name}` } as FileStageSpec],
    ...extra,
  });
}

export interface TestEnv {
  readonly dir: string;
  readonly config: FerryConfig;
  readonly lake: LocalLake;
  readonly state: SqliteStateStore;
  /** Another connection to the same state file, as a second process would have. */
  openState(): SqliteStateStore;
  runOne(state?: SqliteStateStore): RunOne;
  run(def: PipelineDefinition, options?: Partial<Parameters<typeof runPipeline>[1]>): Promise<RunReport>;
  dispose(): Promise<void>;
}

export async function makeEnv(): Promise<TestEnv> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'ferry-schedule-'));
  const config = resolveConfig({ lake: path.join(dir, 'lake'), state: path.join(dir, 'state') }, {});
  const lake = new LocalLake(config.lake);
  const state = SqliteStateStore.openIn(config.state);
  const extra: SqliteStateStore[] = [];
  const base = (s: SqliteStateStore) => ({ config, lake, state: s, registry: testRegistry, log: silentLogger });
  return {
    dir,
    config,
    lake,
    state,
    openState() {
      const s = SqliteStateStore.openIn(config.state);
      extra.push(s);
      return s;
    },
    runOne:
      (s = state) =>
      (def, options) =>
        runPipeline(def, {
          openStaging: (dir: string) => openRunStaging(dir, {}),
          ...base(s),
          ...options,
        }),
    run: (def, options = {}) =>
      runPipeline(def, {
        openStaging: (dir: string) => openRunStaging(dir, {}),
        ...base(state),
        mode: 'manual',
        ...options,
      }),
    async dispose() {
      stageHooks.clear();
      for (const s of extra) s.close();
      state.close();
      await fs.rm(dir, { recursive: true, force: true });
    },
  };
}

/** Writes a delta file of `rows` lines into a pipeline's input folder, named by its time. */
export async function addFile(env: TestEnv, pipeline: string, iso: string, rows: number): Promise<string> {
  const name = `${iso.replaceAll(':', '-')}.txt`;
  await env.lake.write(`in/${pipeline}/${name}`, Array.from({ length: rows }, (_, i) => `${name}#${i + 1}`).join('\n'));
  return name;
}

export async function deliveries(env: TestEnv, pipeline: string): Promise<string[]> {
  const text = await fs.readFile(path.join(env.lake.root, 'out', pipeline, 'deliveries.log'), 'utf8').catch(() => '');
  return text.split('\n').filter(Boolean);
}

/** Virtual time: `sleep` moves the clock forward at once, so a test can run many 15-minute ticks instantly. */
export class VirtualClock implements Clock {
  #now: number;

  constructor(start: string | number) {
    this.#now = typeof start === 'number' ? start : Date.parse(start);
  }

  now(): number {
    return this.#now;
  }

  advance(ms: number): void {
    this.#now += ms;
  }

  async sleep(ms: number, signal?: AbortSignal): Promise<void> {
    if (signal?.aborted) return;
    this.#now += Math.max(0, ms);
    // Yield, so other async work (a second scheduler, an HTTP server) gets its turn.
    await new Promise((resolve) => setImmediate(resolve));
  }
}
