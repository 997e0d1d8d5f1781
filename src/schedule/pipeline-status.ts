import type { RunCounts } from '../core/counts.js';
import type { PipelineDefinition } from '../core/pipeline.js';
import { pipelineLeaseName } from '../core/runner.js';
import type { RunRecord, StateStore } from '../core/state-store.js';
import { backfillNamespace } from './backfill.js';
import { cadenceMs, nextBoundary } from './cadence.js';
import { SCHEDULER_LEASE, SCHEDULER_STATE } from './scheduler.js';

/** Whether a scheduler runs (holds its lease) and when one last ticked. */
export interface SchedulerStatus {
  readonly running: boolean;
  readonly holder: string | null;
  readonly leaseExpiresAt: string | null;
  readonly lastTick: { readonly at: string; readonly holder: string; readonly due: readonly string[] } | null;
}

/** Reads the scheduler's lease and its last tick. */
export function schedulerStatus(state: StateStore, nowMs: number): SchedulerStatus {
  const lease = state.getLease(SCHEDULER_LEASE);
  const live = lease && lease.expiresAtMs > nowMs ? lease : undefined;
  const tick = state.getValue(SCHEDULER_STATE, 'lastTick');
  let lastTick: SchedulerStatus['lastTick'] = null;
  try {
    lastTick = tick ? (JSON.parse(tick) as SchedulerStatus['lastTick']) : null;
  } catch {
    lastTick = null;
  }
  return {
    running: Boolean(live),
    holder: live?.holder ?? null,
    leaseExpiresAt: live ? new Date(live.expiresAtMs).toISOString() : null,
    lastTick,
  };
}

/** What `ferry status` shows for one pipeline. */
export interface PipelineStatus {
  readonly pipeline: string;
  readonly direction: PipelineDefinition['direction'];
  readonly every: string;
  /** The latest run that was not a lease skip. */
  readonly lastRun: {
    readonly runId: string;
    readonly mode: RunRecord['mode'];
    readonly status: RunRecord['status'];
    readonly startedAt: string;
    readonly finishedAt: string | null;
    readonly durationMs: number | null;
    readonly counts: RunCounts;
    readonly error: RunRecord['error'];
  } | null;
  readonly lastSucceededAt: string | null;
  /** The next wall-clock boundary the running scheduler will run it at; null when no scheduler runs. */
  readonly nextRun: string | null;
  readonly cursor: { readonly source: string; readonly value: string | null; readonly processedItems: number } | null;
  /** Who holds the pipeline's lease right now (a running scheduler, backfill or manual run). */
  readonly lease: { readonly holder: string; readonly expiresAt: string; readonly token: number } | null;
  readonly openRejects: number;
  /** Backfill windows finished (all jobs). */
  readonly backfillWindowsDone: number;
}

/** Reads each pipeline's state: pure reads, safe while a scheduler runs (SQLite WAL). */
export function pipelineStatuses(
  defs: readonly PipelineDefinition[],
  state: StateStore,
  options: { readonly nowMs: number; readonly every?: string },
): PipelineStatus[] {
  const scheduler = schedulerStatus(state, options.nowMs);
  return defs.map((def) => {
    const recent = state.listRuns({ pipeline: def.name, limit: 20 });
    const last = recent.find((r) => r.status !== 'skipped') ?? null;
    const succeeded = state.listRuns({ pipeline: def.name, status: 'succeeded', limit: 1 })[0];
    // The batch source's cursor (a queue listener's runs have a `queue:` source and no cursor).
    const source = recent.find((r) => r.window.source && r.mode !== 'listen')?.window.source;
    const lease = state.getLease(pipelineLeaseName(def.name));
    const live = lease && lease.expiresAtMs > options.nowMs ? lease : undefined;
    return {
      pipeline: def.name,
      direction: def.direction,
      every: options.every ?? def.every,
      lastRun: last
        ? {
            runId: last.id,
            mode: last.mode,
            status: last.status,
            startedAt: last.startedAt,
            finishedAt: last.finishedAt,
            durationMs: last.durationMs,
            counts: last.counts,
            error: last.error,
          }
        : null,
      lastSucceededAt: succeeded?.finishedAt ?? null,
      nextRun: scheduler.running
        ? new Date(nextBoundary(options.nowMs, cadenceMs(def.every, options.every))).toISOString()
        : null,
      cursor: source
        ? {
            source,
            value: state.getCursor(def.name, source),
            processedItems: state.processedItems(def.name, source).size,
          }
        : null,
      lease: live
        ? { holder: live.holder, expiresAt: new Date(live.expiresAtMs).toISOString(), token: live.token }
        : null,
      openRejects: state.countOpenRejects(def.name),
      backfillWindowsDone: state.listValues(backfillNamespace(def.name)).length,
    };
  });
}
