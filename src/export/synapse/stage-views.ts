import { FerryError } from '../../core/errors.js';
import type { PipelineDefinition, StageSpecBase } from '../../core/pipeline.js';
import { type ConvertToDataverseSpec, convertToDataverseKind } from '../../stages/convert-to-dataverse/spec.js';
import type { SynapseRole } from '../../stages/stage-kind.js';
import { STAGE_KINDS } from '../../stages/stage-spec.js';

/*
 * The exporter reads the same stage specs as the runner. It depends only on the few fields it compiles, typed here
 * structurally, so the stage files stay the single owners of their spec types.
 */

/** Inbound source: `read-parquet-deltas`. */
export interface ParquetSourceView {
  readonly folder: string;
  readonly pattern: string;
}

/** A lookup in the mapping: one target with an optional alternate key, or a per-row target (`tableFrom`). */
export interface LookupView {
  readonly table?: string;
  readonly key?: string | readonly string[];
  readonly tableFrom?: string;
  readonly keys?: Readonly<Record<string, unknown>>;
}

/** A mapped column: target attribute ← source column. */
export interface ColumnView {
  readonly attribute: string;
  readonly from: string | readonly string[];
  readonly lookup?: LookupView;
}

/** The conversion mapping of `convert-to-dataverse`. */
export interface MappingView {
  readonly table: string;
  readonly key: readonly string[];
  readonly changeTimestamp?: string;
  readonly columns: readonly ColumnView[];
  /** The spec, checked, for the T-SQL conversion compiler. */
  readonly spec: ConvertToDataverseSpec;
}

/** The Dataverse sink: `upsert-dataverse`. */
export interface UpsertView {
  readonly table: string;
  readonly batchSize?: number;
}

/** Outbound source: `read-synapse-link`. */
export interface SynapseLinkView {
  readonly folder: string;
  readonly format: 'csv' | 'delta';
  readonly tables: readonly string[];
}

/** Outbound extract: `run-sql-extract`. */
export interface ExtractView {
  readonly table: string;
  readonly query: string;
  /** Warehouse folder name. Default: the table name. */
  readonly output?: string;
}

/** Outbound sink: `write-parquet`. */
export interface ParquetSinkView {
  readonly deletes: 'flag-column' | 'separate-file' | 'drop';
}

/** The stages of an inbound pipeline, as the exporter needs them. */
export interface InboundView {
  readonly direction: 'inbound';
  readonly source: ParquetSourceView;
  readonly mapping: MappingView;
  readonly upsert: UpsertView;
}

/** The stages of an outbound pipeline, as the exporter needs them. */
export interface OutboundView {
  readonly direction: 'outbound';
  readonly source: SynapseLinkView;
  readonly extracts: readonly ExtractView[];
  readonly sink: ParquetSinkView;
}

type AnySpec = StageSpecBase & Record<string, unknown>;

/** The Synapse role a stage kind declares in its spec module; null for kinds that are not registered or declare none. */
function roleOf(kind: string): SynapseRole | null {
  return Object.entries(STAGE_KINDS).find(([k]) => k === kind)?.[1].synapseRole ?? null;
}

