import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import path from 'node:path';
import { type Lake, lakeJoin } from '../connectors/lake/lake.js';
import { LocalLake } from '../connectors/lake/local-lake.js';
import { isUrlLocation } from '../core/config.js';
import { FerryError, UsageError } from '../core/errors.js';
import { killPoint } from '../core/kill-points.js';
import type { StageSpec } from '../core/pipeline.js';
import type { StageContext, StageImpl } from '../core/stage.js';
import type { RunWindow } from '../core/window.js';
import { duckIdent, duckLiteral } from '../dialects/duckdb/duckdb-staging.js';
import { EXTRACT_SHARED_KEY, type ExtractResult } from './run-sql-extract.js';

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

/** The folder name of a window: its single item, or `<first>_<last>`; safe on every file system. */
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
};

/** Where window files go: a lake (with a path prefix) — the configured lake when the warehouse lies inside it. */
interface WarehouseStore {
  readonly lake: Lake;
  readonly prefix: string;
}

// The default warehouse is `<lake>/warehouse`, so on ADLS the files go through the lake's blob API; a local folder
// elsewhere gets its own LocalLake. Both write a file locally first (DuckDB writes local files only), then publish.
function warehouseStore(ctx: StageContext): WarehouseStore {
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
  return { lake: new LocalLake(warehouse), prefix: '' };
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
      { cause: error, disposition: 'retry' },
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
  ctx.counts.written += rows;
  ctx.counts.deleted += deleted;
  ctx.log.info(`Wrote \`${result.output}\` window \`${name}\`: ${rows} rows, ${deleted} deletes.`, {
    dir: `${lake.root}/${finalDir}`,
  });
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
