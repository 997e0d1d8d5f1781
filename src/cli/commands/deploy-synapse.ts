import path from 'node:path';
import { SynapseArtifactsClient } from '../../connectors/synapse/synapse-artifacts-client.js';
import { EXIT, UsageError } from '../../core/errors.js';
import { readArtifacts } from '../../export/synapse/artifact-reader.js';
import { bindEnvironment, listEnvironments, loadEnvironment } from '../../export/synapse/deploy-environment.js';
import {
  applyDeploy,
  formatEvent,
  partialDeployError,
  planDeploy,
  planEvents,
} from '../../export/synapse/synapse-deployer.js';
import {
  applyPrune,
  partialPruneError,
  planPrune,
  pruneBlockedError,
  pruneEvents,
} from '../../export/synapse/synapse-pruner.js';
import type { Command } from '../command.js';

/** Opens the workspace client: `--workspace <name>`, or `FERRY_SYNAPSE_ENDPOINT` (a loopback http URL for tests). */
export function openWorkspace(workspace: unknown): SynapseArtifactsClient {
  const endpoint = process.env.FERRY_SYNAPSE_ENDPOINT;
  if (endpoint) {
    const loopback = endpoint.startsWith('http://');
    return new SynapseArtifactsClient({
      endpoint,
      insecureLoopback: loopback,
      maxRetries: 0,
      ...(loopback ? { pollIntervalMs: 10 } : {}),
    });
  }
  return new SynapseArtifactsClient({ ...(typeof workspace === 'string' ? { workspace } : {}) });
}

