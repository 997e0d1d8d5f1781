import path from 'node:path';
import { type ConversionPlan, type DataverseMapping, planConversion } from '../../src/core/mapping.js';
import { loadAllMetadata, type TableMetadata } from '../../src/core/table-metadata.js';
import { duckdbDialect } from '../../src/dialects/duckdb/conversion.js';
import { DuckDbStaging, duckIdent, duckLiteral } from '../../src/dialects/duckdb/driver.js';
import { type AppliedVersionsSource, compileConversion } from '../../src/dialects/sql-dialect.js';
import { describeStaged } from '../../src/stages/convert-to-dataverse.js';

export const METADATA_DIR = path.resolve('fixtures/metadata');

let metadata: Map<string, TableMetadata> | undefined;
export async function fixtures(): Promise<Map<string, TableMetadata>> {
  metadata ??= await loadAllMetadata(METADATA_DIR);
  return metadata;
}

export async function plan(mapping: DataverseMapping): Promise<ConversionPlan> {
  return planConversion(mapping, await fixtures());
}

/** Column name → DuckDB type; rows as SQL literal texts or JS values (strings quoted, null, numbers, booleans). */
export type ColumnTypes = Record<string, string>;

function sqlValue(v: unknown): string {
  if (v === null || v === undefined) return 'NULL';
  if (typeof v === 'number' && !Number.isFinite(v)) return `'${String(v)}'`;
  if (typeof v === 'number' || typeof v === 'bigint') return String(v);
  if (typeof v === 'boolean') return v ? 'TRUE' : 'FALSE';
  return duckLiteral(String(v));
}

/** Creates `staged` with lineage columns from JS rows (row i → __row_id i+1, file `f1.parquet`). */
export async function stage(
  staging: DuckDbStaging,
  types: ColumnTypes,
  rows: readonly Record<string, unknown>[],
  file = 'f1.parquet',
): Promise<void> {
  const cols = Object.entries(types);
  await staging.run(
    `CREATE OR REPLACE TABLE staged (${cols.map(([n, t]) => `${duckIdent(n)} ${t}`).join(', ')}, __row_id BIGINT, __run_id VARCHAR, __source_file VARCHAR, __row_number BIGINT)`,
  );
  if (rows.length === 0) return;
  const values = rows.map(
    (r, i) =>
      `(${cols.map(([n, t]) => `CAST(${sqlValue(r[n])} AS ${t})`).join(', ')}, ${Number(r.__row_id ?? i + 1)}, 'run', ${duckLiteral(String(r.__source_file ?? file))}, ${Number(r.__row_number ?? i + 1)})`,
  );
  for (let i = 0; i < values.length; i += 500) {
    await staging.run(`INSERT INTO staged VALUES ${values.slice(i, i + 500).join(',\n')}`);
  }
}

export interface ConvertResult {
  converted: Array<{
    row: number;
    key: string;
    predicate: string;
    safe: boolean;
    version: string | null;
    payload: string;
  }>;
  rejects: Array<{ row: number; reason: string; column: number | null }>;
  counts: Record<string, number>;
}

/** Compiles and runs the conversion on the staged table and reads the outcome. */
export async function runConversion(
  staging: DuckDbStaging,
  p: ConversionPlan,
  applied: AppliedVersionsSource | null = null,
): Promise<ConvertResult> {
  const sources = await describeStaged(staging, duckdbDialect);
  const sql = compileConversion(p, duckdbDialect, { sources, appliedVersions: applied });
  await staging.run(sql.classify);
  await staging.run(sql.converted);
  const counts: Record<string, number> = {};
  for (const r of await staging.all(sql.counts)) counts[String(r.outcome)] = Number(r.n);
  const converted = (await staging.all('SELECT * FROM converted ORDER BY __row_id')).map((r) => ({
    row: Number(r.__row_id),
    key: String(r.__key),
    predicate: String(r.__key_predicate),
    safe: Boolean(r.__key_safe),
    version: r.__version === null ? null : String(r.__version),
    payload: String(r.__payload),
  }));
  const rejects = (await staging.all(sql.rejects)).map((r, i) => ({
    row: i,
    reason: String(r.__reason),
    column: r.__reason_column === null ? null : Number(r.__reason_column),
  }));
  // Row ids of rejects, via the work table (the rejects query orders by __row_id).
  const ids = await staging.all(`SELECT __row_id FROM __ferry_convert WHERE __outcome = 'reject' ORDER BY __row_id`);
  rejects.forEach((r, i) => {
    r.row = Number(ids[i]!.__row_id);
  });
  return { converted, rejects, counts };
}

