import type { CatalogAttribute, CatalogTable, EmulatorCatalog } from './emulator-catalog.js';
import { stableGuid } from './emulator-catalog.js';
import { type PathSegment, parseFilter, splitTopLevel } from './odata-path.js';
import { faults, ServiceFault } from './service-fault.js';

const METADATA_TYPE: Record<string, string> = {
  StringType: 'StringAttributeMetadata',
  MemoType: 'MemoAttributeMetadata',
  IntegerType: 'IntegerAttributeMetadata',
  BigIntType: 'BigIntAttributeMetadata',
  DecimalType: 'DecimalAttributeMetadata',
  DoubleType: 'DoubleAttributeMetadata',
  MoneyType: 'MoneyAttributeMetadata',
  BooleanType: 'BooleanAttributeMetadata',
  DateTimeType: 'DateTimeAttributeMetadata',
  PicklistType: 'PicklistAttributeMetadata',
  StateType: 'StateAttributeMetadata',
  StatusType: 'StatusAttributeMetadata',
  MultiSelectPicklistType: 'MultiSelectPicklistAttributeMetadata',
  LookupType: 'LookupAttributeMetadata',
  CustomerType: 'LookupAttributeMetadata',
  OwnerType: 'LookupAttributeMetadata',
  UniqueidentifierType: 'UniqueIdentifierAttributeMetadata',
  EntityNameType: 'EntityNameAttributeMetadata',
};
const NAVIGATION = ['Attributes', 'Keys', 'ManyToOneRelationships'] as const;
const OPTION_NAVIGATION = new Set(['OptionSet', 'GlobalOptionSet']);

interface Expand {
  readonly name: string;
  readonly select?: string[];
}

/** The metadata side of the Web API, answered from the snapshots: EntityDefinitions reads and the bulk probe. */
export class MetadataApi {
  readonly #catalog: EmulatorCatalog;
  readonly #base: string;

  constructor(catalog: EmulatorCatalog, base: string) {
    this.#catalog = catalog;
    this.#base = base;
  }

