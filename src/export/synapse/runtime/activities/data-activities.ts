import { createHash } from 'node:crypto';
import { readFile, stat } from 'node:fs/promises';
import { UsageError } from '../../../../core/errors.js';
import { duckIdent } from '../../../../dialects/duckdb/driver.js';
import { walk } from '../connectors/lake-files.js';
import { toJsonRow } from '../connectors/sql-engine.js';
import { formatTicks, msFromTicks, parseTimestamp, ticksFromMs } from '../expression/date-time.js';
import { isObject, type Json, type JsonObject } from '../expression/json-value.js';
import type { ActivityContext, ActivityHandler } from '../pipeline-engine.js';
import { checkKeys } from '../property-check.js';
import { ActivityError, UnsupportedError } from '../runtime-error.js';
import { copyActivity } from './copy-activity.js';
import { lakeLocation, type RuntimeServices, resolveDataset, resolveLinkedService } from './runtime-services.js';
import { dropSource, loadSource } from './tabular-source.js';

/** typeProperties each data activity implements (Copy's are in copy-activity.ts). */
export const DATA_TYPE_PROPERTIES: Readonly<Record<string, readonly string[]>> = {
  Lookup: ['dataset', 'source', 'firstRowOnly'],
  Script: ['scripts', 'scriptBlockExecutionTimeout'],
  GetMetadata: ['dataset', 'fieldList', 'storeSettings', 'formatSettings'],
};

/** The data activities by type: Lookup, Script, GetMetadata, Copy. */
export function dataActivityHandlers(services: RuntimeServices): Record<string, ActivityHandler> {
  // One DuckDB connection stands in for the SQL databases: activities that use it take turns (parallel branches of
  // a pipeline run one data activity at a time here; their results are the same, their timing is not modelled).
  let turn: Promise<unknown> = Promise.resolve();
  const exclusive = <T>(work: () => Promise<T>): Promise<T> => {
    const mine = turn.then(work, work);
    turn = mine.catch(() => undefined);
    return mine;
  };
  return {
    Lookup: (ctx) => exclusive(() => lookup(services, ctx)),
    Script: (ctx) => exclusive(() => script(services, ctx)),
    GetMetadata: (ctx) => getMetadata(services, ctx),
    Copy: (ctx) => exclusive(() => copyActivity(services, ctx)),
  };
}

function typeProperties(ctx: ActivityContext, known: readonly string[]): JsonObject {
  const tp = isObject(ctx.activity.typeProperties) ? ctx.activity.typeProperties : {};
  checkKeys(tp, known, `${ctx.activity.type} activity \`${ctx.name}\``);
  return tp;
}

/** Lookup (control-flow-lookup-activity): `firstRow`, or `count` + `value`; at most 5,000 rows. */
async function lookup(services: RuntimeServices, ctx: ActivityContext): Promise<Json> {
  const tp = typeProperties(ctx, DATA_TYPE_PROPERTIES.Lookup!);
  const dataset = resolveDataset(services, tp.dataset, ctx);
  if (!isObject(tp.source)) throw new UsageError(`Lookup \`${ctx.name}\` has no source.`);
  const data = await loadSource(services, tp.source, dataset, ctx);
  try {
    const rows = data.table
      ? (await services.sql.duck.all(`SELECT * FROM ${duckIdent(data.table)} LIMIT 5000`)).map(toJsonRow)
      : [];
    const size = Buffer.byteLength(JSON.stringify(rows));
    if (size > 4 * 1024 * 1024)
      throw new ActivityError(
        'LookupOutputTooLarge',
        `Lookup \`${ctx.name}\` output is ${size} bytes; the limit is 4 MB.`,
      );
    const firstRowOnly = tp.firstRowOnly === undefined ? true : ctx.evaluate(tp.firstRowOnly) === true;
    if (firstRowOnly) {
      // With no rows `firstRow` is absent (the docs are silent); read it with `?.` when the source may be empty.
      return rows.length ? { firstRow: rows[0]! } : {};
    }
    return { count: rows.length, value: rows };
  } finally {
    await dropSource(services, data);
  }
}

