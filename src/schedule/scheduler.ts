import os from 'node:os';
import type { AlertSink } from '../alerts/webhook-alerts.js';
import { noAlerts } from '../alerts/webhook-alerts.js';
import { emptyCounts, type RunCounts } from '../core/counts.js';
import { describeError, FerryError, isRetryable } from '../core/errors.js';
import type { PipelineDefinition, RunMode } from '../core/pipeline.js';
import { orderByDependencies } from '../core/pipeline-loader.js';
import type { RunReport } from '../core/runner.js';
import type { RunStatus, StateStore } from '../core/state-store.js';
import { cadenceMs, nextBoundary } from './cadence.js';
import { type Clock, systemClock } from './clock.js';

/** The lease a running scheduler holds (renewed while it runs), so `ferry status` can tell one is running. */
export const SCHEDULER_LEASE = 'scheduler';
/** `getValue(SCHEDULER_STATE, 'lastTick')`: JSON `{ at, holder, due }` of the latest tick. */
export const SCHEDULER_STATE = 'scheduler';
const SCHEDULER_LEASE_TTL_MS = 60_000;

/** Runs one pipeline once; the CLI passes `runPipeline` with its config, tests pass it with their own registry. */
export type RunOne = (
  def: PipelineDefinition,
  options: { readonly mode: RunMode; readonly signal: AbortSignal },
) => Promise<RunReport>;

/** What the scheduler reports: one event per tick and one per run end (plus skips and the stop). */
export type ScheduleEvent =
  | { readonly event: 'tick'; readonly at: string; readonly due: readonly string[]; readonly missedTicks: number }
  | {
      readonly event: 'run';
      readonly pipeline: string;
      readonly runId: string | null;
      readonly status: RunStatus;
      readonly attempt: number;
      readonly counts: RunCounts;
      readonly durationMs: number;
      readonly error?: { readonly code: string; readonly message: string; readonly retryable: boolean };
    }
  | { readonly event: 'dependency-skipped'; readonly pipeline: string; readonly dependsOn: string; readonly at: string }
  | { readonly event: 'stopped'; readonly ticks: number; readonly reason: 'signal' | 'max-ticks' };

export interface SchedulerOptions {
  /** The pipelines to run; ordered by `dependsOn` here, whatever order they come in. */
  readonly pipelines: readonly PipelineDefinition[];
  readonly runOne: RunOne;
  readonly state: StateStore;
  readonly clock?: Clock;
  /** Cadence for every pipeline (the `--every` flag), over each definition's `every`. */
  readonly every?: string;
  /** Aborting stops the loop: the current run finishes its batch and commits, then the scheduler returns. */
  readonly signal?: AbortSignal;
  readonly alerts?: AlertSink;
  /** Alert when a pipeline has not completed a run for longer than this. Default: 4 × its cadence. */
  readonly staleAfterMs?: (def: PipelineDefinition, everyMs: number) => number;
  /** Retries of a run that failed for a retryable reason, inside one tick. Default `2`, `5000` ms apart. */
  readonly retry?: { readonly attempts: number; readonly delayMs: number };
  readonly onEvent?: (event: ScheduleEvent) => void;
  /** Stop after this many ticks (tests, `--ticks`). Default: run until stopped. */
  readonly maxTicks?: number;
}

/**
 * The in-process scheduler behind `ferry schedule`: runs each pipeline on its cadence, aligned to wall-clock
 * boundaries, dependencies first within a tick. Overlap is prevented by the pipeline lease the runner takes (a
 * second scheduler or a manual run makes the run `skipped`); a tick missed while a run was slow is dropped, not
 * queued, because the next due time is always the next boundary after the run ended.
 */
export class Scheduler {
  #options: SchedulerOptions;
  #pipelines: PipelineDefinition[];
  #clock: Clock;
  #alerts: AlertSink;
  #signal: AbortSignal;
  #startedAt = 0;
  #missed = 0;

  constructor(options: SchedulerOptions) {
    this.#options = options;
    this.#pipelines = orderByDependencies(options.pipelines);
    this.#clock = options.clock ?? systemClock;
    this.#alerts = options.alerts ?? noAlerts;
    this.#signal = options.signal ?? new AbortController().signal;
  }

