import { readFile } from 'node:fs/promises';
import { UsageError } from '../../../../core/errors.js';
import { duckIdent, duckLiteral } from '../../../../dialects/duckdb/driver.js';
import { parseFetchXml } from '../connectors/dataverse-http.js';
import { type LakeFile, selectFiles } from '../connectors/lake-files.js';
import { msFromTicks, parseTimestamp } from '../expression/date-time.js';
import { isObject, type Json, type JsonObject } from '../expression/json-value.js';
import type { ActivityContext } from '../pipeline-engine.js';
import { checkKeys } from '../property-check.js';
import { ActivityError, UnsupportedError } from '../runtime-error.js';
import { lakeLocation, type ResolvedDataset, type RuntimeServices } from './runtime-services.js';

/** Rows of a source, materialised as a DuckDB temp table in the workspace database. */
export interface TabularData {
  /** Temp table name; absent when the source produced no schema (no file matched, no rows from Dataverse). */
  readonly table?: string;
  readonly columns: readonly { readonly name: string; readonly type: string }[];
  readonly rowsRead: number;
  readonly filesRead: number;
  readonly dataRead: number;
}

export const STORE_SETTINGS_KEYS = [
  'type',
  'recursive',
  'wildcardFolderPath',
  'wildcardFileName',
  'modifiedDatetimeStart',
  'modifiedDatetimeEnd',
  'fileListPath',
  'enablePartitionDiscovery',
  'partitionRootPath',
  'maxConcurrentConnections',
  'deleteFilesAfterCompletion',
];
export const SOURCE_KEYS: Record<string, readonly string[]> = {
  ParquetSource: ['type', 'storeSettings', 'additionalColumns', 'formatSettings'],
  DelimitedTextSource: ['type', 'storeSettings', 'formatSettings', 'additionalColumns'],
  AzureSqlSource: ['type', 'sqlReaderQuery', 'queryTimeout', 'partitionOption', 'additionalColumns', 'isolationLevel'],
  CommonDataServiceForAppsSource: ['type', 'query', 'additionalColumns'],
};

let tempCounter = 0;

/** Loads a Copy/Lookup source into a temp table of the workspace database. */
export async function loadSource(
  services: RuntimeServices,
  source: JsonObject,
  dataset: ResolvedDataset,
  ctx: ActivityContext,
): Promise<TabularData> {
  const type = String(source.type);
  const known = SOURCE_KEYS[type];
  if (!known)
    throw new UnsupportedError(
      `Source type \`${type}\` (activity \`${ctx.name}\`) is not implemented by the local runtime; supported: ${Object.keys(SOURCE_KEYS).join(', ')}.`,
    );
  checkKeys(source, known, `the ${type} of \`${ctx.name}\``);
  const table = `__src_${process.pid}_${++tempCounter}`;
  switch (type) {
    case 'ParquetSource':
    case 'DelimitedTextSource':
      return loadFiles(services, type, source, dataset, ctx, table);
    case 'AzureSqlSource':
      return loadSql(services, source, dataset, ctx, table);
    default:
      return loadDataverse(services, source, dataset, ctx, table);
  }
}

/** Drops a temp table made by `loadSource`. */
export async function dropSource(services: RuntimeServices, data: TabularData): Promise<void> {
  if (data.table) await services.sql.duck.run(`DROP TABLE IF EXISTS ${duckIdent(data.table)}`);
}

async function describe(services: RuntimeServices, table: string): Promise<{ name: string; type: string }[]> {
  const rows = await services.sql.duck.all(`DESCRIBE ${duckIdent(table)}`);
  return rows.map((r) => ({ name: String(r.column_name), type: String(r.column_type) }));
}

async function count(services: RuntimeServices, table: string): Promise<number> {
  const rows = await services.sql.duck.all(`SELECT count(*) AS n FROM ${duckIdent(table)}`);
  return Number(rows[0]?.n ?? 0);
}

