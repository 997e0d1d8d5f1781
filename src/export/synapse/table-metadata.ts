import fs from 'node:fs/promises';
import path from 'node:path';
import { FerryError } from '../../core/errors.js';

/** The few fields of a Dataverse metadata snapshot (`fixtures/metadata/<table>.json`) the exporter reads. */
export interface TableMetadataView {
  readonly LogicalName: string;
  readonly EntitySetName: string;
  readonly PrimaryIdAttribute: string;
  readonly Keys?: readonly {
    readonly LogicalName?: string;
    readonly SchemaName?: string;
    readonly KeyAttributes: readonly string[];
  }[];
  readonly Attributes: readonly {
    readonly LogicalName: string;
    readonly AttributeType?: string;
    readonly MaxLength?: number;
    readonly Targets?: readonly string[];
    readonly IsValidForRead?: boolean;
    readonly AttributeOf?: string | null;
  }[];
  readonly ManyToOneRelationships?: readonly {
    readonly ReferencedEntity: string;
    readonly ReferencingAttribute: string;
    readonly ReferencingEntityNavigationPropertyName: string;
  }[];
}

/** Finds a table's metadata by logical name. */
export type MetadataSource = (logicalName: string) => Promise<TableMetadataView>;

/** Reads snapshots from a folder, caching each table once. */
export function metadataFromDir(dir: string): MetadataSource {
  const cache = new Map<string, Promise<TableMetadataView>>();
  return (name) => {
    let hit = cache.get(name);
    if (!hit) {
      hit = read(dir, name);
      cache.set(name, hit);
    }
    return hit;
  };
}

async function read(dir: string, name: string): Promise<TableMetadataView> {
  const file = path.join(dir, `${name}.json`);
  let text: string;
  try {
    text = await fs.readFile(file, 'utf8');
  } catch {
    throw new FerryError(
      'export.metadata_missing',
      `No metadata snapshot for table \`${name}\` at \`${file}\`; run \`ferry metadata pull --table ${name}\` or pass --metadata <dir>.`,
    );
  }
  const parsed = JSON.parse(text) as TableMetadataView;
  if (!parsed.EntitySetName || !Array.isArray(parsed.Attributes)) {
    throw new FerryError(
      'export.metadata_invalid',
      `Metadata snapshot \`${file}\` lacks EntitySetName or Attributes; pull it again.`,
    );
  }
  return parsed;
}

/** The alternate key whose attributes are exactly `key` (order-insensitive); its logical name is what ADF wants. */
export function alternateKeyName(meta: TableMetadataView, key: readonly string[]): string | undefined {
  const want = [...key].sort().join(',');
  const found = (meta.Keys ?? []).find((k) => [...k.KeyAttributes].sort().join(',') === want);
  return found ? (found.LogicalName ?? found.SchemaName?.toLowerCase()) : undefined;
}
