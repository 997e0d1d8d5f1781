import { UsageError } from '../../core/errors.js';

import { runPipeline } from '../../core/runner.js';
import { openRunStaging } from '../../dialects/duckdb/driver.js';
import { stageRegistry } from '../../stages/registry.js';
import type { Command } from '../command.js';
import { exitCodeForReport, reportJson, reportLine } from '../format.js';
import { createProgress } from '../progress.js';
import { announceLakeTarget, openDataverse, openLake, openState, pipelinesFor } from '../services.js';

/** `ferry run <pipeline>`: one run now, on the pipeline's next window. */
export const runCommand: Command = {
  name: 'run',
  summary: 'run a pipeline once on its next window',
  usage: 'run <pipeline> [--reprocess] [--json]',
  options: {
    reprocess: {
      type: 'boolean',
      default: false,
      description: 'read every input again, including the ones already processed (the sink is idempotent)',
    },
  },
  description:
    'Plans the window (the inputs not processed yet), runs the stages and moves the cursor only when the sink succeeded and the rejects are within the threshold. Inbound pipelines need a Dataverse: --dataverse, a target of ferry.config.json, or --emulator.',
  examples: [
    { text: 'One run against the built-in emulator:', command: 'ferry run accounts-inbound --emulator' },
    {
      text: 'One run against the prod target of ferry.config.json:',
      command: 'ferry run accounts-inbound --target prod',
    },
    { text: 'Machine-readable result:', command: 'ferry run contacts-outbound --json' },
  ],
  async run(input) {
    const [name, ...extra] = input.positionals;
    if (!name || extra.length) throw new UsageError('Name exactly one pipeline: ferry run <pipeline>.');
    const [def] = await pipelinesFor(input.pipelinesDir, [name], input.log);
    const lake = openLake(input.config);
    const state = openState(input.config);
    if (def!.direction !== 'inbound') announceLakeTarget(input.config, input.log);
    const dataverse = def!.direction === 'inbound' ? await openDataverse(input.config, input.log) : undefined;
    const progress = input.json ? undefined : createProgress(def!.name);
    try {
      const report = await runPipeline(def!, {
        mode: 'manual',
        config: input.config,
        lake,
        state,
        registry: stageRegistry,
        services: dataverse
          ? { dataverse: dataverse.endpoint, openStaging: openRunStaging }
          : { openStaging: openRunStaging },
        log: input.log,
        ...(progress ? { progress } : {}),
        signal: input.signal,
        reprocess: Boolean(input.values.reprocess),
      });
      progress?.done();
      input.print(input.json ? JSON.stringify(reportJson(report)) : reportLine(report));
      return exitCodeForReport(report);
    } finally {
      await dataverse?.close();
      state.close();
    }
  },
};