function timeBound(value: Json | undefined, what: string): number | undefined {
  if (value === undefined || value === null || value === '') return undefined; // an empty bound is no bound (SILENT)
  return msFromTicks(parseTimestamp(value, what));
}

async function loadFiles(
  services: RuntimeServices,
  type: string,
  source: JsonObject,
  dataset: ResolvedDataset,
  ctx: ActivityContext,
  table: string,
): Promise<TabularData> {
  const expected = type === 'ParquetSource' ? 'Parquet' : 'DelimitedText';
  if (dataset.type !== expected)
    throw new UsageError(
      `${type} of \`${ctx.name}\` reads dataset \`${dataset.name}\` of type \`${dataset.type}\`; it needs a ${expected} dataset.`,
    );
  const location = lakeLocation(dataset);
  const store = isObject(source.storeSettings) ? source.storeSettings : { type: 'AzureBlobFSReadSettings' };
  checkKeys(store, STORE_SETTINGS_KEYS, `storeSettings of \`${ctx.name}\``);
  if (store.type !== 'AzureBlobFSReadSettings')
    throw new UnsupportedError(
      `storeSettings type \`${store.type}\` of \`${ctx.name}\` is not implemented; use AzureBlobFSReadSettings.`,
    );
  if (store.enablePartitionDiscovery === true)
    throw new UnsupportedError(
      `\`enablePartitionDiscovery: true\` of \`${ctx.name}\` is not implemented by the local runtime.`,
    );
  if (store.deleteFilesAfterCompletion === true)
    throw new UnsupportedError(
      `\`deleteFilesAfterCompletion\` of \`${ctx.name}\` is not implemented by the local runtime.`,
    );
  if (store.partitionRootPath !== undefined)
    throw new UnsupportedError(`\`partitionRootPath\` of \`${ctx.name}\` is not implemented by the local runtime.`);
  const container = services.storage.container(location.fileSystem);
  let fileList: string[] | undefined;
  if (store.fileListPath !== undefined) {
    const listPath = String(ctx.evaluate(store.fileListPath));
    const [fs, ...rest] = listPath.split('/');
    const text = await readFile(services.storage.resolve(fs!, rest.join('/')), 'utf8').catch((error) => {
      throw new ActivityError(
        'FileListNotFound',
        `fileListPath \`${listPath}\` of \`${ctx.name}\` cannot be read: ${(error as Error).message}`,
      );
    });
    fileList = text
      .split(/\r?\n/)
      .map((l) => l.trim())
      .filter(Boolean);
  }
  const wildcardFolderPath =
    store.wildcardFolderPath === undefined ? undefined : String(ctx.evaluate(store.wildcardFolderPath));
  const wildcardFileName =
    store.wildcardFileName === undefined ? undefined : String(ctx.evaluate(store.wildcardFileName));
  const files = await selectFiles(container, {
    folderPath: location.folderPath,
    ...(location.fileName !== undefined ? { fileName: location.fileName } : {}),
    ...(wildcardFolderPath !== undefined ? { wildcardFolderPath } : {}),
    ...(wildcardFileName !== undefined ? { wildcardFileName } : {}),
    recursive: store.recursive === undefined ? true : ctx.evaluate(store.recursive) === true,
    ...optional(
      'modifiedStartMs',
      timeBound(
        store.modifiedDatetimeStart === undefined ? undefined : ctx.evaluate(store.modifiedDatetimeStart),
        'modifiedDatetimeStart',
      ),
    ),
    ...optional(
      'modifiedEndMs',
      timeBound(
        store.modifiedDatetimeEnd === undefined ? undefined : ctx.evaluate(store.modifiedDatetimeEnd),
        'modifiedDatetimeEnd',
      ),
    ),
    ...(fileList ? { fileList } : {}),
  });
  if (files.length === 0) {
    if (services.noFilesFound === 'fail')
      throw new ActivityError(
        'NoFilesFound',
        `No file under \`${location.fileSystem}/${wildcardFolderPath ?? location.folderPath}\` matched the source of \`${ctx.name}\`.`,
      );
    return { columns: [], rowsRead: 0, filesRead: 0, dataRead: 0 };
  }
  const list = `[${files.map((f) => duckLiteral(f.absolutePath)).join(', ')}]`;
  const reader =
    type === 'ParquetSource'
      ? `read_parquet(${list}, union_by_name = true, filename = true)`
      : csvReader(dataset, source, ctx, list);
  const extra = additionalColumns(source, ctx, container, location.folderPath);
  try {
    await services.sql.duck.run(
      `CREATE TEMP TABLE ${duckIdent(table)} AS SELECT * EXCLUDE (filename)${extra} FROM ${reader}`,
    );
  } catch (error) {
    throw new ActivityError(
      'SourceReadFailed',
      `Reading ${files.length} file(s) for \`${ctx.name}\` failed: ${(error as Error).message}`,
      { cause: error },
    );
  }
  if (type === 'DelimitedTextSource') await renameHeaderless(services, dataset, table);
  return {
    table,
    columns: await describe(services, table),
    rowsRead: await count(services, table),
    filesRead: files.length,
    dataRead: files.reduce((n, f: LakeFile) => n + f.size, 0),
  };
}

