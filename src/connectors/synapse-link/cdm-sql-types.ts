import { duckIdent } from '../../dialects/duckdb/duckdb-staging.js';
import type { CdmAttribute } from './cdm-model.js';

/** How one CDM column is typed from its VARCHAR text in DuckDB. */
export interface TypedColumn {
  readonly name: string;
  /** DuckDB type of the typed column. */
  readonly sqlType: string;
  /** Expression turning the VARCHAR column into `sqlType`; NULL where the text does not parse. */
  readonly expression: string;
  /** True when a non-empty text can fail to parse (then the reader checks it). */
  readonly canFail: boolean;
  /** What a valid value looks like, for error messages. */
  readonly expected: string;
}

// Synapse Link writes `M/d/yyyy h:mm:ss tt` for SinkCreatedOn/SinkModifiedOn; the MS template also accepts 24h.
const US_DATETIME = `['%m/%d/%Y %I:%M:%S %p', '%m/%d/%Y %H:%M:%S']`;
const DEFAULT_DECIMAL = { precision: 38, scale: 10 } as const;

/**
 * The DuckDB typing of a CDM attribute read as text. Decimals wider than 18 digits go through HUGEINT: DuckDB's
 * direct VARCHAR→DECIMAL(>18) cast costs about 8 µs a value, ~90× the HUGEINT route (dependency evaluation §2).
 */
export function typedColumn(attr: CdmAttribute, source = duckIdent(attr.name)): TypedColumn {
  const c = source;
  switch (attr.dataType) {
    case 'guid':
      return col(attr, 'UUID', `TRY_CAST(${c} AS UUID)`, 'a GUID like `50bff458-d47a-4924-804b-31c5a83108e6`');
    case 'int64':
      return col(attr, 'BIGINT', `TRY_CAST(${c} AS BIGINT)`, 'a whole number');
    case 'double':
      return col(attr, 'DOUBLE', `TRY_CAST(${c} AS DOUBLE)`, 'a number');
    case 'boolean':
      return col(
        attr,
        'BOOLEAN',
        `CASE lower(${c}) WHEN 'true' THEN true WHEN 'false' THEN false WHEN '1' THEN true WHEN '0' THEN false END`,
        '`True`, `False` or empty',
      );
    case 'decimal': {
      const precision = Math.min(38, attr.precision ?? DEFAULT_DECIMAL.precision);
      const scale = Math.min(precision, attr.scale ?? (attr.precision === undefined ? DEFAULT_DECIMAL.scale : 0));
      const type = `DECIMAL(${precision},${scale})`;
      if (precision <= 18)
        return col(attr, type, `TRY_CAST(${c} AS ${type})`, `a decimal number (${precision},${scale})`);
      // Digits as a scaled HUGEINT, then one exact multiply by 10^-scale. Extra fraction digits are cut, not rounded.
      const digits =
        scale === 0
          ? `split_part(${c}, '.', 1)`
          : `split_part(${c}, '.', 1) || rpad(split_part(${c}, '.', 2), ${scale}, '0')`;
      const unit = scale === 0 ? '1' : `0.${'0'.repeat(scale - 1)}1::DECIMAL(${scale + 1},${scale})`;
      // The DOUBLE parse rejects text like `1.2.3` that the digit splice would accept.
      const wide = `CASE WHEN TRY_CAST(${c} AS DOUBLE) IS NOT NULL THEN (TRY_CAST(${digits} AS HUGEINT)::DECIMAL(38,0) * ${unit})::${type} END`;
      // Most values fit 18 digits, and that cast is ~4× cheaper again; COALESCE only evaluates the wide route for the
      // rest. (Synapse Link writes at most `scale` fraction digits; more would be rounded here and cut there.)
      const expression = scale <= 18 ? `coalesce(TRY_CAST(${c} AS DECIMAL(18,${scale}))::${type}, ${wide})` : wide;
      return col(attr, type, expression, `a decimal number (${precision},${scale})`);
    }
    case 'dateTime':
    case 'dateTimeOffset':
      return col(
        attr,
        'TIMESTAMPTZ',
        `CASE WHEN contains(${c}, '/') THEN TRY_STRPTIME(${c}, ${US_DATETIME})::TIMESTAMPTZ ELSE TRY_CAST(${c} AS TIMESTAMPTZ) END`,
        'a date and time as `M/d/yyyy h:mm:ss tt`, `yyyy-MM-ddTHH:mm:ss.fffffff+00:00` or `yyyy-MM-ddTHH:mm:ssZ`',
      );
    case 'date':
      return col(
        attr,
        'DATE',
        `CASE WHEN contains(${c}, '/') THEN TRY_STRPTIME(${c}, '%m/%d/%Y')::DATE ELSE TRY_CAST(${c} AS DATE) END`,
        'a date as `M/d/yyyy` or `yyyy-MM-dd`',
      );
    case 'time':
      return col(attr, 'TIME', `TRY_CAST(${c} AS TIME)`, 'a time as `HH:mm:ss`');
    default:
      return { name: attr.name, sqlType: 'VARCHAR', expression: c, canFail: false, expected: 'text' };
  }
}

function col(attr: CdmAttribute, sqlType: string, expression: string, expected: string): TypedColumn {
  return { name: attr.name, sqlType, expression, canFail: true, expected };
}
