/**
 * What each executor leaves behind, read the same way on both sides, and the differences between them:
 * - Dataverse: every record of every table of the emulator, every column, a record known by its alternate key (the
 *   two emulators give records different GUIDs, so a lookup GUID is replaced by the key of the record it names);
 *   only the service's own bookkeeping columns (`versionnumber`, `createdon`, `modifiedon`, …) are left out;
 * - the warehouse: per output folder, the current state — the latest row per `Id` (by `versionnumber`) unless that
 *   latest change is a delete — with values compared as canonical text and column types compared separately;
 * - rejects: open rejects per pipeline, reason and key (the Synapse path's `ferry.rejects`, the local state store).
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import { DuckDbStaging } from '../../../src/dialects/duckdb/driver.js';
import type { RunningEmulator } from '../../../src/emulator/server.js';
import { type DifferentialTwin, METADATA } from './twin.js';

export interface SideState {
  /** table → record identity → column → canonical value. */
  readonly dataverse: Record<string, Record<string, Record<string, unknown>>>;
  /** output → Id → column → canonical text (current rows only). */
  readonly warehouse: Record<string, Record<string, Record<string, string | null>>>;
  /** output → Ids whose latest change is a delete. */
  readonly deleted: Record<string, string[]>;
  /** output → column → Parquet type. */
  readonly warehouseTypes: Record<string, Record<string, string>>;
  /** output → names of its window folders (the first folder level under the output). */
  readonly windows: Record<string, string[]>;
  /** `pipeline|reason|key` → count of distinct open rejects. */
  readonly rejects: Record<string, number>;
}

export type DifferenceArea = 'dataverse' | 'warehouse' | 'warehouse-type' | 'warehouse-window' | 'reject';

/** One difference: the local value first, the Synapse value second (`undefined` = absent on that side). */
export interface Difference {
  readonly area: DifferenceArea;
  /** Dataverse table, warehouse output, or the reject's pipeline. */
  readonly table: string;
  /** Record identity, warehouse Id, or `reason|key` of a reject. */
  readonly id: string;
  /** Column, or `*` for the whole record/row/reject. */
  readonly column: string;
  readonly local: unknown;
  readonly synapse: unknown;
}

export function describeDifference(d: Difference): string {
  const show = (v: unknown) => (v === undefined ? '(absent)' : JSON.stringify(v)?.slice(0, 80));
  return `${d.area} ${d.table} ${d.id.slice(0, 60)} ${d.column}: local ${show(d.local)} vs synapse ${show(d.synapse)}`;
}

async function alternateKeys(): Promise<Map<string, string[]>> {
  const keys = new Map<string, string[]>();
  for (const name of await fs.readdir(METADATA)) {
    if (!name.endsWith('.json')) continue;
    const meta = JSON.parse(await fs.readFile(path.join(METADATA, name), 'utf8')) as {
      LogicalName: string;
      Keys?: Array<{ KeyAttributes: string[] }>;
    };
    if (meta.Keys?.[0]) keys.set(meta.LogicalName, meta.Keys[0].KeyAttributes);
  }
  return keys;
}

/** Columns the service sets itself on every write: when, not what. */
const SERVICE_BOOKKEEPING = new Set(['versionnumber', 'createdon', 'modifiedon']);
const GUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** Every column but the service's bookkeeping; a GUID becomes the identity of the record it names, if known. */
function normaliseRecord(
  attributes: Readonly<Record<string, unknown>>,
  identities: ReadonlyMap<string, string>,
): Record<string, unknown> {
  const value = (v: unknown): unknown =>
    typeof v === 'string' && GUID.test(v)
      ? (identities.get(v.toLowerCase()) ?? v.toLowerCase())
      : Array.isArray(v)
        ? v.map(value)
        : v;
  const out: Record<string, unknown> = {};
  for (const key of Object.keys(attributes).sort())
    if (!SERVICE_BOOKKEEPING.has(key)) out[key] = value(attributes[key]);
  return out;
}

