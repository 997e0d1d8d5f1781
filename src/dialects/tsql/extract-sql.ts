import { tsqlIdent, tsqlLiteral } from './tsql-statements.js';

/** What an outbound extract compiles from. */
export interface ExtractInput {
  readonly table: string;
  /** Warehouse folder (and external table) name. Default: the table. */
  readonly output?: string;
  /** Attributes in metadata order; Synapse Link's CSV columns are bound by position in this order. */
  readonly metadata: { readonly Attributes: readonly { readonly LogicalName: string }[] };
  readonly format: 'csv' | 'delta';
  /** The Synapse Link folder of the pipeline (informational; the data source points at the container). */
  readonly synapseLinkFolder: string;
  readonly deletes: 'flag-column' | 'separate-file' | 'drop';
  /** A hand-written T-SQL SELECT reading from the relation `src` (deduplicated latest rows). */
  readonly customSelect?: string;
}

const SYSTEM_HEAD = ['Id', 'SinkCreatedOn', 'SinkModifiedOn'];
const SYSTEM_TAIL = ['versionnumber', 'createdon', 'modifiedon', 'IsDelete'];

/**
 * Serverless SQL for one table and window: `OPENROWSET` over the Synapse Link CSV timestamp folders (or the Delta
 * table), the latest `versionnumber` per `Id`, deletes flagged or dropped, written by CETAS into a fresh folder
 * named after the window end (CETAS never overwrites, so a window is written once). `@{...}` are pipeline expressions.
 */
export function compileExtract(input: ExtractInput): string[] {
  const t = input.table;
  const out = input.output ?? t;
  const attrs = input.metadata.Attributes.map((a) => String(a.LogicalName)).filter(
    (n) => !SYSTEM_HEAD.includes(n) && !SYSTEM_TAIL.includes(n),
  );
  const columns = [...SYSTEM_HEAD, ...attrs, ...SYSTEM_TAIL];
  const windowTag = `@{replace(replace(replace(variables('windowEnd'), '-', ''), ':', ''), '.', '')}`;
  const external = tsqlIdent(`${out}_${windowTag}`);
  let from: string;
  let where: string;
  if (input.format === 'csv') {
    // Headerless CSV bound by ordinal; the timestamp folder (filepath(1)) selects the window: after the watermark,
    // before the folder Synapse Link is still writing (or up to the requested window end).
    const withList = columns.map((c, i) => `${tsqlIdent(c)} NVARCHAR(4000) ${i + 1}`).join(', ');
    from = `OPENROWSET(BULK ${tsqlLiteral(`*/${t}/*.csv`)}, DATA_SOURCE = 'ferry_synapse_link', FORMAT = 'CSV', PARSER_VERSION = '1.0', FIELDQUOTE = '"') WITH (${withList}) AS r`;
    where = `r.filepath(1) > N'@{variables('windowStart')}' AND r.filepath(1) < N'@{variables('windowEnd')}'`;
  } else {
    from = `OPENROWSET(BULK ${tsqlLiteral(`deltalake/${t}_partitioned/`)}, DATA_SOURCE = 'ferry_synapse_link', FORMAT = 'DELTA') AS r`;
    where = `(N'@{variables('windowStart')}' = N'' OR r.[SinkModifiedOn] > N'@{variables('windowStart')}') AND r.[SinkModifiedOn] <= N'@{variables('windowEnd')}'`;
  }
  const deleted = `CASE WHEN LOWER(CAST(x.[IsDelete] AS NVARCHAR(10))) IN (N'true', N'1') THEN 1 ELSE 0 END`;
  const latest = `SELECT x.*, ${deleted} AS [__deleted] FROM (SELECT r.*, ROW_NUMBER() OVER (PARTITION BY r.[Id] ORDER BY TRY_CONVERT(BIGINT, r.[versionnumber]) DESC) AS [__rn] FROM ${from} WHERE ${where}) AS x WHERE x.[__rn] = 1`;
  const select = input.customSelect
    ? `WITH src AS (${latest}) ${input.customSelect.trim().replace(/;$/, '')}`
    : `SELECT ${columns
        .filter((c) => c !== 'IsDelete')
        .map((c) => `l.${tsqlIdent(c)}`)
        .join(
          ', ',
        )}${input.deletes === 'flag-column' ? ', l.[__deleted]' : ''} FROM (${latest}) AS l${input.deletes === 'flag-column' ? '' : ' WHERE l.[__deleted] = 0'}`;
  const statements = [
    `CREATE EXTERNAL TABLE [ferry_out].${external} WITH (LOCATION = ${windowLocation(`${out}/`, '/')}, DATA_SOURCE = [ferry_warehouse], FILE_FORMAT = [ferry_parquet]) AS ${select}`,
  ];
  if (input.deletes === 'separate-file') {
    statements.push(
      `CREATE EXTERNAL TABLE [ferry_out].${tsqlIdent(`${out}_deletes_${windowTag}`)} WITH (LOCATION = ${windowLocation(`${out}/`, '/deletes/')}, DATA_SOURCE = [ferry_warehouse], FILE_FORMAT = [ferry_parquet]) AS SELECT l.[Id], l.[versionnumber] FROM (${latest}) AS l WHERE l.[__deleted] = 1`,
    );
  }
  // The external table is only a name for the files; dropping it keeps the Parquet and frees the name.
  statements.push(`DROP EXTERNAL TABLE [ferry_out].${external}`);
  if (input.deletes === 'separate-file')
    statements.push(`DROP EXTERNAL TABLE [ferry_out].${tsqlIdent(`${out}_deletes_${windowTag}`)}`);
  return statements;
}

/**
 * `N'<prefix>@{variables('windowEnd')}<suffix>'`: the quotes inside the pipeline expression must stay single (the
 * expression is replaced before SQL sees the text), so this literal is built by hand; table names carry no quotes.
 */
function windowLocation(prefix: string, suffix: string): string {
  return `N'${prefix.replaceAll("'", "''")}@{variables('windowEnd')}${suffix}'`;
}
