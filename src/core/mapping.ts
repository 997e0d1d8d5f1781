import type { ErrorCode } from './error-codes.js';
import { FerryError } from './errors.js';
import type {
  AttributeMetadata,
  AttributeOfType,
  AttributeTypeName,
  KeyMetadata,
  MetadataSet,
  TableMetadata,
} from './table-metadata.js';

/**
 * The mapping from staged source columns to Dataverse attributes, as plain serialisable data. The local runner
 * (DuckDB), the T-SQL export and the reference converter all read the same mapping.
 */

/** How a choice column reads its source: by option label (case-insensitive, trimmed), by option value, or both. */
export const CHOICE_MODES = ['label', 'value', 'auto'] as const;
/** One of `CHOICE_MODES`. */
export type ChoiceMode = (typeof CHOICE_MODES)[number];

/**
 * What a null (or empty) source value does. `omit` leaves the attribute out of the payload (Dataverse keeps what it
 * has); `clear` sends `null`. Default: `clear` for plain attributes (the source says the value is empty), `omit` for
 * lookups (a missing reference in a delta rarely means "disassociate").
 */
export const NULL_MEANINGS = ['omit', 'clear'] as const;
/** One of `NULL_MEANINGS`. */
export type NullMeaning = (typeof NULL_MEANINGS)[number];

/**
 * Which target key a lookup binds by, and where its values come from. `key` lists the target table's alternate-key
 * attributes (one, or several for a composite key; omitted = bind by GUID). `from` lists the source columns giving
 * their values in the same order; omitted = the column spec's `from`.
 */
export interface LookupKeySpec {
  readonly key?: string | readonly string[];
  readonly from?: string | readonly string[];
}

/** A lookup to one fixed table: `{ table: 'account', key: 'accountnumber' }`; no key binds by GUID. */
export interface FixedLookupSpec {
  readonly table: string;
  readonly key?: string | readonly string[];
}

/**
 * A polymorphic lookup (Customer, Owner...) whose target is chosen per row by the source column `tableFrom`
 * (holding the target's logical name, e.g. `account`/`contact`). `keys` gives each allowed target's key: a key
 * attribute, a list of attributes, a `LookupKeySpec`, or `null` to bind that target by GUID.
 */
export interface PerRowLookupSpec {
  readonly tableFrom: string;
  readonly keys: Readonly<Record<string, string | readonly string[] | LookupKeySpec | null>>;
}

/** Where a lookup points: a fixed table, or a target chosen per row. */
export type LookupSpec = FixedLookupSpec | PerRowLookupSpec;

/** Multi-select choice read from one delimited text column. */
export interface MultiSelectSpec {
  /** Separator between members in the source text. Default `;`. */
  readonly separator?: string;
  /** How members are matched. Default `auto`. */
  readonly choice?: ChoiceMode;
}

/** Full form of one target attribute's source. */
export interface ColumnSpec {
  /** Source column in `staged`. For a lookup on a composite key: one column per key attribute, in key order. */
  readonly from: string | readonly string[];
  /** For Picklist/State/Status columns. Default `auto`. */
  readonly choice?: ChoiceMode;
  /** For Lookup/Customer/Owner columns. Without it, a single-target lookup binds by GUID. */
  readonly lookup?: LookupSpec;
  /** For MultiSelectPicklist columns. */
  readonly multiSelect?: MultiSelectSpec;
  readonly nullMeans?: NullMeaning;
}

/** A target attribute's source: a source column name (shorthand) or the full spec. */
export type ColumnMapping = string | ColumnSpec;

