import fs from 'node:fs/promises';
import path from 'node:path';
import { FerryError } from '../core/errors.js';
import { killPoint } from '../core/kill-points.js';
import { lakeJoin } from '../core/lake.js';
import { asList, type ColumnSpec, isPerRowLookup, type LookupKeySpec } from '../core/mapping.js';
import type { PipelineDefinition, StageSpec } from '../core/pipeline.js';
import type { PlanContext, StageContext, StageImpl } from '../core/stage.js';
import { LINEAGE_COLUMNS, STAGING_TABLES } from '../core/staging-contract.js';
import { HELD_BACK_ITEMS, type RunWindow, type WindowItem } from '../core/window.js';
import { duckIdent, duckLiteral } from '../dialects/duckdb/driver.js';

export interface ReadParquetDeltasSpec extends StageSpec {
  readonly kind: 'read-parquet-deltas';
  /** Lake folder the delta files arrive in (searched recursively), e.g. `inbound/accounts`. */
  readonly folder: string;
  /** File names to take. Default `*.parquet`. */
  readonly pattern: string;
  /**
   * Source columns the pipeline needs. Default: every column the pipeline's convert stage reads. A file lacking one
   * is held back with a clear reject; extra columns are ignored with a warning.
   */
  readonly columns?: readonly string[];
}

/**
 * Discovers new Parquet delta files under a lake folder and makes them the `staged` view (read set-based by the
 * next stage), with lineage (run id, file, row number) on every row.
 *
 * @example
 * readParquetDeltas({ folder: 'inbound/accounts' })
 */
export function readParquetDeltas(options: {
  folder: string;
  pattern?: string;
  columns?: readonly string[];
}): ReadParquetDeltasSpec {
  return {
    kind: 'read-parquet-deltas',
    folder: options.folder,
    pattern: options.pattern ?? '*.parquet',
    ...(options.columns ? { columns: [...options.columns] } : {}),
  };
}

/** Compiles a `*`/`?` glob on file names into a RegExp. */
function globToRegExp(glob: string): RegExp {
  const body = glob
    .replace(/[.+^${}()|[\]\\]/g, '\\$&')
    .replaceAll('*', '.*')
    .replaceAll('?', '.');
  return new RegExp(`^${body}$`);
}

/**
 * The time of a delta file: a timestamp in its name (`2026-11-26T17-15-00Z`, `20261126T171500Z`, `2026-11-26T17:15:00Z`)
 * or, failing that, its modification time. Backfill ranges select on it.
 */
export function fileTimestamp(name: string, modifiedMs: number): string {
  const m = /(\d{4})-?(\d{2})-?(\d{2})[T_ ]?(\d{2})[-:.]?(\d{2})[-:.]?(\d{2})Z?/.exec(name);
  if (m) {
    const iso = `${m[1]}-${m[2]}-${m[3]}T${m[4]}:${m[5]}:${m[6]}Z`;
    if (!Number.isNaN(Date.parse(iso))) return iso;
  }
  return new Date(modifiedMs).toISOString();
}

/** The source columns a pipeline's convert stage reads (mapping `from`, `tableFrom`, `changeTimestamp`). */
export function sourceColumnsOf(pipeline: PipelineDefinition): string[] {
  const out = new Set<string>();
  for (const stage of pipeline.stages) {
    const spec = stage as unknown as { changeTimestamp?: string; columns?: Record<string, unknown> };
    if (stage.kind !== 'convert-to-dataverse' || !spec.columns) continue;
    if (spec.changeTimestamp) out.add(spec.changeTimestamp);
    for (const value of Object.values(spec.columns)) {
      if (typeof value === 'string') out.add(value);
      else if (value && typeof value === 'object') {
        const v = value as ColumnSpec;
        for (const c of asList(v.from)) out.add(c);
        if (v.lookup && isPerRowLookup(v.lookup)) {
          out.add(v.lookup.tableFrom);
          for (const key of Object.values(v.lookup.keys)) {
            if (key && typeof key === 'object' && !Array.isArray(key))
              for (const c of asList((key as LookupKeySpec).from)) out.add(c);
          }
        }
      }
    }
  }
  return [...out];
}

