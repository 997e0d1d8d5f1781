import type { CapacityPlan } from '../core/capacity-plan.js';
import { serverCostOf } from '../core/capacity-plan.js';
import type { RunCounts } from '../core/counts.js';
import type { StoredReject } from '../core/rejects.js';
import type { RunRecord, StateStore } from '../core/state-store.js';

/** One run as the report shows it: counts and the figures its stages kept in `metrics`. */
export interface ReportRun {
  readonly runId: string;
  readonly pipeline: string;
  readonly mode: string;
  readonly status: string;
  readonly startedAt: string;
  readonly durationMs: number | null;
  readonly items: number;
  readonly counts: RunCounts;
  readonly rowsPerSec: number | null;
  readonly requests: number | null;
  readonly throttled: Readonly<Record<string, number>>;
  readonly throttledTotal: number;
  readonly maxRetryAfterSec: number;
  /** Dataverse server time the run spent, in seconds (null when it sent nothing). */
  readonly serverSec: number | null;
  readonly executionBudgetPerSec: number | null;
  readonly stageMs: Readonly<Record<string, number>>;
  readonly heldBackFiles: readonly string[];
  readonly rejectsByReason: Readonly<Record<string, number>>;
  readonly error: string | null;
}

export interface ReportRejectReason {
  readonly reason: string;
  readonly count: number;
  readonly runs: number;
  readonly pipelines: readonly string[];
}

/** Everything `ferry report` renders, in every format. */
export interface ReportData {
  readonly generatedAt: string;
  readonly since: string;
  readonly pipelines: readonly string[];
  /** Cadence of each pipeline in seconds (the schedule its runs are held against). */
  readonly cadenceSec: Readonly<Record<string, number>>;
  /** Oldest first. */
  readonly runs: readonly ReportRun[];
  readonly emptyScheduledRuns: number;
  readonly rejectReasons: readonly ReportRejectReason[];
  /** The rejected rows behind the reasons (up to `rejectRowLimit`), newest first. */
  readonly rejectRows: readonly StoredReject[];
  readonly rejectRowsTotal: number;
  readonly heldBack: ReadonlyArray<{ runId: string; pipeline: string; startedAt: string; files: readonly string[] }>;
  readonly capacity: CapacityPlan | null;
  readonly capacityNote: string | null;
  readonly totals: {
    readonly runs: number;
    readonly failed: number;
    readonly read: number;
    readonly upserted: number;
    readonly rejected: number;
    readonly written: number;
    readonly throttled: number;
    readonly maxRetryAfterSec: number;
  };
}

const num = (v: unknown): number | null => (typeof v === 'number' && Number.isFinite(v) ? v : null);

/** A run record as a report row. */
export function reportRun(run: RunRecord): ReportRun {
  const m = run.metrics;
  const throttled =
    m.throttled429 && typeof m.throttled429 === 'object'
      ? Object.fromEntries(
          Object.entries(m.throttled429 as Record<string, unknown>).filter(
            (e): e is [string, number] => typeof e[1] === 'number' && e[1] > 0,
          ),
        )
      : {};
  const cost = serverCostOf(run);
  return {
    runId: run.id,
    pipeline: run.pipeline,
    mode: run.mode,
    status: run.status,
    startedAt: run.startedAt,
    durationMs: run.durationMs,
    items: run.window.items.length,
    counts: run.counts,
    rowsPerSec: num(m.rowsPerSec) ?? derivedRowsPerSec(run),
    requests: num(m.requests),
    throttled,
    throttledTotal: num(m.throttled429Total) ?? Object.values(throttled).reduce((a, b) => a + b, 0),
    maxRetryAfterSec: num(m.maxRetryAfterSec) ?? 0,
    serverSec: cost ? cost.serverMs / 1000 : null,
    executionBudgetPerSec: num(m.executionBudgetPerSec),
    stageMs:
      m.stageMs && typeof m.stageMs === 'object'
        ? Object.fromEntries(
            Object.entries(m.stageMs as Record<string, unknown>).filter(
              (e): e is [string, number] => typeof e[1] === 'number',
            ),
          )
        : {},
    heldBackFiles: Array.isArray(m.heldBackFiles) ? (m.heldBackFiles as unknown[]).map(String) : [],
    rejectsByReason: run.rejectsByReason,
    error: run.error ? `${run.error.code}: ${run.error.message}` : null,
  };
}

