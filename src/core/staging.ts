import type { SqlDialect } from '../dialects/sql-dialect.js';

/** A row as JavaScript values (bigint for BIGINT/HUGEINT, string for DECIMAL via JS conversion, Date-free). */
export type Row = Record<string, unknown>;

/**
 * The set-based SQL engine a run stages its rows in. The embedded default is DuckDB
 * (`src/dialects/duckdb/driver.ts`); Azure SQL implements the same for the T-SQL dialect.
 */
export interface StagingEngine {
  /** The SQL dialect the engine runs: the compiler's hooks and what the engine can do. */
  readonly dialect: SqlDialect;
  /** Runs a statement, discarding any result. */
  run(sql: string, params?: readonly unknown[]): Promise<void>;
  /** Runs a query and returns every row. Only for small results: large ones use `stream`. */
  all<T extends Row = Row>(sql: string, params?: readonly unknown[]): Promise<T[]>;
  /** Runs a query and yields its rows in chunks (DuckDB: 2,048 rows a chunk). */
  stream<T extends Row = Row>(sql: string, params?: readonly unknown[]): AsyncIterable<T[]>;
  close(): Promise<void>;
}
