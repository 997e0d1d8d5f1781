import { rmSync } from 'node:fs';
import path from 'node:path';
import {
  type DuckDBConnection,
  DuckDBInstance,
  DuckDBTypeId,
  type DuckDBValueConverter,
  JSDuckDBValueConverter,
} from '@duckdb/node-api';
import { DEFAULT_STAGING_MEMORY, type FerryConfig } from '../../core/config.js';
import { FerryError } from '../../core/errors.js';
import type { Row, StagingEngine } from '../../core/staging.js';
import type { SqlDialect } from '../sql-dialect.js';
import { duckdbDialect } from './conversion.js';

export interface DuckDbStagingOptions {
  /** Database file; `:memory:` keeps everything in memory. Default `:memory:`. */
  readonly path?: string;
  /** DuckDB `memory_limit`, e.g. `512MB`. Spills to `temp_directory` beyond it. Default `1GB`. */
  readonly memoryLimit?: string;
  /** Where DuckDB may spill. Default: DuckDB's own (next to the database file). */
  readonly tempDirectory?: string;
  /** Worker threads. Default: DuckDB's own (the number of cores). */
  readonly threads?: number;
  /**
   * DuckDB `preserve_insertion_order`. `false` lets large `CREATE TABLE AS`/`COPY` statements stream without
   * buffering to keep the input order (DuckDB's advice for larger-than-memory work); only for statements whose
   * result order does not matter or that say `ORDER BY`. Default: DuckDB's own (`true`).
   */
  readonly preserveInsertionOrder?: boolean;
  /** Delete the database file (and its WAL and spill folder) on close: a per-run database nothing reads later. */
  readonly deleteOnClose?: boolean;
}

/**
 * The embedded staging engine: one DuckDB database per run, open only while the run needs it.
 * DuckDB locks its file against every other process, so nothing shared between processes lives here.
 */
export class DuckDbStaging implements StagingEngine {
  readonly dialect: SqlDialect = duckdbDialect;
  #instance: DuckDBInstance;
  #connection: DuckDBConnection;
  #cleanup: (() => void) | undefined;

  private constructor(instance: DuckDBInstance, connection: DuckDBConnection) {
    this.#instance = instance;
    this.#connection = connection;
  }

  /** Opens (or creates) a staging database. */
  static async open(options: DuckDbStagingOptions = {}): Promise<DuckDbStaging> {
    const settings: Record<string, string> = { memory_limit: options.memoryLimit ?? '1GB' };
    if (options.tempDirectory) settings.temp_directory = options.tempDirectory;
    if (options.threads) settings.threads = String(options.threads);
    if (options.preserveInsertionOrder !== undefined)
      settings.preserve_insertion_order = String(options.preserveInsertionOrder);
    try {
      const instance = await DuckDBInstance.create(options.path ?? ':memory:', settings);
      const connection = await instance.connect();
      const staging = new DuckDbStaging(instance, connection);
      if (options.deleteOnClose && options.path && options.path !== ':memory:') {
        const file = options.path;
        const spill = options.tempDirectory;
        staging.#cleanup = () => {
          for (const f of [file, `${file}.wal`]) rmSync(f, { force: true });
          if (spill) rmSync(spill, { recursive: true, force: true });
        };
      }
      return staging;
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
    this.#cleanup?.();
    this.#cleanup = undefined;
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

/** The environment variable (and config value `stagingMemory`) that sets the staging engine's memory limit. */
export const STAGING_MEMORY_ENV = 'FERRY_STAGING_MEMORY';

/**
 * DuckDB errors become FerryErrors naming the statement, so a failing generated query can be found. Running out of
 * memory is not a fault of the statement: it gets its own code and names the setting that raises the limit.
 */
export function mapDuckDbError(error: unknown, sql: string): FerryError {
  const message = error instanceof Error ? error.message : String(error);
  const head = sql.length > 300 ? `${sql.slice(0, 300)}…` : sql;
  if (isOutOfMemory(message)) {
    return new FerryError(
      'staging.out_of_memory',
      `The DuckDB staging database ran out of memory (${message.split('\n')[0]}). Raise its limit with \`${STAGING_MEMORY_ENV}\` (e.g. \`${STAGING_MEMORY_ENV}=2GB\`, config value \`stagingMemory\`) or give the machine more memory, then run again.\n  while running: ${head}`,
      { cause: error },
    );
  }
  return new FerryError('staging.sql', `DuckDB failed: ${message}\n  while running: ${head}`, { cause: error });
}

/** DuckDB's out-of-memory errors (`Out of Memory Error: ...`, or a failed allocation). */
export function isOutOfMemory(message: string): boolean {
  return /out of memory/i.test(message) || /failed to allocate/i.test(message);
}

/** SQL string literal for DuckDB (single quotes doubled). */
export function duckLiteral(value: string): string {
  return `'${value.replaceAll("'", "''")}'`;
}

/** Quoted DuckDB identifier. */
export function duckIdent(name: string): string {
  return `"${name.replaceAll('"', '""')}"`;
}

/**
 * A database file per run in the run folder, with a memory limit and a spill folder beside it, deleted when the run
 * ends: DuckDB can evict a file-backed table's blocks and spill sorts, joins and aggregates, so a window of tens of
 * millions of rows stays within the limit instead of failing (an in-memory database must keep every table in memory).
 */
export async function openRunStaging(
  runDir: string,
  config: Pick<FerryConfig, 'stagingMemory'>,
): Promise<StagingEngine> {
  return DuckDbStaging.open({
    path: path.join(runDir, 'staging.duckdb'),
    memoryLimit: config.stagingMemory ?? DEFAULT_STAGING_MEMORY,
    tempDirectory: path.join(runDir, 'spill'),
    deleteOnClose: true,
  });
}
