import type { ExtractInput } from '../sql-steps.js';
import { tsqlIdent, tsqlLiteral } from './staging.js';
import { synapseLinkModelColumns, synapseLinkRows } from './synapse-link.js';

const SYSTEM_HEAD = ['Id', 'SinkCreatedOn', 'SinkModifiedOn'];
const SYSTEM_TAIL = ['versionnumber', 'createdon', 'modifiedon', 'IsDelete'];

/**
 * Serverless SQL for one table and window: the latest row per `Id` (a delete without a versionnumber first, then
 * the highest `versionnumber`, the latest `SinkModifiedOn`, the later folder), written by CETAS as typed Parquet
 * into `<output>/<window>/<run id>/` — a folder no earlier run or retry used, as CETAS refuses a location holding
 * data — and, with `deletes: 'separate-file'`, the deletes into `<output>_deletes/<window>/<run id>/`, outside the
 * data folder. CSV: the window's timestamp folders, each bound and typed by its own `model.json`
 * ({@link synapseLinkModelColumns}); Delta: the current version of the table (the pipeline's window is a
 * version), its columns by name. Script parameters: `@window_start`,
 * `@window_end`, `@window_name`, `@run_id`. CETAS takes no variables, so each statement is built as text and run
 * with EXEC(). Last, a manifest (`run_id`, `window_name`, `rows_written`, `rows_deleted`) is written by CETAS into
 * `_manifests/<output>/<window>/<run id>/`: the run's output is published once it exists. The last result set is
 * `rows_written`, `rows_deleted`.
 */
