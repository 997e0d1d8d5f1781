import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { FerryError } from './errors.js';
import { parseExactJson, stringifyExactJson } from './exact-json.js';

/**
 * Dataverse table metadata as snapshotted into the repository (`fixtures/metadata/<logicalname>.json`): a simplified
 * `EntityDefinitions` response. Simplifications (kept stable, the emulator and `ferry metadata pull` share them):
 * `RequiredLevel` is a plain string, labels are plain strings (the user's language), Boolean options use
 * `OptionSet.TrueOption`/`FalseOption`, state options carry `DefaultStatus`, status options carry `State`.
 */

/** `AttributeTypeName.Value` values the toolkit knows. Authoritative over the legacy `AttributeType` (reference §6). */
export const ATTRIBUTE_TYPE_NAMES = [
  'StringType',
  'MemoType',
  'IntegerType',
  'BigIntType',
  'DecimalType',
  'DoubleType',
  'MoneyType',
  'BooleanType',
  'DateTimeType',
  'PicklistType',
  'MultiSelectPicklistType',
  'StateType',
  'StatusType',
  'UniqueidentifierType',
  'LookupType',
  'CustomerType',
  'OwnerType',
  'EntityNameType',
  'VirtualType',
  'ImageType',
  'FileType',
  'ManagedPropertyType',
  'PartyListType',
  'CalendarRulesType',
] as const;
/** One of `ATTRIBUTE_TYPE_NAMES`. */
export type AttributeTypeName = (typeof ATTRIBUTE_TYPE_NAMES)[number];

/** Values of the (simplified) `RequiredLevel`. */
export const REQUIRED_LEVELS = ['None', 'Recommended', 'ApplicationRequired', 'SystemRequired'] as const;
/** One of `REQUIRED_LEVELS`. */
export type RequiredLevel = (typeof REQUIRED_LEVELS)[number];

/** DateTime behaviours: how Dataverse stores and converts the value. */
export const DATE_TIME_BEHAVIORS = ['UserLocal', 'DateOnly', 'TimeZoneIndependent'] as const;
/** One of `DATE_TIME_BEHAVIORS`. */
export type DateTimeBehavior = (typeof DATE_TIME_BEHAVIORS)[number];

/** States of an alternate key index; only `Active` keys address rows. */
export const KEY_INDEX_STATUSES = ['Pending', 'InProgress', 'Active', 'Failed'] as const;
/** One of `KEY_INDEX_STATUSES`. */
export type KeyIndexStatus = (typeof KEY_INDEX_STATUSES)[number];

/** Fields every attribute has. */
export interface AttributeBase<T extends AttributeTypeName> {
  readonly LogicalName: string;
  readonly SchemaName: string;
  /** Legacy enum (`String`, `Lookup`, `Virtual` for multi-select...). */
  readonly AttributeType: string;
  readonly AttributeTypeName: { readonly Value: T };
  readonly DisplayName?: string;
  readonly RequiredLevel?: RequiredLevel;
  /** Columns not valid for create/update are silently ignored by the server (reference §1.3). Default `true`. */
  readonly IsValidForCreate?: boolean;
  readonly IsValidForUpdate?: boolean;
  readonly IsValidForRead?: boolean;
  readonly IsCustomAttribute?: boolean;
}

/** Single-line text; `MaxLength` in UTF-16 code units. */
export interface StringAttribute extends AttributeBase<'StringType'> {
  readonly MaxLength: number;
  readonly FormatName?: string;
}

/** Multi-line text; `MaxLength` up to 1,048,576. */
export interface MemoAttribute extends AttributeBase<'MemoType'> {
  readonly MaxLength: number;
  readonly Format?: string;
}

/** Whole number (Int32) with its own range. */
export interface IntegerAttribute extends AttributeBase<'IntegerType'> {
  readonly MinValue: number;
  readonly MaxValue: number;
  readonly Format?: string;
}

/** Int64 limits beyond ±(2^53 − 1) are read exactly, as `bigint` (see `core/exact-json.ts`). */
export interface BigIntAttribute extends AttributeBase<'BigIntType'> {
  readonly MinValue?: number | bigint;
  readonly MaxValue?: number | bigint;
}

/** Exact decimal number. */
export interface DecimalAttribute extends AttributeBase<'DecimalType'> {
  readonly MinValue: number;
  readonly MaxValue: number;
  /** Fractional digits allowed, 0..10. */
  readonly Precision: number;
}

