import { STATE_TABLES, type StateColumnType } from '../state-schema.js';
import { duckIdent, duckLiteral } from './driver.js';

/**
 * DuckDB staging SQL besides the conversion: the state and error store tables (`STATE_TABLES`, for a database that
 * stands in for Azure SQL), and the small statements stages and replay run on the per-run staging database.
 */

/** `schema.table`, quoted. */
export function duckTable(schema: string, table: string): string {
  return schema ? `${duckIdent(schema)}.${duckIdent(table)}` : duckIdent(table);
}

/** The current UTC time as ISO text (`YYYY-MM-DDTHH:MM:SS.ffffff`), as the state tables store times. */
export const DUCK_NOW_TEXT = `strftime(timezone('UTC', current_timestamp), '%Y-%m-%dT%H:%M:%S.%f')`;

/** The state store and error store tables in schema `schema` (idempotent). */
export function stateSchemaStatements(schema: string): string[] {
  const out = [`CREATE SCHEMA IF NOT EXISTS ${duckIdent(schema)}`];
  for (const table of STATE_TABLES) {
    const identity = table.columns.find((c) => c.type.kind === 'bigint' && c.type.identity);
    const sequence = identity ? duckTable(schema, `${table.name}_${identity.name}_seq`) : '';
    if (identity) out.push(`CREATE SEQUENCE IF NOT EXISTS ${sequence}`);
    const columns = table.columns.map((c) => {
      const fallback =
        c === identity
          ? ` DEFAULT nextval(${duckLiteral(`${schema}.${table.name}_${identity.name}_seq`)})`
          : c.default === undefined
            ? ''
            : c.default === 'now'
              ? ' DEFAULT current_timestamp'
              : ` DEFAULT ${duckLiteral(c.default.text)}`;
      return `${duckIdent(c.name)} ${duckType(c.type)}${c.nullable ? '' : ' NOT NULL'}${fallback}`;
    });
    out.push(
      `CREATE TABLE IF NOT EXISTS ${duckTable(schema, table.name)} (${[...columns, `PRIMARY KEY (${table.primaryKey.map(duckIdent).join(', ')})`].join(', ')})`,
    );
    for (const index of table.indexes ?? [])
      out.push(
        `CREATE INDEX IF NOT EXISTS ${duckIdent(index.name)} ON ${duckTable(schema, table.name)} (${index.columns.map(duckIdent).join(', ')})`,
      );
  }
  return out;
}

function duckType(type: StateColumnType): string {
  switch (type.kind) {
    case 'text':
      return 'VARCHAR';
    case 'bigint':
      return 'BIGINT';
    case 'uuid':
      return 'UUID';
    case 'timestamp':
      return 'TIMESTAMP';
  }
}

/** Statements of a replay run (src/schedule/replay.ts): the rejected rows staged again with their lineage. */
export const replaySql = {
  /** The places (file, row number) of the rows to replay. */
  placesTable: 'CREATE TEMP TABLE __replay_rows (f VARCHAR, n BIGINT)',
  /** Inserts places, 1,000 per statement. */
  insertPlaces(places: readonly { readonly file: string; readonly row: number }[]): string[] {
    const out: string[] = [];
    for (let i = 0; i < places.length; i += 1000) {
      const values = places.slice(i, i + 1000).map((p) => `(${duckLiteral(p.file)}, ${p.row})`);
      out.push(`INSERT INTO __replay_rows VALUES ${values.join(',')}`);
    }
    return out;
  },
  /** `staged` from a run's kept staged rows: those at the places, or with one of `rowIds` (rows without a place). */
  stageFromParquet(staged: string, file: string, rowIds: readonly bigint[]): string {
    const idFilter = rowIds.length ? ` OR __row_id IN (${rowIds.map((id) => id.toString()).join(',')})` : '';
    return `CREATE TABLE ${staged} AS SELECT * FROM read_parquet(${duckLiteral(file)})
           WHERE EXISTS (SELECT 1 FROM __replay_rows r WHERE r.f = __source_file AND r.n = __row_number)${idFilter}
           ORDER BY __row_id`;
  },
  /** `staged` from JSON lines written from the error store (source values and lineage). */
  stageFromJsonLines(staged: string, file: string): string {
    return `CREATE TABLE ${staged} AS SELECT * FROM read_json_auto(${duckLiteral(file)}) ORDER BY __row_id`;
  },
  /** The lineage of the staged rows Dataverse accepted (`upserted` ⋈ `staged`). */
  accepted(upserted: string, staged: string): string {
    return `SELECT s.__source_file AS f, s.__row_number AS n, s.__row_id AS id FROM ${upserted} u JOIN ${staged} s USING (__row_id)`;
  },
};

/** One row `(n)`: the rows of a table. */
export function countRowsSql(table: string): string {
  return `SELECT count(*) AS n FROM ${table}`;
}

/** Writes a table to a Parquet file. */
export function copyToParquetSql(table: string, file: string): string {
  return `COPY ${table} TO ${duckLiteral(file)} (FORMAT PARQUET)`;
}
