import type {
  ChoiceOptionPlan,
  ColumnPlan,
  ConversionReason,
  KeyPartPlan,
  LookupTargetPlan,
} from '../../core/mapping.js';
import { MIN_DATE } from '../../core/mapping.js';
import {
  type AliasNames,
  type AppliedVersionsSource,
  type ColumnSql,
  type ConversionBuilders,
  ConversionCompiler,
  mergeLiterals,
  type Segment,
  type SourceColumn,
  type SourceType,
  type SqlDialect,
} from '../sql-dialect.js';
import type { TableName } from '../sql-steps.js';
import { duckIdent, duckLiteral } from './driver.js';

/*
 * Text rules shared with the reference converter (src/core/reference-converter.ts), written once here as regexes:
 * - "trim" removes spaces only (DuckDB `trim`), blank = null or empty after trim;
 * - numbers in text: optional sign, digits, optional fraction; no exponent (except for Double columns);
 * - date/times in text: `YYYY-MM-DD`, optional `T`/space + `HH:MM[:SS[.fff]]`, optional `Z` or `±HH[[:]MM]`.
 */
const NUMBER_RE = '^(([+-]?)0*([0-9]*)(?:\\.([0-9]*?)0*)?)$';
const NO_DIGITS = "('+', '-', '.', '+.', '-.')";
const INTEGER_RE = '[+-]?[0-9]+';
const DOUBLE_RE = '[+-]?([0-9]+\\.?[0-9]*|\\.[0-9]+)([eE][+-]?[0-9]+)?';
const GUID_RE = '[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}';
const DATETIME_RE =
  '^([0-9]{4}-[0-9]{2}-[0-9]{2})(?:[T ]([01][0-9]|2[0-3]):([0-5][0-9])(?::([0-5][0-9])(?:\\.([0-9]+))?)?)? ?(Z|[+-](?:[01][0-9]|2[0-3])(?::?[0-5][0-9])?)?$';
const UNSAFE_RE = '[/\\\\<>*%&:?]';
const SUPPLEMENTARY_RE = '[^\\x{10000}-\\x{10FFFF}]';

const L = duckLiteral;
const reason = (code: ConversionReason) => L(code);
/** True when a key text holds a character that breaks key URLs (own keys and lookup keys alike). */
const unsafeKey = (text: string) => `regexp_matches(${text}, ${L(UNSAFE_RE)})`;
/** A key text for an OData string literal: single quotes doubled. */
const escapeKeyText = (text: string) => `replace(${text}, '''', '''''')`;

/** The embedded default dialect: DuckDB. */
export const duckdbDialect: SqlDialect = {
  name: 'duckdb',
  capabilities: {
    maxParameters: null,
    maxRowsPerInsertValues: null,
    readsParquet: true,
    listLambdas: true,
    regex: true,
    jsonPayload: 'concat',
  },
  ident: duckIdent,
  literal: duckLiteral,
  bool: (value) => (value ? 'TRUE' : 'FALSE'),
  descNullsLast: (expr) => `${expr} DESC NULLS LAST`,
  param: (name) => `$${name}`,
  selectInto: (target, list, rest) => [`CREATE OR REPLACE TABLE ${target} AS SELECT ${list} ${rest}`],
  upsert: (o) => {
    const table = (n: TableName) => (n.schema ? `${duckIdent(n.schema)}.${duckIdent(n.table)}` : duckIdent(n.table));
    const all = [...o.keys, ...o.columns];
    const set = o.columns.map((c) => `${duckIdent(c)} = excluded.${duckIdent(c)}`).join(', ');
    const newer = o.versionColumn
      ? ` WHERE excluded.${duckIdent(o.versionColumn)} >= ${table(o.target)}.${duckIdent(o.versionColumn)}`
      : '';
    return `INSERT INTO ${table(o.target)} (${all.map(duckIdent).join(', ')}) SELECT ${all.map(duckIdent).join(', ')} FROM ${table(o.source)} ON CONFLICT (${o.keys.map(duckIdent).join(', ')}) DO ${o.columns.length ? `UPDATE SET ${set}${newer}` : 'NOTHING'}`;
  },
  nowText: `strftime(timezone('UTC', current_timestamp), '%Y-%m-%dT%H:%M:%S.%f')`,
  nowTimestamp: 'current_timestamp',
  textOf: (expr) => `CAST(${expr} AS VARCHAR)`,
  length: (expr) => `length(${expr})`,
  rowJson: (alias) => `CAST(to_json(${alias}) AS VARCHAR)`,
  arrivalRowNumber: 'ROW_NUMBER() OVER ()',
  tryGuid: (expr) => `TRY_CAST(${expr} AS UUID)`,
  nullText: 'CAST(NULL AS VARCHAR)',
  classifyType: classifyDuckType,
  describeTableSql: (table) =>
    `SELECT column_name AS name, data_type AS type FROM information_schema.columns WHERE table_name = ${L(table)} ORDER BY ordinal_position`,
  tableExistsSql: (table) => `SELECT COUNT(*) AS n FROM information_schema.tables WHERE table_name = ${L(table)}`,
  castText: (expr) => `CAST(${expr} AS VARCHAR)`,
  concat: (parts) => (parts.length ? parts.map((p) => `(${p})`).join(' || ') : "''"),
  concatSkipNulls: (separator, parts) =>
    separator === '' ? `concat(${parts.join(', ')})` : `concat_ws(${L(separator)}, ${parts.join(', ')})`,
  createTableAs: (name, select) => `CREATE OR REPLACE TABLE ${duckIdent(name)} AS\n${select}`,
  // A TEMP table lives in memory and spills to the temp directory when the memory limit is reached, uncompressed;
  // a table of the database file is compressed and written to it, which took half the conversion's CPU for a table
  // dropped at the end of the run (bench accounts, 1 M rows: 5.1 vs 10.9 CPU s).
  createWorkTableAs: (name, select) => `CREATE OR REPLACE TEMP TABLE ${duckIdent(name)} AS\n${select}`,
  createViewAs: (name, select) => `CREATE OR REPLACE VIEW ${duckIdent(name)} AS\n${select}`,
  appliedVersionsRelation: relation,
  saveAppliedVersionsSql(previous, target) {
    if (target.kind !== 'parquet') throw new Error('DuckDB saves applied versions to a Parquet file');
    const fresh = `SELECT c.__key_predicate AS key, c.__version AS version
    FROM converted c JOIN upserted u ON u.__row_id = c.__row_id WHERE c.__version IS NOT NULL`;
    const union = previous ? `SELECT key, version FROM ${relation(previous)}\n    UNION ALL ${fresh}` : fresh;
    return `COPY (SELECT key, max(version) AS version FROM (${union}) GROUP BY key ORDER BY key) TO ${L(target.path)} (FORMAT PARQUET, COMPRESSION zstd)`;
  },
  conversion: {
    column: buildColumn,
    version: buildVersion,
    unsafeKey,
    escapeKeyText,
    rowNumber: (partitionBy, orderBy) => `row_number() OVER (PARTITION BY ${partitionBy} ORDER BY ${orderBy})`,
    keyHash: (text) => `hash(${text})`,
  } satisfies ConversionBuilders,
};

