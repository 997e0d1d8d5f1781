import fs from 'node:fs/promises';
import path from 'node:path';
import { UsageError } from '../../core/errors.js';
import { mergeSettings, type SynapseExportSettings } from './export-settings.js';
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
  /**
   * Containers (file systems) named differently in this environment: exported name → this environment's name, e.g.
   * the Synapse Link container `dataverse-<environment>-<org>`, which Dataverse names per environment.
   */
  readonly fileSystems?: Readonly<Record<string, string>>;
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
    if (!['$comment', 'workspace', 'parameters', 'fileSystems'].includes(key))
      throw new UsageError(
        `Environment file \`${file}\` has an unknown key \`${key}\`; use \`workspace\`, \`parameters\` and \`fileSystems\`.`,
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
  const fileSystems: Record<string, string> = {};
  if (o.fileSystems !== undefined) {
    if (!o.fileSystems || typeof o.fileSystems !== 'object' || Array.isArray(o.fileSystems))
      throw new UsageError(
        `\`fileSystems\` in \`${file}\` must map exported container names to this environment's, e.g. \`{ "dataverse-devorg-unq1": "dataverse-prodorg-unq2" }\`.`,
      );
    for (const [from, to] of Object.entries(o.fileSystems)) {
      // learn.microsoft.com/rest/api/storageservices/naming-and-referencing-containers--blobs--and-metadata
      if (typeof to !== 'string' || !/^[a-z0-9](?!.*--)[a-z0-9-]{1,61}[a-z0-9]$/.test(to))
        throw new UsageError(
          `Container \`${String(to)}\` (for \`${from}\`) in \`${file}\` is not a valid container name: 3-63 lowercase letters, digits and single hyphens.`,
        );
      fileSystems[from] = to;
    }
  }
  return {
    name,
    file,
    ...(typeof o.workspace === 'string' ? { workspace: o.workspace } : {}),
    parameters,
    ...(Object.keys(fileSystems).length > 0 ? { fileSystems } : {}),
  };
}

/**
 * The artifacts as deployed to `env`: every parameter of every linked service gets the environment's value as its
 * `defaultValue` (datasets and activities that pass a value still win, as in Synapse), so does a pipeline parameter
 * of the same name (a Web activity's Dataverse URL, `dataverseUrl`: Synapse's CI/CD can override a pipeline parameter's
 * default per environment as it does linked-service properties; a run or trigger that passes a value wins), and containers the
 * environment names differently are renamed where the export puts them (see `renameFileSystems`). A parameter the
 * environment does not give, or a value no linked service declares, is refused by name: a production deploy must not
 * silently keep the exported (development) values, and a typo must not be ignored.
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
  // A pipeline parameter named like a linked-service parameter is the same setting where no linked service can
  // carry it (a Web activity's URL: `dataverseUrl`): it gets the same value, so one environment file sets both.
  const withPipelines = bound.map((a) => {
    if (a.kind !== 'pipeline') return a;
    const params = a.properties.parameters as Record<string, Record<string, unknown>> | undefined;
    if (!params || !Object.keys(params).some((p) => declared.has(p) && env.parameters[p] !== undefined)) return a;
    const next: Record<string, Record<string, unknown>> = {};
    for (const [name, spec] of Object.entries(params)) {
      const value = declared.has(name) ? env.parameters[name] : undefined;
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
  return env.fileSystems ? renameFileSystems(withPipelines, env) : withPipelines;
}

/** Keys whose string value is a container-relative lake path (`<container>/<folder>…`): fault-tolerance and log settings. */
const PATH_KEYS = new Set(['path']);

/**
 * Renames containers where the export writes them: a `fileSystem` passed to a dataset (a `DatasetReference`'s
 * parameters, a dataset parameter's default, a location's literal `fileSystem`) and the first segment of a lake
 * `path` (skipped-row logs). Synapse's own CI/CD overrides such properties per environment with a custom parameter
 * template; here the places are known. Afterwards no literal of a renamed container may remain anywhere — one the
 * export put somewhere new is refused, naming where, rather than deployed pointing at the wrong container. A
 * container the artifacts never use is refused as a typo.
 */