function optional<K extends string>(key: K, value: number | undefined): Partial<Record<K, number>> {
  return value === undefined ? {} : ({ [key]: value } as Record<K, number>);
}

function csvReader(dataset: ResolvedDataset, source: JsonObject, ctx: ActivityContext, list: string): string {
  const tp = dataset.typeProperties;
  checkKeys(
    tp,
    [
      'location',
      'columnDelimiter',
      'rowDelimiter',
      'quoteChar',
      'escapeChar',
      'firstRowAsHeader',
      'nullValue',
      'encodingName',
      'compressionCodec',
    ],
    `DelimitedText dataset \`${dataset.name}\``,
  );
  if (tp.encodingName !== undefined && !/^utf-?8$/i.test(String(tp.encodingName)))
    throw new UnsupportedError(
      `encodingName \`${tp.encodingName}\` of \`${dataset.name}\` is not implemented; only UTF-8.`,
    );
  if (tp.compressionCodec !== undefined && tp.compressionCodec !== 'none')
    throw new UnsupportedError(
      `compressionCodec \`${tp.compressionCodec}\` of \`${dataset.name}\` is not implemented.`,
    );
  const format = isObject(source.formatSettings) ? source.formatSettings : {};
  checkKeys(format, ['type', 'skipLineCount'], `formatSettings of \`${ctx.name}\``);
  // Documented defaults: delimiter `,`, quote `"`, escape `\`, no header, empty string = NULL (format-delimited-text).
  const delim = tp.columnDelimiter === undefined ? ',' : String(tp.columnDelimiter);
  if (delim.length !== 1)
    throw new ActivityError(
      'InvalidDelimiter',
      `Copy supports a single-character columnDelimiter; \`${delim}\` of \`${dataset.name}\` is not one.`,
    );
  const quote = tp.quoteChar === undefined ? '"' : String(tp.quoteChar);
  const escapeChar = tp.escapeChar === undefined ? '\\' : String(tp.escapeChar);
  const header = tp.firstRowAsHeader === true;
  const nullValue = tp.nullValue === undefined ? '' : String(tp.nullValue);
  const skip = format.skipLineCount === undefined ? 0 : Number(format.skipLineCount);
  return `read_csv(${list}, delim = ${duckLiteral(delim)}, quote = ${duckLiteral(quote)}, escape = ${duckLiteral(escapeChar)}, header = ${header}, all_varchar = true, nullstr = ${duckLiteral(nullValue)}, skip = ${skip}, filename = true, null_padding = false)`;
}

/** Headerless text columns are named `Prop_0, Prop_1, …` (the service's generated names). */
async function renameHeaderless(services: RuntimeServices, dataset: ResolvedDataset, table: string): Promise<void> {
  if (dataset.typeProperties.firstRowAsHeader === true) return;
  for (const c of await describe(services, table)) {
    const m = /^column(\d+)$/.exec(c.name);
    if (m)
      await services.sql.duck.run(
        `ALTER TABLE ${duckIdent(table)} RENAME COLUMN ${duckIdent(c.name)} TO ${duckIdent(`Prop_${Number(m[1])}`)}`,
      );
  }
}