function relation(source: AppliedVersionsSource): string {
  if (source.kind === 'query') return `(${source.sql})`;
  return source.kind === 'parquet' ? `read_parquet(${L(source.path)})` : duckIdent(source.name);
}

/** Maps a DuckDB type name (`DECIMAL(18,2)`, `TIMESTAMP WITH TIME ZONE`...) to a source kind. */
export function classifyDuckType(typeText: string): SourceType {
  const t = typeText.trim().toUpperCase();
  const dec = /^DECIMAL\((\d+),\s*(\d+)\)$/.exec(t);
  if (dec) return { kind: 'decimal', precision: Number(dec[1]), scale: Number(dec[2]) };
  if (t === 'VARCHAR' || t.startsWith('VARCHAR(') || t === 'TEXT' || t === 'STRING') return { kind: 'text' };
  if (/^(TINYINT|SMALLINT|INTEGER|INT|BIGINT|HUGEINT|UTINYINT|USMALLINT|UINTEGER|UBIGINT|UHUGEINT)$/.test(t))
    return { kind: 'integer' };
  if (t === 'DOUBLE' || t === 'FLOAT' || t === 'REAL') return { kind: 'float' };
  if (t === 'BOOLEAN') return { kind: 'boolean' };
  if (t === 'TIMESTAMP WITH TIME ZONE' || t === 'TIMESTAMPTZ') return { kind: 'timestamptz' };
  if (/^TIMESTAMP(_S|_MS|_NS)?$/.test(t) || t === 'DATETIME') return { kind: 'timestamp' };
  if (t === 'DATE') return { kind: 'date' };
  if (t === 'UUID') return { kind: 'uuid' };
  return { kind: 'other' };
}

type Prep = Array<readonly [string, string]>;

function sourceRef(sources: ReadonlyMap<string, SourceColumn>, name: string): { ref: string; col: SourceColumn } {
  const col = sources.get(name);
  if (!col) throw new Error(`conversion: source column ${name} is not staged`);
  return { ref: `s.${duckIdent(name)}`, col };
}

const text = (ref: string, col: SourceType) => (col.kind === 'text' ? ref : `CAST(${ref} AS VARCHAR)`);
const trimmed = (ref: string, col: SourceType) => `NULLIF(trim(${text(ref, col)}), '')`;
/**
 * True when a text is NULL or blank (`trim(t) = ''`). `trim` copies every value (measured ~90 ms per 1M distinct
 * values); it can only remove a leading space or non-ASCII space, so it runs only for values starting with one.
 */
const blankText = (t: string) =>
  `(CASE WHEN ${t} IS NULL OR ${t} = '' THEN TRUE WHEN starts_with(${t}, ' ') OR ascii(${t}) > 127 THEN trim(${t}) = '' ELSE FALSE END)`;

