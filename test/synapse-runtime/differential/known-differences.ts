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

/**
 * Errors of the failed activities of the latest Synapse run of the pipeline writing `table` — for a warehouse output,
 * only those of its own extract (`ExtractToParquet_<output>`).
 */
function latestFailures(table: string, area: Area, ctx: DifferenceContext): string[] {
  const def = writer(table, area, ctx);
  if (!def) return [];
  const name = `pl_${def.name.replaceAll('-', '_')}`;
  const latest = ctx.synapseRuns.filter((r) => r.pipelineName === name).at(-1);
  if (latest?.status !== 'Failed') return [];
  return latest.activityRuns
    .filter((a) => a.status === 'Failed' && (area === 'dataverse' || a.activityName === `ExtractToParquet_${table}`))
    .map((a) => a.error?.message ?? '');
}

/**
 * The pipeline writing `table` failed in its latest Synapse run with `pattern`, or its latest run in the schedule
 * pipeline was skipped because a pipeline it depends on failed with `pattern`.
 */
function failedOrBlockedBy(table: string, area: Area, pattern: RegExp, ctx: DifferenceContext): boolean {
  if (latestFailures(table, area, ctx).some((m) => pattern.test(m))) return true;
  const def = writer(table, area, ctx);
  const master = ctx.synapseRuns.filter((r) => r.pipelineName === 'pl_ferry_every_15m').at(-1);
  if (!def || !master) return false;
  const own = master.activityRuns.find((a) => a.activityName === `Run_${def.name.replaceAll('-', '_')}`);
  return (
    own?.status === 'Skipped' &&
    master.activityRuns.some((a) => a.status === 'Failed' && pattern.test(a.error?.message ?? ''))
  );
}

export const KNOWN_DIFFERENCES: readonly KnownDifference[] = [
  {
    // The Synapse path's key map keeps a record deleted in Dataverse: a lookup to it resolves to the deleted GUID,
    // the service refuses it (0x80040217), the copy fails after the row's other columns were written, and every
    // later run repeats the window. The local runner rejects the row (`lookup.target_missing`).
    name: 'lookup-to-deleted-record',
    readmeRow: 'a lookup to a record deleted in Dataverse',
    recognises: (d, ctx) => {
      const refused = /0x80040217/;
      if (d.area === 'reject') {
        const def = ctx.pipelines.find((p) => p.name === d.table);
        const table = def && writes(def, 'dataverse')[0];
        return (
          d.id.startsWith('lookup.target_missing|') &&
          Number(d.local) > Number(d.synapse) &&
          !!table &&
          latestFailures(table, 'dataverse', ctx).some((m) => refused.test(m))
        );
      }
      return d.area === 'dataverse' && failedOrBlockedBy(d.table, d.area, refused, ctx);
    },
  },
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
