import { FerryError } from '../core/errors.js';
import type { StateStore } from '../core/state-store.js';
import { type CatalogTableSnapshot, EmulatorCatalog } from './emulator-catalog.js';
import type { EmulatorStore, JournalEntry } from './store.js';

/**
 * Where the export writes: the part of a data lake it needs (any `Lake`, `src/core/lake.ts`, fits). Declared here
 * so the emulator shares no code with the Synapse Link reader it is there to test.
 */
export interface ExportLake {
  list(prefix: string): Promise<ReadonlyArray<{ readonly path: string; readonly isDirectory: boolean }>>;
  stat(path: string): Promise<unknown>;
  readText(path: string): Promise<string>;
  write(path: string, data: string): Promise<void>;
}

/**
 * The two folder-name forms of Synapse Link's timestamp folders: `observed` is what exports in the field are named
 * (`2024-01-01T10.15.00Z`, colons replaced by dots, whole seconds); `documented` is the form the documentation gives,
 * `yyyy-MM-dd'T'HH:mm:ss.SSSz` (`2024-01-01T10:15:00.000Z`). A reader must take both.
 * https://learn.microsoft.com/power-apps/maker/data-platform/azure-synapse-link-incremental-updates
 */
export type FolderNameForm = 'observed' | 'documented';

/** Options of {@link exportSynapseLink}. */
export interface SynapseLinkExportOptions {
  /** Export time: names the timestamp folder and fills the Sink columns. Default: now. */
  readonly now?: Date;
  /** Tables to export. Default: every table of the store that has a metadata snapshot. */
  readonly tables?: readonly string[];
  /** Metadata snapshots (`<table>.json`): column order, types and choice labels. Default `fixtures/metadata`. */
  readonly metadataDir?: string;
  /** Where the last exported journal position is kept; without it, `Changelog/ferry-export.json` in the lake. */
  readonly state?: StateStore;
  /** How timestamp folders are named. Default `observed`. */
  readonly folderNameForm?: FolderNameForm;
}

/** What one export wrote. */
export interface SynapseLinkExportResult {
  /** The new timestamp folder, or null when nothing changed since the last export (Synapse Link writes none then). */
  readonly folder: string | null;
  /** Rows written per table (append-only: every change is a row, deletes included). */
  readonly rows: Readonly<Record<string, number>>;
  /** Journal position the export reached. */
  readonly seq: number;
}

type Snapshot = CatalogTableSnapshot;

interface Column {
  readonly name: string;
  readonly dataType: 'guid' | 'string' | 'int64' | 'double' | 'decimal' | 'boolean' | 'dateTime' | 'dateTimeOffset';
  readonly precision?: number;
  readonly scale?: number;
  readonly maxLength?: number;
  /** Which stored value the column holds. */
  readonly from: string;
  readonly dateOnly?: boolean;
}

const STATE_NAMESPACE = 'synapse-link-export';
const SYSTEM = new Set(['versionnumber', 'createdon', 'modifiedon']);

/**
 * Writes what Azure Synapse Link for Dataverse (incremental update folders, append-only CSV) would export for the
 * emulator's changes since the last export: a new timestamp folder (`FolderNameForm`) with headerless per-table CSVs
 * (`Id, SinkCreatedOn, SinkModifiedOn, ...attributes..., versionnumber, createdon, modifiedon, IsDelete`), its
 * `model.json` (written last, as Synapse Link finalises a folder), `OptionsetMetadata/*.csv` from the metadata
 * snapshots, `Changelog/changelog.info` naming the folder in progress, and the root `model.json`.
 */