  /** The cadence of one pipeline in milliseconds. */
  everyMs(def: PipelineDefinition): number {
    return cadenceMs(def.every, this.#options.every);
  }

  /** Runs until the signal aborts (or `maxTicks`); resolves with the number of ticks. */
  async run(): Promise<number> {
    // Held for status only: a second scheduler still runs (its overlapping runs are skipped by the pipeline leases).
    const { state } = this.#options;
    const holder = `${os.hostname()}:${process.pid}`;
    let lease = state.acquireLease(SCHEDULER_LEASE, holder, SCHEDULER_LEASE_TTL_MS);
    const heartbeat = setInterval(() => {
      if (!lease || !state.renewLease(SCHEDULER_LEASE, lease.token, SCHEDULER_LEASE_TTL_MS))
        lease = state.acquireLease(SCHEDULER_LEASE, holder, SCHEDULER_LEASE_TTL_MS);
    }, SCHEDULER_LEASE_TTL_MS / 3);
    heartbeat.unref();
    try {
      return await this.#loop(holder);
    } finally {
      clearInterval(heartbeat);
      if (lease) state.releaseLease(SCHEDULER_LEASE, lease.token);
    }
  }

  async #loop(holder: string): Promise<number> {
    this.#startedAt = this.#clock.now();
    const due = new Map(this.#pipelines.map((p) => [p.name, nextBoundary(this.#startedAt, this.everyMs(p))]));
    let ticks = 0;
    while (!this.#signal.aborted) {
      if (this.#options.maxTicks !== undefined && ticks >= this.#options.maxTicks) {
        this.#emit({ event: 'stopped', ticks, reason: 'max-ticks' });
        return ticks;
      }
      const next = Math.min(...due.values());
      await this.#clock.sleep(next - this.#clock.now(), this.#signal);
      if (this.#signal.aborted) break;
      const now = this.#clock.now();
      const dueNow = this.#pipelines.filter((p) => due.get(p.name)! <= now);
      if (dueNow.length === 0) continue;
      ticks += 1;
      // Boundaries that passed while we were busy are reported, never run: one run catches up the whole backlog.
      const missedTicks = Math.max(
        0,
        ...dueNow.map((p) => Math.floor((now - due.get(p.name)!) / this.everyMs(p))),
        this.#missed,
      );
      this.#missed = 0;
      this.#emit({ event: 'tick', at: new Date(next).toISOString(), due: dueNow.map((p) => p.name), missedTicks });
      this.#options.state.setValue(
        SCHEDULER_STATE,
        'lastTick',
        JSON.stringify({ at: new Date(now).toISOString(), holder, due: dueNow.map((p) => p.name) }),
      );
      await this.#runTick(dueNow, due, next);
      await this.#checkStaleness();
    }
    this.#emit({ event: 'stopped', ticks, reason: 'signal' });
    return ticks;
  }

  async #runTick(dueNow: readonly PipelineDefinition[], due: Map<string, number>, tickAt: number): Promise<void> {
    const notDone = new Set<string>();
    for (const def of dueNow) {
      if (this.#signal.aborted) return;
      // A dependency that failed in this tick would make this run reject rows whose lookup targets are missing.
      const blocker = def.dependsOn.find((d) => notDone.has(d));
      if (blocker) {
        notDone.add(def.name);
        this.#emit({
          event: 'dependency-skipped',
          pipeline: def.name,
          dependsOn: blocker,
          at: new Date(this.#clock.now()).toISOString(),
        });
      } else {
        const status = await this.#runWithRetry(def);
        if (status !== 'succeeded' && status !== 'skipped') notDone.add(def.name);
      }
      const nextDue = nextBoundary(this.#clock.now(), this.everyMs(def));
      this.#missed = Math.max(this.#missed, Math.round((nextDue - tickAt) / this.everyMs(def)) - 1);
      due.set(def.name, nextDue);
    }
  }

  async #runWithRetry(def: PipelineDefinition): Promise<RunStatus> {
    const retry = this.#options.retry ?? { attempts: 2, delayMs: 5000 };
    for (let attempt = 1; ; attempt++) {
      const report = await this.#runOnce(def, attempt);
      const retryable = report.status === 'failed' && report.error?.retryable === true;
      if (retryable && attempt <= retry.attempts && !this.#signal.aborted) {
        await this.#clock.sleep(retry.delayMs * attempt, this.#signal);
        continue;
      }
      await this.#alertFor(def, report);
      return report.status;
    }
  }

