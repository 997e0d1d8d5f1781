import { pipelineStatuses, schedulerStatus } from '../../schedule/pipeline-status.js';
import type { Command } from '../command.js';
import { listFlag } from '../parse.js';
import { openState, pipelinesFor } from '../services.js';

/** `ferry status`: each pipeline's last run, next run, cursor, lease holder and open rejects. */
export const statusCommand: Command = {
  name: 'status',
  summary:
    "show whether a scheduler runs, and each pipeline's last run, next run, cursor, lease holder and open rejects",
  usage: 'status [--pipelines a,b] [--every 15m] [--json]',
  options: {
    pipelines: { type: 'string', valueName: '<a,b>', defaultText: 'all', description: 'pipelines to show' },
    every: { type: 'string', valueName: '<duration>', check: 'duration', description: 'cadence used for "next run"' },
  },
  examples: [{ text: 'Every pipeline:', command: 'ferry status' }],
  async run(input) {
    const pipelines = await pipelinesFor(input.pipelinesDir, listFlag(input.values.pipelines), input.log);
    const state = openState(input.config);
    try {
      const every = typeof input.values.every === 'string' ? input.values.every : undefined;
      const nowMs = Date.now();
      const rows = pipelineStatuses(pipelines, state, { nowMs, ...(every ? { every } : {}) });
      const scheduler = schedulerStatus(state, nowMs);
      if (input.json) {
        input.print(JSON.stringify({ scheduler, pipelines: rows }));
        return 0;
      }
      const tick = scheduler.lastTick
        ? `last tick ${scheduler.lastTick.at} by ${scheduler.lastTick.holder}`
        : 'no scheduler has ticked yet';
      input.print(
        scheduler.running
          ? `scheduler: running (${scheduler.holder} holds the lease until ${scheduler.leaseExpiresAt}); ${tick}`
          : `scheduler: not running (no one holds the scheduler lease; start one with \`ferry schedule\`); ${tick}`,
      );
      for (const s of rows) {
        const last = s.lastRun
          ? `${s.lastRun.status} (${s.lastRun.mode}) ${s.lastRun.runId} at ${s.lastRun.finishedAt ?? s.lastRun.startedAt}, read ${s.lastRun.counts.read} rejected ${s.lastRun.counts.rejected}`
          : 'never ran';
        input.print(`${s.pipeline} (${s.direction}, every ${s.every})`);
        input.print(`  last run:   ${last}${s.lastRun?.error ? ` — ${s.lastRun.error.code}` : ''}`);
        input.print(`  succeeded:  ${s.lastSucceededAt ?? 'never'}`);
        if (s.nextRun) input.print(`  next run:   ${s.nextRun}`);
        input.print(
          `  cursor:     ${s.cursor ? `${s.cursor.source} = ${s.cursor.value ?? '(none)'}, ${s.cursor.processedItems} item(s) processed` : '(none)'}`,
        );
        input.print(`  lease:      ${s.lease ? `held by ${s.lease.holder} until ${s.lease.expiresAt}` : 'free'}`);
        input.print(
          `  rejects:    ${s.openRejects} open${s.openRejects ? ` (ferry rejects --pipeline ${s.pipeline})` : ''}`,
        );
      }
      return 0;
    } finally {
      state.close();
    }
  },
};
