import { FerryError } from '../core/errors.js';
import type { ColumnPlan, ConversionPlan, ConversionReason, KeyPartPlan } from '../core/mapping.js';
import { STAGING_TABLES } from '../core/staging-contract.js';
import {
  type ConversionNames,
  deferColumn,
  KEYMAP_CURSOR_PIPELINE,
  type KeymapTarget,
  keymapCursorSource,
  keymapFullPendingPrefix,
  keymapFullSource,
  keymapPendingPrefix,
  lookupCheckTable,
  lookupSeenTable,
  type SynapseConversion,
  type TableName,
} from './sql-steps.js';
import { STATE_TABLES } from './state-schema.js';

/**
 * A SQL dialect: quoting, literals, what the engine can do (as data), the SQL tokens the compiler writes through
 * (hooks), and the expression builders the conversion needs. `src/dialects/<name>/conversion.ts` implements it;
 * `ConversionCompiler` below assembles the statements the same way for every dialect (a dialect overrides a step
 * only where its SQL has another shape, as T-SQL's payload does), so reason codes, their order and the payload shape
 * cannot drift apart.
 */
export interface SqlDialect {
  readonly name: string;
  readonly capabilities: DialectCapabilities;
  /** Quoted identifier. */
  ident(name: string): string;
  /** String literal. */
  literal(value: string): string;
  /** A boolean constant (`TRUE` / `1`). */
  bool(value: boolean): string;
  /** `expr DESC` with NULLs after every value. */
  descNullsLast(expr: string): string;
  /** A statement parameter as the dialect's renderings write it (`$name`, `@name`). */
  param(name: string): string;
  /** Builds `target` from `SELECT list rest`, replacing it (`CREATE OR REPLACE TABLE … AS`, or `DROP` + `SELECT … INTO`). */
  selectInto(target: string, list: string, rest: string): string[];
  /** Upserts the rows of `source` into `target` on `keys` (MERGE, or INSERT … ON CONFLICT). */
  upsert(options: UpsertOptions): string;
  /** The current UTC time as ISO text, as the state tables store times. */
  readonly nowText: string;
  /** The current UTC time as a timestamp value. */
  readonly nowTimestamp: string;
  /** An expression cast to text of at most `maxLength` characters (default unbounded). */
  textOf(expr: string, maxLength?: number): string;
  /** Length of a text in characters. */
  length(expr: string): string;
  /** A row of `alias` as JSON text. */
  rowJson(alias: string): string;
  /** A row number in no particular order (the rows' arrival order). */
  readonly arrivalRowNumber: string;
  /** Text to a GUID value, NULL when it is not one. */
  tryGuid(expr: string): string;
  /** A NULL of the text type. */
  readonly nullText: string;
  /** Classifies a column type as the engine names it (`DESCRIBE`, `INFORMATION_SCHEMA`). */
  classifyType(typeText: string): SourceType;
  /** Query returning `(name, type)` rows for a table's columns. */
  describeTableSql(table: string): string;
  /** Query returning one row `(n)` with n > 0 when the table exists. */
  tableExistsSql(table: string): string;
  /** An expression cast to the engine's text type. */
  castText(expr: string): string;
  /** NULL-propagating string concatenation. */
  concat(parts: readonly string[]): string;
  /** Concatenation with a separator (may be empty) that skips NULL parts. */
  concatSkipNulls(separator: string, parts: readonly string[]): string;
  /** `CREATE OR REPLACE TABLE name AS select` (or the dialect's drop-and-create). */
  createTableAs(name: string, select: string): string;
  /**
   * `createTableAs` for a table that only this connection reads, for this run (the local conversion's work table);
   * absent: `createTableAs`.
   */
  createWorkTableAs?(name: string, select: string): string;
  /** `CREATE OR REPLACE VIEW name AS select`. */
  createViewAs(name: string, select: string): string;
  /** A relation `(key, version)` over the applied versions. */
  appliedVersionsRelation(source: AppliedVersionsSource): string;
  /** Statement saving `(key, max(version))` of `previous ∪ converted ⋈ upserted` into `target`. */
  saveAppliedVersionsSql(previous: AppliedVersionsSource | null, target: AppliedVersionsSource): string;
  /** The per-rule expression builders of `ConversionCompiler.compile`; absent when the dialect overrides the classification. */
  readonly conversion?: ConversionBuilders;
}

/** An upsert of a source table into a target table. */
export interface UpsertOptions {
  readonly target: TableName;
  readonly source: TableName;
  readonly keys: readonly string[];
  /** Non-key columns to update and insert. */
  readonly columns: readonly string[];
  /** An existing row is updated only when the source's value of this column is greater or equal. */
  readonly versionColumn?: string;
}

/** Engine differences as data: code asks the capability, never the dialect's name. */
export interface DialectCapabilities {
  /** Most bind parameters in one statement (T-SQL: 2,100); null = no practical limit. */
  readonly maxParameters: number | null;
  /** Most rows in one `INSERT ... VALUES` (T-SQL: 1,000); null = no limit. */
  readonly maxRowsPerInsertValues: number | null;
  /** Reads Parquet files directly in SQL (`read_parquet`). */
  readonly readsParquet: boolean;
  /** List values and lambdas (multi-select without a split-and-aggregate subquery). */
  readonly listLambdas: boolean;
  /** Regular expressions in SQL. */
  readonly regex: boolean;
  /** How the payload JSON is built: string concatenation, or `FOR JSON PATH`. */
  readonly jsonPayload: 'concat' | 'for-json-path';
}

/** Kinds of staged column types the conversion distinguishes. */
export const SOURCE_KINDS = [
  'text',
  'integer',
  'decimal',
  'float',
  'boolean',
  'timestamp',
  'timestamptz',
  'date',
  'uuid',
  'other',
] as const;
/** One of `SOURCE_KINDS`. */
export type SourceKind = (typeof SOURCE_KINDS)[number];

/** A staged column's type, reduced to what the conversion cares about. */
export interface SourceType {
  readonly kind: SourceKind;
  readonly precision?: number;
  readonly scale?: number;
}

/** A staged column: its name and type. */
export interface SourceColumn extends SourceType {
  readonly name: string;
}

/** Where the versions applied in earlier runs are kept: a Parquet file (DuckDB) or a table (Azure SQL). */
export type AppliedVersionsSource =
  | { readonly kind: 'parquet'; readonly path: string }
  | { readonly kind: 'table'; readonly name: string }
  /** A query returning `(key, version)`, e.g. one pipeline's rows of a shared table. */
  | { readonly kind: 'query'; readonly sql: string };

/**
 * SQL for one mapped column. `prepare` expressions are computed first, over the staged row `s`; `reason`,
 * `fragment`, `keyText` and `blank` are computed next, over the prepared aliases (and may use other columns' aliases).
 */
export interface ColumnSql {
  readonly prepare: readonly (readonly [alias: string, sql: string])[];
  /** Yields a reason code, or NULL when the value is fine. */
  readonly reason: string;
  /** The JSON value text (`"a"`, `12`, `null`), or NULL to leave the attribute out. Ignored for lookups. */
  readonly value: string;
  /** Lookups: the whole `"nav@odata.bind":"..."` member (the name varies per row), or NULL to leave it out. */
  readonly fragment?: string;
  /** Own-key columns: the key value as text (NULL when it cannot be had). */
  readonly keyText?: string;
  /** Own-key columns: true when the source is null or blank (reason `key.missing`). */
  readonly blank?: string;
}

