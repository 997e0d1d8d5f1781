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
