import { FerryError } from '../../core/errors.js';
import type { ExtractInput } from '../sql-steps.js';
import { duckIdent } from './driver.js';
import { synapseLinkRelation } from './synapse-link.js';

/**
 * The default extract: Synapse Link append-only rows reduced to the latest state per `Id` — highest
 * `versionnumber`, then latest `SinkModifiedOn` (retries duplicate version numbers, per the Synapse Link FAQ),
 * then the later folder and file. `IsDelete` is normalised to true/false so the writer can route deletes.
 * It picks the winning `rowid` per `Id` with `arg_max` (a hash aggregate over a few columns, cheaper than a window
 * over whole rows) and keeps the staged order (folder, file, line), so the output order is deterministic.
 */
export function defaultExtractSql(stagedTable: string, columns: readonly string[]): string {
  const has = (c: string) => columns.some((x) => x.toLowerCase() === c.toLowerCase());
  const name = (c: string) => duckIdent(columns.find((x) => x.toLowerCase() === c.toLowerCase()) ?? c);
  if (!has('Id')) {
    throw new FerryError(
      'extract.no_id',
      `Staged table \`${stagedTable}\` has no \`Id\` column; the default extract needs it. Write a custom query instead.`,
    );
  }
  // CSV staging keeps `__file_id` (folder then file order); Delta staging keeps `__folder`/`__source_file`.
  const order = [
    // A delete row without a versionnumber (some exports write only Id and the Sink columns) must not lose to an
    // older version of the row, or the delete is lost (FT#440): it ranks above every version.
    has('versionnumber')
      ? has('IsDelete')
        ? `CASE WHEN ${name('versionnumber')} IS NULL AND ${name('IsDelete')} THEN 9223372036854775807 ELSE coalesce(${name('versionnumber')}, -9223372036854775808) END`
        : `coalesce(${name('versionnumber')}, -9223372036854775808)`
      : null,
    has('SinkModifiedOn') ? `coalesce(${name('SinkModifiedOn')}, '-infinity'::TIMESTAMPTZ)` : null,
    has('__file_id') ? 'coalesce(__file_id, 0)' : null,
    has('__folder') ? `coalesce(__folder, '')` : null,
    has('__source_file') ? `coalesce(__source_file, '')` : null,
  ].filter(Boolean);
  const internal = columns.filter((c) => c.startsWith('__'));
  const exclude = internal.length ? ` EXCLUDE (${internal.map(duckIdent).join(', ')})` : '';
  const replace = has('IsDelete') ? ` REPLACE (coalesce(${name('IsDelete')}, false) AS ${name('IsDelete')})` : '';
  const t = duckIdent(stagedTable);
  if (!has('__folder') && !has('__source_file')) {
    // CSV staging: the ranking packed into one HUGEINT (version in the high 64 bits, then SinkModifiedOn in
    // milliseconds and the file number), so the aggregate keeps a scalar per Id and the winners are fetched with a
    // SEMI JOIN: both spill to disk in DuckDB, where `arg_max(rowid, (struct))` and `rowid IN (...)` run out of memory
    // at ten million rows. Milliseconds are SinkModifiedOn's precision in the exports; a tie below that is decided by
    // the later file, as an exact tie always was.
    const version = has('versionnumber') ? order[0] : '0';
    const sink = has('SinkModifiedOn') ? `greatest(coalesce(epoch_ms(${name('SinkModifiedOn')}), 0), 0)` : '0';
    const file = has('__file_id') ? 'coalesce(__file_id, 0)' : '0';
    const rank = `(${version})::HUGEINT * 18446744073709551616 + (${sink})::HUGEINT * 65536 + (${file})`;
    return `SELECT *${exclude}${replace} FROM ${t}
SEMI JOIN (SELECT arg_max(rowid, ${rank}) AS __winner FROM ${t} GROUP BY ${name('Id')}) ON ${t}.rowid = __winner`;
  }
  return `SELECT *${exclude}${replace} FROM ${t}
WHERE rowid IN (SELECT arg_max(rowid, (${order.join(', ')})) FROM ${t} GROUP BY ${name('Id')})`;
}

/** The view custom extract queries read for the latest state of `table` (see {@link defaultExtractSql}). */
export function latestViewName(table: string): string {
  return `${table}_latest`;
}

const SYSTEM_HEAD = ['Id', 'SinkCreatedOn', 'SinkModifiedOn'];
const SYSTEM_TAIL = ['versionnumber', 'createdon', 'modifiedon', 'IsDelete'];

