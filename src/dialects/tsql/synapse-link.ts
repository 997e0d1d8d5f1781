import { tsqlIdent, tsqlLiteral } from './staging.js';

/*
 * Reading Synapse Link exports in serverless SQL: OPENROWSET over the CSV timestamp folders or the Delta table, from
 * the data source `ferry_synapse_link` (sql/tsql/setup/serverless.sql). The DuckDB readers of the same exports are
 * in src/dialects/duckdb/synapse-link.ts.
 */

/**
 * The rows `r` of `table` in a window, and the window condition. CSV: headerless files bound by ordinal in
 * `columns` order; the timestamp folder (`r.filepath(1)`) selects the window — after `start`, before the folder
 * Synapse Link is still writing (or up to the requested end). Delta: `SinkModifiedOn` in (`start`, `end`].
 * `start` and `end` are text spliced into N'…' literals (the caller's placeholders).
 */
export function synapseLinkRows(
  format: 'csv' | 'delta',
  table: string,
  columns: readonly string[],
  start: string,
  end: string,
): { readonly from: string; readonly where: string } {
  if (format === 'csv') {
    const withList = columns.map((c, i) => `${tsqlIdent(c)} NVARCHAR(4000) ${i + 1}`).join(', ');
    return {
      from: `OPENROWSET(BULK ${tsqlLiteral(`*/${table}/*.csv`)}, DATA_SOURCE = 'ferry_synapse_link', FORMAT = 'CSV', PARSER_VERSION = '1.0', FIELDQUOTE = '"') WITH (${withList}) AS r`,
      where: `r.filepath(1) > N'${start}' AND r.filepath(1) < N'${end}'`,
    };
  }
  return {
    from: `OPENROWSET(BULK ${tsqlLiteral(`deltalake/${table}_partitioned/`)}, DATA_SOURCE = 'ferry_synapse_link', FORMAT = 'DELTA') AS r`,
    where: `(N'${start}' = N'' OR r.[SinkModifiedOn] > N'${start}') AND r.[SinkModifiedOn] <= N'${end}'`,
  };
}
