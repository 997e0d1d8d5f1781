import { STATE_TABLES, type StateColumnType } from '../state-schema.js';

/**
 * Pure T-SQL text builders for the Azure SQL / SQL Server dialect: quoting, staging DDL, set-based loads, the state
 * and error-store schema (mirrors `src/connectors/state/sqlite-state-store.ts`), leases via `sp_getapplock`, and
 * MERGE upserts. Nothing here talks to a server; `driver.ts` runs the text with `mssql`.
 */

/** What T-SQL allows, as data: code asks the capability, never the dialect's name. */
export const TSQL_CAPABILITIES = {
  name: 'tsql',
  /** SQL Server rejects a request with more than 2,100 parameters. */
  maxParameters: 2100,
  /** A table value constructor (`INSERT ... VALUES`) takes at most 1,000 rows. */
  maxRowsPerInsertValues: 1000,
  /** Identifiers are at most 128 characters. */
  maxIdentifierLength: 128,
  /** Largest length an index key column may have (bytes in NVARCHAR = 2 × characters): 1,700 bytes → 850. */
  maxIndexedNvarcharLength: 850,
  supportsMerge: true,
  supportsForJsonPath: true,
} as const;

export type TsqlCapabilities = typeof TSQL_CAPABILITIES;

/** Quoted T-SQL identifier (`]` doubled). */
export function tsqlIdent(name: string): string {
  return `[${name.replaceAll(']', ']]')}]`;
}

/** Two-part name `[schema].[table]`; an empty schema gives the one-part name (the connection's default schema). */
export function tsqlTable(schema: string, table: string): string {
  return schema ? `${tsqlIdent(schema)}.${tsqlIdent(table)}` : tsqlIdent(table);
}

/** Unicode string literal (`N'...'`, single quotes doubled). */
export function tsqlLiteral(value: string): string {
  return `N'${value.replaceAll("'", "''")}'`;
}

/** A T-SQL literal for a JavaScript value; `null`/`undefined` → `NULL`. */
export function tsqlValue(value: unknown): string {
  if (value === null || value === undefined) return 'NULL';
  if (typeof value === 'bigint') return value.toString();
  if (typeof value === 'number') {
    if (!Number.isFinite(value)) return 'NULL';
    return String(value);
  }
  if (typeof value === 'boolean') return value ? '1' : '0';
  if (value instanceof Date) return tsqlLiteral(value.toISOString());
  return tsqlLiteral(String(value));
}

/** A staging column: name and T-SQL type text. */
export interface TsqlColumn {
  readonly name: string;
  readonly type: string;
  readonly nullable?: boolean;
}

/** `DROP TABLE IF EXISTS` then `CREATE TABLE` for a staging table; one statement each. */
export function stagingTableDdl(schema: string, table: string, columns: readonly TsqlColumn[]): string[] {
  const cols = columns.map((c) => `${tsqlIdent(c.name)} ${c.type} ${c.nullable === false ? 'NOT NULL' : 'NULL'}`);
  return [
    `DROP TABLE IF EXISTS ${tsqlTable(schema, table)}`,
    `CREATE TABLE ${tsqlTable(schema, table)} (${cols.join(', ')})`,
  ];
}

/**
 * Set-based load of rows into a table: `INSERT ... VALUES` statements of at most
 * `min(maxRowsPerInsertValues, floor(maxParameters / columns))` rows, so the same plan also fits parameterised sends.
 */
export function insertValuesStatements(
  schema: string,
  table: string,
  columns: readonly string[],
  rows: readonly (readonly unknown[])[],
  capabilities: Pick<TsqlCapabilities, 'maxParameters' | 'maxRowsPerInsertValues'> = TSQL_CAPABILITIES,
): string[] {
  if (columns.length === 0 || rows.length === 0) return [];
  const perStatement = rowsPerInsert(columns.length, capabilities);
  const head = `INSERT INTO ${tsqlTable(schema, table)} (${columns.map(tsqlIdent).join(', ')}) VALUES `;
  const out: string[] = [];
  for (let i = 0; i < rows.length; i += perStatement) {
    const chunk = rows.slice(i, i + perStatement);
    out.push(head + chunk.map((r) => `(${columns.map((_, j) => tsqlValue(r[j])).join(', ')})`).join(', '));
  }
  return out;
}