/** Opens an in-memory DuckDB with one thread (tests share 2 cores). */
export function openStaging(): Promise<DuckDbStaging> {
  return DuckDbStaging.open({ threads: 1, memoryLimit: '256MB' });
}

/** Flat JSON object text → [name, raw value text] pairs, numbers kept as written (JSON.parse would round them). */
export function rawMembers(json: string): Array<[string, string]> {
  const out: Array<[string, string]> = [];
  let i = 1;
  const str = () => {
    const start = i;
    i++;
    while (json[i] !== '"') i += json[i] === '\\' ? 2 : 1;
    i++;
    return json.slice(start, i);
  };
  while (i < json.length - 1) {
    if (json[i] === ',') i++;
    const name = JSON.parse(str()) as string;
    i++; // ':'
    let value: string;
    if (json[i] === '"') value = JSON.stringify(JSON.parse(str()));
    else {
      const start = i;
      while (i < json.length - 1 && json[i] !== ',') i++;
      value = json.slice(start, i);
    }
    out.push([name, value]);
  }
  return out;
}

/** Compares two payloads: same members in the same order, same text, except Double columns compared as numbers. */
export function samePayload(a: string, b: string, doubles: ReadonlySet<string> = new Set()): boolean {
  const x = rawMembers(a);
  const y = rawMembers(b);
  if (x.length !== y.length) return false;
  return x.every(([n, v], i) => {
    const [m, w] = y[i]!;
    if (n !== m) return false;
    return v === w || (doubles.has(n) && Number(v) === Number(w));
  });
}

export type RowOutcome =
  | { reason: string; column: number | null }
  | { payload: string; key: string; predicate: string; safe: boolean };

/**
 * Stages the rows (each must have its own key), runs the SQL conversion, and returns each row's outcome; also checks
 * the reference converter agrees on every row.
 */
export async function convertRows(
  staging: DuckDbStaging,
  mapping: DataverseMapping,
  types: ColumnTypes,
  rows: readonly Record<string, unknown>[],
  referenceRows?: readonly Record<string, unknown>[],
): Promise<RowOutcome[]> {
  const { referenceConvert } = await import('../../src/core/reference-converter.js');
  const p = await plan(mapping);
  await stage(staging, types, rows);
  const result = await runConversion(staging, p);
  const byRow = new Map<number, RowOutcome>();
  for (const c of result.converted)
    byRow.set(c.row, { payload: c.payload, key: c.key, predicate: c.predicate, safe: c.safe });
  for (const r of result.rejects) byRow.set(r.row, { reason: r.reason, column: r.column });
  const doubles = new Set(p.columns.filter((c) => c.rule === 'double').map((c) => c.attribute));
  return rows.map((row, i) => {
    const got = byRow.get(i + 1);
    if (!got) throw new Error(`row ${i + 1} was neither converted nor rejected (superseded?)`);
    const ref = referenceConvert(p, (referenceRows ?? rows)[i]!, types);
    const agree = ref.ok
      ? 'payload' in got &&
        samePayload(got.payload, ref.payload, doubles) &&
        got.key === ref.key &&
        got.predicate === ref.keyPredicate &&
        got.safe === ref.keySafe
      : 'reason' in got && got.reason === ref.reason && got.column === ref.column;
    if (!agree) {
      throw new Error(
        `SQL and reference disagree on row ${i + 1} ${JSON.stringify(row, (_k, v) => (typeof v === 'bigint' ? `${v}n` : v))}:\n  sql ${JSON.stringify(got)}\n  ref ${JSON.stringify(ref)}`,
      );
    }
    return got;
  });
}
