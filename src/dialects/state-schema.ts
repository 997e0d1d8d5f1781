/**
 * The state store and error store as tables, dialect-neutral: column for column the SQLite schema of
 * `src/connectors/state/sqlite-state-store.ts`, plus the applied versions and the key map the Synapse path keeps in
 * its database. `dialects/tsql/staging.ts` and `dialects/duckdb/staging.ts` render it.
 */

/** A column type: text of at most `length` characters (`max`: unbounded), a 64-bit integer, a GUID, a UTC time. */
export type StateColumnType =
  | { readonly kind: 'text'; readonly length: number | 'max' }
  | { readonly kind: 'bigint'; readonly identity?: boolean }
  | { readonly kind: 'uuid' }
  | { readonly kind: 'timestamp' };

export interface StateColumn {
  readonly name: string;
  readonly type: StateColumnType;
  readonly nullable?: boolean;
  /** A default: a text value, or the current UTC time. */
  readonly default?: { readonly text: string } | 'now';
}

export interface StateTable {
  readonly name: string;
  readonly columns: readonly StateColumn[];
  readonly primaryKey: readonly string[];
  readonly indexes?: readonly { readonly name: string; readonly columns: readonly string[] }[];
}

const text = (length: number | 'max'): StateColumnType => ({ kind: 'text', length });
const c = (name: string, type: StateColumnType, extra: Partial<StateColumn> = {}): StateColumn => ({
  name,
  type,
  ...extra,
});
const BIGINT: StateColumnType = { kind: 'bigint' };
const NULL = { nullable: true } as const;

// Key columns are at most 450/850 characters because SQL Server limits index keys to 1,700 bytes (2 per character).
export const STATE_TABLES: readonly StateTable[] = [
  {
    name: 'runs',
    columns: [
      c('id', text(200)),
      c('pipeline', text(200)),
      c('mode', text(20)),
      c('status', text(30)),
      c('window_json', text('max')),
      c('started_at', text(40)),
      c('finished_at', text(40), NULL),
      c('duration_ms', BIGINT, NULL),
      c('counts_json', text('max')),
      c('rejects_by_reason_json', text('max'), { default: { text: '{}' } }),
      c('error_json', text('max'), NULL),
      c('holder', text(200)),
      c('parent_run_id', text(200), NULL),
      c('metrics_json', text('max'), { default: { text: '{}' } }),
    ],
    primaryKey: ['id'],
    indexes: [{ name: 'runs_pipeline', columns: ['pipeline', 'started_at'] }],
  },
  {
    name: 'processed_items',
    columns: [
      c('pipeline', text(200)),
      c('source', text(200)),
      c('item_id', text(400)),
      c('size', BIGINT, NULL),
      c('modified_ms', BIGINT, NULL),
      c('item_timestamp', text(40), NULL),
      c('run_id', text(200)),
      c('processed_at', text(40)),
    ],
    primaryKey: ['pipeline', 'source', 'item_id'],
  },
  {
    name: 'cursors',
    columns: [
      c('pipeline', text(200)),
      c('source', text(400)),
      c('value', text(400)),
      c('run_id', text(200)),
      c('updated_at', text(40)),
    ],
    primaryKey: ['pipeline', 'source'],
  },
  {
    name: 'leases',
    columns: [c('name', text(400)), c('holder', text(200)), c('token', BIGINT), c('expires_at_ms', BIGINT)],
    primaryKey: ['name'],
  },
  {
    name: 'lease_tokens',
    columns: [c('name', text(400)), c('last_token', BIGINT)],
    primaryKey: ['name'],
  },
  {
    name: 'rejects',
    columns: [
      c('id', { kind: 'bigint', identity: true }),
      c('run_id', text(200)),
      c('pipeline', text(200)),
      c('stage', text(100)),
      c('reason', text(100)),
      c('message', text('max')),
      c('key', text('max'), NULL),
      c('source_file', text(400), NULL),
      c('row_number', BIGINT, NULL),
      c('row_json', text('max'), NULL),
      c('request_json', text('max'), NULL),
      c('service_error_json', text('max'), NULL),
      c('status', text(20), { default: { text: 'open' } }),
      c('resolved_by_run', text(200), NULL),
      c('created_at', text(40)),
    ],
    primaryKey: ['id'],
    indexes: [
      { name: 'rejects_run', columns: ['run_id'] },
      { name: 'rejects_open', columns: ['pipeline', 'status', 'source_file'] },
    ],
  },
  {
    name: 'kv',
    columns: [c('namespace', text(200)), c('key', text(400)), c('value', text('max'))],
    primaryKey: ['namespace', 'key'],
  },
  {
    // SQLite keeps applied versions in a Parquet file per pipeline; Azure SQL keeps them in a table.
    name: 'applied_versions',
    columns: [c('pipeline', text(200)), c('key', text(850)), c('version', text(40)), c('run_id', text(200))],
    primaryKey: ['pipeline', 'key'],
  },
  {
    name: 'keymap',
    columns: [
      c('entity_set', text(128)),
      c('key_predicate', text(850)),
      c('id', { kind: 'uuid' }),
      c('refreshed_at', { kind: 'timestamp' }, { default: 'now' }),
    ],
    primaryKey: ['entity_set', 'key_predicate'],
  },
];
