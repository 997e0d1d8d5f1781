import fs from 'node:fs/promises';
import path from 'node:path';
import { FerryError, UsageError } from '../core/errors.js';
import type { PipelineDefinition, StageSpec } from '../core/pipeline.js';
import type { StoredReject } from '../core/rejects.js';
import {
  METADATA_SNAPSHOTS_DIR,
  RUN_DEFINITION_FILE,
  type RunOptions,
  type RunReport,
  runPipeline,
  type StageRegistry,
} from '../core/runner.js';
import type { StageContext, StageImpl } from '../core/stage.js';
import { STAGING_TABLES } from '../core/staging-contract.js';
import type { RunRecord } from '../core/state-store.js';
import type { RunWindow } from '../core/window.js';
import { copyToParquetSql, countRowsSql, replaySql } from '../dialects/duckdb/staging.js';

/** Where a replay takes the rows from: the run's kept staged input, or the rows stored with the rejects. */
export type ReplaySource = 'staged-parquet' | 'reject-rows';

export interface ReplayPlan {
  readonly run: RunRecord;
  readonly rejects: readonly StoredReject[];
  /** Rejects that cannot be re-sent: no staged input and no source row stored with them. */
  readonly notReplayable: readonly StoredReject[];
  readonly source: ReplaySource;
  readonly stagedFile: string | null;
}

export interface ReplayResult {
  readonly plan: ReplayPlan;
  readonly inputs: ReplayInputs;
  readonly report: RunReport;
  /** Original rejects resolved: their rows are now in Dataverse (`upserted`) or a newer version is (`stale`). */
  readonly resolved: number;
  readonly upserted: number;
  /** Original rejects rejected again; the replay run's rejects carry the new reasons. */
  readonly stillRejected: number;
}

export interface ReplayOptions extends Omit<RunOptions, 'mode' | 'window' | 'range' | 'parentRunId'> {
  readonly runId: string;
  readonly reason?: string;
  /**
   * Use the pipeline definition and metadata snapshots as they are now, instead of those the original run used
   * (kept by the runner), e.g. after a mapping fix. Default `false`: the replay builds the same requests.
   */
  readonly reResolve?: boolean;
}

/** What a replay builds its requests from. */
export interface ReplayInputs {
  /** The definition (mapping) used: the original run's kept copy, or the current one. */
  readonly definition: 'original' | 'current';
  /** The metadata snapshot folder used (the original run's kept copy), or null for the configured one. */
  readonly metadata: string | null;
}

const REPLAY_SOURCE = 'replay-source';
const REPLAY_OUTCOME = 'replay-outcome';

/** The staged input a run kept for replays (written by the inbound reader when a run has rejects). */
export function stagedInputOf(stateDir: string, runId: string): string {
  return path.join(stateDir, 'runs', runId, 'staged.parquet');
}

/** Decides what a replay re-sends; changes nothing (`--dry-run` prints this). */
export async function planReplay(def: PipelineDefinition, options: ReplayOptions): Promise<ReplayPlan> {
  const run = options.state.getRun(options.runId);
  if (!run) throw new UsageError(`Run \`${options.runId}\` is not in the state store; list runs with \`ferry runs\`.`);
  if (run.pipeline !== def.name)
    throw new UsageError(`Run \`${run.id}\` belongs to \`${run.pipeline}\`, not \`${def.name}\`.`);
  if (def.direction !== 'inbound') {
    throw new UsageError(
      `Run \`${run.id}\` is of outbound pipeline \`${def.name}\`; replay re-sends rows to Dataverse (inbound only). Backfill its window instead.`,
    );
  }
  let open = options.state.listRejects({
    runId: run.id,
    status: 'open',
    ...(options.reason ? { reason: options.reason } : {}),
  });
  // Rows an earlier replay rejected again live on in that replay's rejects: follow the chain to them.
  let target = run;
  while (open.length === 0) {
    const child = options.state
      .listRuns({ pipeline: def.name, limit: 500 })
      .find((r) => r.mode === 'replay' && r.parentRunId === target.id && r.status !== 'running');
    if (!child) break;
    target = child;
    open = options.state.listRejects({
      runId: target.id,
      status: 'open',
      ...(options.reason ? { reason: options.reason } : {}),
    });
  }
  if (target !== run)
    options.log.info(`Run \`${run.id}\` was replayed before; replaying the rows still open in \`${target.id}\`.`);
  const stagedFile = stagedInputOf(options.config.state, target.id);
  const hasStaged = await fs.stat(stagedFile).then(
    (s) => s.isFile(),
    () => false,
  );
  const locatable = (r: StoredReject) => placeOf(r) !== null || rowIdOf(r) !== null;
  const hasSourceRow = (r: StoredReject) =>
    r.row !== null && typeof r.row === 'object' && !('payload' in (r.row as object)) && Boolean(r.sourceFile);
  const replayable = (r: StoredReject) => (hasStaged ? locatable(r) : hasSourceRow(r));
  return {
    run: target,
    rejects: open.filter(replayable),
    notReplayable: open.filter((r) => !replayable(r)),
    source: hasStaged ? 'staged-parquet' : 'reject-rows',
    stagedFile: hasStaged ? stagedFile : null,
  };
}

