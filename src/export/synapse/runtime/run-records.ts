import type { Json } from './expression/json-value.js';

export const ACTIVITY_STATUSES = ['InProgress', 'Succeeded', 'Failed', 'Skipped', 'Cancelled'] as const;
export type ActivityStatus = (typeof ACTIVITY_STATUSES)[number];
export type PipelineStatus = 'Queued' | 'InProgress' | 'Succeeded' | 'Failed' | 'Cancelled';

/** The error of a failed activity, as the monitoring view and `activity('X').error` show it. */
export interface ActivityRunError {
  readonly errorCode: string;
  readonly message: string;
  readonly failureType: string;
  readonly target: string;
}

/** One activity run (each retry attempt is its own run, as the monitoring view lists them). */
export interface ActivityRun {
  readonly activityRunId: string;
  readonly pipelineRunId: string;
  readonly pipelineName: string;
  readonly activityName: string;
  readonly activityType: string;
  /** 1 for the first attempt; retries count up. */
  attempt: number;
  status: ActivityStatus;
  readonly activityRunStart: string;
  activityRunEnd?: string;
  durationInMs?: number;
  input?: Json;
  output?: Json;
  error?: ActivityRunError;
  /** ForEach iteration index, Until iteration number, or If/Switch branch, when inside a container. */
  readonly scope?: string;
}

/** How a pipeline run was started. */
export interface InvokedBy {
  readonly name: string;
  readonly invokedByType: 'Manual' | 'ScheduleTrigger' | 'TumblingWindowTrigger' | 'PipelineActivity';
  readonly id: string;
}

/** One pipeline run, as `ferry synapse run --json` prints it. */
export interface PipelineRun {
  readonly runId: string;
  readonly pipelineName: string;
  readonly parameters: Record<string, Json>;
  readonly invokedBy: InvokedBy;
  readonly parentRunId?: string;
  status: PipelineStatus;
  readonly queuedAt: string;
  runStart?: string;
  runEnd?: string;
  durationInMs?: number;
  message: string;
  readonly activityRuns: ActivityRun[];
  /** `pipelineReturnValue`, when a SetVariable set it. */
  output?: Json;
}

/** A table like the Synapse Studio monitoring view: one line per pipeline run, then its activity runs. */
export function formatMonitoringView(runs: readonly PipelineRun[]): string[] {
  const lines: string[] = [];
  for (const run of runs) {
    lines.push(
      `${run.pipelineName}  ${run.status}  run ${run.runId}  ${run.runStart ?? run.queuedAt} → ${run.runEnd ?? '…'}  ${formatDuration(run.durationInMs)}  by ${run.invokedBy.invokedByType}${run.invokedBy.invokedByType === 'Manual' ? '' : ` ${run.invokedBy.name}`}`,
    );
    if (run.message) lines.push(`  ${run.message}`);
    for (const a of run.activityRuns) {
      const attempt = a.attempt > 1 ? ` (retry ${a.attempt - 1})` : '';
      const where = a.scope ? ` [${a.scope}]` : '';
      lines.push(
        `  ${a.activityName.padEnd(32)} ${a.activityType.padEnd(16)} ${a.status.padEnd(9)} ${formatDuration(a.durationInMs).padStart(8)}${attempt}${where}${a.error ? `  ${a.error.errorCode}: ${firstLine(a.error.message)}` : ''}`,
      );
    }
  }
  return lines;
}

function firstLine(text: string): string {
  const line = text.split('\n')[0] ?? '';
  return line.length > 200 ? `${line.slice(0, 200)}…` : line;
}

function formatDuration(ms: number | undefined): string {
  if (ms === undefined) return '';
  if (ms < 1000) return `${ms}ms`;
  const s = Math.round(ms / 1000);
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  return m < 60
    ? `${m}m${String(s % 60).padStart(2, '0')}s`
    : `${Math.floor(m / 60)}h${String(m % 60).padStart(2, '0')}m`;
}