/**
 * The Synapse export's extract step for DuckDB: the same window, latest-row rule and outputs as the T-SQL
 * (serverless SQL) rendering, reading the relation {@link synapseLinkRelation} instead of OPENROWSET — CSV: the
 * window's folders, each bound and typed by its own `model.json`, plus `__folder`; the runtime provides it — and
 * writing Parquet with `COPY … TO $location` (a folder that must not hold data yet, as CETAS refuses one) instead
 * of CETAS. A custom extract runs its DuckDB query (the local runner's) over `<table>_latest`; it must return
 * `IsDelete`. Deletes go to `$location_deletes` with `deletes: 'separate-file'` (a folder outside the data
 * folder, with the data's columns). Parameters: `$window_start`, `$window_end`, `$location` (and
 * `$location_deletes`), `$location_manifest` (written last: one row `run_id`, `window_name`, `rows_written`,
 * `rows_deleted`; the output is published once it exists), `$run_id`, `$window_name`. The last query returns
 * `rows_written` and `rows_deleted`.
 */
export function synapseExtractSql(input: ExtractInput): string[] {
  const r = duckIdent(synapseLinkRelation(input.table));
  const col = (c: string) => `r.${duckIdent(c)}`;
  const where =
    input.format === 'csv'
      ? 'r.__folder > $window_start AND r.__folder < $window_end'
      : // Delta: the table's current version, whole (the window is a version, as in the T-SQL rendering).
        'true';
  // The T-SQL rendering's rule (the local default extract's): a delete without a versionnumber ranks first, then
  // the highest version, then the latest SinkModifiedOn (retries repeat version numbers), then the later folder.
  const order = [
    `CASE WHEN ${col('versionnumber')} IS NULL AND coalesce(${col('IsDelete')}, false) THEN 1 ELSE 0 END DESC`,
    `${col('versionnumber')} DESC NULLS LAST`,
    `${col('SinkModifiedOn')} DESC NULLS LAST`,
    ...(input.format === 'csv' ? ['r.__folder DESC'] : []),
  ];
  const latest = `SELECT x.* EXCLUDE (__rn) REPLACE (coalesce(x."IsDelete", false) AS "IsDelete") FROM (SELECT r.*, row_number() OVER (PARTITION BY ${col('Id')} ORDER BY ${order.join(', ')}) AS __rn FROM ${r} r WHERE ${where}) x WHERE x.__rn = 1`;
  let select: string;
  if (input.duckdbSelect) select = input.duckdbSelect.trim().replace(/;$/, '');
  else if (input.format === 'csv') select = `SELECT l.* EXCLUDE (__folder) FROM (${latest}) l`;
  else {
    const attrs = input.metadata.Attributes.map((a) => String(a.LogicalName)).filter(
      (n) => !SYSTEM_HEAD.includes(n) && !SYSTEM_TAIL.includes(n),
    );
    select = `SELECT ${[...SYSTEM_HEAD, ...attrs, ...SYSTEM_TAIL].map((c) => `l.${duckIdent(c)}`).join(', ')} FROM (${latest}) l`;
  }
  const out = `__extract_${input.output ?? input.table}`;
  const statements = input.duckdbSelect
    ? [
        `CREATE OR REPLACE TEMP VIEW ${duckIdent(latestViewName(input.table))} AS SELECT l.* EXCLUDE (__folder) FROM (${latest}) l`,
      ]
    : [];
  const copy = (filter: string, location: string) =>
    `COPY (SELECT * FROM ${duckIdent(out)} WHERE ${filter}) TO ${location} (FORMAT PARQUET, PER_THREAD_OUTPUT true)`;
  const deleted = 'coalesce("IsDelete", false)';
  statements.push(`CREATE OR REPLACE TEMP TABLE ${duckIdent(out)} AS ${select}`);
  statements.push(copy(input.deletes === 'flag-column' ? 'true' : `NOT ${deleted}`, '$location'));
  if (input.deletes === 'separate-file') statements.push(copy(deleted, '$location_deletes'));
  const counts = `SELECT count(*) FILTER (WHERE NOT ${deleted}) AS rows_written, ${input.deletes === 'drop' ? '0' : `count(*) FILTER (WHERE ${deleted})`} AS rows_deleted FROM ${duckIdent(out)}`;
  // The manifest last: the run's output is published once it exists.
  statements.push(
    `COPY (SELECT $run_id AS run_id, $window_name AS window_name, c.rows_written, c.rows_deleted FROM (${counts}) c) TO $location_manifest (FORMAT PARQUET, PER_THREAD_OUTPUT true)`,
  );
  statements.push(counts);
  statements.push(`DROP TABLE ${duckIdent(out)}`);
  return statements;
}