  async #runOnce(def: PipelineDefinition, attempt: number): Promise<RunReport> {
    const started = this.#clock.now();
    let report: RunReport;
    try {
      report = await this.#options.runOne(def, { mode: 'scheduled', signal: this.#signal });
    } catch (error) {
      // Planning failed before a run was recorded (e.g. the lake folder is unreadable).
      report = {
        runId: '',
        pipeline: def.name,
        mode: 'scheduled',
        status: 'failed',
        window: { source: '', items: 0, first: null, last: null, cursorBefore: null, cursorAfter: null },
        counts: emptyCounts(),
        rejectsByReason: {},
        durationMs: this.#clock.now() - started,
        error: {
          code: error instanceof FerryError ? error.code : 'run.failed',
          message: describeError(error),
          retryable: isRetryable(error),
        },
        metrics: {},
      };
    }
    this.#emit({
      event: 'run',
      pipeline: def.name,
      runId: report.runId || null,
      status: report.status,
      attempt,
      counts: report.counts,
      durationMs: report.durationMs,
      ...(report.error ? { error: report.error } : {}),
    });
    return report;
  }

  async #alertFor(def: PipelineDefinition, report: RunReport): Promise<void> {
    if (report.status === 'succeeded') {
      this.#alerts.recovered(def.name);
      return;
    }
    const inspect = report.runId ? `ferry rejects --run ${report.runId}` : 'ferry status';
    const base = {
      pipeline: def.name,
      runId: report.runId || null,
      counts: report.counts,
      at: new Date(this.#clock.now()).toISOString(),
    };
    if (report.status === 'rejects_exceeded') {
      await this.#alerts.notify({
        ...base,
        kind: 'rejects_exceeded',
        reason: 'rejects.threshold',
        message: report.error?.message ?? 'Reject threshold exceeded.',
        inspect,
      });
    } else if (
      report.status === 'held_back' ||
      (report.status === 'failed' && !(this.#signal.aborted && report.error?.code === 'run.interrupted'))
    ) {
      await this.#alerts.notify({
        ...base,
        kind: 'run_failed',
        reason: report.error?.code ?? 'run.failed',
        message: report.error?.message ?? 'The run failed.',
        inspect,
      });
    }
  }

  async #checkStaleness(): Promise<void> {
    const now = this.#clock.now();
    for (const def of this.#pipelines) {
      const every = this.everyMs(def);
      const maxAge = this.#options.staleAfterMs?.(def, every) ?? 4 * every;
      // A queue listener's runs (mode `listen`) say nothing about the batch windows.
      const last = this.#options.state
        .listRuns({ pipeline: def.name, status: 'succeeded', limit: 50 })
        .find((r) => r.mode !== 'listen');
      // A pipeline that never completed is measured from the scheduler's start, not from the epoch.
      const since = last?.finishedAt ? Math.max(Date.parse(last.finishedAt), this.#startedAt) : this.#startedAt;
      if (now - since <= maxAge) continue;
      await this.#alerts.notify({
        kind: 'stale',
        pipeline: def.name,
        runId: last?.id ?? null,
        reason: 'pipeline.stale',
        message: `Pipeline \`${def.name}\` has not completed a run for ${Math.round((now - since) / 60_000)} min (limit ${Math.round(maxAge / 60_000)} min); check its last runs.`,
        counts: last?.counts ?? {},
        inspect: `ferry status --json`,
        at: new Date(now).toISOString(),
      });
    }
  }

  #emit(event: ScheduleEvent): void {
    this.#options.onEvent?.(event);
  }
}
