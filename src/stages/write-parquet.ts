import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import path from 'node:path';
import { openLake } from '../connectors/lake/open-lake.js';
import { isUrlLocation } from '../core/config.js';
import { FerryError, UsageError } from '../core/errors.js';
import { killPoint } from '../core/kill-points.js';
import { type Lake, lakeJoin } from '../core/lake.js';
import type { PipelineDefinition, StageSpec } from '../core/pipeline.js';
import type { StageContext, StageImpl } from '../core/stage.js';
import type { RunWindow } from '../core/window.js';
import { duckIdent, duckLiteral } from '../dialects/duckdb/driver.js';
import { EXTRACT_SHARED_KEY, type ExtractResult, type RunSqlExtractSpec } from './run-sql-extract.js';

/** How deletes reach the warehouse: a flag column on the rows, or their own file. */
export const DELETE_MODES = ['flag-column', 'separate-file'] as const;
/** One of {@link DELETE_MODES}. */
export type DeleteMode = (typeof DELETE_MODES)[number];
/** How GUID columns are written: as text, or as Parquet UUID. */
export const UUID_MODES = ['string', 'uuid'] as const;
/** One of {@link UUID_MODES}. */
export type UuidMode = (typeof UUID_MODES)[number];

/** The `write-parquet` stage spec (plain data). */
export interface WriteParquetSpec extends StageSpec {
  readonly kind: 'write-parquet';
  /** `warehouse` writes under the configured warehouse root (`--warehouse`, default `<lake>/warehouse`). */
  readonly target: 'warehouse';
  /** Deletes as rows with the delete column true (`flag-column`) or in their own `deletes-*.parquet` file. */
  readonly deletes: DeleteMode;
  /** `string` writes GUIDs as text (what Spark and Synapse serverless read without help); `uuid` keeps Parquet UUID. */
  readonly uuidAs: UuidMode;
  /** Parquet compression. Default `snappy` (what Spark and Synapse write by default). */
  readonly compression: 'zstd' | 'snappy' | 'gzip' | 'uncompressed';
}

/** The manifest file of a window folder; present only once the window is complete. */
export const MANIFEST_FILE = '_manifest.json';

/**
 * The index of a warehouse table folder: the windows a reader takes as current. A window that another window's
 * input covers is superseded: it leaves the index, then its folder is deleted.
 */
export const CURRENT_INDEX_FILE = '_current.json';

/** What `<warehouse>/<table>/_current.json` holds. */
export interface WarehouseCurrentIndex {
  readonly format: 'ferry-warehouse-current/1';
  readonly table: string;
  /** In input order; their input items never overlap. */
  readonly windows: readonly CurrentWindow[];
}

/** One current window: its folder, the input items it was extracted from, and its data files. */
export interface CurrentWindow {
  readonly name: string;
  readonly runId: string;
  readonly items: readonly string[];
  /** Times of the first and last input item (folder times), when the source gives them; backfills align on them. */
  readonly first: string | null;
  readonly last: string | null;
  /** Data files, relative to the table folder (`<window>/part-00000.parquet`, ...). */
  readonly files: readonly string[];
}

/** What `_manifest.json` holds. */
export interface WarehouseManifest {
  readonly format: 'ferry-warehouse-manifest/1';
  readonly pipeline: string;
  readonly runId: string;
  readonly table: string;
  readonly sourceTable: string;
  readonly window: {
    readonly name: string;
    readonly source: string;
    readonly items: readonly string[];
    readonly cursorBefore: string | null;
    readonly cursorAfter: string | null;
  };
  readonly sourceFolders: readonly string[];
  readonly deletes: DeleteMode;
  readonly uuidAs: UuidMode;
  readonly rows: number;
  readonly deleted: number;
  readonly schema: ReadonlyArray<{ readonly name: string; readonly type: string }>;
  readonly files: ReadonlyArray<{
    readonly path: string;
    readonly kind: 'rows' | 'deletes';
    readonly rows: number;
    readonly bytes: number;
    readonly sha256: string;
  }>;
}

