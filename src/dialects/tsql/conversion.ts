import { UsageError } from '../../core/errors.js';
import type { ColumnPlan, ConversionPlan, LookupTargetPlan } from '../../core/mapping.js';
import { MIN_DATE } from '../../core/mapping.js';
import { ConversionCompiler, type SourceType, type SqlDialect, type SynapseClassification } from '../sql-dialect.js';
import type { ConversionNames, TableName } from '../sql-steps.js';
import { mergeStatement, TSQL_CAPABILITIES, tsqlIdent, tsqlLiteral, tsqlTable } from './staging.js';

/*
 * The conversion to Dataverse column types in T-SQL (Azure SQL) from the same `ConversionPlan` the DuckDB conversion
 * executes (`planConversion` in `src/core/mapping.ts`), with the same reason codes in the same order (first failing
 * column wins, in mapping order; a blank own key is `key.missing`). The statements come from the shared
 * `ConversionCompiler` (src/dialects/sql-dialect.ts) through this dialect's hooks; T-SQL overrides the
 * classification step, whose shape differs: values are read as text, rows are ranked in the same statement, and the
 * payload is built with `FOR JSON PATH` once the outcome is known (T-SQL has no `TRUE`/`FALSE`, no `NULLS LAST` and
 * no JSON string functions the DuckDB payload builder uses).
 */

const NOW = 'CONVERT(NVARCHAR(40), SYSUTCDATETIME(), 127)';
const UNSAFE = "N'%[/\\<>*%&:?]%'";
const GUID_LIKE = `'[0-9a-fA-F][0-9a-fA-F][0-9a-fA-F][0-9a-fA-F][0-9a-fA-F][0-9a-fA-F][0-9a-fA-F][0-9a-fA-F]-[0-9a-fA-F][0-9a-fA-F][0-9a-fA-F][0-9a-fA-F]-[0-9a-fA-F][0-9a-fA-F][0-9a-fA-F][0-9a-fA-F]-[0-9a-fA-F][0-9a-fA-F][0-9a-fA-F][0-9a-fA-F]-[0-9a-fA-F][0-9a-fA-F][0-9a-fA-F][0-9a-fA-F][0-9a-fA-F][0-9a-fA-F][0-9a-fA-F][0-9a-fA-F][0-9a-fA-F][0-9a-fA-F][0-9a-fA-F][0-9a-fA-F]'`;

const q = tsqlIdent;
// Staging tables use one-part names (the connection's default schema): `SELECT ... INTO` then stays within what
// common T-SQL tooling parses (node-sql-parser rejects two-part names after INTO).
const T = (n: TableName) => (n.schema ? tsqlTable(n.schema, n.table) : q(n.table));
/** Source value as text (datetime2 converts in ODBC canonical form). */
const text = (source: string) => `CONVERT(NVARCHAR(MAX), s.${q(source)})`;
/** Trimmed text, NULL when NULL or blank (spaces only, like the reference converter). */
const trimmed = (source: string) => `NULLIF(LTRIM(RTRIM(${text(source)})), N'')`;

/**
 * Text → DATETIMEOFFSET: ISO 8601 (`T`, `Z`, `±hh:mm`; style 127) or the ODBC form a DATETIME2 column converts to
 * (`yyyy-mm-dd hh:mi:ss.fffffff`, the default style). NULL when neither parses (`date.unparsable`).
 */
function dateTimeOffset(text: string): string {
  return `COALESCE(TRY_CONVERT(DATETIMEOFFSET(7), ${text}, 127), TRY_CONVERT(DATETIMEOFFSET(7), ${text}))`;
}

/** Per column: expressions over the staged row `s` (prepare) and the reason / JSON value over those aliases. */
interface ColumnSql {
  readonly prepare: [alias: string, sql: string][];
  readonly reason: string;
  /** Payload members: JSON property name → value expression (NULL = omitted, or `null` for nullMeans clear). */
  readonly members: { name: string; value: string; clear: boolean }[];
  readonly keyText?: string;
  readonly lookup?: { readonly set: string; readonly pred: string; readonly target: string };
}

