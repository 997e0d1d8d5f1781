import { type CdmAttribute, type CdmModel, findEntity, parseCdmModel } from '../connectors/synapse-link/cdm-model.js';
import { latestDeltaVersion, readDeltaSnapshot } from '../connectors/synapse-link/delta-log.js';
import { isSelected, type ListedFolder, planFolders } from '../connectors/synapse-link/folder-plan.js';
import { timestampFolder } from '../connectors/synapse-link/timestamp-folder.js';
import { FerryError, UsageError } from '../core/errors.js';
import type { Lake, LakeEntry } from '../core/lake.js';
import { lakeJoin } from '../core/lake.js';
import type { StageSpec } from '../core/pipeline.js';
import type { PlanContext, StageContext, StageImpl } from '../core/stage.js';
import type { RunWindow, WindowItem } from '../core/window.js';
import { duckIdent } from '../dialects/duckdb/driver.js';
import {
  type CsvFolderInput,
  CsvFolderReader,
  loadOptionSetLabels,
  readCheckpointActions,
  stageDeltaSnapshot,
  typedColumn,
} from '../dialects/duckdb/synapse-link.js';

/** The two Synapse Link export formats: CSV incremental folders, or Delta tables. */
export const SYNAPSE_LINK_FORMATS = ['csv', 'delta'] as const;
/** One of {@link SYNAPSE_LINK_FORMATS}. */
export type SynapseLinkFormat = (typeof SYNAPSE_LINK_FORMATS)[number];

/** The `read-synapse-link` stage spec (plain data). */
export interface ReadSynapseLinkSpec extends StageSpec {
  readonly kind: 'read-synapse-link';
  /** Lake folder of the Synapse Link container, e.g. `synapse-link/dataverse-demo`. */
  readonly folder: string;
  readonly format: SynapseLinkFormat;
  /** Dataverse tables (logical names) to read. */
  readonly tables: readonly string[];
  /** Largest number of timestamp folders one run takes (CSV). Default: all completed ones. */
  readonly maxFolders?: number;
  /**
   * Delta: `snapshot` stages every live row of the new version; `changes` only the rows of live files added after
   * the last processed version (a superset of the changed rows: a MERGE rewrites whole files). Default `snapshot`.
   */
  readonly deltaMode?: DeltaMode;
}

/** How a Delta window is read; see {@link ReadSynapseLinkSpec.deltaMode}. */
export const DELTA_MODES = ['snapshot', 'changes'] as const;
/** One of {@link DELTA_MODES}. */
export type DeltaMode = (typeof DELTA_MODES)[number];

/**
 * `ctx.shared` key under which this stage describes what it staged: {@link StagedSynapseLink}.
 * Each table is a view named after the table (`account`), with typed columns plus `__folder` (timestamp folder or
 * `delta@<version>`) and `__source_file` (lake path); choice labels are the views `OptionsetMetadata`,
 * `GlobalOptionsetMetadata`, `StateMetadata`, `StatusMetadata`, `TargetMetadata`.
 */
export const SYNAPSE_LINK_SHARED_KEY = 'synapse-link';

/** One staged table, as the extract stage finds it. */
export interface StagedSynapseLinkTable {
  readonly table: string;
  /** The view extract SQL reads. */
  readonly relation: string;
  /** The table behind the view (typed rows plus internal `__` columns); its insertion order is folder, file, line. */
  readonly stagedTable: string;
  readonly rows: number;
  readonly columns: ReadonlyArray<{ readonly name: string; readonly sqlType: string }>;
  readonly sourceFolders: readonly string[];
}

/** Everything the stage staged in this run. */
export interface StagedSynapseLink {
  readonly format: SynapseLinkFormat;
  readonly tables: readonly StagedSynapseLinkTable[];
}

/**
 * Reads a Synapse Link for Dataverse export: the completed incremental timestamp folders (CSV + each folder's
 * `model.json`; also the non-incremental layout with table folders at the root), or `deltalake/<table>_partitioned`
 * Delta tables. Rows are staged set-based in DuckDB and typed from the CDM types.
 *
 * @example
 * readSynapseLink({ folder: 'synapse-link/dataverse-demo', format: 'csv', tables: ['account'] })
 */