/** What `convertToDataverse({...})` takes. */
export interface DataverseMapping {
  /** Target table logical name; its snapshot is `<config.metadata>/<table>.json`. */
  readonly table: string;
  /** The alternate key the rows are upserted by: must equal the KeyAttributes of an Active key. */
  readonly key: readonly string[];
  /** Source column ordering the versions of one key (TIMESTAMP/TIMESTAMPTZ/DATE, ISO text, or an integer). */
  readonly changeTimestamp: string;
  /** Target attribute logical name → source. Mapping order is the order rejects are checked in. */
  readonly columns: Readonly<Record<string, ColumnMapping>>;
  /**
   * IANA time zone (e.g. `Europe/Berlin`) of date-times in the source that carry no offset (text without one,
   * DATE, TIMESTAMP): UserLocal columns convert them from it to UTC. TIMESTAMPTZ values (instants, their original
   * offset lost) are read as the wall clock in this zone for TimeZoneIndependent and DateOnly columns. Default `UTC`.
   */
  readonly sourceTimeZone?: string;
}

/** The normalised column spec (shorthand expanded). */
export function columnSpec(mapping: ColumnMapping): ColumnSpec {
  return typeof mapping === 'string' ? { from: mapping } : mapping;
}

/** Source columns as a list. */
export function asList(value: string | readonly string[] | undefined): readonly string[] {
  if (value === undefined) return [];
  return typeof value === 'string' ? [value] : value;
}

/** True when the lookup chooses its target per row. */
export function isPerRowLookup(spec: LookupSpec): spec is PerRowLookupSpec {
  return 'tableFrom' in spec;
}

// ---------------------------------------------------------------------------------------------------------------
// Resolution: the mapping checked against the metadata snapshots, as a dialect-neutral plan the SQL compilers and
// the reference converter both read. Everything here is plain data (numbers beyond 2^53 are decimal strings).

/** Reason codes a conversion can reject a row with. Stable: the T-SQL dialect produces the same. */
export const CONVERSION_REASONS = [
  'string.too_long',
  'number.out_of_range',
  'number.precision',
  'number.unparsable',
  'guid.invalid',
  'choice.unknown_label',
  'choice.unknown_value',
  'status.invalid_for_state',
  'multiselect.invalid_member',
  'date.before_min',
  'date.unparsable',
  'boolean.invalid',
  'key.missing',
  'lookup.key_unsafe',
  'lookup.target_unknown',
] as const;
/** One of `CONVERSION_REASONS`. */
export type ConversionReason = (typeof CONVERSION_REASONS)[number];

/** Characters that break alternate-key URLs even percent-encoded (reference §1.1). */
export const UNSAFE_KEY_CHARACTERS = ['/', '\\', '<', '>', '*', '%', '&', ':', '?'] as const;

/** Earliest DateTime Dataverse stores (reference §6). */
export const MIN_DATE = '1753-01-01';

/** One option of a choice column: its integer value and its label. */
export interface ChoiceOptionPlan {
  readonly value: number;
  readonly label: string;
}

/** How a key attribute's value is written in a key predicate: quoted string or bare integer. */
export type KeyLiteral = 'string' | 'integer';

/** One attribute of a key (own or a lookup target's) and the source column giving its value. */
export interface KeyPartPlan {
  readonly attribute: string;
  readonly literal: KeyLiteral;
  readonly source: string;
}

/** One allowed lookup target. `key` null binds by GUID from the column's first source. */
export interface LookupTargetPlan {
  readonly table: string;
  readonly entitySetName: string;
  /** `<nav>@odata.bind` — the navigation property from ManyToOneRelationships. */
  readonly navigationProperty: string;
  readonly key: readonly KeyPartPlan[] | null;
  /** GUID binding: the source column holding the GUID. */
  readonly guidSource: string | null;
}

