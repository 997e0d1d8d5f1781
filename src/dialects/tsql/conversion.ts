import { UsageError } from '../../core/errors.js';
import type { ColumnPlan, ConversionPlan, LookupTargetPlan } from '../../core/mapping.js';
import { MIN_DATE } from '../../core/mapping.js';
import type { ConversionNames, KeymapTarget, TableName } from '../sql-steps.js';
import { mergeStatement, TSQL_CAPABILITIES, tsqlIdent, tsqlLiteral, tsqlTable } from './staging.js';

/**
 * The conversion to Dataverse column types compiled to T-SQL (Azure SQL) from the same `ConversionPlan` the DuckDB
 * conversion executes (`planConversion` in `src/core/mapping.ts`), with the same reason codes in the same order
 * (first failing column wins, in mapping order; a blank own key is `key.missing`). Rows are classified set-based
 * into a work table; the payload is built with `FOR JSON PATH`.
 *
 * The generic `compileConversion` of `src/dialects/sql-dialect.ts` cannot be reused for T-SQL as it stands: it writes
 * `TRUE`/`FALSE`, `NULLS LAST` and concatenated JSON, none of which T-SQL has; this compiler follows its steps.
 */

/** The compiled conversion, statement lists in run order. */
export interface CompiledConversion {
  /** Adds lineage (`__row_id`, `__row_number`) to the copied rows. */
  readonly lineage: string[];
  /** Builds the work table: outcome, reason, reason column, key, version and payload per row. */
  readonly classify: string[];
  /** Builds `converted` (rows to send: outcome `ok`). */
  readonly converted: string[];
  /** Inserts the rejected rows into the error store; parameters `@run_id`, `@pipeline`. */
  readonly rejects: string[];
  /** Rows `(outcome, n)`. */
  readonly counts: string;
  /**
   * Saves the version of every row sent as the applied version of its key (run after the sink succeeded), so an
   * older version arriving later is skipped as `stale`; an equal one is sent again. Unlike the local runner (which
   * knows each accepted row and skips equal versions too), the Copy activity does not say which rows Dataverse
   * accepted, so here an equal version must be re-sent for a repeated window to converge.
   */
  readonly saveVersions: string[];
  /** Builds the sink table for the Copy activity and rejects rows whose lookup target is not in the key map. */
  readonly sink: string[];
  /** The query the Copy activity reads. */
  readonly sinkQuery: string;
  readonly keymapTargets: KeymapTarget[];
}

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