export async function exportSynapseLink(
  store: EmulatorStore,
  lake: ExportLake,
  folder: string,
  options: SynapseLinkExportOptions = {},
): Promise<SynapseLinkExportResult> {
  const now = options.now ?? new Date();
  const form = options.folderNameForm ?? 'observed';
  const catalog = await EmulatorCatalog.load(options.metadataDir ?? 'fixtures/metadata');
  const metas = new Map<string, Snapshot>();
  for (const table of options.tables ?? store.tables()) {
    const snapshot = catalog.byLogicalName(table)?.snapshot;
    if (snapshot) metas.set(table, snapshot);
    else if (options.tables) {
      throw new FerryError(
        'emulator.export_table',
        `No metadata snapshot for table \`${table}\` in \`${options.metadataDir ?? 'fixtures/metadata'}\`; add \`${table}.json\` or leave the table out.`,
      );
    }
  }
  const afterSeq = await lastSeq(lake, folder, options.state);
  const journal = store.journal(afterSeq);
  const entries = journal.filter((e) => metas.has(e.table));
  const seq = journal.at(-1)?.seq ?? afterSeq;
  const columns = new Map([...metas].map(([t, m]) => [t, columnsOf(m)]));
  if (entries.length === 0) {
    await saveSeq(lake, folder, options.state, seq);
    return { folder: null, rows: {}, seq };
  }

  const name = await freshFolderName(lake, folder, now, form);
  // Like Synapse Link: the folder is named in changelog.info while it is written and gets its model.json last.
  await lake.write(join(folder, 'Changelog', 'changelog.info'), name);
  const sink = usDateTime(now);
  const byFile = new Map<string, string[]>();
  const rows: Record<string, number> = {};
  for (const entry of entries) {
    const cols = columns.get(entry.table)!;
    const createdOn = createdOnOf(store, entry);
    const line = cols.map((c) => formatValue(c, entry, createdOn, sink)).join(',');
    const file = join(folder, name, entry.table, `${createdOn.slice(0, 4)}.csv`);
    const list = byFile.get(file) ?? [];
    list.push(line);
    byFile.set(file, list);
    rows[entry.table] = (rows[entry.table] ?? 0) + 1;
  }
  for (const [file, lines] of byFile) await lake.write(file, `${lines.join('\n')}\n`);
  // The same option-set files go into the new folder and the root.
  const optionSets = optionSetFiles([...metas.values()]);
  for (const dir of [join(folder, name, 'OptionsetMetadata'), join(folder, 'OptionsetMetadata')]) {
    for (const [file, text] of optionSets) await lake.write(join(dir, file), text);
  }
  const model = modelJson(metas, columns, new Set(Object.keys(rows)), sink);
  await lake.write(join(folder, name, 'model.json'), model);
  await lake.write(join(folder, 'model.json'), modelJson(metas, columns, new Set(metas.keys()), sink));
  // The next folder is the one in progress now; it does not exist yet, and readers stop before it.
  await lake.write(
    join(folder, 'Changelog', 'changelog.info'),
    folderName(new Date(now.getTime() + 15 * 60_000), form),
  );
  await saveSeq(lake, folder, options.state, seq);
  return { folder: name, rows, seq };
}

/** CDM columns of a table in Synapse Link order: Id, Sink columns, attributes, then the system block. */
function columnsOf(meta: Snapshot): Column[] {
  const out: Column[] = [
    { name: 'Id', dataType: 'guid', from: '$id' },
    { name: 'SinkCreatedOn', dataType: 'dateTime', from: '$sink' },
    { name: 'SinkModifiedOn', dataType: 'dateTime', from: '$sink' },
  ];
  for (const a of meta.Attributes) {
    const n = a.LogicalName;
    if (n === meta.PrimaryIdAttribute || SYSTEM.has(n)) continue;
    const type = a.AttributeTypeName.Value;
    const attr = a as unknown as { MaxLength?: number; Precision?: number; DateTimeBehavior?: { Value: string } };
    switch (type) {
      case 'StringType':
      case 'MemoType':
      case 'EntityNameType':
      case 'MultiSelectPicklistType':
      case 'VirtualType':
        out.push({ name: n, dataType: 'string', from: n, ...(attr.MaxLength ? { maxLength: attr.MaxLength } : {}) });
        break;
      case 'IntegerType':
      case 'BigIntType':
      case 'PicklistType':
      case 'StateType':
      case 'StatusType':
        out.push({ name: n, dataType: 'int64', from: n });
        break;
      case 'DoubleType':
        out.push({ name: n, dataType: 'double', from: n });
        break;
      case 'DecimalType':
        out.push({ name: n, dataType: 'decimal', precision: 38, scale: attr.Precision ?? 10, from: n });
        break;
      case 'MoneyType':
        // Dataverse keeps money with 4 decimal places whatever the display precision.
        out.push({ name: n, dataType: 'decimal', precision: 38, scale: 4, from: n });
        break;
      case 'BooleanType':
        out.push({ name: n, dataType: 'boolean', from: n });
        break;
      case 'DateTimeType':
        out.push({
          name: n,
          dataType: 'dateTime',
          from: n,
          ...(attr.DateTimeBehavior?.Value === 'DateOnly' ? { dateOnly: true } : {}),
        });
        break;
      case 'UniqueidentifierType':
      case 'LookupType':
      case 'CustomerType':
      case 'OwnerType':
        out.push({ name: n, dataType: 'guid', from: n });
        break;
      default:
        break; // Image, File, PartyList...: not exported by Synapse Link either.
    }
  }
  out.push(
    { name: 'versionnumber', dataType: 'int64', from: '$version' },
    { name: 'createdon', dataType: 'dateTimeOffset', from: '$createdon' },
    { name: 'modifiedon', dataType: 'dateTime', from: '$modifiedon' },
    { name: 'IsDelete', dataType: 'boolean', from: '$delete' },
  );
  return out;
}