/** The conversion rule of one column with everything it needs from the metadata, as plain data. */
export type RulePlan =
  | { readonly rule: 'string'; readonly maxLength: number }
  | { readonly rule: 'integer'; readonly min: string; readonly max: string }
  | { readonly rule: 'decimal'; readonly min: string; readonly max: string; readonly precision: number }
  | { readonly rule: 'double'; readonly min: number; readonly max: number }
  | { readonly rule: 'boolean' }
  | {
      readonly rule: 'datetime';
      readonly behavior: 'UserLocal' | 'DateOnly' | 'TimeZoneIndependent';
      /** The mapping's `sourceTimeZone` (default `UTC`). */
      readonly sourceTimeZone: string;
    }
  | { readonly rule: 'guid' }
  | {
      readonly rule: 'choice';
      readonly mode: ChoiceMode;
      readonly options: readonly ChoiceOptionPlan[];
      /** Status columns with statecode mapped too: status value → state value, and statecode's column index. */
      readonly stateCheck: { readonly stateColumn: number; readonly stateOf: readonly [number, number][] } | null;
    }
  | {
      readonly rule: 'multiselect';
      readonly mode: ChoiceMode;
      readonly options: readonly ChoiceOptionPlan[];
      readonly separator: string;
    }
  | {
      readonly rule: 'lookup';
      readonly targets: readonly LookupTargetPlan[];
      /** Per-row target: the source column holding the target's logical name. */
      readonly tableFrom: string | null;
    };

/** One mapped attribute. */
export type ColumnPlan = RulePlan & {
  /** Position in mapping order (the order rejects are checked in). */
  readonly index: number;
  readonly attribute: string;
  readonly attributeType: string;
  /** Source columns (one, except lookups on composite keys). */
  readonly sources: readonly string[];
  /** False for the own-key attributes: they go to the key predicate, never the body (reference §1.2). */
  readonly inPayload: boolean;
  readonly nullMeans: NullMeaning;
};

/** The mapping checked against the snapshots: what both the SQL compilers and the reference converter execute. */
export interface ConversionPlan {
  readonly table: string;
  readonly entitySetName: string;
  readonly keyName: string;
  /** Own key, in the key's attribute order. */
  readonly key: readonly (KeyPartPlan & { readonly column: number })[];
  readonly changeTimestamp: string;
  readonly columns: readonly ColumnPlan[];
  /** Every source column the conversion reads (for checking `staged`). */
  readonly sourceColumns: readonly string[];
}

const INT32 = { min: '-2147483648', max: '2147483647' };
const INT64 = { min: -(2n ** 63n), max: 2n ** 63n - 1n };

/** Tables a mapping needs snapshots of: its own table and every lookup target. */
export function tablesNeeded(
  mapping: DataverseMapping,
  ownTargets?: (attribute: string) => readonly string[],
): string[] {
  const out = new Set<string>([mapping.table]);
  for (const [attribute, m] of Object.entries(mapping.columns)) {
    const spec = columnSpec(m);
    if (spec.lookup) {
      if (isPerRowLookup(spec.lookup)) for (const t of Object.keys(spec.lookup.keys)) out.add(t);
      else out.add(spec.lookup.table);
    } else if (ownTargets) {
      for (const t of ownTargets(attribute)) out.add(t);
    }
  }
  return [...out];
}

/** `choice` for `mapping.choice`: the mapping errors of the catalogue. */
type MappingErrorSuffix = ErrorCode extends infer C ? (C extends `mapping.${infer S}` ? S : never) : never;

/**
 * Checks a mapping against the metadata snapshots and resolves everything the conversion needs (limits, options,
 * entity sets, navigation property names). Throws FerryError `mapping.*` naming the bad attribute and the fix.
 */