/** The rule builders a dialect implements. Each must produce exactly the reason codes the reference converter does. */
export interface ConversionBuilders {
  /** Builds one column; `alias(name)` makes a column-local alias, `aliasOf(index, name)` refers to another column's. */
  column(column: ColumnPlan, sources: ReadonlyMap<string, SourceColumn>, names: AliasNames): ColumnSql;
  /** The change timestamp as sortable ISO-8601 text (`YYYY-MM-DDTHH:MM:SS.ffffffZ`), NULL when unparsable. */
  version(source: SourceColumn): { readonly prepare: readonly (readonly [string, string])[]; readonly version: string };
  /** True when a key text holds a character that breaks key URLs (`/ \ < > * % & : ?`). */
  unsafeKey(text: string): string;
  /** A key text for an OData string literal: single quotes doubled (the caller adds the quotes). */
  escapeKeyText(text: string): string;
  /** `ROW_NUMBER() OVER (PARTITION BY ... ORDER BY ...)`. */
  rowNumber(partitionBy: string, orderBy: string): string;
  /** A fixed-width hash of a text (equal texts, equal hashes): grouping on it is cheaper than on the text. */
  keyHash(text: string): string;
}

/** Naming of the column-local aliases in the compiled SQL. */
export interface AliasNames {
  alias(name: string): string;
  aliasOf(index: number, name: string): string;
}

/** A piece of a NULL-propagating concatenation: literal text or an SQL expression. */
export type Segment = { readonly text: string } | { readonly sql: string };

/** The parts to concatenate for `segments`, adjacent literals merged into one (each `||` copies every row's string once more). */
export function mergeLiterals(segments: readonly Segment[], literal: (text: string) => string): string[] {
  const parts: string[] = [];
  let pending = '';
  for (const segment of segments) {
    if ('text' in segment) pending += segment.text;
    else {
      if (pending) parts.push(literal(pending));
      pending = '';
      parts.push(segment.sql);
    }
  }
  if (pending) parts.push(literal(pending));
  return parts;
}

/** Name of the work table the compiled statements build. */
export const CONVERSION_WORK_TABLE = '__ferry_convert';

/** Inputs of `compileConversion` besides the plan and the dialect. */
export interface CompileOptions {
  /** The staged source columns with their types (from `describeTableSql`). */
  readonly sources: readonly SourceColumn[];
  /** Versions applied by earlier runs; absent on the first run. */
  readonly appliedVersions?: AppliedVersionsSource | null;
  /**
   * A version equal to the applied one is stale (default). The Synapse path saves the versions of every row it sent
   * (its Copy does not say which ones Dataverse accepted), so there an equal version is sent again.
   */
  readonly staleWhenEqual?: boolean;
  /** Table names; default the staging contract's `staged` and `converted` and `__ferry_convert`. */
  readonly tables?: { readonly staged: string; readonly work: string; readonly converted: string };
  /** Also keep each own-key part's text in the work table as `__key_part_<i>` (the Synapse sink's key columns). */
  readonly keyParts?: boolean;
  /**
   * Build the work table with `dialect.createWorkTableAs` (a table of this connection only). Default: when `tables`
   * is not given, i.e. the local staging contract, whose statements all run on the run's one connection.
   */
  readonly connectionWork?: boolean;
}

/** The statements of one conversion, in the order to run them. */
export interface CompiledConversion {
  /**
   * Builds the work table: one row per staged row with its outcome, reason, key, version and payload. Two
   * statements separated by `;` (run them with one `run`): build, then mark the superseded versions.
   */
  readonly classify: string;
  /**
   * Makes `converted` (contract in `src/core/staging-contract.ts`) a view of the work table's `ok` rows: a copy would
   * hold every payload twice (measured: up to a second and a few hundred MB per million rows).
   */
  readonly converted: string;
  /** Rows `(outcome, n)`. */
  readonly counts: string;
  /** The rejected rows: reason, reason column index, key, lineage and every staged source column as text. */
  readonly rejects: string;
}

/**
 * Compiles a conversion plan to SQL for a dialect. One pass classifies every staged row (first failing column wins,
 * in mapping order; versions of one key collapse to the latest; versions not newer than the applied one are stale);
 * `converted` then holds the rows to send.
 */
export function compileConversion(
  plan: ConversionPlan,
  dialect: SqlDialect,
  options: CompileOptions,
): CompiledConversion {
  return new ConversionCompiler(dialect).compile(plan, options);
}

/** The state columns a new record cannot be created with in a non-default state. */
export const STATE_SINK_COLUMNS = ['statecode', 'statuscode'] as const;

/**
 * The one conversion compiler. `compile` gives the local staging contract's statements (`staged` → work table →
 * `converted`); `compileSynapse` gives the Synapse export's (key maps, lineage, classification, rejects, the sink
 * the Copy activity reads, applied versions). Every SQL token goes through the dialect's hooks; a dialect whose
 * classification has another shape (T-SQL builds its payload with `FOR JSON PATH` once the outcome is known)
 * subclasses this and overrides `classifySynapse` — the way kysely's `MssqlQueryCompiler` extends its default.
 */
export class ConversionCompiler {
  readonly dialect: SqlDialect;

  constructor(dialect: SqlDialect) {
    this.dialect = dialect;
  }

