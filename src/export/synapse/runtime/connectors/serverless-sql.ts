import { randomUUID } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readdir, readFile, rename, rm } from 'node:fs/promises';
import path from 'node:path';
import type { DuckDbStaging } from '../../../../dialects/duckdb/driver.js';
import { duckIdent, duckLiteral } from '../../../../dialects/duckdb/driver.js';
import { ActivityError } from '../runtime-error.js';

/** A column of a Synapse Link table as one folder's `model.json` declares it. */
export interface SynapseLinkColumn {
  readonly name: string;
  /** The CDM `dataType` (`string`, `int64`, `decimal`, `dateTime`, …). */
  readonly dataType: string;
  /** From the `is.dataFormat.numeric.shaped` trait of a decimal, when present. */
  readonly precision?: number;
  readonly scale?: number;
}

/** One Synapse Link folder's CSV files for a table, with its columns from that folder's `model.json`. */
export interface SynapseLinkFolder {
  readonly folder: string;
  readonly files: readonly string[];
  readonly columns: readonly SynapseLinkColumn[];
}

/**
 * The serverless SQL reading of Synapse Link CSV (`OPENROWSET(BULK '<folder>/<table>/*.csv', FORMAT = 'CSV')`), with each
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
    let model: { entities?: { name?: string; attributes?: Record<string, unknown>[] }[] };
    try {
      model = JSON.parse(await readFile(path.join(containerDir, e.name, 'model.json'), 'utf8'));
    } catch (error) {
      throw new ActivityError(
        'SynapseLinkModelMissing',
        `Synapse Link folder \`${e.name}\` has no readable model.json (${(error as Error).message}); it may still be being written — select only completed folders.`,
      );
    }
    const entity = model.entities?.find((x) => String(x.name).toLowerCase() === table.toLowerCase());
    if (!entity?.attributes?.length)
      throw new ActivityError(
        'SynapseLinkModelMissing',
        `model.json of folder \`${e.name}\` does not describe table \`${table}\`.`,
      );
    out.push({ folder: e.name, files: files.map((f) => path.join(dir, f)), columns: entity.attributes.map(column) });
  }
  return out;
}

function column(a: Record<string, unknown>): SynapseLinkColumn {
  const out: { name: string; dataType: string; precision?: number; scale?: number } = {
    name: String(a.name),
    dataType: String(a.dataType ?? 'string'),
  };
  const traits = a['cdm:traits'] ?? a.traits;
  for (const t of Array.isArray(traits) ? traits : []) {
    if (t?.traitReference !== 'is.dataFormat.numeric.shaped' || !Array.isArray(t.arguments)) continue;
    for (const arg of t.arguments) {
      const n = Number(arg?.value);
      if (arg?.name === 'precision' && Number.isInteger(n)) out.precision = n;
      if (arg?.name === 'scale' && Number.isInteger(n)) out.scale = n;
    }
  }
  return out;
}

/**
 * The union of the folders' columns: in order of first appearance (a column a later folder adds comes after the
 * older ones), each typed as the latest folder that has it declares it. Names match case-insensitively.
 */
export function unionColumns(folders: readonly SynapseLinkFolder[]): SynapseLinkColumn[] {
  const out: SynapseLinkColumn[] = [];
  const at = new Map<string, number>();
  for (const f of folders) {
    for (const c of f.columns) {
      const i = at.get(c.name.toLowerCase());
      if (i === undefined) {
        at.set(c.name.toLowerCase(), out.length);
        out.push(c);
      } else out[i] = { ...c, name: out[i]!.name };
    }
  }
  return out;
}

// Synapse Link writes `M/d/yyyy h:mm:ss tt` for SinkCreatedOn/SinkModifiedOn and ISO 8601 for the others
// (learn.microsoft.com/power-apps/maker/data-platform/export-data-lake-faq).
const US_DATETIME = `['%m/%d/%Y %I:%M:%S %p', '%m/%d/%Y %H:%M:%S']`;

/**
 * The SQL type a column is written with and the expression typing its text, as the T-SQL extract's projection
 * does (`TRY_CONVERT` per CDM type; a value that does not parse is NULL): GUIDs as lower-case text, whole numbers
 * BIGINT, decimals DECIMAL(p,s) (38,10 without a shape), booleans, date-times as UTC wall time (`DATETIME2`),
 * everything else text.
 */
