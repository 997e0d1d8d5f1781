import { createHash } from 'node:crypto';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { FerryConfig } from './config.js';
import { emptyCounts, type RunCounts } from './counts.js';
import { describeError, FerryError, isRetryable } from './errors.js';
import { killPoint } from './kill-points.js';
import type { Lake } from './lake.js';
import type { Logger } from './log.js';
import type { PipelineDefinition, RunMode, StageSpec } from './pipeline.js';
import type { RejectRecord } from './rejects.js';
import type { PlanContext, Progress, RunServices, StageContext, StageImpl } from './stage.js';
import type { StagingEngine } from './staging.js';
import type { Lease, RunRecord, RunStatus, StateStore } from './state-store.js';
import { type TelemetrySpan, telemetry } from './telemetry.js';
import { HELD_BACK_ITEMS, type RunWindow } from './window.js';

export interface StageRegistry {
  get(kind: string): StageImpl | undefined;
}

export interface RunOptions {
  readonly mode: RunMode;
  readonly config: FerryConfig;
  readonly lake: Lake;
  readonly state: StateStore;
  readonly registry: StageRegistry;
  readonly services?: RunServices;
  readonly log: Logger;
  readonly progress?: Progress;
  /** Aborting asks the run to stop after the current batch. */
  readonly signal?: AbortSignal;
  readonly range?: { readonly from: string; readonly to: string };
  readonly reprocess?: boolean;
  /** A window fixed by the caller (backfill windows, replays) instead of planning one. */
  readonly window?: RunWindow;
  /** Lease time to live; renewed while the run goes on. Default 2 minutes. */
  readonly leaseTtlMs?: number;
  /** Opens the staging engine; overrides `services.openStaging` (one of the two is required). */
  readonly openStaging?: (runDir: string) => Promise<StagingEngine>;
  /** Seeds `ctx.shared` (replay passes the rows to re-send this way). */
  readonly shared?: ReadonlyMap<string, unknown>;
  readonly parentRunId?: string;
  /**
   * The caller judges the reject threshold over more than this run (a backfill judges its whole range): the run
   * finishes as `succeeded` with its rejects counted, its commit hooks run, and the caller decides.
   */
  readonly rejectThresholdJudgedByCaller?: boolean;
}

/** What `ferry run --json` prints for one run. */
export interface RunReport {
  readonly runId: string;
  readonly pipeline: string;
  readonly mode: RunMode;
  readonly status: RunStatus;
  readonly window: {
    readonly source: string;
    readonly items: number;
    readonly first: string | null;
    readonly last: string | null;
    readonly cursorBefore: string | null;
    readonly cursorAfter: string | null;
  };
  readonly counts: RunCounts;
  readonly rejectsByReason: Record<string, number>;
  readonly durationMs: number;
  readonly error?: { readonly code: string; readonly message: string; readonly retryable: boolean };
  readonly metrics: Record<string, unknown>;
}

const noProgress: Progress = { update() {} };

/** The lease name that keeps two runs of one pipeline apart. */
export function pipelineLeaseName(pipeline: string): string {
  return `pipeline:${pipeline}`;
}

function holderName(): string {
  return `${os.hostname()}:${process.pid}`;
}

/**
 * True when a lease's holder is a process on this machine that no longer exists (killed with SIGKILL, so it could
 * not release it). Holders on other machines are never judged: their lease simply expires.
 */
export function isDeadHolder(lease: Lease): boolean {
  const [host, pidText] = [
    lease.holder.slice(0, lease.holder.lastIndexOf(':')),
    lease.holder.slice(lease.holder.lastIndexOf(':') + 1),
  ];
  const pid = Number(pidText);
  if (host !== os.hostname() || !Number.isInteger(pid) || pid <= 0 || pid === process.pid) return false;
  try {
    process.kill(pid, 0);
    return false;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'ESRCH';
  }
}

/**
 * Takes a lease whose holder died on this machine instead of waiting for it to expire, so the run after a crash
 * does not skip for a whole TTL. Acquiring "as of" the dead lease's expiry is atomic in the store: of two
 * processes racing for it, only the first sees it expired.
 */
