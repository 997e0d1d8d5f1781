import fs from 'node:fs';
import path from 'node:path';
import { EXIT, UsageError } from '../../core/errors.js';
import { loadPipelines, selectPipelines } from '../../core/pipeline-loader.js';
import { loadEnvironment, settingsForEnvironment } from '../../export/synapse/deploy-environment.js';
import { loadExportSettings } from '../../export/synapse/export-settings.js';
import { isUpToDate, runSynapseExport } from '../../export/synapse/synapse-export-run.js';
import type { Command } from '../command.js';
import { listFlag } from '../parse.js';

/** `ferry export synapse`: pipeline definitions → Synapse artifacts + T-SQL; `--check` fails when they are stale. */
export const exportSynapseCommand: Command = {
  name: 'export synapse',
  summary: 'write Synapse pipeline JSON and T-SQL from the pipeline definitions (--check: fail if stale)',
  usage:
    'export synapse [--pipelines a,b] [--out synapse/] [--sql-out sql/tsql/] [--settings file] [--environment <name> --out <dir>] [--check] [--json]',
  options: {
    pipelines: { type: 'string', valueName: '<a,b>', defaultText: 'all', description: 'pipelines to export' },
    out: { type: 'string', valueName: '<dir>', defaultText: 'synapse', description: 'artifact folder' },
    'sql-out': {
      type: 'string',
      valueName: '<dir>',
      defaultText: 'sql/tsql (or <out>/sql/tsql)',
      description: 'T-SQL folder',
    },
    settings: {
      type: 'string',
      valueName: '<file>',
      defaultText: 'synapse/settings.json',
      description: 'workspace settings (storage, SQL, Key Vault); the file must exist',
    },
    check: { type: 'boolean', default: false, description: 'write nothing; exit 1 when the files are stale (CI)' },
    environment: {
      type: 'string',
      valueName: '<name|file>',
      defaultText: 'none: the settings as they are',
      description:
        "export with an environment's endpoints, workspace and containers (synapse/environments/<name>.json), e.g. for its one-time setup SQL; needs --out elsewhere than synapse",
    },
  },
  examples: [
    { text: 'Regenerate and commit:', command: 'ferry export synapse' },
    { text: 'Fail a CI job when the committed artifacts are stale:', command: 'ferry export synapse --check' },
    {
      text: "The prod environment's one-time setup SQL (in build/prod/sql/tsql/setup/):",
      command: 'ferry export synapse --environment prod --out build/prod',
    },
  ],
  async run(input) {
    if (input.positionals.length > 0)
      throw new UsageError(`Unexpected argument \`${input.positionals[0]}\`; name pipelines with --pipelines a,b.`);
    const root = process.cwd();
    const out = typeof input.values.out === 'string' ? input.values.out : 'synapse';
    // With a custom --out the SQL goes next to the artifacts, so an export to a temp folder touches nothing else.
    const sqlOut =
      typeof input.values['sql-out'] === 'string'
        ? input.values['sql-out']
        : out === 'synapse'
          ? 'sql/tsql'
          : path.join(out, 'sql', 'tsql');
    const pipelines = selectPipelines(await loadPipelines(input.pipelinesDir), listFlag(input.values.pipelines));
    const settingsFile =
      typeof input.values.settings === 'string' ? input.values.settings : path.join('synapse', 'settings.json');
    // A missing file would quietly export placeholder URLs and a zero service-principal id.
    if (!fs.existsSync(settingsFile))
      throw new UsageError(
        `Export settings \`${path.resolve(settingsFile)}\` do not exist; create the file (storageUrl, sqlServer, dataverseUrl, keyVaultUrl… see synapse/README.md) or pass --settings <file>.`,
      );
    const baseSettings = await loadExportSettings(settingsFile);
    const envName = typeof input.values.environment === 'string' ? input.values.environment : undefined;
    // The committed synapse/ serves every environment; an environment's copy goes elsewhere.
    if (envName && rel(root, out) === 'synapse')
      throw new UsageError(
        `--environment \`${envName}\` writes that environment's copy; pass --out <dir> (e.g. build/${envName}), synapse/ stays the export every environment deploys.`,
      );
    const settings = envName
      ? settingsForEnvironment(baseSettings, await loadEnvironment(path.dirname(path.resolve(settingsFile)), envName))
      : baseSettings;
    const check = Boolean(input.values.check);
    const outcome = await runSynapseExport({
      pipelines,
      settings,
      metadataDir: input.config.metadata,
      root,
      layout: { synapseDir: rel(root, out), sqlDir: rel(root, sqlOut) },
      check,
    });
    if (!outcome.validated)
      input.log.warn('ARM schemas not found (synapse/schemas or FERRY_SCHEMAS); artifacts were not validated.');
    const { diff } = outcome;
    if (input.json) {
      input.print(
        JSON.stringify({
          check,
          upToDate: isUpToDate(diff),
          artifacts: outcome.result.artifacts.length,
          sqlFiles: outcome.result.sqlFiles.length,
          ...diff,
        }),
      );
    } else {
      for (const p of diff.added) input.print(`${check ? 'missing' : 'added'}   ${p}`);
      for (const p of diff.changed) input.print(`${check ? 'stale' : 'changed'}   ${p}`);
      for (const p of diff.removed) input.print(`${check ? 'extra' : 'removed'}   ${p}`);
      input.print(
        check
          ? isUpToDate(diff)
            ? `up to date: ${outcome.files.length} files for ${pipelines.length} pipelines`
            : `out of date: ${diff.added.length + diff.changed.length + diff.removed.length} files differ; run \`ferry export synapse\` and commit the result`
          : `${outcome.result.artifacts.length} artifacts and ${outcome.result.sqlFiles.length} SQL files for ${pipelines.length} pipelines (${diff.added.length} added, ${diff.changed.length} changed, ${diff.removed.length} removed)`,
      );
    }
    return check && !isUpToDate(diff) ? EXIT.failed : EXIT.ok;
  },
};

function rel(root: string, p: string): string {
  return path.relative(root, path.resolve(root, p)).split(path.sep).join('/');
}