function buildColumn(column: ColumnPlan, sources: ReadonlyMap<string, SourceColumn>, n: AliasNames): ColumnSql {
  const a = (name: string) => n.alias(name);
  const Q = (name: string) => duckIdent(a(name));
  const nullJson = column.nullMeans === 'clear' ? "'null'" : 'NULL';
  const { ref, col } = sourceRef(sources, column.sources[0]!);
  switch (column.rule) {
    case 'string': {
      const t = Q('t');
      const max = column.maxLength;
      return {
        // Own-key columns test blankness in several places; prepared once.
        prepare: [
          [a('t'), text(ref, col)],
          [a('blank'), blankText(text(ref, col))],
        ],
        // Dataverse counts UTF-16 code units (.NET string length), so characters beyond U+FFFF count twice. Bytes
        // bound UTF-16 units from above, so the regex count is needed only for long values: a nested CASE keeps it
        // from running on the others (DuckDB evaluates both sides of AND; measured 1.2 s per 1M values vs 5 ms).
        reason: `CASE WHEN ${t} IS NULL OR strlen(${t}) <= ${max} THEN NULL WHEN length(${t}) + length(regexp_replace(${t}, ${L(SUPPLEMENTARY_RE)}, '', 'g')) > ${max} THEN ${reason('string.too_long')} END`,
        value: `CASE WHEN ${t} IS NULL THEN ${nullJson} ELSE CAST(to_json(${t}) AS VARCHAR) END`,
        keyText: t,
        blank: Q('blank'),
      };
    }
    case 'integer': {
      const num = Q('n');
      const range = `${num} < ${column.min} OR ${num} > ${column.max}`;
      if (col.kind === 'integer') {
        return {
          prepare: [[a('n'), `CAST(${ref} AS HUGEINT)`]],
          reason: `CASE WHEN ${range} THEN ${reason('number.out_of_range')} END`,
          value: `CASE WHEN ${num} IS NULL THEN ${nullJson} ELSE CAST(${num} AS VARCHAR) END`,
          keyText: `CAST(${num} AS VARCHAR)`,
          blank: `(${num} IS NULL)`,
        };
      }
      if (col.kind === 'float') {
        const d = Q('d');
        return {
          prepare: [
            [a('d'), `CAST(${ref} AS DOUBLE)`],
            [a('n'), `CASE WHEN isfinite(${ref}) AND ${ref} = trunc(${ref}) THEN TRY_CAST(${ref} AS HUGEINT) END`],
          ],
          reason: `CASE WHEN ${d} IS NULL THEN NULL WHEN isnan(${d}) THEN ${reason('number.unparsable')} WHEN isfinite(${d}) AND ${d} <> trunc(${d}) THEN ${reason('number.precision')} WHEN ${num} IS NULL OR ${range} THEN ${reason('number.out_of_range')} END`,
          value: `CASE WHEN ${d} IS NULL THEN ${nullJson} ELSE CAST(${num} AS VARCHAR) END`,
          keyText: `CAST(${num} AS VARCHAR)`,
          blank: `(${d} IS NULL)`,
        };
      }
      const { prep, t, ok, i, f } = numberText(a, Q, ref, col);
      return {
        prepare: [
          ...prep,
          [
            a('n'),
            `CASE WHEN ${ok} AND ${f} = '' AND length(${i}) <= 38 THEN CAST(${Q('m')}['s'] || CASE WHEN ${i} = '' THEN '0' ELSE ${i} END AS HUGEINT) END`,
          ],
        ],
        reason: `CASE WHEN ${t} IS NULL THEN NULL WHEN NOT ${ok} THEN ${reason('number.unparsable')} WHEN ${f} <> '' THEN ${reason('number.precision')} WHEN ${num} IS NULL OR ${range} THEN ${reason('number.out_of_range')} END`,
        value: `CASE WHEN ${t} IS NULL THEN ${nullJson} ELSE CAST(${num} AS VARCHAR) END`,
        keyText: `CAST(${num} AS VARCHAR)`,
        blank: `(${t} IS NULL)`,
      };
    }
    case 'decimal': {
      const p = column.precision;
      const scaledMin = scaled(column.min);
      const scaledMax = scaled(column.max);
      if (col.kind === 'decimal' && (col.scale ?? 0) <= 17) return typedDecimal(column, ref, col, a, Q, nullJson);
      // Float sources are rounded to 10 fractional digits first (DOUBLE has no exact decimal digits to keep).
      const isFloat = col.kind === 'float';
      const src = isFloat ? `CAST(TRY_CAST(${ref} AS DECIMAL(38,10)) AS VARCHAR)` : text(ref, col);
      const { prep, t, ok, i, f } = numberText(a, Q, ref, col, src);
      const sc = Q('sc');
      const sign = `${Q('m')}['s']`;
      // HUGEINT, not DECIMAL(>18): DuckDB's VARCHAR→DECIMAL(>18) cast is ~90× slower (dependency evaluation §2).
      const raw = Q('raw');
      const floatReasons = isFloat
        ? `WHEN ${raw} IS NOT NULL AND ${t} IS NULL THEN CASE WHEN isnan(${raw}) THEN ${reason('number.unparsable')} ELSE ${reason('number.out_of_range')} END `
        : '';
      const blankTest = isFloat ? `${raw} IS NULL` : `${t} IS NULL`;
      return {
        prepare: [
          ...(isFloat ? ([[a('raw'), ref]] as Prep) : []),
          ...prep,
          [
            a('sc'),
            `CASE WHEN ${ok} AND length(${f}) <= ${p} AND length(${i}) <= 28 THEN CAST(${sign} || CASE WHEN ${i} = '' THEN '0' ELSE ${i} END || rpad(${f}, ${p}, '0') AS HUGEINT) END`,
          ],
        ],
        reason: `CASE WHEN ${blankTest} THEN NULL ${floatReasons}WHEN NOT ${ok} THEN ${reason('number.unparsable')} WHEN length(${f}) > ${p} THEN ${reason('number.precision')} WHEN ${sc} IS NULL OR ${sc} < ${scaledMin} OR ${sc} > ${scaledMax} THEN ${reason('number.out_of_range')} END`,
        value: `CASE WHEN ${blankTest} THEN ${nullJson} WHEN ${sc} IS NULL THEN NULL ELSE (CASE WHEN ${sc} < 0 THEN '-' ELSE '' END) || (CASE WHEN ${i} = '' THEN '0' ELSE ${i} END) || (CASE WHEN ${f} = '' THEN '' ELSE '.' || ${f} END) END`,
      };
    }
    case 'double': {
      const d = Q('d');
      const range = `isinf(${d}) OR ${d} < ${column.min} OR ${d} > ${column.max}`;
      if (col.kind === 'integer' || col.kind === 'decimal' || col.kind === 'float') {
        return {
          prepare: [[a('d'), `CAST(${ref} AS DOUBLE)`]],
          reason: `CASE WHEN ${d} IS NULL THEN NULL WHEN isnan(${d}) THEN ${reason('number.unparsable')} WHEN ${range} THEN ${reason('number.out_of_range')} END`,
          value: `CASE WHEN ${d} IS NULL THEN ${nullJson} ELSE CAST(${d} AS VARCHAR) END`,
        };
      }
      const t = Q('t');
      return {
        prepare: [
          [a('t'), trimmed(ref, col)],
          [
            a('d'),
            `CASE WHEN regexp_full_match(${trimmed(ref, col)}, ${L(DOUBLE_RE)}) THEN TRY_CAST(${trimmed(ref, col)} AS DOUBLE) END`,
          ],
        ],
        reason: `CASE WHEN ${t} IS NULL THEN NULL WHEN NOT regexp_full_match(${t}, ${L(DOUBLE_RE)}) THEN ${reason('number.unparsable')} WHEN ${d} IS NULL OR ${range} THEN ${reason('number.out_of_range')} END`,
        value: `CASE WHEN ${t} IS NULL THEN ${nullJson} ELSE CAST(${d} AS VARCHAR) END`,
      };
    }
    case 'boolean': {
      const bv = Q('b');
      const blank = Q('blank');
      let b: string;
      let isBlank: string;
      if (col.kind === 'boolean') {
        b = ref;
        isBlank = `${ref} IS NULL`;
      } else if (col.kind === 'integer') {
        b = `CASE WHEN ${ref} = 1 THEN TRUE WHEN ${ref} = 0 THEN FALSE END`;
        isBlank = `${ref} IS NULL`;
      } else {
        const l = `lower(${trimmed(ref, col)})`;
        b = `CASE WHEN ${l} IN ('true', '1', 'yes', 'y') THEN TRUE WHEN ${l} IN ('false', '0', 'no', 'n') THEN FALSE END`;
        isBlank = `${trimmed(ref, col)} IS NULL`;
      }
      return {
        prepare: [
          [a('b'), b],
          [a('blank'), isBlank],
        ],
        reason: `CASE WHEN ${blank} THEN NULL WHEN ${bv} IS NULL THEN ${reason('boolean.invalid')} END`,
        value: `CASE WHEN ${blank} THEN ${nullJson} WHEN ${bv} IS NULL THEN NULL WHEN ${bv} THEN 'true' ELSE 'false' END`,
      };
    }
    case 'datetime': {
      // What each behaviour sends (the service's rules): UserLocal the UTC instant; TimeZoneIndependent the wall
      // clock as written (an offset is dropped, not applied); DateOnly the calendar date as written. Values without
      // an offset (text without one, DATE, TIMESTAMP) are wall clocks in the source time zone; TIMESTAMPTZ values are
      // instants (their offset is gone) and read as the wall clock in the source time zone.
      const zone = column.sourceTimeZone;
      const fromZone = (naive: string) => (zone === 'UTC' ? naive : `timezone('UTC', timezone(${L(zone)}, ${naive}))`);
      const dateOnly = column.behavior === 'DateOnly';
      const wallClock = column.behavior !== 'UserLocal';
      const utc = Q('ts');
      const local = Q('local');
      const blank = Q('blank');
      const prep: Prep = [];
      if (col.kind === 'timestamp' || col.kind === 'date') {
        prep.push(
          [a('local'), `CAST(${ref} AS TIMESTAMP)`],
          [a('ts'), fromZone(local)],
          [a('blank'), `${ref} IS NULL`],
        );
      } else if (col.kind === 'timestamptz') {
        prep.push(
          [a('ts'), `timezone('UTC', ${ref})`],
          [a('local'), zone === 'UTC' ? utc : `timezone(${L(zone)}, ${ref})`],
          [a('blank'), `${ref} IS NULL`],
        );
      } else {
        const dt = dateTimeText(a, Q, trimmed(ref, col), fromZone);
        prep.push(...dt.prep, [a('blank'), `${Q('t')} IS NULL`]);
      }
      const parsed = `${local} IS NOT NULL`;
      const sent = wallClock ? local : utc;
      // One string built per value, not three (`'"' || x || '"'`). DateOnly: the DATE cast writes what strftime's
      // `%Y-%m-%d` does for every date from 1753-01-01 on (earlier ones are rejected), ~2× faster.
      const quoted = dateOnly
        ? `concat('"', CAST(CAST(${local} AS DATE) AS VARCHAR), '"')`
        : `strftime(${sent}, '"%Y-%m-%dT%H:%M:%SZ"')`;
      const early = dateOnly
        ? `CAST(${local} AS DATE) < DATE '${MIN_DATE}'`
        : `${sent} < TIMESTAMP '${MIN_DATE} 00:00:00'`;
      return {
        prepare: prep,
        reason: `CASE WHEN ${blank} THEN NULL WHEN NOT (${parsed}) THEN ${reason('date.unparsable')} WHEN ${early} THEN ${reason('date.before_min')} END`,
        value: `CASE WHEN ${blank} THEN ${nullJson} WHEN NOT (${parsed}) THEN NULL ELSE ${quoted} END`,
      };
    }
    case 'guid': {
      const t = Q('t');
      return {
        prepare: [[a('t'), col.kind === 'uuid' ? `CAST(${ref} AS VARCHAR)` : trimmed(ref, col)]],
        reason: `CASE WHEN ${t} IS NULL THEN NULL WHEN NOT regexp_full_match(${t}, ${L(GUID_RE)}) THEN ${reason('guid.invalid')} END`,
        value: `CASE WHEN ${t} IS NULL THEN ${nullJson} ELSE '"' || lower(${t}) || '"' END`,
      };
    }
    case 'choice': {
      const t = Q('t');
      const r = Q('r');
      const unknown =
        column.mode === 'value'
          ? reason('choice.unknown_value')
          : column.mode === 'label'
            ? reason('choice.unknown_label')
            : `CASE WHEN regexp_full_match(${t}, ${L(INTEGER_RE)}) THEN ${reason('choice.unknown_value')} ELSE ${reason('choice.unknown_label')} END`;
      let stateCheck = '';
      if (column.stateCheck) {
        const stateR = duckIdent(n.aliasOf(column.stateCheck.stateColumn, 'r'));
        const stateOf = `CASE ${r} ${column.stateCheck.stateOf.map(([s, st]) => `WHEN ${s} THEN ${st}`).join(' ')} END`;
        stateCheck = ` WHEN ${stateR} IS NOT NULL AND ${stateOf} <> ${stateR} THEN ${reason('status.invalid_for_state')}`;
      }
      return {
        prepare: [
          [a('t'), trimmed(ref, col)],
          [a('r'), resolveChoice(trimmed(ref, col), column.mode, column.options)],
        ],
        reason: `CASE WHEN ${t} IS NULL THEN NULL WHEN ${r} IS NULL THEN ${unknown}${stateCheck} END`,
        value: `CASE WHEN ${t} IS NULL THEN ${nullJson} ELSE CAST(${r} AS VARCHAR) END`,
      };
    }
    case 'multiselect': {
      const t = Q('t');
      const m = Q('m');
      const parts = `list_filter(list_transform(string_split(${text(ref, col)}, ${L(column.separator)}), x -> trim(x)), x -> x <> '')`;
      return {
        prepare: [
          [a('t'), text(ref, col)],
          [a('m'), `list_transform(${parts}, x -> ${resolveChoice('x', column.mode, column.options)})`],
        ],
        reason: `CASE WHEN ${t} IS NULL THEN NULL WHEN len(list_filter(${m}, y -> y IS NULL)) > 0 THEN ${reason('multiselect.invalid_member')} END`,
        // Source order, first occurrence kept (list_distinct does not keep order).
        value: `CASE WHEN ${t} IS NULL OR len(${m}) = 0 THEN ${nullJson} ELSE '"' || array_to_string(list_filter(${m}, (y, i) -> list_position(${m}, y) = i), ',') || '"' END`,
      };
    }
    case 'lookup':
      return buildLookup(column, sources, a, Q);
  }
}

