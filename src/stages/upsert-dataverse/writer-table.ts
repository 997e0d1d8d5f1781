import type { WriterTable } from '../../connectors/dataverse/bulk-writer.js';
import type { DataverseTarget } from '../../core/stage-handoff.js';
import { loadMetadata, supportsBulk } from '../../core/table-metadata.js';

/** The bulk writer's view of the target the convert stage handed over. */
export function writerTableOf(target: DataverseTarget): WriterTable {
  return {
    logicalName: target.table,
    entitySet: target.entitySetName,
    primaryId: target.primaryIdAttribute,
    ...(target.supportsBulk ? {} : { supportsBulk: false }),
  };
}

/** Entity set, primary id and bulk flag from the table's metadata snapshot (the queue listener's writer). */
export async function loadWriterTable(metadataDir: string, logicalName: string): Promise<WriterTable> {
  const snapshot = await loadMetadata(metadataDir, logicalName);
  return {
    logicalName: snapshot.LogicalName,
    entitySet: snapshot.EntitySetName,
    primaryId: snapshot.PrimaryIdAttribute,
    ...(supportsBulk(snapshot) ? {} : { supportsBulk: false }),
  };
}
