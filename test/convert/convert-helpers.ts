import path from 'node:path';
import { loadAllMetadata, type TableMetadata } from '../../src/connectors/dataverse/metadata-snapshot.js';
import { type ConversionPlan, type DataverseMapping, planConversion } from '../../src/core/mapping.js';
import { duckdbDialect } from '../../src/dialects/duckdb/conversion-sql.js';
import { DuckDbStaging, duckIdent, duckLiteral } from '../../src/dialects/duckdb/duckdb-staging.js';
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
  await staging.run(sql.cleanup);
  return { converted, rejects, counts };
}

/** Opens an in-memory DuckDB with one thread (tests share 2 cores). */
export function openStaging(): Promise<DuckDbStaging> {
  return DuckDbStaging.open({ threads: 1, memoryLimit: '256MB' });
}