/**
 * A typed DECIMAL(p,s) source into a Decimal/Money column, computed on DECIMAL(18,s): DuckDB works on DECIMAL(>18)
 * through HUGEINT and is ~10× slower there (casts to text, rounding). Values that need more than 18 digits take the
 * exact text route, evaluated only for those rows.
 */
function typedDecimal(
  column: ColumnPlan & { rule: 'decimal' },
  ref: string,
  col: SourceType,
  a: (name: string) => string,
  Q: (name: string) => string,
  nullJson: string,
): ColumnSql {
  const p = column.precision;
  const scale = col.scale ?? 0;
  const wide = (col.precision ?? 38) > 18;
  const d = Q('d');
  const narrow = wide ? `TRY_CAST(${ref} AS DECIMAL(18,${scale}))` : ref;
  const slowText = wide
    ? `CASE WHEN ${ref} IS NOT NULL AND ${narrow} IS NULL THEN CAST(${ref} AS VARCHAR) END`
    : 'NULL';
  const { prep, i, f } = numberText(a, Q, ref, col, slowText);
  const sc = Q('sc');
  const sign = `${Q('m')}['s']`;
  // The text is prepared once: the suffix tests would each cast again (no common-subexpression reuse in CASE).
  const fastText = scale > 0 ? trimFraction(Q('dt'), scale) : `CAST(${d} AS VARCHAR)`;
  const range = [bound(d, '<', column.min, scale), bound(d, '>', column.max, scale)].filter((x) => x !== null);
  const fastChecks = `${scale > p ? `WHEN ${d} <> round(${d}, ${p}) THEN ${reason('number.precision')} ` : ''}${range.length ? `WHEN ${range.join(' OR ')} THEN ${reason('number.out_of_range')} ` : ''}`;
  const fastReason = fastChecks ? `CASE ${fastChecks}END` : 'NULL';
  const slowReason = `CASE WHEN length(${f}) > ${p} THEN ${reason('number.precision')} WHEN ${sc} IS NULL OR ${sc} < ${scaled(column.min)} OR ${sc} > ${scaled(column.max)} THEN ${reason('number.out_of_range')} END`;
  return {
    prepare: [
      [a('raw'), ref],
      [a('d'), narrow],
      ...(scale > 0 ? ([[a('dt'), `CAST(${narrow} AS VARCHAR)`]] as Prep) : []),
      ...prep,
      [
        a('sc'),
        `CASE WHEN length(${f}) <= ${p} AND length(${i}) <= 28 THEN CAST(${sign} || CASE WHEN ${i} = '' THEN '0' ELSE ${i} END || rpad(${f}, ${p}, '0') AS HUGEINT) END`,
      ],
    ],
    reason: `CASE WHEN ${Q('raw')} IS NULL THEN NULL WHEN ${d} IS NOT NULL THEN ${fastReason} ELSE ${slowReason} END`,
    value: `CASE WHEN ${Q('raw')} IS NULL THEN ${nullJson} WHEN ${d} IS NOT NULL THEN ${fastText} WHEN ${sc} IS NULL THEN NULL ELSE (CASE WHEN ${sc} < 0 THEN '-' ELSE '' END) || (CASE WHEN ${i} = '' THEN '0' ELSE ${i} END) || (CASE WHEN ${f} = '' THEN '' ELSE '.' || ${f} END) END`,
  };
}