function dataverseState(emulator: RunningEmulator, keys: Map<string, string[]>): SideState['dataverse'] {
  const store = emulator.store;
  const identityOf = (table: string, attributes: Readonly<Record<string, unknown>>) => {
    const k = keys.get(table);
    return k ? `${table}(${k.map((a) => String(attributes[a])).join(',')})` : `${table}${JSON.stringify(attributes)}`;
  };
  const identities = new Map<string, string>();
  for (const table of store.tables())
    for (const row of store.rows(table)) identities.set(row.id.toLowerCase(), identityOf(table, row.attributes));
  // A record deleted in Dataverse keeps the identity it had: a lookup still naming it (the emulator's delete leaves
  // it) compares by that identity on both sides, not by the GUID each emulator chose.
  for (const e of store.journal())
    if (e.op === 'upsert' && e.record && !store.get(e.table, e.id))
      identities.set(e.id.toLowerCase(), `${identityOf(e.table, e.record)} (deleted)`);
  const out: SideState['dataverse'] = {};
  for (const table of store.tables()) {
    const rows = store.rows(table);
    if (!rows.length) continue;
    const byId: Record<string, Record<string, unknown>> = {};
    for (const row of rows) byId[identityOf(table, row.attributes)] = normaliseRecord(row.attributes, identities);
    out[table] = byId;
  }
  return out;
}

/** Canonical text of a warehouse value: numbers by value, timestamps as UTC ISO, booleans as true/false. */
function canonical(value: unknown): string | null {
  if (value === null || value === undefined || value === '') return null;
  if (typeof value === 'bigint' || typeof value === 'number') return String(Number(value));
  if (typeof value === 'boolean') return String(value);
  if (value instanceof Date) return value.toISOString();
  const text = String(value);
  if (/^-?\d+(\.\d+)?$/.test(text)) return String(Number(text));
  if (/^(true|false|True|False)$/.test(text)) return text.toLowerCase();
  const t = /^\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}(:\d{2}(\.\d+)?)?([+-]\d{2}(:?\d{2})?|Z)?$/.test(text)
    ? Date.parse(text.replace(' ', 'T').replace(/([+-]\d{2})$/, '$1:00'))
    : /^\d{1,2}\/\d{1,2}\/\d{4} \d{1,2}:\d{2}:\d{2} [AP]M$/.test(text)
      ? Date.parse(`${text} UTC`)
      : Number.NaN;
  return Number.isNaN(t) ? text : new Date(t).toISOString();
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/**
 * The warehouse as a reader sees it. Deletes are rows of `deletes*` files or folders inside the output, of a
 * `<output>_deletes/` output beside it, or rows whose `IsDelete` flag is set. A folder named by a pipeline run id is
 * read only when `published` holds that run id (the Synapse path publishes a run's folder through `ferry.runs`).
 */
