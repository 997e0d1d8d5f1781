import { DataverseClient } from '../../connectors/dataverse/dataverse-client.js';
import { pullMetadata, writeSnapshot } from '../../connectors/dataverse/metadata-pull.js';
import { UsageError } from '../../core/errors.js';
import type { Command } from '../command.js';
import { openDataverse } from '../services.js';

/** `ferry metadata pull --table account --table contact --out <dir>`: snapshots table metadata as JSON files. */
export const metadataPullCommand: Command = {
  name: 'metadata pull',
  summary: 'read tables from Dataverse EntityDefinitions and write one snapshot JSON per table',
  usage: 'metadata pull --table <logicalname>... [--out <dir>] [--json]',
  options: {
    table: {
      type: 'string',
      multiple: true,
      valueName: '<logicalname>',
      defaultText: 'required',
      description: 'table to pull (repeat, or a,b)',
    },
    out: { type: 'string', valueName: '<dir>', defaultText: 'the --metadata folder', description: 'where to write' },
  },
  examples: [
    {
      text: 'Refresh two snapshots from the prod environment:',
      command: 'ferry metadata pull --table account --table contact --target prod',
    },
  ],
  async run(input) {
    const raw = input.values.table;
    const tables = (Array.isArray(raw) ? raw : typeof raw === 'string' ? [raw] : [])
      .flatMap((t) => String(t).split(','))
      .map((t) => t.trim())
      .filter(Boolean);
    if (tables.length === 0) throw new UsageError('Say which tables to pull: --table account --table contact.');
    const out = typeof input.values.out === 'string' ? input.values.out : input.config.metadata;
    const dataverse = await openDataverse(input.config, input.log);
    try {
      const client = new DataverseClient({
        url: dataverse.endpoint.url,
        ...(dataverse.endpoint.getToken ? { getToken: dataverse.endpoint.getToken } : {}),
        log: input.log,
        signal: input.signal,
      });
      for (const table of tables) {
        const snapshot = await pullMetadata(client, table);
        const file = await writeSnapshot(out, snapshot);
        const summary = {
          table: snapshot.LogicalName,
          file,
          attributes: snapshot.Attributes.length,
          keys: snapshot.Keys.length,
          relationships: snapshot.ManyToOneRelationships.length,
          supportsBulk: snapshot.SupportsBulk ?? null,
        };
        input.print(
          input.json
            ? JSON.stringify(summary)
            : `${summary.table}: ${summary.attributes} attributes, ${summary.keys} keys, ${summary.relationships} lookups → ${file}`,
        );
      }
      return 0;
    } finally {
      await dataverse.close();
    }
  },
};
