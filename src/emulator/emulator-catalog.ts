import { createHash } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { FerryError } from '../core/errors.js';
import { parseKeepingInt64 } from './int64-json.js';

/** One attribute as the snapshot describes it (a simplified AttributeMetadata). */
export interface CatalogAttribute {
  readonly LogicalName: string;
  readonly SchemaName?: string;
  readonly AttributeType: string;
  readonly AttributeTypeName: { readonly Value: string };
  readonly RequiredLevel?: string | { readonly Value: string };
  readonly IsValidForCreate?: boolean;
  readonly IsValidForUpdate?: boolean;
  readonly MaxLength?: number;
  /** A marked string (`int64-json.ts`) when an Int64 limit does not fit a double exactly. */
  readonly MinValue?: number | string;
  readonly MaxValue?: number | string;
  readonly Precision?: number;
  readonly DateTimeBehavior?: { readonly Value: string };
  readonly Format?: string;
  readonly OptionSet?: {
    readonly Name?: string;
    readonly Options?: ReadonlyArray<{
      readonly Value: number;
      readonly Label?: unknown;
      readonly State?: number;
      readonly DefaultStatus?: number;
    }>;
    readonly TrueOption?: { readonly Value: number; readonly Label?: unknown };
    readonly FalseOption?: { readonly Value: number; readonly Label?: unknown };
  };
  readonly Targets?: readonly string[];
  readonly [extra: string]: unknown;
}

/** An alternate key of a table. */
export interface CatalogKey {
  readonly LogicalName: string;
  readonly SchemaName?: string;
  readonly KeyAttributes: readonly string[];
  readonly EntityKeyIndexStatus?: string;
  readonly [extra: string]: unknown;
}

/** A many-to-one relationship: the lookup attribute and its navigation property. */
export interface CatalogRelationship {
  readonly SchemaName: string;
  readonly ReferencedEntity: string;
  readonly ReferencedAttribute?: string;
  readonly ReferencingAttribute: string;
  readonly ReferencingEntity?: string;
  readonly ReferencingEntityNavigationPropertyName: string;
  readonly ReferencedEntityNavigationPropertyName?: string;
  readonly [extra: string]: unknown;
}

/** A table snapshot (simplified EntityDefinitions response). */
export interface CatalogTableSnapshot {
  readonly LogicalName: string;
  readonly SchemaName?: string;
  readonly EntitySetName: string;
  readonly PrimaryIdAttribute: string;
  readonly PrimaryNameAttribute?: string;
  readonly Keys?: readonly CatalogKey[];
  readonly Attributes: readonly CatalogAttribute[];
  readonly ManyToOneRelationships?: readonly CatalogRelationship[];
  readonly SupportsBulk?: boolean;
  readonly [extra: string]: unknown;
}

/** A navigation property a payload may bind with `<name>@odata.bind`. */
export interface NavigationProperty {
  readonly name: string;
  readonly attribute: string;
  readonly target: string;
}

/** A one-to-many (collection) navigation property, e.g. `Account_Tasks`. */
export interface CollectionNavigation {
  readonly name: string;
  readonly childTable: string;
  readonly childAttribute: string;
}

/** What the emulator needs to know about one table, indexed for fast lookups. */
export interface CatalogTable {
  readonly snapshot: CatalogTableSnapshot;
  readonly logicalName: string;
  readonly entitySetName: string;
  readonly primaryId: string;
  readonly primaryName: string | undefined;
  readonly attributes: ReadonlyMap<string, CatalogAttribute>;
  /** Active alternate keys only (a key is usable only when its index is Active). */
  readonly keys: readonly CatalogKey[];
  /** By navigation property name, case-sensitive as in `$metadata`. */
  readonly navigation: ReadonlyMap<string, NavigationProperty>;
  /** Navigation properties per lookup attribute (several for Customer lookups). */
  readonly navigationByAttribute: ReadonlyMap<string, readonly NavigationProperty[]>;
  readonly collections: Map<string, CollectionNavigation>;
  readonly supportsBulk: boolean;
  readonly metadataId: string;
}

/** Entity sets that bind without a stored row: the emulator keeps no users or teams. */
export const PRINCIPAL_SETS: Readonly<Record<string, string>> = { systemusers: 'systemuser', teams: 'team' };

/** Deterministic GUID-shaped id from a text, so metadata ids stay stable between runs. */
export function stableGuid(text: string): string {
  const h = createHash('sha1').update(text).digest('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20, 32)}`;
}

function stripNotes(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(stripNotes);
  if (value && typeof value === 'object') {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) if (!k.startsWith('_')) out[k] = stripNotes(v);
    return out;
  }
  return value;
}