/** Compiles a conversion plan to T-SQL. */
export function compileConversion(plan: ConversionPlan, names: ConversionNames): CompiledConversion {
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
      `r AS (SELECT k.*, COALESCE(k.[__blank_column], CASE ${reasonOrder} END) AS [__reason_column], COALESCE(CASE WHEN k.[__blank_column] IS NOT NULL THEN N'key.missing' END, ${[...built.map((b) => `k.${q(`r${b.plan.index}`)}`), 'NULL'].join(', ')}) AS [__reason], ROW_NUMBER() OVER (PARTITION BY k.[__key_predicate] ORDER BY CASE WHEN k.[__version] IS NULL THEN 1 ELSE 0 END, k.[__version] DESC, k.[__row_id] DESC) AS [__rank] FROM k) ` +
      `SELECT r.[__row_id], r.[__source_file], r.[__row_number], r.[__key], r.[__key_predicate], r.[__key_safe], r.[__version], r.[__reason], r.[__reason_column], ` +
      // Same outcome order as the DuckDB compiler: reject (no key) → superseded → stale → reject → ok.
      `CASE WHEN r.[__key_predicate] IS NULL THEN N'reject' WHEN r.[__rank] > 1 THEN N'superseded' WHEN av.[version] IS NOT NULL AND r.[__version] < av.[version] THEN N'stale' WHEN r.[__reason] IS NOT NULL THEN N'reject' ELSE N'ok' END AS [__outcome], ` +
      `${[...new Set([...memberValues.map(q), ...carried])].map((v) => `r.${v}, `).join('')}` +
      `CAST(NULL AS NVARCHAR(MAX)) AS [__payload] INTO ${T(work)} FROM r LEFT JOIN ${T(names.appliedVersions)} AS av ON av.[pipeline] = @pipeline AND av.[key] = r.[__key_predicate]`,
    // The payload is built once the outcome is known, only for rows that will be sent.
    `UPDATE k SET k.[__payload] = ${payload} FROM ${T(work)} AS k WHERE k.[__outcome] = N'ok'`,
  ];
  const converted = [
    `DROP TABLE IF EXISTS ${T(names.converted)}`,
    `SELECT [__row_id], [__source_file], [__row_number], [__key], [__key_predicate], CAST([__key_safe] AS BIT) AS [__key_safe], [__version], [__payload] INTO ${T(names.converted)} FROM ${T(work)} WHERE [__outcome] = N'ok'`,
  ];
  const rejects = [
    `INSERT INTO ${T(names.rejects)} ([run_id], [pipeline], [stage], [reason], [message], [key], [source_file], [row_number], [row_json], [created_at]) ` +
      `SELECT @run_id, @pipeline, N'convert-to-dataverse', c.[__reason], CONCAT(N'Column \`', CASE c.[__reason_column] ${plan.columns.map((col) => `WHEN ${col.index} THEN ${tsqlLiteral(col.attribute)}`).join(' ')} END, N'\` (source \`', CASE c.[__reason_column] ${plan.columns.map((col) => `WHEN ${col.index} THEN ${tsqlLiteral(col.sources.join(', '))}`).join(' ')} END, N'\`) was rejected: ', c.[__reason], N'; fix the source row or the mapping, then replay it.'), c.[__key], c.[__source_file], c.[__row_number], (SELECT s.* FOR JSON PATH, WITHOUT_ARRAY_WRAPPER), ${NOW} ` +
      `FROM ${T(work)} AS c INNER JOIN ${p} AS s ON s.[__row_id] = c.[__row_id] WHERE c.[__outcome] = N'reject'`,
  ];
  const counts = `SELECT [__outcome] AS [outcome], COUNT(*) AS [n] FROM ${T(work)} GROUP BY [__outcome]`;
  const fresh = { schema: '', table: `${names.work.table}_versions` };
  const saveVersions = [
    `DROP TABLE IF EXISTS ${T(fresh)}`,
    `SELECT @pipeline AS [pipeline], c.[__key_predicate] AS [key], MAX(c.[__version]) AS [version], @run_id AS [run_id] INTO ${T(fresh)} FROM ${T(names.converted)} AS c INNER JOIN ${T(names.sink)} AS s ON s.[__row_id] = c.[__row_id] WHERE c.[__version] IS NOT NULL GROUP BY c.[__key_predicate]`,
    mergeStatement({
      target: names.appliedVersions,
      source: fresh,
      keys: ['pipeline', 'key'],
      columns: ['version', 'run_id'],
      versionColumn: 'version',
    }),
  ];

  // Sink for the Copy activity: lookups by alternate key become GUIDs from the key map (the Copy sink cannot bind
  // `@odata.bind` by key); a lookup whose target is not in the map is rejected as `lookup.target_missing`.
  const keymapTargets = new Map<string, KeymapTarget>();
  const sinkCols: string[] = [];
  const sinkNames: string[] = [];
  const joins: string[] = [];
  const missing: string[] = [];
  for (const k of keys) {
    sinkCols.push(`${(k.sql.keyText ?? 'NULL').replace(/^p\./, 'w.')} AS ${q(k.part.attribute)}`);
    sinkNames.push(k.part.attribute);
  }
  for (const b of built) {
    if (!b.plan.inPayload) continue;
    const c = b.plan;
    if (c.rule === 'lookup') {
      for (const t of c.targets) {
        if (t.key && !keymapTargets.has(t.table)) {
          keymapTargets.set(t.table, {
            table: t.table,
            entitySet: t.entitySetName,
            idAttribute: '',
            keyAttributes: t.key.map((x) => x.attribute),
          });
        }
      }
      const km = `km${c.index}`;
      const set = `w.${q(b.sql.lookup!.set)}`;
      const pred = `w.${q(b.sql.lookup!.pred)}`;
      joins.push(
        `LEFT JOIN ${T(names.keymap)} AS ${km} ON ${km}.[entity_set] = ${set} AND ${km}.[key_predicate] = ${pred}`,
      );
      const id = `COALESCE(TRY_CONVERT(UNIQUEIDENTIFIER, ${pred}), ${km}.[id])`;
      sinkCols.push(`${id} AS ${q(c.attribute)}`);
      sinkNames.push(c.attribute);
      if (c.targets.length > 1 || c.tableFrom) {
        sinkCols.push(`w.${q(b.sql.lookup!.target)} AS ${q(`${c.attribute}@EntityReference`)}`);
        sinkNames.push(`${c.attribute}@EntityReference`);
      }
      missing.push(
        `WHEN ${pred} IS NOT NULL AND ${id} IS NULL THEN CONCAT(N'Lookup \`${c.attribute}\` target ', ${set}, N'(', ${pred}, N') is not in the key map of Dataverse; load the parent first, then replay this row.')`,
      );
    } else {
      for (const m of b.sql.members) {
        sinkCols.push(`w.${q(m.value)} AS ${q(c.attribute)}`);
        sinkNames.push(c.attribute);
      }
    }
  }
  const sink = [
    `DROP TABLE IF EXISTS ${T(names.sink)}`,
    `SELECT w.[__row_id], ${missing.length ? `CASE ${missing.join(' ')} END` : 'CAST(NULL AS NVARCHAR(MAX))'} AS [__missing], ${sinkCols.join(', ')} INTO ${T(names.sink)} FROM ${T(work)} AS w${joins.length ? ` ${joins.join(' ')}` : ''} WHERE w.[__outcome] = N'ok'`,
    `INSERT INTO ${T(names.rejects)} ([run_id], [pipeline], [stage], [reason], [message], [key], [source_file], [row_number], [row_json], [created_at]) SELECT @run_id, @pipeline, N'convert-to-dataverse', N'lookup.target_missing', s.[__missing], w.[__key], w.[__source_file], w.[__row_number], w.[__payload], ${NOW} FROM ${T(names.sink)} AS s INNER JOIN ${T(work)} AS w ON w.[__row_id] = s.[__row_id] WHERE s.[__missing] IS NOT NULL`,
    `DELETE FROM ${T(names.sink)} WHERE [__missing] IS NOT NULL`,
  ];
  const lineage = [
    `DROP TABLE IF EXISTS ${T(names.rows)}`,
    // Row numbers follow the copy's insert order within each file.
    `SELECT t.*, ROW_NUMBER() OVER (ORDER BY t.[__source_file], t.[__ordinal]) AS [__row_id], ROW_NUMBER() OVER (PARTITION BY t.[__source_file] ORDER BY t.[__ordinal]) AS [__row_number] INTO ${T(names.rows)} FROM (SELECT s.*, ROW_NUMBER() OVER (ORDER BY (SELECT NULL)) AS [__ordinal] FROM ${T(names.staged)} AS s) AS t`,
  ];
  const targets = [...keymapTargets.values()].sort((x, y) => x.table.localeCompare(y.table));
  return {
    lineage,
    classify,
    converted,
    rejects,
    counts,
    saveVersions,
    sink,
    sinkQuery: `SELECT ${sinkNames.map(q).join(', ')} FROM ${T(names.sink)}`,
    keymapTargets: targets,
  };
}