function takeOverDeadLease(
  state: StateStore,
  leaseName: string,
  holder: string,
  ttl: number,
  log: Logger,
): Lease | null {
  const current = state.getLease(leaseName);
  if (!current || !isDeadHolder(current)) return null;
  const lease = state.acquireLease(leaseName, holder, ttl, current.expiresAtMs);
  if (lease) {
    // Expiry counted from the dead lease's, so renew at once to count it from now.
    state.renewLease(leaseName, lease.token, ttl);
    log.warn(`Took over the lease of \`${leaseName}\` from \`${current.holder}\`, which is no longer running.`);
  }
  return lease;
}

/**
 * Runs one pipeline once: takes its lease, plans (or takes) a fixed window, runs the stages, and only then
 * records the items as processed and moves the cursor. A killed run leaves the cursor where it was, so the next
 * run repeats the window; every sink is idempotent, so repeating is safe.
 */
export async function runPipeline(def: PipelineDefinition, options: RunOptions): Promise<RunReport> {
  if (!options.openStaging && !options.services?.openStaging) {
    throw new FerryError(
      'run.no_staging',
      `Run of \`${def.name}\` has no staging engine: pass \`services.openStaging\` (e.g. \`openRunStaging\` from src/dialects/duckdb/driver.ts) or \`openStaging\`.`,
    );
  }
  return telemetry().inSpan(
    `run ${def.name}`,
    'internal',
    { 'ferry.pipeline': def.name, 'ferry.mode': options.mode },
    async (span) => {
      const report = await runPipelineOnce(def, options);
      reportRunTelemetry(span, report);
      return report;
    },
  );
}

/** The run's outcome on its span, as metrics and as one log record. */
function reportRunTelemetry(span: TelemetrySpan, report: RunReport): void {
  const sink = telemetry();
  const m = report.metrics;
  const attributes = {
    'ferry.run_id': report.runId,
    'ferry.pipeline': report.pipeline,
    'ferry.mode': report.mode,
    'ferry.status': report.status,
    'ferry.items': report.window.items,
    ...Object.fromEntries(Object.entries(report.counts).map(([k, v]) => [`ferry.rows.${k}`, v])),
    'ferry.dataverse.requests': typeof m.requests === 'number' ? m.requests : undefined,
    'ferry.dataverse.throttled': typeof m.throttled429Total === 'number' ? m.throttled429Total : undefined,
    'ferry.dataverse.max_retry_after_s': typeof m.maxRetryAfterSec === 'number' ? m.maxRetryAfterSec : undefined,
    'ferry.rows_per_sec': typeof m.rowsPerSec === 'number' ? m.rowsPerSec : undefined,
    'ferry.duration_ms': report.durationMs,
  };
  span.setAttributes(attributes);
  if (report.error) span.fail(`${report.error.code}: ${report.error.message}`);
  const byPipeline = { 'ferry.pipeline': report.pipeline, 'ferry.status': report.status };
  sink.count('ferry.runs', 1, byPipeline);
  sink.record('ferry.run.duration_ms', report.durationMs, byPipeline);
  for (const [outcome, rows] of Object.entries(report.counts))
    if (rows) sink.count('ferry.rows', rows, { 'ferry.pipeline': report.pipeline, 'ferry.outcome': outcome });
  sink.log(
    report.status === 'failed'
      ? 'error'
      : report.status === 'succeeded' || report.status === 'skipped'
        ? 'info'
        : 'warn',
    `Run ${report.runId} of ${report.pipeline} ${report.status}: read ${report.counts.read}, upserted ${report.counts.upserted}, rejected ${report.counts.rejected}, written ${report.counts.written}`,
    attributes,
  );
}