/** `additionalColumns`: `$$FILEPATH` (path relative to the dataset folder), `$$COLUMN:<col>`, or a value. */
function additionalColumns(source: JsonObject, ctx: ActivityContext, container?: string, folderPath?: string): string {
  if (source.additionalColumns === undefined) return '';
  if (!Array.isArray(source.additionalColumns))
    throw new UsageError(`additionalColumns of \`${ctx.name}\` is not a list.`);
  let out = '';
  for (const c of source.additionalColumns) {
    if (!isObject(c) || typeof c.name !== 'string')
      throw new UsageError(`An additional column of \`${ctx.name}\` has no name.`);
    const value = ctx.evaluate(c.value);
    if (value === '$$FILEPATH') {
      if (container === undefined) throw new UsageError(`\`$$FILEPATH\` in \`${ctx.name}\` needs a file-based source.`);
      const prefix = `${container.replace(/\/+$/, '')}/${folderPath ? `${folderPath.replace(/^\/+|\/+$/g, '')}/` : ''}`;
      out += `, CASE WHEN starts_with(filename, ${duckLiteral(prefix)}) THEN substr(filename, ${prefix.length + 1}) ELSE filename END AS ${duckIdent(c.name)}`;
    } else if (typeof value === 'string' && value.startsWith('$$COLUMN:')) {
      out += `, ${duckIdent(value.slice('$$COLUMN:'.length))} AS ${duckIdent(c.name)}`;
    } else {
      out += `, ${value === null ? 'NULL' : duckLiteral(typeof value === 'string' ? value : JSON.stringify(value))} AS ${duckIdent(c.name)}`;
    }
  }
  return out;
}

async function loadSql(
  services: RuntimeServices,
  source: JsonObject,
  dataset: ResolvedDataset,
  ctx: ActivityContext,
  table: string,
): Promise<TabularData> {
  if (dataset.type !== 'AzureSqlTable')
    throw new UsageError(
      `AzureSqlSource of \`${ctx.name}\` reads dataset \`${dataset.name}\` of type \`${dataset.type}\`; it needs an AzureSqlTable dataset.`,
    );
  if (source.partitionOption !== undefined && source.partitionOption !== 'None')
    throw new UnsupportedError(`partitionOption \`${source.partitionOption}\` of \`${ctx.name}\` is not implemented.`);
  const query = source.sqlReaderQuery === undefined ? undefined : String(ctx.evaluate(source.sqlReaderQuery));
  const text =
    query ??
    `SELECT * FROM ${duckIdent(String(dataset.typeProperties.schema ?? 'main'))}.${duckIdent(String(dataset.typeProperties.table))}`;
  const sql = services.sql.render({
    text,
    where: `The source query of \`${ctx.name}\``,
    linkedService: dataset.linkedService.name,
    evaluate: (expression) => ctx.evaluate(expression),
  });
  try {
    // additionalColumns apply to every Copy source (copy-activity-overview, "Add additional columns during copy").
    const extra = additionalColumns(source, ctx);
    await services.sql.duck.run(
      `CREATE TEMP TABLE ${duckIdent(table)} AS ${extra ? `SELECT __q.*${extra} FROM (${sql}) AS __q` : sql}`,
    );
  } catch (error) {
    throw new ActivityError(
      'SqlFailed',
      `The source query of \`${ctx.name}\` failed on the workspace DuckDB database: ${(error as Error).message}`,
      { cause: error },
    );
  }
  return {
    table,
    columns: await describe(services, table),
    rowsRead: await count(services, table),
    filesRead: 0,
    dataRead: 0,
  };
}

