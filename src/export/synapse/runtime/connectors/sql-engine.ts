import type { DuckDbStaging } from '../../../../dialects/duckdb/driver.js';
import { duckLiteral } from '../../../../dialects/duckdb/driver.js';
import type { Json } from '../expression/json-value.js';
import { ActivityError } from '../runtime-error.js';

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

/** The DuckDB rendering of a step, by step id (issue 11 makes every exported statement carry one). */
export type StepRenderings = (stepId: string) => string | undefined;

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

  constructor(duck: DuckDbStaging, renderings?: StepRenderings) {
    this.duck = duck;
    this.#renderings = renderings;
  }

  render(step: SqlStep): string {
    const statements = splitStatements(bindParameters(this.#duckText(step), step));
    if (statements.length !== 1)
      throw new ActivityError(
        'SqlMultipleStatements',
        `${step.where} must be one query, found ${statements.length} statements.`,
      );
    return statements[0]!;
  }

  async execute(step: SqlStep): Promise<SqlResult> {
    const text = this.#duckText(step);
    const statements = splitStatements(bindParameters(text, step));
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

  #duckText(step: SqlStep): string {
    const id = step.stepId ?? stepIdOf(step.text);
    if (id !== undefined) {
      const rendering = this.#renderings?.(id);
      if (rendering === undefined) {
        throw new ActivityError(
          'SqlStepNotRunnable',
          `${step.where} names plan step \`${id}\`, which has no DuckDB rendering in this runtime; pass the step renderings of the export (issue 11) or run on Azure.`,
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
    return step.text;
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
