import fs from 'node:fs/promises';
import { UsageError } from '../../core/errors.js';

/**
 * Where the exported artifacts point in Azure. None of these is a secret: credentials are managed identity or
 * Key Vault secret *names*. The defaults are placeholders for the demo; a project keeps its own values in
 * `synapse/settings.json` (read by `ferry export synapse`).
 */
export interface SynapseExportSettings {
  /** ADLS Gen2 endpoint, e.g. `https://contosolake.dfs.core.windows.net/`. */
  readonly storageUrl: string;
  /** File system (container) the inbound Parquet deltas live in; pipeline folders are relative to it. */
  readonly lakeFileSystem: string;
  /** File system the Synapse Link profile writes to (`dataverse-<env>-<org>`). */
  readonly synapseLinkFileSystem: string;
  /** File system the warehouse Parquet is written to. */
  readonly warehouseFileSystem: string;
  /** Azure SQL server host for staging, state and error store. */
  readonly sqlServer: string;
  readonly sqlDatabase: string;
  /** `managed-identity` (default) or `key-vault-password` (SQL login whose password is a Key Vault secret). */
  readonly sqlAuthentication: 'managed-identity' | 'key-vault-password';
  /** SQL login for `key-vault-password`. */
  readonly sqlUserName?: string;
  /** Key Vault secret holding the SQL password for `key-vault-password`. */
  readonly sqlPasswordSecretName?: string;
  /** Synapse workspace name: its managed identity's database user in Azure SQL and serverless SQL (setup scripts). */
  readonly synapseWorkspaceName: string;
  /** Synapse serverless SQL endpoint, `<workspace>-ondemand.sql.azuresynapse.net`. */
  readonly serverlessSqlServer: string;
  /** Serverless database holding the external data sources and file format used by CETAS. */
  readonly serverlessDatabase: string;
  /** Dataverse environment URL. */
  readonly dataverseUrl: string;
  /** Application (client) id of the service principal ferry writes to Dataverse as. Not a secret. */
  readonly dataverseServicePrincipalId: string;
  /** Key Vault secret holding that service principal's client secret. */
  readonly dataverseSecretName: string;
  /** Key Vault base URL. */
  readonly keyVaultUrl: string;
  /** First window of the tumbling-window (backfill) triggers and start of the schedules. Fixed so output is stable. */
  readonly triggerStartTime: string;
  /**
   * First window of the backfill (tumbling-window) triggers. Tumbling windows cannot change `frequency`/`interval`
   * after publish, and without an end they run every window from here on beside the schedule: they get both ends.
   */
  readonly backfillStartTime: string;
  /** End of the last backfill window (exclusive); normally where the schedule (`triggerStartTime`) takes over. */
  readonly backfillEndTime: string;
  /**
   * Per pipeline, columns the Synapse export cannot write (PartyList, CalendarRules) that it leaves out instead of
   * refusing the pipeline, e.g. `{ "activities-inbound": ["requiredattendees"] }`; the local runner still writes them.
   * Multi-select columns are written (UpsertMultiple Web activities after the copies): listing one is refused at
   * export, naming it.
   */
  readonly omitColumns: Readonly<Record<string, readonly string[]>>;
  /** `parallelCopies` and sink `maxConcurrentConnections` of the copies to Dataverse. Default `10`. */
  readonly dataverseParallelCopies: number;
  /** Parallel windows a backfill trigger may run. Default `4`. */
  readonly backfillMaxConcurrency: number;
  /** How long after a window ends its run starts, so Synapse Link can finish writing. Default `00:05:00`. */
  readonly windowDelay: string;
  // Housekeeping (`pl_ferry_housekeeping`, daily): retention of state rows and warehouse folders.
  /** Days resolved and superseded rejects are kept (open rejects are never deleted). Default `90`. */
  readonly rejectsRetentionDays: number;
  /** Days finished runs are kept (a run an open reject or a cursor names is kept). Default `90`. */
  readonly runsRetentionDays: number;
  /**
   * Days warehouse window folders are kept; `0` (default) keeps them all. A window folder holds the changes of its
   * window, so deleting one loses rows no later window repeats: set it only when readers load each window within
   * that time. The newest folder of each output is never deleted.
   */
  readonly warehouseRetentionDays: number;
  /** A run `running` for longer than this many hours was cancelled: its staging tables may be dropped. Default `24`. */
  readonly staleRunHours: number;
  /** Time of day (UTC, `HH:MM`) the housekeeping trigger runs. Default `03:00`. */
  readonly housekeepingTime: string;
}

