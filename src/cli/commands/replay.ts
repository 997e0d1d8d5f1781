import { EXIT, UsageError } from '../../core/errors.js';
import { openRunStaging } from '../../dialects/duckdb/driver.js';
import { planReplay, runReplay } from '../../schedule/replay.js';
import { stageRegistry } from '../../stages/registry.js';
import type { Command } from '../command.js';
import { exitCodeForReport, reportJson, reportLine } from '../format.js';
import { openDataverse, openLake, openState, pipelinesFor } from '../services.js';

/** `ferry replay --run <id>`: re-sends a run's rejected rows from its kept staged input. */
export const replayCommand: Command = {
  name: 'replay',
  summary: "re-send a run's rejected rows (after fixing the cause); resolves the rejects that go through",
  usage: 'replay --run <id> [--reason <code>] [--re-resolve] [--dry-run] [--json]',
  options: {
    run: { type: 'string', valueName: '<id>', description: 'the run whose rejects to re-send (see ferry runs)' },
    reason: { type: 'string', valueName: '<code>', description: 'only rejects with this reason' },
    're-resolve': {
      type: 'boolean',
      default: false,
      description: 'convert the rows again with the current mapping and metadata instead of the run’s own',
    },
    'dry-run': { type: 'boolean', default: false, description: 'list the rows that would be re-sent; change nothing' },
  },
  examples: [
    { text: 'See what would be re-sent:', command: 'ferry replay --run <run-id> --dry-run' },
    {
      text: 'Re-send the lookups that failed, after loading their targets:',
      command: 'ferry replay --run <run-id> --reason lookup.not_found --target prod',
    },
  ],
  async run(input) {
    const runId = input.values.run;
    if (typeof runId !== 'string') throw new UsageError('Say which run: ferry replay --run <id> (see `ferry runs`).');
    const reason = typeof input.values.reason === 'string' ? input.values.reason : undefined;
    const state = openState(input.config);
    try {
      const run = state.getRun(runId);
      if (!run) throw new UsageError(`Run \`${runId}\` is not in the state store; list runs with \`ferry runs\`.`);
      const [def] = await pipelinesFor(input.pipelinesDir, [run.pipeline], input.log);
      const base = {
        config: input.config,
        lake: openLake(input.config),
        state,
        registry: stageRegistry,
        log: input.log,
        signal: input.signal,
        runId,
        ...(reason ? { reason } : {}),
      };
      if (input.values['dry-run']) {
        const plan = await planReplay(def!, base);
        if (input.json) {
          input.print(
            JSON.stringify({
              dryRun: true,
              run: plan.run.id,
              source: plan.source,
              rows: plan.rejects.map((r) => ({
                id: r.id,
                reason: r.reason,
                key: r.key,
                sourceFile: r.sourceFile,
                rowNumber: r.rowNumber,
              })),
              notReplayable: plan.notReplayable.map((r) => r.id),
            }),
          );
        } else {
          input.print(
            `replay of ${plan.run.id} (${def!.name}) would re-send ${plan.rejects.length} row(s) from ${plan.source}:`,
          );
          for (const r of plan.rejects)
            input.print(
              `  #${r.id} [${r.reason}] ${r.sourceFile ?? '?'}:${r.rowNumber ?? '?'}${r.key ? ` key ${r.key}` : ''}`,
            );
          if (plan.notReplayable.length)
            input.print(
              `  ${plan.notReplayable.length} reject(s) cannot be replayed (no staged input or source row kept).`,
            );
          input.print('nothing changed (dry run).');
        }
        return 0;
      }
      const dataverse = await openDataverse(input.config, input.log);
      try {
        const result = await runReplay(def!, {
          ...base,
          services: { dataverse: dataverse.endpoint, openStaging: openRunStaging },
          reResolve: Boolean(input.values['re-resolve']),
        });
        if (input.json) {
          input.print(
            JSON.stringify({
              ...reportJson(result.report),
              replayOf: result.plan.run.id,
              inputs: result.inputs,
              resolved: result.resolved,
              upserted: result.upserted,
              stillRejected: result.stillRejected,
            }),
          );
        } else {
          input.print(reportLine(result.report));
          input.print(
            `built from the ${result.inputs.definition} mapping and ${result.inputs.metadata ? `the metadata kept with the run (${result.inputs.metadata})` : `the metadata in ${input.config.metadata}`}.`,
          );
          input.print(
            `replay of ${result.plan.run.id}: ${result.resolved} reject(s) resolved (${result.upserted} upserted), ${result.stillRejected} rejected again${result.stillRejected ? ` — see \`ferry rejects --run ${result.report.runId}\`` : ''}.`,
          );
        }
        // 3 (like a reject threshold) when rows were rejected again, so a script can tell "still failing" apart.
        if (result.report.status === 'succeeded' || result.report.status === 'rejects_exceeded')
          return result.stillRejected > 0 ? EXIT.rejectThresholdExceeded : EXIT.ok;
        return exitCodeForReport(result.report);
      } finally {
        await dataverse.close();
      }
    } finally {
      state.close();
    }
  },
};
