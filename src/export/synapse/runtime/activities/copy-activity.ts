import { mkdir, rename, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { UsageError } from '../../../../core/errors.js';
import { duckIdent, duckLiteral } from '../../../../dialects/duckdb/driver.js';
import { DataverseRefusal, type DataverseTable, keyLiteral, LOOKUP_TYPES } from '../connectors/dataverse-http.js';
import { joinPath } from '../connectors/lake-files.js';
import { toJsonRow } from '../connectors/sql-engine.js';
import { isObject, type Json, type JsonObject } from '../expression/json-value.js';
import type { ActivityContext } from '../pipeline-engine.js';
import { timeSpanMs } from '../pipeline-engine.js';
import { checkKeys } from '../property-check.js';
import { ActivityError, UnsupportedError } from '../runtime-error.js';
import {
  lakeLocation,
  type ResolvedDataset,
  type RuntimeServices,
  resolveDataset,
  resolveLinkedService,
} from './runtime-services.js';
import { dropSource, loadSource, type TabularData } from './tabular-source.js';

export const COPY_KEYS = [
  'source',
  'sink',
  'enableStaging',
  'enableSkipIncompatibleRow',
  'redirectIncompatibleRowSettings',
  'translator',
  'parallelCopies',
  'dataIntegrationUnits',
];
export const SINK_KEYS: Record<string, readonly string[]> = {
  AzureSqlSink: [
    'type',
    'preCopyScript',
    'tableOption',
    'writeBehavior',
    'upsertSettings',
    'writeBatchSize',
    'writeBatchTimeout',
    'sqlWriterUseTableLock',
    'maxConcurrentConnections',
    'disableMetricsCollection',
  ],
  ParquetSink: ['type', 'storeSettings', 'formatSettings'],
  CommonDataServiceForAppsSink: [
    'type',
    'writeBehavior',
    'alternateKeyName',
    'ignoreNullValues',
    'writeBatchSize',
    'maxConcurrentConnections',
    'sinkRetryCount',
    'sinkRetryWait',
    'writeBatchTimeout',
  ],
};

interface SinkResult {
  rowsCopied: number;
  rowsSkipped: number;
  filesWritten: number;
  dataWritten: number;
  logFilePath?: string;
}

/** Copy (copy-activity-overview): a source into a sink, with the connector semantics of each side. */
export async function copyActivity(services: RuntimeServices, ctx: ActivityContext): Promise<Json> {
  const tp = isObject(ctx.activity.typeProperties) ? ctx.activity.typeProperties : {};
  checkKeys(tp, COPY_KEYS, `Copy activity \`${ctx.name}\``);
  if (tp.enableStaging === true)
    throw new UnsupportedError(`enableStaging of Copy \`${ctx.name}\` is not implemented by the local runtime.`);
  const inputs = Array.isArray(ctx.activity.inputs) ? ctx.activity.inputs : [];
  const outputs = Array.isArray(ctx.activity.outputs) ? ctx.activity.outputs : [];
  if (inputs.length !== 1 || outputs.length !== 1)
    throw new UsageError(`Copy \`${ctx.name}\` needs exactly one input and one output dataset.`);
  if (!isObject(tp.source) || !isObject(tp.sink))
    throw new UsageError(`Copy \`${ctx.name}\` needs a source and a sink.`);
  const sink = tp.sink;
  const sinkType = String(sink.type);
  const sinkKeys = SINK_KEYS[sinkType];
  if (!sinkKeys)
    throw new UnsupportedError(
      `Sink type \`${sinkType}\` (Copy \`${ctx.name}\`) is not implemented by the local runtime; supported: ${Object.keys(SINK_KEYS).join(', ')}.`,
    );
  checkKeys(sink, sinkKeys, `the ${sinkType} of \`${ctx.name}\``);
  const started = ctx.clock.nowMs();
  const inputDataset = resolveDataset(services, inputs[0], ctx);
  const outputDataset = resolveDataset(services, outputs[0], ctx);
  if (sinkType === 'CommonDataServiceForAppsSink' && tp.translator !== undefined) {
    // connector-troubleshoot-dynamics-dataverse: sink columns of an explicit mapping need their `type`.
    const t = ctx.evaluate(tp.translator);
    const untyped = (isObject(t) && Array.isArray(t.mappings) ? t.mappings : []).filter(
      (m) => isObject(m) && isObject(m.sink) && typeof m.sink.type !== 'string',
    );
    if (untyped.length)
      throw new ActivityError(
        'DynamicsInvalidSchemaDefinition',
        `The valid structure information (column name and type) are required for Dynamics source. Sink column(s) ${untyped.map((m) => `\`${String(((m as JsonObject).sink as JsonObject).name)}\``).join(', ')} of \`${ctx.name}\` have no \`type\` in the mapping.`,
      );
  }
  const data = await loadSource(services, tp.source, inputDataset, ctx);
  try {
    const mapped = await applyTranslator(services, data, tp.translator, ctx);
    let result: SinkResult;
    if (sinkType === 'AzureSqlSink') result = await sqlSink(services, sink, outputDataset, mapped, ctx);
    else if (sinkType === 'ParquetSink') result = await parquetSink(services, sink, outputDataset, mapped, ctx);
    else result = await dataverseSink(services, sink, outputDataset, mapped, tp, ctx);
    return {
      dataRead: data.dataRead,
      dataWritten: result.dataWritten,
      filesRead: data.filesRead,
      filesWritten: result.filesWritten,
      rowsRead: data.rowsRead,
      rowsCopied: result.rowsCopied,
      ...(tp.enableSkipIncompatibleRow === true ? { rowsSkipped: result.rowsSkipped } : {}),
      ...(result.logFilePath ? { logFilePath: result.logFilePath } : {}),
      copyDuration: Math.round((ctx.clock.nowMs() - started) / 1000),
      effectiveIntegrationRuntime: 'ferry local runtime',
      errors: [],
    };
  } finally {
    await dropSource(services, data);
  }
}