/**
 * The T-SQL dialect (Azure SQL, SQL Server): its SQL tokens for the shared `ConversionCompiler`. It has no local
 * classification builders (`conversion`): the T-SQL classification is `TsqlConversionCompiler.classifySynapse`.
 */
export const tsqlDialect: SqlDialect = {
  name: 'tsql',
  capabilities: {
    maxParameters: TSQL_CAPABILITIES.maxParameters,
    maxRowsPerInsertValues: TSQL_CAPABILITIES.maxRowsPerInsertValues,
    readsParquet: false,
    listLambdas: false,
    regex: false,
    jsonPayload: 'for-json-path',
  },
  ident: tsqlIdent,
  literal: tsqlLiteral,
  bool: (value) => (value ? '1' : '0'),
  descNullsLast: (expr) => `CASE WHEN ${expr} IS NULL THEN 1 ELSE 0 END, ${expr} DESC`,
  param: (name) => `@${name}`,
  selectInto: (target, list, rest) => [`DROP TABLE IF EXISTS ${target}`, `SELECT ${list} INTO ${target} ${rest}`],
  upsert: (o) => mergeStatement(o),
  nowText: NOW,
  nowTimestamp: 'SYSUTCDATETIME()',
  textOf: (expr, maxLength) => `CONVERT(NVARCHAR(${maxLength ?? 'MAX'}), ${expr})`,
  length: (expr) => `LEN(${expr})`,
  rowJson: (alias) => `(SELECT ${alias}.* FOR JSON PATH, WITHOUT_ARRAY_WRAPPER)`,
  arrivalRowNumber: 'ROW_NUMBER() OVER (ORDER BY (SELECT NULL))',
  tryGuid: (expr) => `TRY_CONVERT(UNIQUEIDENTIFIER, ${expr})`,
  nullText: 'CAST(NULL AS NVARCHAR(MAX))',
  classifyType: classifyTsqlType,
  describeTableSql: (table) =>
    `SELECT [COLUMN_NAME] AS [name], [DATA_TYPE] AS [type] FROM INFORMATION_SCHEMA.COLUMNS WHERE [TABLE_NAME] = ${tsqlLiteral(table)} ORDER BY [ORDINAL_POSITION]`,
  tableExistsSql: (table) =>
    `SELECT COUNT(*) AS [n] FROM INFORMATION_SCHEMA.TABLES WHERE [TABLE_NAME] = ${tsqlLiteral(table)}`,
  castText: (expr) => `CONVERT(NVARCHAR(MAX), ${expr})`,
  // `+` yields NULL when a part is NULL (CONCAT_NULL_YIELDS_NULL is always on in Azure SQL).
  concat: (parts) => (parts.length ? parts.map((p) => `(${p})`).join(' + ') : "N''"),
  concatSkipNulls: (separator, parts) =>
    separator === '' ? `CONCAT(${parts.join(', ')})` : `CONCAT_WS(${tsqlLiteral(separator)}, ${parts.join(', ')})`,
  createTableAs: (name, select) =>
    `DROP TABLE IF EXISTS ${tsqlIdent(name)};\nSELECT * INTO ${tsqlIdent(name)} FROM (${select}) AS [__select]`,
  createViewAs: (name, select) => `CREATE OR ALTER VIEW ${tsqlIdent(name)} AS\n${select}`,
  appliedVersionsRelation: (source) => {
    if (source.kind === 'query') return `(${source.sql})`;
    if (source.kind === 'table') return tsqlIdent(source.name);
    throw new UsageError(
      'Azure SQL reads applied versions from a table (`ferry.applied_versions`), not a Parquet file.',
    );
  },
  saveAppliedVersionsSql: () => {
    throw new UsageError(
      'Azure SQL saves applied versions with the Synapse conversion (`compileSynapse(...).saveVersions`), not to a Parquet file.',
    );
  },
};