export function renameFileSystems(artifacts: readonly SynapseArtifact[], env: DeployEnvironment): SynapseArtifact[] {
  const map = env.fileSystems ?? {};
  const used = new Set<string>();
  const rename = (v: unknown): unknown => {
    if (typeof v !== 'string' || !Object.hasOwn(map, v)) return v;
    used.add(v);
    return map[v];
  };
  const renamePath = (v: unknown): unknown => {
    if (typeof v !== 'string') return v;
    const [first, ...rest] = v.split('/');
    if (first === undefined || !Object.hasOwn(map, first)) return v;
    used.add(first);
    return [map[first], ...rest].join('/');
  };
  const walk = (v: unknown, key: string | undefined): unknown => {
    if (Array.isArray(v)) return v.map((x) => walk(x, undefined));
    if (!v || typeof v !== 'object') {
      if (key === 'fileSystem') return rename(v);
      if (key !== undefined && PATH_KEYS.has(key)) return renamePath(v);
      return v;
    }
    const o = v as Record<string, unknown>;
    const out: Record<string, unknown> = {};
    for (const [k, x] of Object.entries(o)) {
      // A dataset parameter declaration: `fileSystem: { type, defaultValue }`.
      if (k === 'fileSystem' && x && typeof x === 'object' && !Array.isArray(x) && 'defaultValue' in x)
        out[k] = {
          ...(x as Record<string, unknown>),
          defaultValue: rename((x as { defaultValue: unknown }).defaultValue),
        };
      else out[k] = walk(x, k);
    }
    return out;
  };
  const renamed = artifacts.map((a) =>
    a.kind === 'linkedService' ? a : { ...a, properties: walk(a.properties, undefined) as Record<string, unknown> },
  );
  const unused = Object.keys(map).filter((k) => !used.has(k));
  if (unused.length > 0)
    throw new UsageError(
      `Environment \`${env.name}\` (\`${env.file}\`) renames ${unused.map((k) => `\`${k}\``).join(', ')}, a container the exported artifacts do not use; check \`fileSystems\` against the export settings' container names.`,
    );
  const left: string[] = [];
  const find = (v: unknown, at: string) => {
    if (Array.isArray(v)) for (const [i, x] of v.entries()) find(x, `${at}/${i}`);
    else if (v && typeof v === 'object') for (const [k, x] of Object.entries(v)) find(x, `${at}/${k}`);
    else if (typeof v === 'string' && Object.keys(map).some((c) => map[c] !== c && (v === c || v.startsWith(`${c}/`))))
      left.push(`${at} (\`${v}\`)`);
  };
  for (const a of renamed) if (a.kind !== 'linkedService') find(a.properties, `${a.kind}/${a.name}`);
  if (left.length > 0)
    throw new UsageError(
      `Environment \`${env.name}\` renames containers, but the artifacts name them where deploy does not rename: ${left.slice(0, 5).join(', ')}${left.length > 5 ? ', …' : ''}; pass the container as a dataset \`fileSystem\` in the definitions, or give the environment the same container name.`,
    );
  return renamed;
}

/**
 * The export settings of an environment: the settings with the environment's endpoints (linked-service parameters
 * are named like the settings they default to), its workspace and its container names. For what cannot be a
 * parameter — the one-time setup scripts, which name the workspace identity, the storage account and the containers —
 * `ferry export synapse --environment <name> --out <dir>` writes that environment's copy.
 */
export function settingsForEnvironment(settings: SynapseExportSettings, env: DeployEnvironment): SynapseExportSettings {
  const known = new Set(Object.keys(settings));
  const overrides: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(env.parameters)) {
    if (!known.has(key) && key !== 'sqlUserName')
      throw new UsageError(
        `Environment \`${env.name}\` (\`${env.file}\`) sets \`${key}\`, which is no export setting; the linked-service parameters are named like the settings (${[...known].sort().join(', ')}).`,
      );
    overrides[key] = value;
  }
  const rename = (name: string) => env.fileSystems?.[name] ?? name;
  return mergeSettings(
    {
      ...settings,
      ...overrides,
      ...(env.workspace ? { synapseWorkspaceName: env.workspace } : {}),
      lakeFileSystem: rename(settings.lakeFileSystem),
      warehouseFileSystem: rename(settings.warehouseFileSystem),
      synapseLinkFileSystem: rename(settings.synapseLinkFileSystem),
    },
    env.file,
  );
}
