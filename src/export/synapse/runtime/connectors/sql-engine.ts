import { mkdirSync, readdirSync } from 'node:fs';
import type { DuckDbStaging } from '../../../../dialects/duckdb/driver.js';
import { duckIdent, duckLiteral } from '../../../../dialects/duckdb/driver.js';
import { bindStepParameters, type StepValue } from '../../../../dialects/sql-steps.js';
import type { Json } from '../expression/json-value.js';
import { ActivityError, UnsupportedError } from '../runtime-error.js';
import { deltaSelect, readDeltaTable } from './delta-table.js';
import { createSynapseLinkViews } from './serverless-sql.js';

/** One SQL step of an activity: a Script block, a Lookup or Copy source query, a `preCopyScript`. */
export interface SqlStep {
  readonly text: string;
  /** The plan step the statement was rendered from, when the artifact carries one (`-- ferry-step: <id>`). */
  readonly stepId?: string;
  /** Where it comes from, for messages: "Script `BeginRun` block 1". */
  readonly where: string;
  readonly linkedService: string;
  /** Script parameters (`@name` in the text), input direction only. */
  readonly parameters?: readonly { readonly name: string; readonly value: Json }[];
  /** Evaluates a pipeline expression in the activity's scope: the values of a step rendering's `$name` parameters. */
  readonly evaluate?: (expression: string) => Json;
}

export type SqlRow = Record<string, Json>;

export interface SqlResult {
  /** One entry per statement that returns rows. */
  readonly resultSets: { readonly columns: readonly string[]; readonly rows: readonly SqlRow[] }[];
  readonly recordsAffected: number;
}

/**
 * Executes the SQL of Script/Lookup/Copy steps for a linked service (Azure SQL, serverless SQL). The default
 * engine is a per-workspace DuckDB database; `duck` is that database, where Copy also moves its rows.
 */
export interface SqlEngine {
  execute(step: SqlStep): Promise<SqlResult>;
  /** The DuckDB text of a single-query step (Copy/Lookup source), parameters bound; refuses like `execute`. */
  render(step: SqlStep): string;
  readonly duck: DuckDbStaging;
}

/** A parameter of a step's DuckDB rendering: `$name`, valued by a pipeline expression in the activity's scope. */
export interface StepRenderingParameter {
  readonly name: string;
  readonly expression: string;
  readonly type: 'string' | 'number';
  /**
   * The value is a folder under this serverless external data source (e.g. `ferry_warehouse`): the runtime binds
   * its local path, and refuses a folder that already holds data, as CETAS does.
   */
  readonly dataSource?: string;
}

/** The DuckDB rendering of a plan step and what it needs bound. */
export interface StepRendering {
  readonly text: string;
  readonly parameters: readonly StepRenderingParameter[];
  /** Relations the rendering reads that the runtime provides: `synapse_link_<table>` over a Synapse Link container. */
  readonly synapseLinkTables?: readonly { readonly table: string; readonly format: 'csv' | 'delta' }[];
}

/**
 * The DuckDB rendering of a step, by step id (`-- ferry-step: <id>` in the artifact). A plain string is a rendering
 * with no `$` parameters.
 */
export type StepRenderings = (stepId: string) => StepRendering | string | undefined;

/** Local folders behind serverless external data sources and the Synapse Link container. */
export interface StepEnvironment {
  /** The local folder of `folder` under external data source `dataSource`; an unknown source is an error naming it. */
  dataSourcePath(dataSource: string, folder: string): string;
  /** The local folder of the Synapse Link container (what `ferry_synapse_link` points at). */
  synapseLinkDir(): string;
}