/** Classifies a T-SQL type name (`INFORMATION_SCHEMA.COLUMNS.DATA_TYPE`). */
export function classifyTsqlType(typeText: string): SourceType {
  const t = typeText.trim().toLowerCase();
  if (/^n?(var)?char|^n?text$/.test(t)) return { kind: 'text' };
  if (['bigint', 'int', 'smallint', 'tinyint'].includes(t)) return { kind: 'integer' };
  if (t === 'decimal' || t === 'numeric' || t === 'money' || t === 'smallmoney') return { kind: 'decimal' };
  if (t === 'float' || t === 'real') return { kind: 'float' };
  if (t === 'bit') return { kind: 'boolean' };
  if (t === 'datetimeoffset') return { kind: 'timestamptz' };
  if (t === 'datetime2' || t === 'datetime' || t === 'smalldatetime') return { kind: 'timestamp' };
  if (t === 'date') return { kind: 'date' };
  if (t === 'uniqueidentifier') return { kind: 'uuid' };
  return { kind: 'other' };
}

/**
 * The conversion compiler for T-SQL: the shared compiler's statements (key maps, lineage, rejects, sink, applied
 * versions) through the T-SQL hooks, and its own classification — staged values are read as text (`CONVERT`), rows
 * are ranked in the same statement, and the payload is built with `FOR JSON PATH` once the outcome is known.
 */
export class TsqlConversionCompiler extends ConversionCompiler {
  /** T-SQL reads the copied columns as they are (its classification converts them to text itself). */
  protected override lineageColumns(): string {
    return 't.*';
  }

  /** The raw copy holds the id as `UNIQUEIDENTIFIER` already. */
  protected override keymapId(id: string): string {
    return id;
  }