async function runPipelineOnce(def: PipelineDefinition, options: RunOptions): Promise<RunReport> {
  const { state, log } = options;
  const holder = holderName();
  const ttl = options.leaseTtlMs ?? 120_000;
  const leaseName = pipelineLeaseName(def.name);
  const lease = state.acquireLease(leaseName, holder, ttl) ?? takeOverDeadLease(state, leaseName, holder, ttl, log);
  if (!lease) {
    const current = state.getLease(leaseName);
    const reason = `Pipeline \`${def.name}\` is already running (lease held by \`${current?.holder ?? 'unknown'}\` until ${current ? new Date(current.expiresAtMs).toISOString() : '?'}); skipped.`;
    const skipped = state.recordSkipped(def.name, options.mode, holder, reason);
    log.info(reason, { pipeline: def.name, runId: skipped.id });
    return toReport(skipped);
  }

  const leaseLost = new AbortController();
  const leaseTimer = setInterval(
    () => {
      if (!state.renewLease(leaseName, lease.token, ttl)) {
        log.error(`Lost the lease of \`${def.name}\`; stopping after the current batch.`);
        leaseLost.abort();
      }
    },
    Math.max(1000, Math.floor(ttl / 3)),
  );
  leaseTimer.unref();
  const signal = options.signal ? AbortSignal.any([options.signal, leaseLost.signal]) : leaseLost.signal;

  let staging: StagingEngine | undefined;
  let run: RunRecord | undefined;
  const counts = emptyCounts();
  const metrics: Record<string, unknown> = {};
  const rejectsByReason: Record<string, number> = {};
  // Wall time per stage, kept with the run (`metrics.stageMs`).
  const stageMs: Record<string, number> = {};
  metrics.stageMs = stageMs;
  try {
    // We hold the lease, so any run still marked running belongs to a process that died.
    const abandoned = state.abandonRunningRuns(def.name);
    if (abandoned.length)
      log.warn(`Earlier run(s) ${abandoned.join(', ')} of \`${def.name}\` did not finish; repeating their window.`);

    const window = options.window ?? (await planWindow(def, options));
    run = state.startRun({
      pipeline: def.name,
      mode: options.mode,
      window,
      holder,
      parentRunId: options.parentRunId ?? null,
    });
    const runDir = path.join(options.config.state, 'runs', run.id);
    const hasWork = window.items.length > 0 || options.window !== undefined;
    // A run folder only for runs with work: an empty tick every 15 minutes leaves nothing behind.
    if (hasWork) await fs.mkdir(runDir, { recursive: true });
    if (hasWork && options.mode !== 'replay') await keepRunInputs(runDir, def, options.config, metrics, log);
    const runId = run.id;
    const commitHooks: Array<() => Promise<void>> = [];
    const ctxBase = {
      runId,
      pipeline: def,
      mode: options.mode,
      window,
      config: options.config,
      lake: options.lake,
      state,
      services: options.services ?? {},
      counts,
      metrics,
      log,
      progress: options.progress ?? noProgress,
      signal,
      runDir,
      shared: new Map<string, unknown>(options.shared ?? []),
      reject(records: readonly RejectRecord[]) {
        if (records.length === 0) return;
        state.addRejects(runId, def.name, records);
        counts.rejected += records.length;
        for (const r of records) rejectsByReason[r.reason] = (rejectsByReason[r.reason] ?? 0) + 1;
      },
      onCommit(hook: () => Promise<void>) {
        commitHooks.push(hook);
      },
    };

    if (hasWork) {
      const openServiceStaging = options.services?.openStaging;
      staging = await (options.openStaging ?? ((dir: string) => openServiceStaging!(dir, options.config)))(runDir);
      const ctx: StageContext = { ...ctxBase, staging };
      for (const spec of def.stages) {
        if (signal.aborted)
          throw new FerryError(
            'run.interrupted',
            `Run of \`${def.name}\` was stopped before stage \`${spec.kind}\`; the next run repeats its window.`,
          );
        const stageStarted = performance.now();
        await telemetry().inSpan(
          `stage ${spec.kind}`,
          'internal',
          { 'ferry.run_id': runId, 'ferry.pipeline': def.name, 'ferry.stage': spec.kind },
          () => stageImpl(options.registry, spec).run(spec, ctx),
        );
        stageMs[spec.kind] = Math.round(performance.now() - stageStarted);
        telemetry().record('ferry.stage.duration_ms', stageMs[spec.kind]!, {
          'ferry.pipeline': def.name,
          'ferry.stage': spec.kind,
        });
        killPoint(`after-stage:${spec.kind}`);
      }
    }

    // A replay sends only rows that failed before, so a high reject share is expected; its commit hooks (e.g. the
    // versions applied per key) must still run for the rows that went through, as no later run repeats them.
    const withinThreshold =
      options.mode === 'replay' ||
      options.rejectThresholdJudgedByCaller === true ||
      rejectsWithinThreshold(def, counts);
    const commitStarted = performance.now();
    if (withinThreshold) for (const hook of commitHooks) await hook();
    stageMs.commitHooks = Math.round(performance.now() - commitStarted);
    const heldBack = ctxBase.shared.get(HELD_BACK_ITEMS) as Set<string> | undefined;
    // Every input held back: nothing was done, and saying "succeeded" would hide it.
    const allHeldBack = window.items.length > 0 && (heldBack?.size ?? 0) >= window.items.length;
    const status: RunStatus = !withinThreshold ? 'rejects_exceeded' : allHeldBack ? 'held_back' : 'succeeded';
    const movesState = withinThreshold && (options.mode === 'scheduled' || options.mode === 'manual');
    // Rejects of earlier, unfinished or repeated runs over the same items are replaced by this run's.
    if (options.mode !== 'replay')
      state.supersedeRejects(
        def.name,
        window.items.map((i) => i.id),
        runId,
      );
    killPoint('before-commit');
    // Named in the run's metrics too, so reports can list them without the window.
    if (heldBack?.size) metrics.heldBackFiles = [...heldBack];
    const finished = state.finishRun(runId, {
      heldBack: heldBack ? [...heldBack] : [],
      status,
      counts,
      rejectsByReason,
      metrics,
      markProcessed: movesState,
      moveCursor: movesState,
      error: withinThreshold
        ? allHeldBack
          ? {
              code: 'run.held_back',
              message: `All ${window.items.length} input(s) of \`${def.name}\` were held back, so nothing was read; they are tried again next run. See why with \`ferry rejects --run ${runId}\`.`,
            }
          : null
        : {
            code: 'rejects.threshold',
            message: `Rejected ${counts.rejected} of ${counts.read} rows, over the pipeline's threshold (${def.rejectThreshold.maxRejectedRatio * 100}%); the window will be repeated. Inspect with \`ferry rejects --run ${runId}\`.`,
          },
    });
    killPoint('after-commit');
    return toReport(finished);
  } catch (error) {
    const code = error instanceof FerryError ? error.code : 'run.failed';
    const message = describeError(error);
    if (!run) {
      log.error(`Planning \`${def.name}\` failed: ${message}`);
      throw error;
    }
    const finished = state.finishRun(run.id, {
      status: 'failed',
      counts,
      rejectsByReason,
      metrics,
      markProcessed: false,
      moveCursor: false,
      error: { code, message },
    });
    return { ...toReport(finished), error: { code, message, retryable: isRetryable(error) } };
  } finally {
    clearInterval(leaseTimer);
    if (staging) await staging.close().catch(() => undefined);
    state.releaseLease(leaseName, lease.token);
  }
}

