import path from 'node:path';
import { SynapseArtifactsClient } from '../../connectors/synapse/synapse-artifacts-client.js';
import { EXIT } from '../../core/errors.js';
import { readArtifacts } from '../../export/synapse/artifact-reader.js';
import {
  applyDeploy,
  formatEvent,
  partialDeployError,
  planDeploy,
  planEvents,
} from '../../export/synapse/synapse-deployer.js';
import type { Command } from '../command.js';

/** Opens the workspace client: `--workspace <name>`, or `FERRY_SYNAPSE_ENDPOINT` (a loopback http URL for tests). */
export function openWorkspace(workspace: unknown): SynapseArtifactsClient {
  const endpoint = process.env.FERRY_SYNAPSE_ENDPOINT;
  if (endpoint) {
    return new SynapseArtifactsClient({ endpoint, insecureLoopback: endpoint.startsWith('http://'), maxRetries: 0 });
  }
  return new SynapseArtifactsClient({ ...(typeof workspace === 'string' ? { workspace } : {}) });
}

/** `ferry deploy synapse`: writes the artifacts of `synapse/` to a workspace, reporting what changed. */
export const deploySynapseCommand: Command = {
  name: 'deploy synapse',
  summary: 'deploy synapse/ to a Synapse workspace (linked services → datasets → pipelines → triggers)',
  usage: 'deploy synapse --workspace <name> [--from synapse/] [--dry-run] [--json]',
  options: {
    workspace: {
      type: 'string',
      valueName: '<name>',
      env: 'FERRY_SYNAPSE_WORKSPACE',
      description: "Synapse workspace name (or the target's synapseWorkspace)",
    },
    from: { type: 'string', valueName: '<dir>', defaultText: 'synapse', description: 'artifact folder' },
    'dry-run': {
      type: 'boolean',
      default: false,
      description: 'read the workspace and list the changes; write nothing',
    },
  },
  examples: [
    { text: 'What would change:', command: 'ferry deploy synapse --workspace contoso-ws --dry-run' },
    { text: 'Deploy:', command: 'ferry deploy synapse --workspace contoso-ws' },
  ],
  async run(input) {
    const workspace = openWorkspace(input.values.workspace);
    const from = path.resolve(typeof input.values.from === 'string' ? input.values.from : 'synapse');
    const artifacts = await readArtifacts(from);
    const steps = await planDeploy(workspace, artifacts);
    const events = planEvents(steps);
    const unchanged = steps.filter((s) => s.action === 'unchanged');
    if (input.values['dry-run']) {
      if (input.json) {
        input.print(
          JSON.stringify({
            dryRun: true,
            endpoint: workspace.endpoint,
            events,
            unchanged: unchanged.map((s) => `${s.artifact.kind}/${s.artifact.name}`),
          }),
        );
      } else {
        input.print(`dry run against ${workspace.endpoint}: nothing is written`);
        for (const e of events) input.print(`would ${formatEvent(e)}`);
        for (const s of unchanged) input.print(`unchanged ${s.artifact.kind} ${s.artifact.name}`);
        input.print(`${events.length} changes, ${unchanged.length} unchanged`);
      }
      return EXIT.ok;
    }
    const report = await applyDeploy(workspace, steps, (e) => {
      if (!input.json) input.print(formatEvent(e));
    });
    if (report.failed) throw partialDeployError(report);
    if (input.json)
      input.print(
        JSON.stringify({
          endpoint: workspace.endpoint,
          applied: report.applied,
          unchanged: unchanged.map((s) => `${s.artifact.kind}/${s.artifact.name}`),
        }),
      );
    else
      input.print(`deployed to ${workspace.endpoint}: ${report.applied.length} changes, ${unchanged.length} unchanged`);
    return EXIT.ok;
  },
};
