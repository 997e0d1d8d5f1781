import type { Lake } from '../../core/lake.js';
import type { StagingEngine } from '../../core/staging.js';
import { duckIdent, duckLiteral } from '../../dialects/duckdb/duckdb-staging.js';
import { type DeltaSnapshot, duckTypeOfDelta } from './delta-log.js';

/**
 * Stages the live rows of a Delta snapshot into `target` with `read_parquet([...])` over the live files, partition
 * columns filled from the log, every schema column cast to its Delta type (a column missing from older files is
 * NULL), plus `__folder` (`delta@<version>`) and `__source_file`. Returns the row count.
 */
export async function stageDeltaSnapshot(
  staging: StagingEngine,
  lake: Lake,
  snapshot: DeltaSnapshot,
  target: string,
): Promise<number> {
  const label = `delta@${snapshot.version}`;
  const defs = snapshot.fields.map((f) => `${duckIdent(f.name)} ${duckTypeOfDelta(f.type)}`);
  await staging.run(
    `CREATE OR REPLACE TABLE ${duckIdent(target)} (${[...defs, '__folder VARCHAR', '__source_file VARCHAR', '__bad VARCHAR'].join(', ')})`,
  );
  if (snapshot.files.length === 0) return 0;
  const locals: string[] = [];
  for (const f of snapshot.files) locals.push(await lake.toLocalPath(f.path));
  const list = `[${locals.map(duckLiteral).join(', ')}]`;
  const present = new Set(
    (
      await staging.all<{ column_name: string }>(`DESCRIBE SELECT * FROM read_parquet(${list}, union_by_name = true)`)
    ).map((r) => r.column_name),
  );
  // One VALUES row per live file: its lake path and partition values, joined on the file name DuckDB reports.
  // With column mapping, partition values are keyed by physical name too.
  const physical = snapshot.partitionColumns.map(
    (logical) => snapshot.fields.find((x) => x.name === logical)?.physicalName ?? logical,
  );
  const valuesRows = snapshot.files.map((f, i) => {
    const parts = physical.map((p) => f.partitionValues[p] ?? null);
    return `(${[duckLiteral(locals[i]!), duckLiteral(f.path), ...parts.map((v) => (v === null ? 'NULL' : duckLiteral(v)))].join(', ')})`;
  });
  const pvCols = ['__local', '__lake', ...snapshot.partitionColumns.map((_, i) => `__p${i}`)];
  const select = snapshot.fields.map((f) => {
    const type = duckTypeOfDelta(f.type);
    const pi = snapshot.partitionColumns.indexOf(f.name);
    if (pi >= 0) return `CAST(v.__p${pi} AS ${type}) AS ${duckIdent(f.name)}`;
    return present.has(f.physicalName)
      ? `CAST(d.${duckIdent(f.physicalName)} AS ${type}) AS ${duckIdent(f.name)}`
      : `NULL::${type} AS ${duckIdent(f.name)}`;
  });
  await staging.run(
    `INSERT INTO ${duckIdent(target)} BY NAME SELECT ${select.join(', ')}, ${duckLiteral(label)} AS __folder, v.__lake AS __source_file
     FROM read_parquet(${list}, union_by_name = true, filename = true) d
     JOIN (VALUES ${valuesRows.join(', ')}) v(${pvCols.join(', ')}) ON d.filename = v.__local`,
  );
  const [row] = await staging.all<{ n: bigint }>(`SELECT count(*) AS n FROM ${duckIdent(target)}`);
  return Number(row?.n ?? 0);
}