/** `ferry deploy synapse`: writes the artifacts of `synapse/` to a workspace, reporting what changed. */
export const deploySynapseCommand: Command = {
  name: 'deploy synapse',
  summary: 'deploy synapse/ to a Synapse workspace (linked services → datasets → pipelines → triggers)',
  usage:
    'deploy synapse [--environment <name>] [--workspace <name>] [--from synapse/] [--dry-run] [--prune [--yes]] [--json]',
  description:
    'Linked-service parameters (endpoints) take the values of the environment (`synapse/environments/<name>.json`), so one export serves every environment. --prune lists the artifacts ferry made (annotation `generated-by-dataverse-ferry`) that the definitions no longer produce; it deletes them only with --yes, after the deploy, triggers first (stopped), then pipelines, datasets, linked services, and refuses while an artifact that stays still references one. Artifacts ferry did not make are never touched.',
  options: {
    workspace: {
      type: 'string',
      valueName: '<name>',
      env: 'FERRY_SYNAPSE_WORKSPACE',
      description: "Synapse workspace name (or the environment's `workspace`)",
    },
    environment: {
      type: 'string',
      valueName: '<name|file>',
      defaultText: 'none: the exported defaults; required when <from>/environments/ has files',
      description: 'environment whose linked-service parameter values to deploy: <from>/environments/<name>.json',
    },
    from: { type: 'string', valueName: '<dir>', defaultText: 'synapse', description: 'artifact folder' },
    'dry-run': {
      type: 'boolean',
      default: false,
      description: 'read the workspace and list the changes (and with --prune the deletions); write nothing',
    },
    prune: {
      type: 'boolean',
      default: false,
      description: 'also list artifacts ferry made that the definitions no longer produce (deleted only with --yes)',
    },
    yes: {
      type: 'boolean',
      default: false,
      description: 'with --prune: delete them (after the deploy; started triggers are stopped first)',
    },
  },
  examples: [
    { text: 'What would change:', command: 'ferry deploy synapse --environment prod --dry-run' },
    { text: 'Deploy to the test environment:', command: 'ferry deploy synapse --environment test' },
    { text: 'Deploy, and list what a prune would delete:', command: 'ferry deploy synapse --environment prod --prune' },
    { text: 'Deploy and delete the orphans:', command: 'ferry deploy synapse --environment prod --prune --yes' },
  ],
  async run(input) {
    const prune = input.values.prune === true;
    const confirmed = input.values.yes === true;
    const dryRun = input.values['dry-run'] === true;
    if (confirmed && !prune) throw new UsageError('`--yes` confirms a prune; pass it with `--prune`.');
    if (confirmed && dryRun)
      throw new UsageError(
        '`--yes` and `--dry-run` contradict each other; drop one (a prune without --yes is a dry run).',
      );
    const from = path.resolve(typeof input.values.from === 'string' ? input.values.from : 'synapse');
    const exported = await readArtifacts(from);
    const envName = typeof input.values.environment === 'string' ? input.values.environment : undefined;
    let artifacts = exported;
    let environment: Awaited<ReturnType<typeof loadEnvironment>> | undefined;
    if (envName) {
      environment = await loadEnvironment(from, envName);
      artifacts = bindEnvironment(exported, environment);
    } else {
      const known = await listEnvironments(from);
      // Deploying without one would send the exported (development) endpoints to whatever workspace this is.
      if (known.length > 0)
        throw new UsageError(
          `\`${from}\` defines environments (${known.join(', ')}); pass --environment <name> so the linked services get that environment's values.`,
        );
    }
    const named = typeof input.values.workspace === 'string' ? input.values.workspace : undefined;
    // Another environment's endpoints in this workspace would point its pipelines at the wrong SQL, lake and Dataverse.
    if (named && environment?.workspace && named !== environment.workspace)
      throw new UsageError(
        `Workspace \`${named}\` (--workspace or FERRY_SYNAPSE_WORKSPACE) is not environment \`${environment.name}\`'s workspace \`${environment.workspace}\` (\`${environment.file}\`); deploy that environment's values to its own workspace.`,
      );
    const workspace = openWorkspace(named ?? environment?.workspace);
    const steps = await planDeploy(workspace, artifacts);
    const events = planEvents(steps);
    const unchanged = steps.filter((s) => s.action === 'unchanged');
    const prunePlan = prune ? await planPrune(workspace, artifacts) : undefined;
    const deletions = prunePlan ? pruneEvents(prunePlan) : [];
    const describePrune = () => {
      if (!prunePlan) return;
      for (const e of deletions) input.print(`would ${formatEvent(e)}`);
      for (const b of prunePlan.blocked)
        input.print(`blocked ${b.kind} ${b.name}: still referenced by ${b.referencedBy.join(', ')}`);
      input.print(
        `prune: ${prunePlan.targets.length} to delete, ${prunePlan.blocked.length} blocked, ${prunePlan.foreign} not made by ferry (never touched)`,
      );
    };
    const pruneJson = () =>
      prunePlan
        ? {
            prune: {
              deleted: false,
              targets: prunePlan.targets.map((t) => `${t.kind}/${t.name}`),
              blocked: prunePlan.blocked,
              foreign: prunePlan.foreign,
            },
          }
        : {};
    if (dryRun) {
      if (input.json) {
        input.print(
          JSON.stringify({
            dryRun: true,
            endpoint: workspace.endpoint,
            ...(environment ? { environment: environment.name } : {}),
            events,
            unchanged: unchanged.map((s) => `${s.artifact.kind}/${s.artifact.name}`),
            ...pruneJson(),
          }),
        );
      } else {
        input.print(`dry run against ${workspace.endpoint}: nothing is written`);
        for (const e of events) input.print(`would ${formatEvent(e)}`);
        for (const s of unchanged) input.print(`unchanged ${s.artifact.kind} ${s.artifact.name}`);
        input.print(`${events.length} changes, ${unchanged.length} unchanged`);
        describePrune();
      }
      return prunePlan && prunePlan.blocked.length > 0 ? EXIT.failed : EXIT.ok;
    }
    // A blocked prune is refused before anything is written, so the operator sees it with the deploy still to do.
    if (prunePlan && confirmed && prunePlan.blocked.length > 0) throw pruneBlockedError(prunePlan);
    const report = await applyDeploy(workspace, steps, (e) => {
      if (!input.json) input.print(formatEvent(e));
    });
    if (report.failed) throw partialDeployError(report);
    if (!input.json)
      input.print(`deployed to ${workspace.endpoint}: ${report.applied.length} changes, ${unchanged.length} unchanged`);
    let deleted: string[] = [];
    if (prunePlan && confirmed) {
      const pruned = await applyPrune(workspace, prunePlan, (e) => {
        if (!input.json) input.print(formatEvent(e));
      });
      if (pruned.failed) throw partialPruneError(pruned);
      deleted = pruned.applied.filter((e) => e.op === 'delete').map((e) => `${e.kind}/${e.name}`);
      if (!input.json) input.print(`pruned: ${deleted.length} deleted`);
    } else if (prunePlan && !input.json) {
      input.print('prune dry run: nothing is deleted without --yes');
      describePrune();
    }
    if (input.json)
      input.print(
        JSON.stringify({
          endpoint: workspace.endpoint,
          ...(environment ? { environment: environment.name } : {}),
          applied: report.applied,
          unchanged: unchanged.map((s) => `${s.artifact.kind}/${s.artifact.name}`),
          ...(prunePlan && confirmed
            ? { prune: { deleted: true, targets: deleted, foreign: prunePlan.foreign } }
            : pruneJson()),
        }),
      );
    return prunePlan && !confirmed && prunePlan.blocked.length > 0 ? EXIT.failed : EXIT.ok;
  },
};