/** Rows per `INSERT ... VALUES` for a column count, bounded by both the row and the parameter limit. */
export function rowsPerInsert(
  columnCount: number,
  capabilities: Pick<TsqlCapabilities, 'maxParameters' | 'maxRowsPerInsertValues'> = TSQL_CAPABILITIES,
): number {
  return Math.max(
    1,
    Math.min(capabilities.maxRowsPerInsertValues, Math.floor(capabilities.maxParameters / Math.max(1, columnCount))),
  );
}

/** Options of a MERGE upsert from a source table into a target on key columns. */
export interface MergeOptions {
  readonly target: { readonly schema: string; readonly table: string };
  readonly source: { readonly schema: string; readonly table: string };
  readonly keys: readonly string[];
  /** Non-key columns to update and insert. */
  readonly columns: readonly string[];
  /**
   * Column that orders versions: an existing row is updated only when the source's value is greater or equal (an
   * equal version is re-applied so a repeated run after a crash converges).
   */
  readonly versionColumn?: string;
}

/**
 * A MERGE upsert (`WITH (HOLDLOCK)` so two concurrent merges cannot both insert the same key — the documented
 * race of MERGE without a serialisable range lock).
 */
export function mergeStatement(options: MergeOptions): string {
  const on = options.keys.map((k) => `tgt.${tsqlIdent(k)} = src.${tsqlIdent(k)}`).join(' AND ');
  const all = [...options.keys, ...options.columns];
  const set = options.columns.map((c) => `tgt.${tsqlIdent(c)} = src.${tsqlIdent(c)}`).join(', ');
  const version = options.versionColumn
    ? ` AND src.${tsqlIdent(options.versionColumn)} >= tgt.${tsqlIdent(options.versionColumn)}`
    : '';
  const matched = options.columns.length > 0 ? ` WHEN MATCHED${version} THEN UPDATE SET ${set}` : '';
  return (
    `MERGE INTO ${tsqlTable(options.target.schema, options.target.table)} WITH (HOLDLOCK) AS tgt` +
    ` USING ${tsqlTable(options.source.schema, options.source.table)} AS src ON ${on}${matched}` +
    ` WHEN NOT MATCHED BY TARGET THEN INSERT (${all.map(tsqlIdent).join(', ')})` +
    ` VALUES (${all.map((c) => `src.${tsqlIdent(c)}`).join(', ')});`
  );
}

/** The schema that holds ferry's state and error store in Azure SQL. Default `ferry`. */
export const STATE_SCHEMA = 'ferry';

/**
 * The state store and error store as T-SQL tables (`STATE_TABLES`: TEXT → NVARCHAR, INTEGER → BIGINT, JSON text →
 * NVARCHAR(MAX)). Idempotent.
 */