async function plan(spec: ReadParquetDeltasSpec, ctx: PlanContext): Promise<RunWindow> {
  const source = `lake:${lakeJoin(spec.folder)}`;
  const pattern = globToRegExp(spec.pattern);
  const entries = (await ctx.lake.list(spec.folder, { recursive: true })).filter(
    (e) =>
      !e.isDirectory &&
      pattern.test(e.path.split('/').at(-1)!) &&
      !e.path.split('/').some((p) => p.startsWith('_') || p.startsWith('.')),
  );
  const processed =
    ctx.reprocess || ctx.range ? new Map<string, WindowItem>() : ctx.state.processedItems(ctx.pipeline.name, source);
  const items: WindowItem[] = [];
  for (const e of entries) {
    const timestamp = fileTimestamp(e.path.split('/').at(-1)!, e.modifiedMs);
    if (ctx.range && !(timestamp >= ctx.range.from && timestamp < ctx.range.to)) continue;
    const seen = processed.get(e.path);
    if (seen && seen.size === e.size && seen.modifiedMs === e.modifiedMs) continue;
    if (seen)
      ctx.log.warn(
        `Delta file \`${e.path}\` changed since it was processed (size or time differ); processing it again.`,
      );
    items.push({ id: e.path, size: e.size, modifiedMs: e.modifiedMs, timestamp });
  }
  // Oldest first, so later versions of a key are read last.
  items.sort((a, b) => (a.timestamp! < b.timestamp! ? -1 : a.timestamp! > b.timestamp! ? 1 : a.id < b.id ? -1 : 1));
  return { source, items, cursorBefore: null, cursorAfter: null, ...(ctx.range ? { range: ctx.range } : {}) };
}