function createdOnOf(store: EmulatorStore, entry: JournalEntry): string {
  return store.get(entry.table, entry.id)?.createdOn ?? entry.at;
}

function formatValue(c: Column, e: JournalEntry, createdOn: string, sink: string): string {
  const deleted = e.op === 'delete';
  switch (c.from) {
    case '$id':
      return e.id;
    case '$sink':
      return `"${sink}"`;
    case '$version':
      return String(e.versionNumber);
    case '$createdon':
      // createdon is dateTimeOffset with a 7-digit fraction (Synapse Link FAQ date-format table).
      return deleted ? '' : `"${createdOn.replace(/(\.\d+)?Z$/, '')}.0000000+00:00"`;
    case '$modifiedon':
      return deleted ? '' : `"${e.at}"`;
    case '$delete':
      return deleted ? 'True' : '';
  }
  if (deleted || !e.record) return '';
  const v = e.record[c.from];
  if (v === null || v === undefined) return '';
  switch (c.dataType) {
    case 'string':
      return `"${String(v).replaceAll('"', '""')}"`;
    case 'boolean':
      return v === true || v === 'true' ? 'True' : 'False';
    case 'dateTime':
      return `"${c.dateOnly && /^\d{4}-\d{2}-\d{2}$/.test(String(v)) ? `${v}T00:00:00Z` : String(v)}"`;
    case 'double':
    case 'decimal':
    case 'int64':
      return plainNumber(v);
    default:
      return String(v);
  }
}

// JSON numbers print as `1e+21` or `1e-7` past some range; the CSV needs plain invariant digits.
function plainNumber(v: unknown): string {
  if (typeof v !== 'number') return String(v);
  const text = String(v);
  if (!/e/i.test(text)) return text;
  return Math.abs(v) >= 1 ? BigInt(Math.round(v)).toString() : v.toFixed(20).replace(/0+$/, '');
}

/** `M/d/yyyy h:mm:ss tt`, the format of SinkCreatedOn/SinkModifiedOn. */
function usDateTime(d: Date): string {
  const h = d.getUTCHours();
  const pad = (n: number) => String(n).padStart(2, '0');
  return `${d.getUTCMonth() + 1}/${d.getUTCDate()}/${d.getUTCFullYear()} ${h % 12 === 0 ? 12 : h % 12}:${pad(d.getUTCMinutes())}:${pad(d.getUTCSeconds())} ${h < 12 ? 'AM' : 'PM'}`;
}

function modelJson(
  metas: Map<string, Snapshot>,
  columns: Map<string, Column[]>,
  withData: Set<string>,
  sink: string,
): string {
  const entities = [...metas.keys()].map((table) => ({
    $type: 'LocalEntity',
    name: table,
    description: table,
    annotations: [
      { name: 'Athena:PartitionGranularity', value: 'Year' },
      { name: 'Athena:InitialSyncState', value: 'Completed' },
      { name: 'Athena:InitialSyncDataCompletedTime', value: sink },
    ],
    attributes: columns.get(table)!.map((c) => ({
      name: c.name,
      dataType: c.dataType,
      maxLength: c.maxLength ?? -1,
      ...(c.dataType === 'decimal'
        ? {
            'cdm:traits': [
              {
                traitReference: 'is.dataFormat.numeric.shaped',
                arguments: [
                  { name: 'precision', value: c.precision },
                  { name: 'scale', value: c.scale },
                ],
              },
            ],
          }
        : {}),
    })),
    partitions: withData.has(table) ? [{ name: table, location: `${table}/` }] : [],
  }));
  return `${JSON.stringify({ name: 'cdm', description: 'cdm', version: '1.0', entities }, null, 2)}\n`;
}

