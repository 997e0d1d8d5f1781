import fs from 'node:fs/promises';
import path from 'node:path';
import { FerryError, UsageError } from '../core/errors.js';
import type { StageSpec } from '../core/pipeline.js';
import type { StageContext, StageImpl } from '../core/stage.js';
import { duckIdent } from '../dialects/duckdb/driver.js';
import { type StagedSynapseLink, SYNAPSE_LINK_SHARED_KEY } from './read-synapse-link.js';

/** The `run-sql-extract` stage spec (plain data). */
export interface RunSqlExtractSpec extends StageSpec {
  readonly kind: 'run-sql-extract';
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

/** `ctx.shared` key listing the extract results for the writer: {@link ExtractResult}[]. */
export const EXTRACT_SHARED_KEY = 'extracts';

/** One extract result handed to the writer. */
export interface ExtractResult {
  readonly output: string;
  readonly table: string;
  /** Staging table holding the result. */
  readonly relation: string;
  readonly deleteColumn: string | null;
  readonly sourceFolders: readonly string[];
  /** True when the relation's row order is deterministic (the default extract), so the writer need not sort. */
  readonly ordered: boolean;
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
    kind: 'run-sql-extract',
    table: options.table,
    query,
    ...(options.output ? { output: options.output } : {}),
    ...(options.deleteColumn ? { deleteColumn: options.deleteColumn } : {}),
  };
}

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

/** Runs the extract; see {@link runSqlExtract}. */
export const runSqlExtractStage: StageImpl<RunSqlExtractSpec> = {
  kind: 'run-sql-extract',
  async run(spec, ctx) {
    const staged = ctx.shared.get(SYNAPSE_LINK_SHARED_KEY) as StagedSynapseLink | undefined;
    if (!staged) {
      throw new FerryError(
        'extract.nothing_staged',
        `Stage \`run-sql-extract\` for \`${spec.table}\` found nothing staged; put \`readSynapseLink\` before it in the pipeline.`,
      );
    }
    const table = staged.tables.find((t) => t.table === spec.table);
    if (!table) {
      ctx.log.debug(`Extract of \`${spec.table}\` skipped: the window did not stage it.`);
      return;
    }
    const output = spec.output ?? spec.table;
    const relation = `__extract_${output}`;
    const latest = defaultExtractSql(
      table.stagedTable,
      (await describe(ctx, table.stagedTable)).map((c) => c.name),
    );
    // Custom queries read `<table>_latest`: the default extract's latest-row rule (a delete without a
    // versionnumber wins), so a custom query reduces versions exactly as the default one does.
    if (spec.query !== 'default') {
      await ctx.staging.run(`CREATE OR REPLACE VIEW ${duckIdent(latestViewName(spec.table))} AS ${latest}`);
    }
    const sql = spec.query === 'default' ? latest : await readQuery(spec.query);
    let columns: Array<{ name: string; type: string }>;
    try {
      // A view: the writer's COPY runs it once per file, so the result is never held in memory as a whole.
      await ctx.staging.run(`CREATE OR REPLACE VIEW ${duckIdent(relation)} AS ${sql}`);
      columns = await describe(ctx, relation);
    } catch (error) {
      // Out of memory is the staging engine's limit, not the query's fault: its error names the setting.
      if (error instanceof FerryError && error.code === 'staging.out_of_memory') throw error;
      const where = spec.query === 'default' ? 'the default extract' : `\`${spec.query}\``;
      throw new FerryError(
        'extract.sql',
        `Extract query ${where} for \`${spec.table}\` failed: ${(error as Error).message.split('\n')[0]}. Fix the query; the window will be repeated.`,
        { cause: error },
      );
    }
    const wanted = spec.deleteColumn ?? 'IsDelete';
    const del = columns.find((c) => c.name.toLowerCase() === wanted.toLowerCase());
    if (del && del.type !== 'BOOLEAN') {
      throw new FerryError(
        'extract.delete_column',
        `Extract \`${output}\` column \`${del.name}\` is \`${del.type}\`, not BOOLEAN; the writer routes deletes on it. Cast it in the query.`,
      );
    }
    const results = (ctx.shared.get(EXTRACT_SHARED_KEY) as ExtractResult[] | undefined) ?? [];
    ctx.shared.set(EXTRACT_SHARED_KEY, [
      ...results.filter((r) => r.output !== output),
      {
        output,
        table: spec.table,
        relation,
        deleteColumn: del?.name ?? null,
        sourceFolders: table.sourceFolders,
        ordered: spec.query === 'default',
      },
    ]);
  },
};

async function describe(ctx: StageContext, relation: string): Promise<Array<{ name: string; type: string }>> {
  const rows = await ctx.staging.all<{ column_name: string; column_type: string }>(`DESCRIBE ${duckIdent(relation)}`);
  return rows.map((r) => ({ name: r.column_name, type: r.column_type }));
}

// A custom query is one SELECT (optionally with CTEs); a trailing semicolon is allowed.
async function readQuery(file: string): Promise<string> {
  let text: string;
  try {
    text = await fs.readFile(path.resolve(file), 'utf8');
  } catch (error) {
    throw new UsageError(
      `Extract query file \`${file}\` cannot be read (${(error as Error).message}); paths are relative to the project root.`,
    );
  }
  const sql = text.replace(/;\s*$/, '').trim();
  if (!/^(select|with|from)\b/i.test(sql.replace(/^(--[^\n]*\n|\s)+/, ''))) {
    throw new UsageError(`Extract query file \`${file}\` must hold one SELECT (or WITH ... SELECT) statement.`);
  }
  return sql;
}