  /** `EntityDefinitions[(key)][/Attributes|Keys|ManyToOneRelationships[(key)][/<cast>]]` with $select/$expand/$filter. */
  entityDefinitions(segments: readonly PathSegment[], query: Map<string, string>): Record<string, unknown> {
    const select = list(query.get('$select'));
    const expand = readExpand(query.get('$expand'));
    const root = segments[0];
    if (!root.key) {
      let tables = this.#catalog.tables();
      const filter = query.get('$filter');
      if (filter) {
        const clauses = parseFilter(filter, query);
        tables = tables.filter((t) => {
          const entity = this.#entity(t, undefined, []);
          return clauses.every((c) => String(entity[c.property]) === String(c.value));
        });
      }
      return {
        '@odata.context': `${this.#base}$metadata#EntityDefinitions${shape(select, expand)}`,
        value: tables.map((t) => this.#entity(t, select, expand)),
      };
    }
    const table = this.#table(root);
    if (segments.length === 1) {
      return {
        '@odata.context': `${this.#base}$metadata#EntityDefinitions${shape(select, expand)}/$entity`,
        ...this.#entity(table, select, expand),
      };
    }
    const nav = segments[1];
    if (!(NAVIGATION as readonly string[]).includes(nav.name)) throw faults.notFoundSegment(nav.name);
    const cast = segments[2]?.name;
    if (segments.length > 3 || (cast !== undefined && !cast.startsWith('Microsoft.Dynamics.CRM.'))) {
      throw faults.notFoundSegment(segments[segments.length - 1].name);
    }
    const castType = cast?.slice('Microsoft.Dynamics.CRM.'.length);
    const context = `${this.#base}$metadata#EntityDefinitions('${table.logicalName}')/${nav.name}${cast ? `/${cast}` : ''}${shape(select, expand)}`;
    let items = this.#children(table, nav.name, expand);
    if (castType) {
      if (nav.name !== 'Attributes') throw faults.notFoundSegment(cast!);
      items = items.filter((a) => a['@odata.type'] === `#Microsoft.Dynamics.CRM.${castType}`);
    }
    if (nav.key) {
      const wanted = nav.key.kind === 'key' ? String(nav.key.pairs[0].value) : nav.key.id;
      const item = items.find((i) => i.LogicalName === wanted || i.SchemaName === wanted || i.MetadataId === wanted);
      if (!item) {
        if (castType) throw faults.notFoundSegment(cast!);
        throw new ServiceFault(
          404,
          '0x80040217',
          `Could not find ${nav.name} item \`${wanted}\` in entity '${table.logicalName}'.`,
        );
      }
      return { '@odata.context': `${context}/$entity`, ...project(item, select) };
    }
    return { '@odata.context': context, value: items.map((i) => project(i, select)) };
  }

  /** TV8: `sdkmessagefilters?$filter=sdkmessageid/name eq @message and primaryobjecttypecode eq @table&...`. */
  messageFilters(query: Map<string, string>): Record<string, unknown> {
    const clauses = parseFilter(query.get('$filter') ?? '', query);
    const message = clauses.find((c) => c.property === 'sdkmessageid/name')?.value;
    const tableName = clauses.find((c) => c.property === 'primaryobjecttypecode')?.value;
    const table = typeof tableName === 'string' ? this.#catalog.byLogicalName(tableName) : undefined;
    // UpsertMultiple has no filter row of its own (reference §2.2): only CreateMultiple/UpdateMultiple answer.
    const supported = table?.supportsBulk === true && (message === 'CreateMultiple' || message === 'UpdateMultiple');
    return {
      '@odata.context': `${this.#base}$metadata#sdkmessagefilters(sdkmessagefilterid)`,
      value: supported
        ? [
            {
              '@odata.etag': 'W/"2009110"',
              sdkmessagefilterid: stableGuid(`filter:${String(message)}:${table!.logicalName}`),
            },
          ]
        : [],
    };
  }

  #table(segment: PathSegment): CatalogTable {
    const key = segment.key!;
    let table: CatalogTable | undefined;
    if (key.kind === 'id') table = this.#catalog.tables().find((t) => t.metadataId === key.id);
    else {
      const pair = key.pairs[0];
      if (
        key.pairs.length === 1 &&
        (pair.name === 'LogicalName' || pair.name === '') &&
        typeof pair.value === 'string'
      ) {
        table = this.#catalog.byLogicalName(pair.value);
      }
    }
    if (!table) {
      throw new ServiceFault(
        404,
        '0x80040217',
        `Could not find an entity with the key \`${segment.keyText}\` in EntityDefinitions.`,
      );
    }
    return table;
  }

