import { UsageError } from '../../core/errors.js';
import type { StageSpecBase } from '../../core/pipeline.js';
import { SpecFields, type StageKindSpec } from '../stage-kind.js';

/** The stage kind. */
export const RUN_SQL_EXTRACT = 'run-sql-extract' as const;

/** The `run-sql-extract` stage spec (plain data). */
export interface RunSqlExtractSpec extends StageSpecBase {
  readonly kind: typeof RUN_SQL_EXTRACT;
  /** The staged table the extract is about (skipped when the window did not stage it). */
  readonly table: string;
  /**
   * `default` (latest `versionnumber` per `Id`, tie-broken by `SinkModifiedOn`, `IsDelete` rows kept as deletes) or a
   * path to a `.sql` file holding one SELECT over the staged views (`account`, `OptionsetMetadata`, ...).
   */
  readonly query: string;
  /** Name of the result (the warehouse folder). Default: the table name. */
  readonly output?: string;
  /** Boolean column of the result that marks deletes. Default `IsDelete`; absent in the result = no deletes. */
  readonly deleteColumn?: string;
}

/**
 * Runs one extract query over the staged window in DuckDB and keeps the result for the writer.
 *
 * @example
 * runSqlExtract({ table: 'account', query: 'default' })
 * runSqlExtract({ table: 'account', query: 'sql/extract/account-with-labels.sql', output: 'account_labelled' })
 */
export function runSqlExtract(options: {
  table: string;
  query?: string;
  output?: string;
  deleteColumn?: string;
}): RunSqlExtractSpec {
  const query = options.query ?? 'default';
  if (query !== 'default' && !query.endsWith('.sql')) {
    throw new UsageError(
      `Extract query \`${query}\` must be \`default\` or a path to a \`.sql\` file (e.g. \`sql/extract/account-with-labels.sql\`).`,
    );
  }
  return {
    kind: RUN_SQL_EXTRACT,
    table: options.table,
    query,
    ...(options.output ? { output: options.output } : {}),
    ...(options.deleteColumn ? { deleteColumn: options.deleteColumn } : {}),
  };
}

/** What `run-sql-extract` declares to the registries. */
export const runSqlExtractKind: StageKindSpec<RunSqlExtractSpec> = {
  kind: RUN_SQL_EXTRACT,
  parse(spec) {
    const f = new SpecFields(spec);
    return runSqlExtract({
      table: f.string('table'),
      query: f.optString('query'),
      output: f.optString('output'),
      deleteColumn: f.optString('deleteColumn'),
    });
  },
  stagedColumns: () => [],
  synapseRole: 'extract',
};
