import { WebhookAlerts } from '../../alerts/webhook-alerts.js';
import { UsageError } from '../../core/errors.js';
import { bigintSafe } from '../../core/log.js';
import { parseDuration } from '../../core/pipeline.js';

import { runPipeline } from '../../core/runner.js';
import { openRunStaging } from '../../dialects/duckdb/driver.js';
import { type ScheduleEvent, Scheduler } from '../../schedule/scheduler.js';
import { stageRegistry } from '../../stages/registry.js';
import type { Command } from '../command.js';
import { countsText } from '../format.js';
import { listFlag } from '../parse.js';
import { announceLakeTarget, openDataverse, openLake, openState, pipelinesFor } from '../services.js';

/** One plain line per scheduler event (the `--json` form is the event object itself). */
export function scheduleEventLine(e: ScheduleEvent): string {
  switch (e.event) {
    case 'tick':
      return `tick ${e.at}: ${e.due.join(', ')}${e.missedTicks ? ` (${e.missedTicks} tick(s) missed while busy, not repeated)` : ''}`;
    case 'run': {
      const counts = countsText(e.counts);
      const retry = e.attempt > 1 ? ` (attempt ${e.attempt})` : '';
      const error = e.error ? ` — ${e.error.code}: ${e.error.message}` : '';
      return `run ${e.pipeline} ${e.runId ?? '-'} ${e.status}${retry}: ${counts}, ${(e.durationMs / 1000).toFixed(1)}s${error}`;
    }
    case 'dependency-skipped':
      return `run ${e.pipeline} skipped: its dependency \`${e.dependsOn}\` did not complete in this tick`;
    case 'stopped':
      return `scheduler stopped after ${e.ticks} tick(s) (${e.reason})`;
  }
}

/**
 * `ferry schedule`: runs pipelines on their cadence in the foreground until SIGINT/SIGTERM (the current batch
 * finishes and commits; a second signal aborts).
 */
export const scheduleCommand: Command = {
  name: 'schedule',
  summary: 'run pipelines every 15 minutes (or --every) until stopped',
  usage: 'schedule [--pipelines a,b] [--every 15m] [--alert-webhook <url>] [--stale-after 1h] [--json]',
  options: {
    pipelines: { type: 'string', valueName: '<a,b>', defaultText: 'all', description: 'pipelines to schedule' },
    every: {
      type: 'string',
      valueName: '<duration>',
      check: 'duration',
      defaultText: "each pipeline's own (15m)",
      description: 'cadence for every pipeline',
    },
    ticks: {
      type: 'string',
      valueName: '<n>',
      check: 'whole-number',
      description: 'stop after n ticks (tests, demos)',
    },
    retries: {
      type: 'string',
      valueName: '<n>',
      check: 'whole-number',
      defaultText: '2',
      description: 'attempts for a run that failed with a temporary error',
    },
    'alert-webhook': {
      type: 'string',
      valueName: '<url>',
      env: 'FERRY_ALERT_WEBHOOK',
      description: 'POSTs an alert for failed runs, exceeded reject thresholds and stale pipelines',
    },
    'stale-after': {
      type: 'string',
      valueName: '<duration>',
      check: 'duration',
      description: 'alert when a pipeline has not succeeded for this long',
    },
  },
  description:
    'Runs in the foreground. SIGINT/SIGTERM: the current batch finishes and commits, the lease is released; a second signal aborts.',
  examples: [
    { text: 'Every pipeline on its cadence against the prod target:', command: 'ferry schedule --target prod' },
    {
      text: 'Two pipelines every 5 minutes, alerting a webhook:',
      command:
        'ferry schedule --pipelines accounts-inbound,contacts-inbound --every 5m --alert-webhook https://hooks.example.com/ferry',
    },
  ],
  async run(input) {
    const every = typeof input.values.every === 'string' ? input.values.every : undefined;
    if (every) parseDuration(every);
    const maxTicks = typeof input.values.ticks === 'string' ? Number(input.values.ticks) : undefined;
    if (maxTicks !== undefined && !(Number.isInteger(maxTicks) && maxTicks > 0)) {
      throw new UsageError(`--ticks \`${input.values.ticks}\` must be a positive whole number.`);
    }
    const retries = typeof input.values.retries === 'string' ? Number(input.values.retries) : 2;
    const staleAfter =
      typeof input.values['stale-after'] === 'string' ? parseDuration(input.values['stale-after']) : undefined;
    const pipelines = await pipelinesFor(input.pipelinesDir, listFlag(input.values.pipelines), input.log);
    if (pipelines.length === 0) throw new UsageError(`No pipelines in \`${input.pipelinesDir}\` to schedule.`);
    const webhook =
      (typeof input.values['alert-webhook'] === 'string' ? input.values['alert-webhook'] : undefined) ??
      process.env.FERRY_ALERT_WEBHOOK;
    const state = openState(input.config);
    const lake = openLake(input.config);
    const dataverse = pipelines.some((p) => p.direction === 'inbound')
      ? await openDataverse(input.config, input.log)
      : undefined;
    if (!dataverse) announceLakeTarget(input.config, input.log);
    try {
      const scheduler = new Scheduler({
        pipelines,
        state,
        ...(every ? { every } : {}),
        signal: input.signal,
        ...(maxTicks ? { maxTicks } : {}),
        retry: { attempts: retries, delayMs: 5000 },
        ...(webhook ? { alerts: new WebhookAlerts({ url: webhook, state, log: input.log }) } : {}),
        ...(staleAfter ? { staleAfterMs: () => staleAfter } : {}),
        onEvent: (e) => input.print(input.json ? JSON.stringify(e, bigintSafe) : scheduleEventLine(e)),
        runOne: (def, options) =>
          runPipeline(def, {
            ...options,
            config: input.config,
            lake,
            state,
            registry: stageRegistry,
            services: dataverse
              ? { dataverse: dataverse.endpoint, openStaging: openRunStaging }
              : { openStaging: openRunStaging },
            log: input.log,
          }),
      });
      if (!input.json) {
        input.print(
          `Scheduling ${pipelines.map((p) => `${p.name} every ${every ?? p.every}`).join(', ')}. Stop with Ctrl-C.`,
        );
      }
      await scheduler.run();
      return 0;
    } finally {
      await dataverse?.close();
      state.close();
    }
  },
};

/** Kept for importers of the old place; the helper lives in `cli/parse.ts` (importing it here loaded the scheduler). */
export { listFlag };
