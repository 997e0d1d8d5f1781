import { FerryError } from '../../core/errors.js';
import { mergeStatement, TSQL_CAPABILITIES, tsqlIdent, tsqlLiteral, tsqlTable } from './tsql-statements.js';

/**
 * The conversion to Dataverse column types compiled to T-SQL (Azure SQL), from the same mapping the DuckDB
 * conversion reads, with the same reason codes. Rows are checked set-based: one pass computes every converted
 * value and the first failing column's reason (mapping order), rejects go to the error store, the latest version
 * per key goes to `converted` with its payload built by `FOR JSON PATH`.
 */

/** A mapped column as the compiler reads it (structural: the mapping type lives in `src/core/mapping.ts`). */
export interface TsqlColumnMapping {
  readonly attribute: string;
  readonly from: string | readonly string[];
  readonly lookup?: {
    readonly table?: string;
    readonly key?: string | readonly string[];
    readonly tableFrom?: string;
    readonly keys?: Readonly<Record<string, unknown>>;
  };
}

/** The mapping: target table, its alternate key attributes, the change timestamp column and the columns. */
export interface TsqlMapping {
  readonly table: string;
  readonly key: readonly string[];
  readonly changeTimestamp?: string;
  readonly columns: readonly TsqlColumnMapping[];
  /** The stage spec as written; per-column options (`choice`, `multiSelect`) are read from it. */
  readonly spec?: unknown;
}

/** The metadata fields the compiler reads (same shape as the snapshots in `fixtures/metadata/`). */
export interface TsqlTableMetadata {
  readonly LogicalName: string;
  readonly EntitySetName: string;
  readonly PrimaryIdAttribute: string;
  readonly Attributes: readonly Record<string, unknown>[];
  readonly ManyToOneRelationships?: readonly {
    readonly ReferencedEntity: string;
    readonly ReferencingAttribute: string;
    readonly ReferencingEntityNavigationPropertyName: string;
  }[];
}

interface TableName {
  readonly schema: string;
  readonly table: string;
}

/** Table names the compiled statements use. */
export interface ConversionNames {
  /** Source rows as copied (source columns + `__source_file`, `__run_id`). */
  readonly staged: TableName;
  /** Source rows with `__row_id` and `__row_number` added. */
  readonly rows: TableName;
  /** The staging contract's `converted` table. */
  readonly converted: TableName;
  /** Flat rows for the Copy activity: key attributes, attributes, lookups resolved to GUIDs. */
  readonly sink: TableName;
  readonly rejects: TableName;
  readonly keymap: TableName;
}

/** A lookup target whose alternate-key → GUID map the pipeline copies from Dataverse before converting. */
export interface KeymapTarget {
  readonly table: string;
  readonly entitySet: string;
  readonly idAttribute: string;
  readonly keyAttributes: readonly string[];
}

/** The compiled conversion. */
export interface CompiledConversion {
  /** Refreshes the key map from the copied raw key tables (run before `convert`). */
  readonly keymapRefresh: string[];
  /** The conversion statements; parameters `@run_id` and `@pipeline`. */
  readonly convert: string[];
  /** The query the Copy activity reads from the sink table. */
  readonly sinkQuery: string;
  readonly keymapTargets: KeymapTarget[];
}

const UNSAFE_LIKE = "N'%[/\\<>*%&:?]%'";
const NOW = 'CONVERT(NVARCHAR(40), SYSUTCDATETIME(), 127)';

interface Compiled {
  /** Expression of the converted value (NULL when the source is NULL or invalid). */
  readonly value: string;
  /** Pairs of (condition, reason, message) checked in order. */
  readonly checks: { cond: string; reason: string; message: string }[];
  /** Payload property name. */
  readonly jsonName: string;
  readonly lookup?: { set: string; pred: string; targetName: string; polymorphic: boolean };
}

