import type { StageSpecBase } from '../../core/pipeline.js';
import { SpecFields, type StageKindSpec } from '../stage-kind.js';

/** The stage kind. */
export const READ_PARQUET_DELTAS = 'read-parquet-deltas' as const;

export interface ReadParquetDeltasSpec extends StageSpecBase {
  readonly kind: typeof READ_PARQUET_DELTAS;
  /** Lake folder the delta files arrive in (searched recursively), e.g. `inbound/accounts`. */
  readonly folder: string;
  /** File names to take. Default `*.parquet`. */
  readonly pattern: string;
  /**
   * Source columns the pipeline needs. Default: every column the pipeline's later stages read from the staged rows
   * (a convert stage's mapping). A file lacking one is held back with a clear reject; extra columns are ignored
   * with a warning.
   */
  readonly columns?: readonly string[];
}

/**
 * Discovers new Parquet delta files under a lake folder and makes them the `staged` view (read set-based by the
 * next stage), with lineage (run id, file, row number) on every row.
 *
 * @example
 * readParquetDeltas({ folder: 'inbound/accounts' })
 */
export function readParquetDeltas(options: {
  folder: string;
  pattern?: string;
  columns?: readonly string[];
}): ReadParquetDeltasSpec {
  return {
    kind: READ_PARQUET_DELTAS,
    folder: options.folder,
    pattern: options.pattern ?? '*.parquet',
    ...(options.columns ? { columns: [...options.columns] } : {}),
  };
}

/** What `read-parquet-deltas` declares to the registries. */
export const readParquetDeltasKind: StageKindSpec<ReadParquetDeltasSpec> = {
  kind: READ_PARQUET_DELTAS,
  parse(spec) {
    const f = new SpecFields(spec);
    return readParquetDeltas({
      folder: f.string('folder'),
      pattern: f.optString('pattern'),
      columns: f.optStrings('columns'),
    });
  },
  stagedColumns: () => [],
  synapseRole: 'parquet-source',
};
