import type { RunCounts } from '../core/counts.js';
import { UsageError } from '../core/errors.js';
import { killPoint } from '../core/kill-points.js';
import type { PipelineDefinition } from '../core/pipeline.js';
import {
  isDeadHolder,
  pipelineLeaseName,
  planWindow,
  type RunOptions,
  type RunReport,
  rejectsWithinThreshold,
  runPipeline,
} from '../core/runner.js';
import type { WindowItem } from '../core/window.js';
import { type Clock, systemClock } from './clock.js';

/** One slice of a backfill range: `[from, to)` as ISO-8601 to the second (the form the source stages compare). */
export interface BackfillWindow {
  readonly index: number;
  readonly from: string;
  readonly to: string;
}

/** Progress of one window, kept in the state store's kv slots so a killed backfill resumes where it stopped. */
export interface BackfillWindowProgress {
  readonly runId: string;
  readonly status: RunReport['status'];
  readonly items: number;
  readonly counts: RunCounts;
  readonly finishedAt: string;
}

export interface BackfillOptions extends Omit<RunOptions, 'mode' | 'range' | 'window' | 'reprocess'> {
  readonly from: string;
  readonly to: string;
  /** Window length in milliseconds. Default 15 minutes. */
  readonly windowMs?: number;
  /** Called after each window (done now or found done from an earlier attempt). */
  readonly onWindow?: (result: BackfillWindowResult) => void;
  readonly clock?: Clock;
  /** How long to wait for the pipeline's lease when a scheduled run holds it. Default 15 minutes. */
  readonly leaseWaitMs?: number;
}

export interface BackfillWindowResult extends BackfillWindow {
  /**
   * `done` now, `already-done` by an earlier (killed) attempt, or how it failed. `rejects_exceeded`: the window has
   * rejects and the range as a whole is over the threshold; `unjudged`: it has rejects and the backfill stopped (a
   * window failed, or a signal) before the range could be judged. Neither is recorded: the same command runs it again.
   */
  readonly outcome: 'done' | 'already-done' | 'failed' | 'rejects_exceeded' | 'unjudged' | 'stopped';
  readonly runId: string | null;
  readonly items: number;
  readonly counts: RunCounts | null;
  readonly error?: RunReport['error'];
}

export interface BackfillResult {
  readonly pipeline: string;
  readonly job: string;
  readonly windows: readonly BackfillWindowResult[];
  /** `succeeded`, `rejects_exceeded` (the whole range over the threshold; all windows ran), `failed` or `stopped`. */
  readonly status: 'succeeded' | 'rejects_exceeded' | 'failed' | 'stopped';
}

/** A window of a dry run with what the source stage would read in it. */
export interface BackfillPlanWindow extends BackfillWindow {
  readonly items: readonly WindowItem[];
  readonly done: boolean;
}

const MIN_WINDOW_MS = 1000;

/** Parses a `--from`/`--to` value (ISO-8601 date or date-time; no zone means UTC) into epoch milliseconds. */
export function parseTime(text: string, flag: string): number {
  const withZone = /^\d{4}-\d{2}-\d{2}T[\d:.]+$/.test(text) ? `${text}Z` : text;
  const ms = Date.parse(withZone);
  if (Number.isNaN(ms))
    throw new UsageError(
      `${flag} \`${text}\` is not a time; write ISO-8601, e.g. \`2026-11-26T09:00:00Z\` or \`2026-11-26\`.`,
    );
  return ms;
}

/** ISO-8601 to the second with `Z`, the form delta file timestamps take, so string comparison orders correctly. */
export function isoSeconds(ms: number): string {
  return new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z');
}

/** Splits `[fromMs, toMs)` into windows of `windowMs`, counted from `fromMs`; the last one may be shorter. */
export function planBackfillWindows(fromMs: number, toMs: number, windowMs: number): BackfillWindow[] {
  if (!(toMs > fromMs))
    throw new UsageError(`--to \`${isoSeconds(toMs)}\` must be after --from \`${isoSeconds(fromMs)}\`.`);
  if (windowMs < MIN_WINDOW_MS) throw new UsageError(`--window must be at least 1s; got \`${windowMs}ms\`.`);
  const count = Math.ceil((toMs - fromMs) / windowMs);
  if (count > 100_000)
    throw new UsageError(`The range holds ${count} windows; use a larger --window (e.g. \`1h\` or \`1d\`).`);
  return Array.from({ length: count }, (_, index) => ({
    index,
    from: isoSeconds(fromMs + index * windowMs),
    to: isoSeconds(Math.min(toMs, fromMs + (index + 1) * windowMs)),
  }));
}

/** kv namespace of a pipeline's backfill progress. */
export function backfillNamespace(pipeline: string): string {
  return `backfill:${pipeline}`;
}