/** Compiles a mapping against table metadata into T-SQL statements. */
export function compileConversion(
  mapping: TsqlMapping,
  metadata: ReadonlyMap<string, TsqlTableMetadata>,
  names: ConversionNames,
): CompiledConversion {
  const meta = metadata.get(mapping.table);
  if (!meta)
    throw new FerryError(
      'mapping.metadata',
      `No metadata for table \`${mapping.table}\`; pull it with \`ferry metadata pull --table ${mapping.table}\`.`,
    );
  const attrs = new Map(meta.Attributes.map((a) => [String(a.LogicalName), a]));
  const byAttr = new Map(mapping.columns.map((c) => [c.attribute, c]));
  const rawOptions = columnOptions(mapping.spec);
  for (const k of mapping.key) {
    if (!byAttr.has(k))
      throw new FerryError(
        'mapping.key_unmapped',
        `Key attribute \`${k}\` of \`${mapping.table}\` is not in the mapping's columns; map it to a source column.`,
      );
  }
  const src = (col: string) => `r.${tsqlIdent(col)}`;
  const text = (col: string) => `CAST(${src(col)} AS NVARCHAR(4000))`;
  const keymapTargets = new Map<string, KeymapTarget>();
  const compiled: Compiled[] = [];
  const nonKey = mapping.columns.filter((c) => !mapping.key.includes(c.attribute));
  for (const c of nonKey) {
    const a = attrs.get(c.attribute);
    if (!a)
      throw new FerryError(
        'mapping.unknown_attribute',
        `Attribute \`${c.attribute}\` is not in the metadata of \`${mapping.table}\`; check the spelling or pull metadata again.`,
      );
    compiled.push(compileColumn(c, a, meta, metadata, rawOptions[c.attribute] ?? {}, keymapTargets, src, text));
  }
  const keyCols = mapping.key.map((k) => byAttr.get(k)!);
  const keyType = (k: string) => String(attrs.get(k)?.AttributeType ?? 'String');
  const keyValue = (k: string) => {
    const c = byAttr.get(k)!;
    return ['Integer', 'BigInt'].includes(keyType(k))
      ? `CAST(TRY_CONVERT(BIGINT, ${src(first(c.from))}) AS NVARCHAR(40))`
      : text(first(c.from));
  };
  const keyText = `CONCAT(${keyCols.map((c, i) => `${i ? "N','," : ''}N'${c.attribute}=', ${keyValue(c.attribute)}`).join(', ')})`;
  const keyPredicate = `CONCAT(${keyCols
    .map((c, i) => {
      const sep = i ? "N','," : '';
      return ['Integer', 'BigInt'].includes(keyType(c.attribute))
        ? `${sep}N'${c.attribute}=', ${keyValue(c.attribute)}`
        : `${sep}N'${c.attribute}=''', REPLACE(${keyValue(c.attribute)}, N'''', N''''''), N''''`;
    })
    .join(', ')})`;
  const keySafe = `CASE WHEN ${keyCols.map((c) => `${keyValue(c.attribute)} LIKE ${UNSAFE_LIKE}`).join(' OR ')} THEN 0 ELSE 1 END`;
  const keyChecks = keyCols.map((c) => ({
    cond: `${src(first(c.from))} IS NULL OR LTRIM(RTRIM(${text(first(c.from))})) = N''`,
    reason: 'key.missing',
    message: `N'Key column \`${c.attribute}\` (source \`${c.from}\`) is empty; every row needs its key — fix the source row.'`,
  }));
  const checks = [...keyChecks, ...compiled.flatMap((c) => c.checks)];
  const reason = checks.length
    ? `CASE ${checks.map((k) => `WHEN ${k.cond} THEN N'${k.reason}'`).join(' ')} END`
    : 'CAST(NULL AS NVARCHAR(100))';
  const message = checks.length
    ? `CASE ${checks.map((k) => `WHEN ${k.cond} THEN ${k.message}`).join(' ')} END`
    : 'CAST(NULL AS NVARCHAR(MAX))';
  const version = mapping.changeTimestamp
    ? `CONVERT(NVARCHAR(40), ${src(mapping.changeTimestamp)}, 126)`
    : 'CAST(NULL AS NVARCHAR(40))';
  const checked = { schema: names.converted.schema, table: `${names.converted.table}_checked` };
  const T = (n: TableName) => tsqlTable(n.schema, n.table);

  const values = compiled.map((c, i) => `${c.value} AS [v${i}]`);
  const lookupCols = compiled.flatMap((c, i) =>
    c.lookup
      ? [
          `${c.lookup.set} AS [l${i}_set]`,
          `${c.lookup.pred} AS [l${i}_pred]`,
          `${c.lookup.targetName} AS [l${i}_target]`,
        ]
      : [],
  );
  const convert: string[] = [
    `DROP TABLE IF EXISTS ${T(names.rows)}`,
    // Row numbers follow the copy's insert order within a file; the Copy activity keeps file order per file.
    `SELECT s.*, ROW_NUMBER() OVER (ORDER BY s.[__source_file], s.[__ordinal]) AS [__row_id], ROW_NUMBER() OVER (PARTITION BY s.[__source_file] ORDER BY s.[__ordinal]) AS [__row_number] INTO ${T(names.rows)} FROM (SELECT t.*, ROW_NUMBER() OVER (ORDER BY (SELECT NULL)) AS [__ordinal] FROM ${T(names.staged)} AS t) AS s`,
    `DROP TABLE IF EXISTS ${T(checked)}`,
    `SELECT r.[__row_id], r.[__source_file], r.[__row_number], ${keyText} AS [__key], ${keyPredicate} AS [__key_predicate], ${keySafe} AS [__key_safe], ${version} AS [__version], ${[...values, ...lookupCols, `${reason} AS [__reason]`, `${message} AS [__message]`].join(', ')} INTO ${T(checked)} FROM ${T(names.rows)} AS r`,
    `INSERT INTO ${T(names.rejects)} ([run_id], [pipeline], [stage], [reason], [message], [key], [source_file], [row_number], [row_json], [created_at]) SELECT @run_id, @pipeline, N'convert-to-dataverse', k.[__reason], k.[__message], k.[__key], k.[__source_file], k.[__row_number], (SELECT r.* FOR JSON PATH, WITHOUT_ARRAY_WRAPPER), ${NOW} FROM ${T(checked)} AS k INNER JOIN ${T(names.rows)} AS r ON r.[__row_id] = k.[__row_id] WHERE k.[__reason] IS NOT NULL`,
    `DROP TABLE IF EXISTS ${T(names.converted)}`,
    // Several versions of one key in a run collapse to the latest by change timestamp; ties: the later row wins.
    `SELECT x.[__row_id], x.[__source_file], x.[__row_number], x.[__key], x.[__key_predicate], CAST(x.[__key_safe] AS BIT) AS [__key_safe], x.[__version], (SELECT ${compiled.length ? compiled.map((c, i) => `x.[v${i}] AS ${tsqlIdent(c.jsonName)}`).join(', ') : `x.[__key] AS [__key]`} FOR JSON PATH, WITHOUT_ARRAY_WRAPPER) AS [__payload] INTO ${T(names.converted)} FROM (SELECT k.*, ROW_NUMBER() OVER (PARTITION BY k.[__key_predicate] ORDER BY k.[__version] DESC, k.[__row_id] DESC) AS [__rn] FROM ${T(checked)} AS k WHERE k.[__reason] IS NULL) AS x WHERE x.[__rn] = 1`,
  ];
  // Sink: what the Copy activity sends. Lookups by alternate key become GUIDs from the key map; a lookup whose
  // target is not in the map is rejected (`lookup.target_missing`) — the Copy activity cannot bind by key.
  const sinkCols: string[] = [];
  const joins: string[] = [];
  const missing: string[] = [];
  keyCols.forEach((c) => {
    sinkCols.push(`${keyValue(c.attribute).replace(/\br\./g, 'r.')} AS ${tsqlIdent(c.attribute)}`);
  });
  compiled.forEach((c, i) => {
    if (c.lookup) {
      joins.push(
        `LEFT JOIN ${T(names.keymap)} AS km${i} ON km${i}.[entity_set] = k.[l${i}_set] AND km${i}.[key_predicate] = k.[l${i}_pred]`,
      );
      const id = `COALESCE(TRY_CONVERT(UNIQUEIDENTIFIER, k.[l${i}_pred]), km${i}.[id])`;
      sinkCols.push(`${id} AS ${tsqlIdent(nonKey[i].attribute)}`);
      if (c.lookup.polymorphic)
        sinkCols.push(`k.[l${i}_target] AS ${tsqlIdent(`${nonKey[i].attribute}@EntityReference`)}`);
      missing.push(
        `WHEN k.[l${i}_pred] IS NOT NULL AND ${id} IS NULL THEN CONCAT(N'Lookup \`${nonKey[i].attribute}\` target ', k.[l${i}_set], N'(', k.[l${i}_pred], N') is not in Dataverse (key map); load the parent first or replay this row after it exists.')`,
      );
    } else {
      sinkCols.push(`k.[v${i}] AS ${tsqlIdent(nonKey[i].attribute)}`);
    }
  });
  const sinkNames = [
    ...keyCols.map((c) => c.attribute),
    ...nonKey.flatMap((c, i) =>
      compiled[i].lookup?.polymorphic ? [c.attribute, `${c.attribute}@EntityReference`] : [c.attribute],
    ),
  ];
  convert.push(
    `DROP TABLE IF EXISTS ${T(names.sink)}`,
    `SELECT c.[__row_id], ${missing.length ? `CASE ${missing.join(' ')} END` : 'CAST(NULL AS NVARCHAR(MAX))'} AS [__missing], ${sinkCols.join(', ')} INTO ${T(names.sink)} FROM ${T(names.converted)} AS c INNER JOIN ${T(checked)} AS k ON k.[__row_id] = c.[__row_id] INNER JOIN ${T(names.rows)} AS r ON r.[__row_id] = c.[__row_id]${joins.length ? ` ${joins.join(' ')}` : ''}`,
    `INSERT INTO ${T(names.rejects)} ([run_id], [pipeline], [stage], [reason], [message], [key], [source_file], [row_number], [row_json], [created_at]) SELECT @run_id, @pipeline, N'convert-to-dataverse', N'lookup.target_missing', s.[__missing], c.[__key], c.[__source_file], c.[__row_number], c.[__payload], ${NOW} FROM ${T(names.sink)} AS s INNER JOIN ${T(names.converted)} AS c ON c.[__row_id] = s.[__row_id] WHERE s.[__missing] IS NOT NULL`,
    `DELETE FROM ${T(names.sink)} WHERE [__missing] IS NOT NULL`,
  );
  const keymapRefresh = [...keymapTargets.values()]
    .sort((a, b) => a.table.localeCompare(b.table))
    .flatMap((t) => keymapMerge(t, names));
  return {
    keymapRefresh,
    convert,
    sinkQuery: `SELECT ${sinkNames.map(tsqlIdent).join(', ')} FROM ${T(names.sink)}`,
    keymapTargets: [...keymapTargets.values()].sort((a, b) => a.table.localeCompare(b.table)),
  };
}

function keymapMerge(t: KeymapTarget, names: ConversionNames): string[] {
  const raw = { schema: names.sink.schema, table: `keymap_${t.table}_raw` };
  const pred = `CONCAT(${t.keyAttributes.map((k, i) => `${i ? "N','," : ''}N'${k}=''', REPLACE(CAST(s.${tsqlIdent(k)} AS NVARCHAR(4000)), N'''', N''''''), N''''`).join(', ')})`;
  const srcName = { schema: raw.schema, table: `keymap_${t.table}` };
  return [
    `DROP TABLE IF EXISTS ${tsqlTable(srcName.schema, srcName.table)}`,
    `SELECT ${tsqlLiteral(t.entitySet)} AS [entity_set], ${pred} AS [key_predicate], MAX(s.${tsqlIdent(t.idAttribute)}) AS [id], SYSUTCDATETIME() AS [refreshed_at] INTO ${tsqlTable(srcName.schema, srcName.table)} FROM ${tsqlTable(raw.schema, raw.table)} AS s WHERE ${t.keyAttributes.map((k) => `s.${tsqlIdent(k)} IS NOT NULL`).join(' AND ')} AND LEN(${pred}) <= ${TSQL_CAPABILITIES.maxIndexedNvarcharLength} GROUP BY ${pred}`,
    mergeStatement({
      target: names.keymap,
      source: srcName,
      keys: ['entity_set', 'key_predicate'],
      columns: ['id', 'refreshed_at'],
    }),
  ];
}

function columnOptions(spec: unknown): Record<string, Record<string, unknown>> {
  const s = (spec ?? {}) as Record<string, unknown>;
  const m = (s.mapping && typeof s.mapping === 'object' ? s.mapping : s) as Record<string, unknown>;
  const cols = (m.columns ?? {}) as Record<string, unknown>;
  const out: Record<string, Record<string, unknown>> = {};
  for (const [k, v] of Object.entries(cols)) out[k] = v && typeof v === 'object' ? (v as Record<string, unknown>) : {};
  return out;
}

function num(v: unknown, fallback: number): number {
  return typeof v === 'number' && Number.isFinite(v) ? v : fallback;
}

function msg(attribute: string, from: string, textExpr: string, rest: string): string {
  return `CONCAT(N'Column \`${attribute}\` value \`', ${textExpr}, N'\` ${rest.replaceAll("'", "''")}')`;
}

