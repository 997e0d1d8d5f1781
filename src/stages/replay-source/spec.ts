import { UsageError } from '../../core/errors.js';
import type { StageSpecBase } from '../../core/pipeline.js';
import { SpecFields, type StageKindSpec } from '../stage-kind.js';

/** The stage kind: stands in for a replayed pipeline's source stage (`ferry replay` builds it; not for pipeline files). */
export const REPLAY_SOURCE = 'replay-source' as const;

/** Where a replay takes the rows from: the run's kept staged input, or the rows stored with the rejects. */
export const REPLAY_SOURCES = ['staged-parquet', 'reject-rows'] as const;
/** One of {@link REPLAY_SOURCES}. */
export type ReplaySource = (typeof REPLAY_SOURCES)[number];

/** A source row stored with a reject, with its lineage. */
export interface ReplayRow {
  readonly values: Readonly<Record<string, unknown>>;
  readonly sourceFile: string | null;
  readonly rowNumber: number | null;
}

export interface ReplaySourceSpec extends StageSpecBase {
  readonly kind: typeof REPLAY_SOURCE;
  /** The run whose rejects are replayed (noted in this run's metrics). */
  readonly replayOf: string;
  readonly source: ReplaySource;
  /** `staged-parquet`: the kept staged input, and the rows of it to take by place (file and row) or by row id. */
  readonly stagedFile: string | null;
  readonly places: ReadonlyArray<{ readonly file: string; readonly row: number }>;
  readonly rowIds: readonly string[];
  /** `reject-rows`: the source rows stored with the rejects. */
  readonly rows: readonly ReplayRow[];
  /** The metadata snapshot the replayed run used (noted in this run's metrics). */
  readonly metadataSnapshot?: string;
}

/** Stages exactly the rows a replay re-sends, lineage kept, as `staged`. */
export function replaySource(options: {
  replayOf: string;
  source: ReplaySource;
  stagedFile?: string | null;
  places?: ReadonlyArray<{ readonly file: string; readonly row: number }>;
  rowIds?: readonly string[];
  rows?: readonly ReplayRow[];
  metadataSnapshot?: string;
}): ReplaySourceSpec {
  if (options.source === 'staged-parquet' && !options.stagedFile)
    throw new UsageError(
      `A \`${REPLAY_SOURCE}\` stage reading the staged input of \`${options.replayOf}\` needs its file.`,
    );
  return {
    kind: REPLAY_SOURCE,
    replayOf: options.replayOf,
    source: options.source,
    stagedFile: options.stagedFile ?? null,
    places: (options.places ?? []).map((p) => ({ file: p.file, row: p.row })),
    rowIds: [...(options.rowIds ?? [])],
    rows: (options.rows ?? []).map((r) => ({
      values: { ...r.values },
      sourceFile: r.sourceFile,
      rowNumber: r.rowNumber,
    })),
    ...(options.metadataSnapshot === undefined ? {} : { metadataSnapshot: options.metadataSnapshot }),
  };
}

function isPlace(value: unknown): value is { file: string; row: number } {
  return (
    value !== null &&
    typeof value === 'object' &&
    'file' in value &&
    typeof value.file === 'string' &&
    'row' in value &&
    typeof value.row === 'number'
  );
}

function isRow(value: unknown): value is ReplayRow {
  return (
    value !== null &&
    typeof value === 'object' &&
    'values' in value &&
    value.values !== null &&
    typeof value.values === 'object' &&
    'sourceFile' in value &&
    (value.sourceFile === null || typeof value.sourceFile === 'string') &&
    'rowNumber' in value &&
    (value.rowNumber === null || typeof value.rowNumber === 'number')
  );
}

/** What `replay-source` declares to the registries. */
export const replaySourceKind: StageKindSpec<ReplaySourceSpec> = {
  kind: REPLAY_SOURCE,
  parse(spec) {
    const f = new SpecFields(spec);
    const fields = new Map<string, unknown>(Object.entries(spec));
    const places = fields.get('places') ?? [];
    const rows = fields.get('rows') ?? [];
    if (!Array.isArray(places) || !places.every(isPlace) || !Array.isArray(rows) || !rows.every(isRow))
      throw new UsageError(
        `Stage \`${REPLAY_SOURCE}\` has malformed \`places\` or \`rows\`; it is built by \`ferry replay\`, not written by hand.`,
      );
    const stagedFile = fields.get('stagedFile');
    return replaySource({
      replayOf: f.string('replayOf'),
      source: f.optOneOf('source', REPLAY_SOURCES) ?? 'staged-parquet',
      stagedFile: typeof stagedFile === 'string' ? stagedFile : null,
      places,
      rowIds: f.optStrings('rowIds'),
      rows,
      metadataSnapshot: f.optString('metadataSnapshot'),
    });
  },
  stagedColumns: () => [],
  synapseRole: null,
};