export function typedText(c: SynapseLinkColumn, text: string): { readonly type: string; readonly expression: string } {
  switch (c.dataType) {
    case 'guid':
      return { type: 'VARCHAR', expression: `lower(CAST(TRY_CAST(${text} AS UUID) AS VARCHAR))` };
    case 'int64':
      return { type: 'BIGINT', expression: `TRY_CAST(${text} AS BIGINT)` };
    case 'double':
      return { type: 'DOUBLE', expression: `TRY_CAST(${text} AS DOUBLE)` };
    case 'boolean':
      return {
        type: 'BOOLEAN',
        expression: `CASE lower(${text}) WHEN 'true' THEN true WHEN '1' THEN true WHEN 'false' THEN false WHEN '0' THEN false END`,
      };
    case 'decimal': {
      const precision = Math.min(38, c.precision ?? 38);
      const scale = Math.min(precision, c.scale ?? (c.precision === undefined ? 10 : 0));
      return {
        type: `DECIMAL(${precision},${scale})`,
        expression: `TRY_CAST(${text} AS DECIMAL(${precision},${scale}))`,
      };
    }
    case 'dateTime':
    case 'dateTimeOffset':
      return {
        type: 'TIMESTAMP',
        expression: `CASE WHEN contains(${text}, '/') THEN TRY_STRPTIME(${text}, ${US_DATETIME}) ELSE timezone('UTC', TRY_CAST(${text} AS TIMESTAMPTZ)) END`,
      };
    case 'date':
      return {
        type: 'DATE',
        expression: `CASE WHEN contains(${text}, '/') THEN CAST(TRY_STRPTIME(${text}, '%m/%d/%Y') AS DATE) ELSE TRY_CAST(${text} AS DATE) END`,
      };
    case 'time':
      return { type: 'TIME', expression: `TRY_CAST(${text} AS TIME)` };
    default:
      return { type: 'VARCHAR', expression: text };
  }
}

/**
 * A DuckDB query over the folders: each folder's CSV read as text with that folder's columns, every column of the
 * union typed from its CDM type (NULL where a folder lacks it), plus `__folder` (what `filepath(1)` returns).
 */
export function synapseLinkSelect(folders: readonly SynapseLinkFolder[]): string {
  if (folders.length === 0)
    throw new ActivityError('SynapseLinkNoFolder', 'No Synapse Link folder matched; there is nothing to read.');
  const union = unionColumns(folders);
  return folders
    .map((f) => {
      const own = new Set(f.columns.map((c) => c.name.toLowerCase()));
      const columns = `{${f.columns.map((c) => `${duckLiteral(c.name)}: 'VARCHAR'`).join(', ')}}`;
      const files = `[${f.files.map(duckLiteral).join(', ')}]`;
      const typed = union.map((c) => {
        const source = own.has(c.name.toLowerCase())
          ? `r.${duckIdent(f.columns.find((x) => x.name.toLowerCase() === c.name.toLowerCase())!.name)}`
          : 'CAST(NULL AS VARCHAR)';
        const t = typedText(c, source);
        return `CAST(${t.expression} AS ${t.type}) AS ${duckIdent(c.name)}`;
      });
      return `SELECT ${typed.join(', ')}, ${duckLiteral(f.folder)} AS __folder FROM read_csv(${files}, auto_detect = false, delim = ',', header = false, columns = ${columns}, quote = '"', escape = '"', null_padding = true) r`;
    })
    .join(' UNION ALL ');
}

/** The table's columns in the container's root `model.json`; none when it is missing or does not describe it. */
async function rootColumns(containerDir: string, table: string): Promise<SynapseLinkColumn[]> {
  try {
    const model = JSON.parse(await readFile(path.join(containerDir, 'model.json'), 'utf8')) as {
      entities?: { name?: string; attributes?: Record<string, unknown>[] }[];
    };
    const entity = model.entities?.find((x) => String(x.name).toLowerCase() === table.toLowerCase());
    return (entity?.attributes ?? []).map(column);
  } catch {
    return [];
  }
}

/** The columns every Synapse Link table carries that the extract ranks and routes on, with their CDM types. */
const REQUIRED: readonly SynapseLinkColumn[] = [
  { name: 'Id', dataType: 'guid' },
  { name: 'SinkModifiedOn', dataType: 'dateTime' },
  { name: 'versionnumber', dataType: 'int64' },
  { name: 'IsDelete', dataType: 'boolean' },
];

/**
 * The choice-label CSVs of an `OptionsetMetadata/` folder (headerless) and their columns, as the T-SQL twins of
 * custom extracts bind them by ordinal.
 */
const LABEL_FILES: Readonly<Record<string, readonly SynapseLinkColumn[]>> = {
  OptionsetMetadata: cols(
    'EntityName',
    'OptionSetName',
    'Option:int64',
    'IsUserLocalizedLabel:boolean',
    'LocalizedLabelLanguageCode:int64',
    'LocalizedLabel',
  ),
  GlobalOptionsetMetadata: cols(
    'OptionSetName',
    'Option:int64',
    'IsUserLocalizedLabel:boolean',
    'LocalizedLabelLanguageCode:int64',
    'LocalizedLabel',
    'GlobalOptionSetName',
    'EntityName',
    'ExternalValue',
  ),
  StateMetadata: cols(
    'EntityName',
    'State:int64',
    'IsUserLocalizedLabel:boolean',
    'LocalizedLabelLanguageCode:int64',
    'LocalizedLabel',
  ),
  StatusMetadata: cols(
    'EntityName',
    'State:int64',
    'Status:int64',
    'IsUserLocalizedLabel:boolean',
    'LocalizedLabelLanguageCode:int64',
    'LocalizedLabel',
  ),
  TargetMetadata: cols('EntityName', 'AttributeName', 'ReferencedEntity', 'ReferencedAttribute'),
};