  /**
   * Compiles a conversion plan to the local staging contract. One pass classifies every staged row (first failing
   * column wins, in mapping order; versions of one key collapse to the latest; versions not newer than the applied
   * one are stale); `converted` then holds the rows to send.
   */
  compile(plan: ConversionPlan, options: CompileOptions): CompiledConversion {
    const dialect = this.dialect;
    const b = dialect.conversion;
    // The shared classification concatenates the payload text and parses text with regular expressions; a dialect
    // that builds JSON otherwise (`FOR JSON PATH`) or has no regex overrides the classification instead.
    const caps = dialect.capabilities;
    if (!b || caps.jsonPayload !== 'concat' || !caps.regex || !caps.listLambdas) {
      throw new FerryError(
        'convert.dialect',
        `Staging dialect \`${dialect.name}\` has no local conversion (payload ${caps.jsonPayload}, regex ${caps.regex ? 'yes' : 'no'}, list lambdas ${caps.listLambdas ? 'yes' : 'no'}); stage with DuckDB (the default staging engine).`,
      );
    }
    if (options.appliedVersions?.kind === 'parquet' && !caps.readsParquet) {
      throw new FerryError(
        'convert.dialect',
        `Staging dialect \`${dialect.name}\` cannot read the applied versions file \`${options.appliedVersions.path}\` (no Parquet reader); keep them in a table.`,
      );
    }
    const T = dialect.bool(true);
    const F = dialect.bool(false);
    const q = (name: string) => dialect.ident(name);
    const sources = new Map(options.sources.map((s) => [s.name, s]));
    const staged = options.tables?.staged ?? STAGING_TABLES.staged;
    const names = (index: number): AliasNames => ({
      alias: (name) => `c${index}_${name}`,
      aliasOf: (other, name) => `c${other}_${name}`,
    });

    const built = plan.columns.map((c) => ({ plan: c, sql: b.column(c, sources, names(c.index)) }));
    const changeSource = sources.get(plan.changeTimestamp);
    if (!changeSource)
      throw new Error(`compileConversion: change timestamp column ${plan.changeTimestamp} is not staged`);
    const version = b.version(changeSource);

    const prepare = [
      ...built.flatMap((c) => c.sql.prepare.map(([alias, sql]) => `${sql} AS ${q(alias)}`)),
      ...version.prepare.map(([alias, sql]) => `${sql} AS ${q(alias)}`),
      `${version.version} AS __version`,
    ];

    const keyOf = (part: KeyPartPlan & { column: number }) => {
      const sql = built[part.column]!.sql;
      if (sql.keyText === undefined || sql.blank === undefined) {
        throw new Error(`compileConversion: key column ${part.attribute} has no key text`);
      }
      return { part, text: sql.keyText, blank: sql.blank };
    };
    const keys = plan.key.map(keyOf);
    const anyBlank = keys.map((k) => `(${k.blank})`).join(' OR ');
    const keyJoin = (render: (k: (typeof keys)[number]) => Segment[]) =>
      dialect.concat(
        mergeLiterals(
          keys.flatMap((k, i) => [{ text: `${i ? ',' : ''}${k.part.attribute}=` }, ...render(k)]),
          (text) => dialect.literal(text),
        ),
      );
    const readable = keyJoin((k) => [{ sql: k.text }]);
    const predicate = keyJoin((k) =>
      k.part.literal === 'string'
        ? [{ text: "'" }, { sql: b.escapeKeyText(k.text) }, { text: "'" }]
        : [{ sql: k.text }],
    );
    const unsafe = keys.filter((k) => k.part.literal === 'string').map((k) => `COALESCE(${b.unsafeKey(k.text)}, ${F})`);
    const safe = unsafe.length ? `NOT (${unsafe.join(' OR ')})` : T;

    const reasonCols = built.map((c) => `r${c.plan.index}`);
    // Payload members: lookups give the whole `"name":value` member, other columns the value text (the name is fixed).
    const members = built
      .filter((c) => c.plan.inPayload)
      .map((c) =>
        c.sql.fragment !== undefined
          ? { name: null, sql: c.sql.fragment }
          : { name: `${JSON.stringify(c.plan.attribute)}:`, sql: c.sql.value },
      );
    const fragments = members.map((m) => m.sql);
    const memberOf = (m: (typeof members)[number], i: number) =>
      m.name === null ? `k.f${i}` : dialect.concat([dialect.literal(m.name), `k.f${i}`]);
    // The object `{m0,m1,...}` of the members that are not NULL. When the first member is there (nearly always), one
    // flat concatenation writes it: separator and name are literals chosen per member, so no member string is built
    // and copied on its own (measured ~0.2 s per 1M rows of 14 members); otherwise the general form joins the members.
    const general = dialect.concat([
      dialect.literal('{'),
      dialect.concatSkipNulls(',', members.length ? members.map(memberOf) : ['k.f0']),
      dialect.literal('}'),
    ]);
    const flat = members.length
      ? dialect.concatSkipNulls('', [
          dialect.literal(`{${members[0]!.name ?? ''}`),
          'k.f0',
          ...members
            .slice(1)
            .flatMap((m, j) => [
              `CASE WHEN k.f${j + 1} IS NOT NULL THEN ${dialect.literal(`,${m.name ?? ''}`)} END`,
              `k.f${j + 1}`,
            ]),
          dialect.literal('}'),
        ])
      : null;
    const payload = flat ? `CASE WHEN k.f0 IS NOT NULL THEN ${flat} ELSE ${general} END` : general;
    const firstBlank = keys.map((k) => `WHEN ${k.blank} THEN ${k.part.column}`).join(' ');
    const missing: ConversionReason = 'key.missing';

    // Not newer than the version an earlier run applied: skipped. Equal counts as applied because applied versions are
    // saved only for rows Dataverse accepted (the `upserted` table) after every stage succeeded, so a repeated window
    // (a rerun after a crash, a backfill over processed files) sends nothing Dataverse already has.
    const stale = `COALESCE(a.version IS NOT NULL AND k.__version ${options.staleWhenEqual === false ? '<' : '<='} a.version, ${F})`;
    const work = options.tables?.work ?? CONVERSION_WORK_TABLE;
    const keyParts = options.keyParts ? keys.map((k, i) => `,\n  ${k.text} AS __key_part_${i}`).join('') : '';
    // One pass over the staged rows builds the work table as if every row were the latest of its key; a second
    // statement then marks the older versions superseded. Keys rarely repeat, so the ranking runs only on the keys
    // that occur more than once (found by grouping a hash of the key over the narrow work-table column): ranking
    // every row and joining the ranks back cost a second scan of `staged`, a window and a hash join over all rows
    // (measured ~0.4 s per 1M rows, a fifth of the conversion). A hash collision only adds a key to the ranking.
    // The reason and its column read the per-column reasons from the level below (`v`), not from the same SELECT:
    // there DuckDB inlines each reason's expression into them (bench accounts, 1 M rows, one thread: the whole
    // projection 2.42-2.53 vs 2.85-2.95 CPU s).
    const classify = `WITH p AS (
  SELECT s.__row_id, s.__source_file, s.__row_number,
    ${prepare.join(',\n    ')}
  FROM ${q(staged)} s
), v AS (
  SELECT p.*,
    CASE WHEN ${anyBlank} THEN NULL ELSE ${readable} END AS __key,
    CASE WHEN ${anyBlank} THEN NULL ELSE ${predicate} END AS __key_predicate,
    ${safe} AS __key_safe,
    ${built.map((c) => `${c.sql.reason} AS r${c.plan.index}`).join(',\n    ')},
    ${fragments.length ? fragments.map((f, i) => `${f} AS f${i}`).join(',\n    ') : 'NULL AS f0'}
  FROM p
), k AS (
  SELECT v.*,
    CASE ${firstBlank} ${reasonCols.map((r, i) => `WHEN ${r} IS NOT NULL THEN ${built[i]!.plan.index}`).join(' ')} END AS __reason_column,
    COALESCE(CASE WHEN ${anyBlank} THEN ${dialect.literal(missing)} END, ${reasonCols.join(', ')}) AS __reason
  FROM v
)
SELECT k.__row_id, k.__source_file, k.__row_number, k.__key, k.__key_predicate, k.__key_safe, k.__version,
  k.__reason, k.__reason_column,
  CASE
    WHEN k.__key_predicate IS NULL THEN 'reject'
    ${options.appliedVersions ? `WHEN ${stale} THEN 'stale'` : ''}
    WHEN k.__reason IS NOT NULL THEN 'reject'
    ELSE 'ok'
  END AS __outcome,
  CASE WHEN k.__reason IS NULL${options.appliedVersions ? ` AND NOT ${stale}` : ''} THEN ${payload} END AS __payload${keyParts}
FROM k${options.appliedVersions ? `\nLEFT JOIN ${dialect.appliedVersionsRelation(options.appliedVersions)} a ON a.key = k.__key_predicate` : ''}`;
    const superseded = `UPDATE ${q(work)} SET __outcome = 'superseded', __payload = NULL
WHERE __row_id IN (
  SELECT __row_id FROM (
    SELECT __row_id, ${b.rowNumber('__key_predicate', `${dialect.descNullsLast('__version')}, __row_id DESC`)} AS __rank
    FROM ${q(work)}
    WHERE __key_predicate IS NOT NULL AND ${b.keyHash('__key_predicate')} IN (
      SELECT ${b.keyHash('__key_predicate')} FROM ${q(work)} WHERE __key_predicate IS NOT NULL
      GROUP BY ${b.keyHash('__key_predicate')} HAVING COUNT(*) > 1
    )
  ) ranked WHERE __rank > 1
)`;

    const sourceList = options.sources.filter((s) => !s.name.startsWith('__'));
    const connectionWork = options.connectionWork ?? options.tables === undefined;
    const createWork = (name: string, select: string) =>
      connectionWork && dialect.createWorkTableAs
        ? dialect.createWorkTableAs(name, select)
        : dialect.createTableAs(name, select);
    return {
      classify: `${createWork(work, classify)};\n${superseded}`,
      converted: dialect.createViewAs(
        options.tables?.converted ?? STAGING_TABLES.converted,
        `SELECT __row_id, __source_file, __row_number, __key, __key_predicate, __key_safe, __version, __payload
FROM ${q(work)} WHERE __outcome = 'ok'`,
      ),
      counts: `SELECT __outcome AS outcome, COUNT(*) AS n FROM ${q(work)} GROUP BY __outcome`,
      rejects: `SELECT c.__reason, c.__reason_column, c.__key, c.__source_file, c.__row_number,
  ${sourceList.map((s) => `${dialect.castText(`s.${q(s.name)}`)} AS ${q(s.name)}`).join(',\n  ') || 'NULL AS __none'}
FROM ${q(work)} c JOIN ${q(staged)} s ON s.__row_id = c.__row_id
WHERE c.__outcome = 'reject' ORDER BY c.__row_id`,
    };
  }

