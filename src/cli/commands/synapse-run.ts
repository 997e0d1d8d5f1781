import fs from 'node:fs';
import path from 'node:path';
import { isUrlLocation } from '../../core/config.js';
import { EXIT, UsageError } from '../../core/errors.js';
import { loadPipelines } from '../../core/pipeline-loader.js';
import { listEnvironments, loadEnvironment } from '../../export/synapse/deploy-environment.js';
import { loadExportSettings } from '../../export/synapse/export-settings.js';
import { ArtifactStore } from '../../export/synapse/runtime/artifact-store.js';
import type { StepRenderings } from '../../export/synapse/runtime/connectors/sql-engine.js';
import type { Json } from '../../export/synapse/runtime/expression/json-value.js';
import { formatMonitoringView } from '../../export/synapse/runtime/run-records.js';
import { SynapseRuntime } from '../../export/synapse/runtime/synapse-runtime.js';
import { synapseDataSources, synapseStepRenderings } from '../../export/synapse/step-renderings.js';
import type { Command } from '../command.js';
import { openDataverse } from '../services.js';

/** `ferry synapse run`: executes exported Synapse artifacts locally (a pipeline once, or a trigger over ticks). */
export const synapseRunCommand: Command = {
  name: 'synapse run',
  summary: 'run an exported Synapse pipeline or trigger on the local runtime (lake, DuckDB, Dataverse over HTTP)',
  usage:
    'synapse run <pipeline|trigger> [--from <time>] [--ticks N] [--tick 15m] [--param k=v]... [--fs name=dir]... [--environment <name>] [--artifacts synapse/] [--settings synapse/settings.json] [--workspace dir] [--json]',
  options: {
    from: {
      type: 'string',
      valueName: '<time>',
      defaultText: 'now',
      description: 'the simulated clock starts here (ISO 8601), e.g. 2026-11-20T09:00:00Z',
    },
    ticks: {
      type: 'string',
      valueName: '<n>',
      defaultText: '1 for a trigger',
      description: "a trigger's ticks to run (a pipeline runs once)",
    },
    tick: { type: 'string', valueName: '<duration>', defaultText: '15m', description: 'time between ticks' },
    param: {
      type: 'string',
      multiple: true,
      valueName: '<name>=<value>',
      defaultText: "the pipeline's defaults",
      description: 'a pipeline parameter',
    },
    fs: {
      type: 'string',
      multiple: true,
      valueName: '<name>=<dir>',
      defaultText: 'lake=<the lake folder>',
      description: 'a local folder for an ADLS file system the artifacts name',
    },
    environment: {
      type: 'string',
      valueName: '<name>',
      defaultText: "none: the linked services' exported defaults",
      description:
        "environment whose linked-service parameter values to bind, as `ferry deploy synapse --environment` deploys them: <artifacts>/environments/<name>.json (or a path to a .json file); its container renames are not applied, --fs names each exported container's local folder",
    },
    artifacts: {
      type: 'string',
      valueName: '<dir>',
      defaultText: 'synapse',
      description: 'the exported artifacts (ferry export synapse)',
    },
    settings: {
      type: 'string',
      valueName: '<file>',
      defaultText: '<artifacts>/settings.json, else synapse/settings.json',
      description: 'the export settings the artifacts were made with (pipelines, parameters per environment)',
    },
    workspace: {
      type: 'string',
      valueName: '<dir>',
      defaultText: '<state>/synapse-runtime',
      description: "the runtime's run records and scratch files",
    },
  },
  examples: [
    { text: 'Run one exported pipeline on the local runtime:', command: 'ferry synapse run pl_accounts_inbound' },
    {
      text: 'Drive the 15-minute trigger over 8 ticks from a given time:',
      command: 'ferry synapse run tr_ferry_every_15m --ticks 8 --from 2026-11-20T09:00:00Z',
    },
    {
      text: "Run a pipeline with the dev environment's linked-service parameters (synapse/environments/dev.json):",
      command: 'ferry synapse run pl_accounts_outbound --environment dev',
    },
  ],
  async run(input) {
    const [name, extra] = input.positionals;
    if (!name)
      throw new UsageError(
        'Name a pipeline or trigger: `ferry synapse run pl_accounts_inbound` or `ferry synapse run tr_ferry_every_15m --ticks 8`.',
      );
    if (extra) throw new UsageError(`Unexpected argument \`${extra}\`; run one pipeline or trigger at a time.`);
    const artifactsDir = typeof input.values.artifacts === 'string' ? input.values.artifacts : 'synapse';
    const loaded = await ArtifactStore.load(artifactsDir);
    const store =
      typeof input.values.environment === 'string'
        ? await bindEnvironment(loaded, artifactsDir, input.values.environment)
        : loaded;
    const isTrigger = store.has('trigger', name);
    if (!isTrigger && !store.has('pipeline', name)) {
      throw new UsageError(
        `\`${name}\` is neither a pipeline nor a trigger under \`${artifactsDir}\`; pipelines: ${store.names('pipeline').join(', ')}; triggers: ${store.names('trigger').join(', ')}.`,
      );
    }
    const from = typeof input.values.from === 'string' ? input.values.from : new Date().toISOString();
    if (Number.isNaN(Date.parse(from)))
      throw new UsageError(`--from \`${from}\` is not an ISO 8601 time; e.g. 2026-11-20T09:00:00Z.`);
    const ticks = input.values.ticks === undefined ? (isTrigger ? 1 : 0) : Number(input.values.ticks);
    if (!Number.isInteger(ticks) || ticks < 0)
      throw new UsageError(`--ticks \`${input.values.ticks}\` must be a non-negative integer.`);
    if (!isTrigger && input.values.ticks !== undefined)
      throw new UsageError('--ticks drives triggers; a pipeline runs once. Name a trigger to run ticks.');
    const tickMs = durationMs(typeof input.values.tick === 'string' ? input.values.tick : '15m');
    const parameters = keyValues(input.values.param, '--param');
    if (isTrigger && Object.keys(parameters).length)
      throw new UsageError('--param sets pipeline parameters; a trigger passes its own.');
    const fileSystems: Record<string, string> = {};
    if (!isUrlLocation(input.config.lake)) fileSystems.lake = input.config.lake;
    for (const [k, v] of Object.entries(keyValues(input.values.fs, '--fs'))) fileSystems[k] = String(v);
    // The local runtime only talks to a local Dataverse: the built-in emulator unless one is named.
    const dataverse = await openDataverse({ ...input.config, emulator: !input.config.dataverse }, input.log);
    try {
      const url = dataverse.endpoint.url;
      if (!/^https?:\/\/(127\.0\.0\.1|localhost|\[::1\])(:\d+)?$/.test(url)) {
        throw new UsageError(
          `The local Synapse runtime talks only to a local Dataverse (the emulator); \`${url}\` is remote. Drop --dataverse to use the built-in emulator.`,
        );
      }
      // The SQL steps run as their DuckDB renderings, from the same definitions and settings the export used. When
      // they cannot be planned, every SQL step is refused by name (the warning says why).
      const local = path.join(artifactsDir, 'settings.json');
      const settingsFile =
        typeof input.values.settings === 'string'
          ? input.values.settings
          : fs.existsSync(local)
            ? local
            : path.join('synapse', 'settings.json');
      const settings = await loadExportSettings(settingsFile);
      let stepRenderings: StepRenderings | undefined;
      try {
        stepRenderings = await synapseStepRenderings(await loadPipelines(input.pipelinesDir), {
          settings,
          metadataDir: input.config.metadata,
        });
      } catch (error) {
        input.log.warn(
          `No DuckDB renderings of the SQL steps (${(error as Error).message.slice(0, 300)}); SQL steps will be refused by name.`,
        );
      }
      const runtime = await SynapseRuntime.open({
        ...(stepRenderings ? { stepRenderings } : {}),
        dataSources: synapseDataSources(settings),
        artifacts: store,
        workspaceDir:
          typeof input.values.workspace === 'string'
            ? input.values.workspace
            : path.join(input.config.state, 'synapse-runtime'),
        fileSystems,
        startTime: from,
        dataverseUrl: url,
      });
      try {
        // The one-time Azure SQL setup (state store, error store, key map); idempotent.
        const setup = path.join('sql', 'tsql', 'setup', 'ferry-state.sql');
        if (fs.existsSync(setup)) await runtime.runSetup([setup]);
        if (isTrigger) {
          runtime.startTrigger(name);
          await runtime.runTicks(ticks, tickMs);
        } else {
          await runtime.runPipeline(name, parameters);
        }
        const runs = runtime.runs;
        if (input.json) input.print(JSON.stringify({ ticks, runs }));
        else for (const line of formatMonitoringView(runs)) input.print(line);
        if (isTrigger && runs.length === 0)
          input.log.warn(
            `Trigger \`${name}\` fired no run in ${ticks} tick(s) of ${tickMs / 60_000} min from ${from}.`,
          );
        return runs.every((r) => r.status === 'Succeeded') ? EXIT.ok : EXIT.failed;
      } finally {
        await runtime.close();
      }
    } finally {
      await dataverse.close();
    }
  },
};

