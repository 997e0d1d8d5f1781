import { rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { UsageError } from '../../../../core/errors.js';
import { walk, wildcardRegExp } from '../connectors/lake-files.js';
import { msFromTicks, parseTimestamp } from '../expression/date-time.js';
import { isObject, type Json, type JsonObject } from '../expression/json-value.js';
import type { ActivityContext, ActivityHandler } from '../pipeline-engine.js';
import { checkKeys } from '../property-check.js';
import { ActivityError, UnsupportedError } from '../runtime-error.js';
import { lakeLocation, type RuntimeServices, resolveDataset } from './runtime-services.js';

/** typeProperties of the Delete activity (learn.microsoft.com/azure/data-factory/delete-activity). */
export const DELETE_TYPE_PROPERTIES = [
  'dataset',
  'recursive',
  'maxConcurrentConnections',
  'enableLogging',
  'logStorageSettings',
  'storeSettings',
] as const;

/** storeSettings the Delete activity reads (the file store's read settings). */
export const DELETE_STORE_SETTINGS = [
  'type',
  'recursive',
  'maxConcurrentConnections',
  'modifiedDatetimeStart',
  'modifiedDatetimeEnd',
] as const;

/**
 * Delete over the lake, as learn.microsoft.com/azure/data-factory/delete-activity documents it ("Delete specific
 * folders or files"): a dataset folder without a file name deletes the files directly in it (`recursive` false) or
 * the folder with everything below it (`recursive` true); a file name (wildcards allowed) deletes the matching files
 * in the folder, and in its subfolders with `recursive`, leaving the folders. `recursive` defaults to false, in
 * `storeSettings` (the doc's samples) or in typeProperties (the REST model). Output: `filesDeleted` (the doc's
 * sample output), `foldersDeleted`, `recursive`, `datasetName`, `type`.
 * Choices where the doc is silent: `modifiedDatetimeStart/End` select files as for a Copy source ([start, end)) and
 * then never delete the folder itself; a dataset path that does not exist fails with `PathNotFound`; `enableLogging`
 * (a log file in storage) is not implemented and is an error naming it.
 */
export function deleteActivityHandler(services: RuntimeServices): ActivityHandler {
  return (ctx) => deleteActivity(services, ctx);
}

async function deleteActivity(services: RuntimeServices, ctx: ActivityContext): Promise<Json> {
  const tp = isObject(ctx.activity.typeProperties) ? ctx.activity.typeProperties : {};
  checkKeys(tp, DELETE_TYPE_PROPERTIES, `Delete activity \`${ctx.name}\``);
  if (ctx.evaluate(tp.enableLogging ?? false) === true || tp.logStorageSettings !== undefined)
    throw new UnsupportedError(
      `Delete \`${ctx.name}\` sets \`enableLogging\`/\`logStorageSettings\`; the local runtime does not write Delete log files.`,
    );
  const store: JsonObject = isObject(tp.storeSettings) ? tp.storeSettings : {};
  checkKeys(store, DELETE_STORE_SETTINGS, `storeSettings of \`${ctx.name}\``);
  const flag = (v: unknown, where: string): boolean | undefined => {
    if (v === undefined) return undefined;
    const b = ctx.evaluate(v);
    if (typeof b !== 'boolean')
      throw new UsageError(`Delete \`${ctx.name}\` ${where} is \`${String(b)}\`; use true or false.`);
    return b;
  };
  const inStore = flag(store.recursive, 'storeSettings.recursive');
  const inActivity = flag(tp.recursive, 'recursive');
  if (inStore !== undefined && inActivity !== undefined && inStore !== inActivity)
    throw new UsageError(
      `Delete \`${ctx.name}\` sets \`recursive\` to ${inActivity} and storeSettings.recursive to ${inStore}; set one.`,
    );
  const recursive = inStore ?? inActivity ?? false;
  const dataset = resolveDataset(services, tp.dataset, ctx);
  const location = lakeLocation(dataset);
  const folder = location.folderPath.replace(/^\/+|\/+$/g, '');
  const root = services.storage.resolve(location.fileSystem, folder);
  const where = `${location.fileSystem}/${folder}`;
  const info = await stat(root).catch(() => undefined);
  if (!info) throw new ActivityError('PathNotFound', `Delete \`${ctx.name}\`: \`${where}\` does not exist.`);
  if (!info.isDirectory())
    throw new ActivityError(
      'NotAFolder',
      `Delete \`${ctx.name}\`: \`${where}\` is a file; name it in the dataset's fileName.`,
    );
  const bound = (v: unknown) =>
    v === undefined || v === null || v === ''
      ? undefined
      : msFromTicks(parseTimestamp(ctx.evaluate(v), 'modifiedDatetime'));
  const start = bound(store.modifiedDatetimeStart);
  const end = bound(store.modifiedDatetimeEnd);
  const filtered = start !== undefined || end !== undefined;
  const output = (filesDeleted: number, foldersDeleted: number): Json => ({
    datasetName: dataset.name,
    type: dataset.type,
    recursive,
    isWildcardUsed: location.fileName !== undefined && /[*?]/.test(location.fileName),
    filesDeleted,
    foldersDeleted,
  });
  const { files } = await walk(root, recursive);
  if (location.fileName === undefined && recursive && !filtered) {
    if (folder === '')
      throw new UnsupportedError(
        `Delete \`${ctx.name}\` would delete the whole file system \`${location.fileSystem}\`; the local runtime refuses it (name a folder).`,
      );
    await rm(root, { recursive: true, force: true });
    return output(files.length, 1);
  }
  const name = location.fileName === undefined ? undefined : wildcardRegExp(location.fileName);
  let deleted = 0;
  for (const f of files) {
    if (name && !name.test(path.posix.basename(f.path))) continue;
    if (start !== undefined && f.modifiedMs < start) continue;
    if (end !== undefined && f.modifiedMs >= end) continue;
    await rm(f.absolutePath, { force: true });
    deleted++;
  }
  return output(deleted, 0);
}