  /**
   * Compiles a conversion plan to the Synapse export's statements (run by its Script activities against Azure SQL,
   * or by a local runtime against DuckDB). Parameters: `run_id` and `pipeline` (`dialect.param`).
   */
  compileSynapse(
    plan: ConversionPlan,
    names: ConversionNames,
    options: { readonly deferSelfLookups?: boolean } = {},
  ): CompiledSynapseConversion {
    const classified = this.classifySynapse(plan, names);
    return {
      lineage: this.lineage(plan, names),
      classify: classified.classify,
      converted: classified.converted,
      rejects: [this.rejectsInsert(plan, names)],
      counts: `SELECT ${this.q('__outcome')} AS ${this.q('outcome')}, COUNT(*) AS ${this.q('n')} FROM ${this.table(names.work)} GROUP BY ${this.q('__outcome')}`,
      saveVersions: this.saveVersions(names),
      ...this.sink(plan, names, classified.sink, options.deferSelfLookups === true),
      keymapTargets: keymapTargetsOf(plan),
    };
  }

  /** The statements of the export's three conversion steps, the same in every dialect. */
  compileSynapseStep(kind: 'convert' | 'sink-query' | 'save-versions', conversion: SynapseConversion): string[] {
    const { plan, names, keymapTargets } = conversion;
    const compiled = this.compileSynapse(plan, names, { deferSelfLookups: conversion.deferSelfLookups === true });
    if (kind === 'sink-query') return [compiled.sinkQuery];
    if (kind === 'save-versions') return compiled.saveVersions;
    return [
      ...keymapTargets.flatMap((t) => this.keymapRefresh(t, names)),
      ...compiled.lineage,
      ...compiled.classify,
      ...compiled.converted,
      ...compiled.rejects,
      ...compiled.sink,
    ];
  }

  /**
   * Statements that refresh the key map of one lookup target from its raw copy (`<prefix>keymap_<table>_raw`). After
   * a full read (`full`: the pipeline's full-pending marker is `1`), entries the read did not see — records deleted in
   * Dataverse — are dropped.
   */
  keymapRefresh(t: KeymapTarget, names: ConversionNames, full = true): string[] {
    const d = this.dialect;
    const q = (n: string) => this.q(n);
    const raw = { schema: names.sink.schema, table: `${names.prefix}keymap_${t.table}_raw` };
    const fresh = { schema: names.sink.schema, table: `${names.prefix}keymap_${t.table}` };
    const pred = `CONCAT(${t.keyAttributes.map((k, i) => `${i ? `${d.literal(',')}, ` : ''}${d.literal(`${k}='`)}, REPLACE(${d.textOf(`s.${q(k)}`, 4000)}, ${d.literal("'")}, ${d.literal("''")}), ${d.literal("'")}`).join(', ')})`;
    const id = `s.${q(t.idAttribute || `${t.table}id`)}`;
    return [
      ...d.selectInto(
        this.table(fresh),
        `${d.literal(t.entitySet)} AS ${q('entity_set')}, ${pred} AS ${q('key_predicate')}, MAX(${this.keymapId(id)}) AS ${q('id')}, ${d.nowTimestamp} AS ${q('refreshed_at')}`,
        `FROM ${this.table(raw)} AS s WHERE ${t.keyAttributes.map((k) => `s.${q(k)} IS NOT NULL`).join(' AND ')} AND ${d.length(pred)} <= ${KEYMAP_KEY_LENGTH} GROUP BY ${pred}`,
      ),
      d.upsert({
        target: names.keymap,
        source: fresh,
        keys: ['entity_set', 'key_predicate'],
        columns: ['id', 'refreshed_at'],
      }),
      ...(full ? this.keymapPurge(t, names, fresh) : []),
      ...this.keymapWatermark(t, names, full),
    ];
  }

  /** `EXISTS …` when this pipeline's current read of `t` is a full one. */
  protected keymapFullRead(t: KeymapTarget, names: ConversionNames): string {
    const d = this.dialect;
    const q = (n: string) => this.q(n);
    const cursors = this.table({ schema: names.keymap.schema, table: 'cursors' });
    return `EXISTS (SELECT 1 FROM ${cursors} AS f WHERE f.${q('pipeline')} = ${d.literal(KEYMAP_CURSOR_PIPELINE)} AND f.${q('source')} = CONCAT(${d.literal(keymapFullPendingPrefix(t.table))}, ${d.param('pipeline')}) AND f.${q('value')} = ${d.literal('1')})`;
  }

  /** After a full read: drops the entries of `t` the read did not refresh (their records are gone from Dataverse). */
  protected keymapPurge(t: KeymapTarget, names: ConversionNames, fresh: TableName): string[] {
    const d = this.dialect;
    const q = (n: string) => this.q(n);
    return [
      `DELETE FROM ${this.table(names.keymap)} WHERE ${q('entity_set')} = ${d.literal(t.entitySet)} AND ${q('refreshed_at')} < (SELECT MIN(${q('refreshed_at')}) FROM ${this.table(fresh)}) AND ${this.keymapFullRead(t, names)}`,
    ];
  }