/** Script (transform-data-using-script): every block runs; outputs merged into one. */
async function script(services: RuntimeServices, ctx: ActivityContext): Promise<Json> {
  const tp = typeProperties(ctx, DATA_TYPE_PROPERTIES.Script!);
  const ls = resolveLinkedService(services, ctx.activity.linkedServiceName, ctx);
  if (ls.type !== 'AzureSqlDatabase')
    throw new UnsupportedError(
      `Script \`${ctx.name}\` runs on linked service type \`${ls.type}\`; the runtime runs Script on AzureSqlDatabase only.`,
    );
  if (!Array.isArray(tp.scripts)) throw new UsageError(`Script \`${ctx.name}\` has no scripts.`);
  const resultSets: Json[] = [];
  let recordsAffected = 0;
  let block = 0;
  for (const s of tp.scripts) {
    block++;
    if (!isObject(s)) throw new UsageError(`Script block ${block} of \`${ctx.name}\` is not an object.`);
    checkKeys(s, ['text', 'type', 'parameters'], `script block ${block} of \`${ctx.name}\``);
    const text = ctx.evaluate(s.text);
    if (typeof text !== 'string') throw new UsageError(`Script block ${block} of \`${ctx.name}\` has no text.`);
    const type = s.type === undefined ? 'Query' : String(s.type);
    if (type !== 'Query' && type !== 'NonQuery')
      throw new UsageError(`Script block ${block} of \`${ctx.name}\` has type \`${type}\`; use Query or NonQuery.`);
    const parameters = (Array.isArray(s.parameters) ? s.parameters : []).map((p) => {
      if (!isObject(p) || typeof p.name !== 'string')
        throw new UsageError(`A parameter of script block ${block} of \`${ctx.name}\` has no name.`);
      checkKeys(p, ['name', 'type', 'value', 'direction', 'size'], `parameter \`${p.name}\` of \`${ctx.name}\``);
      if (p.direction !== undefined && p.direction !== 'Input')
        throw new UnsupportedError(
          `Parameter direction \`${p.direction}\` of \`${ctx.name}\` is not implemented; only Input.`,
        );
      return { name: p.name, value: ctx.evaluate(p.value) };
    });
    const result = await services.sql.execute({
      text,
      where: `Script \`${ctx.name}\` block ${block}`,
      linkedService: ls.name,
      parameters,
      evaluate: (expression) => ctx.evaluate(expression),
    });
    recordsAffected += result.recordsAffected;
    if (type === 'Query')
      for (const set of result.resultSets)
        resultSets.push({ rowCount: set.rows.length, rows: set.rows.slice(0, 5000) as Json[] });
  }
  return { resultSetCount: resultSets.length, recordsAffected, resultSets, outputParameters: {}, outputLogs: '' };
}

const FIELDS = [
  'itemName',
  'itemType',
  'size',
  'created',
  'lastModified',
  'childItems',
  'contentMD5',
  'exists',
  'structure',
  'columnCount',
];

/** GetMetadata over the lake (control-flow-get-metadata-activity). */
async function getMetadata(services: RuntimeServices, ctx: ActivityContext): Promise<Json> {
  const tp = typeProperties(ctx, DATA_TYPE_PROPERTIES.GetMetadata!);
  const dataset = resolveDataset(services, tp.dataset, ctx);
  const location = lakeLocation(dataset);
  const fields = ctx.evaluate(tp.fieldList ?? []);
  if (!Array.isArray(fields) || fields.length === 0)
    throw new UsageError(`GetMetadata \`${ctx.name}\` has no fieldList.`);
  for (const f of fields) {
    if (!FIELDS.includes(String(f)))
      throw new UnsupportedError(
        `GetMetadata field \`${f}\` of \`${ctx.name}\` is not implemented; known: ${FIELDS.join(', ')}.`,
      );
    if (f === 'structure' || f === 'columnCount')
      throw new UnsupportedError(
        `GetMetadata field \`${f}\` of \`${ctx.name}\` is not implemented by the local runtime.`,
      );
  }
  const store = isObject(tp.storeSettings) ? tp.storeSettings : {};
  checkKeys(
    store,
    ['type', 'modifiedDatetimeStart', 'modifiedDatetimeEnd', 'recursive'],
    `storeSettings of \`${ctx.name}\``,
  );
  const relative = [location.folderPath, location.fileName].filter(Boolean).join('/');
  const full = services.storage.resolve(location.fileSystem, relative);
  const info = await stat(full).catch(() => undefined);
  const out: JsonObject = {};
  if (!info) {
    // Missing item: fails, unless `exists` is asked for (then exists: false).
    if (!fields.includes('exists'))
      throw new ActivityError(
        'PathNotFound',
        `GetMetadata \`${ctx.name}\`: \`${location.fileSystem}/${relative}\` does not exist; add \`exists\` to fieldList to test for it.`,
      );
    return { exists: false };
  }
  const bound = (v: unknown) =>
    v === undefined || v === null || v === ''
      ? undefined
      : msFromTicks(parseTimestamp(ctx.evaluate(v), 'modifiedDatetime'));
  const start = bound(store.modifiedDatetimeStart);
  const end = bound(store.modifiedDatetimeEnd);
  for (const f of fields as string[]) {
    switch (f) {
      case 'exists':
        out.exists = true;
        break;
      case 'itemName':
        out.itemName = relative.split('/').filter(Boolean).pop() ?? location.fileSystem;
        break;
      case 'itemType':
        out.itemType = info.isDirectory() ? 'Folder' : 'File';
        break;
      case 'size':
        if (info.isFile()) out.size = info.size;
        break;
      case 'created':
        out.created = formatTicks(ticksFromMs(info.birthtimeMs));
        break;
      case 'lastModified':
        out.lastModified = formatTicks(ticksFromMs(info.mtimeMs));
        break;
      case 'contentMD5':
        if (info.isFile())
          out.contentMD5 = createHash('md5')
            .update(await readFile(full))
            .digest('base64');
        break;
      case 'childItems': {
        if (!info.isDirectory())
          throw new ActivityError(
            'NotAFolder',
            `GetMetadata \`${ctx.name}\` asks childItems of a file (\`${relative}\`).`,
          );
        const { files, folders } = await walk(full, false);
        // Direct children only; the modified filter applies to files, not folders.
        out.childItems = [
          ...folders.map((name) => ({ name, type: 'Folder' })),
          ...files
            .filter(
              (file) =>
                (start === undefined || file.modifiedMs >= start) && (end === undefined || file.modifiedMs < end),
            )
            .map((file) => ({ name: file.path, type: 'File' })),
        ].sort((a, b) => (a.name < b.name ? -1 : 1));
        break;
      }
    }
  }
  return out;
}
