import { bigintSafe } from '../../core/log.js';
import type { Command } from '../command.js';
import { openState } from '../services.js';

/** `ferry runs`: the latest runs, newest first. */
export const runsCommand: Command = {
  name: 'runs',
  summary: 'list recent runs',
  usage: 'runs [--pipeline <name>] [--limit N] [--json]',
  options: {
    pipeline: { type: 'string', valueName: '<name>', description: 'only this pipeline’s runs' },
    limit: { type: 'string', valueName: '<n>', check: 'whole-number', defaultText: '20', description: 'how many runs' },
  },
  examples: [
    { text: 'The last 20 runs:', command: 'ferry runs' },
    {
      text: 'The last 5 runs of one pipeline as JSON:',
      command: 'ferry runs --pipeline accounts-inbound --limit 5 --json',
    },
  ],
  async run(input) {
    const state = openState(input.config);
    try {
      const runs = state.listRuns({
        ...(typeof input.values.pipeline === 'string' ? { pipeline: input.values.pipeline } : {}),
        limit: Number(input.values.limit ?? 20),
      });
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
                durationMs: r.durationMs,
                items: r.window.items.length,
                counts: r.counts,
                rejectsByReason: r.rejectsByReason,
                error: r.error,
              },
              bigintSafe,
            ),
          );
        return 0;
      }
      if (runs.length === 0) input.print('No runs yet. Start one with `ferry run <pipeline>` or `npm start`.');
      for (const r of runs) {
        const c = r.counts;
        input.print(
          `${r.id}  ${r.status.padEnd(16)} ${r.mode.padEnd(9)} items ${String(r.window.items.length).padStart(3)}  read ${c.read} upserted ${c.upserted} written ${c.written} rejected ${c.rejected}${r.error ? `  (${r.error.message})` : ''}`,
        );
      }
      return 0;
    } finally {
      state.close();
    }
  },
};