/** TabularTranslator mappings: only mapped columns are copied, by name (case-sensitive) or 1-based ordinal. */
async function applyTranslator(
  services: RuntimeServices,
  data: TabularData,
  translator: unknown,
  ctx: ActivityContext,
): Promise<TabularData> {
  if (translator === undefined) return data;
  const t = ctx.evaluate(translator);
  if (!isObject(t) || t.type !== 'TabularTranslator')
    throw new UnsupportedError(`translator of \`${ctx.name}\` is not a TabularTranslator.`);
  checkKeys(t, ['type', 'mappings'], `the translator of \`${ctx.name}\``);
  if (!Array.isArray(t.mappings)) throw new UsageError(`TabularTranslator of \`${ctx.name}\` has no mappings.`);
  if (!data.table) return data;
  const select = t.mappings.map((m, i) => {
    if (!isObject(m) || !isObject(m.source) || !isObject(m.sink))
      throw new UsageError(`Mapping ${i + 1} of \`${ctx.name}\` needs source and sink.`);
    checkKeys(m.source, ['name', 'ordinal', 'type'], `mapping ${i + 1} source of \`${ctx.name}\``);
    checkKeys(m.sink, ['name', 'type'], `mapping ${i + 1} sink of \`${ctx.name}\``);
    const from = typeof m.source.name === 'string' ? m.source.name : data.columns[Number(m.source.ordinal) - 1]?.name;
    if (from === undefined || !data.columns.some((c) => c.name === from))
      throw new ActivityError(
        'ColumnNotFound',
        `Mapping ${i + 1} of \`${ctx.name}\` reads source column \`${m.source.name ?? `#${m.source.ordinal}`}\`, which the source does not have (columns: ${data.columns.map((c) => c.name).join(', ')}).`,
      );
    return `${duckIdent(from)} AS ${duckIdent(String(m.sink.name))}`;
  });
  const table = `${data.table}_mapped`;
  await services.sql.duck.run(
    `CREATE TEMP TABLE ${duckIdent(table)} AS SELECT ${select.join(', ')} FROM ${duckIdent(data.table)}`,
  );
  await services.sql.duck.run(`DROP TABLE ${duckIdent(data.table)}`);
  const cols = await services.sql.duck.all(`DESCRIBE ${duckIdent(table)}`);
  return { ...data, table, columns: cols.map((c) => ({ name: String(c.column_name), type: String(c.column_type) })) };
}