  protected override classifySynapse(plan: ConversionPlan, names: ConversionNames): SynapseClassification {
    const a = (c: ColumnPlan, n: string) => `c${c.index}_${n}`;
    const built = plan.columns.map((c) => ({ plan: c, sql: column(c, (n) => a(c, n)) }));
    const keys = plan.key.map((k) => ({ part: k, sql: built[k.column]!.sql }));
    const blank = (k: (typeof keys)[number]) => `${trimmed(k.part.source)} IS NULL`;
    const anyBlank = keys.map((k) => `(${blank(k)})`).join(' OR ');
    const join = (render: (k: (typeof keys)[number]) => string) =>
      `CONCAT(${keys.map((k, i) => `${i ? "N',', " : ''}${tsqlLiteral(`${k.part.attribute}=`)}, ${render(k)}`).join(', ')})`;
    const keyText = (k: (typeof keys)[number]) => k.sql.keyText ?? 'CAST(NULL AS NVARCHAR(MAX))';
    const readable = join(keyText);
    const predicate = join((k) =>
      k.part.literal === 'string' ? `CONCAT(N'''', REPLACE(${keyText(k)}, N'''', N''''''), N'''')` : keyText(k),
    );
    const unsafe = keys.filter((k) => k.part.literal === 'string').map((k) => `${keyText(k)} LIKE ${UNSAFE}`);
    const version = `CONVERT(NVARCHAR(40), TRY_CONVERT(DATETIME2(6), SWITCHOFFSET(${dateTimeOffset(trimmed(plan.changeTimestamp))}, '+00:00')), 126)`;
    const prepare = built.flatMap((b) => b.sql.prepare.map(([alias, sql]) => `${sql} AS ${q(alias)}`));
    const reasons = built.map((b) => `${b.sql.reason} AS ${q(`r${b.plan.index}`)}`);
    const firstBlank = keys.map((k) => `WHEN ${blank(k).replaceAll('s.', 'x.')} THEN ${k.part.column}`).join(' ');
    // Aliases the sink step reads back from the work table: key texts and lookup targets.
    const carried = [
      ...keys.map((k) => (k.sql.keyText ?? '').replace(/^p\./, '')),
      ...built.flatMap((b) => (b.sql.lookup ? [b.sql.lookup.set, b.sql.lookup.pred, b.sql.lookup.target].map(q) : [])),
    ].filter((x) => x !== '');
    const reasonOrder = built.map((b) => `WHEN k.${q(`r${b.plan.index}`)} IS NOT NULL THEN ${b.plan.index}`).join(' ');
    const clearMembers = built.filter((b) => b.plan.inPayload).flatMap((b) => b.sql.members.filter((m) => m.clear));
    const omitMembers = built.filter((b) => b.plan.inPayload).flatMap((b) => b.sql.members.filter((m) => !m.clear));
    const forJson = (members: typeof clearMembers, includeNulls: boolean) =>
      members.length
        ? `(SELECT ${members.map((m) => `k.${q(m.value)} AS ${q(m.name)}`).join(', ')} FOR JSON PATH, WITHOUT_ARRAY_WRAPPER${includeNulls ? ', INCLUDE_NULL_VALUES' : ''})`
        : "N'{}'";
    // The two halves (nullMeans clear: nulls kept; omit: nulls dropped) are merged by cutting their braces.
    const inner = (json: string) => `SUBSTRING(${json}, 2, LEN(${json}) - 2)`;
    const payload = `CONCAT(N'{', ${inner(forJson(clearMembers, true))}, CASE WHEN LEN(${forJson(clearMembers, true)}) > 2 AND LEN(${forJson(omitMembers, false)}) > 2 THEN N',' END, ${inner(forJson(omitMembers, false))}, N'}')`;
    const memberValues = built.flatMap((b) => b.sql.members.map((m) => m.value));
    const work = names.work;
    const p = `${T(names.rows)}`;
    const classify = [
      `DROP TABLE IF EXISTS ${T(work)}`,
      `WITH p AS (SELECT s.[__row_id], s.[__source_file], s.[__row_number], ${version} AS [__version], ${prepare.join(', ')} FROM ${p} AS s), ` +
        `k AS (SELECT p.*, CASE WHEN ${anyBlank.replaceAll('s.', 'x.')} THEN NULL ELSE ${readable} END AS [__key], CASE WHEN ${anyBlank.replaceAll('s.', 'x.')} THEN NULL ELSE ${predicate} END AS [__key_predicate], ${unsafe.length ? `CASE WHEN ${unsafe.join(' OR ')} THEN 0 ELSE 1 END` : '1'} AS [__key_safe], ${reasons.join(', ')}, CASE ${firstBlank} END AS [__blank_column] FROM p INNER JOIN ${p} AS x ON x.[__row_id] = p.[__row_id]), ` +
        `r AS (SELECT k.*, COALESCE(k.[__blank_column], CASE ${reasonOrder} END) AS [__reason_column], COALESCE(CASE WHEN k.[__blank_column] IS NOT NULL THEN N'key.missing' END, ${[...built.map((b) => `k.${q(`r${b.plan.index}`)}`), 'NULL'].join(', ')}) AS [__reason], ROW_NUMBER() OVER (PARTITION BY k.[__key_predicate] ORDER BY ${this.dialect.descNullsLast('k.[__version]')}, k.[__row_id] DESC) AS [__rank] FROM k) ` +
        `SELECT r.[__row_id], r.[__source_file], r.[__row_number], r.[__key], r.[__key_predicate], r.[__key_safe], r.[__version], r.[__reason], r.[__reason_column], ` +
        // Same outcome order as the DuckDB compiler: reject (no key) → superseded → stale → reject → ok.
        `CASE WHEN r.[__key_predicate] IS NULL THEN N'reject' WHEN r.[__rank] > 1 THEN N'superseded' WHEN av.[version] IS NOT NULL AND r.[__version] < av.[version] THEN N'stale' WHEN r.[__reason] IS NOT NULL THEN N'reject' ELSE N'ok' END AS [__outcome], ` +
        `${[...new Set([...memberValues.map(q), ...carried])].map((v) => `r.${v}, `).join('')}` +
        `CAST(NULL AS NVARCHAR(MAX)) AS [__payload] INTO ${T(work)} FROM r LEFT JOIN ${T(names.appliedVersions)} AS av ON av.[pipeline] = ${this.dialect.param('pipeline')} AND av.[key] = r.[__key_predicate]`,
      // The payload is built once the outcome is known, only for rows that will be sent.
      `UPDATE k SET k.[__payload] = ${payload} FROM ${T(work)} AS k WHERE k.[__outcome] = N'ok'`,
    ];
    const converted = [
      `DROP TABLE IF EXISTS ${T(names.converted)}`,
      `SELECT [__row_id], [__source_file], [__row_number], [__key], [__key_predicate], CAST([__key_safe] AS BIT) AS [__key_safe], [__version], [__payload] INTO ${T(names.converted)} FROM ${T(work)} WHERE [__outcome] = N'ok'`,
    ];
    const member = (c: ColumnPlan) => built[c.index]!.sql;
    return {
      classify,
      converted,
      sink: {
        key: (i) => (keys[i]!.sql.keyText ?? 'NULL').replace(/^p\./, 'w.'),
        value: (c) => `w.${q(member(c).members[0]!.value)}`,
        lookup: (c) => {
          const l = member(c).lookup!;
          return { set: `w.${q(l.set)}`, pred: `w.${q(l.pred)}`, target: `w.${q(l.target)}` };
        },
      },
    };
  }
}