export function readSynapseLink(options: {
  folder: string;
  format?: SynapseLinkFormat;
  tables: readonly string[];
  maxFolders?: number;
  deltaMode?: DeltaMode;
}): ReadSynapseLinkSpec {
  const format = options.format ?? 'csv';
  if (!(SYNAPSE_LINK_FORMATS as readonly string[]).includes(format)) {
    throw new UsageError(`Synapse Link format \`${format}\` is not known; use \`csv\` or \`delta\`.`);
  }
  if (options.tables.length === 0)
    throw new UsageError(`readSynapseLink for \`${options.folder}\` names no tables; list at least one.`);
  return {
    kind: 'read-synapse-link',
    folder: options.folder,
    format,
    tables: [...options.tables],
    ...(options.maxFolders === undefined ? {} : { maxFolders: options.maxFolders }),
    ...(options.deltaMode === undefined ? {} : { deltaMode: options.deltaMode }),
  };
}

const ROOT_ITEM = 'root';

/** Plans and stages a Synapse Link export; see {@link readSynapseLink}. */
export const readSynapseLinkStage: StageImpl<ReadSynapseLinkSpec> = {
  kind: 'read-synapse-link',

  async plan(spec, ctx) {
    return spec.format === 'delta' ? planDelta(spec, ctx) : planCsv(spec, ctx);
  },

  async run(spec, ctx) {
    await ctx.staging.run(`SET TimeZone = 'UTC'`);
    const staged = spec.format === 'delta' ? await runDelta(spec, ctx) : await runCsv(spec, ctx);
    ctx.shared.set(SYNAPSE_LINK_SHARED_KEY, staged);
  },
};

function sourceOf(spec: ReadSynapseLinkSpec): string {
  return `synapse-link:${spec.folder}`;
}

async function planCsv(spec: ReadSynapseLinkSpec, ctx: PlanContext): Promise<RunWindow> {
  const source = sourceOf(spec);
  const cursor = ctx.state.getCursor(ctx.pipeline.name, source);
  const entries = await ctx.lake.list(spec.folder);
  const dirs = entries.filter((e) => e.isDirectory).map((e) => e.path.split('/').at(-1)!);
  const listed: ListedFolder[] = [];
  const selection = {
    cursor: cursor === ROOT_ITEM ? null : cursor,
    ...(ctx.range ? { range: ctx.range } : {}),
    ...(ctx.reprocess ? { reprocess: true } : {}),
  };
  for (const name of dirs) {
    const time = timestampFolder(name);
    if (time === undefined) {
      listed.push({ name, hasModel: false });
      continue;
    }
    // Folders at or before the cursor (or outside a backfill range) are never taken: months of 15-minute folders
    // would otherwise cost one model.json lookup each on every run (a network call on ADLS).
    if (!isSelected(time, selection)) {
      listed.push({ name, hasModel: true });
      continue;
    }
    const model = await ctx.lake.stat(lakeJoin(spec.folder, name, 'model.json'));
    const hasModel = model !== undefined && !model.isDirectory && model.size > 0;
    // Only folders without model.json are listed further: an empty one may be a retry leftover (see planFolders).
    const isEmpty = hasModel
      ? false
      : (await ctx.lake.list(lakeJoin(spec.folder, name), { recursive: true })).every((e) => e.isDirectory);
    listed.push({ name, hasModel, isEmpty });
  }
  const waiting = await initialSyncPending(ctx.lake, spec);
  if (waiting) {
    // Reading before the initial sync finished gives a partial table (powerapps-docs#4052): wait, move nothing.
    ctx.log.warn(
      `Synapse Link initial sync of \`${waiting.table}\` in \`${spec.folder}\` is \`${waiting.state}\`, not \`Completed\`; nothing is read until it completes.`,
    );
    return { source, items: [], cursorBefore: cursor, cursorAfter: null };
  }
  const inProgress = await readChangelog(ctx.lake, spec.folder);
  const plan = planFolders({
    folders: listed,
    inProgress,
    ...selection,
    ...(spec.maxFolders === undefined ? {} : { maxFolders: spec.maxFolders }),
  });
  if (plan.skippedEmpty.length)
    ctx.log.info(`Synapse Link folders without data skipped: ${plan.skippedEmpty.join(', ')}.`);
  if (plan.stoppedAt) {
    ctx.log.info(
      `Synapse Link window of \`${spec.folder}\` stops before \`${plan.stoppedAt.folder}\` (${plan.stoppedAt.reason === 'in_progress' ? 'still being written' : 'no model.json yet'}).`,
    );
  }
  if (!listed.some((f) => timestampFolder(f.name) !== undefined)) return planSnapshotLayout(spec, ctx, cursor);
  const items: WindowItem[] = plan.folders.map((f) => ({ id: f.name, timestamp: f.timestamp }));
  return {
    source,
    items,
    cursorBefore: cursor,
    cursorAfter: ctx.range || items.length === 0 ? null : items.at(-1)!.id,
    ...(ctx.range ? { range: ctx.range } : {}),
  };
}