/** Azure SQL sink (connector-azure-sql-database): preCopyScript once, autoCreate from the source schema, insert/upsert. */
async function sqlSink(
  services: RuntimeServices,
  sink: JsonObject,
  dataset: ResolvedDataset,
  data: TabularData,
  ctx: ActivityContext,
): Promise<SinkResult> {
  if (dataset.type !== 'AzureSqlTable')
    throw new UsageError(
      `AzureSqlSink of \`${ctx.name}\` writes dataset \`${dataset.name}\` of type \`${dataset.type}\`; it needs AzureSqlTable.`,
    );
  const schema = String(dataset.typeProperties.schema ?? 'dbo');
  const tableName = dataset.typeProperties.table;
  if (typeof tableName !== 'string' || !tableName)
    throw new UsageError(`Dataset \`${dataset.name}\` has no table for \`${ctx.name}\`.`);
  const target = `${duckIdent(schema)}.${duckIdent(tableName)}`;
  const duck = services.sql.duck;
  if (sink.preCopyScript !== undefined) {
    const script = ctx.evaluate(sink.preCopyScript);
    await services.sql.execute({
      text: String(script),
      where: `The preCopyScript of \`${ctx.name}\``,
      linkedService: dataset.linkedService.name,
      evaluate: (expression) => ctx.evaluate(expression),
    });
  }
  await duck.run(`CREATE SCHEMA IF NOT EXISTS ${duckIdent(schema)}`);
  const existing = await duck.all(
    `SELECT column_name FROM information_schema.columns WHERE table_schema = ${duckLiteral(schema)} AND table_name = ${duckLiteral(tableName)} ORDER BY ordinal_position`,
  );
  const tableOption = sink.tableOption === undefined ? 'none' : String(ctx.evaluate(sink.tableOption));
  if (tableOption !== 'none' && tableOption !== 'autoCreate')
    throw new UsageError(`tableOption \`${tableOption}\` of \`${ctx.name}\` is unknown; use none or autoCreate.`);
  if (existing.length === 0) {
    if (tableOption !== 'autoCreate')
      throw new ActivityError(
        'SqlInvalidObjectName',
        `Invalid object name '${schema}.${tableName}': the sink table of \`${ctx.name}\` does not exist and tableOption is not autoCreate.`,
      );
    if (!data.table) {
      // autoCreate derives the table from the source schema; a source without schema (no file matched) has none.
      throw new ActivityError(
        'SinkAutoCreateWithoutSchema',
        `Copy \`${ctx.name}\` cannot auto-create \`${schema}.${tableName}\`: the source produced no schema (no file or row was read). Pre-create the table or guard the copy.`,
      );
    }
    await duck.run(`CREATE TABLE ${target} (${data.columns.map((c) => `${duckIdent(c.name)} ${c.type}`).join(', ')})`);
  }
  if (!data.table) return { rowsCopied: 0, rowsSkipped: 0, filesWritten: 0, dataWritten: 0 };
  const sinkColumns = existing.length ? existing.map((r) => String(r.column_name)) : data.columns.map((c) => c.name);
  // Mapping by name, case-sensitive: an existing sink table must contain every source column (copy-activity-schema-and-type-mapping).
  const missing = data.columns.filter((c) => !sinkColumns.includes(c.name));
  if (missing.length)
    throw new ActivityError(
      'SqlColumnNotFound',
      `Sink table \`${schema}.${tableName}\` of \`${ctx.name}\` has no column ${missing.map((c) => `\`${c.name}\``).join(', ')}; add them or map the columns.`,
    );
  const cols = data.columns.map((c) => duckIdent(c.name)).join(', ');
  const behavior = sink.writeBehavior === undefined ? 'insert' : String(ctx.evaluate(sink.writeBehavior)).toLowerCase();
  await duck.run('BEGIN TRANSACTION');
  try {
    if (behavior === 'upsert') {
      const settings = isObject(sink.upsertSettings) ? sink.upsertSettings : {};
      checkKeys(settings, ['useTempDB', 'interimSchemaName', 'keys'], `upsertSettings of \`${ctx.name}\``);
      const keys = Array.isArray(settings.keys)
        ? settings.keys.map(String)
        : await primaryKey(services, schema, tableName);
      if (keys.length === 0)
        throw new ActivityError(
          'SqlUpsertKeysMissing',
          `Upsert of \`${ctx.name}\` needs upsertSettings.keys or a primary key on \`${schema}.${tableName}\`.`,
        );
      const dupes = await duck.all(
        `SELECT ${keys.map(duckIdent).join(', ')}, count(*) AS n FROM ${duckIdent(data.table)} GROUP BY ALL HAVING count(*) > 1 LIMIT 1`,
      );
      if (dupes.length)
        throw new ActivityError(
          'SqlUpsertDuplicateKey',
          `Upsert of \`${ctx.name}\` has key ${JSON.stringify(toJsonRow(dupes[0]!))} more than once in one copy; the behaviour is undocumented, so the runtime refuses it.`,
        );
      await duck.run(
        `DELETE FROM ${target} WHERE (${keys.map(duckIdent).join(', ')}) IN (SELECT (${keys.map(duckIdent).join(', ')}) FROM ${duckIdent(data.table)})`,
      );
    } else if (behavior !== 'insert') {
      throw new UsageError(`writeBehavior \`${behavior}\` of \`${ctx.name}\` is unknown; use insert or upsert.`);
    }
    await duck.run(`INSERT INTO ${target} (${cols}) SELECT ${cols} FROM ${duckIdent(data.table)}`);
    await duck.run('COMMIT');
  } catch (error) {
    await duck.run('ROLLBACK');
    if (error instanceof ActivityError || error instanceof UsageError) throw error;
    throw new ActivityError(
      'SqlWriteFailed',
      `Writing \`${schema}.${tableName}\` for \`${ctx.name}\` failed: ${(error as Error).message}`,
      { cause: error },
    );
  }
  return { rowsCopied: data.rowsRead, rowsSkipped: 0, filesWritten: 0, dataWritten: 0 };
}