export function planConversion(mapping: DataverseMapping, tables: MetadataSet): ConversionPlan {
  const fail = (code: MappingErrorSuffix, message: string): never => {
    throw new FerryError(`mapping.${code}`, message, { details: { table: mapping.table } });
  };
  const table = tables.get(mapping.table);
  if (!table) {
    return fail(
      'table_unknown',
      `Table \`${mapping.table}\` has no metadata snapshot; run \`ferry metadata pull --table ${mapping.table}\`.`,
    );
  }
  const entries = Object.entries(mapping.columns);
  if (entries.length === 0)
    fail('empty', `The mapping of \`${mapping.table}\` maps no columns; add at least the key columns.`);
  if (typeof mapping.changeTimestamp !== 'string' || mapping.changeTimestamp === '') {
    fail(
      'change_timestamp',
      `The mapping of \`${mapping.table}\` needs \`changeTimestamp\`: the source column ordering versions.`,
    );
  }

  // The own key must be an Active alternate key, compared as a set (order comes from the key definition).
  const key = keyOf(table, mapping.key);
  if (!key) {
    fail(
      'key_undefined',
      `Key \`${mapping.key.join(', ')}\` is not an alternate key of \`${table.LogicalName}\` (keys: ${keysText(table)}); define it in Dataverse and re-pull the metadata, or map another key.`,
    );
  }
  if (key!.EntityKeyIndexStatus !== 'Active') {
    fail(
      'key_inactive',
      `Key \`${key!.LogicalName}\` of \`${table.LogicalName}\` is \`${key!.EntityKeyIndexStatus}\`, not Active; wait for its index to build and re-pull the metadata.`,
    );
  }

  const sourceTimeZone = mapping.sourceTimeZone ?? 'UTC';
  if (!isTimeZone(sourceTimeZone)) {
    fail(
      'time_zone',
      `sourceTimeZone \`${sourceTimeZone}\` of the mapping of \`${mapping.table}\` is not an IANA time zone; write one such as \`UTC\` or \`Europe/Berlin\`.`,
    );
  }
  const columns: ColumnPlan[] = [];
  const sources = new Set<string>([mapping.changeTimestamp]);
  entries.forEach(([attributeName, m], index) => {
    const attribute = table.Attributes.find((a) => a.LogicalName === attributeName);
    if (!attribute) {
      const near = table.Attributes.filter((a) => a.LogicalName.includes(attributeName.slice(0, 4))).map(
        (a) => a.LogicalName,
      );
      fail(
        'unknown_attribute',
        `Attribute \`${attributeName}\` does not exist on \`${table.LogicalName}\`${near.length ? ` (similar: ${near.slice(0, 5).join(', ')})` : ''}; use the logical name from the snapshot.`,
      );
    }
    const spec = columnSpec(m);
    const from = asList(spec.from);
    if (from.length === 0 || from.some((f) => typeof f !== 'string' || f === '')) {
      fail(
        'source_missing',
        `Attribute \`${attributeName}\` has no source column; write \`${attributeName}: '<source column>'\`.`,
      );
    }
    const inKey = mapping.key.includes(attributeName);
    if (attribute!.IsValidForCreate === false && attribute!.IsValidForUpdate === false) {
      fail(
        'not_writable',
        `Attribute \`${attributeName}\` of \`${table.LogicalName}\` is read-only (not valid for create or update); remove it from the mapping.`,
      );
    }
    const rule = planRule(attribute!, spec, from, table, tables, fail);
    const nullMeans = spec.nullMeans ?? (rule.rule === 'lookup' ? 'omit' : 'clear');
    if (!(NULL_MEANINGS as readonly string[]).includes(nullMeans)) {
      fail('null_means', `Attribute \`${attributeName}\` has nullMeans \`${nullMeans}\`; use 'omit' or 'clear'.`);
    }
    for (const f of from) sources.add(f);
    if (rule.rule === 'lookup') {
      if (rule.tableFrom) sources.add(rule.tableFrom);
      for (const t of rule.targets) for (const p of t.key ?? []) sources.add(p.source);
    }
    columns.push({
      ...rule,
      index,
      attribute: attributeName,
      attributeType: attribute!.AttributeTypeName.Value,
      sources: from,
      inPayload: !inKey,
      nullMeans,
    } as ColumnPlan);
  });

  // statuscode must belong to statecode when both are mapped.
  const state = columns.find((c) => c.attributeType === 'StateType');
  const fixed = columns.map((c) => {
    if (c.rule !== 'choice' || c.attributeType !== 'StatusType' || !state) return c;
    const attr = table.Attributes.find((a) => a.LogicalName === c.attribute) as AttributeOfType<'StatusType'>;
    return {
      ...c,
      stateCheck: {
        stateColumn: state.index,
        stateOf: attr.OptionSet.Options.map((o) => [o.Value, o.State] as [number, number]),
      },
    };
  });

  const keyParts = key!.KeyAttributes.map((attribute) => {
    const column = fixed.find((c) => c.attribute === attribute);
    if (!column) {
      return fail(
        'key_unmapped',
        `Key attribute \`${attribute}\` of \`${table.LogicalName}\` is not mapped; add \`${attribute}: '<source column>'\` to columns.`,
      );
    }
    if (column.rule !== 'string' && column.rule !== 'integer') {
      return fail(
        'key_type',
        `Key attribute \`${attribute}\` is ${column.attributeType}; only String and Integer/BigInt keys are supported by the conversion, map another key.`,
      );
    }
    return {
      attribute,
      literal: (column.rule === 'integer' ? 'integer' : 'string') as KeyLiteral,
      source: column.sources[0]!,
      column: column.index,
    };
  });

  return {
    table: table.LogicalName,
    entitySetName: table.EntitySetName,
    keyName: key!.LogicalName,
    key: keyParts,
    changeTimestamp: mapping.changeTimestamp,
    columns: fixed.map((c) => (c.rule === 'datetime' ? { ...c, sourceTimeZone } : c)),
    sourceColumns: [...sources],
  };
}