/** The T-SQL conversion compiler. */
export const tsqlConversion = new TsqlConversionCompiler(tsqlDialect);

/** The per-rule SQL; mirrors `src/core/reference-converter.ts` rule by rule. */
function column(c: ColumnPlan, alias: (n: string) => string): ColumnSql {
  const src = c.sources[0]!;
  const tt = trimmed(src);
  const v = alias('v');
  const ref = (n: string) => `p.${q(alias(n))}`;
  const clear = c.nullMeans === 'clear';
  const value = (alias: string): ColumnSql['members'] => [{ name: c.attribute, value: alias, clear }];
  switch (c.rule) {
    case 'string': {
      const t = text(src);
      return {
        prepare: [[v, t]],
        reason: `CASE WHEN LEN(${ref('v')} + N'x') - 1 > ${c.maxLength} THEN N'string.too_long' END`,
        members: value(v),
        keyText: ref('v'),
      };
    }
    case 'integer': {
      const d = `TRY_CONVERT(DECIMAL(38, 10), ${tt})`;
      return {
        prepare: [
          [alias('t'), tt],
          [
            v,
            `CASE WHEN ${d} BETWEEN ${c.min} AND ${c.max} AND ${d} = ROUND(${d}, 0) THEN CAST(${d} AS DECIMAL(38, 0)) END`,
          ],
          [
            alias('key'),
            `CONVERT(NVARCHAR(40), CASE WHEN ${d} BETWEEN ${c.min} AND ${c.max} THEN CAST(${d} AS DECIMAL(38, 0)) END)`,
          ],
        ],
        reason: `CASE WHEN ${ref('t')} IS NULL THEN NULL WHEN TRY_CONVERT(FLOAT, ${ref('t')}) IS NULL THEN N'number.unparsable' WHEN ${ref('t')} LIKE N'%.%[1-9]%' THEN N'number.precision' WHEN ${ref('v')} IS NULL THEN N'number.out_of_range' END`,
        members: value(v),
        keyText: ref('key'),
      };
    }
    case 'decimal': {
      const d = `TRY_CONVERT(DECIMAL(38, 10), ${tt})`;
      return {
        prepare: [
          [alias('t'), tt],
          [alias('d'), d],
          [
            v,
            `CASE WHEN ${d} BETWEEN ${c.min} AND ${c.max} AND ${d} = ROUND(${d}, ${c.precision}) THEN CAST(${d} AS DECIMAL(38, ${c.precision})) END`,
          ],
        ],
        reason: `CASE WHEN ${ref('t')} IS NULL THEN NULL WHEN TRY_CONVERT(FLOAT, ${ref('t')}) IS NULL THEN N'number.unparsable' WHEN ${ref('d')} IS NOT NULL AND ${ref('d')} <> ROUND(${ref('d')}, ${c.precision}) THEN N'number.precision' WHEN ${ref('v')} IS NULL THEN N'number.out_of_range' END`,
        members: value(v),
      };
    }
    case 'double': {
      const f = `TRY_CONVERT(FLOAT, ${tt})`;
      return {
        prepare: [
          [alias('t'), tt],
          [v, `CASE WHEN ${f} BETWEEN ${c.min} AND ${c.max} THEN ${f} END`],
        ],
        reason: `CASE WHEN ${ref('t')} IS NULL THEN NULL WHEN TRY_CONVERT(FLOAT, ${ref('t')}) IS NULL THEN N'number.unparsable' WHEN ${ref('v')} IS NULL THEN N'number.out_of_range' END`,
        members: value(v),
      };
    }
    case 'boolean': {
      const l = `LOWER(${tt})`;
      return {
        prepare: [
          [alias('t'), tt],
          [
            v,
            `CASE WHEN ${l} IN (N'true', N'1', N'yes', N'y') THEN CAST(1 AS BIT) WHEN ${l} IN (N'false', N'0', N'no', N'n') THEN CAST(0 AS BIT) END`,
          ],
        ],
        reason: `CASE WHEN ${ref('t')} IS NOT NULL AND ${ref('v')} IS NULL THEN N'boolean.invalid' END`,
        members: value(v),
      };
    }
    case 'datetime': {
      // Staged values are text (a naive one is read as +00:00: sourceTimeZone UTC, checked at compile time).
      // UserLocal: the UTC instant. TimeZoneIndependent: the wall clock as written (DATETIMEOFFSET → DATETIME2
      // keeps the local part and drops the offset). DateOnly: the calendar date as written.
      if (c.sourceTimeZone !== 'UTC') {
        throw new UsageError(
          `Column \`${c.attribute}\`: sourceTimeZone \`${c.sourceTimeZone}\` is not supported by the T-SQL conversion (serverless SQL's AT TIME ZONE takes Windows zone names); stage the values with their offset, or use \`UTC\`.`,
        );
      }
      const dto = dateTimeOffset(tt);
      const wall = `CAST(${dto} AS DATETIME2(7))`;
      const out =
        c.behavior === 'DateOnly'
          ? `CONVERT(NVARCHAR(10), CAST(${dto} AS DATE), 23)`
          : c.behavior === 'TimeZoneIndependent'
            ? `CONCAT(CONVERT(NVARCHAR(19), ${wall}, 126), N'Z')`
            : `CONCAT(CONVERT(NVARCHAR(19), SWITCHOFFSET(${dto}, '+00:00'), 126), N'Z')`;
      const cmp =
        c.behavior === 'DateOnly'
          ? `CAST(${dto} AS DATE)`
          : c.behavior === 'TimeZoneIndependent'
            ? wall
            : `SWITCHOFFSET(${dto}, '+00:00')`;
      return {
        prepare: [
          [alias('t'), tt],
          [alias('min'), `CASE WHEN ${cmp} < '${MIN_DATE}' THEN 1 ELSE 0 END`],
          [v, `CASE WHEN ${cmp} >= '${MIN_DATE}' THEN ${out} END`],
        ],
        reason: `CASE WHEN ${ref('t')} IS NULL THEN NULL WHEN ${ref('min')} = 1 THEN N'date.before_min' WHEN ${ref('v')} IS NULL THEN N'date.unparsable' END`,
        members: value(v),
      };
    }
    case 'guid':
      return {
        prepare: [
          [alias('t'), tt],
          [v, `CASE WHEN ${tt} LIKE ${GUID_LIKE} THEN LOWER(${tt}) END`],
        ],
        reason: `CASE WHEN ${ref('t')} IS NOT NULL AND ${ref('v')} IS NULL THEN N'guid.invalid' END`,
        members: value(v),
      };
    case 'choice': {
      const byValue = `CASE WHEN ${tt} NOT LIKE N'%[^0-9+-]%' AND LEN(${tt}) <= 12 THEN CASE TRY_CONVERT(BIGINT, ${tt}) ${c.options.map((o) => `WHEN ${o.value} THEN ${o.value}`).join(' ')} END END`;
      const byLabel = `CASE LOWER(${tt}) ${c.options.map((o) => `WHEN ${tsqlLiteral(o.label.trim().toLowerCase())} THEN ${o.value}`).join(' ')} END`;
      const resolved = c.mode === 'value' ? byValue : c.mode === 'label' ? byLabel : `COALESCE(${byValue}, ${byLabel})`;
      const numeric = `${ref('t')} NOT LIKE N'%[^0-9+-]%'`;
      const unknown =
        c.mode === 'value'
          ? `N'choice.unknown_value'`
          : c.mode === 'label'
            ? `N'choice.unknown_label'`
            : `CASE WHEN ${numeric} THEN N'choice.unknown_value' ELSE N'choice.unknown_label' END`;
      const state = c.stateCheck
        ? ` WHEN ${ref('v')} IS NOT NULL AND p.${q(`c${c.stateCheck.stateColumn}_v`)} IS NOT NULL AND ISNULL(CASE ${ref('v')} ${c.stateCheck.stateOf.map(([s, st]) => `WHEN ${s} THEN ${st}`).join(' ')} END, -1) <> p.${q(`c${c.stateCheck.stateColumn}_v`)} THEN N'status.invalid_for_state'`
        : '';
      return {
        prepare: [
          [alias('t'), tt],
          [v, c.options.length ? resolved : 'CAST(NULL AS INT)'],
        ],
        reason: `CASE WHEN ${ref('t')} IS NULL THEN NULL WHEN ${ref('v')} IS NULL THEN ${unknown}${state} END`,
        members: value(v),
      };
    }
    case 'multiselect': {
      const sep = tsqlLiteral(c.separator);
      const member = (x: string) => {
        const bv = `CASE WHEN ${x} NOT LIKE N'%[^0-9+-]%' AND LEN(${x}) <= 12 THEN CASE TRY_CONVERT(BIGINT, ${x}) ${c.options.map((o) => `WHEN ${o.value} THEN ${o.value}`).join(' ')} END END`;
        const bl = `CASE LOWER(${x}) ${c.options.map((o) => `WHEN ${tsqlLiteral(o.label.trim().toLowerCase())} THEN ${o.value}`).join(' ')} END`;
        return c.mode === 'value' ? bv : c.mode === 'label' ? bl : `COALESCE(${bv}, ${bl})`;
      };
      const item = `LTRIM(RTRIM(m.[value]))`;
      const split = `STRING_SPLIT(${text(src)}, ${sep}, 1) AS m`;
      return {
        prepare: [
          [alias('t'), text(src)],
          [
            alias('bad'),
            `CASE WHEN EXISTS (SELECT 1 FROM ${split} WHERE ${item} <> N'' AND (${member(item)}) IS NULL) THEN 1 ELSE 0 END`,
          ],
          // Source order, first occurrence of each member kept.
          [
            v,
            // Source order, first occurrence of each member kept: an ordered FOR JSON list of integers, unwrapped.
            `NULLIF(REPLACE(REPLACE(REPLACE(REPLACE((SELECT u.[member] FROM (SELECT ${member(item)} AS [member], MIN(m.[ordinal]) AS [first] FROM ${split} WHERE ${item} <> N'' GROUP BY ${member(item)}) AS u ORDER BY u.[first] FOR JSON PATH), N'{"member":', N''), N'}', N''), N'[', N''), N']', N''), N'')`,
          ],
        ],
        reason: `CASE WHEN ${ref('t')} IS NOT NULL AND ${ref('bad')} = 1 THEN N'multiselect.invalid_member' END`,
        members: value(v),
      };
    }
    case 'lookup':
      return lookupColumn(c, alias, ref);
  }
}