async function primaryKey(services: RuntimeServices, schema: string, table: string): Promise<string[]> {
  const rows = await services.sql.duck.all(
    `SELECT unnest(constraint_column_names) AS c FROM duckdb_constraints() WHERE schema_name = ${duckLiteral(schema)} AND table_name = ${duckLiteral(table)} AND constraint_type = 'PRIMARY KEY'`,
  );
  return rows.map((r) => String(r.c));
}

/** Parquet sink: DuckDB `COPY … (FORMAT parquet)`, written next to the target and renamed into place. */
async function parquetSink(
  services: RuntimeServices,
  sink: JsonObject,
  dataset: ResolvedDataset,
  data: TabularData,
  ctx: ActivityContext,
): Promise<SinkResult> {
  if (dataset.type !== 'Parquet')
    throw new UsageError(
      `ParquetSink of \`${ctx.name}\` writes dataset \`${dataset.name}\` of type \`${dataset.type}\`; it needs a Parquet dataset.`,
    );
  checkKeys(dataset.typeProperties, ['location', 'compressionCodec'], `Parquet dataset \`${dataset.name}\``);
  const store = isObject(sink.storeSettings) ? sink.storeSettings : {};
  checkKeys(store, ['type', 'copyBehavior', 'maxConcurrentConnections'], `storeSettings of \`${ctx.name}\``);
  if (store.copyBehavior !== undefined && store.copyBehavior !== 'PreserveHierarchy')
    throw new UnsupportedError(`copyBehavior \`${store.copyBehavior}\` of \`${ctx.name}\` is not implemented.`);
  const format = isObject(sink.formatSettings) ? sink.formatSettings : {};
  checkKeys(format, ['type'], `formatSettings of \`${ctx.name}\``);
  const location = lakeLocation(dataset);
  const codec = String(dataset.typeProperties.compressionCodec ?? 'snappy').toLowerCase();
  if (!['snappy', 'gzip', 'none'].includes(codec))
    throw new UnsupportedError(
      `compressionCodec \`${codec}\` of \`${dataset.name}\` is not implemented; use snappy, gzip or none.`,
    );
  // Without a fileName the service names the file itself (undocumented); the runtime uses data_<activity run id>.parquet.
  const fileName = location.fileName ?? `data_${ctx.activityRunId}.parquet`;
  const relative = joinPath(location.folderPath, fileName);
  const full = services.storage.resolve(location.fileSystem, relative);
  await mkdir(path.dirname(full), { recursive: true });
  const tmp = `${full}.tmp-${ctx.activityRunId}`;
  const select = data.table ? `SELECT * FROM ${duckIdent(data.table)}` : undefined;
  if (!select) return { rowsCopied: 0, rowsSkipped: 0, filesWritten: 0, dataWritten: 0 };
  await services.sql.duck.run(
    `COPY (${select}) TO ${duckLiteral(tmp)} (FORMAT parquet, COMPRESSION ${codec === 'none' ? 'uncompressed' : codec})`,
  );
  await rename(tmp, full);
  const size = (await stat(full)).size;
  return { rowsCopied: data.rowsRead, rowsSkipped: 0, filesWritten: 1, dataWritten: size };
}

