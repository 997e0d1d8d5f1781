import type { RunCounts } from '../core/counts.js';
import { EXIT } from '../core/errors.js';
import type { RunReport } from '../core/runner.js';

/** The `--json` object of one run, as the issue specifies. */
export function reportJson(report: RunReport): Record<string, unknown> {
  const c = report.counts;
  return {
    runId: report.runId,
    pipeline: report.pipeline,
    status: report.status,
    window: report.window,
    counts: {
      read: c.read,
      staged: c.staged,
      converted: c.converted,
      upserted: c.upserted,
      skippedStale: c.skippedStale,
      rejected: c.rejected,
      written: c.written,
      deleted: c.deleted,
    },
    rejectsByReason: report.rejectsByReason,
    durationMs: report.durationMs,
    ...(report.error ? { error: report.error } : {}),
    ...(Object.keys(report.metrics).length ? { metrics: report.metrics } : {}),
  };
}

/** The counts of a scheduled run or backfill window, as one phrase. */
export function countsText(c: RunCounts): string {
  return `read ${c.read} upserted ${c.upserted} skipped-stale ${c.skippedStale} rejected ${c.rejected}${c.written ? ` written ${c.written}` : ''}`;
}

/** One readable line per run. */
export function reportLine(report: RunReport): string {
  const c = report.counts;
  const parts = [
    `${report.pipeline}: ${report.status}`,
    `run ${report.runId}`,
    `items ${report.window.items}`,
    `read ${c.read}`,
    // A rerun whose every row was already applied converts nothing: its rows show as skipped-stale.
    c.converted || c.upserted || c.skippedStale
      ? `converted ${c.converted} upserted ${c.upserted} skipped-stale ${c.skippedStale}`
      : '',
    c.written || c.deleted ? `written ${c.written} deleted ${c.deleted}` : '',
    `rejected ${c.rejected}`,
    `${(report.durationMs / 1000).toFixed(1)}s`,
  ].filter(Boolean);
  const reasons = Object.entries(report.rejectsByReason)
    .map(([k, v]) => `${k}=${v}`)
    .join(' ');
  return (
    parts.join(', ') +
    (reasons ? `\n  rejects: ${reasons}` : '') +
    (report.error ? `\n  error: ${report.error.message}` : '')
  );
}

/** Exit code for a run outcome: 0 ok, 1 failed, 3 reject threshold exceeded, 4 all held back, 75 try again later. */
export function exitCodeForReport(report: RunReport): number {
  switch (report.status) {
    case 'succeeded':
    case 'skipped':
      return EXIT.ok;
    case 'rejects_exceeded':
      return EXIT.rejectThresholdExceeded;
    case 'held_back':
      return EXIT.heldBack;
    default:
      return report.error?.retryable ? EXIT.temporaryFailure : EXIT.failed;
  }
}