/** Demo defaults: resolvable names of an example workspace, never secrets. */
export const DEFAULT_SETTINGS: SynapseExportSettings = {
  storageUrl: 'https://ferrylake.dfs.core.windows.net/',
  lakeFileSystem: 'lake',
  synapseLinkFileSystem: 'dataverse-ferrydemo-unq00000000',
  warehouseFileSystem: 'warehouse',
  sqlServer: 'ferry-sql.database.windows.net',
  sqlDatabase: 'ferry',
  sqlAuthentication: 'managed-identity',
  synapseWorkspaceName: 'ferry-ws',
  serverlessSqlServer: 'ferry-ws-ondemand.sql.azuresynapse.net',
  serverlessDatabase: 'ferry_extract',
  dataverseUrl: 'https://ferrydemo.crm.dynamics.com',
  dataverseServicePrincipalId: '00000000-0000-0000-0000-000000000000',
  dataverseSecretName: 'ferry-dataverse-client-secret',
  keyVaultUrl: 'https://ferry-kv.vault.azure.net/',
  triggerStartTime: '2026-01-01T00:00:00Z',
  backfillStartTime: '2025-12-31T00:00:00Z',
  backfillEndTime: '2026-01-01T00:00:00Z',
  omitColumns: {},
  dataverseParallelCopies: 10,
  backfillMaxConcurrency: 4,
  windowDelay: '00:05:00',
  rejectsRetentionDays: 90,
  runsRetentionDays: 90,
  warehouseRetentionDays: 0,
  staleRunHours: 24,
  housekeepingTime: '03:00',
};

const KEYS = [
  ...Object.keys(DEFAULT_SETTINGS),
  'sqlUserName',
  'sqlPasswordSecretName',
] as (keyof SynapseExportSettings)[];

/** Reads settings from a JSON file over the defaults; a missing file means the defaults. */
export async function loadExportSettings(file: string | undefined): Promise<SynapseExportSettings> {
  if (!file) return DEFAULT_SETTINGS;
  let text: string;
  try {
    text = await fs.readFile(file, 'utf8');
  } catch {
    return DEFAULT_SETTINGS;
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (error) {
    throw new UsageError(`Export settings \`${file}\` are not valid JSON (${(error as Error).message}); fix the file.`);
  }
  return mergeSettings(parsed, file);
}

/** Applies overrides to the defaults, refusing unknown keys (a typo would silently keep a placeholder). */
export function mergeSettings(overrides: unknown, where = 'settings'): SynapseExportSettings {
  if (!overrides || typeof overrides !== 'object' || Array.isArray(overrides)) {
    throw new UsageError(`Export settings in \`${where}\` must be a JSON object.`);
  }
  for (const key of Object.keys(overrides)) {
    if (key === '$comment') continue;
    if (!(KEYS as string[]).includes(key)) {
      throw new UsageError(`Export setting \`${key}\` in \`${where}\` is unknown; known settings: ${KEYS.join(', ')}.`);
    }
  }
  const { $comment: _ignored, ...rest } = overrides as Record<string, unknown>;
  const merged = { ...DEFAULT_SETTINGS, ...rest } as SynapseExportSettings;
  if (merged.sqlAuthentication === 'key-vault-password' && (!merged.sqlUserName || !merged.sqlPasswordSecretName)) {
    throw new UsageError(
      `Export setting \`sqlAuthentication\` is \`key-vault-password\` but \`sqlUserName\` or \`sqlPasswordSecretName\` is missing in \`${where}\`; set both.`,
    );
  }
  const omit = merged.omitColumns as unknown;
  if (
    !omit ||
    typeof omit !== 'object' ||
    Array.isArray(omit) ||
    !Object.values(omit).every((v) => Array.isArray(v) && v.every((c) => typeof c === 'string'))
  )
    throw new UsageError(
      `Export setting \`omitColumns\` in \`${where}\` must map pipeline names to lists of column names, e.g. \`{ "activities-inbound": ["requiredattendees"] }\`.`,
    );
  if (!Number.isInteger(merged.dataverseParallelCopies) || merged.dataverseParallelCopies < 1)
    throw new UsageError(
      `Export setting \`dataverseParallelCopies\` is \`${merged.dataverseParallelCopies}\` in \`${where}\`; use a positive integer (the connector doc's default is 10).`,
    );
  for (const key of ['triggerStartTime', 'backfillStartTime', 'backfillEndTime'] as const) {
    if (!/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$/.test(merged[key]) || Number.isNaN(Date.parse(merged[key])))
      throw new UsageError(
        `Export setting \`${key}\` is \`${merged[key]}\` in \`${where}\`; write a UTC time like \`2026-01-01T00:00:00Z\`.`,
      );
  }
  for (const key of ['rejectsRetentionDays', 'runsRetentionDays', 'warehouseRetentionDays', 'staleRunHours'] as const) {
    const min = key === 'warehouseRetentionDays' ? 0 : 1;
    if (!Number.isInteger(merged[key]) || merged[key] < min)
      throw new UsageError(
        `Export setting \`${key}\` is \`${merged[key]}\` in \`${where}\`; use an integer of at least ${min}${min === 0 ? ' (0 keeps every warehouse folder)' : ''}.`,
      );
  }
  if (!/^([01]\d|2[0-3]):[0-5]\d$/.test(merged.housekeepingTime))
    throw new UsageError(
      `Export setting \`housekeepingTime\` is \`${merged.housekeepingTime}\` in \`${where}\`; write a UTC time of day like \`03:00\`.`,
    );
  if (Date.parse(merged.backfillStartTime) >= Date.parse(merged.backfillEndTime))
    throw new UsageError(
      `Export setting \`backfillStartTime\` (\`${merged.backfillStartTime}\`) is not before \`backfillEndTime\` (\`${merged.backfillEndTime}\`) in \`${where}\`; a backfill covers [start, end).`,
    );
  return merged;
}
