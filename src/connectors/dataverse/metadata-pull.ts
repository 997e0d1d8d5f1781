import { mkdir, rename, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { FerryError } from '../../core/errors.js';
import { parseExactJson, stringifyExactJson } from '../../core/exact-json.js';
import { parseMetadata, snapshotText, type TableMetadata } from '../../core/table-metadata.js';
import type { DataverseClient } from './dataverse-client.js';

/** Type-specific attribute properties and the cast that returns them (reference §7: no cast to EnumAttributeMetadata). */
const CASTS: ReadonlyArray<{ cast: string; types: readonly string[]; select: readonly string[]; expand?: string }> = [
  { cast: 'StringAttributeMetadata', types: ['StringType'], select: ['MaxLength', 'FormatName'] },
  { cast: 'MemoAttributeMetadata', types: ['MemoType'], select: ['MaxLength', 'Format'] },
  { cast: 'IntegerAttributeMetadata', types: ['IntegerType'], select: ['MinValue', 'MaxValue', 'Format'] },
  { cast: 'BigIntAttributeMetadata', types: ['BigIntType'], select: ['MinValue', 'MaxValue'] },
  { cast: 'DecimalAttributeMetadata', types: ['DecimalType'], select: ['MinValue', 'MaxValue', 'Precision'] },
  { cast: 'DoubleAttributeMetadata', types: ['DoubleType'], select: ['MinValue', 'MaxValue', 'Precision'] },
  {
    cast: 'MoneyAttributeMetadata',
    types: ['MoneyType'],
    select: ['MinValue', 'MaxValue', 'Precision', 'PrecisionSource'],
  },
  { cast: 'DateTimeAttributeMetadata', types: ['DateTimeType'], select: ['DateTimeBehavior', 'Format'] },
  { cast: 'LookupAttributeMetadata', types: ['LookupType', 'CustomerType', 'OwnerType'], select: ['Targets'] },
  {
    cast: 'PicklistAttributeMetadata',
    types: ['PicklistType'],
    select: ['DefaultFormValue'],
    expand: 'OptionSet($select=Name,IsGlobal,Options)',
  },
  {
    cast: 'MultiSelectPicklistAttributeMetadata',
    types: ['MultiSelectPicklistType'],
    select: [],
    expand: 'OptionSet($select=Name,IsGlobal,Options)',
  },
  {
    cast: 'StateAttributeMetadata',
    types: ['StateType'],
    select: ['DefaultFormValue'],
    expand: 'OptionSet($select=Name,Options)',
  },
  {
    cast: 'StatusAttributeMetadata',
    types: ['StatusType'],
    select: ['DefaultFormValue'],
    expand: 'OptionSet($select=Name,Options)',
  },
  {
    cast: 'BooleanAttributeMetadata',
    types: ['BooleanType'],
    select: ['DefaultValue'],
    expand: 'OptionSet($select=Name,TrueOption,FalseOption)',
  },
];

const TABLE_FIELDS = [
  'LogicalName',
  'SchemaName',
  'EntitySetName',
  'LogicalCollectionName',
  'CollectionSchemaName',
  'PrimaryIdAttribute',
  'PrimaryNameAttribute',
  'OwnershipType',
  'IsCustomEntity',
];
const ATTRIBUTE_FIELDS = [
  'LogicalName',
  'SchemaName',
  'AttributeType',
  'AttributeTypeName',
  'DisplayName',
  'RequiredLevel',
  'IsValidForCreate',
  'IsValidForUpdate',
  'IsValidForRead',
  'IsCustomAttribute',
  'AttributeOf',
];
const RELATIONSHIP_FIELDS = [
  'SchemaName',
  'ReferencedEntity',
  'ReferencedAttribute',
  'ReferencingEntity',
  'ReferencingAttribute',
  'ReferencingEntityNavigationPropertyName',
];

type Json = Record<string, unknown>;

/**
 * Reads one table's EntityDefinitions (keys, attributes with their type-specific properties via casts, option sets
 * incl. state/status/boolean/multi-select, many-to-one relationships with navigation property names, bulk support)
 * and returns it in the snapshot format of `core/table-metadata.ts`.
 */
export async function pullMetadata(client: DataverseClient, logicalName: string): Promise<TableMetadata> {
  if (!/^[a-z][a-z0-9_]*$/.test(logicalName)) {
    throw new FerryError(
      'metadata.name',
      `Table name \`${logicalName}\` is not a Dataverse logical name; use the lower-case logical name, e.g. \`account\`.`,
    );
  }
  const entity = `EntityDefinitions(LogicalName='${logicalName}')`;
  // Int64 limits (BigInt MinValue/MaxValue) need every digit: read the bodies with the exact JSON reader.
  const getJson = async <T>(query: string): Promise<T> => {
    const response = await client.send('GET', query);
    return parseExactJson(response.body, `GET ${query.split('?')[0]}`) as T;
  };
  const table = await getJson<Json>(
    `${entity}?$select=${TABLE_FIELDS.join(',')}` +
      `&$expand=Keys($select=LogicalName,SchemaName,KeyAttributes,EntityKeyIndexStatus),` +
      `ManyToOneRelationships($select=${RELATIONSHIP_FIELDS.join(',')})`,
  );
  const attributes = await getJson<{ value: Json[] }>(`${entity}/Attributes?$select=${ATTRIBUTE_FIELDS.join(',')}`);
  const byName = new Map<string, Json>();
  for (const a of attributes.value ?? []) {
    // Companion columns (`<lookup>name`, `<money>_base`...) are computed from another attribute; they are not written.
    if (a.AttributeOf) continue;
    byName.set(String(a.LogicalName), simplifyAttribute(a));
  }
  const present = new Set(
    [...byName.values()].map((a) => (a.AttributeTypeName as { Value?: string } | undefined)?.Value),
  );
  for (const c of CASTS) {
    if (!c.types.some((t) => present.has(t))) continue;
    const query = `$select=${['LogicalName', ...c.select].join(',')}${c.expand ? `&$expand=${c.expand}` : ''}`;
    const typed = await getJson<{ value: Json[] }>(`${entity}/Attributes/Microsoft.Dynamics.CRM.${c.cast}?${query}`);
    for (const t of typed.value ?? []) {
      const target = byName.get(String(t.LogicalName));
      if (!target) continue;
      for (const field of c.select)
        if (t[field] !== undefined && t[field] !== null) target[field] = simplifyValue(field, t[field]);
      if (c.expand && t.OptionSet) target.OptionSet = simplifyOptionSet(t.OptionSet as Json);
    }
  }
  let supportsBulk: boolean | undefined;
  try {
    supportsBulk = await client.supportsBulk(logicalName);
  } catch {
    // The probe needs read access to sdkmessagefilters; without it the writer probes again at run time.
    supportsBulk = undefined;
  }
  const snapshot = pick(table, TABLE_FIELDS);
  if (supportsBulk !== undefined) snapshot.SupportsBulk = supportsBulk;
  snapshot.Keys = ((table.Keys as Json[] | undefined) ?? []).map((k) =>
    pick(k, ['LogicalName', 'SchemaName', 'KeyAttributes', 'EntityKeyIndexStatus']),
  );
  snapshot.Attributes = [...byName.values()];
  snapshot.ManyToOneRelationships = ((table.ManyToOneRelationships as Json[] | undefined) ?? []).map((r) =>
    pick(r, RELATIONSHIP_FIELDS),
  );
  return parseMetadata(stringifyExactJson(snapshot), `${entity} from ${client.url}`);
}

/** Writes `<dir>/<LogicalName>.json` atomically (temp file, then rename) as `snapshotText`, so drift shows as a diff. */
export async function writeSnapshot(dir: string, table: TableMetadata): Promise<string> {
  await mkdir(dir, { recursive: true });
  const file = path.join(dir, `${table.LogicalName}.json`);
  const tmp = `${file}.${process.pid}.tmp`;
  await writeFile(tmp, snapshotText(table), 'utf8');
  await rename(tmp, file);
  return file;
}

function simplifyAttribute(a: Json): Json {
  const out: Json = {};
  for (const f of ATTRIBUTE_FIELDS) {
    if (f === 'AttributeOf' || a[f] === undefined || a[f] === null) continue;
    out[f] = simplifyValue(f, a[f]);
  }
  return out;
}

/** The snapshot keeps plain strings where the API returns `{ Value }` managed properties or Label objects. */
function simplifyValue(field: string, value: unknown): unknown {
  if (field === 'RequiredLevel' || field === 'FormatName' || field === 'Format') {
    return value && typeof value === 'object' && 'Value' in value ? (value as { Value: unknown }).Value : value;
  }
  if (field === 'DisplayName') return labelText(value);
  return value;
}

function simplifyOptionSet(os: Json): Json {
  const out: Json = {};
  if (typeof os.Name === 'string') out.Name = os.Name;
  if (typeof os.IsGlobal === 'boolean') out.IsGlobal = os.IsGlobal;
  if (Array.isArray(os.Options)) out.Options = (os.Options as Json[]).map(simplifyOption);
  if (os.TrueOption) out.TrueOption = simplifyOption(os.TrueOption as Json);
  if (os.FalseOption) out.FalseOption = simplifyOption(os.FalseOption as Json);
  return out;
}

function simplifyOption(o: Json): Json {
  return { Value: o.Value, Label: labelText(o.Label) ?? '', ...pick(o, ['State', 'DefaultStatus', 'InvariantName']) };
}

/** The user's label of a Label object (`UserLocalizedLabel`, else the first localized one), or a plain string as is. */
function labelText(value: unknown): string | undefined {
  if (typeof value === 'string') return value;
  if (!value || typeof value !== 'object') return undefined;
  const l = value as { UserLocalizedLabel?: { Label?: string } | null; LocalizedLabels?: Array<{ Label?: string }> };
  return l.UserLocalizedLabel?.Label ?? l.LocalizedLabels?.[0]?.Label;
}

function pick(source: Json, fields: readonly string[]): Json {
  const out: Json = {};
  for (const f of fields) if (source[f] !== undefined && source[f] !== null) out[f] = source[f];
  return out;
}
