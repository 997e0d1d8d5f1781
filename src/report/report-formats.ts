import { bigintSafe } from '../core/log.js';
import { capacityPlanLines } from './capacity-text.js';
import { csvRecord } from './csv.js';
import { formatNumber, formatSeconds } from './figures.js';
import type { ReportData } from './report-data.js';

export const REPORT_FORMATS = ['html', 'md', 'json', 'csv'] as const;
export type ReportFormat = (typeof REPORT_FORMATS)[number];

/** The report data as JSON (everything the page is drawn from). */
export function renderReportJson(data: ReportData): string {
  return `${JSON.stringify(data, bigintSafe, 2)}\n`;
}

/** One CSV row per run with its counts and metrics. */
export function renderReportCsv(data: ReportData): string {
  const header = [
    'run_id',
    'pipeline',
    'mode',
    'status',
    'started_at',
    'duration_ms',
    'items',
    'read',
    'upserted',
    'skipped_stale',
    'rejected',
    'written',
    'deleted',
    'rows_per_sec',
    'requests',
    'throttled_429',
    'max_retry_after_sec',
    'server_sec',
    'held_back_files',
    'rejects_by_reason',
    'error',
  ];
  const rows = data.runs.map((r) =>
    csvRecord([
      r.runId,
      r.pipeline,
      r.mode,
      r.status,
      r.startedAt,
      r.durationMs,
      r.items,
      r.counts.read,
      r.counts.upserted,
      r.counts.skippedStale,
      r.counts.rejected,
      r.counts.written,
      r.counts.deleted,
      r.rowsPerSec,
      r.requests,
      r.throttledTotal,
      r.maxRetryAfterSec,
      r.serverSec === null ? null : Math.round(r.serverSec * 1000) / 1000,
      r.heldBackFiles.join(' '),
      Object.entries(r.rejectsByReason)
        .map(([k, v]) => `${k}=${v}`)
        .join(' '),
      r.error,
    ]),
  );
  return `${[csvRecord(header), ...rows].join('\r\n')}\r\n`;
}

/** A Markdown summary: totals, per pipeline, rejects by reason, held-back files, the capacity plan. */
export function renderReportMarkdown(data: ReportData): string {
  const t = data.totals;
  const lines = [
    `# dataverse-ferry run report`,
    '',
    `${data.since.replace('T', ' ').slice(0, 16)} – ${data.generatedAt.replace('T', ' ').slice(0, 16)} UTC · ${t.runs} run(s), ${t.failed} not succeeded${data.emptyScheduledRuns ? ` · ${data.emptyScheduledRuns} empty scheduled run(s) left out` : ''}`,
    '',
    `Rows read ${formatNumber(t.read)}, upserted ${formatNumber(t.upserted)}, written ${formatNumber(t.written)}, rejected ${formatNumber(t.rejected)}; ${formatNumber(t.throttled)} × 429 (longest Retry-After ${formatSeconds(t.maxRetryAfterSec)}).`,
    '',
    '## Pipelines',
    '',
    '| pipeline | runs | read | upserted / written | rejected | mean duration | mean rows/s | 429s |',
    '| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
  ];
  for (const p of data.pipelines) {
    const runs = data.runs.filter((r) => r.pipeline === p);
    if (runs.length === 0) continue;
    const sum = (f: (r: (typeof runs)[number]) => number) => runs.reduce((a, r) => a + f(r), 0);
    const rates = runs.filter((r) => r.rowsPerSec !== null);
    lines.push(
      `| ${p} | ${runs.length} | ${formatNumber(sum((r) => r.counts.read))} | ${formatNumber(sum((r) => r.counts.upserted + r.counts.written))} | ${formatNumber(sum((r) => r.counts.rejected))} | ${formatSeconds(sum((r) => r.durationMs ?? 0) / runs.length / 1000)} | ${rates.length ? formatNumber(rates.reduce((a, r) => a + r.rowsPerSec!, 0) / rates.length, 1) : ''} | ${formatNumber(sum((r) => r.throttledTotal))} |`,
    );
  }
  lines.push('', '## Rejects by reason', '');
  if (data.rejectReasons.length === 0) lines.push('None.');
  else {
    lines.push('| reason | rows | runs | pipelines |', '| --- | ---: | ---: | --- |');
    for (const r of data.rejectReasons)
      lines.push(`| \`${r.reason}\` | ${r.count} | ${r.runs} | ${r.pipelines.join(', ')} |`);
  }
  lines.push('', '## Held-back files', '');
  if (data.heldBack.length === 0) lines.push('None.');
  else
    for (const h of data.heldBack)
      for (const f of h.files) lines.push(`- ${h.startedAt.slice(0, 16)} ${h.pipeline}: \`${f}\` (run ${h.runId})`);
  lines.push('', '## Capacity plan', '');
  if (data.capacity) lines.push('```', ...capacityPlanLines(data.capacity), '```');
  else lines.push(data.capacityNote ?? 'No run wrote to Dataverse.');
  return `${lines.join('\n')}\n`;
}