  /**
   * After the merge: this pipeline's pending watermark of the table (the start of its read, recorded by the
   * `keymap-since` step) becomes the committed one, never moving it backwards. The next read starts there, less
   * an overlap, so nothing modified during this read is missed.
   */
  protected keymapWatermark(t: KeymapTarget, names: ConversionNames, full = true): string[] {
    const d = this.dialect;
    const q = (n: string) => this.q(n);
    const cursors = { schema: names.keymap.schema, table: 'cursors' };
    const mark = { schema: names.sink.schema, table: `${names.prefix}keymap_${t.table}_mark` };
    const lastFull = { schema: names.sink.schema, table: `${names.prefix}keymap_${t.table}_full` };
    return [
      ...d.selectInto(
        this.table(mark),
        `c.${q('pipeline')}, ${d.literal(keymapCursorSource(t.table))} AS ${q('source')}, c.${q('value')}, c.${q('run_id')}, c.${q('updated_at')}`,
        `FROM ${this.table(cursors)} AS c WHERE c.${q('pipeline')} = ${d.literal(KEYMAP_CURSOR_PIPELINE)} AND c.${q('source')} = CONCAT(${d.literal(keymapPendingPrefix(t.table))}, ${d.param('pipeline')})`,
      ),
      d.upsert({
        target: cursors,
        source: mark,
        keys: ['pipeline', 'source'],
        columns: ['value', 'run_id', 'updated_at'],
        versionColumn: 'value',
      }),
      // A full read also becomes the table's last full read (the start of the read, as the watermark).
      ...(full
        ? [
            ...d.selectInto(
              this.table(lastFull),
              `m.${q('pipeline')}, ${d.literal(keymapFullSource(t.table))} AS ${q('source')}, m.${q('value')}, m.${q('run_id')}, m.${q('updated_at')}`,
              `FROM ${this.table(mark)} AS m WHERE ${this.keymapFullRead(t, names)}`,
            ),
            d.upsert({
              target: cursors,
              source: lastFull,
              keys: ['pipeline', 'source'],
              columns: ['value', 'run_id', 'updated_at'],
              versionColumn: 'value',
            }),
          ]
        : []),
    ];
  }