/**
 * Dataverse sink (connector-dynamics-crm-office-365): upsert by primary key or `alternateKeyName`, lookups written as
 * references, multi-target lookups need `<column>@EntityReference`, MultiSelectPicklist is unsupported, a refused row
 * fails the activity with `DynamicsOperationFailed` (rows before it stay written).
 */
async function dataverseSink(
  services: RuntimeServices,
  sink: JsonObject,
  dataset: ResolvedDataset,
  data: TabularData,
  tp: JsonObject,
  ctx: ActivityContext,
): Promise<SinkResult> {
  if (!services.dataverse)
    throw new UsageError(
      `\`${ctx.name}\` writes Dataverse, but the runtime has no Dataverse URL; pass \`dataverseUrl\` (CLI: \`--dataverse <url>\`).`,
    );
  if (dataset.type !== 'CommonDataServiceForAppsEntity')
    throw new UsageError(
      `Dataverse sink of \`${ctx.name}\` writes dataset \`${dataset.name}\` of type \`${dataset.type}\`.`,
    );
  const behavior = String(ctx.evaluate(sink.writeBehavior ?? ''));
  if (behavior.toLowerCase() !== 'upsert')
    throw new ActivityError(
      'DynamicsInvalidWriteBehavior',
      `writeBehavior of \`${ctx.name}\` is \`${behavior}\`; the Dataverse sink supports only Upsert.`,
    );
  const entityName = String(dataset.typeProperties.entityName ?? '');
  const table = await services.dataverse.table(entityName);
  const ignoreNulls = sink.ignoreNullValues === undefined ? false : ctx.evaluate(sink.ignoreNullValues) === true;
  const batchSize = sink.writeBatchSize === undefined ? 10 : Number(ctx.evaluate(sink.writeBatchSize));
  if (!Number.isInteger(batchSize) || batchSize < 1)
    throw new UsageError(`writeBatchSize \`${sink.writeBatchSize}\` of \`${ctx.name}\` is not a positive integer.`);
  // sinkRetryCount/sinkRetryWait exist in the SDK model without documented defaults; the runtime retries throttling
  // (429) and 503 up to 10 times, waiting Retry-After (or sinkRetryWait, default 5 s).
  const retry = {
    count: sink.sinkRetryCount === undefined ? 10 : Number(ctx.evaluate(sink.sinkRetryCount)),
    waitMs:
      sink.sinkRetryWait === undefined
        ? 5000
        : timeSpanMs(ctx.evaluate(sink.sinkRetryWait), `sinkRetryWait of \`${ctx.name}\``),
  };
  const columns = data.columns.map((c) => c.name);
  const plan = planColumns(
    table,
    columns,
    sink.alternateKeyName === undefined ? undefined : String(ctx.evaluate(sink.alternateKeyName)),
    ctx,
  );
  if (!data.table) return { rowsCopied: 0, rowsSkipped: 0, filesWritten: 0, dataWritten: 0 };
  const setNames = new Map<string, string>();
  for (const c of columns) {
    const attribute = table.attributes.get(c);
    if (!attribute || !LOOKUP_TYPES.has(attribute.typeName)) continue;
    for (const target of attribute.targets) {
      if (!setNames.has(target)) setNames.set(target, (await services.dataverse.table(target)).entitySetName);
    }
  }
  const rows = (await services.sql.duck.all(`SELECT * FROM ${duckIdent(data.table)}`)).map(toJsonRow);
  const skipIncompatible = tp.enableSkipIncompatibleRow === true;
  const skipped: { row: JsonObject; reason: string }[] = [];
  let copied = 0;
  for (let start = 0; start < rows.length; start += batchSize) {
    for (const row of rows.slice(start, start + batchSize)) {
      let request: { key: string; body: Record<string, Json> };
      try {
        request = buildRequest(table, plan, row, ignoreNulls, setNames);
      } catch (error) {
        // Type incompatibility found before sending: what `enableSkipIncompatibleRow` covers (copy-activity-fault-tolerance).
        if (skipIncompatible && error instanceof IncompatibleRow) {
          skipped.push({ row, reason: error.message });
          continue;
        }
        throw error instanceof IncompatibleRow ? new ActivityError('UserErrorInvalidDataValue', error.message) : error;
      }
      try {
        await services.dataverse.upsert(table, request.key, request.body, retry);
        copied++;
      } catch (error) {
        if (error instanceof DataverseRefusal) {
          // A service-side refusal is not an "incompatible row": it fails the copy (connector-troubleshoot-dynamics-dataverse).
          throw Object.assign(
            new ActivityError(
              'DynamicsOperationFailed',
              `Dynamics operation failed with error code: ${error.code}, error message: ${error.message}. (HTTP ${error.status}; ${copied} row(s) were written before this one.)`,
            ),
            {
              details: {
                output: {
                  rowsRead: data.rowsRead,
                  rowsCopied: copied,
                  errors: [{ Code: error.code, Message: error.message }],
                },
              },
            },
          );
        }
        throw error;
      }
    }
  }
  let logFilePath: string | undefined;
  if (skipped.length) logFilePath = await writeRedirect(services, tp, ctx, skipped);
  return {
    rowsCopied: copied,
    rowsSkipped: skipped.length,
    filesWritten: 0,
    dataWritten: 0,
    ...(logFilePath ? { logFilePath } : {}),
  };
}