/** True for a time zone name the runtime (and so DuckDB's ICU, the same database) knows. */
export function isTimeZone(name: string): boolean {
  try {
    new Intl.DateTimeFormat('en-US', { timeZone: name });
    return name !== '';
  } catch {
    return false;
  }
}

function planRule(
  attribute: AttributeMetadata,
  spec: ColumnSpec,
  from: readonly string[],
  table: TableMetadata,
  tables: MetadataSet,
  fail: (code: MappingErrorSuffix, message: string) => never,
): RulePlan {
  const name = attribute.LogicalName;
  const type = attribute.AttributeTypeName.Value;
  const isLookup = type === 'LookupType' || type === 'CustomerType' || type === 'OwnerType';
  if (spec.lookup && !isLookup)
    fail('wrong_option', `Attribute \`${name}\` is ${type}, not a lookup; remove \`lookup\` from its spec.`);
  if (spec.multiSelect && type !== 'MultiSelectPicklistType') {
    fail(
      'wrong_option',
      `Attribute \`${name}\` is ${type}, not a multi-select choice; remove \`multiSelect\` from its spec.`,
    );
  }
  const choiceTypes = ['PicklistType', 'StateType', 'StatusType'];
  if (spec.choice !== undefined && !choiceTypes.includes(type)) {
    fail('wrong_option', `Attribute \`${name}\` is ${type}, not a choice; remove \`choice\` from its spec.`);
  }
  const mode = checkMode(spec.choice ?? spec.multiSelect?.choice ?? 'auto', name, fail);
  if (!isLookup && from.length !== 1) {
    fail(
      'source_list',
      `Attribute \`${name}\` takes one source column, got ${from.length}; list several only for composite lookup keys.`,
    );
  }
  // TypeScript does not narrow on the nested `AttributeTypeName.Value`, so each case views the attribute as its type.
  const as = <T extends AttributeTypeName>(..._types: T[]) => attribute as AttributeOfType<T>;
  switch (type) {
    case 'StringType':
    case 'MemoType':
      return { rule: 'string', maxLength: as('StringType', 'MemoType').MaxLength };
    case 'IntegerType': {
      const a = as('IntegerType');
      return {
        rule: 'integer',
        min: String(Math.max(Number(INT32.min), a.MinValue ?? Number(INT32.min))),
        max: String(Math.min(Number(INT32.max), a.MaxValue ?? Number(INT32.max))),
      };
    }
    case 'BigIntType': {
      const a = as('BigIntType');
      // Snapshots read Int64 limits exactly (bigint); a hand-written number may still round: clamp to Int64.
      const clamp = (v: number | bigint | undefined, d: bigint) => {
        if (v === undefined) return d;
        const b = typeof v === 'bigint' ? v : BigInt(Math.trunc(v));
        return b < INT64.min ? INT64.min : b > INT64.max ? INT64.max : b;
      };
      return { rule: 'integer', min: String(clamp(a.MinValue, INT64.min)), max: String(clamp(a.MaxValue, INT64.max)) };
    }
    case 'DecimalType':
    case 'MoneyType': {
      const a = as('DecimalType', 'MoneyType');
      const precision = a.Precision;
      if (!Number.isInteger(precision) || precision < 0 || precision > 10) {
        fail('metadata', `Attribute \`${name}\` has Precision \`${precision}\`; expected 0..10. Re-pull the metadata.`);
      }
      return {
        rule: 'decimal',
        min: decimalText(a.MinValue, precision),
        max: decimalText(a.MaxValue, precision),
        precision,
      };
    }
    case 'DoubleType':
      return { rule: 'double', min: as('DoubleType').MinValue, max: as('DoubleType').MaxValue };
    case 'BooleanType':
      return { rule: 'boolean' };
    case 'DateTimeType':
      // The mapping's time zone is filled in by planConversion.
      return { rule: 'datetime', behavior: as('DateTimeType').DateTimeBehavior.Value, sourceTimeZone: 'UTC' };
    case 'UniqueidentifierType':
      return { rule: 'guid' };
    case 'PicklistType':
    case 'StateType':
    case 'StatusType':
      return {
        rule: 'choice',
        mode,
        options: options(as('PicklistType', 'StateType', 'StatusType').OptionSet.Options),
        stateCheck: null,
      };
    case 'MultiSelectPicklistType': {
      const separator = spec.multiSelect?.separator ?? ';';
      if (separator === '')
        fail('separator', `Attribute \`${name}\` has an empty multiSelect separator; use e.g. ';'.`);
      return {
        rule: 'multiselect',
        mode,
        options: options(as('MultiSelectPicklistType').OptionSet.Options),
        separator,
      };
    }
    case 'LookupType':
    case 'CustomerType':
    case 'OwnerType':
      return planLookup(name, as('LookupType').Targets, spec, from, table, tables, fail);
    default:
      return fail(
        'unsupported_type',
        `Attribute \`${name}\` is ${type}, which the conversion cannot write; remove it from the mapping.`,
      );
  }
}