  /**
   * A lookup deferred to a row of this run whose row is itself not sent (its own lookup is missing) will not find
   * its target: the row is rejected too, as the local writer rejects a row whose deferred target never appears.
   * Each round follows one more level of a chain (child of a rejected parent, then its child, …).
   */
  protected deferredTargetsRejected(plan: ConversionPlan, sink: string, work: string): string[] {
    const d = this.dialect;
    const q = (n: string) => this.q(n);
    const rounds = 4;
    return Array.from({ length: rounds }, () =>
      this.selfLookups(plan).map((c) => {
        const key = `${sink}.${q(deferColumn(c.index))}`;
        return `UPDATE ${sink} SET ${q('__missing')} = CONCAT(${d.literal(`Lookup \`${c.attribute}\` target ${plan.entitySetName}(`)}, ${key}, ${d.literal(') is a row of this run that was rejected; fix that row, replay it, then replay this row.')}) WHERE ${key} IS NOT NULL AND ${sink}.${q('__missing')} IS NULL AND NOT EXISTS (SELECT 1 FROM ${sink} AS s2 INNER JOIN ${work} AS w2 ON w2.${q('__row_id')} = s2.${q('__row_id')} WHERE s2.${q('__missing')} IS NULL AND w2.${q('__key_predicate')} = ${key})`;
      }),
    ).flat();
  }

  /** Lookup columns to the pipeline's own table by key: their target may be a row of the same run. */
  protected selfLookups(plan: ConversionPlan): (ColumnPlan & { rule: 'lookup' })[] {
    return plan.columns.filter(
      (c): c is ColumnPlan & { rule: 'lookup' } =>
        c.inPayload && c.rule === 'lookup' && c.targets.some((t) => t.table === plan.table && t.key !== null),
    );
  }

  /**
   * The second pass of a run whose rows refer to rows of the same run (a parent and its child, a self-referencing
   * parent): the sink sent such a lookup empty (`__defer_<n>` holds its key); after the copies, the pipeline re-reads
   * the key map of its own table. Here: merge it, resolve each deferred lookup, reject (`lookup.target_missing`)
   * those whose target still does not exist, and `sinkQuery` the rows to send again (key and lookups only).
   */
  compileDeferredLookups(conversion: SynapseConversion): { readonly resolve: string[]; readonly sinkQuery: string } {
    const { plan, names, keymapTargets } = conversion;
    const d = this.dialect;
    const q = (n: string) => this.q(n);
    const own = keymapTargets.find((t) => t.table === plan.table);
    const lookups = this.selfLookups(plan);
    if (!own || lookups.length === 0)
      throw new Error(`Conversion of \`${plan.table}\` has no lookup to its own table by key; nothing to defer.`);
    const deferred = this.table({ schema: names.sink.schema, table: `${names.sink.table}_deferred` });
    const sink = this.table(names.sink);
    const work = this.table(names.work);
    const cols: string[] = [];
    const sinkNames: string[] = [];
    const joins: string[] = [];
    const missing: string[] = [];
    for (const k of plan.key) {
      cols.push(`s.${q(k.attribute)}`);
      sinkNames.push(k.attribute);
    }
    for (const c of lookups) {
      const km = `km${c.index}`;
      const key = `s.${q(deferColumn(c.index))}`;
      joins.push(
        `LEFT JOIN ${this.table(names.keymap)} AS ${km} ON ${km}.${q('entity_set')} = ${d.literal(plan.entitySetName)} AND ${km}.${q('key_predicate')} = ${key}`,
      );
      cols.push(`${km}.${q('id')} AS ${q(c.attribute)}`);
      sinkNames.push(c.attribute);
      if (c.targets.length > 1 || c.tableFrom) {
        cols.push(
          `CASE WHEN ${km}.${q('id')} IS NOT NULL THEN ${d.literal(plan.table)} END AS ${q(`${c.attribute}@EntityReference`)}`,
        );
        sinkNames.push(`${c.attribute}@EntityReference`);
      }
      missing.push(
        `WHEN ${key} IS NOT NULL AND ${km}.${q('id')} IS NULL THEN CONCAT(${d.literal(`Lookup \`${c.attribute}\` target ${plan.entitySetName}(`)}, ${key}, ${d.literal(') did not appear in Dataverse after this run wrote its rows; the row was written without this lookup. Load the parent first, then replay this row.')})`,
      );
    }
    return {
      resolve: [
        // The re-read covers this run's writes only: never a full read, nothing to purge.
        ...this.keymapRefresh(own, names, false),
        ...d.selectInto(
          deferred,
          `s.${q('__row_id')}, CASE ${missing.join(' ')} END AS ${q('__missing')}, ${cols.join(', ')}`,
          `FROM ${sink} AS s ${joins.join(' ')} WHERE ${lookups.map((c) => `s.${q(deferColumn(c.index))} IS NOT NULL`).join(' OR ')}`,
        ),
        `INSERT INTO ${this.table(names.rejects)} ${this.rejectColumns()} SELECT ${d.param('run_id')}, ${d.param('pipeline')}, ${d.literal('convert-to-dataverse')}, ${d.literal('lookup.target_missing')}, s.${q('__missing')}, w.${q('__key')}, w.${q('__source_file')}, w.${q('__row_number')}, ${d.rowJson('r')}, ${d.nowText} FROM ${deferred} AS s INNER JOIN ${work} AS w ON w.${q('__row_id')} = s.${q('__row_id')} INNER JOIN ${this.table(names.rows)} AS r ON r.${q('__row_id')} = s.${q('__row_id')} WHERE s.${q('__missing')} IS NOT NULL`,
        `DELETE FROM ${deferred} WHERE ${q('__missing')} IS NOT NULL`,
      ],
      sinkQuery: `SELECT ${sinkNames.map(q).join(', ')} FROM ${deferred}`,
    };
  }

  // Lookup targets deleted in Dataverse.
  /**
   * The key-map ids of `table` the sink's lookups point at (`check`: into `lookupCheckTable`, numbered in chunks of
   * `chunkSize`) and the chunk numbers (`chunks`). A lookup column counts for `table` when it is its only target, or
   * when its `@EntityReference` names it; a GUID the source gave that is not in the key map is not checked.
   */
  compileLookupCheck(
    conversion: SynapseConversion,
    table: string,
    chunkSize: number,
  ): { readonly check: string[]; readonly chunks: string } {
    const { plan, names, keymapTargets } = conversion;
    const d = this.dialect;
    const q = (n: string) => this.q(n);
    const t = keymapTargets.find((x) => x.table === table);
    if (!t) throw new Error(`Conversion of \`${plan.table}\` has no key map of \`${table}\`; nothing to check.`);
    const sink = this.table(names.sink);
    const pointing = plan.columns
      .filter(
        (c): c is ColumnPlan & { rule: 'lookup' } =>
          c.inPayload && c.rule === 'lookup' && c.targets.some((x) => x.table === table),
      )
      .map((c) => {
        const typed = c.targets.length > 1 || c.tableFrom;
        return `SELECT s.${q(c.attribute)} AS ${q('id')} FROM ${sink} AS s WHERE s.${q(c.attribute)} IS NOT NULL${typed ? ` AND s.${q(`${c.attribute}@EntityReference`)} = ${d.literal(table)}` : ''}`;
      });
    const check = this.table(lookupCheckTable(names, table));
    const size = Math.max(1, Math.trunc(chunkSize));
    return {
      check: d.selectInto(
        check,
        `x.${q('id')}, CAST(FLOOR((ROW_NUMBER() OVER (ORDER BY x.${q('id')}) - 1) / ${size}.0) AS INTEGER) AS ${q('chunk')}`,
        `FROM (SELECT DISTINCT km.${q('id')} FROM ${this.table(names.keymap)} AS km INNER JOIN (${pointing.join(' UNION ALL ')}) AS p ON p.${q('id')} = km.${q('id')} WHERE km.${q('entity_set')} = ${d.literal(t.entitySet)}) AS x`,
      ),
      chunks: `SELECT DISTINCT ${q('chunk')} FROM ${check} ORDER BY ${q('chunk')}`,
    };
  }

  /**
   * After the check's reads: drops the key-map entries checked and not found (records deleted in Dataverse since the
   * last full read), then builds the sink again from the same rows (this run's rejects of the sink replaced), so
   * such a row is rejected `lookup.target_missing`, or deferred when its target is a row of this run, as the local
   * writer does; nothing was written yet.
   */
  compileLookupCheckApply(conversion: SynapseConversion): string[] {
    const { plan, names, keymapTargets } = conversion;
    const d = this.dialect;
    const q = (n: string) => this.q(n);
    const drops = keymapTargets.map((t) => {
      const check = this.table(lookupCheckTable(names, t.table));
      const seen = this.table(lookupSeenTable(names, t.table));
      return `DELETE FROM ${this.table(names.keymap)} WHERE ${q('entity_set')} = ${d.literal(t.entitySet)} AND ${q('id')} IN (SELECT c.${q('id')} FROM ${check} AS c WHERE NOT EXISTS (SELECT 1 FROM ${seen} AS v WHERE v.${q(t.idAttribute)} = c.${q('id')}))`;
    });
    const compiled = this.compileSynapse(plan, names, { deferSelfLookups: conversion.deferSelfLookups === true });
    return [
      ...drops,
      `DELETE FROM ${this.table(names.rejects)} WHERE ${q('run_id')} = ${d.param('run_id')} AND ${q('pipeline')} = ${d.param('pipeline')} AND ${q('stage')} = ${d.literal('convert-to-dataverse')} AND ${q('reason')} = ${d.literal('lookup.target_missing')}`,
      ...compiled.sink,
    ];
  }

  // State columns of new records.
  /**
   * A new record cannot be created in a non-default state (Dataverse refuses the statuscode, 0x80040203), so the
   * export's first copies leave `statecode`/`statuscode` out and a second copy sets them once the records exist, as
   * the local writer does in a second request. The sink query: key and state columns of the rows with a state column
   * set, except the `messageOnlyStates` (opportunity Won/Lost: only a message closes it; the `close-messages` step
   * lists those rows for the Web activities that send it).
   */
  compileStateColumns(
    conversion: SynapseConversion,
    messageOnlyStates: readonly number[],
  ): { readonly sinkQuery: string } {
    const { plan, names } = conversion;
    const q = (n: string) => this.q(n);
    const state = STATE_SINK_COLUMNS.filter((c) => plan.columns.some((p) => p.inPayload && p.attribute === c));
    if (state.length === 0) throw new Error(`Conversion of \`${plan.table}\` writes no state column.`);
    const sink = this.table(names.sink);
    const closing = `${q('statecode')} IN (${messageOnlyStates.map((n) => String(Math.trunc(n))).join(', ')})`;
    const closes = messageOnlyStates.length > 0 && state.includes('statecode');
    return {
      sinkQuery: `SELECT ${[...plan.key.map((k) => k.attribute), ...state].map(q).join(', ')} FROM ${sink} WHERE (${state.map((c) => `${q(c)} IS NOT NULL`).join(' OR ')})${closes ? ` AND (${q('statecode')} IS NULL OR NOT (${closing}))` : ''}`,
    };
  }

  /** The Dataverse id as the raw copy holds it, as the key map stores it. */
  protected keymapId(id: string): string {
    return this.dialect.tryGuid(id);
  }

  protected q(name: string): string {
    return this.dialect.ident(name);
  }

  /** A table: `schema` empty means the connection's default schema (one-part name). */
  protected table(n: TableName): string {
    return n.schema ? `${this.q(n.schema)}.${this.q(n.table)}` : this.q(n.table);
  }

  /** The copied rows with lineage: `__row_id` in file then copy order, `__row_number` within each file. */
  protected lineage(plan: ConversionPlan, names: ConversionNames): string[] {
    const q = (n: string) => this.q(n);
    return this.dialect.selectInto(
      this.table(names.rows),
      `${this.lineageColumns(plan)}, ROW_NUMBER() OVER (ORDER BY t.${q('__source_file')}, t.${q('__ordinal')}) AS ${q('__row_id')}, ROW_NUMBER() OVER (PARTITION BY t.${q('__source_file')} ORDER BY t.${q('__ordinal')}) AS ${q('__row_number')}`,
      `FROM (SELECT s.*, ${this.dialect.arrivalRowNumber} AS ${q('__ordinal')} FROM ${this.table(names.staged)} AS s) AS t`,
    );
  }

  /** The copied columns the lineage table keeps; here every mapped column as text (what `classifySynapse` reads). */
  protected lineageColumns(plan: ConversionPlan): string {
    const casts = synapseSources(plan).map((n) => `${this.dialect.textOf(`t.${this.q(n)}`)} AS ${this.q(n)}`);
    return `t.* EXCLUDE (${this.q('__ordinal')}) REPLACE (${casts.join(', ')})`;
  }

  /**
   * Classification for the Synapse path: the work table (outcome, reason, key, version, payload per row) and
   * `converted`, plus where the sink finds each value. By default the local `compile` over the lineage table, every
   * mapped column as text, a version equal to the applied one sent again (the Copy does not say which rows
   * Dataverse accepted, so applied versions are those of every row sent).
   */
  protected classifySynapse(plan: ConversionPlan, names: ConversionNames): SynapseClassification {
    const d = this.dialect;
    const compiled = this.compile(plan, {
      sources: synapseSources(plan).map((name) => ({ name, kind: 'text' })),
      appliedVersions: {
        kind: 'query',
        sql: `SELECT ${this.q('key')}, ${this.q('version')} FROM ${this.table(names.appliedVersions)} WHERE ${this.q('pipeline')} = ${d.param('pipeline')}`,
      },
      staleWhenEqual: false,
      tables: { staged: names.rows.table, work: names.work.table, converted: names.converted.table },
      keyParts: true,
    });
    const payload = (name: string) => `json_extract_string(w.__payload, ${d.literal(`$.${JSON.stringify(name)}`)})`;
    return {
      classify: compiled.classify.split(';\n'),
      converted: [compiled.converted],
      sink: {
        key: (i) => `w.__key_part_${i}`,
        value: (c) => sinkValue(c, payload(c.attribute)),
        lookup: (c) => {
          const bind = `COALESCE(${c.targets.map((t) => payload(`${t.navigationProperty}@odata.bind`)).join(', ')})`;
          const set = `regexp_extract(${bind}, '^/([^(]+)\\(', 1)`;
          return {
            set,
            pred: `NULLIF(regexp_extract(${bind}, '^/[^(]+\\((.*)\\)$', 1), '')`,
            target: `CASE ${set} ${c.targets.map((t) => `WHEN ${d.literal(t.entitySetName)} THEN ${d.literal(t.table)}`).join(' ')} END`,
          };
        },
      },
    };
  }

  /** The classification's rejects into the error store. */
  protected rejectsInsert(plan: ConversionPlan, names: ConversionNames): string {
    const d = this.dialect;
    const q = (n: string) => this.q(n);
    const byColumn = (value: (c: ColumnPlan) => string) =>
      `CASE c.${q('__reason_column')} ${plan.columns.map((col) => `WHEN ${col.index} THEN ${d.literal(value(col))}`).join(' ')} END`;
    return (
      `INSERT INTO ${this.table(names.rejects)} ${this.rejectColumns()} ` +
      `SELECT ${d.param('run_id')}, ${d.param('pipeline')}, ${d.literal('convert-to-dataverse')}, c.${q('__reason')}, CONCAT(${d.literal('Column `')}, ${byColumn((c) => c.attribute)}, ${d.literal('` (source `')}, ${byColumn((c) => c.sources.join(', '))}, ${d.literal('`) was rejected: ')}, c.${q('__reason')}, ${d.literal('; fix the source row or the mapping, then replay it.')}), c.${q('__key')}, c.${q('__source_file')}, c.${q('__row_number')}, ${d.rowJson('s')}, ${d.nowText} ` +
      `FROM ${this.table(names.work)} AS c INNER JOIN ${this.table(names.rows)} AS s ON s.${q('__row_id')} = c.${q('__row_id')} WHERE c.${q('__outcome')} = ${d.literal('reject')}`
    );
  }

  protected rejectColumns(): string {
    const cols = [
      'run_id',
      'pipeline',
      'stage',
      'reason',
      'message',
      'key',
      'source_file',
      'row_number',
      'row_json',
      'created_at',
    ];
    return `(${cols.map((c) => this.q(c)).join(', ')})`;
  }

  /**
   * The sink table the Copy activity reads: key attributes, payload attributes, lookups by alternate key resolved
   * to GUIDs through the key map (the Copy sink cannot bind `@odata.bind` by key); a lookup whose target is not in
   * the key map is rejected as `lookup.target_missing`.
   */
  protected sink(
    plan: ConversionPlan,
    names: ConversionNames,
    from: SinkSources,
    deferSelfLookups = false,
  ): { readonly sink: string[]; readonly sinkQuery: string } {
    const d = this.dialect;
    const q = (n: string) => this.q(n);
    const cols: string[] = [];
    const sinkNames: string[] = [];
    const joins: string[] = [];
    const missing: string[] = [];
    const sink = this.table(names.sink);
    const work = this.table(names.work);
    plan.key.forEach((k, i) => {
      cols.push(`${from.key(i)} AS ${q(k.attribute)}`);
      sinkNames.push(k.attribute);
    });
    for (const c of plan.columns) {
      if (!c.inPayload) continue;
      if (c.rule !== 'lookup') {
        cols.push(`${from.value(c)} AS ${q(c.attribute)}`);
        sinkNames.push(c.attribute);
        continue;
      }
      const { set, pred, target } = from.lookup(c);
      const km = `km${c.index}`;
      joins.push(
        `LEFT JOIN ${this.table(names.keymap)} AS ${km} ON ${km}.${q('entity_set')} = ${set} AND ${km}.${q('key_predicate')} = ${pred}`,
      );
      const id = `COALESCE(${d.tryGuid(pred)}, ${km}.${q('id')})`;
      // A target of the pipeline's own table that is a row of this run is written in this run: the lookup is sent
      // empty now and set in the second pass (`compileDeferredLookups`), as the local writer defers it.
      const own = deferSelfLookups ? c.targets.find((t) => t.table === plan.table && t.key !== null) : undefined;
      const deferred = own
        ? `${pred} IS NOT NULL AND ${id} IS NULL AND ${set} = ${d.literal(own.entitySetName)} AND EXISTS (SELECT 1 FROM ${work} AS p WHERE p.${q('__outcome')} = ${d.literal('ok')} AND p.${q('__key_predicate')} = ${pred})`
        : undefined;
      cols.push(`${id} AS ${q(c.attribute)}`);
      sinkNames.push(c.attribute);
      if (c.targets.length > 1 || c.tableFrom) {
        cols.push(
          `${deferred ? `CASE WHEN ${deferred} THEN NULL ELSE ${target} END` : target} AS ${q(`${c.attribute}@EntityReference`)}`,
        );
        sinkNames.push(`${c.attribute}@EntityReference`);
      }
      if (deferred) cols.push(`CASE WHEN ${deferred} THEN ${pred} END AS ${q(deferColumn(c.index))}`);
      missing.push(
        `WHEN ${pred} IS NOT NULL AND ${id} IS NULL${deferred ? ` AND NOT (${deferred})` : ''} THEN CONCAT(${d.literal(`Lookup \`${c.attribute}\` target `)}, ${set}, ${d.literal('(')}, ${pred}, ${d.literal(') is not in the key map of Dataverse; load the parent first, then replay this row.')})`,
      );
    }
    return {
      sink: [
        ...d.selectInto(
          sink,
          `w.${q('__row_id')}, ${missing.length ? `CASE ${missing.join(' ')} END` : d.nullText} AS ${q('__missing')}, ${cols.join(', ')}`,
          `FROM ${work} AS w${joins.length ? ` ${joins.join(' ')}` : ''} WHERE w.${q('__outcome')} = ${d.literal('ok')}`,
        ),
        ...(deferSelfLookups ? this.deferredTargetsRejected(plan, sink, work) : []),
        // The source row goes with the reject (as with the classification's rejects), so a replay can convert it again.
        `INSERT INTO ${this.table(names.rejects)} ${this.rejectColumns()} SELECT ${d.param('run_id')}, ${d.param('pipeline')}, ${d.literal('convert-to-dataverse')}, ${d.literal('lookup.target_missing')}, s.${q('__missing')}, w.${q('__key')}, w.${q('__source_file')}, w.${q('__row_number')}, ${d.rowJson('r')}, ${d.nowText} FROM ${sink} AS s INNER JOIN ${work} AS w ON w.${q('__row_id')} = s.${q('__row_id')} INNER JOIN ${this.table(names.rows)} AS r ON r.${q('__row_id')} = s.${q('__row_id')} WHERE s.${q('__missing')} IS NOT NULL`,
        `DELETE FROM ${sink} WHERE ${q('__missing')} IS NOT NULL`,
      ],
      sinkQuery: `SELECT ${sinkNames.map(q).join(', ')} FROM ${sink}`,
    };
  }

  /**
   * Saves the version of every row sent as the applied version of its key (run after the sink succeeded), so an
   * older version arriving later is skipped as `stale`; an equal one is sent again.
   */
  protected saveVersions(names: ConversionNames): string[] {
    const d = this.dialect;
    const q = (n: string) => this.q(n);
    const fresh = { schema: '', table: `${names.work.table}_versions` };
    return [
      ...d.selectInto(
        this.table(fresh),
        `${d.param('pipeline')} AS ${q('pipeline')}, c.${q('__key_predicate')} AS ${q('key')}, MAX(c.${q('__version')}) AS ${q('version')}, ${d.param('run_id')} AS ${q('run_id')}`,
        `FROM ${this.table(names.converted)} AS c INNER JOIN ${this.table(names.sink)} AS s ON s.${q('__row_id')} = c.${q('__row_id')} WHERE c.${q('__version')} IS NOT NULL GROUP BY c.${q('__key_predicate')}`,
      ),
      d.upsert({
        target: names.appliedVersions,
        source: fresh,
        keys: ['pipeline', 'key'],
        columns: ['version', 'run_id'],
        versionColumn: 'version',
      }),
    ];
  }
}

/** The key map's key column length (an index key in Azure SQL: at most 1,700 bytes); longer keys are not mapped. */
const KEYMAP_KEY_LENGTH = (() => {
  const type = STATE_TABLES.find((t) => t.name === 'keymap')?.columns.find((c) => c.name === 'key_predicate')?.type;
  return type?.kind === 'text' && typeof type.length === 'number' ? type.length : 850;
})();

/** Every source column the conversion reads, the change timestamp included. */
function synapseSources(plan: ConversionPlan): string[] {
  return [...new Set([...plan.sourceColumns, plan.changeTimestamp])];
}

/** Lookup targets by alternate key, each once, by table name (their id attribute is filled in from the metadata). */
export function keymapTargetsOf(plan: ConversionPlan): KeymapTarget[] {
  const targets = new Map<string, KeymapTarget>();
  for (const c of plan.columns) {
    if (!c.inPayload || c.rule !== 'lookup') continue;
    for (const t of c.targets) {
      if (t.key && !targets.has(t.table)) {
        targets.set(t.table, {
          table: t.table,
          entitySet: t.entitySetName,
          idAttribute: '',
          keyAttributes: t.key.map((x) => x.attribute),
        });
      }
    }
  }
  return [...targets.values()].sort((x, y) => x.table.localeCompare(y.table));
}

/** A payload value (JSON text) as the typed column the Copy activity reads. */
function sinkValue(c: ColumnPlan, json: string): string {
  switch (c.rule) {
    case 'integer':
      return `CAST(${json} AS BIGINT)`;
    case 'choice':
      return `CAST(${json} AS INTEGER)`;
    case 'decimal':
      return `CAST(${json} AS DECIMAL(38,${c.precision}))`;
    case 'double':
      return `CAST(${json} AS DOUBLE)`;
    case 'boolean':
      return `CAST(${json} AS BOOLEAN)`;
    default:
      return json;
  }
}

/** Where the sink finds each value in the work table (`w`). */
export interface SinkSources {
  /** The text of own-key part `i`. */
  key(i: number): string;
  /** A payload column's value, typed. */
  value(column: ColumnPlan): string;
  /** A lookup's chosen target: entity set, key predicate (or GUID) and table name. */
  lookup(column: ColumnPlan & { rule: 'lookup' }): {
    readonly set: string;
    readonly pred: string;
    readonly target: string;
  };
}

/** What `classifySynapse` gives: its statements and where the sink finds each value. */
export interface SynapseClassification {
  readonly classify: string[];
  readonly converted: string[];
  readonly sink: SinkSources;
}

/** The Synapse export's conversion, statement lists in run order. */
export interface CompiledSynapseConversion {
  /** Adds lineage (`__row_id`, `__row_number`) to the copied rows. */
  readonly lineage: string[];
  /** Builds the work table: outcome, reason, reason column, key, version and payload per row. */
  readonly classify: string[];
  /** Builds `converted` (rows to send: outcome `ok`). */
  readonly converted: string[];
  /** Inserts the rejected rows into the error store; parameters `run_id`, `pipeline`. */
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

/** Source kinds each rule can read; others are refused up front instead of rejecting every row. */
const READABLE: Readonly<Record<ColumnPlan['rule'], readonly SourceKind[]>> = {
  string: SOURCE_KINDS,
  integer: ['text', 'integer', 'decimal', 'float', 'other'],
  decimal: ['text', 'integer', 'decimal', 'float', 'other'],
  double: ['text', 'integer', 'decimal', 'float', 'other'],
  boolean: ['text', 'integer', 'boolean', 'other'],
  datetime: ['text', 'timestamp', 'timestamptz', 'date', 'other'],
  guid: ['text', 'uuid', 'other'],
  choice: ['text', 'integer', 'other'],
  multiselect: ['text', 'other'],
  lookup: ['text', 'integer', 'uuid', 'other'],
};

/** Checks that every mapped source column has a type its rule can read; throws `mapping.source_type` otherwise. */
export function checkSourceTypes(plan: ConversionPlan, sources: readonly SourceColumn[]): void {
  const byName = new Map(sources.map((s) => [s.name, s]));
  for (const column of plan.columns) {
    for (const name of column.sources) {
      const source = byName.get(name);
      if (!source || READABLE[column.rule].includes(source.kind)) continue;
      throw new FerryError(
        'mapping.source_type',
        `Source column \`${name}\` is ${source.kind}, which cannot become ${column.attributeType} \`${plan.table}.${column.attribute}\`; map another column or cast it in the source.`,
      );
    }
  }
  const change = byName.get(plan.changeTimestamp);
  if (change && !['text', 'timestamp', 'timestamptz', 'date', 'integer', 'other'].includes(change.kind)) {
    throw new FerryError(
      'mapping.change_timestamp',
      `Change timestamp \`${plan.changeTimestamp}\` is ${change.kind}; use a timestamp, date, ISO text or integer version column.`,
    );
  }
}
