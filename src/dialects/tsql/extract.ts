import type { ExtractInput } from '../sql-steps.js';
import { tsqlIdent, tsqlLiteral } from './staging.js';
import { synapseLinkRows } from './synapse-link.js';

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
  // Window values enter as the Script parameters @window_start / @window_end. CETAS takes no variables in its
  // LOCATION, so each CETAS is built as text and run with EXEC(); the tokens below mark where the values go.
  const START = '\u0001start\u0001';
  const END = '\u0001end\u0001';
  const TAG = '\u0001tag\u0001';
  const { from, where } = synapseLinkRows(input.format, t, columns, START, END);
  const deleted = `CASE WHEN LOWER(CAST(x.[IsDelete] AS NVARCHAR(10))) IN (N'true', N'1') THEN 1 ELSE 0 END`;
  // The local default extract's rule: a delete row without a versionnumber ranks above every version (some exports
  // write only Id and the Sink columns for a delete; NULLs sort last in DESC, so it would lose to an older version),
  // then the highest version, then the later timestamp folder.
  const versionless = `CASE WHEN NULLIF(CAST(r.[versionnumber] AS NVARCHAR(40)), N'') IS NULL AND LOWER(CAST(r.[IsDelete] AS NVARCHAR(10))) IN (N'true', N'1') THEN 1 ELSE 0 END DESC`;
  const order = [versionless, 'TRY_CONVERT(BIGINT, r.[versionnumber]) DESC'];
  if (input.format === 'csv') order.push('r.filepath(1) DESC');
  const latest = `SELECT x.*, ${deleted} AS [__deleted] FROM (SELECT r.*, ROW_NUMBER() OVER (PARTITION BY r.[Id] ORDER BY ${order.join(', ')}) AS [__rn] FROM ${from} WHERE ${where}) AS x WHERE x.[__rn] = 1`;
  const custom = input.customSelect
    ?.trim()
    .replace(/;$/, '')
    .replaceAll('{window_start}', START)
    .replaceAll('{window_end}', END);
  const select = custom
    ? `WITH src AS (${latest}) ${custom}`
    : `SELECT ${columns
        .filter((c) => c !== 'IsDelete')
        .map((c) => `l.${tsqlIdent(c)}`)
        .join(
          ', ',
        )}${input.deletes === 'flag-column' ? ', l.[__deleted]' : ''} FROM (${latest}) AS l${input.deletes === 'flag-column' ? '' : ' WHERE l.[__deleted] = 0'}`;
  const cetas = (name: string, folder: string, body: string) =>
    `CREATE EXTERNAL TABLE [ferry_out].[${name}_${TAG}] WITH (LOCATION = N'${folder}', DATA_SOURCE = [ferry_warehouse], FILE_FORMAT = [ferry_parquet]) AS ${body}`;
  const texts = [cetas(out, `${out}/${END}/`, select)];
  if (input.deletes === 'separate-file') {
    texts.push(
      cetas(
        `${out}_deletes`,
        `${out}/${END}/deletes/`,
        `SELECT l.[Id], l.[versionnumber] FROM (${latest}) AS l WHERE l.[__deleted] = 1`,
      ),
    );
  }
  // The external table is only a name for the files; dropping it keeps the Parquet and frees the name.
  const drops = [`DROP EXTERNAL TABLE [ferry_out].[${out}_${TAG}]`];
  if (input.deletes === 'separate-file') drops.push(`DROP EXTERNAL TABLE [ferry_out].[${out}_deletes_${TAG}]`);
  const statements = [
    `DECLARE @window_tag NVARCHAR(64) = REPLACE(REPLACE(REPLACE(@window_end, N'-', N''), N':', N''), N'.', N'')`,
  ];
  [...texts, ...drops].forEach((text, i) => {
    statements.push(
      `DECLARE @sql${i + 1} NVARCHAR(MAX) = ${dynamicText(text, { [START]: '@window_start', [END]: '@window_end', [TAG]: '@window_tag' })}`,
    );
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
  return `CONCAT(${pieces.join(', ')})`;
}
