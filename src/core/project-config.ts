import fs from 'node:fs';
import path from 'node:path';
import { UsageError } from './errors.js';

/** The project's configuration file, looked for in the project root. */
export const CONFIG_FILE_NAME = 'ferry.config.json';

/**
 * One identity ferry can write to Dataverse as. Exactly one way to sign in: a client secret, a certificate, a
 * managed identity, or none of those (then `DefaultAzureCredential`: environment, workload identity, `az login`).
 * Secrets belong in `${env:NAME}` or Key Vault references, never literally in a committed file.
 */
export interface IdentityConfig {
  /** How logs, `doctor` and errors name it. */
  readonly name: string;
  readonly tenantId?: string;
  readonly clientId?: string;
  /** Client secret (a reference). */
  readonly clientSecret?: string;
  /** PEM certificate (with its private key) of the app registration. */
  readonly certificatePath?: string;
  readonly certificatePassword?: string;
  /** `true` for the system-assigned managed identity; with `clientId` for a user-assigned one. */
  readonly managedIdentity?: boolean;
}

/** One named target: where ferry reads, writes and keeps its state. Paths are relative to the project root. */
export interface TargetConfig {
  /** `https://<org>.crm.dynamics.com`, or `emulator` for the built-in Dataverse emulator started in-process. */
  readonly dataverse?: string;
  readonly identities?: readonly IdentityConfig[];
  readonly lake?: string;
  readonly warehouse?: string;
  readonly state?: string;
  readonly metadata?: string;
  readonly pipelines?: string;
  /** DuckDB memory limit per run, e.g. `4GB` (`FERRY_STAGING_MEMORY`). */
  readonly stagingMemory?: string;
  /** Webhook that `ferry schedule` alerts (`FERRY_ALERT_WEBHOOK`). */
  readonly alertWebhook?: string;
  /** Application Insights connection string (`APPLICATIONINSIGHTS_CONNECTION_STRING`). */
  readonly telemetry?: { readonly connectionString?: string };
  /** Synapse workspace name that `deploy synapse`, `run-remote` and `doctor` use. */
  readonly synapseWorkspace?: string;
}

export interface ProjectConfigFile {
  /** The target used when `--target`/`FERRY_TARGET` is not given. */
  readonly defaultTarget?: string;
  readonly targets: Readonly<Record<string, TargetConfig>>;
}

/** Where ferry was started from: the project root and, when present, its configuration file. */
export interface Project {
  readonly root: string;
  readonly configFile?: string;
}

/**
 * The project root: the nearest folder, from `from` upwards, holding `ferry.config.json`, or a `package.json` next
 * to a `pipelines/` folder. Undefined when there is none (then paths are relative to the current folder).
 */
export function findProjectRoot(from: string = process.cwd()): Project | undefined {
  let dir = path.resolve(from);
  for (;;) {
    const configFile = path.join(dir, CONFIG_FILE_NAME);
    if (isFile(configFile)) return { root: dir, configFile };
    if (isFile(path.join(dir, 'package.json')) && isDirectory(path.join(dir, 'pipelines'))) return { root: dir };
    const parent = path.dirname(dir);
    if (parent === dir) return undefined;
    dir = parent;
  }
}

const TARGET_KEYS = new Set([
  'dataverse',
  'identities',
  'lake',
  'warehouse',
  'state',
  'metadata',
  'pipelines',
  'stagingMemory',
  'alertWebhook',
  'telemetry',
  'synapseWorkspace',
]);
const IDENTITY_KEYS = new Set([
  'name',
  'tenantId',
  'clientId',
  'clientSecret',
  'certificatePath',
  'certificatePassword',
  'managedIdentity',
]);