/** Floating point number. */
export interface DoubleAttribute extends AttributeBase<'DoubleType'> {
  readonly MinValue: number;
  readonly MaxValue: number;
  readonly Precision: number;
}

/** Currency amount, sent as an exact JSON number. */
export interface MoneyAttribute extends AttributeBase<'MoneyType'> {
  readonly MinValue: number;
  readonly MaxValue: number;
  /** Fractional digits allowed, 0..4. */
  readonly Precision: number;
  /** 0 attribute, 1 organization pricing precision, 2 record currency precision. */
  readonly PrecisionSource?: 0 | 1 | 2;
}

/** One side of a yes/no column. */
export interface BooleanOption {
  readonly Value: 0 | 1;
  readonly Label: string;
}

/** Yes/no column. */
export interface BooleanAttribute extends AttributeBase<'BooleanType'> {
  readonly OptionSet?: {
    readonly Name?: string;
    readonly TrueOption: BooleanOption;
    readonly FalseOption: BooleanOption;
  };
  readonly DefaultValue?: boolean;
}

/** Date and time with a behaviour (UserLocal, DateOnly, TimeZoneIndependent). */
export interface DateTimeAttribute extends AttributeBase<'DateTimeType'> {
  readonly DateTimeBehavior: { readonly Value: DateTimeBehavior };
  /** Display only: `DateOnly` or `DateAndTime`. */
  readonly Format?: string;
}

/** One option of a choice. */
export interface ChoiceOption {
  readonly Value: number;
  readonly Label: string;
}

/** The options of a choice column (local or global option set). */
export interface ChoiceOptionSet<O extends ChoiceOption = ChoiceOption> {
  readonly Name?: string;
  readonly IsGlobal?: boolean;
  readonly Options: readonly O[];
}

/** Single choice. */
export interface PicklistAttribute extends AttributeBase<'PicklistType'> {
  readonly OptionSet: ChoiceOptionSet;
  readonly DefaultFormValue?: number;
}

/** `AttributeType` is `Virtual` for these (reference §6); the Web API takes a comma-separated string of values. */
export interface MultiSelectPicklistAttribute extends AttributeBase<'MultiSelectPicklistType'> {
  readonly OptionSet: ChoiceOptionSet;
}

/** A statecode option and its default status. */
export interface StateOption extends ChoiceOption {
  readonly DefaultStatus?: number;
  readonly InvariantName?: string;
}

/** The `statecode` column. */
export interface StateAttribute extends AttributeBase<'StateType'> {
  readonly OptionSet: ChoiceOptionSet<StateOption>;
  readonly DefaultFormValue?: number;
}

/** A statuscode option and the state it belongs to. */
export interface StatusOption extends ChoiceOption {
  /** The statecode value this status belongs to. */
  readonly State: number;
}

/** The `statuscode` column. */
export interface StatusAttribute extends AttributeBase<'StatusType'> {
  readonly OptionSet: ChoiceOptionSet<StatusOption>;
  readonly DefaultFormValue?: number;
}

/** A GUID column (primary ids). */
export interface UniqueidentifierAttribute extends AttributeBase<'UniqueidentifierType'> {}

/** Lookup, Customer (polymorphic account/contact) and Owner (systemuser/team). */
export interface LookupAttribute extends AttributeBase<'LookupType' | 'CustomerType' | 'OwnerType'> {
  readonly Targets: readonly string[];
}

/** Types the conversion does not write (EntityName, Virtual, Image, File...). */
export interface OtherAttribute
  extends AttributeBase<
    | 'EntityNameType'
    | 'VirtualType'
    | 'ImageType'
    | 'FileType'
    | 'ManagedPropertyType'
    | 'PartyListType'
    | 'CalendarRulesType'
  > {}

/** One column of a table, discriminated by `AttributeTypeName.Value`. */
export type AttributeMetadata =
  | StringAttribute
  | MemoAttribute
  | IntegerAttribute
  | BigIntAttribute
  | DecimalAttribute
  | DoubleAttribute
  | MoneyAttribute
  | BooleanAttribute
  | DateTimeAttribute
  | PicklistAttribute
  | MultiSelectPicklistAttribute
  | StateAttribute
  | StatusAttribute
  | UniqueidentifierAttribute
  | LookupAttribute
  | OtherAttribute;