/** Reads a pipeline definition into what the exporter compiles; unknown stage kinds fail with what to do. */
export function viewPipeline(def: PipelineDefinition): InboundView | OutboundView {
  const specs = def.stages as readonly AnySpec[];
  const known = Object.entries(STAGE_KINDS)
    .filter(([, k]) => k.synapseRole !== null)
    .map(([kind]) => kind);
  for (const s of specs) {
    // Each kind declares its place in an exported pipeline (its spec module's `synapseRole`); none: not exportable.
    if (roleOf(s.kind) === null) {
      throw new FerryError(
        'export.unsupported_stage',
        `Pipeline \`${def.name}\` has a stage of kind \`${s.kind}\` that the Synapse exporter cannot compile; supported kinds: ${known.join(', ')}. Remove it from the pipeline or export the other pipelines with --pipelines.`,
      );
    }
  }
  const one = (role: SynapseRole): AnySpec => {
    const found = specs.filter((s) => roleOf(s.kind) === role);
    if (found.length !== 1) {
      throw new FerryError(
        'export.pipeline_shape',
        `Pipeline \`${def.name}\` has ${found.length} stages of role \`${role}\`${found.length ? ` (${found.map((s) => `\`${s.kind}\``).join(', ')})` : ''}; the Synapse exporter needs exactly one in a ${def.direction} pipeline.`,
      );
    }
    return found[0];
  };
  if (def.direction === 'inbound') {
    const src = one('parquet-source');
    const conv = one('conversion');
    const up = one('upsert');
    return {
      direction: 'inbound',
      source: { folder: str(src, 'folder', def.name), pattern: optStr(src, 'pattern') ?? '*.parquet' },
      mapping: viewMapping(conv, def.name),
      upsert: {
        table: str(up, 'table', def.name),
        ...(typeof up.batchSize === 'number' ? { batchSize: up.batchSize } : {}),
      },
    };
  }
  const src = one('synapse-link-source');
  const extracts = specs.filter((s) => roleOf(s.kind) === 'extract');
  const sinks = specs.filter((s) => roleOf(s.kind) === 'parquet-sink');
  if (sinks.length !== 1) {
    throw new FerryError(
      'export.pipeline_shape',
      `Pipeline \`${def.name}\` needs exactly one \`write-parquet\` stage to export; it has ${sinks.length}.`,
    );
  }
  const format = optStr(src, 'format') ?? 'csv';
  if (format !== 'csv' && format !== 'delta') {
    throw new FerryError(
      'export.pipeline_shape',
      `Pipeline \`${def.name}\` reads Synapse Link format \`${format}\`; use csv or delta.`,
    );
  }
  const tables = Array.isArray(src.tables) ? (src.tables as unknown[]).map(String) : [];
  const views: ExtractView[] = extracts.map((e) => {
    const output = optStr(e, 'output');
    return { table: str(e, 'table', def.name), query: optStr(e, 'query') ?? 'default', ...(output ? { output } : {}) };
  });
  // Without an explicit extract every table is written as read (the default extract).
  const effective = views.length > 0 ? views : tables.map((t) => ({ table: t, query: 'default' }));
  const deletes = optStr(sinks[0], 'deletes') ?? 'flag-column';
  return {
    direction: 'outbound',
    source: { folder: str(src, 'folder', def.name), format, tables },
    extracts: effective,
    sink: { deletes: deletes === 'separate-file' || deletes === 'drop' ? deletes : 'flag-column' },
  };
}

function viewMapping(spec: AnySpec, pipeline: string): MappingView {
  // The mapping may sit at the top of the spec or under `mapping` — accept both shapes.
  const m = (spec.mapping && typeof spec.mapping === 'object' ? spec.mapping : spec) as Record<string, unknown>;
  const table = typeof m.table === 'string' ? m.table : undefined;
  if (!table)
    throw new FerryError('export.pipeline_shape', `Pipeline \`${pipeline}\`: convert-to-dataverse has no \`table\`.`);
  const key = Array.isArray(m.key) ? (m.key as unknown[]).map(String) : typeof m.key === 'string' ? [m.key] : [];
  const raw = (m.columns ?? {}) as Record<string, unknown>;
  const columns: ColumnView[] = Object.entries(raw).map(([attribute, value]) => {
    if (typeof value === 'string') return { attribute, from: value };
    const v = (value ?? {}) as Record<string, unknown>;
    const lookup = v.lookup && typeof v.lookup === 'object' ? (v.lookup as LookupView) : undefined;
    return {
      attribute,
      from: typeof v.from === 'string' || Array.isArray(v.from) ? (v.from as string | string[]) : attribute,
      ...(lookup ? { lookup } : {}),
    };
  });
  return {
    table,
    key,
    ...(typeof m.changeTimestamp === 'string' ? { changeTimestamp: m.changeTimestamp } : {}),
    columns,
    spec: convertToDataverseKind.parse({ ...m, kind: spec.kind }),
  };
}

function str(spec: AnySpec, field: string, pipeline: string): string {
  const v = spec[field];
  if (typeof v !== 'string' || v === '') {
    throw new FerryError(
      'export.pipeline_shape',
      `Pipeline \`${pipeline}\`: stage \`${spec.kind}\` has no \`${field}\`; the exporter needs it.`,
    );
  }
  return v;
}

function optStr(spec: AnySpec, field: string): string | undefined {
  const v = spec[field];
  return typeof v === 'string' && v !== '' ? v : undefined;
}