/** Identity of a backfill request: the same command after a kill finds its progress again. */
export function backfillJob(from: string, to: string, windowMs: number): string {
  return `${from}..${to}/${windowMs}ms`;
}

function progressKey(job: string, window: BackfillWindow): string {
  return `${job}#${String(window.index).padStart(6, '0')}`;
}

/**
 * Moves the window edges of a backfill off the inside of `spans` (input-time spans `[first, last]` of output a sink
 * already holds, e.g. the warehouse's current windows): an edge inside a span is dropped, and the range's own ends
 * move out to the span's ends, so every window either covers a span whole or misses it. Windows are renumbered.
 */
export function alignBackfillWindows(
  windows: readonly BackfillWindow[],
  spans: ReadonlyArray<{ readonly first: string; readonly last: string }>,
): BackfillWindow[] {
  if (windows.length === 0 || spans.length === 0) return [...windows];
  const ranges = spans.map((s) => ({ first: Date.parse(s.first), last: Date.parse(s.last) }));
  // An edge at `c` splits a span when items on both sides of it belong to the span: first < c <= last.
  const splits = (c: number) => ranges.find((r) => r.first < c && c <= r.last);
  let from = Date.parse(windows[0]!.from);
  let to = Date.parse(windows.at(-1)!.to);
  for (let moved = true; moved; ) {
    moved = false;
    const a = splits(from);
    if (a) {
      from = a.first;
      moved = true;
    }
    const b = splits(to);
    if (b) {
      to = b.last + 1000;
      moved = true;
    }
  }
  const inner = windows
    .slice(1)
    .map((w) => Date.parse(w.from))
    .filter((c) => c > from && c < to && !splits(c));
  const edges = [from, ...inner, to];
  return edges.slice(1).map((end, index) => ({ index, from: isoSeconds(edges[index]!), to: isoSeconds(end) }));
}

async function windowsOf(
  def: PipelineDefinition,
  options: BackfillOptions,
): Promise<{
  job: string;
  windows: BackfillWindow[];
}> {
  const fromMs = parseTime(options.from, '--from');
  const toMs = parseTime(options.to, '--to');
  const windowMs = options.windowMs ?? 15 * 60_000;
  const planned = planBackfillWindows(fromMs, toMs, windowMs);
  const spans: Array<{ first: string; last: string }> = [];
  for (const spec of def.stages) {
    const impl = options.registry.get(spec.kind);
    if (!impl?.outputSpans) continue;
    spans.push(...(await impl.outputSpans(spec, { ...options, pipeline: def, mode: 'backfill' })));
  }
  const windows = alignBackfillWindows(planned, spans);
  if (
    windows.length !== planned.length ||
    windows[0]?.from !== planned[0]?.from ||
    windows.at(-1)?.to !== planned.at(-1)?.to
  ) {
    options.log.info(
      `Backfill of \`${def.name}\` aligned on the output it replaces: ${windows.length} window(s) over ${windows[0]?.from}..${windows.at(-1)?.to} instead of ${planned.length}.`,
    );
  }
  // The job is named after the range as asked, so the same command finds its progress again.
  return { job: backfillJob(isoSeconds(fromMs), isoSeconds(toMs), windowMs), windows };
}

/** The dry run: the windows and the items the source stage would read in each. Changes nothing. */
export async function planBackfill(
  def: PipelineDefinition,
  options: BackfillOptions,
): Promise<{ job: string; windows: BackfillPlanWindow[] }> {
  const { job, windows } = await windowsOf(def, options);
  const out: BackfillPlanWindow[] = [];
  for (const w of windows) {
    const planned = await planWindow(def, {
      ...options,
      mode: 'backfill',
      range: { from: w.from, to: w.to },
      reprocess: true,
    });
    const done = savedDone(options.state.getValue(backfillNamespace(def.name), progressKey(job, w))) !== null;
    out.push({ ...w, items: planned.items, done });
  }
  return { job, windows: out };
}

/**
 * Reprocesses `[from, to)` window by window: each window is one run in `backfill` mode with that range, so the
 * source stage plans the items whose time lies in it (already processed or not), the sinks upsert idempotently,
 * and neither the cursor nor the processed-item set moves. Each finished window is recorded in kv slots; the same
 * command after a kill continues with the first unfinished window.
 *
 * The reject threshold is judged over the whole range (rows rejected / rows read of all its windows, and the
 * absolute cap over their sum), as a scheduled run that caught up over the same files judges its window: how the
 * range is cut into windows never changes the verdict. A window with rejects is recorded as done only once the
 * range is judged within the threshold; over it (or when the backfill stops before the verdict) those windows stay
 * unrecorded, so the same command runs exactly them again (and the windows without rejects are not repeated).
 */
