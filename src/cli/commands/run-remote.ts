import { setTimeout as sleep } from 'node:timers/promises';
import { EXIT, FerryError, UsageError } from '../../core/errors.js';
import { NAMES } from '../../export/synapse/synapse-artifacts.js';
import type { Command } from '../command.js';
import { openWorkspace } from './deploy-synapse.js';

const DONE = new Set(['Succeeded', 'Failed', 'Cancelled']);

/** `ferry run-remote <pipeline>`: starts the pipeline's Synapse run and follows its status until it ends. */
export const runRemoteCommand: Command = {
  name: 'run-remote',
  summary: 'start a pipeline run in a Synapse workspace and follow it until it ends',
  usage:
    'run-remote <pipeline> --workspace <name> [--window-start iso] [--window-end iso] [--poll-seconds 15] [--json]',
  options: {
    workspace: {
      type: 'string',
      valueName: '<name>',
      env: 'FERRY_SYNAPSE_WORKSPACE',
      description: "Synapse workspace name (or the target's synapseWorkspace)",
    },
    'window-start': { type: 'string', valueName: '<iso>', description: 'window start (a backfill run)' },
    'window-end': { type: 'string', valueName: '<iso>', description: 'window end' },
    'poll-seconds': {
      type: 'string',
      valueName: '<n>',
      check: 'positive-number',
      defaultText: '15',
      description: 'how often to ask for the status',
    },
  },
  examples: [{ text: 'Run and follow:', command: 'ferry run-remote accounts-inbound --workspace contoso-ws' }],
  async run(input) {
    const [name, ...extra] = input.positionals;
    if (!name || extra.length)
      throw new UsageError('Name exactly one pipeline: ferry run-remote <pipeline> --workspace <name>.');
    const poll = Number(input.values['poll-seconds'] ?? 15);
    if (!(poll > 0))
      throw new UsageError(`--poll-seconds \`${String(input.values['poll-seconds'])}\` must be a positive number.`);
    const workspace = openWorkspace(input.values.workspace);
    // Pipeline names in Synapse are the exported ones; accept either spelling.
    const remote = name.startsWith('pl_') ? name : NAMES.pipeline(name);
    const parameters = {
      windowStart: typeof input.values['window-start'] === 'string' ? input.values['window-start'] : '',
      windowEnd: typeof input.values['window-end'] === 'string' ? input.values['window-end'] : '',
      mode: typeof input.values['window-start'] === 'string' ? 'backfill' : 'manual',
    };
    const runId = await workspace.createRun(remote, parameters);
    if (!input.json) input.print(`started ${remote} run ${runId} on ${workspace.endpoint}`);
    let last = '';
    for (;;) {
      const status = await workspace.getRun(runId);
      if (status.status !== last) {
        last = status.status;
        if (!input.json)
          input.print(`${new Date().toISOString()} ${status.status}${status.message ? `: ${status.message}` : ''}`);
      }
      if (DONE.has(status.status)) {
        if (input.json)
          input.print(
            JSON.stringify({ pipeline: remote, runId, status: status.status, message: status.message ?? null }),
          );
        return status.status === 'Succeeded' ? EXIT.ok : EXIT.failed;
      }
      if (input.signal.aborted) {
        throw new FerryError(
          'remote.interrupted',
          `Stopped following run \`${runId}\`; it keeps running in Synapse. Follow it in Synapse Studio.`,
        );
      }
      await sleep(poll * 1000, undefined, { signal: input.signal }).catch(() => undefined);
    }
  },
};
