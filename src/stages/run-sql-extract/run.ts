import fs from 'node:fs/promises';
import path from 'node:path';
import { FerryError, UsageError } from '../../core/errors.js';
import type { StageContext, StageImpl } from '../../core/stage.js';
import { duckIdent } from '../../dialects/duckdb/driver.js';
import { defaultExtractSql, latestViewName } from '../../dialects/duckdb/extract.js';
import { RUN_SQL_EXTRACT, type RunSqlExtractSpec } from './spec.js';

/** Runs the extract; see {@link runSqlExtract}. */
export const runSqlExtractStage: StageImpl<RunSqlExtractSpec> = {
  kind: RUN_SQL_EXTRACT,
  async run(spec, ctx) {
    const staged = ctx.handoff.synapseLink;
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
    // One result per output: a later extract of the same output replaces the earlier one.
    const extracts = ctx.handoff.extracts;
    const earlier = extracts.findIndex((r) => r.output === output);
    if (earlier >= 0) extracts.splice(earlier, 1);
    extracts.push({
      output,
      table: spec.table,
      relation,
      deleteColumn: del?.name ?? null,
      sourceFolders: table.sourceFolders,
      ordered: spec.query === 'default',
    });
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