/**
 * Writes each extract result as Parquet for the warehouse: `<warehouse>/<table>/<window>/part-00000.parquet`
 * (plus `deletes-00000.parquet` with `deletes: 'separate-file'`) and then `_manifest.json`. Files go to a temporary
 * folder that is renamed into place before the manifest is written, so a window without a manifest is incomplete;
 * the same window always gives the same file names and bytes, so a repeated run replaces them with equal files.
 * Last, `<table>/_current.json` names the window in place of the current windows whose input it covers, whose
 * folders are then deleted: readers take the files the index lists (README, Warehouse layout).
 *
 * @example
 * writeParquet({ target: 'warehouse', deletes: 'flag-column', uuidAs: 'string' })
 */
export function writeParquet(
  options: {
    target?: 'warehouse';
    deletes?: DeleteMode;
    uuidAs?: UuidMode;
    compression?: WriteParquetSpec['compression'];
  } = {},
): WriteParquetSpec {
  const deletes = options.deletes ?? 'flag-column';
  const uuidAs = options.uuidAs ?? 'string';
  if (!(DELETE_MODES as readonly string[]).includes(deletes))
    throw new UsageError(`writeParquet deletes \`${deletes}\` is not known; use ${DELETE_MODES.join(' or ')}.`);
  if (!(UUID_MODES as readonly string[]).includes(uuidAs))
    throw new UsageError(`writeParquet uuidAs \`${uuidAs}\` is not known; use ${UUID_MODES.join(' or ')}.`);
  return {
    kind: 'write-parquet',
    target: options.target ?? 'warehouse',
    deletes,
    uuidAs,
    compression: options.compression ?? 'snappy',
  };
}

/**
 * The folder name of a window — the one naming rule for warehouse window folders, which every executor of the
 * pipeline definitions must follow: the window's single input item, or `<first item>_<last item>`, with `:` → `.`,
 * `/` and `\` → `-`, `@` → `-v` (safe on every file system). For Synapse Link CSV the items are the timestamp
 * folders, e.g. `2026-01-01T00.15.00Z_2026-01-01T00.45.00Z`.
 */
export function windowFolderName(window: RunWindow): string {
  const ids = window.items.map((i) => i.id);
  const raw = ids.length === 0 ? 'empty' : ids.length === 1 ? ids[0]! : `${ids[0]}_${ids.at(-1)}`;
  return raw.replace(/[:/\\@]/g, (c) => (c === ':' ? '.' : c === '@' ? '-v' : '-'));
}

/** Writes the extract results; see {@link writeParquet}. */
export const writeParquetStage: StageImpl<WriteParquetSpec> = {
  kind: 'write-parquet',
  async run(spec, ctx) {
    const results = (ctx.shared.get(EXTRACT_SHARED_KEY) as ExtractResult[] | undefined) ?? [];
    const store = warehouseStore(ctx);
    for (const result of results) await writeOne(spec, ctx, store, result);
  },
  outputSpans: (_spec, ctx) => currentWindowSpans(ctx.pipeline, ctx),
};

/** Where window files go: a lake (with a path prefix) — the configured lake when the warehouse lies inside it. */
interface WarehouseStore {
  readonly lake: Lake;
  readonly prefix: string;
}

// The default warehouse is `<lake>/warehouse`, so on ADLS the files go through the lake's blob API; a local folder
// elsewhere gets its own LocalLake. Both write a file locally first (DuckDB writes local files only), then publish.
function warehouseStore(ctx: Pick<StageContext, 'config' | 'lake'>): WarehouseStore {
  const { lake, warehouse } = ctx.config;
  if (isUrlLocation(warehouse)) {
    const base = lake.replace(/\/+$/, '');
    if (isUrlLocation(lake) && warehouse.startsWith(`${base}/`))
      return { lake: ctx.lake, prefix: warehouse.slice(base.length + 1) };
    throw new UsageError(
      `Warehouse \`${warehouse}\` is a URL outside the lake \`${lake}\`; put it inside the lake or pass --warehouse <local dir>.`,
    );
  }
  if (!isUrlLocation(lake)) {
    const rel = path.relative(path.resolve(lake), path.resolve(warehouse));
    if (rel !== '' && !rel.startsWith('..') && !path.isAbsolute(rel))
      return { lake: ctx.lake, prefix: rel.split(path.sep).join('/') };
  }
  return { lake: openLake(warehouse, { createFolder: true }), prefix: '' };
}

