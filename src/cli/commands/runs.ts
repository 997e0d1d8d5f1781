import { didYouMean } from '../../core/closest-name.js';
import { UsageError } from '../../core/errors.js';
import { bigintSafe } from '../../core/log.js';
import { loadPipelineSet } from '../../core/pipeline-loader.js';
import { alignColumns } from '../../report/capacity-text.js';
import { formatNumber, formatSeconds } from '../../report/figures.js';
import { isEmptyScheduledRun, reportRun } from '../../report/report-data.js';
import type { Command } from '../command.js';
import { openState } from '../services.js';

/** `ferry runs`: the latest runs, newest first, in aligned columns. */
export const runsCommand: Command = {
  name: 'runs',
  summary: 'list recent runs: start, duration, rows, rows/s, 429s (empty scheduled runs hidden unless --all)',
  usage: 'runs [--pipeline <name>] [--limit 20] [--all] [--json]',
  options: {
    pipeline: {
      type: 'string',
      valueName: '<name>',
      defaultText: 'every pipeline',
      description: 'only this pipeline’s runs',
    },
    limit: { type: 'string', valueName: '<n>', check: 'whole-number', defaultText: '20', description: 'how many runs' },
    all: { type: 'boolean', description: 'also list empty scheduled runs' },
  },
  examples: [
    { text: 'The last 20 runs:', command: 'ferry runs' },
    {
      text: 'The last 5 runs of one pipeline as JSON:',
      command: 'ferry runs --pipeline accounts-inbound --limit 5 --json',
    },
  ],
  async run(input) {
    const limitText = typeof input.values.limit === 'string' ? input.values.limit : '20';
    const limit = Number(limitText);
    if (!Number.isInteger(limit) || limit < 1)
      throw new UsageError(`--limit \`${limitText}\` must be a whole number of at least 1, e.g. --limit 50.`);
    const all = input.values.all === true;
    const state = openState(input.config);
    try {
      const pipeline = typeof input.values.pipeline === 'string' ? input.values.pipeline : undefined;
      // Empty 15-minute ticks would push the runs that did something out of the list: skip them, then cut.
      const listed = state.listRuns({ ...(pipeline ? { pipeline } : {}), limit: all ? limit : limit * 50 + 100 });
      const runs = (all ? listed : listed.filter((r) => !isEmptyScheduledRun(r))).slice(0, limit);
      const hidden = all ? 0 : listed.slice(0, listed.indexOf(runs.at(-1)!) + 1).length - runs.length;
      if (input.json) {
        for (const r of runs)
          input.print(
            JSON.stringify(
              {
                runId: r.id,
                pipeline: r.pipeline,
                mode: r.mode,
                status: r.status,
                startedAt: r.startedAt,
                finishedAt: r.finishedAt,
                durationMs: r.durationMs,
                items: r.window.items.length,
                counts: r.counts,
                rejectsByReason: r.rejectsByReason,
                error: r.error,
                metrics: r.metrics,
              },
              bigintSafe,
            ),
          );
        return 0;
      }
      if (runs.length === 0) {
        if (pipeline && listed.length === 0) {
          // A mistyped name finds nothing: say so, and which pipeline was meant.
          const known = await loadPipelineSet(input.pipelinesDir).then(
            (set) => set.pipelines.map((p) => p.name),
            (): string[] => [],
          );
          if (!known.includes(pipeline))
            throw new UsageError(
              `No runs of \`${pipeline}\`, and no pipeline of that name in \`${input.pipelinesDir}\`.${didYouMean(pipeline, known)}`,
            );
          input.print(`No runs of \`${pipeline}\` yet. Start one with \`ferry run ${pipeline}\`.`);
          return 0;
        }
        input.print(
          listed.length && !all
            ? `No runs with work in the last ${listed.length} run(s); \`ferry runs --all\` lists the empty scheduled ones too.`
            : 'No runs yet. Start one with `ferry run <pipeline>` or `npm start`.',
        );
        return 0;
      }
      const rows = runs.map((run) => {
        const r = reportRun(run);
        return [
          r.startedAt.replace('T', ' ').slice(0, 19),
          r.pipeline,
          r.status,
          r.mode,
          r.durationMs === null ? '' : formatSeconds(r.durationMs / 1000),
          formatNumber(r.items),
          formatNumber(r.counts.read),
          formatNumber(r.counts.upserted + r.counts.written),
          formatNumber(r.counts.rejected),
          r.rowsPerSec === null ? '' : formatNumber(r.rowsPerSec, 1),
          r.requests === null ? '' : formatNumber(r.throttledTotal),
          r.runId,
        ];
      });
      const head = [
        'started (UTC)',
        'pipeline',
        'status',
        'mode',
        'duration',
        'items',
        'read',
        'upserted/written',
        'rejected',
        'rows/s',
        '429s',
        'run',
      ];
      for (const line of alignColumns([head, ...rows], new Set([4, 5, 6, 7, 8, 9, 10]))) input.print(line);
      const failed = runs.filter((r) => r.error);
      for (const r of failed) input.print(`  ${r.id}: ${r.error!.code}: ${r.error!.message}`);
      if (hidden) input.print(`(${hidden} empty scheduled run(s) hidden; --all shows them)`);
      return 0;
    } finally {
      state.close();
    }
  },
};