class IncompatibleRow extends Error {}

interface ColumnPlan {
  readonly keyColumns: readonly string[];
  readonly byPrimaryKey: boolean;
  readonly entityReference: ReadonlyMap<string, string>;
}

function planColumns(
  table: DataverseTable,
  columns: readonly string[],
  alternateKeyName: string | undefined,
  ctx: ActivityContext,
): ColumnPlan {
  const entityReference = new Map<string, string>();
  for (const c of columns) {
    const at = c.indexOf('@');
    if (at < 0) continue;
    const suffix = c.slice(at + 1);
    if (suffix !== 'EntityReference')
      throw new UnsupportedError(
        `Column \`${c}\` of \`${ctx.name}\`: only the \`@EntityReference\` virtual column is supported by the Copy sink.`,
      );
    entityReference.set(c.slice(0, at), c);
  }
  for (const c of columns) {
    if (c.includes('@')) continue;
    const attribute = table.attributes.get(c);
    if (!attribute)
      throw new ActivityError(
        'DynamicsOperationFailed',
        `Dynamics operation failed with error code: 0x80041103, error message: '${table.logicalName}' entity doesn't contain attribute with Name = '${c}'.`,
      );
    if (
      attribute.typeName === 'MultiSelectPicklistType' ||
      attribute.typeName === 'CalendarRulesType' ||
      attribute.typeName === 'PartyListType'
    ) {
      throw new ActivityError(
        'UserErrorUnsupportedAttributeType',
        `Column \`${c}\` of \`${table.logicalName}\` is a ${attribute.typeName.replace(/Type$/, '')}, which the Dataverse Copy sink does not support (connector-dynamics-crm-office-365, "Data type mapping"); write it by another means or leave it out of the mapping.`,
      );
    }
    if (
      LOOKUP_TYPES.has(attribute.typeName) &&
      (attribute.targets.length > 1 || attribute.typeName !== 'LookupType') &&
      !entityReference.has(c)
    ) {
      throw new ActivityError(
        'DynamicsMissingTargetForMultiTargetLookupField',
        `Cannot find the target column for multi-target lookup field: '${c}'. Add the column \`${c}@EntityReference\` with the target table's logical name (one of ${attribute.targets.join(', ')}).`,
      );
    }
  }
  if (alternateKeyName !== undefined) {
    const keyColumns = table.keys.get(alternateKeyName);
    if (!keyColumns)
      throw new ActivityError(
        'DynamicsAlternateKeyNotFound',
        `Alternate key \`${alternateKeyName}\` does not exist on \`${table.logicalName}\` (keys: ${[...table.keys.keys()].join(', ') || 'none'}); check the name and its case.`,
      );
    const missing = keyColumns.filter((k) => !columns.includes(k));
    if (missing.length)
      throw new ActivityError(
        'DynamicsMissingKeyColumns',
        `Input DataSet must contain keycolumn(s) in Upsert/Update scenario. Missing: ${missing.join(', ')}.`,
      );
    return { keyColumns, byPrimaryKey: false, entityReference };
  }
  if (!columns.includes(table.primaryIdAttribute))
    throw new ActivityError(
      'DynamicsMissingKeyColumns',
      `Input DataSet must contain keycolumn(s) in Upsert/Update scenario. Missing: ${table.primaryIdAttribute}.`,
    );
  return { keyColumns: [table.primaryIdAttribute], byPrimaryKey: true, entityReference };
}

const GUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

function buildRequest(
  table: DataverseTable,
  plan: ColumnPlan,
  row: JsonObject,
  ignoreNulls: boolean,
  setNames: ReadonlyMap<string, string>,
): { key: string; body: Record<string, Json> } {
  let key: string;
  if (plan.byPrimaryKey) {
    const id = row[table.primaryIdAttribute];
    if (typeof id !== 'string' || !GUID.test(id))
      throw new ActivityError(
        'DynamicsPrimaryKeyMustBeGuid',
        `Primary key \`${table.primaryIdAttribute}\` value \`${JSON.stringify(id)}\` is not a GUID.`,
      );
    key = id;
  } else {
    const parts = plan.keyColumns.map((k) => {
      const v = row[k];
      if (v === null || v === undefined || v === '')
        throw new IncompatibleRow(`Key column \`${k}\` is empty in row ${JSON.stringify(row).slice(0, 200)}.`);
      return `${k}=${keyLiteral(v)}`;
    });
    key = parts.join(',');
  }
  const body: Record<string, Json> = {};
  for (const [column, value] of Object.entries(row)) {
    if (column.includes('@')) continue;
    if (plan.byPrimaryKey && column === table.primaryIdAttribute) continue;
    if (value === null && ignoreNulls) continue; // ignoreNullValues: the target field is left unchanged
    const attribute = table.attributes.get(column)!;
    if (LOOKUP_TYPES.has(attribute.typeName)) {
      const target = plan.entityReference.has(column) ? row[plan.entityReference.get(column)!] : attribute.targets[0];
      if (value === null) {
        const nav = table.navigationFor(column, String(target ?? attribute.targets[0]));
        body[`${nav ?? column}@odata.bind`] = null;
        continue;
      }
      if (typeof target !== 'string' || !attribute.targets.includes(target)) {
        throw new ActivityError(
          'DynamicsInvalidTargetForMultiTargetLookupField',
          `The target entity name \`${JSON.stringify(target)}\` of lookup \`${column}\` is not one of ${attribute.targets.join(', ')}.`,
        );
      }
      if (typeof value !== 'string' || !GUID.test(value))
        throw new IncompatibleRow(`Lookup \`${column}\` value \`${JSON.stringify(value)}\` is not a GUID.`);
      const nav = table.navigationFor(column, target) ?? column;
      body[`${nav}@odata.bind`] = `/${setNames.get(target)}(${value})`;
      continue;
    }
    body[column] = convertValue(attribute.typeName, column, value);
  }
  return { key, body };
}

