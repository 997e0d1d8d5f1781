import type { SqlStep } from '../../dialects/sql-steps.js';

/** The four artifact kinds Synapse deploys, in deploy order (a kind may only reference kinds before it). */
export const ARTIFACT_KINDS = ['linkedService', 'dataset', 'pipeline', 'trigger'] as const;
export type ArtifactKind = (typeof ARTIFACT_KINDS)[number];

/** One Synapse artifact as stored in a Synapse Git folder: `synapse/<kind>/<name>.json` = `{ name, properties }`. */
export interface SynapseArtifact {
  readonly kind: ArtifactKind;
  readonly name: string;
  readonly properties: Record<string, unknown>;
}

/** A generated text file, path relative to the project root (`synapse/...` or `sql/tsql/...`). */
export interface GeneratedFile {
  readonly path: string;
  readonly content: string;
}

/** Everything one export produces. */
export interface SynapseExport {
  readonly artifacts: readonly SynapseArtifact[];
  readonly sqlFiles: readonly GeneratedFile[];
  /** Every SQL step the artifacts and files carry (`-- ferry-step: <id>`), for rendering in another dialect. */
  readonly steps?: readonly SqlStep[];
}

/** `accounts-inbound` → `accounts_inbound`: Synapse and SQL names without dashes. */
export function snake(name: string): string {
  return name.replaceAll('-', '_');
}

/** Artifact names, in one place so references and files agree. */
export const NAMES = {
  keyVault: 'ls_ferry_keyvault',
  adls: 'ls_ferry_adls',
  sql: 'ls_ferry_sql',
  serverless: 'ls_ferry_serverless_sql',
  dataverse: 'ls_ferry_dataverse',
  lakeParquet: 'ds_ferry_lake_parquet',
  lakeText: 'ds_ferry_lake_text',
  sqlTable: 'ds_ferry_sql_table',
  dataverseEntity: (table: string) => `ds_ferry_dataverse_${table}`,
  pipeline: (name: string) => `pl_${snake(name)}`,
  schedulePipeline: (minutes: number) => `pl_ferry_every_${minutes}m`,
  scheduleTrigger: (minutes: number) => `tr_ferry_every_${minutes}m`,
  backfillTrigger: (name: string) => `tr_${snake(name)}_backfill`,
} as const;