/**
 * `d < limit` / `d > limit` for a DECIMAL(18,scale) value, with the limit as a DECIMAL(18,scale) literal: a wider
 * literal would make DuckDB compare every row as DECIMAL(>18), ~10× slower. A limit beyond 18 digits cannot be
 * crossed (null: no check); one with digits beyond `scale` keeps the exact (slower) literal.
 */
function bound(d: string, op: '<' | '>', limit: string, scale: number): string | null {
  const [int = '', frac = ''] = limit.replace('-', '').split('.');
  const extra = frac.slice(scale);
  if (/[1-9]/.test(extra)) return `${d} ${op} ${limit}`;
  if (int.replace(/^0+/, '').length > 18 - scale) {
    // |limit| ≥ 10^(18-scale) > |d|: `d > max` with a positive max (or `d < min` with a negative min) never holds.
    const negative = limit.startsWith('-');
    if ((op === '>' && !negative) || (op === '<' && negative)) return null;
    return 'TRUE';
  }
  const kept = scale > 0 ? `${limit.split('.')[0]}.${frac.slice(0, scale).padEnd(scale, '0')}` : limit.split('.')[0]!;
  return `${d} ${op} CAST(${L(kept)} AS DECIMAL(18,${scale}))`;
}

/**
 * Decimal text with `scale` fraction digits (as DuckDB writes DECIMAL) without trailing fraction zeros, nor the
 * point when none is left: `rtrim(rtrim(t, '0'), '.')`, but by suffix tests, as DuckDB's `rtrim` with characters
 * is slow (measured ~60 ms per 1M values vs ~10 ms). Values ending in a non-zero digit, most of them, take the
 * first branch.
 */