async function run(spec: ReadParquetDeltasSpec, ctx: StageContext): Promise<void> {
  const wanted = spec.columns ? [...spec.columns] : sourceColumnsOf(ctx.pipeline);
  const lineage = new Set<string>(LINEAGE_COLUMNS);
  const table = duckIdent(STAGING_TABLES.staged);
  const heldBack = (ctx.shared.get(HELD_BACK_ITEMS) as Set<string> | undefined) ?? new Set<string>();
  ctx.shared.set(HELD_BACK_ITEMS, heldBack);

  // Pass 1: read each file's schema (Parquet footers only) and hold back the files that cannot be used.
  const files: Array<{ item: WindowItem; index: number; sql: string; columns: Map<string, string> }> = [];
  for (const [index, item] of ctx.window.items.entries()) {
    const local = await ctx.lake.toLocalPath(item.id);
    const sql = `read_parquet(${duckLiteral(local)}, file_row_number = true)`;
    let columns: Map<string, string>;
    try {
      const described = await ctx.staging.all<{ column_name: string; column_type: string }>(
        `DESCRIBE SELECT * FROM ${sql}`,
      );
      columns = new Map(
        described.filter((c) => c.column_name !== 'file_row_number').map((c) => [c.column_name, c.column_type]),
      );
    } catch (error) {
      holdBack(
        ctx,
        heldBack,
        item.id,
        'file.corrupt',
        `Delta file \`${item.id}\` cannot be read as Parquet (${firstLine(error)}); it was skipped and will be tried again next run. Replace the file or remove it from the folder.`,
      );
      continue;
    }
    const reserved = [...columns.keys()].find((c) => lineage.has(c));
    if (reserved) {
      holdBack(
        ctx,
        heldBack,
        item.id,
        'file.reserved_column',
        `Delta file \`${item.id}\` has a column named \`${reserved}\`, which ferry reserves for lineage; rename it at the source.`,
      );
      continue;
    }
    const missing = wanted.filter((c) => !columns.has(c));
    if (missing.length) {
      holdBack(
        ctx,
        heldBack,
        item.id,
        'file.missing_column',
        `Delta file \`${item.id}\` lacks mapped column(s) ${missing.map((m) => `\`${m}\``).join(', ')}; the file was skipped and will be tried again next run. Fix the extract or the mapping.`,
      );
      continue;
    }
    const extra = [...columns.keys()].filter((c) => !wanted.includes(c));
    if (extra.length && wanted.length) {
      ctx.log.warn(
        `Delta file \`${item.id}\` has unmapped column(s) ${extra.map((e) => `\`${e}\``).join(', ')}; ignored.`,
        { file: item.id },
      );
    }
    files.push({ item, index, sql, columns });
  }

  // One staged type per column that every file's type fits in exactly (widest decimal, BIGINT for integers).
  const names = wanted.length ? wanted : [...new Set(files.flatMap((f) => [...f.columns.keys()]))];
  const schema = names.map((name) => ({
    name,
    type: commonType(files.map((f) => f.columns.get(name)).filter((t): t is string => !!t)),
  }));
  // `staged` is a view over the files, not a copy: a copy held every row in memory for the whole run (~380 MB per
  // million rows of the bench's accounts) and cost a pass of its own; the conversion reads the files directly. Row
  // counts come from the Parquet footers. Decoding every page here as well would read each file twice, so a file
  // whose pages cannot be decoded is found when a later stage reads `staged` and fails: that stage calls the
  // validator this stage leaves in `ctx.shared` (STAGED_VALIDATOR), which decodes each file, holds back the bad ones
  // and rebuilds the view, and then tries again.
  const loadedFiles: Array<{ id: string; part: string; decode: string; rows: number }> = [];
  for (const file of files) {
    if (ctx.signal.aborted) {
      throw new FerryError('run.interrupted', 'Stopped while loading delta files; the next run repeats this window.');
    }
    const exprs = schema.map((c) => {
      const own = file.columns.get(c.name);
      return !own ? `NULL::${c.type}` : own === c.type ? duckIdent(c.name) : `CAST(${duckIdent(c.name)} AS ${c.type})`;
    });
    const select = exprs.map((e, i) => `${e} AS ${duckIdent(schema[i]!.name)}`);
    let loaded: number;
    try {
      const [row] = await ctx.staging.all<{ n: bigint }>(`SELECT count(*) AS n FROM ${file.sql}`);
      loaded = Number(row!.n);
    } catch (error) {
      holdBack(
        ctx,
        heldBack,
        file.item.id,
        'file.corrupt',
        `Delta file \`${file.item.id}\` could not be loaded (${firstLine(error)}); it was skipped and will be tried again next run.`,
      );
      continue;
    }
    loadedFiles.push({
      id: file.item.id,
      rows: loaded,
      part: `SELECT ${select.map((e) => `${e}, `).join('')}(${file.index}::BIGINT << 40) + file_row_number AS __row_id, CAST(${duckLiteral(ctx.runId)} AS VARCHAR) AS __run_id, CAST(${duckLiteral(file.item.id)} AS VARCHAR) AS __source_file, file_row_number + 1 AS __row_number FROM ${file.sql}`,
      // Decodes and casts every mapped column of every row.
      decode: `SELECT count(*) AS n${exprs.length ? `, min(hash(${exprs.join(', ')})) AS h` : ''} FROM ${file.sql}`,
    });
    ctx.counts.read += loaded;
    ctx.counts.staged += loaded;
    ctx.progress.update('staging', ctx.counts);
    killPoint('between-files');
  }
  const createView = async () => {
    const parts = loadedFiles.map((f) => f.part);
    if (!parts.length) {
      const defs = schema.map((c) => `NULL::${c.type} AS ${duckIdent(c.name)}, `).join('');
      parts.push(
        `SELECT ${defs}NULL::BIGINT AS __row_id, NULL::VARCHAR AS __run_id, NULL::VARCHAR AS __source_file, NULL::BIGINT AS __row_number WHERE false`,
      );
    }
    await dropStaged(ctx);
    await ctx.staging.run(`CREATE VIEW ${table} AS\n${parts.join('\nUNION ALL\n')}`);
  };
  await createView();
  const countFiles = () => {
    ctx.metrics.filesLoaded = loadedFiles.length;
    ctx.metrics.filesHeldBack = heldBack.size;
  };
  const validate: StagedValidator = async () => {
    let removed = 0;
    for (const file of [...loadedFiles]) {
      try {
        await ctx.staging.all(file.decode);
      } catch (error) {
        loadedFiles.splice(loadedFiles.indexOf(file), 1);
        ctx.counts.read -= file.rows;
        ctx.counts.staged -= file.rows;
        removed += 1;
        holdBack(
          ctx,
          heldBack,
          file.id,
          'file.corrupt',
          `Delta file \`${file.id}\` could not be decoded (${firstLine(error)}); it was skipped and will be tried again next run.`,
        );
      }
    }
    if (removed) await createView();
    countFiles();
    return removed;
  };
  ctx.shared.set(STAGED_VALIDATOR, validate);
  countFiles();

  // Keep the staged rows of a run with rejects, so `ferry replay` can rebuild the same requests later.
  ctx.onCommit(async () => {
    if (ctx.counts.rejected === 0) return;
    const target = path.join(ctx.runDir, 'staged.parquet');
    await ctx.staging.run(`COPY ${table} TO ${duckLiteral(`${target}.tmp`)} (FORMAT PARQUET, COMPRESSION zstd)`);
    await fs.rename(`${target}.tmp`, target);
  });
}