function planLookup(
  name: string,
  allowed: readonly string[],
  spec: ColumnSpec,
  from: readonly string[],
  table: TableMetadata,
  tables: MetadataSet,
  fail: (code: MappingErrorSuffix, message: string) => never,
): RulePlan {
  const lookup: LookupSpec = spec.lookup ?? (allowed.length === 1 ? { table: allowed[0]! } : (undefined as never));
  if (!lookup) {
    fail(
      'lookup_spec',
      `Lookup \`${name}\` can point to ${allowed.join(' or ')}; say which with \`lookup: { table: '${allowed[0]}' }\` or \`lookup: { tableFrom: '<column>', keys: {...} }\`.`,
    );
  }
  const targetPlan = (
    target: string,
    keySpec: string | readonly string[] | LookupKeySpec | null | undefined,
  ): LookupTargetPlan => {
    if (!allowed.includes(target)) {
      fail('lookup_target', `Lookup \`${name}\` cannot point to \`${target}\`; its targets are ${allowed.join(', ')}.`);
    }
    const targetTable = tables.get(target);
    if (!targetTable) {
      fail(
        'target_metadata',
        `Lookup \`${name}\` points to \`${target}\`, which has no metadata snapshot; run \`ferry metadata pull --table ${target}\`.`,
      );
    }
    // Polymorphic lookups have one navigation property per target; Owner is documented against `owner`, so fall
    // back to the only relationship of the column.
    const rels = table.ManyToOneRelationships.filter((r) => r.ReferencingAttribute === name);
    const rel = rels.find((r) => r.ReferencedEntity === target) ?? (rels.length === 1 ? rels[0] : undefined);
    if (!rel) {
      fail(
        'navigation',
        `No many-to-one relationship of \`${table.LogicalName}.${name}\` to \`${target}\` in the snapshot; re-pull the metadata with relationships.`,
      );
    }
    const norm: LookupKeySpec =
      keySpec === null || keySpec === undefined
        ? {}
        : typeof keySpec === 'string' || Array.isArray(keySpec)
          ? { key: keySpec as string | readonly string[] }
          : (keySpec as LookupKeySpec);
    const keyAttrs = asList(norm.key);
    const keySources = norm.from === undefined ? from : asList(norm.from);
    if (keyAttrs.length === 0) {
      if (keySources.length !== 1)
        fail('lookup_key', `Lookup \`${name}\` by GUID takes one source column, got ${keySources.length}.`);
      return {
        table: target,
        entitySetName: targetTable!.EntitySetName,
        navigationProperty: rel!.ReferencingEntityNavigationPropertyName,
        key: null,
        guidSource: keySources[0]!,
      };
    }
    const tk = keyOf(targetTable!, keyAttrs);
    if (tk?.EntityKeyIndexStatus !== 'Active') {
      fail(
        'lookup_key',
        `Lookup \`${name}\` binds \`${target}\` by \`${keyAttrs.join(', ')}\`, which is not an Active alternate key of \`${target}\` (keys: ${keysText(targetTable!)}).`,
      );
    }
    if (keySources.length !== keyAttrs.length) {
      fail(
        'lookup_key',
        `Lookup \`${name}\` binds \`${target}\` by ${keyAttrs.length} attribute(s) (${keyAttrs.join(', ')}) but has ${keySources.length} source column(s); list one source per key attribute, in the same order.`,
      );
    }
    const parts = keyAttrs.map((attribute, i) => {
      const a = targetTable!.Attributes.find((x) => x.LogicalName === attribute)!;
      const t = a.AttributeTypeName.Value;
      if (!['StringType', 'IntegerType', 'BigIntType'].includes(t)) {
        fail(
          'key_type',
          `Key attribute \`${target}.${attribute}\` is ${t}; lookups bind only by String and Integer keys.`,
        );
      }
      return { attribute, literal: (t === 'StringType' ? 'string' : 'integer') as KeyLiteral, source: keySources[i]! };
    });
    // Order the parts as the key is defined, which is how Dataverse echoes keys.
    const ordered = tk!.KeyAttributes.map((a) => parts.find((p) => p.attribute === a)!);
    return {
      table: target,
      entitySetName: targetTable!.EntitySetName,
      navigationProperty: rel!.ReferencingEntityNavigationPropertyName,
      key: ordered,
      guidSource: null,
    };
  };
  if (isPerRowLookup(lookup)) {
    const names = Object.keys(lookup.keys);
    if (names.length === 0) fail('lookup_spec', `Lookup \`${name}\` lists no targets in \`keys\`.`);
    return {
      rule: 'lookup',
      targets: names.map((t) => targetPlan(t, lookup.keys[t])),
      tableFrom: lookup.tableFrom,
    };
  }
  return { rule: 'lookup', targets: [targetPlan(lookup.table, lookup.key ?? null)], tableFrom: null };
}

/** The alternate key of `table` made of exactly `attributes`, in any order. */
function keyOf(table: TableMetadata, attributes: readonly string[]): KeyMetadata | undefined {
  const wanted = [...attributes].sort().join(',');
  return table.Keys.find((k) => [...k.KeyAttributes].sort().join(',') === wanted);
}

/** A table's alternate keys for a message: `name (a, b); ...`, or `none`. */
function keysText(table: TableMetadata): string {
  return table.Keys.map((k) => `${k.LogicalName} (${k.KeyAttributes.join(', ')})`).join('; ') || 'none';
}

function checkMode(mode: string, name: string, fail: (code: MappingErrorSuffix, message: string) => never): ChoiceMode {
  if (!(CHOICE_MODES as readonly string[]).includes(mode))
    fail('choice', `Attribute \`${name}\` has choice \`${mode}\`; use 'label', 'value' or 'auto'.`);
  return mode as ChoiceMode;
}

function options(list: readonly { Value: number; Label: string }[]): ChoiceOptionPlan[] {
  return list.map((o) => ({ value: o.Value, label: o.Label }));
}

/** A metadata limit as exact decimal text with `precision` fractional digits. */
function decimalText(value: number, precision: number): string {
  return value.toFixed(precision);
}