/** Reads and checks `ferry.config.json`; errors name the file and the key. */
export function loadProjectConfig(file: string): ProjectConfigFile {
  let raw: unknown;
  try {
    raw = JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (error) {
    throw new UsageError(
      `Configuration file \`${file}\` is not valid JSON (${error instanceof Error ? error.message : String(error)}); fix it or remove it.`,
    );
  }
  const where = (key: string) => `\`${key}\` in \`${file}\``;
  if (!isObject(raw) || !isObject(raw.targets)) {
    throw new UsageError(
      `${where('targets')} is missing; the file needs { "targets": { "<name>": { "dataverse": "https://…" } } }.`,
    );
  }
  for (const key of Object.keys(raw)) {
    if (key !== 'targets' && key !== 'defaultTarget' && key !== '$schema')
      throw new UsageError(`${where(key)} is not a known setting; known: defaultTarget, targets.`);
  }
  for (const [name, target] of Object.entries(raw.targets)) {
    if (!isObject(target)) throw new UsageError(`${where(`targets.${name}`)} must be an object.`);
    for (const key of Object.keys(target)) {
      if (!TARGET_KEYS.has(key))
        throw new UsageError(
          `${where(`targets.${name}.${key}`)} is not a known setting; known: ${[...TARGET_KEYS].join(', ')}.`,
        );
    }
    const identities = target.identities;
    if (identities !== undefined) {
      if (!Array.isArray(identities))
        throw new UsageError(`${where(`targets.${name}.identities`)} must be a list of identities.`);
      identities.forEach((identity, i) => {
        const at = `targets.${name}.identities[${i}]`;
        if (!isObject(identity) || typeof identity.name !== 'string')
          throw new UsageError(`${where(at)} needs a \`name\`.`);
        for (const key of Object.keys(identity)) {
          if (!IDENTITY_KEYS.has(key))
            throw new UsageError(
              `${where(`${at}.${key}`)} is not a known setting; known: ${[...IDENTITY_KEYS].join(', ')}.`,
            );
        }
        const ways = [identity.clientSecret, identity.certificatePath, identity.managedIdentity].filter(
          (w) => w !== undefined && w !== false,
        );
        if (ways.length > 1)
          throw new UsageError(
            `${where(at)} gives more than one of clientSecret, certificatePath, managedIdentity; keep one.`,
          );
        if ((identity.clientSecret || identity.certificatePath) && !(identity.tenantId && identity.clientId))
          throw new UsageError(`${where(at)} needs \`tenantId\` and \`clientId\` with a secret or certificate.`);
      });
    }
  }
  if (raw.defaultTarget !== undefined && !(typeof raw.defaultTarget === 'string' && raw.defaultTarget in raw.targets))
    throw new UsageError(
      `${where('defaultTarget')} \`${String(raw.defaultTarget)}\` is not one of the targets: ${Object.keys(raw.targets).join(', ')}.`,
    );
  return raw as unknown as ProjectConfigFile;
}

/** A Key Vault secret a configuration value refers to. */
export interface KeyVaultReference {
  /** `https://<vault>.vault.azure.net` */
  readonly vaultUrl: string;
  readonly secret: string;
  readonly version?: string;
}

/** Reads a secret from Key Vault (the connector that does it lives in `src/connectors/keyvault/`). */
export type SecretResolver = (reference: KeyVaultReference) => Promise<string>;

/**
 * The Key Vault reference a value holds, or undefined. Forms accepted:
 * - `@Microsoft.KeyVault(SecretUri=https://<vault>.vault.azure.net/secrets/<name>[/<version>])`
 * - `@Microsoft.KeyVault(VaultName=<vault>;SecretName=<name>[;SecretVersion=<version>])`
 *   (both as App Service and Functions write them: learn.microsoft.com/azure/app-service/app-service-key-vault-references)
 * - `{ "keyVault": "<vault name or URL>", "secret": "<name>", "version": "<optional>" }`
 */
export function keyVaultReferenceOf(value: unknown): KeyVaultReference | undefined {
  if (isObject(value) && typeof value.keyVault === 'string' && typeof value.secret === 'string') {
    return {
      vaultUrl: vaultUrlOf(value.keyVault),
      secret: value.secret,
      ...(typeof value.version === 'string' ? { version: value.version } : {}),
    };
  }
  if (typeof value !== 'string') return undefined;
  const m = /^@Microsoft\.KeyVault\((.*)\)$/i.exec(value.trim());
  if (!m) return undefined;
  const body = m[1]!;
  const uri = /^SecretUri=(.+)$/i.exec(body);
  if (uri) {
    let url: URL;
    try {
      url = new URL(uri[1]!);
    } catch {
      throw new UsageError(`Key Vault reference \`${value}\` has a SecretUri that is not a URL.`);
    }
    const [, kind, secret, version] = url.pathname.split('/');
    if (kind !== 'secrets' || !secret)
      throw new UsageError(
        `Key Vault reference \`${value}\` should read SecretUri=https://<vault>.vault.azure.net/secrets/<name>.`,
      );
    return { vaultUrl: url.origin, secret, ...(version ? { version } : {}) };
  }
  const parts = new Map(
    body.split(';').map((p) => {
      const [k, ...v] = p.split('=');
      return [k!.trim().toLowerCase(), v.join('=').trim()] as const;
    }),
  );
  const vault = parts.get('vaultname');
  const secret = parts.get('secretname');
  if (!vault || !secret)
    throw new UsageError(
      `Key Vault reference \`${value}\` needs SecretUri=… or VaultName=…;SecretName=… inside @Microsoft.KeyVault(…).`,
    );
  const version = parts.get('secretversion');
  return { vaultUrl: vaultUrlOf(vault), secret, ...(version ? { version } : {}) };
}

function vaultUrlOf(nameOrUrl: string): string {
  return /^https?:\/\//i.test(nameOrUrl) ? new URL(nameOrUrl).origin : `https://${nameOrUrl}.vault.azure.net`;
}

/** Replaces `${env:NAME}` in a string; an unset variable is an error naming it and where it is used. */
export function substituteEnv(value: string, at: string, env: NodeJS.ProcessEnv = process.env): string {
  return value.replace(/\$\{env:([A-Za-z_][A-Za-z0-9_]*)\}/g, (_, name: string) => {
    const v = env[name];
    if (v === undefined || v === '')
      throw new UsageError(`Environment variable \`${name}\` (used by \`${at}\`) is not set; set it or change ${at}.`);
    return v;
  });
}

/**
 * Resolves every value of a target: `${env:NAME}` from the environment, Key Vault references through `resolveSecret`
 * (each reference read once). Returns plain strings; identities' secrets stay out of `JSON.stringify`.
 */
export async function resolveTargetValues(
  target: TargetConfig,
  at: string,
  resolveSecret: SecretResolver | undefined,
  env: NodeJS.ProcessEnv = process.env,
): Promise<TargetConfig> {
  const cache = new Map<string, Promise<string>>();
  const resolve = async (value: unknown, key: string): Promise<unknown> => {
    const reference = keyVaultReferenceOf(value);
    if (reference) {
      if (!resolveSecret)
        throw new UsageError(`\`${key}\` is a Key Vault reference, and no Key Vault client is available here.`);
      const id = `${reference.vaultUrl}/${reference.secret}/${reference.version ?? ''}`;
      let pending = cache.get(id);
      if (!pending) {
        pending = resolveSecret(reference);
        cache.set(id, pending);
      }
      return pending;
    }
    if (typeof value === 'string') return substituteEnv(value, key, env);
    if (Array.isArray(value)) return Promise.all(value.map((v, i) => resolve(v, `${key}[${i}]`)));
    if (isObject(value)) {
      const out: Record<string, unknown> = {};
      for (const [k, v] of Object.entries(value)) out[k] = await resolve(v, `${key}.${k}`);
      return out;
    }
    return value;
  };
  const resolved = (await resolve(target, at)) as TargetConfig;
  if (!resolved.identities) return resolved;
  return { ...resolved, identities: resolved.identities.map(hideSecrets) };
}

/** Keeps secrets usable but out of `JSON.stringify`, logs and `--json` output. */
export function hideSecrets(identity: IdentityConfig): IdentityConfig {
  const copy: Record<string, unknown> = { ...identity };
  for (const key of ['clientSecret', 'certificatePassword'] as const) {
    if (copy[key] === undefined) continue;
    const value = copy[key];
    delete copy[key];
    Object.defineProperty(copy, key, { value, enumerable: false });
  }
  return copy as unknown as IdentityConfig;
}

/** How an identity signs in, in words (never the secret). */
export function describeIdentity(identity: IdentityConfig): string {
  const app = identity.clientId ? `client ${identity.clientId}` : '';
  const tenant = identity.tenantId ? `tenant ${identity.tenantId}` : '';
  const how = identity.clientSecret
    ? 'client secret'
    : identity.certificatePath
      ? `certificate ${identity.certificatePath}`
      : identity.managedIdentity
        ? 'managed identity'
        : 'DefaultAzureCredential';
  return `${identity.name} (${[how, app, tenant].filter(Boolean).join(', ')})`;
}

function isFile(p: string): boolean {
  try {
    return fs.statSync(p).isFile();
  } catch {
    return false;
  }
}

function isDirectory(p: string): boolean {
  try {
    return fs.statSync(p).isDirectory();
  } catch {
    return false;
  }
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
