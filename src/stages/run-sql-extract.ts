import fs from 'node:fs/promises';
import path from 'node:path';
import { FerryError, UsageError } from '../core/errors.js';
import type { StageSpec } from '../core/pipeline.js';
import type { StageContext, StageImpl } from '../core/stage.js';
import { duckIdent } from '../dialects/duckdb/driver.js';
import { defaultExtractSql, latestViewName } from '../dialects/duckdb/extract.js';
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
