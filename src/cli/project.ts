import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { type FerryConfig, resolveConfig } from '../core/config.js';
import { UsageError } from '../core/errors.js';
import type { Logger } from '../core/log.js';
import {
  findProjectRoot,
  loadProjectConfig,
  type Project,
  type ProjectConfigFile,
  resolveTargetValues,
  type SecretResolver,
  type TargetConfig,
} from '../core/project-config.js';
import type { CommandInput } from './command.js';

/** The folder of the dataverse-ferry package itself (its bundled pipelines, fixtures, templates). */
export const PACKAGE_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

export interface ProjectSettings {
  readonly config: FerryConfig;
  readonly pipelinesDir: string;
  readonly project: Project | undefined;
  /** The configuration file as written (references unresolved), when there is one. */
  readonly file: ProjectConfigFile | undefined;
}

export interface LoadSettingsOptions {
  readonly cwd?: string;
  readonly env?: NodeJS.ProcessEnv;
  /** Reads Key Vault references; default the `@azure/keyvault-secrets` resolver. */
  readonly resolveSecret?: SecretResolver;
}

/**
 * Resolves what a command works on: flags, then environment variables, then the chosen target of
 * `ferry.config.json` (with `${env:NAME}` and Key Vault references resolved now), then defaults relative to the
 * project root. Target values that other parts read from the environment (staging memory, alert webhook,
 * telemetry) are handed over as those variables when they are not set already.
 */
export async function loadProjectSettings(
  values: CommandInput['values'],
  _log: Logger,
  options: LoadSettingsOptions = {},
): Promise<ProjectSettings> {
  const env = options.env ?? process.env;
  const cwd = options.cwd ?? process.cwd();
  const flag = (name: string) => (typeof values[name] === 'string' ? (values[name] as string) : undefined);
  const project = findProjectRoot(cwd);
  const configArg = flag('config') ?? (env.FERRY_CONFIG || undefined);
  const configFile = configArg ? path.resolve(cwd, configArg) : project?.configFile;
  if (configArg && !fs.existsSync(configFile!))
    throw new UsageError(`Configuration file \`${configFile}\` does not exist; create it with \`ferry init\`.`);
  const file = configFile ? loadProjectConfig(configFile) : undefined;
  const root = configFile ? path.dirname(configFile) : project?.root;

  const targetName = flag('target') ?? (env.FERRY_TARGET || undefined) ?? file?.defaultTarget;
  let target: TargetConfig | undefined;
  if (targetName) {
    if (!file)
      throw new UsageError(
        `Target \`${targetName}\` needs a ${configArg ? 'configuration file' : 'ferry.config.json'}; none was found from \`${cwd}\` upwards. Create one with \`ferry init\` or pass --config <file>.`,
      );
    const raw = file.targets[targetName];
    if (!raw)
      throw new UsageError(
        `Target \`${targetName}\` is not in \`${configFile}\`; known: ${Object.keys(file.targets).join(', ') || '(none)'}.`,
      );
    const resolveSecret =
      options.resolveSecret ??
      (async (reference) => {
        const { createKeyVaultSecretResolver } = await import('../connectors/keyvault/key-vault-secret-resolver.js');
        return createKeyVaultSecretResolver()(reference);
      });
    target = await resolveTargetValues(raw, `targets.${targetName}`, resolveSecret, env);
  }

  const inRoot = (p: string | undefined) => (p === undefined || !root ? p : path.resolve(root, p));
  const emulatorTarget = target?.dataverse === 'emulator';
  const config = resolveConfig(
    {
      ...(flag('lake') ? { lake: flag('lake')! } : {}),
      ...(flag('state') ? { state: flag('state')! } : {}),
      ...(flag('dataverse') ? { dataverse: flag('dataverse')! } : {}),
      ...(flag('metadata') ? { metadata: flag('metadata')! } : {}),
      ...(flag('warehouse') ? { warehouse: flag('warehouse')! } : {}),
    },
    env,
    {
      ...(root ? { root } : {}),
      ...(target?.lake ? { lake: isUrl(target.lake) ? target.lake : inRoot(target.lake)! } : {}),
      ...(target?.state ? { state: inRoot(target.state)! } : {}),
      ...(target?.metadata ? { metadata: inRoot(target.metadata)! } : {}),
      ...(target?.warehouse
        ? { warehouse: isUrl(target.warehouse) ? target.warehouse : inRoot(target.warehouse)! }
        : {}),
      ...(target?.dataverse && !emulatorTarget ? { dataverse: target.dataverse } : {}),
      ...(emulatorTarget || values.emulator === true ? { emulator: true } : {}),
      ...(targetName ? { target: targetName } : {}),
      ...(target?.identities ? { identities: target.identities } : {}),
    },
  );
  if (target) handOver(target, env);
  // Absolute from here on, so the CLI may work from the project root (where pipelines' relative paths point).
  const absolute = (p: string) => (isUrl(p) ? p : path.resolve(cwd, p));
  const resolved: FerryConfig = {
    ...config,
    lake: absolute(config.lake),
    state: absolute(config.state),
    metadata: absolute(config.metadata),
    warehouse: absolute(config.warehouse),
  };
  const pipelinesDir =
    flag('pipelines-dir') !== undefined
      ? path.resolve(cwd, flag('pipelines-dir')!)
      : env.FERRY_PIPELINES
        ? path.resolve(cwd, env.FERRY_PIPELINES)
        : target?.pipelines
          ? inRoot(target.pipelines)!
          : path.join(root ?? cwd, 'pipelines');
  return {
    config: resolved,
    pipelinesDir,
    project: root ? { root, ...(configFile ? { configFile } : {}) } : undefined,
    file,
  };
}

/** Target values read elsewhere through environment variables; a variable already set wins. */
function handOver(target: TargetConfig, env: NodeJS.ProcessEnv): void {
  const pairs: Array<[string, string | undefined]> = [
    ['FERRY_STAGING_MEMORY', target.stagingMemory],
    ['FERRY_ALERT_WEBHOOK', target.alertWebhook],
    ['APPLICATIONINSIGHTS_CONNECTION_STRING', target.telemetry?.connectionString],
    ['FERRY_SYNAPSE_WORKSPACE', target.synapseWorkspace],
  ];
  for (const [name, value] of pairs) if (value && !env[name]) env[name] = value;
}

function isUrl(location: string): boolean {
  return /^[a-z][a-z0-9+.-]*:\/\//i.test(location);
}