async function createFromRows(
  services: RuntimeServices,
  table: string,
  rows: readonly JsonObject[],
  columns: readonly string[],
): Promise<void> {
  const types = columns.map((c) => {
    const sample = rows.find((r) => r[c] !== null && r[c] !== undefined)?.[c];
    return typeof sample === 'number'
      ? rows.every((r) => r[c] === null || Number.isInteger(r[c]))
        ? 'BIGINT'
        : 'DOUBLE'
      : typeof sample === 'boolean'
        ? 'BOOLEAN'
        : 'VARCHAR';
  });
  await services.sql.duck.run(
    `CREATE TEMP TABLE ${duckIdent(table)} (${columns.map((c, i) => `${duckIdent(c)} ${types[i]}`).join(', ')})`,
  );
  for (let i = 0; i < rows.length; i += 500) {
    const chunk = rows.slice(i, i + 500);
    const values = chunk
      .map(
        (r) =>
          `(${columns
            .map((c) => {
              const v = r[c];
              return v === null || v === undefined
                ? 'NULL'
                : typeof v === 'number' || typeof v === 'boolean'
                  ? String(v)
                  : duckLiteral(typeof v === 'string' ? v : JSON.stringify(v));
            })
            .join(', ')})`,
      )
      .join(', ');
    if (values) await services.sql.duck.run(`INSERT INTO ${duckIdent(table)} VALUES ${values}`);
  }
}

async function loadDataverse(
  services: RuntimeServices,
  source: JsonObject,
  dataset: ResolvedDataset,
  ctx: ActivityContext,
  table: string,
): Promise<TabularData> {
  if (!services.dataverse)
    throw new UsageError(
      `\`${ctx.name}\` reads Dataverse, but the runtime has no Dataverse URL; pass \`dataverseUrl\` (CLI: \`--dataverse <url>\`, e.g. the emulator).`,
    );
  const query = source.query === undefined ? undefined : String(ctx.evaluate(source.query));
  const fetch = query ? parseFetchXml(query) : undefined;
  const entityName = fetch ? fetch.entity : String(dataset.typeProperties.entityName ?? '');
  if (!entityName) throw new UsageError(`\`${ctx.name}\` has neither a FetchXML query nor a dataset entityName.`);
  const meta = await services.dataverse.table(entityName);
  const requested = fetch ? fetch.attributes : dataset.schema.map((s) => String(s.name));
  // The primary key column is always copied (connector-dynamics-crm-office-365, "Dynamics as a source type").
  const columns = [...new Set([meta.primaryIdAttribute, ...requested])];
  for (const c of columns) {
    if (!meta.attributes.has(c))
      throw new ActivityError(
        'DynamicsOperationFailed',
        `Dynamics operation failed with error code: 0x80041103, error message: 'entity' entity doesn't contain attribute with Name = '${c}'.`,
      );
  }
  const rows = await services.dataverse.query(meta, columns, { count: 5, waitMs: 5000 }, fetch?.conditions ?? []);
  let schema: string[];
  if (dataset.schema.length > 0) schema = dataset.schema.map((s) => String(s.name));
  else {
    // Without an explicit schema, columns are inferred from the top 10 records and columns null in all of them are
    // omitted; no rows means no schema (connector-troubleshoot-dynamics-dataverse).
    const sample = rows.slice(0, 10);
    schema = columns.filter((c) => sample.some((r) => r[c] !== null && r[c] !== undefined));
    if (schema.length === 0) {
      throw new ActivityError(
        'DynamicsMissingSchema',
        'The valid structure information (column name and type) are required for Dynamics source.',
      );
    }
  }
  const extraCols = Array.isArray(source.additionalColumns) ? (source.additionalColumns as JsonObject[]) : [];
  const withExtra = rows.map((r) => {
    const o: JsonObject = {};
    for (const c of schema) o[c] = r[c] ?? null;
    for (const e of extraCols) o[String(e.name)] = ctx.evaluate(e.value);
    return o;
  });
  await createFromRows(services, table, withExtra, [...schema, ...extraCols.map((e) => String(e.name))]);
  return { table, columns: await describe(services, table), rowsRead: rows.length, filesRead: 0, dataRead: 0 };
}