// The non-incremental layout (table folders at the root, rows replaced in place): each run reads the whole
// snapshot when any table file changed since the last run.
async function planSnapshotLayout(
  spec: ReadSynapseLinkSpec,
  ctx: PlanContext,
  cursor: string | null,
): Promise<RunWindow> {
  const source = sourceOf(spec);
  let latest = 0;
  for (const table of spec.tables) {
    const dir = await findChildFolder(ctx.lake, spec.folder, table);
    if (!dir) continue;
    for (const f of await ctx.lake.list(dir))
      if (!f.isDirectory && f.path.endsWith('.csv')) latest = Math.max(latest, f.modifiedMs);
  }
  if (latest === 0) return { source, items: [], cursorBefore: cursor, cursorAfter: null };
  const stamp = new Date(latest).toISOString();
  if (!ctx.reprocess && !ctx.range && cursor === `${ROOT_ITEM}@${stamp}`)
    return { source, items: [], cursorBefore: cursor, cursorAfter: null };
  return {
    source,
    items: [{ id: ROOT_ITEM, timestamp: stamp }],
    cursorBefore: cursor,
    cursorAfter: ctx.range ? null : `${ROOT_ITEM}@${stamp}`,
  };
}

/** The first wanted table whose root `model.json` says its initial sync has not completed, if any. */
async function initialSyncPending(
  lake: Lake,
  spec: ReadSynapseLinkSpec,
): Promise<{ table: string; state: string } | undefined> {
  const file = lakeJoin(spec.folder, 'model.json');
  const st = await lake.stat(file);
  if (!st || st.size === 0) return undefined;
  const model = await readModel(lake, file);
  for (const table of spec.tables) {
    const state = findEntity(model, table)?.annotations['Athena:InitialSyncState'];
    if (state !== undefined && state !== 'Completed') return { table, state };
  }
  return undefined;
}

async function readChangelog(lake: Lake, folder: string): Promise<string | null> {
  const file = lakeJoin(folder, 'Changelog', 'changelog.info');
  if (!(await lake.stat(file))) return null;
  const text = (await lake.readText(file)).trim();
  return text === '' ? null : text;
}

// Folder names follow the table's name as exported; match case-insensitively. `listings` lets lookups in the same
// parent share one listing (a CSV run looks up every table and the labels folder in each timestamp folder).
async function findChildFolder(
  lake: Lake,
  parent: string,
  name: string,
  listings?: Map<string, Promise<LakeEntry[]>>,
): Promise<string | undefined> {
  const lower = name.toLowerCase();
  let listing = listings?.get(parent);
  if (!listing) {
    listing = lake.list(parent);
    listings?.set(parent, listing);
  }
  const hit = (await listing).find((e) => e.isDirectory && e.path.split('/').at(-1)!.toLowerCase() === lower);
  return hit?.path;
}