async function warehouseState(
  duck: DuckDbStaging,
  root: string,
  published?: ReadonlySet<string>,
): Promise<Pick<SideState, 'warehouse' | 'deleted' | 'warehouseTypes' | 'windows'>> {
  const warehouse: SideState['warehouse'] = {};
  const deleted: SideState['deleted'] = {};
  const warehouseTypes: SideState['warehouseTypes'] = {};
  const windows: SideState['windows'] = {};
  const dirs = (await fs.readdir(root, { withFileTypes: true }).catch(() => []))
    .filter((e) => e.isDirectory())
    .map((e) => e.name);
  // `_manifests/` and other `_`/`.` folders at the root are bookkeeping, not outputs.
  const outputs = dirs.filter(
    (d) =>
      !d.startsWith('_') &&
      !d.startsWith('.') &&
      !(d.endsWith('_deletes') && dirs.includes(d.slice(0, -'_deletes'.length))),
  );
  for (const output of outputs) {
    const latest = new Map<string, { version: number; row: Record<string, string | null>; isDelete: boolean }>();
    const types: Record<string, string> = {};
    windows[output] = (await fs.readdir(path.join(root, output), { withFileTypes: true }))
      .filter((e) => e.isDirectory() && !e.name.startsWith('_') && !e.name.startsWith('.'))
      .map((e) => e.name)
      .sort();
    const sources = [
      { dir: path.join(root, output), deletes: false },
      { dir: path.join(root, `${output}_deletes`), deletes: true },
    ];
    for (const source of sources) {
      const files = (await fs.readdir(source.dir, { recursive: true }).catch(() => [] as string[]))
        .filter(
          (f) =>
            f.endsWith('.parquet') &&
            !f.split(path.sep).some((p) => p.startsWith('_') || p.startsWith('.')) &&
            f.split(path.sep).every((p) => !UUID.test(p) || !published || published.has(p)),
        )
        .sort();
      for (const file of files) {
        const full = path.join(source.dir, file).replaceAll("'", "''");
        const isDeleteFile = source.deletes || /(^|[/\\_-])deletes?([/\\_.-]|$)/.test(file);
        const rows = await duck.all<Record<string, unknown>>(`SELECT * FROM read_parquet('${full}')`);
        if (!isDeleteFile)
          for (const c of await duck.all<{ column_name: string; column_type: string }>(
            `DESCRIBE SELECT * FROM read_parquet('${full}')`,
          ))
            types[c.column_name] = c.column_type;
        for (const [i, raw] of rows.entries()) {
          const row: Record<string, string | null> = {};
          for (const [k, v] of Object.entries(raw)) row[k] = canonical(v);
          const id = row.Id ?? row.id;
          if (!id) continue;
          const flag = row.IsDelete ?? row.isdelete ?? row.is_deleted ?? row.__deleted ?? null;
          const version = Number(row.versionnumber ?? i);
          const prev = latest.get(id);
          if (!prev || version >= prev.version)
            latest.set(id, { version, row, isDelete: isDeleteFile || flag === 'true' || flag === '1' });
        }
      }
    }
    const current: Record<string, Record<string, string | null>> = {};
    const gone: string[] = [];
    for (const [id, v] of latest) {
      if (v.isDelete) gone.push(id);
      else current[id] = v.row;
    }
    warehouse[output] = current;
    deleted[output] = gone.sort();
    warehouseTypes[output] = types;
  }
  return { warehouse, deleted, warehouseTypes, windows };
}

function rejectKey(pipeline: string, reason: string, key: string | null | undefined): string {
  return `${pipeline}|${reason}|${key ?? ''}`;
}

export async function localState(twin: DifferentialTwin, duck: DuckDbStaging): Promise<SideState> {
  const keys = await alternateKeys();
  const rejects: Record<string, number> = {};
  const seen = new Set<string>();
  for (const r of twin.local.state.listRejects({ status: 'open' })) {
    const k = rejectKey(r.pipeline, r.reason, r.key);
    const distinct = `${k}|${r.sourceFile}|${r.rowNumber}`;
    if (seen.has(distinct)) continue;
    seen.add(distinct);
    rejects[k] = (rejects[k] ?? 0) + 1;
  }
  return {
    dataverse: dataverseState(twin.local.emulator, keys),
    ...(await warehouseState(duck, twin.local.config.warehouse)),
    rejects,
  };
}

export async function synapseState(twin: DifferentialTwin, duck: DuckDbStaging): Promise<SideState> {
  const keys = await alternateKeys();
  const rejects: Record<string, number> = {};
  const rows = await twin.synapse.rt.services.sql.duck.all<{
    pipeline: string;
    reason: string;
    key: string | null;
    n: number;
  }>(
    `SELECT pipeline, reason, "key", count(DISTINCT coalesce(source_file, '') || '#' || coalesce(CAST(row_number AS VARCHAR), '')) AS n FROM ferry.rejects WHERE status = 'open' GROUP BY ALL`,
  );
  for (const r of rows) rejects[rejectKey(r.pipeline, r.reason, r.key)] = Number(r.n);
  return {
    dataverse: dataverseState(twin.synapse.emulator, keys),
    ...(await warehouseState(
      duck,
      twin.synapse.warehouseDir,
      new Set(
        (
          await twin.synapse.rt.services.sql.duck.all<{ id: string }>(
            "SELECT id FROM ferry.runs WHERE status = 'succeeded'",
          )
        ).map((r) => r.id),
      ),
    )),
    rejects,
  };
}