export function compileExtract(input: ExtractInput): string[] {
  const out = input.output ?? input.table;
  // Tokens marking where the window values go in the text of dynamic statements.
  const START = '\u0001start\u0001';
  const END = '\u0001end\u0001';
  const vars = { [START]: '@window_start', [END]: '@window_end' };
  const statements: string[] = [];
  if (input.format === 'csv') {
    statements.push(...synapseLinkModelColumns(input.table));
  } else {
    const attrs = input.metadata.Attributes.map((a) => String(a.LogicalName)).filter(
      (n) => !SYSTEM_HEAD.includes(n) && !SYSTEM_TAIL.includes(n),
    );
    const columns = [...SYSTEM_HEAD, ...attrs, ...SYSTEM_TAIL];
    // The table's current version, whole: the window is the version (no row is selected by SinkModifiedOn, which
    // the Synapse Link Spark job may merge late with an earlier value).
    const { from } = synapseLinkRows('delta', input.table, columns, START, END);
    statements.push(
      `DECLARE @rows NVARCHAR(MAX) = ${dynamicText(`SELECT * FROM ${from}`, vars)}`,
      `DECLARE @latest_columns NVARCHAR(MAX) = ${tsqlLiteral(columns.map((c) => (c === 'IsDelete' ? 'ISNULL(TRY_CONVERT(BIT, x.[IsDelete]), CAST(0 AS BIT)) AS [IsDelete]' : `x.${tsqlIdent(c)}`)).join(', '))}`,
      `DECLARE @columns NVARCHAR(MAX) = ${tsqlLiteral(columns.map((c) => `l.${tsqlIdent(c)}`).join(', '))}`,
    );
  }
  const order = [
    'CASE WHEN r.[versionnumber] IS NULL AND TRY_CONVERT(BIT, r.[IsDelete]) = 1 THEN 1 ELSE 0 END DESC',
    'r.[versionnumber] DESC',
    'r.[SinkModifiedOn] DESC',
    ...(input.format === 'csv' ? ['r.[__folder] DESC'] : []),
  ];
  statements.push(
    `DECLARE @latest NVARCHAR(MAX) = CONCAT(N'SELECT ', @latest_columns, N', CASE WHEN TRY_CONVERT(BIT, x.[IsDelete]) = 1 THEN 1 ELSE 0 END AS [__deleted] FROM (SELECT r.*, ROW_NUMBER() OVER (PARTITION BY r.[Id] ORDER BY ${order.join(', ')}) AS [__rn] FROM (', @rows, N') AS r) AS x WHERE x.[__rn] = 1')`,
  );
  const custom = input.customSelect
    ?.trim()
    .replace(/;$/, '')
    .replaceAll('{window_start}', START)
    .replaceAll('{window_end}', END);
  statements.push(
    custom
      ? `DECLARE @select NVARCHAR(MAX) = CONCAT(N'WITH src AS (', @latest, N') SELECT * FROM (', ${dynamicText(custom, vars)}, N') AS o')`
      : `DECLARE @select NVARCHAR(MAX) = CONCAT(N'SELECT * FROM (SELECT ', @columns, N' FROM (', @latest, N') AS l) AS o')`,
  );
  statements.push(`DECLARE @tag NVARCHAR(64) = REPLACE(@run_id, N'-', N'')`);
  const table = (suffix: string) =>
    `N'[ferry_out].[${`${out}${suffix}`.replaceAll("'", "''").replaceAll(']', ']]')}_', @tag, N']'`;
  const location = (folder: string) =>
    `REPLACE(CONCAT(${tsqlLiteral(`${folder}/`)}, @window_name, N'/', @run_id, N'/'), N'''', N'''''')`;
  const cetas = (suffix: string, folder: string, where: string) =>
    `CONCAT(N'CREATE EXTERNAL TABLE ', ${table(suffix)}, N' WITH (LOCATION = N''', ${location(folder)}, N''', DATA_SOURCE = [ferry_warehouse], FILE_FORMAT = [ferry_parquet]) AS ', @select${where ? `, ${tsqlLiteral(where)}` : ''})`;
  const texts = [cetas('', out, input.deletes === 'flag-column' ? '' : ' WHERE o.[IsDelete] = 0')];
  if (input.deletes === 'separate-file') texts.push(cetas('_deletes', `${out}_deletes`, ' WHERE o.[IsDelete] = 1'));
  const deleted =
    input.deletes === 'flag-column'
      ? `N'(SELECT COUNT_BIG(*) FROM ', ${table('')}, N' WHERE [IsDelete] = 1)'`
      : input.deletes === 'separate-file'
        ? `N'(SELECT COUNT_BIG(*) FROM ', ${table('_deletes')}, N')'`
        : `N'CAST(0 AS BIGINT)'`;
  // The manifest last: written only after the data (and deletes) CETAS succeeded, it publishes the run's output.
  texts.push(
    `CONCAT(N'CREATE EXTERNAL TABLE ', ${table('_manifest')}, N' WITH (LOCATION = N''', ${location(`_manifests/${out}`)}, N''', DATA_SOURCE = [ferry_warehouse], FILE_FORMAT = [ferry_parquet]) AS SELECT N''', REPLACE(@run_id, N'''', N''''''), N''' AS [run_id], N''', REPLACE(@window_name, N'''', N''''''), N''' AS [window_name], (SELECT COUNT_BIG(*) FROM ', ${table('')}, N' WHERE [IsDelete] = 0) AS [rows_written], ', ${deleted}, N' AS [rows_deleted]')`,
  );
  texts.push(`CONCAT(N'SELECT [rows_written], [rows_deleted] FROM ', ${table('_manifest')})`);
  // The external tables are only names for the files; dropping them keeps the Parquet and frees the names.
  texts.push(`CONCAT(N'DROP EXTERNAL TABLE ', ${table('')})`);
  if (input.deletes === 'separate-file') texts.push(`CONCAT(N'DROP EXTERNAL TABLE ', ${table('_deletes')})`);
  texts.push(`CONCAT(N'DROP EXTERNAL TABLE ', ${table('_manifest')})`);
  const countAt = texts.findIndex((t) => t.startsWith(`CONCAT(N'SELECT [rows_written]`));
  texts.forEach((text, i) => {
    // A table no model.json describes writes nothing (and reports 0 rows).
    const none =
      i === countAt ? `N'SELECT CAST(0 AS BIGINT) AS [rows_written], CAST(0 AS BIGINT) AS [rows_deleted]'` : `N''`;
    statements.push(`DECLARE @sql${i + 1} NVARCHAR(MAX) = CASE WHEN @rows IS NULL THEN ${none} ELSE ${text} END`);
    statements.push(`EXEC(@sql${i + 1})`);
  });
  return statements;
}

/**
 * A `CONCAT(...)` building `text`, with each token replaced by a variable whose quotes are doubled (the values sit
 * inside string literals of the built statement).
 */
function dynamicText(text: string, vars: Record<string, string>): string {
  const tokens = Object.keys(vars);
  const pieces: string[] = [];
  let rest = text;
  for (;;) {
    let at = -1;
    let token = '';
    for (const t of tokens) {
      const i = rest.indexOf(t);
      if (i >= 0 && (at < 0 || i < at)) {
        at = i;
        token = t;
      }
    }
    if (at < 0) break;
    if (at > 0) pieces.push(tsqlLiteral(rest.slice(0, at)));
    pieces.push(`REPLACE(${vars[token]}, N'''', N'''''')`);
    rest = rest.slice(at + token.length);
  }
  if (rest) pieces.push(tsqlLiteral(rest));
  return pieces.length === 1 ? pieces[0]! : `CONCAT(${pieces.join(', ')})`;
}
