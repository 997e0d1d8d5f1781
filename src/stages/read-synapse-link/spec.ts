import { UsageError } from '../../core/errors.js';
import type { StageSpecBase } from '../../core/pipeline.js';
import { SpecFields, type StageKindSpec } from '../stage-kind.js';

/** The stage kind. */
export const READ_SYNAPSE_LINK = 'read-synapse-link' as const;

/** The two Synapse Link export formats: CSV incremental folders, or Delta tables. */
export const SYNAPSE_LINK_FORMATS = ['csv', 'delta'] as const;
/** One of {@link SYNAPSE_LINK_FORMATS}. */
export type SynapseLinkFormat = (typeof SYNAPSE_LINK_FORMATS)[number];

/** The `read-synapse-link` stage spec (plain data). */
export interface ReadSynapseLinkSpec extends StageSpecBase {
  readonly kind: typeof READ_SYNAPSE_LINK;
  /** Lake folder of the Synapse Link container, e.g. `synapse-link/dataverse-demo`. */
  readonly folder: string;
  readonly format: SynapseLinkFormat;
  /** Dataverse tables (logical names) to read. */
  readonly tables: readonly string[];
  /** Largest number of timestamp folders one run takes (CSV). Default: all completed ones. */
  readonly maxFolders?: number;
  /**
   * Delta: `snapshot` stages every live row of the new version; `changes` only the rows of live files added after
   * the last processed version (a superset of the changed rows: a MERGE rewrites whole files). Default `snapshot`.
   */
  readonly deltaMode?: DeltaMode;
}

/** How a Delta window is read; see {@link ReadSynapseLinkSpec.deltaMode}. */
export const DELTA_MODES = ['snapshot', 'changes'] as const;
/** One of {@link DELTA_MODES}. */
export type DeltaMode = (typeof DELTA_MODES)[number];

/**
 * Reads a Synapse Link for Dataverse export: the completed incremental timestamp folders (CSV + each folder's
 * `model.json`; also the non-incremental layout with table folders at the root), or `deltalake/<table>_partitioned`
 * Delta tables. Rows are staged set-based in DuckDB and typed from the CDM types.
 *
 * @example
 * readSynapseLink({ folder: 'synapse-link/dataverse-demo', format: 'csv', tables: ['account'] })
 */
export function readSynapseLink(options: {
  folder: string;
  format?: SynapseLinkFormat;
  tables: readonly string[];
  maxFolders?: number;
  deltaMode?: DeltaMode;
}): ReadSynapseLinkSpec {
  const format = options.format ?? 'csv';
  if (!(SYNAPSE_LINK_FORMATS as readonly string[]).includes(format)) {
    throw new UsageError(`Synapse Link format \`${format}\` is not known; use \`csv\` or \`delta\`.`);
  }
  if (options.tables.length === 0)
    throw new UsageError(`readSynapseLink for \`${options.folder}\` names no tables; list at least one.`);
  return {
    kind: READ_SYNAPSE_LINK,
    folder: options.folder,
    format,
    tables: [...options.tables],
    ...(options.maxFolders === undefined ? {} : { maxFolders: options.maxFolders }),
    ...(options.deltaMode === undefined ? {} : { deltaMode: options.deltaMode }),
  };
}

/** What `read-synapse-link` declares to the registries. */
export const readSynapseLinkKind: StageKindSpec<ReadSynapseLinkSpec> = {
  kind: READ_SYNAPSE_LINK,
  parse(spec) {
    const f = new SpecFields(spec);
    return readSynapseLink({
      folder: f.string('folder'),
      format: f.optOneOf('format', SYNAPSE_LINK_FORMATS),
      tables: f.strings('tables'),
      maxFolders: f.optNumber('maxFolders'),
      deltaMode: f.optOneOf('deltaMode', DELTA_MODES),
    });
  },
  stagedColumns: () => [],
  synapseRole: 'synapse-link-source',
};
