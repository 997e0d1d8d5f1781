import { DataverseClient } from '../../connectors/dataverse/dataverse-client.js';
import { describeChange, diffMetadata, type MetadataChange } from '../../connectors/dataverse/metadata-diff.js';
import { pullMetadata } from '../../connectors/dataverse/metadata-pull.js';
import { FerryError } from '../../core/errors.js';
import { loadAllMetadata, loadMetadata, type TableMetadata } from '../../core/table-metadata.js';
import type { Command } from '../command.js';
import { openDataverse } from '../services.js';

/**
 * `ferry metadata diff [--table account]... [--json]`: the committed snapshots against the live tables. Exit 1 when
 * anything drifted (a CI job gates a deployment on it), 0 when every table matches.
 */
export const metadataDiffCommand: Command = {
  name: 'metadata diff',
  summary: 'compare the committed metadata snapshots with the live tables; exit 1 on drift',
  usage: 'metadata diff [--table <logicalname>...] [--json]',
  options: {
    table: { type: 'string', multiple: true },
  },
  async run(input) {
    const raw = input.values.table;
    const named = (Array.isArray(raw) ? raw : typeof raw === 'string' ? [raw] : [])
      .flatMap((t) => String(t).split(','))
      .map((t) => t.trim())
      .filter(Boolean);
    const committed: TableMetadata[] = named.length
      ? await Promise.all(named.map((t) => loadMetadata(input.config.metadata, t)))
      : [...(await loadAllMetadata(input.config.metadata)).values()];
    if (committed.length === 0) {
      throw new FerryError(
        'metadata.missing',
        `No snapshots in \`${input.config.metadata}\` to compare; pull some with \`ferry metadata pull --table <name>\`.`,
      );
    }
    const dataverse = await openDataverse(input.config, input.log);
    let drifted = 0;
    try {
      const client = new DataverseClient({
        url: dataverse.endpoint.url,
        ...(dataverse.endpoint.getToken ? { getToken: dataverse.endpoint.getToken } : {}),
        log: input.log,
        signal: input.signal,
      });
      for (const table of committed) {
        let changes: MetadataChange[];
        try {
          changes = diffMetadata(table, await pullMetadata(client, table.LogicalName));
        } catch (error) {
          // 0x80040217: the service has no such table any more.
          if (!(error instanceof FerryError) || error.code !== 'dataverse.0x80040217') throw error;
          changes = [{ table: table.LogicalName, kind: 'table.removed' }];
        }
        if (changes.length > 0) drifted += 1;
        if (input.json) input.print(JSON.stringify({ table: table.LogicalName, drift: changes.length > 0, changes }));
        else if (changes.length === 0) input.print(`${table.LogicalName}: no drift`);
        else for (const change of changes) input.print(describeChange(change));
      }
    } finally {
      await dataverse.close();
    }
    if (drifted > 0) {
      input.log.warn(
        `${drifted} of ${committed.length} table(s) drifted from the snapshots in \`${input.config.metadata}\`; review, then \`ferry metadata pull --table <name>\` and commit.`,
      );
    }
    return drifted > 0 ? 1 : 0;
  },
};
