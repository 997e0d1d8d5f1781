import path from 'node:path';

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
}

export interface ConfigOverrides {
  readonly lake?: string;
  readonly state?: string;
  readonly dataverse?: string;
  readonly metadata?: string;
  readonly warehouse?: string;
}

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
  return { lake, state, dataverse: dataverse === '' ? undefined : dataverse, metadata, warehouse };
}

/** True when a lake or warehouse location is a URL (`abfss://...`, `https://...`) rather than a local folder. */
export function isUrlLocation(location: string): boolean {
  return /^[a-z]+:\/\//i.test(location);
}