/** The definition a run used, kept in its run folder so a replay builds the same requests. */
export const RUN_DEFINITION_FILE = 'definition.json';

/** Where content-addressed copies of the Dataverse metadata snapshots runs used are kept (`<state>/<this>/<hash>`). */
export const METADATA_SNAPSHOTS_DIR = 'metadata-snapshots';

/**
 * Keeps what a replay needs to rebuild a run's requests: the pipeline definition (mapping) in the run folder and,
 * for inbound pipelines, the metadata snapshots, stored once per content hash (runs every 15 minutes share one
 * copy until the metadata changes). The hash goes into the run's metrics as `metadataSnapshot`. Best effort: a
 * failure here is logged and never fails the run.
 */
export async function keepRunInputs(
  runDir: string,
  def: PipelineDefinition,
  config: FerryConfig,
  metrics: Record<string, unknown>,
  log: Logger,
): Promise<void> {
  try {
    await fs.writeFile(path.join(runDir, RUN_DEFINITION_FILE), JSON.stringify(def, null, 2));
    if (def.direction !== 'inbound') return;
    const names = (await fs.readdir(config.metadata).catch(() => [] as string[]))
      .filter((n) => n.endsWith('.json'))
      .sort();
    if (names.length === 0) return;
    const hash = createHash('sha256');
    const files: Array<[string, Buffer]> = [];
    for (const name of names) {
      const bytes = await fs.readFile(path.join(config.metadata, name));
      hash.update(name).update('\0').update(bytes).update('\0');
      files.push([name, bytes]);
    }
    const id = hash.digest('hex').slice(0, 16);
    const target = path.join(config.state, METADATA_SNAPSHOTS_DIR, id);
    const kept = () =>
      fs.stat(target).then(
        () => true,
        () => false,
      );
    if (!(await kept())) {
      // Written aside and renamed, so a snapshot folder is complete or absent.
      const temp = `${target}.${process.pid}.tmp`;
      await fs.mkdir(temp, { recursive: true });
      for (const [name, bytes] of files) await fs.writeFile(path.join(temp, name), bytes);
      await fs.rename(temp, target).catch(async (error: NodeJS.ErrnoException) => {
        await fs.rm(temp, { recursive: true, force: true });
        // Another process kept the same snapshot first.
        if (!(await kept())) throw error;
      });
    }
    metrics.metadataSnapshot = id;
  } catch (error) {
    log.warn(`Could not keep the definition/metadata of this run for replays: ${describeError(error)}`);
  }
}

