/**
 * The mapping from staged source columns to Dataverse attributes, as plain serialisable data. The local runner
 * (DuckDB), the T-SQL export and the reference converter all read the same mapping.
 */

/** How a choice column reads its source: by option label (case-insensitive, trimmed), by option value, or both. */
export const CHOICE_MODES = ['label', 'value', 'auto'] as const;
export type ChoiceMode = (typeof CHOICE_MODES)[number];

/**
 * What a null (or empty) source value does. `omit` leaves the attribute out of the payload (Dataverse keeps what it
 * has); `clear` sends `null`. Default: `clear` for plain attributes (the source says the value is empty), `omit` for
 * lookups (a missing reference in a delta rarely means "disassociate").
 */
export const NULL_MEANINGS = ['omit', 'clear'] as const;
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