/** Statements that refresh the key map of one lookup target from its raw copy (`stg.keymap_<table>_raw`). */
export function keymapRefreshFor(t: KeymapTarget, names: ConversionNames): string[] {
  const raw = { schema: names.sink.schema, table: `${names.prefix}keymap_${t.table}_raw` };
  const fresh = { schema: names.sink.schema, table: `${names.prefix}keymap_${t.table}` };
  const pred = `CONCAT(${t.keyAttributes.map((k, i) => `${i ? "N',', " : ''}N'${k}=''', REPLACE(CONVERT(NVARCHAR(4000), s.${q(k)}), N'''', N''''''), N''''`).join(', ')})`;
  return [
    `DROP TABLE IF EXISTS ${T(fresh)}`,
    `SELECT ${tsqlLiteral(t.entitySet)} AS [entity_set], ${pred} AS [key_predicate], MAX(s.${q(t.idAttribute || `${t.table}id`)}) AS [id], SYSUTCDATETIME() AS [refreshed_at] INTO ${T(fresh)} FROM ${T(raw)} AS s WHERE ${t.keyAttributes.map((k) => `s.${q(k)} IS NOT NULL`).join(' AND ')} AND LEN(${pred}) <= ${TSQL_CAPABILITIES.maxIndexedNvarcharLength} GROUP BY ${pred}`,
    mergeStatement({
      target: names.keymap,
      source: fresh,
      keys: ['entity_set', 'key_predicate'],
      columns: ['id', 'refreshed_at'],
    }),
  ];
}

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