export async function runBackfill(def: PipelineDefinition, options: BackfillOptions): Promise<BackfillResult> {
  const { job, windows } = await windowsOf(def, options);
  const clock = options.clock ?? systemClock;
  const namespace = backfillNamespace(def.name);
  const results: BackfillWindowResult[] = [];
  // Windows with rejects wait for the range's verdict before they are recorded (and reported).
  const awaitingVerdict: Array<{ key: string; progress: BackfillWindowProgress; result: BackfillWindowResult }> = [];
  const range = { read: 0, rejected: 0 };
  let status: BackfillResult['status'] = 'succeeded';
  for (const w of windows) {
    const key = progressKey(job, w);
    const saved = savedDone(options.state.getValue(namespace, key));
    if (saved !== null) {
      range.read += saved.counts.read;
      range.rejected += saved.counts.rejected;
      const result: BackfillWindowResult = {
        ...w,
        outcome: 'already-done',
        runId: saved.runId,
        items: saved.items,
        counts: saved.counts,
      };
      results.push(result);
      options.onWindow?.(result);
      continue;
    }
    if (options.signal?.aborted) {
      status = 'stopped';
      break;
    }
    const report = await runWindow(def, w, options, clock);
    if (report.status === 'succeeded') {
      range.read += report.counts.read;
      range.rejected += report.counts.rejected;
      const progress: BackfillWindowProgress = {
        runId: report.runId,
        status: report.status,
        items: report.window.items,
        counts: report.counts,
        finishedAt: new Date(clock.now()).toISOString(),
      };
      const result: BackfillWindowResult = {
        ...w,
        outcome: 'done',
        runId: report.runId,
        items: report.window.items,
        counts: report.counts,
      };
      results.push(result);
      if (report.counts.rejected > 0) {
        awaitingVerdict.push({ key, progress, result });
        continue;
      }
      options.state.setValue(namespace, key, JSON.stringify(progress));
      killPoint('backfill:after-window');
      options.onWindow?.(result);
      continue;
    }
    const stopped = options.signal?.aborted === true;
    const result: BackfillWindowResult = {
      ...w,
      outcome: stopped ? 'stopped' : 'failed',
      runId: report.runId || null,
      items: report.window.items,
      counts: report.counts,
      ...(report.error ? { error: report.error } : {}),
    };
    results.push(result);
    options.onWindow?.(result);
    status = stopped ? 'stopped' : 'failed';
    break;
  }
  const within = status === 'succeeded' && rejectsWithinThreshold(def, range);
  if (status === 'succeeded' && !within) status = 'rejects_exceeded';
  for (const pending of awaitingVerdict) {
    let result = pending.result;
    if (within) {
      options.state.setValue(namespace, pending.key, JSON.stringify(pending.progress));
      killPoint('backfill:after-window');
    } else {
      result = { ...result, outcome: status === 'rejects_exceeded' ? 'rejects_exceeded' : 'unjudged' };
      results[results.indexOf(pending.result)] = result;
    }
    options.onWindow?.(result);
  }
  return { pipeline: def.name, job, windows: results, status };
}

/**
 * The recorded progress of a window that is done, or null. Earlier versions recorded windows over the threshold
 * (`rejects_exceeded`) as finished; those are not done and run again.
 */
function savedDone(saved: string | null): BackfillWindowProgress | null {
  if (saved === null) return null;
  const progress = JSON.parse(saved) as BackfillWindowProgress;
  return progress.status === 'succeeded' ? progress : null;
}

/** One window's run; waits (bounded) while another run of the pipeline holds its lease. */
async function runWindow(
  def: PipelineDefinition,
  w: BackfillWindow,
  options: BackfillOptions,
  clock: Clock,
): Promise<RunReport> {
  const deadline = clock.now() + (options.leaseWaitMs ?? 15 * 60_000);
  // Wait while the lease is held rather than asking the runner, which would record a skipped run per attempt.
  for (;;) {
    const lease = options.state.getLease(pipelineLeaseName(def.name));
    if (
      !lease ||
      lease.expiresAtMs <= Date.now() ||
      isDeadHolder(lease) ||
      clock.now() >= deadline ||
      options.signal?.aborted
    )
      break;
    options.log.info(
      `Waiting for the lease of \`${def.name}\` (held by \`${lease.holder}\`) before window ${w.from}..${w.to}.`,
    );
    await clock.sleep(2000, options.signal);
  }
  return runPipeline(def, {
    ...options,
    mode: 'backfill',
    range: { from: w.from, to: w.to },
    reprocess: true,
    rejectThresholdJudgedByCaller: true,
  });
}