/**
 * `ctx.shared` key of the function a stage calls when reading `staged` failed: it decodes every delta file, holds
 * back those that cannot be decoded, rebuilds `staged` without them and returns how many it removed (0: the failure
 * was not a bad file, so the caller should rethrow).
 */
export const STAGED_VALIDATOR = 'staged.validate';
export type StagedValidator = () => Promise<number>;

/** Drops an earlier `staged` (a table, e.g. left by a replay source, or this stage's view) so the view can be made. */
async function dropStaged(ctx: StageContext): Promise<void> {
  const [row] = await ctx.staging.all<{ t: string }>(
    `SELECT table_type AS t FROM information_schema.tables WHERE table_name = ${duckLiteral(STAGING_TABLES.staged)}`,
  );
  if (!row) return;
  const kind = String(row.t).toUpperCase().includes('VIEW') ? 'VIEW' : 'TABLE';
  await ctx.staging.run(`DROP ${kind} ${duckIdent(STAGING_TABLES.staged)}`);
}

/**
 * The narrowest DuckDB type that holds every file's values exactly: equal types stay; decimals widen to the largest
 * integer and fraction digits; integers widen to BIGINT (HUGEINT past it); anything else falls back to VARCHAR,
 * which the conversion parses and validates.
 */
export function commonType(types: readonly string[]): string {
  const distinct = [...new Set(types)];
  if (distinct.length === 0) return 'VARCHAR';
  if (distinct.length === 1) return distinct[0]!;
  const ints = ['TINYINT', 'SMALLINT', 'INTEGER', 'BIGINT', 'UTINYINT', 'USMALLINT', 'UINTEGER'];
  const decimal = /^DECIMAL\((\d+),\s*(\d+)\)$/;
  if (distinct.every((t) => ints.includes(t))) return 'BIGINT';
  if (distinct.every((t) => decimal.test(t) || ints.includes(t) || t === 'UBIGINT' || t === 'HUGEINT')) {
    let intDigits = 0;
    let scale = 0;
    for (const t of distinct) {
      const m = decimal.exec(t);
      if (m) {
        intDigits = Math.max(intDigits, Number(m[1]) - Number(m[2]));
        scale = Math.max(scale, Number(m[2]));
      } else intDigits = Math.max(intDigits, t === 'HUGEINT' ? 38 : t === 'UBIGINT' || t === 'BIGINT' ? 20 : 10);
    }
    return `DECIMAL(${Math.min(38, intDigits + scale)}, ${scale})`;
  }
  if (distinct.every((t) => t.startsWith('TIMESTAMP') || t === 'DATE'))
    return distinct.includes('TIMESTAMP WITH TIME ZONE') ? 'TIMESTAMP WITH TIME ZONE' : 'TIMESTAMP';
  if (distinct.every((t) => t === 'FLOAT' || t === 'DOUBLE')) return 'DOUBLE';
  return 'VARCHAR';
}

function firstLine(error: unknown): string {
  return (error instanceof Error ? error.message : String(error)).split('\n')[0]!;
}

/**
 * A file that cannot be used is recorded in the error store (so `ferry rejects` shows it) but not counted as a
 * rejected row: its rows were never read, and the file is tried again next run.
 */
function holdBack(ctx: StageContext, heldBack: Set<string>, file: string, reason: string, message: string): void {
  heldBack.add(file);
  ctx.log.warn(message, { file, reason });
  ctx.state.addRejects(ctx.runId, ctx.pipeline.name, [
    { stage: 'read-parquet-deltas', reason, message, sourceFile: file, rowNumber: null, key: null },
  ]);
}

/** The `read-parquet-deltas` stage. */
export const readParquetDeltasStage: StageImpl<ReadParquetDeltasSpec> = { kind: 'read-parquet-deltas', plan, run };