/** An alternate key (EntityKeyMetadata). Only `Active` keys can address rows. */
export interface KeyMetadata {
  readonly LogicalName: string;
  readonly SchemaName: string;
  readonly KeyAttributes: readonly string[];
  readonly EntityKeyIndexStatus: KeyIndexStatus;
}

/** A many-to-one relationship: where a lookup column points, and the navigation property to bind it with. */
export interface ManyToOneRelationship {
  readonly SchemaName: string;
  readonly ReferencedEntity: string;
  readonly ReferencedAttribute: string;
  readonly ReferencingEntity: string;
  readonly ReferencingAttribute: string;
  /** Case-sensitive; custom lookups follow SchemaName casing (`ferry_RegionId`). */
  readonly ReferencingEntityNavigationPropertyName: string;
}

/** One table snapshot. */
export interface TableMetadata {
  readonly LogicalName: string;
  readonly SchemaName: string;
  readonly EntitySetName: string;
  readonly LogicalCollectionName?: string;
  readonly CollectionSchemaName?: string;
  readonly PrimaryIdAttribute: string;
  readonly PrimaryNameAttribute: string;
  readonly OwnershipType?: string;
  readonly IsCustomEntity?: boolean;
  /** Whether `CreateMultiple`/`UpdateMultiple`/`UpsertMultiple` are available. Default `true`. */
  readonly SupportsBulk?: boolean;
  readonly Keys: readonly KeyMetadata[];
  readonly Attributes: readonly AttributeMetadata[];
  readonly ManyToOneRelationships: readonly ManyToOneRelationship[];
}

/** The attribute interface for one `AttributeTypeName.Value` (`AttributeOfType<'OwnerType'>` is `LookupAttribute`). */
export type AttributeOfType<T extends AttributeTypeName> = AttributeMetadata extends infer A
  ? A extends AttributeBase<infer U>
    ? T extends U
      ? A
      : never
    : never
  : never;

/** Narrows an attribute by its type name (TypeScript does not narrow on the nested `AttributeTypeName.Value`). */
export function isAttributeType<T extends AttributeTypeName>(
  attribute: AttributeMetadata,
  ...types: readonly T[]
): attribute is AttributeOfType<T> {
  return (types as readonly string[]).includes(attribute.AttributeTypeName.Value);
}

/** Snapshots by logical name. */
export type MetadataSet = ReadonlyMap<string, TableMetadata>;

/** True when the table accepts the bulk messages (default `true` when the snapshot does not say). */
export function supportsBulk(table: TableMetadata): boolean {
  return table.SupportsBulk !== false;
}

/** The attribute with this logical name, or undefined. */
export function findAttribute(table: TableMetadata, logicalName: string): AttributeMetadata | undefined {
  return table.Attributes.find((a) => a.LogicalName === logicalName);
}

/** Reads `<dir>/<logicalName>.json` and checks its shape. */
export async function loadMetadata(dir: string, logicalName: string): Promise<TableMetadata> {
  if (!/^[a-z][a-z0-9_]*$/.test(logicalName)) {
    throw new FerryError(
      'metadata.name',
      `Table name \`${logicalName}\` is not a Dataverse logical name; use the lower-case logical name, e.g. \`account\`.`,
    );
  }
  const file = path.join(dir, `${logicalName}.json`);
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    throw new FerryError(
      'metadata.missing',
      `No metadata snapshot for table \`${logicalName}\` at \`${file}\`; run \`ferry metadata pull --table ${logicalName} --out ${dir}\` or add the file.`,
      { cause: error },
    );
  }
  const table = parseMetadata(text, file);
  if (table.LogicalName !== logicalName) {
    throw new FerryError(
      'metadata.invalid',
      `Snapshot \`${file}\` describes table \`${table.LogicalName}\`, not \`${logicalName}\`; rename the file after its LogicalName.`,
    );
  }
  return table;
}

/** Reads every `*.json` snapshot in a folder, by logical name. */
export async function loadAllMetadata(dir: string): Promise<Map<string, TableMetadata>> {
  let names: string[];
  try {
    names = (await readdir(dir)).filter((n) => n.endsWith('.json')).sort();
  } catch (error) {
    throw new FerryError(
      'metadata.missing',
      `Metadata folder \`${dir}\` cannot be read; pass --metadata <dir> holding one <table>.json snapshot per table.`,
      { cause: error },
    );
  }
  const out = new Map<string, TableMetadata>();
  for (const name of names) {
    const table = await loadMetadata(dir, name.slice(0, -'.json'.length));
    out.set(table.LogicalName, table);
  }
  return out;
}