function trimFraction(t: string, scale: number): string {
  const branches = [];
  for (let zeros = scale; zeros >= 1; zeros--) {
    branches.push(
      `WHEN ends_with(${t}, ${L('0'.repeat(zeros))}) THEN left(${t}, ${-(zeros === scale ? zeros + 1 : zeros)})`,
    );
  }
  return `CASE WHEN NOT ends_with(${t}, '0') THEN ${t} ${branches.join(' ')} END`;
}

/** Parses number text into sign, integer digits (no leading zeros) and fraction digits (no trailing zeros). */
function numberText(
  a: (name: string) => string,
  Q: (name: string) => string,
  ref: string,
  col: SourceType,
  source?: string,
): { prep: Prep; t: string; ok: string; i: string; f: string } {
  const t = Q('t');
  const m = Q('m');
  const src = source ? `NULLIF(trim(${source}), '')` : trimmed(ref, col);
  return {
    prep: [
      [a('t'), src],
      [a('m'), `regexp_extract(${src}, ${L(NUMBER_RE)}, ['w', 's', 'i', 'f'])`],
    ],
    t,
    ok: `(${m}['w'] <> '' AND ${t} NOT IN ${NO_DIGITS})`,
    i: `${m}['i']`,
    f: `${m}['f']`,
  };
}