const union = (a: object, b: object) => [...new Set([...Object.keys(a), ...Object.keys(b)])].sort();

/** Every difference between the two sides' end states. */
export function compareStates(local: SideState, synapse: SideState): Difference[] {
  const out: Difference[] = [];
  for (const table of union(local.dataverse, synapse.dataverse)) {
    const l = local.dataverse[table] ?? {};
    const s = synapse.dataverse[table] ?? {};
    for (const id of union(l, s)) {
      const lr = l[id];
      const sr = s[id];
      if (!lr || !sr) {
        out.push({ area: 'dataverse', table, id, column: '*', local: lr, synapse: sr });
        continue;
      }
      for (const column of union(lr, sr)) {
        const lv = lr[column] ?? null;
        const sv = sr[column] ?? null;
        if (JSON.stringify(lv) !== JSON.stringify(sv))
          out.push({ area: 'dataverse', table, id, column, local: lv, synapse: sv });
      }
    }
  }
  for (const output of union(local.warehouse, synapse.warehouse)) {
    const l = local.warehouse[output] ?? {};
    const s = synapse.warehouse[output] ?? {};
    for (const id of union(l, s)) {
      const lr = l[id];
      const sr = s[id];
      if (!lr || !sr) {
        out.push({ area: 'warehouse', table: output, id, column: '*', local: lr, synapse: sr });
        continue;
      }
      for (const column of union(lr, sr)) {
        const lv = lr[column] ?? null;
        const sv = sr[column] ?? null;
        if (lv !== sv) out.push({ area: 'warehouse', table: output, id, column, local: lv, synapse: sv });
      }
    }
    const ld = new Set(local.deleted[output] ?? []);
    const sd = new Set(synapse.deleted[output] ?? []);
    for (const id of [...new Set([...ld, ...sd])].filter((x) => ld.has(x) !== sd.has(x)))
      out.push({ area: 'warehouse', table: output, id, column: '(deleted)', local: ld.has(id), synapse: sd.has(id) });
    const lw = local.windows[output] ?? [];
    const sw = synapse.windows[output] ?? [];
    for (const name of [...new Set([...lw, ...sw])].sort())
      if (lw.includes(name) !== sw.includes(name))
        out.push({
          area: 'warehouse-window',
          table: output,
          id: name,
          column: '*',
          local: lw.includes(name),
          synapse: sw.includes(name),
        });
    const lt = local.warehouseTypes[output] ?? {};
    const st = synapse.warehouseTypes[output] ?? {};
    if (Object.keys(lt).length && Object.keys(st).length)
      for (const column of union(lt, st))
        if (lt[column] !== st[column])
          out.push({ area: 'warehouse-type', table: output, id: '*', column, local: lt[column], synapse: st[column] });
  }
  for (const key of union(local.rejects, synapse.rejects)) {
    const lv = local.rejects[key] ?? 0;
    const sv = synapse.rejects[key] ?? 0;
    if (lv !== sv) {
      const [pipeline, ...rest] = key.split('|');
      out.push({ area: 'reject', table: pipeline!, id: rest.join('|'), column: '*', local: lv, synapse: sv });
    }
  }
  return out;
}

export async function compareTwin(twin: DifferentialTwin): Promise<{
  differences: Difference[];
  local: SideState;
  synapse: SideState;
}> {
  const duck = await DuckDbStaging.open({ memoryLimit: '256MB', threads: 1 });
  try {
    const local = await localState(twin, duck);
    const synapse = await synapseState(twin, duck);
    return { differences: compareStates(local, synapse), local, synapse };
  } finally {
    await duck.close();
  }
}