/** Parses and checks one snapshot's text; `source` names it in errors. */
export function parseMetadata(text: string, source: string): TableMetadata {
  let data: unknown;
  try {
    data = parseExactJson(text, source);
  } catch (error) {
    throw new FerryError('metadata.invalid', `Metadata snapshot \`${source}\` is not valid JSON; fix or re-pull it.`, {
      cause: error,
    });
  }
  const bad = (what: string): never => {
    throw new FerryError('metadata.invalid', `Metadata snapshot \`${source}\`: ${what}; fix or re-pull it.`);
  };
  if (!isObject(data)) return bad('the document is not a JSON object');
  for (const field of ['LogicalName', 'SchemaName', 'EntitySetName', 'PrimaryIdAttribute', 'PrimaryNameAttribute']) {
    if (typeof data[field] !== 'string' || data[field] === '') bad(`\`${field}\` is missing or not a string`);
  }
  for (const field of ['Keys', 'Attributes', 'ManyToOneRelationships']) {
    if (!Array.isArray(data[field])) bad(`\`${field}\` is missing or not an array`);
  }
  const known = new Set<string>(ATTRIBUTE_TYPE_NAMES);
  const seen = new Set<string>();
  for (const attribute of data.Attributes as unknown[]) {
    if (!isObject(attribute) || typeof attribute.LogicalName !== 'string')
      return bad('an attribute has no `LogicalName`');
    const name = attribute.LogicalName;
    if (seen.has(name)) bad(`attribute \`${name}\` appears twice`);
    seen.add(name);
    const typeName = isObject(attribute.AttributeTypeName) ? attribute.AttributeTypeName.Value : undefined;
    if (typeof typeName !== 'string' || !known.has(typeName)) {
      bad(`attribute \`${name}\` has unknown AttributeTypeName.Value \`${String(typeName)}\``);
    }
    checkAttribute(attribute, typeName as AttributeTypeName, bad);
  }
  for (const key of data.Keys as unknown[]) {
    if (!isObject(key) || typeof key.LogicalName !== 'string' || !Array.isArray(key.KeyAttributes)) {
      bad('a key lacks `LogicalName` or `KeyAttributes`');
    }
    const k = key as Record<string, unknown>;
    if (!(KEY_INDEX_STATUSES as readonly unknown[]).includes(k.EntityKeyIndexStatus)) {
      bad(`key \`${String(k.LogicalName)}\` has EntityKeyIndexStatus \`${String(k.EntityKeyIndexStatus)}\``);
    }
    for (const a of k.KeyAttributes as unknown[]) {
      if (typeof a !== 'string' || !seen.has(a))
        bad(`key \`${String(k.LogicalName)}\` names unknown attribute \`${String(a)}\``);
    }
  }
  for (const rel of data.ManyToOneRelationships as unknown[]) {
    if (
      !isObject(rel) ||
      typeof rel.ReferencingAttribute !== 'string' ||
      typeof rel.ReferencedEntity !== 'string' ||
      typeof rel.ReferencingEntityNavigationPropertyName !== 'string'
    ) {
      bad(
        'a many-to-one relationship lacks ReferencingAttribute, ReferencedEntity or ReferencingEntityNavigationPropertyName',
      );
    }
  }
  return data as unknown as TableMetadata;
}