async function writeOne(
  spec: WriteParquetSpec,
  ctx: StageContext,
  store: WarehouseStore,
  result: ExtractResult,
): Promise<void> {
  const { lake } = store;
  const name = windowFolderName(ctx.window);
  const tableDir = lakeJoin(store.prefix, result.output);
  const finalDir = lakeJoin(tableDir, name);
  const tmpDir = lakeJoin(tableDir, `.${name}.tmp-${ctx.runId}`);
  // Which current windows this one supersedes, decided before anything is written.
  const index = await readCurrentIndex(lake, tableDir, result.output);
  const itemIds = new Set(ctx.window.items.map((i) => i.id));
  const superseded = index.windows.filter((w) => w.name === name || w.items.some((i) => itemIds.has(i)));
  const partial = superseded.filter((w) => w.items.some((i) => !itemIds.has(i)));
  if (partial.length > 0) {
    const w = partial[0]!;
    throw new FerryError(
      'warehouse.window_overlap',
      `Window \`${name}\` of \`${result.output}\` covers only part of the current window \`${w.name}\` (${w.items.length} input items); writing it would leave that window's other rows duplicated or lost. Reprocess a range that covers \`${w.name}\` whole (\`ferry backfill\` aligns its windows on the current ones by itself).`,
      { details: { window: name, current: w.name } },
    );
  }
  // Temp folders of this window left by a killed run are garbage: the pipeline's lease says that run is gone.
  for (const e of await lake.list(tableDir)) {
    if (e.path.split('/').at(-1)!.startsWith(`.${name}.tmp-`)) await lake.delete(e.path, { recursive: true });
  }

  const described = await ctx.staging.all<{ column_name: string; column_type: string }>(
    `DESCRIBE ${duckIdent(result.relation)}`,
  );
  const columns = described.filter((c) => !c.column_name.startsWith('__'));
  const select = columns.map((c) =>
    spec.uuidAs === 'string' && c.column_type === 'UUID'
      ? `CAST(${duckIdent(c.column_name)} AS VARCHAR) AS ${duckIdent(c.column_name)}`
      : duckIdent(c.column_name),
  );
  const schema = columns.map((c) => ({
    name: c.column_name,
    type: spec.uuidAs === 'string' && c.column_type === 'UUID' ? 'VARCHAR' : c.column_type,
  }));
  // The same window must give byte-identical files: keep a deterministic relation's order, sort any other.
  const idCol = columns.find((c) => c.column_name.toLowerCase() === 'id');
  const orderBy = result.ordered ? '' : idCol ? `ORDER BY ${duckIdent(idCol.column_name)}` : 'ORDER BY ALL';
  const del = result.deleteColumn ? `coalesce(${duckIdent(result.deleteColumn)}, false)` : 'false';

  const parts: Array<{ file: string; kind: 'rows' | 'deletes'; where: string }> =
    spec.deletes === 'separate-file'
      ? [
          { file: 'part-00000.parquet', kind: 'rows', where: `NOT ${del}` },
          ...(result.deleteColumn ? [{ file: 'deletes-00000.parquet', kind: 'deletes' as const, where: del }] : []),
        ]
      : [{ file: 'part-00000.parquet', kind: 'rows', where: 'true' }];
  const files: Array<WarehouseManifest['files'][number]> = [];
  let rows = 0;
  let deleted = 0;
  for (const part of parts) {
    const tmpPath = lakeJoin(tmpDir, part.file);
    const tmpFile = await lake.localWritePath(tmpPath);
    const query = `SELECT ${select.join(', ')} FROM ${duckIdent(result.relation)} WHERE ${part.where} ${orderBy}`;
    try {
      await ctx.staging.run(
        `COPY (${query}) TO ${duckLiteral(tmpFile)} (FORMAT PARQUET, COMPRESSION ${spec.compression}, ROW_GROUP_SIZE 122880)`,
      );
    } catch (error) {
      // Out of memory is the staging engine's limit, not the query's fault: its error names the setting.
      if (error instanceof FerryError && error.code === 'staging.out_of_memory') throw error;
      // The extract is a view, so a query that binds but fails on some row fails here, while it runs.
      throw new FerryError(
        'extract.sql',
        `Writing \`${result.output}\` (extract of \`${result.table}\`) failed: ${(error as Error).message.split('\n')[0]}. Fix the extract query; the window will be repeated.`,
        { cause: error },
      );
    }
    // Count from the written file (footer metadata and one column), not by running the extract again.
    const flag =
      result.deleteColumn && part.kind === 'rows' ? `count(*) FILTER (WHERE ${duckIdent(result.deleteColumn)})` : '0';
    const [count] = await ctx.staging.all<{ n: bigint; d: bigint }>(
      `SELECT count(*) AS n, ${flag} AS d FROM read_parquet(${duckLiteral(tmpFile)})`,
    );
    const n = Number(count?.n ?? 0);
    const d = Number(count?.d ?? 0);
    if (part.kind === 'deletes') deleted += n;
    else {
      rows += n - d;
      deleted += d;
    }
    files.push({ path: part.file, kind: part.kind, rows: n, ...(await digest(tmpFile)) });
    await lake.publish(tmpPath);
  }
  killPoint('write-parquet:before-rename');

  // Replace an earlier attempt of the same window: its manifest goes first, so it never describes other files.
  await lake.delete(lakeJoin(finalDir, MANIFEST_FILE));
  await lake.delete(finalDir, { recursive: true });
  try {
    for (const f of files) await lake.rename(lakeJoin(tmpDir, f.path), lakeJoin(finalDir, f.path));
    await lake.delete(tmpDir, { recursive: true });
  } catch (error) {
    throw new FerryError(
      'warehouse.rename',
      `Moving \`${tmpDir}\` to \`${finalDir}\` in \`${lake.root}\` failed: ${(error as Error).message}. The window is not marked complete; run again.`,
      { cause: error },
    );
  }
  killPoint('write-parquet:before-manifest');
  const manifest: WarehouseManifest = {
    format: 'ferry-warehouse-manifest/1',
    pipeline: ctx.pipeline.name,
    runId: ctx.runId,
    table: result.output,
    sourceTable: result.table,
    window: {
      name,
      source: ctx.window.source,
      items: ctx.window.items.map((i) => i.id),
      cursorBefore: ctx.window.cursorBefore,
      cursorAfter: ctx.window.cursorAfter,
    },
    sourceFolders: result.sourceFolders,
    deletes: spec.deletes,
    uuidAs: spec.uuidAs,
    rows,
    deleted,
    schema,
    files,
  };
  const tmpManifest = lakeJoin(finalDir, `.${MANIFEST_FILE}.tmp`);
  await lake.write(tmpManifest, `${JSON.stringify(manifest, null, 2)}\n`);
  await lake.rename(tmpManifest, lakeJoin(finalDir, MANIFEST_FILE));
  // The index names this window in place of those it supersedes; only then do their folders go.
  const times = ctx.window.items.map((i) => i.timestamp ?? null);
  const current: CurrentWindow = {
    name,
    runId: ctx.runId,
    items: ctx.window.items.map((i) => i.id),
    first: times[0] ?? null,
    last: times.at(-1) ?? null,
    files: files.map((f) => `${name}/${f.path}`),
  };
  const next: WarehouseCurrentIndex = {
    format: 'ferry-warehouse-current/1',
    table: result.output,
    windows: [...index.windows.filter((w) => !superseded.includes(w)), current].sort(byInput),
  };
  await writeCurrentIndex(lake, tableDir, next);
  killPoint('write-parquet:before-supersede');
  await removeSuperseded(lake, tableDir, next);
  ctx.counts.written += rows;
  ctx.counts.deleted += deleted;
  ctx.log.info(`Wrote \`${result.output}\` window \`${name}\`: ${rows} rows, ${deleted} deletes.`, {
    dir: `${lake.root}/${finalDir}`,
  });
}

