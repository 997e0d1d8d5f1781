import path from 'node:path';
import { UsageError } from './errors.js';
import type { IdentityConfig } from './project-config.js';

/** Where the embedded defaults live, and which Dataverse to talk to. */
export interface FerryConfig {
  /** Lake root folder (or `abfss://`/`https://` URL for ADLS Gen2). Default `./lake`, env `FERRY_LAKE`. */
  readonly lake: string;
  /** State directory holding the SQLite state store and per-run staging. Default `./.ferry`, env `FERRY_STATE`. */
  readonly state: string;
  /**
   * Dataverse environment URL (`https://<org>.crm.dynamics.com`). Undefined means the built-in emulator, started
   * in-process. Env `FERRY_DATAVERSE_URL`.
   */
  readonly dataverse: string | undefined;
  /** Folder with Dataverse metadata snapshots. Default `fixtures/metadata`. */
  readonly metadata: string;
  /** Warehouse output root for outbound pipelines. Default `<lake>/warehouse`. */
  readonly warehouse: string;
  /** `--emulator` (or a target with `"dataverse": "emulator"`): the built-in emulator when no URL is given. */
  readonly emulator?: boolean;
  /** The named target of `ferry.config.json` these values came from. */
  readonly target?: string;
  /** Identities to write to Dataverse as (first one first); none means `DefaultAzureCredential`. */
  readonly identities?: readonly IdentityConfig[];
  /**
   * Memory limit of a run's DuckDB staging database (DuckDB `memory_limit`, e.g. `512MB`, `2GB`); beyond it the
   * database spills to the run folder. Env `FERRY_STAGING_MEMORY`. Default `512MB` (with the Node process, a
   * 10-million-row window stays within 1 GiB of RSS). Optional so hand-built configs keep working.
   */
  readonly stagingMemory?: string;
}

export interface ConfigOverrides {
  readonly lake?: string;
  readonly state?: string;
  readonly dataverse?: string;
  readonly metadata?: string;
  readonly warehouse?: string;
  readonly stagingMemory?: string;
}

/** The staging database's memory limit unless `FERRY_STAGING_MEMORY` says otherwise. */
export const DEFAULT_STAGING_MEMORY = '512MB';

/**
 * What sits under flags and environment: a target of `ferry.config.json` (paths already absolute) and the project
 * root the defaults are relative to.
 */
export interface ConfigBase extends ConfigOverrides {
  readonly root?: string;
  readonly emulator?: boolean;
  readonly target?: string;
  readonly identities?: readonly IdentityConfig[];
}

/** Resolves flags over environment over the configuration file's target over defaults (relative to the root). */
export function resolveConfig(
  overrides: ConfigOverrides = {},
  env: NodeJS.ProcessEnv = process.env,
  base: ConfigBase = {},
): FerryConfig {
  const at = (p: string) => (base.root ? path.join(base.root, p) : p);
  const lake = overrides.lake ?? env.FERRY_LAKE ?? base.lake ?? at('./lake');
  const state = overrides.state ?? env.FERRY_STATE ?? base.state ?? at('./.ferry');
  const dataverse = overrides.dataverse ?? env.FERRY_DATAVERSE_URL ?? base.dataverse ?? undefined;
  const metadata = overrides.metadata ?? env.FERRY_METADATA ?? base.metadata ?? at('fixtures/metadata');
  const warehouse =
    overrides.warehouse ??
    env.FERRY_WAREHOUSE ??
    base.warehouse ??
    (isUrlLocation(lake) ? `${lake}/warehouse` : path.join(lake, 'warehouse'));
  const stagingMemory =
    overrides.stagingMemory ?? env.FERRY_STAGING_MEMORY ?? base.stagingMemory ?? DEFAULT_STAGING_MEMORY;
  if (!/^\s*\d+(\.\d+)?\s*(B|KB|MB|GB|TB|KiB|MiB|GiB|TiB)\s*$/i.test(stagingMemory)) {
    throw new UsageError(
      `Staging memory \`${stagingMemory}\` (FERRY_STAGING_MEMORY or config \`stagingMemory\`) is not a size; use e.g. \`512MB\` or \`2GB\`.`,
    );
  }
  return {
    lake,
    state,
    dataverse: dataverse === '' ? undefined : dataverse,
    metadata,
    warehouse,
    stagingMemory,
    ...(base.emulator ? { emulator: true } : {}),
    ...(base.target ? { target: base.target } : {}),
    ...(base.identities?.length ? { identities: base.identities } : {}),
  };
}

/**
 * True when a lake or warehouse location is a URL (`abfss://...`, `https://...`, `s3://...`) rather than a local
 * folder. A scheme is a letter then letters, digits, `+`, `-` or `.` (RFC 3986 §3.1).
 */
export function isUrlLocation(location: string): boolean {
  return /^[a-z][a-z0-9+.-]*:\/\//i.test(location);
}