/** Plans the window by asking the pipeline's source stage (the first stage that plans). */
export async function planWindow(def: PipelineDefinition, options: Omit<RunOptions, 'window'>): Promise<RunWindow> {
  const source = def.stages.find((s) => stageImpl(options.registry, s).plan);
  if (!source)
    throw new FerryError('pipeline.no_source', `Pipeline \`${def.name}\` has no source stage that can plan a window.`);
  const ctx: PlanContext = {
    pipeline: def,
    mode: options.mode,
    config: options.config,
    lake: options.lake,
    state: options.state,
    log: options.log,
    ...(options.range ? { range: options.range } : {}),
    ...(options.reprocess ? { reprocess: true } : {}),
  };
  return stageImpl(options.registry, source).plan!(source, ctx);
}

function stageImpl(registry: StageRegistry, spec: StageSpec): StageImpl {
  const impl = registry.get(spec.kind);
  if (!impl)
    throw new FerryError(
      'pipeline.unknown_stage',
      `Stage kind \`${spec.kind}\` is not registered; check the pipeline definition.`,
    );
  return impl;
}

/** The pipeline's reject threshold over `counts` (one run's, or a backfill's whole range). */
export function rejectsWithinThreshold(
  def: Pick<PipelineDefinition, 'rejectThreshold'>,
  counts: Pick<RunCounts, 'read' | 'rejected'>,
): boolean {
  const { maxRejectedRatio, maxRejected } = def.rejectThreshold;
  if (maxRejected !== undefined && counts.rejected > maxRejected) return false;
  if (counts.read === 0) return true;
  return counts.rejected / counts.read <= maxRejectedRatio;
}

function toReport(run: RunRecord): RunReport {
  const items = run.window.items ?? [];
  return {
    runId: run.id,
    pipeline: run.pipeline,
    mode: run.mode,
    status: run.status,
    window: {
      source: run.window.source,
      items: items.length,
      first: items[0]?.id ?? null,
      last: items.at(-1)?.id ?? null,
      cursorBefore: run.window.cursorBefore,
      cursorAfter: run.window.cursorAfter,
    },
    counts: run.counts,
    rejectsByReason: run.rejectsByReason,
    durationMs: run.durationMs ?? 0,
    ...(run.error ? { error: { ...run.error, retryable: false } } : {}),
    metrics: run.metrics,
  };
}