/** Orders current windows by their first input item's time, then name. */
function byInput(a: CurrentWindow, b: CurrentWindow): number {
  const x = a.first ?? a.name;
  const y = b.first ?? b.name;
  return x < y ? -1 : x > y ? 1 : a.name < b.name ? -1 : a.name > b.name ? 1 : 0;
}

/**
 * The table's current index. A table written before the index existed gets one built from its complete windows
 * (those with a manifest), oldest first; an empty table an empty index.
 */
async function readCurrentIndex(lake: Lake, tableDir: string, table: string): Promise<WarehouseCurrentIndex> {
  const file = lakeJoin(tableDir, CURRENT_INDEX_FILE);
  if (await lake.stat(file)) {
    const index = JSON.parse(await lake.readText(file)) as WarehouseCurrentIndex;
    if (index.format !== 'ferry-warehouse-current/1')
      throw new FerryError(
        'warehouse.index',
        `\`${lake.root}/${file}\` has format \`${index.format}\`, not \`ferry-warehouse-current/1\`; it was written by another version. Move the table folder aside and backfill it.`,
      );
    return index;
  }
  const windows: CurrentWindow[] = [];
  for (const manifest of await completeWindows(lake, tableDir)) {
    windows.push({
      name: manifest.window.name,
      runId: manifest.runId,
      items: manifest.window.items,
      first: null,
      last: null,
      files: manifest.files.map((f) => `${manifest.window.name}/${f.path}`),
    });
  }
  return { format: 'ferry-warehouse-current/1', table, windows: windows.sort(byInput) };
}

