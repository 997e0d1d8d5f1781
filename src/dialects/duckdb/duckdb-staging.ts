import {
  type DuckDBConnection,
  DuckDBInstance,
  DuckDBTypeId,
  type DuckDBValueConverter,
  JSDuckDBValueConverter,
} from '@duckdb/node-api';
import { FerryError } from '../../core/errors.js';
import type { Row, StagingEngine } from '../../core/staging.js';

export interface DuckDbStagingOptions {
  /** Database file; `:memory:` keeps everything in memory. Default `:memory:`. */
  readonly path?: string;
  /** DuckDB `memory_limit`, e.g. `512MB`. Spills to `temp_directory` beyond it. Default `1GB`. */
  readonly memoryLimit?: string;
  /** Where DuckDB may spill. Default: DuckDB's own (next to the database file). */
  readonly tempDirectory?: string;
  /** Worker threads. Default: DuckDB's own (the number of cores). */
  readonly threads?: number;
}

/**
 * The embedded staging engine: one DuckDB database per run, open only while the run needs it.
 * DuckDB locks its file against every other process, so nothing shared between processes lives here.
 */
export class DuckDbStaging implements StagingEngine {
  readonly dialect = 'duckdb' as const;
  #instance: DuckDBInstance;
  #connection: DuckDBConnection;

  private constructor(instance: DuckDBInstance, connection: DuckDBConnection) {
    this.#instance = instance;
    this.#connection = connection;
  }

  /** Opens (or creates) a staging database. */
  static async open(options: DuckDbStagingOptions = {}): Promise<DuckDbStaging> {
    const settings: Record<string, string> = { memory_limit: options.memoryLimit ?? '1GB' };
    if (options.tempDirectory) settings.temp_directory = options.tempDirectory;
    if (options.threads) settings.threads = String(options.threads);
    try {
      const instance = await DuckDBInstance.create(options.path ?? ':memory:', settings);
      const connection = await instance.connect();
      return new DuckDbStaging(instance, connection);
    } catch (error) {
      throw mapDuckDbError(error, `opening staging database \`${options.path ?? ':memory:'}\``);
    }
  }

  async run(sql: string, params?: readonly unknown[]): Promise<void> {
    try {
      await this.#connection.run(sql, params as never);
    } catch (error) {
      throw mapDuckDbError(error, sql);
    }
  }

  async all<T extends Row = Row>(sql: string, params?: readonly unknown[]): Promise<T[]> {
    try {
      const reader = await this.#connection.runAndReadAll(sql, params as never);
      return reader.convertRowObjects(exactJsConverter) as T[];
    } catch (error) {
      throw mapDuckDbError(error, sql);
    }
  }

  async *stream<T extends Row = Row>(sql: string, params?: readonly unknown[]): AsyncIterable<T[]> {
    let result: Awaited<ReturnType<DuckDBConnection['stream']>>;
    try {
      result = await this.#connection.stream(sql, params as never);
    } catch (error) {
      throw mapDuckDbError(error, sql);
    }
    for await (const rows of result.yieldConvertedRowObjects(exactJsConverter)) {
      yield rows as T[];
    }
  }

  /** The raw connection, for code under `src/dialects/duckdb/` that needs DuckDB-only APIs (appender). */
  get connection(): DuckDBConnection {
    return this.#connection;
  }

  async close(): Promise<void> {
    this.#connection.closeSync();
    this.#instance.closeSync();
  }
}

const EXACT_AS_TEXT = new Set<number>([
  DuckDBTypeId.DECIMAL,
  DuckDBTypeId.TIMESTAMP,
  DuckDBTypeId.TIMESTAMP_TZ,
  DuckDBTypeId.TIMESTAMP_S,
  DuckDBTypeId.TIMESTAMP_MS,
  DuckDBTypeId.TIMESTAMP_NS,
  DuckDBTypeId.DATE,
]);

/**
 * JavaScript values, except that DECIMAL and date/time values come back as their exact text: the stock JS
 * converter turns decimals into doubles (123456789012345678.0000000001 → 123456789012345680) and timestamps into
 * millisecond Dates.
 */
const exactJsConverter: DuckDBValueConverter<unknown> = (value, type, converter) =>
  value !== null && EXACT_AS_TEXT.has(type.typeId)
    ? String(value)
    : JSDuckDBValueConverter(value, type, converter as never);

/** DuckDB errors become FerryErrors naming the statement, so a failing generated query can be found. */
export function mapDuckDbError(error: unknown, sql: string): FerryError {
  const message = error instanceof Error ? error.message : String(error);
  const head = sql.length > 300 ? `${sql.slice(0, 300)}…` : sql;
  return new FerryError('staging.sql', `DuckDB failed: ${message}\n  while running: ${head}`, { cause: error });
}

/** SQL string literal for DuckDB (single quotes doubled). */
export function duckLiteral(value: string): string {
  return `'${value.replaceAll("'", "''")}'`;
}

/** Quoted DuckDB identifier. */
export function duckIdent(name: string): string {
  return `"${name.replaceAll('"', '""')}"`;
}
