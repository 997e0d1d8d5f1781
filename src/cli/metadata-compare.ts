import fs from 'node:fs/promises';
import type { DataverseClient } from '../connectors/dataverse/dataverse-client.js';
import { describeChange, diffMetadata } from '../connectors/dataverse/metadata-diff.js';
import { pullMetadata } from '../connectors/dataverse/metadata-pull.js';
import { loadAllMetadata } from '../core/table-metadata.js';

/** One difference between a committed snapshot and the live table, as `ferry metadata diff` prints it. */
export interface MetadataChange {
  readonly table: string;
  readonly text: string;
}

/**
 * The committed snapshots against the service for `ferry doctor`, through the same `diffMetadata` as
 * `ferry metadata diff`, so the two never disagree about drift.
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
    for (const change of diffMetadata(committed, live)) changes.push({ table: name, text: describeChange(change) });
  }
  return { tables: snapshots.size, changes };
}
