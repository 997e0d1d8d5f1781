import { randomUUID } from 'node:crypto';
import { mkdir, readdir, readFile, rename, rm } from 'node:fs/promises';
import path from 'node:path';
import type { DuckDbStaging } from '../../../../dialects/duckdb/driver.js';
import { duckLiteral } from '../../../../dialects/duckdb/driver.js';
import { ActivityError } from '../runtime-error.js';

/** One Synapse Link folder's CSV files for a table, with its columns from that folder's `model.json`. */
export interface SynapseLinkFolder {
  readonly folder: string;
  readonly files: readonly string[];
  readonly columns: readonly string[];
}

/**
 * The serverless SQL reading of Synapse Link CSV (`OPENROWSET(BULK '<folder>/<table>/<file>.csv', FORMAT = 'CSV')` with wildcards), with each
 * folder's columns bound by name from the `model.json` of that folder — the CSV files have no header and the
 * `WITH` clause of OPENROWSET binds by ordinal (learn.microsoft.com/azure/synapse-analytics/sql/develop-openrowset),
 * so binding by the folder's own model is what keeps columns right when the table gains columns. Files whose names
 * start with `_` or `.` are not read (the current OPENROWSET page). A selected folder without a readable
 * `model.json` is an error naming it.
 */
export async function synapseLinkFolders(
  containerDir: string,
  table: string,
  selectFolder: (folder: string) => boolean,
): Promise<SynapseLinkFolder[]> {
  const entries = await readdir(containerDir, { withFileTypes: true }).catch(() => []);
  const out: SynapseLinkFolder[] = [];
  for (const e of entries
    .filter((x) => x.isDirectory() && selectFolder(x.name))
    .sort((a, b) => (a.name < b.name ? -1 : 1))) {
    const dir = path.join(containerDir, e.name, table);
    const files = (await readdir(dir).catch(() => [] as string[]))
      .filter((f) => f.endsWith('.csv') && !f.startsWith('_') && !f.startsWith('.'))
      .sort();
    if (files.length === 0) continue;
    let model: { entities?: { name?: string; attributes?: { name?: string }[] }[] };
    try {
      model = JSON.parse(await readFile(path.join(containerDir, e.name, 'model.json'), 'utf8'));
    } catch (error) {
      throw new ActivityError(
        'SynapseLinkModelMissing',
        `Synapse Link folder \`${e.name}\` has no readable model.json (${(error as Error).message}); it may still be being written — select only completed folders.`,
      );
    }
    const entity = model.entities?.find((x) => x.name === table);
    if (!entity?.attributes?.length)
      throw new ActivityError(
        'SynapseLinkModelMissing',
        `model.json of folder \`${e.name}\` does not describe table \`${table}\`.`,
      );
    out.push({
      folder: e.name,
      files: files.map((f) => path.join(dir, f)),
      columns: entity.attributes.map((a) => String(a.name)),
    });
  }
  return out;
}

/**
 * A DuckDB query over the folders: every column as text (as `NVARCHAR` in the export), bound by name per folder,
 * unioned by name (columns a folder lacks are NULL), plus `__folder` (what `filepath(1)` returns).
 */
export function synapseLinkSelect(folders: readonly SynapseLinkFolder[]): string {
  if (folders.length === 0)
    throw new ActivityError('SynapseLinkNoFolder', 'No Synapse Link folder matched; there is nothing to read.');
  return folders
    .map((f) => {
      const columns = `{${f.columns.map((c) => `${duckLiteral(c)}: 'VARCHAR'`).join(', ')}}`;
      const files = `[${f.files.map(duckLiteral).join(', ')}]`;
      return `SELECT *, ${duckLiteral(f.folder)} AS __folder FROM read_csv(${files}, auto_detect = false, delim = ',', header = false, columns = ${columns}, quote = '"', escape = '"', null_padding = true)`;
    })
    .join(' UNION ALL BY NAME ');
}

/**
 * CETAS into a folder: refused when the location already holds data ("External tables cannot be created on the
 * location where you already have some data", learn.microsoft.com/azure/synapse-analytics/sql/
 * create-external-table-as-select); otherwise the query's rows are written as Parquet, to a temp name first.
 */
export async function createExternalTableAs(
  duck: DuckDbStaging,
  locationDir: string,
  location: string,
  query: string,
): Promise<{ rows: number; file: string }> {
  const existing = await readdir(locationDir).catch(() => [] as string[]);
  if (existing.length > 0) {
    throw new ActivityError(
      'CetasLocationExists',
      `Cannot create external table. External table location already exists. Location provided: '${location}'`,
    );
  }
  await mkdir(locationDir, { recursive: true });
  const file = path.join(locationDir, `${randomUUID().toUpperCase()}_1.parquet`);
  const tmp = path.join(path.dirname(locationDir), `.${path.basename(locationDir)}-${randomUUID()}.tmp`);
  try {
    await duck.run(`COPY (${query}) TO ${duckLiteral(tmp)} (FORMAT parquet)`);
    const counted = await duck.all(`SELECT count(*) AS n FROM read_parquet(${duckLiteral(tmp)})`);
    await rename(tmp, file);
    return { rows: Number(counted[0]?.n ?? 0), file };
  } catch (error) {
    await rm(tmp, { force: true });
    if (error instanceof ActivityError) throw error;
    throw new ActivityError('CetasFailed', `CETAS into \`${location}\` failed: ${(error as Error).message}`, {
      cause: error,
    });
  }
}
