import sql from 'mssql';
import { FerryError } from '../../core/errors.js';
import type { Row, StagingEngine } from '../../core/staging.js';
import type { SqlDialect } from '../sql-dialect.js';
import { tsqlDialect } from './conversion.js';

/**
 * Azure SQL / SQL Server as the staging engine (the T-SQL dialect). Parameters are bound as `@p1`, `@p2`, ... in
 * order; the statements this dialect generates use named parameters (`@run_id`, `@pipeline`) through `runNamed`.
 */
export class TsqlStaging implements StagingEngine {
  readonly dialect: SqlDialect = tsqlDialect;
  #pool: sql.ConnectionPool;

  private constructor(pool: sql.ConnectionPool) {
    this.#pool = pool;
  }

  /** Connects with an ADO-style connection string or an `mssql://user:password@host:port/database` URL. */
  static async open(connection: string): Promise<TsqlStaging> {
    try {
      const pool = new sql.ConnectionPool(connection);
      await pool.connect();
      return new TsqlStaging(pool);
    } catch (error) {
      throw new FerryError(
        'staging.connect',
        `Cannot connect to SQL Server (${(error as Error).message}); check FERRY_MSSQL_URL (e.g. \`Server=localhost,1433;Database=ferry;User Id=sa;Password=...;TrustServerCertificate=true\`).`,
        { cause: error },
      );
    }
  }

  #request(params?: readonly unknown[]): sql.Request {
    const request = this.#pool.request();
    for (const [i, p] of (params ?? []).entries()) request.input(`p${i + 1}`, p as never);
    return request;
  }

  async run(text: string, params?: readonly unknown[]): Promise<void> {
    try {
      // `batch` runs the text as is (needed for DDL batches); bound parameters need `query` (sp_executesql).
      if (params && params.length > 0) await this.#request(params).query(text);
      else await this.#request().batch(text);
    } catch (error) {
      throw mapMssqlError(error, text);
    }
  }

  /** Runs a statement with named parameters (`@run_id` → `{ run_id: '...' }`). */
  async runNamed(text: string, params: Record<string, unknown>): Promise<Row[]> {
    const request = this.#pool.request();
    for (const [k, v] of Object.entries(params)) request.input(k, v as never);
    try {
      const result = await request.query(text);
      return (result.recordset ?? []) as Row[];
    } catch (error) {
      throw mapMssqlError(error, text);
    }
  }

  async all<T extends Row = Row>(text: string, params?: readonly unknown[]): Promise<T[]> {
    try {
      const result = await this.#request(params).query(text);
      return (result.recordset ?? []) as unknown as T[];
    } catch (error) {
      throw mapMssqlError(error, text);
    }
  }

  async *stream<T extends Row = Row>(text: string, params?: readonly unknown[]): AsyncIterable<T[]> {
    // Small staging reads only: the rows arrive in one result and are handed out in chunks of 2,048.
    const rows = await this.all<T>(text, params);
    for (let i = 0; i < rows.length; i += 2048) yield rows.slice(i, i + 2048);
  }

  async close(): Promise<void> {
    await this.#pool.close();
  }
}

/** mssql errors become FerryErrors naming the statement; deadlocks and timeouts are retryable. */
export function mapMssqlError(error: unknown, text: string): FerryError {
  const e = error as { message?: string; number?: number; code?: string };
  const head = text.length > 300 ? `${text.slice(0, 300)}…` : text;
  const retry = e.number === 1205 || e.code === 'ETIMEOUT' || e.code === 'ESOCKET';
  return new FerryError(
    retry ? 'staging.unavailable' : 'staging.sql',
    `SQL Server failed: ${e.message ?? String(error)}\n  while running: ${head}`,
    { cause: error },
  );
}