function lookupColumn(
  c: ColumnPlan & { rule: 'lookup' },
  alias: (n: string) => string,
  ref: (n: string) => string,
): ColumnSql {
  const clear = c.nullMeans === 'clear';
  const chosen = c.tableFrom ? `LOWER(${trimmed(c.tableFrom)})` : tsqlLiteral(c.targets[0]!.table);
  const per = c.targets.map((t) => targetSql(t));
  const when = (t: LookupTargetPlan) => (c.tableFrom ? `${chosen} = ${tsqlLiteral(t.table)}` : '1 = 1');
  const allBlank = per.map((p) => `(${p.blank})`).join(' AND ');
  const pick = (f: (p: (typeof per)[number]) => string) =>
    `CASE ${c.targets.map((t, i) => `WHEN ${when(t)} THEN ${f(per[i]!)}`).join(' ')} END`;
  const reason = pick((p) => p.reason);
  const unknown = c.tableFrom
    ? `WHEN ${chosen} IS NULL AND ${allBlank} THEN NULL WHEN ${chosen} IS NULL OR ${chosen} NOT IN (${c.targets.map((t) => tsqlLiteral(t.table)).join(', ')}) THEN N'lookup.target_unknown' `
    : '';
  const members = c.targets.map((t, i) => ({
    name: `${t.navigationProperty}@odata.bind`,
    value: alias(`b${i}`),
    clear: clear && i === 0,
  }));
  return {
    prepare: [
      [alias('set'), `CASE WHEN NOT (${allBlank}) THEN ${pick((p) => tsqlLiteral(p.target.entitySetName))} END`],
      [alias('pred'), `CASE WHEN NOT (${allBlank}) THEN ${pick((p) => p.pred)} END`],
      [alias('target'), `CASE WHEN NOT (${allBlank}) THEN ${pick((p) => tsqlLiteral(p.target.table))} END`],
      [alias('reason'), unknown ? `CASE ${unknown}ELSE ${reason} END` : reason],
      ...c.targets.map(
        (t, i) =>
          [
            alias(`b${i}`),
            `CASE WHEN ${when(t)} AND NOT (${per[i]!.blank}) AND (${per[i]!.reason}) IS NULL THEN CONCAT(N'/', ${tsqlLiteral(t.entitySetName)}, N'(', ${per[i]!.pred}, N')') END`,
          ] as [string, string],
      ),
    ],
    reason: ref('reason'),
    members,
    lookup: { set: alias('set'), pred: alias('pred'), target: alias('target') },
  };
}

