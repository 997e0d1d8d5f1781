import path from 'node:path';
import { UsageError } from './errors.js';

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

/** Resolves flags over environment over defaults. */
export function resolveConfig(overrides: ConfigOverrides = {}, env: NodeJS.ProcessEnv = process.env): FerryConfig {
  const lake = overrides.lake ?? env.FERRY_LAKE ?? './lake';
  const state = overrides.state ?? env.FERRY_STATE ?? './.ferry';
  const dataverse = overrides.dataverse ?? env.FERRY_DATAVERSE_URL ?? undefined;
  const metadata = overrides.metadata ?? env.FERRY_METADATA ?? 'fixtures/metadata';
  const warehouse =
    overrides.warehouse ??
    env.FERRY_WAREHOUSE ??
    (isUrlLocation(lake) ? `${lake}/warehouse` : path.join(lake, 'warehouse'));
  const stagingMemory = overrides.stagingMemory ?? env.FERRY_STAGING_MEMORY ?? DEFAULT_STAGING_MEMORY;
  if (!/^\s*\d+(\.\d+)?\s*(B|KB|MB|GB|TB|KiB|MiB|GiB|TiB)\s*$/i.test(stagingMemory)) {
    throw new UsageError(
      `Staging memory \`${stagingMemory}\` (FERRY_STAGING_MEMORY or config \`stagingMemory\`) is not a size; use e.g. \`512MB\` or \`2GB\`.`,
    );
  }
  return { lake, state, dataverse: dataverse === '' ? undefined : dataverse, metadata, warehouse, stagingMemory };
}

/** True when a lake or warehouse location is a URL (`abfss://...`, `https://...`) rather than a local folder. */
export function isUrlLocation(location: string): boolean {
  return /^[a-z]+:\/\//i.test(location);
}