async function completeWindows(lake: Lake, tableDir: string): Promise<WarehouseManifest[]> {
  const out: WarehouseManifest[] = [];
  for (const e of await lake.list(tableDir)) {
    const folder = e.path.split('/').at(-1)!;
    if (!e.isDirectory || folder.startsWith('.')) continue;
    const manifest = lakeJoin(tableDir, folder, MANIFEST_FILE);
    if (await lake.stat(manifest)) out.push(JSON.parse(await lake.readText(manifest)) as WarehouseManifest);
  }
  return out;
}

async function writeCurrentIndex(lake: Lake, tableDir: string, index: WarehouseCurrentIndex): Promise<void> {
  const tmp = lakeJoin(tableDir, `.${CURRENT_INDEX_FILE}.tmp`);
  await lake.write(tmp, `${JSON.stringify(index, null, 2)}\n`);
  await lake.rename(tmp, lakeJoin(tableDir, CURRENT_INDEX_FILE));
}

// Deletes complete window folders the index no longer names whose input the index covers: superseded now, or by a
// run killed between writing the index and deleting them. A folder whose input is not covered stays (never lose rows).
async function removeSuperseded(lake: Lake, tableDir: string, index: WarehouseCurrentIndex): Promise<void> {
  const listed = new Set(index.windows.map((w) => w.name));
  const covered = new Set(index.windows.flatMap((w) => w.items));
  for (const manifest of await completeWindows(lake, tableDir)) {
    if (listed.has(manifest.window.name)) continue;
    if (!manifest.window.items.every((i) => covered.has(i))) continue;
    const dir = lakeJoin(tableDir, manifest.window.name);
    await lake.delete(lakeJoin(dir, MANIFEST_FILE));
    await lake.delete(dir, { recursive: true });
  }
}

/**
 * The input spans (first and last item time) of the current warehouse windows of a pipeline's outputs: a backfill
 * never cuts through one of them (see `src/schedule/backfill.ts`), so each window it writes supersedes whole windows.
 */
export async function currentWindowSpans(
  def: PipelineDefinition,
  ctx: Pick<StageContext, 'config' | 'lake'>,
): Promise<Array<{ readonly first: string; readonly last: string }>> {
  if (!def.stages.some((s) => s.kind === 'write-parquet')) return [];
  const store = warehouseStore(ctx);
  const outputs = def.stages
    .filter((s): s is RunSqlExtractSpec => s.kind === 'run-sql-extract')
    .map((s) => s.output ?? s.table);
  const spans: Array<{ first: string; last: string }> = [];
  for (const output of new Set(outputs)) {
    const file = lakeJoin(store.prefix, output, CURRENT_INDEX_FILE);
    if (!(await store.lake.stat(file))) continue;
    const index = JSON.parse(await store.lake.readText(file)) as WarehouseCurrentIndex;
    for (const w of index.windows) if (w.first && w.last) spans.push({ first: w.first, last: w.last });
  }
  return spans;
}

// Streamed: a window's Parquet file can be large, and the manifest needs only its size and hash.
async function digest(file: string): Promise<{ bytes: number; sha256: string }> {
  const hash = createHash('sha256');
  let bytes = 0;
  for await (const chunk of createReadStream(file) as AsyncIterable<Buffer>) {
    hash.update(chunk);
    bytes += chunk.length;
  }
  return { bytes, sha256: hash.digest('hex') };
}