function targetSql(t: LookupTargetPlan): { target: LookupTargetPlan; blank: string; reason: string; pred: string } {
  if (t.key === null) {
    const g = trimmed(t.guidSource!);
    return {
      target: t,
      blank: `${g} IS NULL`,
      reason: `CASE WHEN ${g} IS NOT NULL AND ${g} NOT LIKE ${GUID_LIKE} THEN N'guid.invalid' END`,
      pred: `LOWER(${g})`,
    };
  }
  const parts = t.key.map((k) => {
    const raw = text(k.source);
    const tt = trimmed(k.source);
    return k.literal === 'string'
      ? {
          blank: `${tt} IS NULL`,
          bad: '1 = 0',
          unsafe: `${raw} LIKE ${UNSAFE}`,
          lit: `CONCAT(${tsqlLiteral(`${k.attribute}=`)}, N'''', REPLACE(${raw}, N'''', N''''''), N'''')`,
        }
      : {
          blank: `${tt} IS NULL`,
          bad: `(${tt} LIKE N'%[^0-9+-]%' OR LEN(${tt}) > 38)`,
          unsafe: '1 = 0',
          lit: `CONCAT(${tsqlLiteral(`${k.attribute}=`)}, CONVERT(NVARCHAR(40), TRY_CONVERT(DECIMAL(38, 0), ${tt})))`,
        };
  });
  const blank = parts.map((p) => `(${p.blank})`).join(' AND ');
  const reason = `CASE WHEN ${parts.map((p) => `(${p.blank})`).join(' OR ')} THEN N'key.missing' WHEN ${parts.map((p) => p.bad).join(' OR ')} THEN N'number.unparsable' WHEN ${parts.map((p) => p.unsafe).join(' OR ')} THEN N'lookup.key_unsafe' END`;
  return {
    target: t,
    blank,
    reason,
    pred: `CONCAT(${parts.map((p, i) => `${i ? "N',', " : ''}${p.lit}`).join(', ')})`,
  };
}