/**
 * Re-sends the rejected rows of a run through the pipeline's own conversion and upsert stages, as a run in
 * `replay` mode with `parentRunId`: the rows come from the run's kept staged input (same values, same lineage, so
 * the same request is built), or else from the source rows stored with the rejects. Afterwards the original
 * rejects of rows that went through are resolved; those rejected again are superseded by the replay's own rejects,
 * which carry the new reason and can be replayed in turn.
 */
export async function runReplay(current: PipelineDefinition, options: ReplayOptions): Promise<ReplayResult> {
  const plan = await planReplay(current, options);
  if (plan.rejects.length === 0) {
    throw new FerryError(
      'replay.nothing',
      `Run \`${plan.run.id}\` has no open rejects${options.reason ? ` with reason \`${options.reason}\`` : ''} that can be replayed; see \`ferry rejects --run ${plan.run.id}\`.`,
    );
  }
  const pinned: { def: PipelineDefinition; metadata: string | null; snapshotId?: string } = options.reResolve
    ? { def: current, metadata: null }
    : await originalInputs(current, plan.run, options);
  const def = pinned.def;
  const config = pinned.metadata ? { ...options.config, metadata: pinned.metadata } : options.config;
  const inputs: ReplayInputs = { definition: def === current ? 'current' : 'original', metadata: pinned.metadata };
  const sourceIndex = def.stages.findIndex((s) => options.registry.get(s.kind)?.plan);
  if (sourceIndex < 0)
    throw new FerryError(
      'replay.no_source',
      `Pipeline \`${def.name}\` has no source stage to replace with the replayed rows.`,
    );
  const passed: Array<{ file: string | null; row: number | null; rowId: string }> = [];
  const replayDef: PipelineDefinition = {
    ...def,
    stages: [
      { kind: REPLAY_SOURCE } as StageSpec,
      ...def.stages.slice(sourceIndex + 1),
      { kind: REPLAY_OUTCOME } as StageSpec,
    ],
  };
  const registry: StageRegistry = {
    get: (kind) =>
      kind === REPLAY_SOURCE
        ? replaySourceStage(plan, pinned.snapshotId)
        : kind === REPLAY_OUTCOME
          ? replayOutcomeStage(passed)
          : options.registry.get(kind),
  };
  const files = [...new Set(plan.rejects.map((r) => r.sourceFile).filter((f): f is string => Boolean(f)))];
  const window: RunWindow = {
    source: plan.run.window.source,
    items: files.map((id) => ({ id })),
    cursorBefore: null,
    cursorAfter: null,
  };
  const report = await runPipeline(replayDef, {
    ...options,
    config,
    registry,
    mode: 'replay',
    window,
    parentRunId: plan.run.id,
  });
  if (report.status !== 'succeeded' && report.status !== 'rejects_exceeded') {
    return { plan, inputs, report, resolved: 0, upserted: 0, stillRejected: 0 };
  }
  const againPlaces = new Set(options.state.listRejects({ runId: report.runId }).map(placeOf));
  const passedPlaces = new Set(passed.map((p) => `${p.file}#${p.row}`));
  const resolved: number[] = [];
  const superseded: number[] = [];
  let upserted = 0;
  for (const r of plan.rejects) {
    const place = placeOf(r);
    if (place !== null && againPlaces.has(place)) superseded.push(r.id);
    else {
      resolved.push(r.id);
      if (place !== null && passedPlaces.has(place)) upserted += 1;
    }
  }
  options.state.resolveRejects(resolved, report.runId);
  options.state.supersedeRejectsById(superseded, report.runId);
  return { plan, inputs, report, resolved: resolved.length, upserted, stillRejected: superseded.length };
}

/**
 * The definition and metadata snapshot the first run of the chain used (a replay of a replay goes back to it), as
 * kept by the runner; the current ones where nothing was kept (runs from before this existed).
 */