export function stateSchemaStatements(schema = STATE_SCHEMA): string[] {
  const exists = (name: string) => `IF OBJECT_ID(${tsqlLiteral(`${schema}.${name}`)}, N'U') IS NULL`;
  const out = [
    `IF SCHEMA_ID(${tsqlLiteral(schema)}) IS NULL EXEC(${tsqlLiteral(`CREATE SCHEMA ${tsqlIdent(schema)}`)})`,
  ];
  for (const table of STATE_TABLES) {
    const columns = table.columns.map((c) => {
      const identity = c.type.kind === 'bigint' && c.type.identity ? ' IDENTITY(1,1)' : '';
      const fallback =
        c.default === undefined
          ? ''
          : c.default === 'now'
            ? ' DEFAULT SYSUTCDATETIME()'
            : ` DEFAULT ${tsqlLiteral(c.default.text)}`;
      return `${tsqlIdent(c.name)} ${stateType(c.type)}${identity} ${c.nullable ? 'NULL' : 'NOT NULL'}${fallback}`;
    });
    const pk = `CONSTRAINT ${tsqlIdent(`pk_${table.name}`)} PRIMARY KEY (${table.primaryKey.map(tsqlIdent).join(', ')})`;
    out.push(`${exists(table.name)} CREATE TABLE ${tsqlTable(schema, table.name)} (${[...columns, pk].join(', ')})`);
    for (const index of table.indexes ?? []) {
      out.push(
        `IF NOT EXISTS (SELECT 1 FROM sys.indexes WHERE name = ${tsqlLiteral(index.name)} AND object_id = OBJECT_ID(${tsqlLiteral(`${schema}.${table.name}`)})) CREATE INDEX ${tsqlIdent(index.name)} ON ${tsqlTable(schema, table.name)} (${index.columns.map(tsqlIdent).join(', ')})`,
      );
    }
  }
  return out;
}

function stateType(type: StateColumnType): string {
  switch (type.kind) {
    case 'text':
      return `NVARCHAR(${type.length === 'max' ? 'MAX' : type.length})`;
    case 'bigint':
      return 'BIGINT';
    case 'uuid':
      return 'UNIQUEIDENTIFIER';
    case 'timestamp':
      return 'DATETIME2(3)';
  }
}

/** Lease resource name for a pipeline, shared by the local runner's lease names. */
export function leaseResource(pipeline: string): string {
  return `ferry:pipeline:${pipeline}`;
}

/**
 * Takes a pipeline lease with `sp_getapplock` (exclusive, session-owned, no wait): two statements on the same
 * session, the second returning one row `{ acquired: 0 | 1 }` (`APPLOCK_MODE` is `Exclusive` only when granted).
 * The lock lives as long as the session, so a crashed process releases it with its connection — no expiry needed.
 */
export function acquireLeaseSql(resource: string, timeoutMs = 0): string[] {
  return [
    `EXEC sp_getapplock @Resource = ${tsqlLiteral(resource)}, @LockMode = 'Exclusive', @LockOwner = 'Session', @LockTimeout = ${Math.max(0, Math.trunc(timeoutMs))}`,
    `SELECT CASE WHEN APPLOCK_MODE(N'public', ${tsqlLiteral(resource)}, N'Session') = N'Exclusive' THEN 1 ELSE 0 END AS [acquired]`,
  ];
}

/** Releases a lease taken by `acquireLeaseSql` on the same session. */
export function releaseLeaseSql(resource: string): string {
  return `EXEC sp_releaseapplock @Resource = ${tsqlLiteral(resource)}, @LockOwner = 'Session'`;
}

/**
 * Saves a pipeline cursor (upsert by pipeline and source). Parameters `@pipeline`, `@source`, `@value`, `@run_id`.
 */
export function saveCursorSql(schema = STATE_SCHEMA): string {
  return (
    `MERGE INTO ${tsqlTable(schema, 'cursors')} WITH (HOLDLOCK) AS tgt` +
    ` USING (SELECT @pipeline AS [pipeline], @source AS [source], @value AS [value], @run_id AS [run_id], CONVERT(NVARCHAR(40), SYSUTCDATETIME(), 127) AS [updated_at]) AS src` +
    ` ON tgt.[pipeline] = src.[pipeline] AND tgt.[source] = src.[source]` +
    ` WHEN MATCHED THEN UPDATE SET tgt.[value] = src.[value], tgt.[run_id] = src.[run_id], tgt.[updated_at] = src.[updated_at]` +
    ` WHEN NOT MATCHED BY TARGET THEN INSERT ([pipeline], [source], [value], [run_id], [updated_at]) VALUES (src.[pipeline], src.[source], src.[value], src.[run_id], src.[updated_at]);`
  );
}