function compileColumn(
  c: TsqlColumnMapping,
  a: Record<string, unknown>,
  meta: TsqlTableMetadata,
  metadata: ReadonlyMap<string, TsqlTableMetadata>,
  options: Record<string, unknown>,
  keymapTargets: Map<string, KeymapTarget>,
  src: (col: string) => string,
  text: (col: string) => string,
): Compiled {
  const s = src(first(c.from));
  const t = text(first(c.from));
  const type = String(a.AttributeType ?? 'String');
  const typeName = String((a.AttributeTypeName as { Value?: string } | undefined)?.Value ?? '');
  const notNull = `${s} IS NOT NULL`;
  const m = (rest: string) => msg(c.attribute, first(c.from), t, rest);
  switch (type) {
    case 'String':
    case 'Memo': {
      const max = num(a.MaxLength, 4000);
      const v = `CAST(${s} AS NVARCHAR(MAX))`;
      return {
        value: v,
        jsonName: c.attribute,
        checks: [
          {
            cond: `LEN(${v} + N'.') - 1 > ${max}`,
            reason: 'string.too_long',
            message: m(`is longer than ${max} characters; shorten it in the source or map another column.`),
          },
        ],
      };
    }
    case 'Integer':
    case 'BigInt': {
      const big = type === 'BigInt';
      const min = num(a.MinValue, big ? Number.MIN_SAFE_INTEGER : -2147483648);
      const max = num(a.MaxValue, big ? Number.MAX_SAFE_INTEGER : 2147483647);
      const v = `TRY_CONVERT(BIGINT, ${s})`;
      return {
        value: `CASE WHEN ${v} BETWEEN ${BigInt(Math.trunc(min))} AND ${BigInt(Math.trunc(max))} THEN ${v} END`,
        jsonName: c.attribute,
        checks: [
          {
            cond: `${notNull} AND ${v} IS NULL`,
            reason: 'number.unparsable',
            message: m('is not a whole number; fix the source value.'),
          },
          {
            cond: `${v} < ${BigInt(Math.trunc(min))} OR ${v} > ${BigInt(Math.trunc(max))}`,
            reason: 'number.out_of_range',
            message: m(`is outside ${min}..${max}; fix the source or map it.`),
          },
        ],
      };
    }
    case 'Decimal':
    case 'Money':
    case 'Double': {
      const precision = Math.min(10, Math.max(0, num(a.Precision, type === 'Money' ? 4 : 2)));
      const min = num(a.MinValue, type === 'Money' ? -922337203685477 : -100000000000);
      const max = num(a.MaxValue, type === 'Money' ? 922337203685477 : 100000000000);
      const v = `TRY_CONVERT(DECIMAL(38, 10), ${s})`;
      return {
        value: `CASE WHEN ${v} BETWEEN ${min} AND ${max} AND ${v} = ROUND(${v}, ${precision}) THEN CAST(${v} AS DECIMAL(38, ${precision})) END`,
        jsonName: c.attribute,
        checks: [
          {
            cond: `${notNull} AND ${v} IS NULL`,
            reason: 'number.unparsable',
            message: m('is not a number; fix the source value.'),
          },
          {
            cond: `${v} < ${min} OR ${v} > ${max}`,
            reason: 'number.out_of_range',
            message: m(`is outside ${min}..${max}; fix the source or map it.`),
          },
          {
            cond: `${v} <> ROUND(${v}, ${precision})`,
            reason: 'number.precision',
            message: m(`has more than ${precision} decimal places; round it in the source.`),
          },
        ],
      };
    }
    case 'Uniqueidentifier': {
      const v = `TRY_CONVERT(UNIQUEIDENTIFIER, ${s})`;
      return {
        value: `LOWER(CONVERT(NVARCHAR(36), ${v}))`,
        jsonName: c.attribute,
        checks: [
          {
            cond: `${notNull} AND ${v} IS NULL`,
            reason: 'guid.invalid',
            message: m('is not a GUID; fix the source value.'),
          },
        ],
      };
    }
    case 'Boolean': {
      const low = `LOWER(LTRIM(RTRIM(${t})))`;
      return {
        value: `CASE WHEN ${low} IN (N'true', N'1', N'yes', N'y') THEN CAST(1 AS BIT) WHEN ${low} IN (N'false', N'0', N'no', N'n') THEN CAST(0 AS BIT) END`,
        jsonName: c.attribute,
        checks: [
          {
            cond: `${notNull} AND ${low} NOT IN (N'true', N'1', N'yes', N'y', N'false', N'0', N'no', N'n')`,
            reason: 'boolean.invalid',
            message: m('is not a boolean (true/false/1/0/yes/no); fix the source value.'),
          },
        ],
      };
    }
    case 'DateTime': {
      const v = `TRY_CONVERT(DATETIMEOFFSET(7), ${s})`;
      const behavior = String((a.DateTimeBehavior as { Value?: string } | undefined)?.Value ?? '');
      const dateOnly =
        behavior === 'DateOnly' ||
        (behavior !== 'TimeZoneIndependent' && behavior !== 'UserLocal' && a.Format === 'DateOnly');
      const out = dateOnly
        ? `CONVERT(NVARCHAR(10), ${v}, 23)`
        : `CONCAT(CONVERT(NVARCHAR(19), SWITCHOFFSET(${v}, '+00:00'), 126), N'Z')`;
      return {
        value: `CASE WHEN ${v} >= '1753-01-01' THEN ${out} END`,
        jsonName: c.attribute,
        checks: [
          {
            cond: `${notNull} AND ${v} IS NULL`,
            reason: 'date.unparsable',
            message: m('is not a date; use ISO-8601 (YYYY-MM-DDTHH:MM:SSZ).'),
          },
          {
            cond: `${v} < '1753-01-01'`,
            reason: 'date.before_min',
            message: m('is before 1753-01-01, the earliest date Dataverse stores; fix the source value.'),
          },
        ],
      };
    }
    case 'Picklist':
    case 'State':
    case 'Status': {
      const opts = ((a.OptionSet as { Options?: { Value: number; Label: unknown }[] } | undefined)?.Options ?? []).map(
        (o) => ({ value: o.Value, label: labelText(o.Label) }),
      );
      const mode = String(options.choice ?? 'auto');
      const byValue = `CASE TRY_CONVERT(INT, ${s}) ${opts.map((o) => `WHEN ${o.value} THEN ${o.value}`).join(' ')} END`;
      const byLabel = `CASE LOWER(LTRIM(RTRIM(${t}))) ${opts.map((o) => `WHEN ${tsqlLiteral(o.label.toLowerCase())} THEN ${o.value}`).join(' ')} END`;
      const useValue = mode === 'value' ? '1 = 1' : mode === 'label' ? '1 = 0' : `TRY_CONVERT(INT, ${s}) IS NOT NULL`;
      const v = opts.length ? `CASE WHEN ${useValue} THEN ${byValue} ELSE ${byLabel} END` : 'CAST(NULL AS INT)';
      return {
        value: v,
        jsonName: c.attribute,
        checks: [
          {
            cond: `${notNull} AND ${useValue} AND ${v} IS NULL`,
            reason: 'choice.unknown_value',
            message: m(`is not an option value of this choice; use one of ${opts.map((o) => o.value).join(', ')}.`),
          },
          {
            cond: `${notNull} AND NOT (${useValue}) AND ${v} IS NULL`,
            reason: 'choice.unknown_label',
            message: m('is not an option label of this choice; fix the source or map the label.'),
          },
        ],
      };
    }
    case 'Lookup':
    case 'Customer':
    case 'Owner':
      return compileLookup(c, a, meta, metadata, keymapTargets, s, t, m);
    default: {
      if (typeName === 'MultiSelectPicklistType' || type === 'Virtual') {
        const opts = (
          (a.OptionSet as { Options?: { Value: number; Label: unknown }[] } | undefined)?.Options ?? []
        ).map((o) => ({ value: o.Value, label: labelText(o.Label) }));
        const sep = String((options.multiSelect as { separator?: string } | undefined)?.separator ?? ';');
        const member = `CASE WHEN TRY_CONVERT(INT, LTRIM(RTRIM(p.[value]))) IS NOT NULL THEN CASE TRY_CONVERT(INT, LTRIM(RTRIM(p.[value]))) ${opts.map((o) => `WHEN ${o.value} THEN ${o.value}`).join(' ')} END ELSE CASE LOWER(LTRIM(RTRIM(p.[value]))) ${opts.map((o) => `WHEN ${tsqlLiteral(o.label.toLowerCase())} THEN ${o.value}`).join(' ')} END END`;
        const bad = `EXISTS (SELECT 1 FROM STRING_SPLIT(${t}, ${tsqlLiteral(sep)}) AS p WHERE LTRIM(RTRIM(p.[value])) <> N'' AND (${member}) IS NULL)`;
        return {
          value: `CASE WHEN NOT ${bad} THEN (SELECT STRING_AGG(CAST(q.[m] AS NVARCHAR(20)), N',') FROM (SELECT DISTINCT ${member} AS [m] FROM STRING_SPLIT(${t}, ${tsqlLiteral(sep)}) AS p WHERE LTRIM(RTRIM(p.[value])) <> N'') AS q) END`,
          jsonName: c.attribute,
          checks: [
            {
              cond: `${notNull} AND ${bad}`,
              reason: 'multiselect.invalid_member',
              message: m('has a member that is not an option of this choice; fix the source value.'),
            },
          ],
        };
      }
      return { value: `CAST(${s} AS NVARCHAR(MAX))`, jsonName: c.attribute, checks: [] };
    }
  }
}