/**
 * The tables the emulator serves, read from a folder of metadata snapshots (one `<table>.json` per table; keys starting
 * with `_` are research notes and are dropped).
 */
export class EmulatorCatalog {
  readonly #byName = new Map<string, CatalogTable>();
  readonly #bySet = new Map<string, CatalogTable>();

  /** Builds a catalog from snapshots already in memory. */
  constructor(snapshots: readonly CatalogTableSnapshot[]) {
    for (const snapshot of snapshots) this.#add(snapshot);
    this.#linkCollections();
  }

  /** Reads every `*.json` in `dir`. */
  static async load(dir: string): Promise<EmulatorCatalog> {
    let files: string[];
    try {
      files = (await readdir(dir)).filter((f) => f.endsWith('.json')).sort();
    } catch (error) {
      throw new FerryError(
        'emulator.metadata_missing',
        `Metadata folder \`${dir}\` cannot be read; pass --metadata <dir> with one <table>.json snapshot per table.`,
        { cause: error },
      );
    }
    const snapshots: CatalogTableSnapshot[] = [];
    for (const file of files) {
      const full = path.join(dir, file);
      let parsed: unknown;
      try {
        parsed = stripNotes(parseKeepingInt64(await readFile(full, 'utf8')));
      } catch (error) {
        throw new FerryError(
          'emulator.metadata_invalid',
          `Metadata snapshot \`${full}\` is not valid JSON; fix or remove it.`,
          {
            cause: error,
          },
        );
      }
      const s = parsed as Partial<CatalogTableSnapshot>;
      if (
        !s ||
        typeof s.LogicalName !== 'string' ||
        typeof s.EntitySetName !== 'string' ||
        !Array.isArray(s.Attributes)
      ) {
        // Other JSON files (e.g. a manifest) may share the folder; only table snapshots count.
        continue;
      }
      snapshots.push(s as CatalogTableSnapshot);
    }
    if (snapshots.length === 0) {
      throw new FerryError(
        'emulator.metadata_empty',
        `Metadata folder \`${dir}\` holds no table snapshots; add <table>.json files (LogicalName, EntitySetName, Attributes).`,
      );
    }
    return new EmulatorCatalog(snapshots);
  }

  /** All tables. */
  tables(): CatalogTable[] {
    return [...this.#byName.values()];
  }

  /** A table by logical name. */
  byLogicalName(name: string): CatalogTable | undefined {
    return this.#byName.get(name);
  }

  /** A table by entity set name (case-sensitive, as the service is). */
  byEntitySet(set: string): CatalogTable | undefined {
    return this.#bySet.get(set);
  }

  #add(snapshot: CatalogTableSnapshot): void {
    const attributes = new Map<string, CatalogAttribute>();
    for (const a of snapshot.Attributes) attributes.set(a.LogicalName, a);
    const navigation = new Map<string, NavigationProperty>();
    const navigationByAttribute = new Map<string, NavigationProperty[]>();
    for (const r of snapshot.ManyToOneRelationships ?? []) {
      const nav: NavigationProperty = {
        name: r.ReferencingEntityNavigationPropertyName,
        attribute: r.ReferencingAttribute,
        target: r.ReferencedEntity,
      };
      navigation.set(nav.name, nav);
      const list = navigationByAttribute.get(nav.attribute) ?? [];
      list.push(nav);
      navigationByAttribute.set(nav.attribute, list);
    }
    const table: CatalogTable = {
      snapshot,
      logicalName: snapshot.LogicalName,
      entitySetName: snapshot.EntitySetName,
      primaryId: snapshot.PrimaryIdAttribute,
      primaryName: snapshot.PrimaryNameAttribute,
      attributes,
      keys: (snapshot.Keys ?? []).filter((k) => (k.EntityKeyIndexStatus ?? 'Active') === 'Active'),
      navigation,
      navigationByAttribute,
      collections: new Map(),
      supportsBulk: snapshot.SupportsBulk !== false,
      metadataId: stableGuid(`entity:${snapshot.LogicalName}`),
    };
    this.#byName.set(table.logicalName, table);
    this.#bySet.set(table.entitySetName, table);
  }

  #linkCollections(): void {
    for (const child of this.#byName.values()) {
      for (const r of child.snapshot.ManyToOneRelationships ?? []) {
        const parent = this.#byName.get(r.ReferencedEntity);
        if (!parent) continue;
        const name = r.ReferencedEntityNavigationPropertyName ?? r.SchemaName;
        parent.collections.set(name, { name, childTable: child.logicalName, childAttribute: r.ReferencingAttribute });
      }
    }
  }
}
