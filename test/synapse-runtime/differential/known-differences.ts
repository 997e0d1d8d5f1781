/**
 * The differences between the executors that `synapse/README.md` lists ("Differences between the Synapse path and
 * the local runner"), each by name, with the test that recognises it. A difference the comparison finds that none of
 * these recognises is a mismatch. An entry with a `defect` is an exporter defect of the review another change fixes:
 * when it lands, its entry is removed and the scenarios must show 0 of it.
 *
 * A recognition is narrow on purpose: it names the column, the reject reason or the failed activity's error that
 * makes the difference, never "anything in this table".
 */
import type { PipelineDefinition } from '../../../src/core/pipeline.js';
import type { PipelineRun } from '../../../src/export/synapse/runtime/run-records.js';
import type { Difference, SideState } from './end-state.js';

export interface KnownDifference {
  readonly name: string;
  /** The row of the README table that lists it. */
  readonly readmeRow: string;
  /** Review defect number when an exporter fix (by its owner) will remove it. */
  readonly defect?: number;
  recognises(d: Difference, ctx: DifferenceContext): boolean;
}

export interface DifferenceContext {
  readonly pipelines: readonly PipelineDefinition[];
  readonly local: SideState;
  readonly synapse: SideState;
  readonly synapseRuns: readonly PipelineRun[];
  /** Timestamp folders of the Synapse Link export that hold no file (what a retried export leaves). */
  readonly emptySynapseLinkFolders: readonly string[];
}

type Area = Difference['area'];

/** Dataverse tables (inbound) or warehouse outputs (outbound) a pipeline definition writes. */
function writes(def: PipelineDefinition, area: Area): string[] {
  return def.stages.flatMap((s) => {
    const spec = s as unknown as { kind: string; table?: string; output?: string };
    if (area === 'dataverse' && spec.kind === 'upsert-dataverse' && spec.table) return [spec.table];
    if (area.startsWith('warehouse') && spec.kind === 'run-sql-extract') return [spec.output ?? spec.table ?? ''];
    return [];
  });
}

const writer = (table: string, area: Area, ctx: DifferenceContext) =>
  ctx.pipelines.find((p) => writes(p, area).includes(table));

export const KNOWN_DIFFERENCES: readonly KnownDifference[] = [
  {
    // The Synapse path writes timestamps as DATETIME2 (UTC wall time, no zone), the local runner as
    // TIMESTAMP WITH TIME ZONE (UTC): the same instants, another Parquet type.
    name: 'outbound-timestamps-without-zone',
    readmeRow: 'outbound timestamps',
    recognises: (d) =>
      d.area === 'warehouse-type' && d.local === 'TIMESTAMP WITH TIME ZONE' && d.synapse === 'TIMESTAMP',
  },
  {
    // A Delta extract on the Synapse path binds, by name, the columns of the metadata snapshot the export was made
    // from; the local runner writes every column of the Delta table. A column added in Dataverse (and to the Delta
    // table) after the export is in the local output only, until the pipelines are exported again.
    name: 'delta-columns-from-export-metadata',
    readmeRow: 'a column added to a Delta table after the export',
    recognises: (d, ctx) => {
      if (!(d.area === 'warehouse' || d.area === 'warehouse-type')) return false;
      const def = writer(d.table, d.area, ctx);
      const delta = def?.stages.some((s) => (s as unknown as { format?: string }).format === 'delta');
      const absent = ctx.synapse.warehouseTypes[d.table]?.[d.column] === undefined;
      return !!delta && absent && d.local !== null && d.local !== undefined && (d.synapse ?? null) === null;
    },
  },
];

export interface Classified {
  readonly mismatches: Difference[];
  /** Known difference name → how many differences it accounts for. */
  readonly known: Record<string, number>;
}

export function classify(differences: readonly Difference[], ctx: DifferenceContext): Classified {
  const mismatches: Difference[] = [];
  const known: Record<string, number> = {};
  for (const d of differences) {
    const k = KNOWN_DIFFERENCES.find((x) => x.recognises(d, ctx));
    if (k) known[k.name] = (known[k.name] ?? 0) + 1;
    else mismatches.push(d);
  }
  return { mismatches, known };
}
