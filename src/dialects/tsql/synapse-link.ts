import { tsqlIdent, tsqlLiteral } from './staging.js';

/*
 * Reading Synapse Link exports in serverless SQL: OPENROWSET over the CSV timestamp folders or the Delta table, from
 * the data source `ferry_synapse_link` (sql/tsql/setup/serverless.sql). The DuckDB readers of the same exports are
 * in src/dialects/duckdb/synapse-link.ts.
 */

/**
 * The rows `r` of `table` in a window, and the window condition. Delta: the table's current version, columns bound
 * by name, no condition (the pipeline's window is a table version: rows the Synapse Link Spark job merges late with
 * an earlier `SinkModifiedOn` must not be skipped). CSV here binds by ordinal in `columns` order, right only for a folder whose `model.json`
 * has that order: the extract binds each folder by its own `model.json` ({@link synapseLinkModelColumns}).
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
    where: '1 = 1',
  };
}

/**
 * How each CDM `dataType` of a `model.json` column is typed from its CSV text (`{v}`), as the local reader types
 * it: GUIDs as lower-case text, whole numbers BIGINT, decimals DECIMAL(p,s) from the column's numeric shape (38,10
 * without one), booleans BIT, date-times DATETIME2 in UTC (`M/d/yyyy h:mm:ss tt` for SinkCreatedOn/SinkModifiedOn,
 * ISO 8601 otherwise — learn.microsoft.com/power-apps/maker/data-platform/export-data-lake-faq); a value that does
 * not parse is NULL. Anything else stays text.
 */
const CDM_CONVERSIONS: readonly (readonly [string, string])[] = [
  ['guid', 'LOWER(CONVERT(NVARCHAR(36), TRY_CONVERT(UNIQUEIDENTIFIER, {v})))'],
  ['int64', 'TRY_CONVERT(BIGINT, {v})'],
  ['double', 'TRY_CONVERT(FLOAT, {v})'],
  [
    'boolean',
    "CAST(CASE LOWER({v}) WHEN N'true' THEN 1 WHEN N'1' THEN 1 WHEN N'false' THEN 0 WHEN N'0' THEN 0 END AS BIT)",
  ],
  [
    'dateTime',
    "CASE WHEN {v} LIKE N'%/%' THEN TRY_CONVERT(DATETIME2(7), {v}, 101) ELSE CONVERT(DATETIME2(7), SWITCHOFFSET(TRY_CONVERT(DATETIMEOFFSET(7), {v}, 127), N'+00:00')) END",
  ],
  [
    'dateTimeOffset',
    "CASE WHEN {v} LIKE N'%/%' THEN TRY_CONVERT(DATETIME2(7), {v}, 101) ELSE CONVERT(DATETIME2(7), SWITCHOFFSET(TRY_CONVERT(DATETIMEOFFSET(7), {v}, 127), N'+00:00')) END",
  ],
  ['date', "CASE WHEN {v} LIKE N'%/%' THEN TRY_CONVERT(DATE, {v}, 101) ELSE TRY_CONVERT(DATE, {v}, 23) END"],
  ['time', 'TRY_CONVERT(TIME(7), {v})'],
];

/**
 * Statements that read the `model.json` of each timestamp folder in the window (`filepath(1)` after
 * `@window_start`, before `@window_end`; the JSON document read whole as one CSV field, as
 * learn.microsoft.com/azure/synapse-analytics/sql/query-json-files does) and set:
 * - `@rows`: one `SELECT` per folder that exported `table` (its entity lists partitions), `OPENROWSET` over
 *   `<folder>/<table>/*.csv` with a `WITH` clause binding that folder's own columns by ordinal, projecting the union
 *   of the window's columns typed by their CDM type (NULL where the folder lacks one), plus `[__folder]`; joined by
 *   `UNION ALL`. When no folder of the window exported the table: no rows, with the root `model.json`'s columns
 *   (NULL only when that does not describe the table either);
 * - `@latest_columns` (`x.[c], …`, IsDelete false when empty) and `@columns` (`l.[c], …`): the union in order of
 *   first appearance — a column a later folder adds comes last — each typed as the newest folder declares it.
 */
