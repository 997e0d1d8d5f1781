import { parseExactJson, stringifyExactJson } from '../../core/exact-json.js';
import { snapshotText, type TableMetadata } from '../../core/table-metadata.js';

/** What changed between the committed snapshot and the live table. */
export type MetadataChangeKind =
  | 'table.changed'
  | 'table.removed'
  | 'column.added'
  | 'column.removed'
  | 'column.changed'
  | 'option.added'
  | 'option.removed'
  | 'option.changed'
  | 'key.added'
  | 'key.removed'
  | 'key.changed'
  | 'relationship.added'
  | 'relationship.removed'
  | 'relationship.changed';

/** One difference. `committed`/`live` hold the values as JSON text (exact for Int64 limits). */
export interface MetadataChange {
  readonly table: string;
  readonly kind: MetadataChangeKind;
  /** Column, key or relationship name; for options `<column>=<value>`. */
  readonly name?: string;
  /** The property that differs (`MaxLength`, `Precision`, `Label`, `KeyAttributes`...). */
  readonly property?: string;
  readonly committed?: string;
  readonly live?: string;
}

type Json = Record<string, unknown>;

/**
 * Compares a committed snapshot with the live table, both through `snapshotText` so a default left out on one side
 * (`SupportsBulk: true`, `IsGlobal: false`) and key order never count as drift. Returns [] when nothing changed.
 */
export function diffMetadata(committed: TableMetadata, live: TableMetadata): MetadataChange[] {
  const a = parseExactJson(snapshotText(committed)) as Json;
  const b = parseExactJson(snapshotText(live)) as Json;
  const table = committed.LogicalName;
  const changes: MetadataChange[] = [];
  const push = (change: Omit<MetadataChange, 'table'>) => changes.push({ table, ...change });

  for (const property of union(Object.keys(a), Object.keys(b))) {
    if (property === 'Keys' || property === 'Attributes' || property === 'ManyToOneRelationships') continue;
    // `SupportsBulk` is left out when true: compare the meaning, not the presence.
    const left = property === 'SupportsBulk' ? (a[property] ?? true) : a[property];
    const right = property === 'SupportsBulk' ? (b[property] ?? true) : b[property];
    if (text(left) !== text(right)) push({ kind: 'table.changed', property, ...values(left, right) });
  }

  compareLists(list(a.Keys), list(b.Keys), (k) => String(k.LogicalName), 'key', push);
  compareLists(
    list(a.ManyToOneRelationships),
    list(b.ManyToOneRelationships),
    (r) => String(r.ReferencingAttribute),
    'relationship',
    push,
  );

  const liveColumns = byName(list(b.Attributes), (c) => String(c.LogicalName));
  const committedColumns = byName(list(a.Attributes), (c) => String(c.LogicalName));
  for (const [name, column] of committedColumns) {
    const other = liveColumns.get(name);
    if (!other) {
      push({ kind: 'column.removed', name });
      continue;
    }
    for (const property of union(Object.keys(column), Object.keys(other))) {
      if (property === 'OptionSet') continue;
      if (text(column[property]) !== text(other[property])) {
        push({ kind: 'column.changed', name, property, ...values(column[property], other[property]) });
      }
    }
    compareOptionSets(name, column.OptionSet as Json | undefined, other.OptionSet as Json | undefined, push);
  }
  for (const name of liveColumns.keys()) if (!committedColumns.has(name)) push({ kind: 'column.added', name });
  return changes;
}

/** One line per change, for the terminal. */
export function describeChange(change: MetadataChange): string {
  const what = change.name ? `${change.kind.split('.')[0]} ${change.name}` : 'table';
  const verb = change.kind.split('.')[1];
  if (verb !== 'changed') return `${change.table}: ${what} ${verb}`;
  return `${change.table}: ${what} ${change.property}: ${change.committed ?? '(none)'} → ${change.live ?? '(none)'}`;
}

function compareOptionSets(
  column: string,
  committed: Json | undefined,
  live: Json | undefined,
  push: (change: Omit<MetadataChange, 'table'>) => void,
): void {
  if (!committed && !live) return;
  for (const property of ['Name', 'IsGlobal']) {
    const left = committed?.[property] ?? (property === 'IsGlobal' ? false : undefined);
    const right = live?.[property] ?? (property === 'IsGlobal' ? false : undefined);
    if (text(left) !== text(right)) {
      push({ kind: 'column.changed', name: column, property: `OptionSet.${property}`, ...values(left, right) });
    }
  }
  const options = (set: Json | undefined): Json[] => [
    ...list(set?.Options),
    ...(set?.TrueOption ? [set.TrueOption as Json] : []),
    ...(set?.FalseOption ? [set.FalseOption as Json] : []),
  ];
  compareLists(options(committed), options(live), (o) => `${column}=${String(o.Value)}`, 'option', push);
}

function compareLists(
  committed: readonly Json[],
  live: readonly Json[],
  keyOf: (item: Json) => string,
  noun: 'key' | 'relationship' | 'option',
  push: (change: Omit<MetadataChange, 'table'>) => void,
): void {
  const left = byName(committed, keyOf);
  const right = byName(live, keyOf);
  for (const [name, item] of left) {
    const other = right.get(name);
    if (!other) {
      push({ kind: `${noun}.removed`, name });
      continue;
    }
    for (const property of union(Object.keys(item), Object.keys(other))) {
      if (text(item[property]) !== text(other[property])) {
        push({ kind: `${noun}.changed`, name, property, ...values(item[property], other[property]) });
      }
    }
  }
  for (const name of right.keys()) if (!left.has(name)) push({ kind: `${noun}.added`, name });
}

function values(committed: unknown, live: unknown): { committed?: string; live?: string } {
  return {
    ...(committed === undefined ? {} : { committed: text(committed) }),
    ...(live === undefined ? {} : { live: text(live) }),
  };
}

function text(value: unknown): string | undefined {
  return value === undefined ? undefined : stringifyExactJson(value);
}

function list(value: unknown): Json[] {
  return Array.isArray(value) ? (value as Json[]) : [];
}

function byName(items: readonly Json[], keyOf: (item: Json) => string): Map<string, Json> {
  return new Map(items.map((i) => [keyOf(i), i]));
}

function union(a: readonly string[], b: readonly string[]): string[] {
  return [...new Set([...a, ...b])];
}