function checkAttribute(a: Record<string, unknown>, type: AttributeTypeName, bad: (what: string) => never): void {
  const name = String(a.LogicalName);
  const num = (field: string) => {
    if (typeof a[field] !== 'number') bad(`attribute \`${name}\` (${type}) needs a numeric \`${field}\``);
  };
  const options = () => {
    const set = a.OptionSet;
    if (!isObject(set) || !Array.isArray(set.Options))
      return bad(`attribute \`${name}\` (${type}) needs \`OptionSet.Options\``);
    for (const o of set.Options as unknown[]) {
      if (!isObject(o) || typeof o.Value !== 'number' || !Number.isInteger(o.Value) || typeof o.Label !== 'string') {
        bad(`attribute \`${name}\` has an option without an integer Value and a Label`);
      }
    }
  };
  switch (type) {
    case 'StringType':
    case 'MemoType':
      num('MaxLength');
      break;
    case 'IntegerType':
    case 'DecimalType':
    case 'DoubleType':
    case 'MoneyType':
      num('MinValue');
      num('MaxValue');
      if (type !== 'IntegerType') num('Precision');
      break;
    case 'PicklistType':
    case 'MultiSelectPicklistType':
    case 'StateType':
      options();
      break;
    case 'StatusType':
      options();
      for (const o of (a.OptionSet as { Options: Array<Record<string, unknown>> }).Options) {
        if (typeof o.State !== 'number') bad(`status option \`${String(o.Value)}\` of \`${name}\` has no \`State\``);
      }
      break;
    case 'DateTimeType': {
      const b = isObject(a.DateTimeBehavior) ? a.DateTimeBehavior.Value : undefined;
      if (!(DATE_TIME_BEHAVIORS as readonly unknown[]).includes(b)) {
        bad(
          `attribute \`${name}\` has DateTimeBehavior \`${String(b)}\`; expected UserLocal, DateOnly or TimeZoneIndependent`,
        );
      }
      break;
    }
    case 'LookupType':
    case 'CustomerType':
    case 'OwnerType':
      if (!Array.isArray(a.Targets) || a.Targets.length === 0) bad(`lookup \`${name}\` has no \`Targets\``);
      break;
    default:
      break;
  }
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Key order of a snapshot file; keys not listed keep their order after these, so hand-added notes survive. */
const TABLE_ORDER = [
  'LogicalName',
  'SchemaName',
  'EntitySetName',
  'LogicalCollectionName',
  'CollectionSchemaName',
  'PrimaryIdAttribute',
  'PrimaryNameAttribute',
  'OwnershipType',
  'IsCustomEntity',
  'SupportsBulk',
  'Keys',
  'Attributes',
  'ManyToOneRelationships',
];
const ATTRIBUTE_ORDER = [
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
  'MaxLength',
  'FormatName',
  'MinValue',
  'MaxValue',
  'Precision',
  'PrecisionSource',
  'DateTimeBehavior',
  'Format',
  'Targets',
  'OptionSet',
  'DefaultFormValue',
  'DefaultValue',
];
const OPTION_SET_ORDER = ['Name', 'IsGlobal', 'Options', 'TrueOption', 'FalseOption'];
const OPTION_ORDER = ['Value', 'Label', 'State', 'DefaultStatus', 'InvariantName'];
const KEY_ORDER = ['LogicalName', 'SchemaName', 'KeyAttributes', 'EntityKeyIndexStatus'];
const RELATIONSHIP_ORDER = [
  'SchemaName',
  'ReferencedEntity',
  'ReferencedAttribute',
  'ReferencingEntity',
  'ReferencingAttribute',
  'ReferencingEntityNavigationPropertyName',
];

/**
 * The text of a snapshot file: one fixed key order, two-space indent, exact 64-bit integers, a final newline. Defaults
 * are left out (`SupportsBulk: true`, `IsGlobal: false`) so a pull writes what a hand-written snapshot says, and an
 * unchanged table pulls to the same bytes; drift then reads as a `git diff`.
 */
export function snapshotText(table: TableMetadata): string {
  const t = ordered(table as unknown as Record<string, unknown>, TABLE_ORDER);
  if (t.SupportsBulk === true) delete t.SupportsBulk;
  t.Keys = (table.Keys as unknown as Record<string, unknown>[]).map((k) => ordered(k, KEY_ORDER));
  t.Attributes = (table.Attributes as unknown as Record<string, unknown>[]).map((a) => {
    const out = ordered(a, ATTRIBUTE_ORDER);
    if (isObject(out.OptionSet)) {
      const set = ordered(out.OptionSet, OPTION_SET_ORDER);
      if (set.IsGlobal === false) delete set.IsGlobal;
      if (Array.isArray(set.Options))
        set.Options = set.Options.map((o) => (isObject(o) ? ordered(o, OPTION_ORDER) : o));
      for (const side of ['TrueOption', 'FalseOption']) {
        if (isObject(set[side])) set[side] = ordered(set[side], OPTION_ORDER);
      }
      out.OptionSet = set;
    }
    return out;
  });
  t.ManyToOneRelationships = (table.ManyToOneRelationships as unknown as Record<string, unknown>[]).map((r) =>
    ordered(r, RELATIONSHIP_ORDER),
  );
  return `${stringifyExactJson(t, 2)}\n`;
}

function ordered(source: Record<string, unknown>, order: readonly string[]): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const k of order) if (source[k] !== undefined) out[k] = source[k];
  for (const [k, v] of Object.entries(source)) if (!(k in out) && v !== undefined) out[k] = v;
  return out;
}