async function readModel(lake: Lake, file: string): Promise<CdmModel> {
  return parseCdmModel(await lake.readText(file), file);
}

async function runCsv(spec: ReadSynapseLinkSpec, ctx: StageContext): Promise<StagedSynapseLink> {
  const folders = ctx.window.items.map((i) => i.id);
  const isRoot = folders.length === 1 && folders[0] === ROOT_ITEM;
  // Each folder binds its CSV columns by position from its own model.json (columns are appended over time).
  const models = new Map<string, CdmModel>();
  for (const f of folders) {
    models.set(
      f,
      await readModel(ctx.lake, isRoot ? lakeJoin(spec.folder, 'model.json') : lakeJoin(spec.folder, f, 'model.json')),
    );
  }
  const reader = new CsvFolderReader(ctx.staging, ctx.lake);
  const listings = new Map<string, Promise<LakeEntry[]>>();
  const tables: StagedSynapseLinkTable[] = [];
  for (const table of spec.tables) {
    const inputs: CsvFolderInput[] = [];
    const union: CdmAttribute[] = [];
    const indexOf = new Map<string, number>();
    const addColumns = (attrs: readonly CdmAttribute[]) => {
      for (const a of attrs) {
        const i = indexOf.get(a.name.toLowerCase());
        if (i === undefined) {
          indexOf.set(a.name.toLowerCase(), union.length);
          union.push(a);
        } else union[i] = a; // the later folder's definition wins
      }
    };
    for (const f of folders) {
      const entity = findEntity(models.get(f)!, table);
      if (!entity) continue;
      addColumns(entity.attributes);
      const base = isRoot ? spec.folder : lakeJoin(spec.folder, f);
      const dir = await findChildFolder(ctx.lake, base, entity.name, listings);
      const files = dir
        ? (await ctx.lake.list(dir))
            .filter((e) => !e.isDirectory && e.path.toLowerCase().endsWith('.csv'))
            .map((e) => e.path)
        : [];
      inputs.push({ folder: f, attributes: entity.attributes, files });
    }
    if (union.length === 0) {
      // No folder of this window exported the table: take its columns from the root model.json so the output has a schema.
      const rootModel = lakeJoin(spec.folder, 'model.json');
      const entity = (await ctx.lake.stat(rootModel))
        ? findEntity(await readModel(ctx.lake, rootModel), table)
        : undefined;
      if (!entity) {
        throw new FerryError(
          'synapse_link.table_missing',
          `Table \`${table}\` is in no model.json of \`${spec.folder}\`; check the table name or add it to the Synapse Link profile.`,
        );
      }
      addColumns(entity.attributes);
    }
    const target = `__sl_${table}`;
    const rows = await reader.stage(target, union, inputs);
    await ctx.staging.run(`CREATE OR REPLACE VIEW ${duckIdent(table)} AS ${CsvFolderReader.viewSql(target)}`);
    ctx.counts.read += rows;
    ctx.counts.staged += rows;
    tables.push({
      table,
      relation: table,
      stagedTable: target,
      rows,
      columns: union.map((a) => ({ name: a.name, sqlType: typedColumn(a).sqlType })),
      sourceFolders: inputs.filter((i) => i.files.length > 0).map((i) => i.folder),
    });
    ctx.progress.update(`read ${table}`, ctx.counts);
  }
  // Labels of the window's newest folder that has them: never a folder outside the window (a backfill of an old
  // window gets the labels of that time, not today's), nor a stale root `OptionsetMetadata/` left by an earlier
  // non-incremental export. A window without labels leaves the label views empty.
  let labels: string | null = null;
  for (const f of [...folders].reverse()) {
    const base = isRoot ? spec.folder : lakeJoin(spec.folder, f);
    const dir = await findChildFolder(ctx.lake, base, 'OptionsetMetadata', listings);
    if (dir) {
      labels = dir;
      break;
    }
  }
  if (labels === null && folders.length > 0)
    ctx.log.debug(
      `No OptionsetMetadata folder in the window's folders of \`${spec.folder}\`; the label views are empty.`,
    );
  await loadOptionSetLabels(ctx.staging, ctx.lake, labels);
  return { format: 'csv', tables };
}