async function originalInputs(
  current: PipelineDefinition,
  run: RunRecord,
  options: ReplayOptions,
): Promise<{ def: PipelineDefinition; metadata: string | null; snapshotId?: string }> {
  let root = run;
  while (root.mode === 'replay' && root.parentRunId) {
    const parent = options.state.getRun(root.parentRunId);
    if (!parent) break;
    root = parent;
  }
  let def = current;
  const text = await fs
    .readFile(path.join(options.config.state, 'runs', root.id, RUN_DEFINITION_FILE), 'utf8')
    .catch(() => null);
  if (text) {
    const kept = JSON.parse(text) as PipelineDefinition;
    if (kept.name === current.name && Array.isArray(kept.stages)) def = kept;
  } else {
    options.log.warn(
      `Run \`${root.id}\` kept no definition; the replay uses the current mapping of \`${current.name}\`.`,
    );
  }
  const snapshotId = typeof root.metrics.metadataSnapshot === 'string' ? root.metrics.metadataSnapshot : undefined;
  const dir = snapshotId ? path.join(options.config.state, METADATA_SNAPSHOTS_DIR, snapshotId) : null;
  const exists = dir
    ? await fs.stat(dir).then(
        (s) => s.isDirectory(),
        () => false,
      )
    : false;
  if (!exists)
    options.log.warn(`Run \`${root.id}\` kept no metadata snapshot; the replay uses \`${options.config.metadata}\`.`);
  return { def, metadata: exists ? dir : null, ...(exists && snapshotId ? { snapshotId } : {}) };
}

function rowIdOf(r: StoredReject): string | null {
  const row = r.row as { __row_id?: unknown } | null | undefined;
  return row && row.__row_id !== undefined && row.__row_id !== null ? String(row.__row_id) : null;
}

/** The key that finds a rejected row again: its place in the source file (`<file>#<row>`), or null if not recorded. */
function placeOf(r: StoredReject): string | null {
  return r.sourceFile && r.rowNumber !== null && r.rowNumber !== undefined ? `${r.sourceFile}#${r.rowNumber}` : null;
}

/** Stands in for the source stage: fills `staged` with exactly the rows to re-send, lineage kept. */
function replaySourceStage(plan: ReplayPlan, snapshotId: string | undefined): StageImpl {
  return {
    kind: REPLAY_SOURCE,
    async run(_spec, ctx: StageContext) {
      const staged = STAGING_TABLES.staged;
      if (plan.stagedFile) {
        // Same values and lineage as the original run: the conversion builds the same request.
        const hasPlace = (r: StoredReject) => placeOf(r) !== null;
        const wanted = plan.rejects.filter(hasPlace);
        const byRowId = plan.rejects
          .filter((r) => !hasPlace(r))
          .map(rowIdOf)
          .filter((x): x is string => x !== null);
        await ctx.staging.run(replaySql.placesTable);
        const places = wanted.map((r) => ({ file: r.sourceFile!, row: Number(r.rowNumber) }));
        for (const insert of replaySql.insertPlaces(places)) await ctx.staging.run(insert);
        await ctx.staging.run(
          replaySql.stageFromParquet(
            staged,
            plan.stagedFile,
            byRowId.map((id) => BigInt(id)),
          ),
        );
      } else {
        // No staged input kept: rebuild the rows from what the error store holds (source values, lineage).
        const file = path.join(ctx.runDir, 'replay-rows.jsonl');
        const lines = plan.rejects.map((r, i) =>
          JSON.stringify({
            ...(r.row as object),
            __row_id: i + 1,
            __run_id: ctx.runId,
            __source_file: r.sourceFile,
            __row_number: r.rowNumber,
          }),
        );
        await fs.writeFile(file, `${lines.join('\n')}\n`);
        await ctx.staging.run(replaySql.stageFromJsonLines(staged, file));
      }
      const [row] = await ctx.staging.all<{ n: bigint }>(countRowsSql(staged));
      const n = Number(row?.n ?? 0);
      ctx.counts.read += n;
      ctx.counts.staged += n;
      ctx.metrics.replayOf = plan.run.id;
      ctx.metrics.replaySource = plan.source;
      if (snapshotId) ctx.metrics.metadataSnapshot = snapshotId;
      ctx.progress.update('staging', ctx.counts);
      // Keep this run's input too (whatever the outcome), so rows rejected again can be replayed from it.
      const target = path.join(ctx.runDir, 'staged.parquet');
      await ctx.staging.run(copyToParquetSql(staged, `${target}.tmp`));
      await fs.rename(`${target}.tmp`, target);
    },
  };
}

/** Runs last: notes which replayed rows Dataverse accepted (the upsert stage lists them in `upserted`). */
function replayOutcomeStage(passed: Array<{ file: string | null; row: number | null; rowId: string }>): StageImpl {
  return {
    kind: REPLAY_OUTCOME,
    async run(_spec, ctx: StageContext) {
      const [exists] = await ctx.staging.all<{ n: bigint }>(
        ctx.staging.dialect.tableExistsSql(STAGING_TABLES.upserted),
      );
      if (!exists || Number(exists.n) === 0) return;
      const rows = await ctx.staging.all<{ f: string | null; n: bigint | null; id: bigint }>(
        replaySql.accepted(STAGING_TABLES.upserted, STAGING_TABLES.staged),
      );
      for (const r of rows) passed.push({ file: r.f, row: r.n === null ? null : Number(r.n), rowId: String(r.id) });
      ctx.metrics.replayUpserted = rows.length;
    },
  };
}
