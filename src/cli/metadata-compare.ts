import fs from 'node:fs/promises';
import type { DataverseClient } from '../connectors/dataverse/dataverse-client.js';
import { pullMetadata } from '../connectors/dataverse/metadata-pull.js';
import { loadAllMetadata, type TableMetadata } from '../connectors/dataverse/metadata-snapshot.js';

/** One difference between a committed snapshot and the live table. */
export interface MetadataChange {
  readonly table: string;
  readonly text: string;
}

/**
 * A minimal comparison of the committed snapshots with the service for `ferry doctor`: columns added or removed,
 * and a column's type, length or precision changed, plus alternate keys. (`ferry metadata diff` is the full one.)
 */
export async function compareWithService(
  dir: string,
  client: DataverseClient,
): Promise<{ tables: number; changes: MetadataChange[] }> {
  const exists = await fs.stat(dir).then(
    (s) => s.isDirectory(),
    () => false,
  );
  if (!exists) throw new Error(`Metadata folder \`${dir}\` does not exist.`);
  const snapshots = await loadAllMetadata(dir);
  const changes: MetadataChange[] = [];
  for (const [name, committed] of snapshots) {
    const live = await pullMetadata(client, name);
    changes.push(...compareTables(committed, live));
  }
  return { tables: snapshots.size, changes };
}

/** Differences between two snapshots of one table. */
export function compareTables(committed: TableMetadata, live: TableMetadata): MetadataChange[] {
  const table = committed.LogicalName;
  const out: MetadataChange[] = [];
  const facts = (a: TableMetadata['Attributes'][number]) => {
    const r = a as unknown as Record<string, unknown>;
    return JSON.stringify([
      r.AttributeType,
      r.MaxLength ?? null,
      r.Precision ?? null,
      r.MinValue ?? null,
      r.MaxValue ?? null,
    ]);
  };
  const before = new Map(committed.Attributes.map((a) => [a.LogicalName, a]));
  const after = new Map(live.Attributes.map((a) => [a.LogicalName, a]));
  for (const [name, a] of before) {
    const b = after.get(name);
    if (!b) out.push({ table, text: `${table}.${name} removed` });
    else if (facts(a) !== facts(b)) out.push({ table, text: `${table}.${name} changed (${facts(a)} → ${facts(b)})` });
  }
  for (const name of after.keys()) if (!before.has(name)) out.push({ table, text: `${table}.${name} added` });
  const keys = (t: TableMetadata) =>
    JSON.stringify(t.Keys.map((k) => (k as unknown as { KeyAttributes?: string[] }).KeyAttributes ?? k).sort());
  if (keys(committed) !== keys(live)) out.push({ table, text: `${table} alternate keys changed` });
  return out;
}