/** Date/time text → `local` (the wall time as written) and `ts` (UTC instant); NULL when unparsable. */
/** Parses ISO-like text: `local` is the wall clock as written, `ts` the UTC instant (no offset: `fromZone`). */
function dateTimeText(
  a: (name: string) => string,
  Q: (name: string) => string,
  src: string,
  fromZone: (naive: string) => string,
): { prep: Prep } {
  const m = Q('m');
  const g = (k: string) => `${m}['${k}']`;
  const hms = `coalesce(nullif(${g('H')}, ''), '00') || ':' || coalesce(nullif(${g('M')}, ''), '00') || ':' || coalesce(nullif(${g('S')}, ''), '00')`;
  const zz = `replace(${g('z')}, ':', '')`;
  const offset = `CASE WHEN ${g('z')} IN ('', 'Z') THEN 0 ELSE (CASE WHEN left(${g('z')}, 1) = '-' THEN -1 ELSE 1 END) * (CAST(substr(${zz}, 2, 2) AS INTEGER) * 60 + CASE WHEN length(${zz}) = 5 THEN CAST(substr(${zz}, 4, 2) AS INTEGER) ELSE 0 END) END`;
  return {
    prep: [
      [a('t'), src],
      [a('m'), `regexp_extract(${src}, ${L(DATETIME_RE)}, ['d', 'H', 'M', 'S', 'F', 'z'])`],
      [a('local'), `CASE WHEN ${g('d')} <> '' THEN TRY_CAST(${g('d')} || ' ' || ${hms} AS TIMESTAMP) END`],
      [a('off'), offset],
      [
        a('ts'),
        `CASE WHEN ${g('z')} = '' THEN ${fromZone(Q('local'))} ELSE ${Q('local')} - to_minutes(${Q('off')}) END`,
      ],
    ],
  };
}

function scaled(decimal: string): string {
  return String(BigInt(decimal.replace('.', '')));
}

/** The option value a text resolves to by value and/or label, NULL when none. */
function resolveChoice(t: string, mode: 'label' | 'value' | 'auto', options: readonly ChoiceOptionPlan[]): string {
  const values = options.map((o) => o.value).join(', ');
  const byValue = `CASE WHEN regexp_full_match(${t}, ${L(INTEGER_RE)}) AND length(${t}) <= 12 AND TRY_CAST(${t} AS BIGINT) IN (${values}) THEN CAST(TRY_CAST(${t} AS BIGINT) AS INTEGER) END`;
  // First label wins when two options share a label case-insensitively.
  const seen = new Set<string>();
  const labels = options.filter((o) => {
    const k = o.label.trim().toLowerCase();
    if (seen.has(k)) return false;
    seen.add(k);
    return true;
  });
  // A list search, not `CASE lower(t) WHEN ... END`: a CASE makes one pass over the rows per option (measured
  // 33 options: ~65 ms per 1M values vs ~12 ms). list_position finds the first equal label; NULL finds none.
  const byLabel = labels.length
    ? `[${labels.map((o) => o.value).join(', ')}][list_position([${labels.map((o) => L(o.label.trim().toLowerCase())).join(', ')}], lower(${t}))]`
    : 'NULL';
  if (mode === 'value') return byValue;
  if (mode === 'label') return byLabel;
  return `COALESCE(${byValue}, ${byLabel})`;
}

function buildLookup(
  column: ColumnPlan & { rule: 'lookup' },
  sources: ReadonlyMap<string, SourceColumn>,
  a: (name: string) => string,
  Q: (name: string) => string,
): ColumnSql {
  const prepare: Prep = [];
  const perTarget = column.targets.map((target, ti) => lookupTarget(target, ti, sources, a, Q, prepare));
  const nullFragment = (t: LookupTargetPlan) =>
    column.nullMeans === 'clear' ? L(`${JSON.stringify(`${t.navigationProperty}@odata.bind`)}:null`) : 'NULL';
  const bound = (t: (typeof perTarget)[number]) =>
    `CASE WHEN ${t.allBlank} THEN ${nullFragment(t.target)} ELSE ${L(`${JSON.stringify(`${t.target.navigationProperty}@odata.bind`)}:`)} || CAST(to_json(${t.bind}) AS VARCHAR) END`;
  if (!column.tableFrom) {
    const t = perTarget[0]!;
    return { prepare, reason: t.reason, value: 'NULL', fragment: bound(t) };
  }
  const { ref, col } = sourceRef(sources, column.tableFrom);
  prepare.push([a('tt'), `lower(${trimmed(ref, col)})`]);
  const tt = Q('tt');
  const allBlank = perTarget.map((t) => `(${t.allBlank})`).join(' AND ');
  const names = column.targets.map((t) => L(t.table)).join(', ');
  return {
    prepare,
    reason: `CASE WHEN ${tt} IS NULL AND ${allBlank} THEN NULL WHEN ${tt} IS NULL OR ${tt} NOT IN (${names}) THEN ${reason('lookup.target_unknown')} ${perTarget.map((t) => `WHEN ${tt} = ${L(t.target.table)} THEN ${t.reason}`).join(' ')} END`,
    value: 'NULL',
    fragment: `CASE WHEN ${tt} IS NULL AND ${allBlank} THEN ${nullFragment(column.targets[0]!)} ${perTarget.map((t) => `WHEN ${tt} = ${L(t.target.table)} THEN ${bound(t)}`).join(' ')} END`,
  };
}

