import { UsageError } from '../../core/errors.js';
import type { StageSpecBase } from '../../core/pipeline.js';
import { SpecFields, type StageKindSpec } from '../stage-kind.js';

/** The stage kind. */
export const WRITE_PARQUET = 'write-parquet' as const;

/** Parquet compressions the writer takes. */
export const PARQUET_COMPRESSIONS = ['zstd', 'snappy', 'gzip', 'uncompressed'] as const;

/** How deletes reach the warehouse: a flag column on the rows, or their own file. */
export const DELETE_MODES = ['flag-column', 'separate-file'] as const;
/** One of {@link DELETE_MODES}. */
export type DeleteMode = (typeof DELETE_MODES)[number];
/** How GUID columns are written: as text, or as Parquet UUID. */
export const UUID_MODES = ['string', 'uuid'] as const;
/** One of {@link UUID_MODES}. */
export type UuidMode = (typeof UUID_MODES)[number];

/** The `write-parquet` stage spec (plain data). */
export interface WriteParquetSpec extends StageSpecBase {
  readonly kind: typeof WRITE_PARQUET;
  /** `warehouse` writes under the configured warehouse root (`--warehouse`, default `<lake>/warehouse`). */
  readonly target: 'warehouse';
  /** Deletes as rows with the delete column true (`flag-column`) or in their own `deletes-*.parquet` file. */
  readonly deletes: DeleteMode;
  /** `string` writes GUIDs as text (what Spark and Synapse serverless read without help); `uuid` keeps Parquet UUID. */
  readonly uuidAs: UuidMode;
  /** Parquet compression. Default `snappy` (what Spark and Synapse write by default). */
  readonly compression: (typeof PARQUET_COMPRESSIONS)[number];
}

/**
 * Writes each extract result as Parquet for the warehouse: `<warehouse>/<table>/<window>/part-00000.parquet`
 * (plus `deletes-00000.parquet` with `deletes: 'separate-file'`) and then `_manifest.json`. Files go to a temporary
 * folder that is renamed into place before the manifest is written, so a window without a manifest is incomplete;
 * the same window always gives the same file names and bytes, so a repeated run replaces them with equal files.
 * Last, `<table>/_current.json` names the window in place of the current windows whose input it covers, whose
 * folders are then deleted: readers take the files the index lists (README, Warehouse layout).
 *
 * @example
 * writeParquet({ target: 'warehouse', deletes: 'flag-column', uuidAs: 'string' })
 */
export function writeParquet(
  options: {
    target?: 'warehouse';
    deletes?: DeleteMode;
    uuidAs?: UuidMode;
    compression?: WriteParquetSpec['compression'];
  } = {},
): WriteParquetSpec {
  const deletes = options.deletes ?? 'flag-column';
  const uuidAs = options.uuidAs ?? 'string';
  if (!(DELETE_MODES as readonly string[]).includes(deletes))
    throw new UsageError(`writeParquet deletes \`${deletes}\` is not known; use ${DELETE_MODES.join(' or ')}.`);
  if (!(UUID_MODES as readonly string[]).includes(uuidAs))
    throw new UsageError(`writeParquet uuidAs \`${uuidAs}\` is not known; use ${UUID_MODES.join(' or ')}.`);
  return {
    kind: WRITE_PARQUET,
    target: options.target ?? 'warehouse',
    deletes,
    uuidAs,
    compression: options.compression ?? 'snappy',
  };
}

/** What `write-parquet` declares to the registries. */
export const writeParquetKind: StageKindSpec<WriteParquetSpec> = {
  kind: WRITE_PARQUET,
  parse(spec) {
    const f = new SpecFields(spec);
    return writeParquet({
      target: f.optOneOf('target', ['warehouse'] as const),
      deletes: f.optOneOf('deletes', DELETE_MODES),
      uuidAs: f.optOneOf('uuidAs', UUID_MODES),
      compression: f.optOneOf('compression', PARQUET_COMPRESSIONS),
    });
  },
  stagedColumns: () => [],
  synapseRole: 'parquet-sink',
};