function deltaRoot(spec: ReadSynapseLinkSpec, table: string): string {
  return lakeJoin(spec.folder, 'deltalake', `${table}_partitioned`);
}

/** Delta cursor: the last version processed per table, as JSON. */
function parseDeltaCursor(cursor: string | null): Record<string, number> {
  if (!cursor) return {};
  try {
    const v = JSON.parse(cursor) as unknown;
    return v && typeof v === 'object' ? (v as Record<string, number>) : {};
  } catch {
    return {};
  }
}

async function planDelta(spec: ReadSynapseLinkSpec, ctx: PlanContext): Promise<RunWindow> {
  const source = sourceOf(spec);
  const cursor = ctx.state.getCursor(ctx.pipeline.name, source);
  const done = parseDeltaCursor(cursor);
  const next: Record<string, number> = { ...done };
  const items: WindowItem[] = [];
  for (const table of spec.tables) {
    const version = await latestDeltaVersion(ctx.lake, deltaRoot(spec, table));
    if (version === null) {
      throw new FerryError(
        'delta.missing_table',
        `Delta table \`${deltaRoot(spec, table)}\` has no \`_delta_log\`; check the folder and table name.`,
      );
    }
    if (!ctx.reprocess && !ctx.range && done[table] !== undefined && done[table]! >= version) continue;
    items.push({ id: `delta:${table}@${version}` });
    next[table] = version;
  }
  return {
    source,
    items,
    cursorBefore: cursor,
    cursorAfter: items.length === 0 || ctx.range ? null : JSON.stringify(next),
  };
}

async function runDelta(spec: ReadSynapseLinkSpec, ctx: StageContext): Promise<StagedSynapseLink> {
  const tables: StagedSynapseLinkTable[] = [];
  const done = parseDeltaCursor(ctx.window.cursorBefore);
  for (const item of ctx.window.items) {
    const m = /^delta:(.+)@(\d+)$/.exec(item.id);
    if (!m)
      throw new FerryError(
        'delta.bad_item',
        `Window item \`${item.id}\` is not a Delta version (\`delta:<table>@<version>\`).`,
      );
    const table = m[1]!;
    const snapshot = await readDeltaSnapshot(
      ctx.lake,
      (files) => readCheckpointActions(ctx.staging, files),
      deltaRoot(spec, table),
      Number(m[2]),
    );
    // `changes`: only files added after the version the cursor names (backfills and first runs take everything).
    const since = spec.deltaMode === 'changes' && ctx.mode !== 'backfill' ? done[table] : undefined;
    const files = since === undefined ? snapshot.files : snapshot.files.filter((f) => f.addedVersion > since);
    const target = `__sl_${table}`;
    const rows = await stageDeltaSnapshot(ctx.staging, ctx.lake, { ...snapshot, files }, target);
    await ctx.staging.run(
      `CREATE OR REPLACE VIEW ${duckIdent(table)} AS SELECT * EXCLUDE (__bad) FROM ${duckIdent(target)}`,
    );
    ctx.counts.read += rows;
    ctx.counts.staged += rows;
    const described = await ctx.staging.all<{ column_name: string; column_type: string }>(
      `DESCRIBE ${duckIdent(table)}`,
    );
    tables.push({
      table,
      relation: table,
      stagedTable: target,
      rows,
      columns: described
        .filter((d) => !d.column_name.startsWith('__'))
        .map((d) => ({ name: d.column_name, sqlType: d.column_type })),
      sourceFolders: [since === undefined ? `delta@${snapshot.version}` : `delta@${since + 1}..${snapshot.version}`],
    });
  }
  const labelsRoot = lakeJoin(spec.folder, 'OptionsetMetadata');
  await loadOptionSetLabels(ctx.staging, ctx.lake, (await ctx.lake.stat(labelsRoot)) ? labelsRoot : null);
  return { format: 'delta', tables };
}