/** T-SQL constructs DuckDB cannot run, with their names for the refusal message. */
const TSQL_MARKERS: readonly [RegExp, string][] = [
  [/\[[A-Za-z_#@][\w ]*\]/, 'bracket-quoted identifiers'],
  [/(^|[^\w'])N'/, "N'…' literals"],
  [/\bSYSUTCDATETIME\s*\(/i, 'SYSUTCDATETIME()'],
  [/\bTRY_CONVERT\s*\(/i, 'TRY_CONVERT()'],
  [/\bCONVERT\s*\(/i, 'CONVERT()'],
  [/\bOBJECT_ID\s*\(/i, 'OBJECT_ID()'],
  [/\bDECLARE\s+@/i, 'DECLARE @variables'],
  [/\bEXEC(UTE)?\s*\(/i, 'EXEC()'],
  [/\bHOLDLOCK\b/i, 'HOLDLOCK hints'],
  [/\bOPENROWSET\s*\(/i, 'OPENROWSET()'],
  [/\bCREATE\s+EXTERNAL\s+TABLE\b/i, 'CREATE EXTERNAL TABLE (CETAS)'],
  [/\bNVARCHAR\b/i, 'NVARCHAR'],
  [/\bISNULL\s*\(/i, 'ISNULL()'],
  [/\bLEN\s*\(/i, 'LEN()'],
  [/\bFOR\s+JSON\b/i, 'FOR JSON'],
  [/\bTOP\s*\(?\s*\d/i, 'TOP n'],
  [/\bGETUTCDATE\s*\(/i, 'GETUTCDATE()'],
];

/** Names of the T-SQL-only constructs in a statement (empty when none is found). */
export function tsqlMarkers(text: string): string[] {
  return TSQL_MARKERS.filter(([re]) => re.test(text)).map(([, name]) => name);
}

/** `OPENROWSET(BULK 'path', DATA_SOURCE = 'source', FORMAT = 'DELTA')`, in plain or doubled-quote (dynamic) text. */
const DELTA_OPENROWSET =
  /OPENROWSET\s*\(\s*BULK\s+N?'+([^']+)'+\s*,\s*DATA_SOURCE\s*=\s*N?'+([^']+)'+\s*,\s*FORMAT\s*=\s*N?'+DELTA'+\s*\)/gi;

const STEP_ID = /(?:--|\/\*)\s*ferry-step:\s*([\w.:-]+)/;

/** The step id a statement carries, if any. */
export function stepIdOf(text: string): string | undefined {
  return STEP_ID.exec(text)?.[1];
}

/**
 * The default engine: runs a step on the workspace DuckDB database. A step with an id runs its DuckDB rendering;
 * a step without one runs as written only when it contains no T-SQL-only construct — otherwise it is refused with
 * an error naming the step and the constructs, never skipped.
 */
export class DuckDbSqlEngine implements SqlEngine {
  readonly duck: DuckDbStaging;
  readonly #renderings: StepRenderings | undefined;
  readonly #env: StepEnvironment | undefined;

  constructor(duck: DuckDbStaging, renderings?: StepRenderings, env?: StepEnvironment) {
    this.duck = duck;
    this.#renderings = renderings;
    this.#env = env;
  }

  render(step: SqlStep): string {
    const statements = this.#statements(step);
    if (statements.length !== 1)
      throw new ActivityError(
        'SqlMultipleStatements',
        `${step.where} must be one query, found ${statements.length} statements.`,
      );
    return statements[0]!;
  }

  async execute(step: SqlStep): Promise<SqlResult> {
    const rendering = this.#rendering(step);
    if (rendering && typeof rendering !== 'string') await this.#prepareRelations(step, rendering);
    const statements = this.#statements(step);
    const resultSets: { columns: string[]; rows: SqlRow[] }[] = [];
    let recordsAffected = 0;
    for (const sql of statements) {
      let rows: Record<string, unknown>[];
      try {
        rows = await this.duck.all(sql);
      } catch (error) {
        throw new ActivityError(
          'SqlFailed',
          `${step.where} failed on the workspace DuckDB database: ${error instanceof Error ? error.message : String(error)}`,
          { cause: error },
        );
      }
      if (/^\s*(INSERT|UPDATE|DELETE|MERGE)\b/i.test(sql)) {
        recordsAffected += Number(rows[0]?.Count ?? rows[0]?.count ?? 0);
      } else if (/^\s*(SELECT|WITH|FROM|VALUES|TABLE|SHOW|DESCRIBE|SUMMARIZE|PRAGMA|CALL)\b/i.test(sql)) {
        const converted = rows.map(toJsonRow);
        resultSets.push({ columns: rows[0] ? Object.keys(rows[0]) : [], rows: converted });
      }
    }
    return { resultSets, recordsAffected };
  }

  /** The step's DuckDB statements, parameters bound. */
  #statements(step: SqlStep): string[] {
    const rendering = this.#rendering(step);
    if (rendering === undefined) return splitStatements(bindParameters(step.text, step));
    if (typeof rendering === 'string') return splitStatements(rendering);
    const values: Record<string, StepValue> = {};
    for (const p of rendering.parameters) values[p.name] = this.#value(step, p);
    try {
      return splitStatements(bindStepParameters(rendering.text, values));
    } catch (error) {
      throw new ActivityError('SqlParameterMissing', `${step.where}: ${(error as Error).message}`);
    }
  }

  #value(step: SqlStep, p: StepRenderingParameter): StepValue {
    if (!step.evaluate)
      throw new ActivityError('SqlParameterMissing', `${step.where} cannot evaluate parameter \`$${p.name}\` here.`);
    const v = step.evaluate(p.expression);
    if (p.dataSource !== undefined) {
      if (!this.#env)
        throw new ActivityError(
          'SqlDataSourceUnknown',
          `${step.where} writes under external data source \`${p.dataSource}\`, and the runtime has no local folder for it.`,
        );
      const folder = String(v ?? '');
      const local = this.#env.dataSourcePath(p.dataSource, folder);
      // CETAS refuses a location that already holds data (create-external-table-as-select).
      let existing: string[] = [];
      try {
        existing = readdirSync(local);
      } catch {
        existing = [];
      }
      if (existing.length > 0)
        throw new ActivityError(
          'CetasLocationExists',
          `Cannot create external table. External table location already exists. Location provided: '${folder}'`,
        );
      mkdirSync(local, { recursive: true });
      return local;
    }
    if (v === null || typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean') {
      if (p.type === 'number' && typeof v === 'string' && v.trim() !== '' && Number.isFinite(Number(v)))
        return Number(v);
      return v;
    }
    return JSON.stringify(v);
  }

  /** Creates the relations a rendering reads (`synapse_link_<table>`) from the local Synapse Link container. */
  async #prepareRelations(step: SqlStep, rendering: StepRendering): Promise<void> {
    for (const t of rendering.synapseLinkTables ?? []) {
      if (!this.#env)
        throw new ActivityError(
          'SqlDataSourceUnknown',
          `${step.where} reads Synapse Link, and the runtime has no local container for it.`,
        );
      if (t.format === 'delta') {
        await this.#prepareDelta(step, t.table, this.#env);
        continue;
      }
      if (t.format !== 'csv')
        throw new UnsupportedError(
          `${step.where} reads Synapse Link format \`${t.format}\`, which the local runtime does not read.`,
        );
      // Only the window's completed folders are read, as serverless SQL eliminates the others by `filepath(1)`;
      // each folder's columns are bound and typed by its own model.json (serverless-sql.ts).
      const param = (n: string) => rendering.parameters.find((p) => p.name === n);
      const start = param('window_start') ? String(this.#value(step, param('window_start')!) ?? '') : '';
      const end = param('window_end') ? String(this.#value(step, param('window_end')!) ?? '') : '';
      await createSynapseLinkViews(this.duck, this.#env.synapseLinkDir(), t.table, start, end);
    }
  }

  /**
   * `synapse_link_<table>` over a Delta table, read where the artifact's T-SQL points serverless SQL:
   * `OPENROWSET(BULK '<root>/', DATA_SOURCE = '<source>', FORMAT = 'DELTA')` (quotes doubled when the statement is
   * built as text), the table's current snapshot (connectors/delta-table.ts).
   */
  async #prepareDelta(step: SqlStep, table: string, env: StepEnvironment): Promise<void> {
    const reads = [...step.text.matchAll(DELTA_OPENROWSET)].map((m) => ({ bulk: m[1]!, dataSource: m[2]! }));
    const distinct = [...new Set(reads.map((r) => `${r.dataSource}|${r.bulk}`))];
    if (distinct.length !== 1)
      throw new UnsupportedError(
        `${step.where} reads Synapse Link Delta for \`${table}\`, and its T-SQL has ${distinct.length} OPENROWSET(BULK …, FORMAT = 'DELTA') reads (${distinct.map((d) => `\`${d}\``).join(', ') || 'none'}); the local runtime binds exactly one.`,
      );
    const { bulk, dataSource } = reads[0]!;
    const snapshot = await readDeltaTable(this.duck, env.dataSourcePath(dataSource, bulk), bulk);
    await this.duck.run(
      `CREATE OR REPLACE TEMP VIEW ${duckIdent(`synapse_link_${table}`)} AS ${await deltaSelect(this.duck, snapshot)}`,
    );
  }

  #rendering(step: SqlStep): StepRendering | string | undefined {
    const id = step.stepId ?? stepIdOf(step.text);
    if (id !== undefined) {
      const rendering = this.#renderings?.(id);
      if (rendering === undefined) {
        throw new ActivityError(
          'SqlStepNotRunnable',
          `${step.where} names plan step \`${id}\`, which has no DuckDB rendering in this runtime; pass the step renderings of the export (\`stepRenderings\`) or run on Azure.`,
        );
      }
      return rendering;
    }
    const markers = tsqlMarkers(step.text);
    if (markers.length) {
      throw new ActivityError(
        'SqlStepNotRunnable',
        `${step.where} (linked service \`${step.linkedService}\`) is T-SQL (${markers.join(', ')}) and carries no plan step id, so the local runtime has no DuckDB rendering of it and refuses to run it. Statement starts: \`${step.text.slice(0, 120).replaceAll('\n', ' ')}\`.`,
      );
    }
    return undefined;
  }
}

/** `@name` parameters become DuckDB literals (Script parameters, input direction). */
function bindParameters(text: string, step: SqlStep): string {
  let out = text;
  for (const p of step.parameters ?? []) {
    const literal =
      p.value === null
        ? 'NULL'
        : typeof p.value === 'number' || typeof p.value === 'boolean'
          ? String(p.value)
          : duckLiteral(typeof p.value === 'string' ? p.value : JSON.stringify(p.value));
    out = out.replace(new RegExp(`@${p.name}\\b`, 'g'), literal);
  }
  const left = /@([A-Za-z_]\w*)/.exec(out.replace(/'(?:[^']|'')*'/g, "''"));
  if (left)
    throw new ActivityError(
      'SqlParameterMissing',
      `${step.where} uses \`@${left[1]}\`, which is not one of its script parameters.`,
    );
  return out;
}

/** Splits on `;` outside quotes and comments; empty statements are dropped. */
export function splitStatements(text: string): string[] {
  const out: string[] = [];
  let current = '';
  let quote: string | null = null;
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (quote) {
      current += c;
      if (c === quote) {
        // A doubled quote is an escaped quote inside the literal.
        if (text[i + 1] === quote) {
          i++;
          current += text[i];
        } else {
          quote = null;
        }
      }
      continue;
    }
    if (c === "'" || c === '"') quote = c;
    if (c === '-' && text[i + 1] === '-') {
      const end = text.indexOf('\n', i);
      i = end < 0 ? text.length : end;
      current += '\n';
      continue;
    }
    if (c === ';') {
      if (current.trim()) out.push(current.trim());
      current = '';
      continue;
    }
    current += c;
  }
  if (current.trim()) out.push(current.trim());
  return out;
}

/** DuckDB values as JSON: BigInt → number when exact, else its text. */
export function toJsonRow(row: Record<string, unknown>): SqlRow {
  const out: SqlRow = {};
  for (const [k, v] of Object.entries(row)) out[k] = toJson(v);
  return out;
}

export function toJson(v: unknown): Json {
  if (v === null || v === undefined) return null;
  if (typeof v === 'bigint') return Number.isSafeInteger(Number(v)) ? Number(v) : v.toString();
  if (typeof v === 'number' || typeof v === 'string' || typeof v === 'boolean') return v;
  if (v instanceof Date) return v.toISOString();
  if (Array.isArray(v)) return v.map(toJson);
  if (v instanceof Uint8Array) return Buffer.from(v).toString('base64');
  if (typeof v === 'object') {
    const o: Record<string, Json> = {};
    for (const [k, x] of Object.entries(v as object)) o[k] = toJson(x);
    return o;
  }
  return String(v);
}