function labelText(label: unknown): string {
  if (typeof label === 'string') return label;
  const l = label as { UserLocalizedLabel?: { Label?: string }; LocalizedLabels?: { Label?: string }[] } | undefined;
  return l?.UserLocalizedLabel?.Label ?? l?.LocalizedLabels?.[0]?.Label ?? '';
}

function compileLookup(
  c: TsqlColumnMapping,
  a: Record<string, unknown>,
  meta: TsqlTableMetadata,
  metadata: ReadonlyMap<string, TsqlTableMetadata>,
  keymapTargets: Map<string, KeymapTarget>,
  s: string,
  t: string,
  m: (rest: string) => string,
): Compiled {
  const lookup = c.lookup ?? {};
  // Per-target key: `{ table, key }` has one target; `{ tableFrom, keys }` picks the target per row. A key may be
  // composite, its values from several source columns (`{ key: [...], from: [...] }`); no key binds by GUID.
  const fromList = Array.isArray(c.from) ? (c.from as string[]) : [c.from as string];
  const partsOf = (key: unknown): { attr: string; source: string }[] => {
    if (key === null || key === undefined) return [];
    if (typeof key === 'string') return [{ attr: key, source: fromList[0] }];
    if (Array.isArray(key)) return key.map((k, i) => ({ attr: String(k), source: fromList[i] ?? fromList[0] }));
    const spec = key as { key?: string | string[]; from?: string | string[] };
    const keys = spec.key === undefined ? [] : Array.isArray(spec.key) ? spec.key : [spec.key];
    const froms = spec.from === undefined ? fromList : Array.isArray(spec.from) ? spec.from : [spec.from];
    return keys.map((k, i) => ({ attr: k, source: froms[i] ?? froms[0] }));
  };
  const targets: { table: string; parts: { attr: string; source: string }[] }[] = lookup.tableFrom
    ? Object.entries(lookup.keys ?? {}).map(([table, key]) => ({ table, parts: partsOf(key) }))
    : [{ table: lookup.table ?? String((a.Targets as string[] | undefined)?.[0] ?? ''), parts: partsOf(lookup.key) }];
  const nav = (table: string) => {
    const rel = (meta.ManyToOneRelationships ?? []).find(
      (r) => r.ReferencingAttribute === c.attribute && r.ReferencedEntity === table,
    );
    if (!rel)
      throw new FerryError(
        'mapping.lookup_target',
        `Lookup \`${c.attribute}\` of \`${meta.LogicalName}\` has no relationship to \`${table}\` in the metadata; check the target table or pull metadata again.`,
      );
    return rel.ReferencingEntityNavigationPropertyName;
  };
  const polymorphic =
    ((a.Targets as string[] | undefined)?.length ?? 1) > 1 ||
    a.AttributeType === 'Customer' ||
    a.AttributeType === 'Owner';
  const targetExpr = lookup.tableFrom
    ? `LOWER(LTRIM(RTRIM(CAST(r.${tsqlIdent(lookup.tableFrom)} AS NVARCHAR(200)))))`
    : tsqlLiteral(targets[0].table);
  const setCase: string[] = [];
  const predCase: string[] = [];
  const partText = (source: string) => `CAST(r.${tsqlIdent(source)} AS NVARCHAR(4000))`;
  const unsafe: string[] = [];
  for (const target of targets) {
    const tm = metadata.get(target.table);
    if (!tm)
      throw new FerryError(
        'mapping.metadata',
        `No metadata for lookup target \`${target.table}\`; pull it with \`ferry metadata pull --table ${target.table}\`.`,
      );
    const when = lookup.tableFrom ? `WHEN ${targetExpr} = ${tsqlLiteral(target.table)}` : 'WHEN 1 = 1';
    setCase.push(`${when} THEN ${tsqlLiteral(tm.EntitySetName)}`);
    if (target.parts.length === 0) {
      predCase.push(`${when} THEN LOWER(CONVERT(NVARCHAR(36), TRY_CONVERT(UNIQUEIDENTIFIER, ${s})))`);
    } else {
      const isInt = (attr: string) =>
        ['Integer', 'BigInt'].includes(String(tm.Attributes.find((x) => x.LogicalName === attr)?.AttributeType ?? ''));
      const pieces = target.parts.map((p, i) => {
        const sep = i ? "N','," : '';
        return isInt(p.attr)
          ? `${sep}N'${p.attr}=', CAST(TRY_CONVERT(BIGINT, r.${tsqlIdent(p.source)}) AS NVARCHAR(40))`
          : `${sep}N'${p.attr}=''', REPLACE(${partText(p.source)}, N'''', N''''''), N''''`;
      });
      // A composite key with any part missing binds nothing (like a NULL single-column source).
      const allPresent = target.parts.map((p) => `r.${tsqlIdent(p.source)} IS NOT NULL`).join(' AND ');
      predCase.push(`${when} AND ${allPresent} THEN CONCAT(${pieces.join(', ')})`);
      for (const p of target.parts)
        if (!isInt(p.attr)) unsafe.push(`(${when.replace('WHEN ', '')} AND ${partText(p.source)} LIKE ${UNSAFE_LIKE})`);
      if (!keymapTargets.has(target.table)) {
        keymapTargets.set(target.table, {
          table: target.table,
          entitySet: tm.EntitySetName,
          idAttribute: tm.PrimaryIdAttribute,
          keyAttributes: target.parts.map((p) => p.attr),
        });
      }
    }
  }
  const set = `CASE WHEN ${s} IS NULL THEN NULL ${setCase.join(' ')} END`;
  const pred = `CASE WHEN ${s} IS NULL THEN NULL ${predCase.join(' ')} END`;
  const navCase = targets.length === 1 ? tsqlLiteral(`${nav(targets[0].table)}@odata.bind`) : null;
  const bind = `CASE WHEN ${pred} IS NOT NULL THEN CONCAT(N'/', ${set}, N'(', ${pred}, N')') END`;
  const checks = [
    ...(lookup.tableFrom
      ? [
          {
            cond: `${s} IS NOT NULL AND ${set} IS NULL`,
            reason: 'lookup.target_unknown',
            message: m(
              `names no target of this lookup in \`${lookup.tableFrom}\`; use one of ${targets.map((x) => x.table).join(', ')}.`,
            ),
          },
        ]
      : []),
    ...(targets.some((x) => x.parts.length === 0)
      ? [
          {
            cond: `${s} IS NOT NULL AND ${set} IS NOT NULL AND ${pred} IS NULL AND TRY_CONVERT(UNIQUEIDENTIFIER, ${s}) IS NULL`,
            reason: 'guid.invalid',
            message: m('is not a GUID; a lookup without a key takes the target row id.'),
          },
        ]
      : []),
    ...(unsafe.length
      ? [
          {
            cond: `${s} IS NOT NULL AND (${unsafe.join(' OR ')})`,
            reason: 'lookup.key_unsafe',
            message: m(
              'holds a character Dataverse key URLs cannot carry (/ \\ < > * % & : ?); map the target by GUID instead.',
            ),
          },
        ]
      : []),
  ];
  return {
    value: bind,
    // Polymorphic lookups name their navigation property per target; the payload uses the first target's when
    // there is only one, otherwise the attribute with the target table (resolved by the sink step).
    jsonName: navCase ? `${nav(targets[0].table)}@odata.bind` : `${c.attribute}@odata.bind`,
    checks,
    lookup: {
      set,
      pred,
      targetName: `CASE WHEN ${s} IS NULL THEN NULL ${targets.map((x) => `${lookup.tableFrom ? `WHEN ${targetExpr} = ${tsqlLiteral(x.table)}` : 'WHEN 1 = 1'} THEN ${tsqlLiteral(x.table)}`).join(' ')} END`,
      polymorphic,
    },
  };
}

/** The first source column of a mapped column (several only for composite lookup keys). */
function first(from: string | readonly string[]): string {
  return typeof from === 'string' ? from : (from[0] ?? '');
}