function convertValue(typeName: string, column: string, value: Json): Json {
  if (value === null) return null;
  const bad = () =>
    new IncompatibleRow(
      `Column \`${column}\` (${typeName.replace(/Type$/, '')}) cannot take \`${JSON.stringify(value).slice(0, 80)}\`.`,
    );
  switch (typeName) {
    case 'IntegerType':
    case 'BigIntType':
    case 'PicklistType':
    case 'StateType':
    case 'StatusType': {
      const n =
        typeof value === 'number'
          ? value
          : typeof value === 'string' && /^-?\d+$/.test(value.trim())
            ? Number(value)
            : Number.NaN;
      if (!Number.isInteger(n)) throw bad();
      return n;
    }
    case 'DecimalType':
    case 'MoneyType':
    case 'DoubleType': {
      const n =
        typeof value === 'number'
          ? value
          : typeof value === 'string' && value.trim() !== ''
            ? Number(value)
            : Number.NaN;
      if (!Number.isFinite(n)) throw bad();
      return n;
    }
    case 'BooleanType':
      if (typeof value === 'boolean') return value;
      if (value === 1 || value === 0) return value === 1;
      if (typeof value === 'string' && /^(true|false|1|0)$/i.test(value.trim()))
        return /^(true|1)$/i.test(value.trim());
      throw bad();
    default:
      return typeof value === 'string'
        ? value
        : typeof value === 'number' || typeof value === 'boolean'
          ? String(value)
          : JSON.stringify(value);
  }
}

/** Writes skipped rows as the legacy `redirectIncompatibleRowSettings` CSV: the row plus ErrorCode, ErrorMessage. */
async function writeRedirect(
  services: RuntimeServices,
  tp: JsonObject,
  ctx: ActivityContext,
  skipped: { row: JsonObject; reason: string }[],
): Promise<string | undefined> {
  const settings = isObject(tp.redirectIncompatibleRowSettings) ? tp.redirectIncompatibleRowSettings : undefined;
  if (!settings) return undefined;
  checkKeys(settings, ['linkedServiceName', 'path'], `redirectIncompatibleRowSettings of \`${ctx.name}\``);
  resolveLinkedService(services, settings.linkedServiceName, ctx);
  const [fileSystem, ...rest] = String(ctx.evaluate(settings.path)).split('/');
  const relative = joinPath(...rest, `${ctx.pipelineRun.runId}`, `${ctx.activityRunId}.csv`);
  const full = services.storage.resolve(fileSystem!, relative);
  await mkdir(path.dirname(full), { recursive: true });
  const columns = [...new Set(skipped.flatMap((s) => Object.keys(s.row)))];
  const esc = (v: Json | undefined) => {
    const t = v === null || v === undefined ? '' : typeof v === 'string' ? v : JSON.stringify(v);
    return /[",\r\n]/.test(t) ? `"${t.replaceAll('"', '""')}"` : t;
  };
  const lines = [[...columns, 'ErrorCode', 'ErrorMessage'].map(esc).join(',')];
  for (const s of skipped)
    lines.push([...columns.map((c) => esc(s.row[c])), 'UserErrorInvalidDataValue', esc(s.reason)].join(','));
  await writeFile(full, `${lines.join('\r\n')}\r\n`);
  return `${fileSystem}/${relative}`;
}