/**
 * The artifacts as `ferry deploy synapse --environment <name>` deploys them: each linked-service parameter gets the
 * environment's value as its default. As the deploy does, a parameter the environment leaves without a value is
 * refused by name (the run would otherwise use the exported, development, values); a value no linked service
 * declares is refused by the store.
 */
async function bindEnvironment(store: ArtifactStore, artifactsDir: string, name: string): Promise<ArtifactStore> {
  const env = await loadEnvironment(artifactsDir, name);
  const missing: string[] = [];
  for (const service of store.names('linkedService')) {
    const params = store.get('linkedService', service).properties.parameters;
    if (!params || typeof params !== 'object' || Array.isArray(params)) continue;
    for (const p of Object.keys(params)) if (!Object.hasOwn(env.parameters, p)) missing.push(`\`${p}\` (${service})`);
  }
  if (missing.length > 0) {
    const known = await listEnvironments(artifactsDir);
    throw new UsageError(
      `Environment \`${env.name}\` (\`${env.file}\`) gives no value for ${missing.join(', ')}; add ${missing.length === 1 ? 'it' : 'them'} under \`parameters\` (environments under \`${artifactsDir}\`: ${known.join(', ') || '(none)'}).`,
    );
  }
  return store.withLinkedServiceParameters(env.parameters);
}

function keyValues(values: unknown, flag: string): Record<string, Json> {
  const out: Record<string, Json> = {};
  for (const item of Array.isArray(values) ? values : []) {
    const text = String(item);
    const eq = text.indexOf('=');
    if (eq <= 0) throw new UsageError(`${flag} \`${text}\` must be name=value.`);
    const raw = text.slice(eq + 1);
    // Values that read as JSON numbers, booleans, arrays or objects keep that type (Int/Bool/Array parameters).
    let value: Json = raw;
    if (/^(-?\d+(\.\d+)?|true|false|\[.*\]|\{.*\})$/s.test(raw)) {
      try {
        value = JSON.parse(raw) as Json;
      } catch {
        value = raw;
      }
    }
    out[text.slice(0, eq)] = value;
  }
  return out;
}

function durationMs(text: string): number {
  const m = /^(\d+)(s|m|h|d)$/.exec(text);
  if (!m) throw new UsageError(`--tick \`${text}\` must be a duration like 15m, 1h, 30s or 1d.`);
  return Number(m[1]) * { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }[m[2] as 's']!;
}
