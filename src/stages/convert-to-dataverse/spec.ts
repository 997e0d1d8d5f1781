import { UsageError } from '../../core/errors.js';
import { asList, type ColumnMapping, columnSpec, type DataverseMapping, isPerRowLookup } from '../../core/mapping.js';
import type { StageSpecBase } from '../../core/pipeline.js';
import { SpecFields, type StageKindSpec } from '../stage-kind.js';

/** The stage kind. */
export const CONVERT_TO_DATAVERSE = 'convert-to-dataverse' as const;

/** The stage spec: the mapping itself, plain data. */
export interface ConvertToDataverseSpec extends StageSpecBase, DataverseMapping {
  readonly kind: typeof CONVERT_TO_DATAVERSE;
}

/**
 * Declares the conversion of staged rows into Dataverse payloads, validated against the table's metadata snapshot.
 *
 * @example
 * convertToDataverse({
 *   table: 'account', key: ['accountnumber'], changeTimestamp: 'modified_at',
 *   columns: { accountnumber: 'account_no', name: 'account_name', industrycode: { from: 'industry', choice: 'label' } },
 * })
 */
export function convertToDataverse(mapping: DataverseMapping): ConvertToDataverseSpec {
  return {
    kind: CONVERT_TO_DATAVERSE,
    table: mapping.table,
    key: [...mapping.key],
    changeTimestamp: mapping.changeTimestamp,
    columns: structuredClone(mapping.columns) as DataverseMapping['columns'],
    ...(mapping.sourceTimeZone === undefined ? {} : { sourceTimeZone: mapping.sourceTimeZone }),
  };
}

/** The source columns a mapping reads: every `from`, per-row lookup `tableFrom` and key `from`, `changeTimestamp`. */
export function mappingSourceColumns(spec: DataverseMapping): string[] {
  const out = new Set<string>();
  if (spec.changeTimestamp) out.add(spec.changeTimestamp);
  for (const value of Object.values(spec.columns)) {
    const v = columnSpec(value);
    for (const c of asList(v.from)) out.add(c);
    if (v.lookup && isPerRowLookup(v.lookup)) {
      out.add(v.lookup.tableFrom);
      for (const key of Object.values(v.lookup.keys)) {
        if (key && typeof key === 'object' && !Array.isArray(key) && 'from' in key)
          for (const c of asList(key.from)) out.add(c);
      }
    }
  }
  return [...out];
}

/** A mapping's columns as read from data: each a source column name or an object (planConversion checks the rest). */
function isColumns(value: Readonly<Record<string, unknown>>): value is Readonly<Record<string, ColumnMapping>> {
  return Object.values(value).every((v) => typeof v === 'string' || (v !== null && typeof v === 'object'));
}

/** What `convert-to-dataverse` declares to the registries. */
export const convertToDataverseKind: StageKindSpec<ConvertToDataverseSpec> = {
  kind: CONVERT_TO_DATAVERSE,
  parse(spec) {
    const f = new SpecFields(spec);
    const columns = f.optObject('columns') ?? {};
    if (!isColumns(columns))
      throw new UsageError(
        `Stage \`${CONVERT_TO_DATAVERSE}\` of table \`${f.string('table')}\` maps a column to something that is neither a source column name nor an object; fix \`columns\`.`,
      );
    return convertToDataverse({
      table: f.string('table'),
      key: f.strings('key'),
      changeTimestamp: f.string('changeTimestamp'),
      columns,
      sourceTimeZone: f.optString('sourceTimeZone'),
    });
  },
  stagedColumns: mappingSourceColumns,
  synapseRole: 'conversion',
};
