/**
 * Pure comparison of two end states of the demo pipelines (emulator store, warehouse rows, error store, processed
 * windows) for the crash harness: what an interrupted-and-recovered sequence lost or duplicated relative to an
 * uninterrupted one.
 */

/** A snapshot of everything a run sequence leaves behind, already normalised (no GUIDs, no run times). */
export interface EndState {
  /** Per Dataverse table: identity (alternate key or content) → normalised rows with that identity. */
  readonly dataverse: Record<string, Record<string, string[]>>;
  /** Per warehouse table folder: normalised row JSON → count. */
  readonly warehouse: Record<string, Record<string, number>>;
  /** Open rejects: `pipeline|stage|reason|file|row|key` → count. */
  readonly rejects: Record<string, number>;
  /** Per pipeline: processed window items (inbound: file ids; outbound: a count, as folder names hold times). */
  readonly windows: Record<string, string[]>;
}

export interface Difference {
  lost: number;
  duplicated: number;
  skippedWindows: number;
  details: string[];
}

/** Counts rows and windows of `expected` missing from `actual` (lost/skipped) and extra ones (duplicated). */
export function compareEndStates(expected: EndState, actual: EndState): Difference {
  const diff: Difference = { lost: 0, duplicated: 0, skippedWindows: 0, details: [] };
  for (const table of union(Object.keys(expected.dataverse), Object.keys(actual.dataverse))) {
    const e = expected.dataverse[table] ?? {};
    const a = actual.dataverse[table] ?? {};
    for (const id of union(Object.keys(e), Object.keys(a))) {
      const er = e[id] ?? [];
      const ar = a[id] ?? [];
      if (ar.length > er.length) {
        diff.duplicated += ar.length - er.length;
        diff.details.push(`dataverse ${table} ${id}: ${ar.length} record(s), expected ${er.length}`);
      }
      // A record present but with other values than the uninterrupted run counts as a lost update.
      const missing = er.filter((row) => !ar.includes(row)).length;
      if (missing > 0) {
        diff.lost += missing;
        diff.details.push(`dataverse ${table} ${id}: ${ar.length ? 'different values' : 'missing'}`);
      }
    }
  }
  for (const table of union(Object.keys(expected.warehouse), Object.keys(actual.warehouse))) {
    countDiff(expected.warehouse[table] ?? {}, actual.warehouse[table] ?? {}, diff, `warehouse ${table}`);
  }
  countDiff(expected.rejects, actual.rejects, diff, 'open reject');
  for (const pipeline of union(Object.keys(expected.windows), Object.keys(actual.windows))) {
    const e = expected.windows[pipeline] ?? [];
    const a = new Set(actual.windows[pipeline] ?? []);
    for (const item of e) {
      if (!a.has(item)) {
        diff.skippedWindows += 1;
        diff.details.push(`window ${pipeline} ${item} not processed`);
      }
    }
  }
  return diff;
}

function countDiff(
  expected: Record<string, number>,
  actual: Record<string, number>,
  diff: Difference,
  label: string,
): void {
  for (const key of union(Object.keys(expected), Object.keys(actual))) {
    const e = expected[key] ?? 0;
    const a = actual[key] ?? 0;
    if (a < e) {
      diff.lost += e - a;
      diff.details.push(`${label} missing ×${e - a}: ${key.slice(0, 160)}`);
    } else if (a > e) {
      diff.duplicated += a - e;
      diff.details.push(`${label} extra ×${a - e}: ${key.slice(0, 160)}`);
    }
  }
}

function union(a: readonly string[], b: readonly string[]): string[] {
  return [...new Set([...a, ...b])].sort();
}

const GUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** Columns whose values depend on when or how often a row was written, not on what it holds. */
export const VOLATILE =
  /^(versionnumber|sinkcreatedon|sinkmodifiedon|modifiedon|createdon|overriddencreatedon|ferry_window|ferry_run_id|ferry_exported_at|_?window.*|.*_run_id|run_id|loaded_at|extracted_at)$/i;

/**
 * Normalises one row: GUIDs become the identity of the record they name (so two runs that gave a record different
 * ids still compare equal), volatile columns are dropped, keys sorted.
 */
export function normaliseRow(row: Record<string, unknown>, identities: ReadonlyMap<string, string>): string {
  const out: Record<string, unknown> = {};
  for (const key of Object.keys(row).sort()) {
    if (VOLATILE.test(key)) continue;
    out[key] = normaliseValue(row[key], identities);
  }
  return JSON.stringify(out);
}

function normaliseValue(value: unknown, identities: ReadonlyMap<string, string>): unknown {
  if (typeof value === 'string' && GUID.test(value)) return identities.get(value.toLowerCase()) ?? '<guid>';
  if (Array.isArray(value)) return value.map((v) => normaliseValue(v, identities));
  if (value && typeof value === 'object') {
    const out: Record<string, unknown> = {};
    for (const k of Object.keys(value).sort())
      out[k] = normaliseValue((value as Record<string, unknown>)[k], identities);
    return out;
  }
  return value;
}