function lookupTarget(
  target: LookupTargetPlan,
  ti: number,
  sources: ReadonlyMap<string, SourceColumn>,
  a: (name: string) => string,
  Q: (name: string) => string,
  prepare: Prep,
): { target: LookupTargetPlan; allBlank: string; reason: string; bind: string } {
  const set = target.entitySetName;
  if (target.key === null) {
    const { ref, col } = sourceRef(sources, target.guidSource!);
    prepare.push([a(`g${ti}`), col.kind === 'uuid' ? `CAST(${ref} AS VARCHAR)` : trimmed(ref, col)]);
    const g = Q(`g${ti}`);
    return {
      target,
      allBlank: `${g} IS NULL`,
      reason: `CASE WHEN ${g} IS NULL THEN NULL WHEN NOT regexp_full_match(${g}, ${L(GUID_RE)}) THEN ${reason('guid.invalid')} END`,
      bind: `${L(`/${set}(`)} || lower(${g}) || ')'`,
    };
  }
  const parts = target.key.map((part: KeyPartPlan, pi) => {
    const { ref, col } = sourceRef(sources, part.source);
    const raw = Q(`k${ti}_${pi}`);
    // The blank test is prepared once: the reason and the fragment both need it.
    const blank = Q(`k${ti}_${pi}_blank`);
    if (part.literal === 'string') {
      const t = text(ref, col);
      prepare.push([a(`k${ti}_${pi}`), t], [a(`k${ti}_${pi}_blank`), blankText(t)]);
      return {
        part,
        blank,
        bad: null,
        unsafe: unsafeKey(raw),
        literal: [{ text: "'" }, { sql: escapeKeyText(raw) }, { text: "'" }] as Segment[],
      };
    }
    prepare.push([a(`k${ti}_${pi}`), trimmed(ref, col)], [a(`k${ti}_${pi}_blank`), `(${trimmed(ref, col)} IS NULL)`]);
    const num = `CASE WHEN regexp_full_match(${raw}, ${L(INTEGER_RE)}) AND length(${raw}) <= 38 THEN CAST(CAST(${raw} AS HUGEINT) AS VARCHAR) END`;
    return { part, blank, bad: `(${num}) IS NULL`, unsafe: null, literal: [{ sql: `(${num})` }] as Segment[] };
  });
  const allBlank = parts.map((p) => p.blank).join(' AND ');
  const anyBlank = parts.map((p) => p.blank).join(' OR ');
  const bad = parts.flatMap((p) => (p.bad ? [p.bad] : [])).join(' OR ');
  const unsafe = parts.flatMap((p) => (p.unsafe ? [p.unsafe] : [])).join(' OR ');
  const bind = mergeLiterals(
    [
      { text: `/${set}(` },
      ...parts.flatMap((p, i) => [{ text: `${i ? ',' : ''}${p.part.attribute}=` }, ...p.literal]),
      { text: ')' },
    ],
    L,
  ).join(' || ');
  const checks = [
    parts.length > 1 ? `WHEN ${anyBlank} THEN ${reason('key.missing')}` : '',
    bad ? `WHEN ${bad} THEN ${reason('number.unparsable')}` : '',
    unsafe ? `WHEN ${unsafe} THEN ${reason('lookup.key_unsafe')}` : '',
  ].filter((x) => x !== '');
  return {
    target,
    allBlank,
    reason: checks.length ? `CASE WHEN ${allBlank} THEN NULL ${checks.join(' ')} END` : 'NULL',
    bind,
  };
}

function buildVersion(source: SourceColumn): { prepare: Prep; version: string } {
  const ref = `s.${duckIdent(source.name)}`;
  const iso = (ts: string) => `strftime(${ts}, '%Y-%m-%dT%H:%M:%S.%fZ')`;
  switch (source.kind) {
    case 'timestamp':
    case 'date':
      return { prepare: [], version: iso(`CAST(${ref} AS TIMESTAMP)`) };
    case 'timestamptz':
      return { prepare: [], version: iso(`timezone('UTC', ${ref})`) };
    case 'integer':
      // Zero-padded so text order is number order (non-negative versions, e.g. a rowversion).
      return { prepare: [], version: `lpad(CAST(${ref} AS VARCHAR), 20, '0')` };
    default: {
      const a = (name: string) => `v_${name}`;
      const Q = (name: string) => duckIdent(a(name));
      const dt = dateTimeText(a, Q, trimmed(ref, source), (naive) => naive);
      const fraction = `rpad(left(${Q('m')}['F'], 6), 6, '0')`;
      return {
        prepare: dt.prep,
        version: `CASE WHEN ${Q('local')} IS NOT NULL THEN strftime(${Q('local')} - to_minutes(${Q('off')}), '%Y-%m-%dT%H:%M:%S') || '.' || ${fraction} || 'Z' END`,
      };
    }
  }
}

/** The conversion compiler for DuckDB: the shared one, with no step of its own. */
export const duckdbConversion = new ConversionCompiler(duckdbDialect);