function cols(...specs: string[]): SynapseLinkColumn[] {
  return specs.map((s) => {
    const [name, dataType] = s.split(':');
    return { name: name!, dataType: dataType ?? 'string' };
  });
}

/**
 * Creates what an extract step reads in place of OPENROWSET: the temp view `synapse_link_<table>` over the
 * completed folders of the window (after `start`, before `end`; a folder without `model.json` is not complete),
 * typed per each folder's `model.json`; and the label views (`OptionsetMetadata`, `StateMetadata`, …) over the
 * `OptionsetMetadata/` CSVs of the newest folder of the window that has them — the T-SQL twins read the same folder
 * (`filepath(1)` in the window, newest first), so neither reads a folder outside the window. A window without the
 * table gives an empty view with the columns the extract ranks on.
 */
export async function createSynapseLinkViews(
  duck: DuckDbStaging,
  containerDir: string,
  table: string,
  start: string,
  end: string,
): Promise<{ folders: readonly string[] }> {
  const inWindow = (f: string) =>
    f > start && (end === '' || f < end) && existsSync(path.join(containerDir, f, 'model.json'));
  const folders = await synapseLinkFolders(containerDir, table, inWindow);
  const relation = duckIdent(`synapse_link_${table}`);
  let body: string;
  if (folders.length) {
    const union = unionColumns(folders);
    const missing = REQUIRED.filter((r) => !union.some((c) => c.name.toLowerCase() === r.name.toLowerCase()));
    if (missing.some((m) => m.name === 'Id'))
      throw new ActivityError(
        'SynapseLinkModelMissing',
        `model.json of the window's folders gives table \`${table}\` no \`Id\` column; the extract needs it.`,
      );
    const extra = missing.map((m) => `CAST(NULL AS ${typedText(m, 'NULL').type}) AS ${duckIdent(m.name)}`);
    body = `SELECT *${extra.length ? `, ${extra.join(', ')}` : ''} FROM (${synapseLinkSelect(folders)})`;
  } else {
    // No folder of the window exported the table: no rows, with the columns of the container's root model.json
    // (as the T-SQL rendering and the local reader take them), so a custom extract still binds.
    const root = await rootColumns(containerDir, table);
    const columns = [
      ...root,
      ...REQUIRED.filter((r) => !root.some((c) => c.name.toLowerCase() === r.name.toLowerCase())),
    ];
    body = `SELECT ${columns.map((c) => `CAST(NULL AS ${typedText(c, 'NULL').type}) AS ${duckIdent(c.name)}`).join(', ')}, CAST(NULL AS VARCHAR) AS __folder WHERE false`;
  }
  await duck.run(`CREATE OR REPLACE TEMP VIEW ${relation} AS ${body}`);
  const candidates = (await readdir(containerDir, { withFileTypes: true }).catch(() => []))
    .filter(
      (e) => e.isDirectory() && inWindow(e.name) && existsSync(path.join(containerDir, e.name, 'OptionsetMetadata')),
    )
    .map((e) => e.name)
    .sort();
  const labels = candidates.at(-1);
  for (const [name, columns] of Object.entries(LABEL_FILES)) {
    const file = labels ? path.join(containerDir, labels, 'OptionsetMetadata', `${name}.csv`) : undefined;
    const typed = columns.map((c) => {
      const t = typedText(c, `r.${duckIdent(c.name)}`);
      return `CAST(${t.expression} AS ${t.type}) AS ${duckIdent(c.name)}`;
    });
    const from =
      file && existsSync(file)
        ? `read_csv([${duckLiteral(file)}], auto_detect = false, delim = ',', header = false, columns = {${columns.map((c) => `${duckLiteral(c.name)}: 'VARCHAR'`).join(', ')}}, quote = '"', escape = '"', null_padding = true) r`
        : `(SELECT ${columns.map((c) => `CAST(NULL AS VARCHAR) AS ${duckIdent(c.name)}`).join(', ')} WHERE false) r`;
    await duck.run(`CREATE OR REPLACE TEMP VIEW ${duckIdent(name)} AS SELECT ${typed.join(', ')} FROM ${from}`);
  }
  return { folders: folders.map((f) => f.folder) };
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