export function synapseLinkModelColumns(table: string): string[] {
  const conversion = `CASE u.[data_type] ${CDM_CONVERSIONS.map(([t, c]) => `WHEN ${tsqlLiteral(t)} THEN ${tsqlLiteral(c)}`).join(' ')} WHEN N'decimal' THEN CONCAT(N'TRY_CONVERT(DECIMAL(', u.[p], N', ', u.[s], N'), {v})') ELSE N'{v}' END`;
  const quoted = (text: string) => `REPLACE(${text}, N'''', N'''''')`;
  const csvPath = quoted(`CONCAT(f.[folder], N'/', ${tsqlLiteral(table)}, N'/*.csv')`);
  const json = `DATA_SOURCE = 'ferry_synapse_link', FORMAT = 'CSV', FIELDTERMINATOR = '0x0b', FIELDQUOTE = '0x0b', ROWTERMINATOR = '0x0b') WITH ([doc] NVARCHAR(MAX)) AS m`;
  const plan = (root: boolean) => {
    // Root: only when no folder of the window exported the table — no rows, the root model.json's columns (as the
    // local reader takes them), so the output and a custom extract still have their columns.
    const models = root
      ? `SELECT N'' AS [folder], m.[doc] FROM OPENROWSET(BULK 'model.json', ${json} WHERE @rows IS NULL`
      : `SELECT m.filepath(1) AS [folder], m.[doc] FROM OPENROWSET(BULK '*/model.json', ${json} WHERE m.filepath(1) > @window_start AND m.filepath(1) < @window_end`;
    const exported = root ? '' : ` AND JSON_VALUE(e.[value], '$.partitions[0].name') IS NOT NULL`;
    const source = root
      ? `N'CAST(NULL AS NVARCHAR(4000))'`
      : `COALESCE(N'r.' + QUOTENAME(a.[name]), N'CAST(NULL AS NVARCHAR(4000))')`;
    const from = root
      ? `N', CAST(NULL AS NVARCHAR(400)) AS [__folder] WHERE 1 = 0'`
      : `N', N''', ${quoted('f.[folder]')}, N''' AS [__folder] FROM OPENROWSET(BULK N''', ${csvPath}, N''', DATA_SOURCE = ''ferry_synapse_link'', FORMAT = ''CSV'', PARSER_VERSION = ''1.0'', FIELDQUOTE = ''"'') WITH (', (SELECT STRING_AGG(CAST(CONCAT(QUOTENAME(a2.[name]), N' NVARCHAR(4000) ', a2.[ordinal]) AS NVARCHAR(MAX)), N', ') WITHIN GROUP (ORDER BY a2.[ordinal]) FROM [a] AS a2 WHERE a2.[folder] = f.[folder]), N') AS r'`;
    const set = (name: string, value: string) =>
      root ? `${name} = COALESCE(${name}, ${value})` : `${name} = ${value}`;
    return [
      `WITH [m] AS (${models})`,
      `, [a] AS (SELECT m.[folder], CAST(c.[key] AS INT) + 1 AS [ordinal], JSON_VALUE(c.[value], '$.name') AS [name], JSON_VALUE(c.[value], '$.dataType') AS [data_type], s.[precision], s.[scale] FROM [m] CROSS APPLY OPENJSON(m.[doc], '$.entities') AS e CROSS APPLY OPENJSON(e.[value], '$.attributes') AS c OUTER APPLY (SELECT MAX(CASE WHEN JSON_VALUE(g.[value], '$.name') = N'precision' THEN TRY_CONVERT(INT, JSON_VALUE(g.[value], '$.value')) END) AS [precision], MAX(CASE WHEN JSON_VALUE(g.[value], '$.name') = N'scale' THEN TRY_CONVERT(INT, JSON_VALUE(g.[value], '$.value')) END) AS [scale] FROM OPENJSON(c.[value], '$."cdm:traits"') AS t CROSS APPLY OPENJSON(t.[value], '$.arguments') AS g WHERE JSON_VALUE(t.[value], '$.traitReference') = N'is.dataFormat.numeric.shaped') AS s WHERE LOWER(JSON_VALUE(e.[value], '$.name')) = ${tsqlLiteral(table.toLowerCase())}${exported})`,
      // The union: first appearance (folder, ordinal) orders it; the newest folder's definition types it.
      `, [u] AS (SELECT x.[name], x.[data_type], x.[first_seen], CASE WHEN ISNULL(x.[precision], 38) > 38 THEN 38 ELSE ISNULL(x.[precision], 38) END AS [p], ISNULL(x.[scale], CASE WHEN x.[precision] IS NULL THEN 10 ELSE 0 END) AS [s] FROM (SELECT a.*, ROW_NUMBER() OVER (PARTITION BY LOWER(a.[name]) ORDER BY a.[folder] DESC) AS [newest], FIRST_VALUE(CONCAT(a.[folder], N'|', RIGHT(CONCAT(N'000000', a.[ordinal]), 6))) OVER (PARTITION BY LOWER(a.[name]) ORDER BY a.[folder] ROWS UNBOUNDED PRECEDING) AS [first_seen] FROM [a]) AS x WHERE x.[newest] = 1)`,
      `, [t] AS (SELECT u.[name], u.[first_seen], ${conversion} AS [conversion] FROM [u])`,
      // One SELECT per folder (aggregates cannot hold subqueries, so each folder's text is built first).
      `, [parts] AS (SELECT f.[folder], CONCAT(N'SELECT ', (SELECT STRING_AGG(CAST(CONCAT(REPLACE(t.[conversion], N'{v}', ${source}), N' AS ', QUOTENAME(t.[name])) AS NVARCHAR(MAX)), N', ') WITHIN GROUP (ORDER BY t.[first_seen]) FROM [t] LEFT JOIN [a] ON a.[folder] = f.[folder] AND LOWER(a.[name]) = LOWER(t.[name])), ${from}) AS [part] FROM (SELECT DISTINCT a.[folder] FROM [a]) AS f)`,
      `SELECT ${set('@rows', `(SELECT STRING_AGG(CAST(p.[part] AS NVARCHAR(MAX)), N' UNION ALL ') WITHIN GROUP (ORDER BY p.[folder]) FROM [parts] AS p)`)}, ${set('@latest_columns', `(SELECT STRING_AGG(CAST(CASE WHEN LOWER(t.[name]) = N'isdelete' THEN N'ISNULL(x.[IsDelete], CAST(0 AS BIT)) AS [IsDelete]' ELSE N'x.' + QUOTENAME(t.[name]) END AS NVARCHAR(MAX)), N', ') WITHIN GROUP (ORDER BY t.[first_seen]) FROM [t])`)}, ${set('@columns', `(SELECT STRING_AGG(CAST(N'l.' + QUOTENAME(t.[name]) AS NVARCHAR(MAX)), N', ') WITHIN GROUP (ORDER BY t.[first_seen]) FROM [t])`)}`,
    ].join(' ');
  };
  return [
    'DECLARE @rows NVARCHAR(MAX), @latest_columns NVARCHAR(MAX), @columns NVARCHAR(MAX)',
    plan(false),
    plan(true),
  ];
}