/** Rows per second of a run without a writer figure (outbound runs): rows read over the run's duration. */
function derivedRowsPerSec(run: RunRecord): number | null {
  if (!run.durationMs || run.counts.read === 0) return null;
  return Math.round((run.counts.read / (run.durationMs / 1000)) * 10) / 10;
}

/** A scheduled run that found nothing to do: kept in the store, left out of charts. */
export function isEmptyScheduledRun(run: Pick<RunRecord, 'mode' | 'status' | 'window'>): boolean {
  return (
    (run.mode === 'scheduled' && run.window.items.length === 0 && run.status === 'succeeded') ||
    run.status === 'skipped'
  );
}

/** Reads the runs and rejects of a period from the state store. */
export function collectReport(
  state: StateStore,
  options: {
    readonly sinceMs: number;
    readonly nowMs: number;
    readonly pipelines?: readonly string[];
    readonly cadenceSec: Readonly<Record<string, number>>;
    readonly capacity?: CapacityPlan | null;
    readonly capacityNote?: string | null;
    readonly rejectRowLimit?: number;
  },
): ReportData {
  const since = new Date(options.sinceMs).toISOString();
  const wanted = options.pipelines?.length ? new Set(options.pipelines) : undefined;
  const all = state
    .listRuns({ limit: 100_000 })
    .filter((r) => r.startedAt >= since && (!wanted || wanted.has(r.pipeline)) && r.status !== 'running');
  const kept = all.filter((r) => !isEmptyScheduledRun(r));
  const runs = kept.map(reportRun).reverse();
  const reasons = new Map<string, { count: number; runs: Set<string>; pipelines: Set<string> }>();
  for (const run of runs)
    for (const [reason, count] of Object.entries(run.rejectsByReason)) {
      const entry = reasons.get(reason) ?? { count: 0, runs: new Set(), pipelines: new Set() };
      entry.count += count;
      entry.runs.add(run.runId);
      entry.pipelines.add(run.pipeline);
      reasons.set(reason, entry);
    }
  const limit = options.rejectRowLimit ?? 500;
  const rejectRows: StoredReject[] = [];
  let rejectRowsTotal = 0;
  for (const run of [...runs].reverse()) {
    if (!run.counts.rejected) continue;
    const rows = state.listRejects({ runId: run.runId, limit: 100_000 });
    rejectRowsTotal += rows.length;
    for (const r of rows) if (rejectRows.length < limit) rejectRows.push(r);
  }
  const pipelines = [...new Set([...(options.pipelines ?? []), ...runs.map((r) => r.pipeline)])].sort();
  return {
    generatedAt: new Date(options.nowMs).toISOString(),
    since,
    pipelines,
    cadenceSec: options.cadenceSec,
    runs,
    emptyScheduledRuns: all.length - kept.length,
    rejectReasons: [...reasons]
      .map(([reason, e]) => ({ reason, count: e.count, runs: e.runs.size, pipelines: [...e.pipelines].sort() }))
      .sort((a, b) => b.count - a.count || a.reason.localeCompare(b.reason)),
    rejectRows,
    rejectRowsTotal,
    heldBack: runs
      .filter((r) => r.heldBackFiles.length > 0)
      .map((r) => ({ runId: r.runId, pipeline: r.pipeline, startedAt: r.startedAt, files: r.heldBackFiles })),
    capacity: options.capacity ?? null,
    capacityNote: options.capacityNote ?? null,
    totals: {
      runs: runs.length,
      failed: runs.filter((r) => r.status === 'failed' || r.status === 'rejects_exceeded' || r.status === 'abandoned')
        .length,
      read: runs.reduce((a, r) => a + r.counts.read, 0),
      upserted: runs.reduce((a, r) => a + r.counts.upserted, 0),
      rejected: runs.reduce((a, r) => a + r.counts.rejected, 0),
      written: runs.reduce((a, r) => a + r.counts.written, 0),
      throttled: runs.reduce((a, r) => a + r.throttledTotal, 0),
      maxRetryAfterSec: runs.reduce((a, r) => Math.max(a, r.maxRetryAfterSec), 0),
    },
  };
}