  #entity(table: CatalogTable, select: string[] | undefined, expand: readonly Expand[]): Record<string, unknown> {
    const out: Record<string, unknown> = { MetadataId: table.metadataId };
    for (const [k, v] of Object.entries(table.snapshot)) {
      if ((NAVIGATION as readonly string[]).includes(k) || k === 'SupportsBulk') continue;
      if (select && !select.includes(k)) continue;
      out[k] = v;
    }
    for (const e of expand) {
      if (!(NAVIGATION as readonly string[]).includes(e.name))
        throw faults.querySyntax(
          `Could not find a property named '${e.name}' on type 'Microsoft.Dynamics.CRM.EntityMetadata'.`,
        );
      out[e.name] = this.#children(table, e.name, []).map((c) => project(c, e.select));
    }
    return out;
  }

  #children(table: CatalogTable, nav: string, expand: readonly Expand[]): Record<string, unknown>[] {
    if (nav === 'Keys') {
      return (table.snapshot.Keys ?? []).map((k) => ({
        MetadataId: stableGuid(`key:${table.logicalName}:${k.LogicalName}`),
        EntityKeyIndexStatus: 'Active',
        ...k,
      }));
    }
    if (nav === 'ManyToOneRelationships') {
      return (table.snapshot.ManyToOneRelationships ?? []).map((r) => ({
        MetadataId: stableGuid(`relationship:${r.SchemaName}`),
        ReferencingEntity: table.logicalName,
        ...r,
      }));
    }
    return table.snapshot.Attributes.map((a) => this.#attribute(table, a, expand));
  }

  #attribute(table: CatalogTable, a: CatalogAttribute, expand: readonly Expand[]): Record<string, unknown> {
    const typeName = a.AttributeTypeName?.Value ?? `${a.AttributeType}Type`;
    const out: Record<string, unknown> = {
      '@odata.type': `#Microsoft.Dynamics.CRM.${METADATA_TYPE[typeName] ?? 'AttributeMetadata'}`,
      MetadataId: stableGuid(`attribute:${table.logicalName}:${a.LogicalName}`),
    };
    for (const [k, v] of Object.entries(a)) {
      // OptionSet is a navigation property: present only when expanded (reference §7).
      if (OPTION_NAVIGATION.has(k)) continue;
      out[k] =
        k === 'RequiredLevel' && typeof v === 'string'
          ? { Value: v, CanBeChanged: true, ManagedPropertyLogicalName: 'canmodifyrequirementlevelsettings' }
          : v;
    }
    for (const e of expand) {
      if (!OPTION_NAVIGATION.has(e.name))
        throw faults.querySyntax(`Could not find a property named '${e.name}' on the attribute type.`);
      if (e.name === 'GlobalOptionSet') {
        out.GlobalOptionSet = null;
        continue;
      }
      out.OptionSet = a.OptionSet ? project(optionSet(table, a), e.select) : null;
    }
    return out;
  }
}

function optionSet(table: CatalogTable, a: CatalogAttribute): Record<string, unknown> {
  const os = a.OptionSet!;
  const out: Record<string, unknown> = {
    MetadataId: stableGuid(`optionset:${table.logicalName}:${a.LogicalName}`),
    Name: os.Name ?? `${table.logicalName}_${a.LogicalName}`,
    IsGlobal: false,
  };
  if (os.Options) out.Options = os.Options.map((o) => ({ ...o, Label: label(o.Label), Description: label(undefined) }));
  if (os.TrueOption) out.TrueOption = { ...os.TrueOption, Label: label(os.TrueOption.Label) };
  if (os.FalseOption) out.FalseOption = { ...os.FalseOption, Label: label(os.FalseOption.Label) };
  return out;
}

/** The Web API Label object for a snapshot's plain label (snapshots keep en-US strings only). */
function label(text: unknown): unknown {
  if (text && typeof text === 'object') return text;
  if (typeof text !== 'string') return { LocalizedLabels: [], UserLocalizedLabel: null };
  const localized = { Label: text, LanguageCode: 1033, IsManaged: true, MetadataId: null, HasChanged: null };
  return { LocalizedLabels: [localized], UserLocalizedLabel: localized };
}

function project(item: Record<string, unknown>, select: string[] | undefined): Record<string, unknown> {
  if (!select) return item;
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(item)) {
    if (k === '@odata.type' || k === 'MetadataId' || select.includes(k) || OPTION_NAVIGATION.has(k)) out[k] = v;
  }
  return out;
}

function list(text: string | undefined): string[] | undefined {
  if (!text) return undefined;
  return text
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
}

function readExpand(text: string | undefined): Expand[] {
  if (!text) return [];
  return splitTopLevel(text).map((item) => {
    const m = /^([A-Za-z]+)(?:\((.*)\))?$/.exec(item.trim());
    if (!m) throw faults.querySyntax(`Cannot read the $expand item \`${item}\`.`);
    const options = new Map(
      (m[2] ?? '')
        .split(';')
        .filter(Boolean)
        .map((o) => {
          const eq = o.indexOf('=');
          return [o.slice(0, eq).trim(), o.slice(eq + 1).trim()] as const;
        }),
    );
    return { name: m[1], select: list(options.get('$select')) };
  });
}

function shape(select: string[] | undefined, expand: readonly Expand[]): string {
  const parts = [...(select ?? []), ...expand.map((e) => `${e.name}(${(e.select ?? []).join(',')})`)];
  return parts.length ? `(${parts.join(',')})` : '';
}