/** The `OptionsetMetadata/*.csv` files of the tables, as [file name, text] pairs. */
function optionSetFiles(metas: readonly Snapshot[]): Array<[string, string]> {
  const q = (s: string) => `"${s.replaceAll('"', '""')}"`;
  const optionSet: string[] = [];
  const global: string[] = [];
  const states: string[] = [];
  const statuses: string[] = [];
  const targets: string[] = [];
  for (const m of metas) {
    const t = m.LogicalName;
    for (const a of m.Attributes) {
      const type = a.AttributeTypeName.Value;
      const set = (
        a as unknown as {
          OptionSet?: {
            Name?: string;
            IsGlobal?: boolean;
            Options: Array<{ Value: number; Label: unknown; State?: number }>;
          };
        }
      ).OptionSet;
      if (set && (type === 'PicklistType' || type === 'MultiSelectPicklistType')) {
        for (const o of set.Options) {
          optionSet.push([t, a.LogicalName, o.Value, 'False', 1033, q(String(o.Label))].join(','));
          if (set.IsGlobal && set.Name)
            global.push([a.LogicalName, o.Value, 'False', 1033, q(String(o.Label)), set.Name, t].join(','));
        }
      }
      if (set && type === 'StateType')
        for (const o of set.Options) states.push([t, o.Value, 'False', 1033, q(String(o.Label))].join(','));
      if (set && type === 'StatusType')
        for (const o of set.Options)
          statuses.push([t, o.State ?? '', o.Value, 'False', 1033, q(String(o.Label))].join(','));
    }
    for (const r of m.ManyToOneRelationships ?? [])
      targets.push([t, r.ReferencingAttribute, r.ReferencedEntity, r.ReferencedAttribute].join(','));
  }
  const body = (lines: string[]) => (lines.length ? `${lines.join('\n')}\n` : '');
  return [
    ['OptionsetMetadata.csv', body(optionSet)],
    ['GlobalOptionsetMetadata.csv', body(global)],
    ['StateMetadata.csv', body(states)],
    ['StatusMetadata.csv', body(statuses)],
    ['TargetMetadata.csv', body(targets)],
  ];
}

// Folder names have whole seconds; two exports in one second (tests, demos) move on to the next free second.
async function freshFolderName(lake: ExportLake, folder: string, now: Date, form: FolderNameForm): Promise<string> {
  const existing = (await lake.list(folder))
    .filter((e) => e.isDirectory)
    .map((e) => folderTime(e.path.split('/').at(-1)!))
    .filter((t): t is number => t !== undefined);
  const latest = existing.length ? Math.max(...existing) : undefined;
  let t = Math.floor(now.getTime() / 1000) * 1000;
  if (latest !== undefined && latest >= t) t = latest + 1000;
  return folderName(new Date(t), form);
}

/** `2024-01-01T10.15.00Z` (observed) or `2024-01-01T10:15:00.000Z` (documented). */
function folderName(time: Date, form: FolderNameForm): string {
  const iso = time.toISOString();
  return form === 'documented' ? iso : `${iso.slice(0, 19).replaceAll(':', '.')}Z`;
}

/** The time of a folder this export wrote in either form, or undefined for other folders. */
function folderTime(name: string): number | undefined {
  const m = /^(\d{4}-\d{2}-\d{2})T(\d{2})[.:](\d{2})[.:](\d{2})(\.\d{3})?Z$/.exec(name);
  if (!m) return undefined;
  const t = Date.parse(`${m[1]}T${m[2]}:${m[3]}:${m[4]}${m[5] ?? ''}Z`);
  return Number.isNaN(t) ? undefined : t;
}

/** Lake paths use `/`; empty segments are dropped. */
function join(...parts: string[]): string {
  return parts
    .flatMap((p) => p.split('/'))
    .filter((p) => p !== '' && p !== '.')
    .join('/');
}

async function lastSeq(lake: ExportLake, folder: string, state: StateStore | undefined): Promise<number> {
  const fromState = state?.getValue(STATE_NAMESPACE, folder);
  if (fromState) return Number(fromState);
  const marker = join(folder, 'Changelog', 'ferry-export.json');
  if (!(await lake.stat(marker))) return 0;
  return Number((JSON.parse(await lake.readText(marker)) as { seq?: number }).seq ?? 0);
}

async function saveSeq(lake: ExportLake, folder: string, state: StateStore | undefined, seq: number): Promise<void> {
  state?.setValue(STATE_NAMESPACE, folder, String(seq));
  await lake.write(join(folder, 'Changelog', 'ferry-export.json'), `${JSON.stringify({ seq })}\n`);
}
