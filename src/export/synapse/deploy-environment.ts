import fs from 'node:fs/promises';
import path from 'node:path';
import { UsageError } from '../../core/errors.js';
import type { SynapseArtifact } from './synapse-artifacts.js';

/**
 * One deployment environment (dev, test, prod…): the values of the linked-service parameters in that workspace,
 * from `<synapse>/environments/<name>.json`:
 *
 * ```json
 * { "workspace": "contoso-prod-ws", "parameters": { "dataverseUrl": "https://contoso.crm.dynamics.com", … } }
 * ```
 *
 * Synapse has no global parameters (they are a Data Factory feature), and its own CI/CD overrides linked-service
 * properties per environment at deployment; `ferry deploy synapse --environment <name>` does the same through the
 * artifacts REST API: each linked-service parameter's `defaultValue` becomes the environment's value, so one export
 * serves every environment.
 */
export interface DeployEnvironment {
  readonly name: string;
  readonly file: string;
  /** Target workspace of this environment; `--workspace` wins. */
  readonly workspace?: string;
  /** Values of the linked-service parameters, by parameter name. */
  readonly parameters: Readonly<Record<string, string>>;
}

/** Where the environment files of an artifact folder live. */
export function environmentsDir(artifactDir: string): string {
  return path.join(artifactDir, 'environments');
}

/** Names of the environments defined next to the artifacts (`environments/<name>.json`). */
export async function listEnvironments(artifactDir: string): Promise<string[]> {
  const files = await fs.readdir(environmentsDir(artifactDir)).catch(() => [] as string[]);
  return files
    .filter((f) => f.endsWith('.json'))
    .map((f) => f.slice(0, -'.json'.length))
    .sort();
}

/** Connection strings, keys and SAS tokens have no place in a parameter value: they belong in Key Vault. */
const SECRET_SHAPES = [/AccountKey=/i, /Password=/i, /(^|[?&])sig=/i, /SharedAccessSignature/i, /client_secret/i];

/** Reads `--environment <name>` (a name under `environments/`, or a path to a `.json` file). */
export async function loadEnvironment(artifactDir: string, nameOrFile: string): Promise<DeployEnvironment> {
  const isFile = nameOrFile.endsWith('.json');
  const file = isFile ? path.resolve(nameOrFile) : path.join(environmentsDir(artifactDir), `${nameOrFile}.json`);
  const name = isFile ? path.basename(nameOrFile, '.json') : nameOrFile;
  let text: string;
  try {
    text = await fs.readFile(file, 'utf8');
  } catch {
    const known = await listEnvironments(artifactDir);
    throw new UsageError(
      `Environment \`${nameOrFile}\` has no file \`${file}\`; known environments: ${known.join(', ') || '(none)'}. Create it (see synapse/README.md, "Environments").`,
    );
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (error) {
    throw new UsageError(`Environment file \`${file}\` is not valid JSON (${(error as Error).message}); fix it.`);
  }
  if (!parsed || typeof parsed !== 'object' || Array.isArray(parsed))
    throw new UsageError(`Environment file \`${file}\` must be a JSON object with \`parameters\`.`);
  const o = parsed as Record<string, unknown>;
  for (const key of Object.keys(o))
    if (!['$comment', 'workspace', 'parameters'].includes(key))
      throw new UsageError(
        `Environment file \`${file}\` has an unknown key \`${key}\`; use \`workspace\` and \`parameters\`.`,
      );
  if (o.workspace !== undefined && typeof o.workspace !== 'string')
    throw new UsageError(`\`workspace\` in \`${file}\` must be a workspace name.`);
  const params = o.parameters;
  if (!params || typeof params !== 'object' || Array.isArray(params))
    throw new UsageError(
      `Environment file \`${file}\` needs \`parameters\`: the linked-service parameter values, e.g. \`{ "dataverseUrl": "https://contoso.crm.dynamics.com" }\`.`,
    );
  const parameters: Record<string, string> = {};
  for (const [key, value] of Object.entries(params)) {
    if (typeof value !== 'string' || value.trim() === '')
      throw new UsageError(`Parameter \`${key}\` in \`${file}\` must be a non-empty string.`);
    // The value is deployed into the linked service's JSON: a secret there would be readable by every workspace user.
    if (SECRET_SHAPES.some((re) => re.test(value)))
      throw new UsageError(
        `Parameter \`${key}\` in \`${file}\` looks like it holds a secret; keep secrets in Key Vault (the linked services reference them by name) and give only endpoints and names here.`,
      );
    if (/Url$/.test(key) && !/^https:\/\/[^\s/]+/.test(value))
      throw new UsageError(
        `Parameter \`${key}\` in \`${file}\` is \`${value}\`; write the https endpoint, e.g. \`https://contoso.crm.dynamics.com\`.`,
      );
    if (/Id$/.test(key) && !/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(value))
      throw new UsageError(
        `Parameter \`${key}\` in \`${file}\` is \`${value}\`; write the application (client) id, a GUID.`,
      );
    parameters[key] = value;
  }
  return { name, file, ...(typeof o.workspace === 'string' ? { workspace: o.workspace } : {}), parameters };
}

/**
 * The artifacts as deployed to `env`: every parameter of every linked service gets the environment's value as its
 * `defaultValue` (datasets and activities that pass a value still win, as in Synapse). A parameter the environment
 * does not give, or a value no linked service declares, is refused by name: a production deploy must not silently
 * keep the exported (development) values, and a typo must not be ignored.
 */
export function bindEnvironment(artifacts: readonly SynapseArtifact[], env: DeployEnvironment): SynapseArtifact[] {
  const declared = new Set<string>();
  const missing: string[] = [];
  const bound = artifacts.map((a) => {
    if (a.kind !== 'linkedService') return a;
    const params = a.properties.parameters as Record<string, Record<string, unknown>> | undefined;
    if (!params || Object.keys(params).length === 0) return a;
    const next: Record<string, Record<string, unknown>> = {};
    for (const [name, spec] of Object.entries(params)) {
      declared.add(name);
      const value = env.parameters[name];
      if (value === undefined) missing.push(`\`${name}\` (${a.name})`);
      next[name] = value === undefined ? spec : { ...spec, defaultValue: value };
    }
    return { ...a, properties: { ...a.properties, parameters: next } };
  });
  const unknown = Object.keys(env.parameters).filter((k) => !declared.has(k));
  if (unknown.length > 0)
    throw new UsageError(
      `Environment \`${env.name}\` (\`${env.file}\`) sets ${unknown.map((k) => `\`${k}\``).join(', ')}, which no linked service declares; declared: ${[...declared].sort().join(', ')}.`,
    );
  if (missing.length > 0)
    throw new UsageError(
      `Environment \`${env.name}\` (\`${env.file}\`) gives no value for ${missing.join(', ')}; add ${missing.length === 1 ? 'it' : 'them'} under \`parameters\`.`,
    );
  return bound;
}
