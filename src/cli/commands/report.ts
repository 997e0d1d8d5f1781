import fs from 'node:fs/promises';
import path from 'node:path';
import { describeError, UsageError } from '../../core/errors.js';
import { parseDuration } from '../../core/pipeline.js';
import { loadPipelines } from '../../core/pipeline-loader.js';
import { capacityPlanFor } from '../../report/capacity-input.js';
import { collectReport } from '../../report/report-data.js';
import {
  REPORT_FORMATS,
  type ReportFormat,
  renderReportCsv,
  renderReportJson,
  renderReportMarkdown,
} from '../../report/report-formats.js';
import { renderReportHtml } from '../../report/report-html.js';
import type { Command } from '../command.js';
import { openState } from '../services.js';
import { CAPACITY_OPTIONS, capacityFlags, sinceFlag } from './plan-capacity.js';

/** `ferry report`: runs of a period as one self-contained HTML page (or Markdown, JSON, CSV). */
export const reportCommand: Command = {
  name: 'report',
  summary: 'write a run report with charts: throughput, durations, 429s, stages, server time, rejects, capacity',
  usage:
    'report [--since 24h] [--pipeline <name> ...] [--out report.html] [--format html|md|json|csv] [--identities N] [--profile <p>]',
  options: {
    since: {
      type: 'string',
      valueName: '<period>',
      defaultText: '24h',
      description: 'the runs started in this period before now, e.g. 90m, 24h, 7d, 2w',
    },
    pipeline: {
      type: 'string',
      multiple: true,
      valueName: '<name>',
      defaultText: 'every pipeline',
      description: 'only this pipeline',
    },
    out: {
      type: 'string',
      valueName: '<file>',
      defaultText: 'report.html for html; standard output for md, json and csv',
      description: 'where to write the report',
    },
    format: {
      type: 'string',
      valueName: '<html|md|json|csv>',
      defaultText: 'html',
      description: 'html: one self-contained page with charts; md, json, csv: the same runs as text',
    },
    ...CAPACITY_OPTIONS,
  },
  examples: [
    { text: 'The last 24 hours as one HTML page (opens offline):', command: 'ferry report' },
    {
      text: 'A week of one pipeline as CSV for a spreadsheet:',
      command: 'ferry report --since 7d --pipeline accounts-inbound --format csv > runs.csv',
    },
    {
      text: 'The report with the capacity plan for two identities:',
      command: 'ferry report --identities 2 --out /tmp/report.html',
    },
  ],
  async run(input) {
    const format = (typeof input.values.format === 'string' ? input.values.format : 'html') as ReportFormat;
    if (!REPORT_FORMATS.includes(format))
      throw new UsageError(`--format \`${format}\` is not known; use ${REPORT_FORMATS.join(', ')}.`);
    const nowMs = Date.now();
    const sinceMs = sinceFlag(input.values.since, '24h', 'since', nowMs);
    const wanted = Array.isArray(input.values.pipeline) ? input.values.pipeline.map(String) : [];
    const defs = await loadPipelines(input.pipelinesDir);
    const unknown = wanted.filter((p) => !defs.some((d) => d.name === p));
    if (unknown.length)
      throw new UsageError(
        `Pipeline(s) ${unknown.map((p) => `\`${p}\``).join(', ')} not found in \`${input.pipelinesDir}\`; known: ${defs.map((d) => d.name).join(', ')}.`,
      );
    const state = openState(input.config);
    try {
      let capacity = null;
      let capacityNote: string | null = null;
      try {
        capacity = capacityPlanFor(state, defs, capacityFlags(input.values, sinceMs));
      } catch (error) {
        if (!(error instanceof UsageError)) throw error;
        capacityNote = describeError(error);
      }
      const data = collectReport(state, {
        sinceMs,
        nowMs,
        ...(wanted.length ? { pipelines: wanted } : {}),
        cadenceSec: Object.fromEntries(defs.map((d) => [d.name, parseDuration(d.every) / 1000])),
        capacity,
        capacityNote,
      });
      const text =
        format === 'html'
          ? renderReportHtml(data)
          : format === 'md'
            ? renderReportMarkdown(data)
            : format === 'json'
              ? renderReportJson(data)
              : renderReportCsv(data);
      const out =
        typeof input.values.out === 'string' ? input.values.out : format === 'html' ? 'report.html' : undefined;
      if (!out) {
        // Through the CLI's stdout, which stops quietly when the reader goes away (`| head`); the CLI exits only
        // once it drained.
        input.print(text.endsWith('\n') ? text.slice(0, -1) : text);
        return 0;
      }
      await fs.mkdir(path.dirname(path.resolve(out)), { recursive: true });
      await fs.writeFile(out, text);
      input.print(
        `Wrote ${out}: ${data.totals.runs} run(s) of ${data.pipelines.length} pipeline(s) since ${data.since.slice(0, 16).replace('T', ' ')} UTC${data.emptyScheduledRuns ? ` (${data.emptyScheduledRuns} empty scheduled run(s) left out)` : ''}.`,
      );
      return 0;
    } finally {
      state.close();
    }
  },
};
