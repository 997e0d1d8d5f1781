import { existsSync, statSync } from 'node:fs';
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import type { DuckDbStaging } from '../../../../dialects/duckdb/driver.js';
import { duckIdent, duckLiteral } from '../../../../dialects/duckdb/driver.js';
import { ActivityError, UnsupportedError } from '../runtime-error.js';

/*
 * The serverless SQL reading of a Delta Lake table, `OPENROWSET(BULK '<table root>/', FORMAT = 'DELTA')`, as
 * learn.microsoft.com/azure/synapse-analytics/sql/query-delta-lake-format documents it: BULK is the table's root
 * folder, the one holding `_delta_log`; the table's current snapshot is read (no time travel, read-only); partition
 * columns are exposed as columns; columns bind by name. Serverless reads Delta Lake 1.0: later reader features
 * (column mapping, deletion vectors, v2 checkpoints, …) are refused by name, never read past.
 *
 * The log is replayed here from the Delta protocol (github.com/delta-io/delta, PROTOCOL.md): the newest complete
 * checkpoint (`<v>.checkpoint.parquet`, or the parts `<v>.checkpoint.<o>.<p>.parquet`), then every JSON commit
 * after it (`<v>.json`, one action per line), in version order; the latest `protocol` and `metaData` win; a file is
 * live when its latest action is an `add`. This is the runtime's own reader: it shares nothing with the client's
 * Delta reader it is there to check.
 */

/** A column of the table as `metaData.schemaString` declares it, and its DuckDB type. */
export interface DeltaColumn {
  readonly name: string;
  /** The Delta (Spark) type: `string`, `long`, `decimal(38,4)`, `timestamp`, … */
  readonly deltaType: string;
  /** The type serverless SQL reads it as, in DuckDB terms (timestamp → TIMESTAMP, UTC wall time, as DATETIME2). */
  readonly sqlType: string;
}

/** A live data file of the snapshot. */
export interface DeltaLiveFile {
  /** Local path of the Parquet file. */
  readonly file: string;
  readonly partitionValues: Readonly<Record<string, string | null>>;
}

/** The current snapshot of a Delta table. */
export interface DeltaTableSnapshot {
  readonly version: number;
  readonly columns: readonly DeltaColumn[];
  readonly partitionColumns: readonly string[];
  readonly files: readonly DeltaLiveFile[];
  /** The checkpoint the replay started from, if any. */
  readonly checkpoint: number | null;
}

const COMMIT = /^(\d{20})\.json$/;
const CHECKPOINT = /^(\d{20})\.checkpoint\.parquet$/;
const CHECKPOINT_PART = /^(\d{20})\.checkpoint\.(\d{10})\.(\d{10})\.parquet$/;
const V2_CHECKPOINT = /^(\d{20})\.checkpoint\.[0-9a-fA-F-]{36}\.(json|parquet)$/;

/** Reader features by their protocol name, with what the refusal says (serverless reads Delta Lake 1.0). */
const READER_FEATURES: Readonly<Record<string, string>> = {
  columnMapping: 'column mapping',
  deletionVectors: 'deletion vectors',
  timestampNtz: 'timestamp without time zone (timestampNtz)',
  v2Checkpoint: 'v2 checkpoints',
  typeWidening: 'type widening',
  variantType: 'the variant type',
  variantShredding: 'variant shredding',
  catalogManaged: 'catalog-managed tables',
  vacuumProtocolCheck: 'vacuumProtocolCheck',
};

/** The DuckDB type of each primitive Delta type serverless SQL reads (decimal(p,s) apart). */
const SQL_TYPES: Readonly<Record<string, string>> = {
  string: 'VARCHAR',
  long: 'BIGINT',
  integer: 'INTEGER',
  short: 'SMALLINT',
  byte: 'TINYINT',
  float: 'FLOAT',
  double: 'DOUBLE',
  boolean: 'BOOLEAN',
  binary: 'BLOB',
  date: 'DATE',
  // DATETIME2: the UTC instant as wall time, no zone (as the CSV path types date-times).
  timestamp: 'TIMESTAMP',
};

type Action = Record<string, unknown>;

/** What serverless SQL refuses: a Delta feature newer than Delta Lake 1.0. */
function refused(bulk: string, what: string): ActivityError {
  return new ActivityError(
    'DeltaFeatureNotSupported',
    `Delta table \`${bulk}\` uses ${what}, which serverless SQL does not read (it reads Delta Lake 1.0, learn.microsoft.com/azure/synapse-analytics/sql/query-delta-lake-format); rewrite the table without it or read it with another engine.`,
  );
}

/** What serverless SQL may read but this runtime does not implement: never a silent pass. */
function notImplemented(bulk: string, what: string): UnsupportedError {
  return new UnsupportedError(`Delta table \`${bulk}\` has ${what}, which the local runtime does not read.`);
}

/**
 * The current snapshot of the Delta table at `tableDir` (the local folder of BULK `bulk`, named in messages). A
 * folder without `_delta_log` is not a Delta table root and is refused, as serverless refuses it.
 */
export async function readDeltaTable(duck: DuckDbStaging, tableDir: string, bulk: string): Promise<DeltaTableSnapshot> {
  const logDir = path.join(tableDir, '_delta_log');
  // Serverless answers Msg 13807 (learn.microsoft.com/azure/synapse-analytics/sql/resources-self-help-sql-on-demand,
  // "Content of directory on path cannot be listed").
  if (!existsSync(logDir) || !statSync(logDir).isDirectory())
    throw new ActivityError(
      'DeltaLogNotFound',
      `Content of directory on path '${bulk.replace(/\/?$/, '/')}_delta_log/*.json' cannot be listed. \`${bulk}\` is not a Delta Lake table root (no \`_delta_log\` folder): OPENROWSET with FORMAT = 'DELTA' needs the table's root folder; check the BULK path.`,
    );
  const names = await readdir(logDir);
  const commits = new Map<number, string>();
  const parts = new Map<number, Map<number, string[]>>();
  for (const name of names) {
    let m = COMMIT.exec(name);
    if (m) {
      commits.set(Number(m[1]), name);
      continue;
    }
    m = CHECKPOINT.exec(name);
    if (m) {
      parts.set(Number(m[1]), new Map([[1, [name]]]));
      continue;
    }
    m = CHECKPOINT_PART.exec(name);
    if (m) {
      const version = Number(m[1]);
      const total = Number(m[3]);
      const byTotal = parts.get(version) ?? new Map<number, string[]>();
      byTotal.set(total, [...(byTotal.get(total) ?? []), name]);
      parts.set(version, byTotal);
    }
  }
  // A checkpoint counts only when complete (every part of a multi-part one is there).
  const checkpoints = new Map<number, string[]>();
  for (const [version, byTotal] of parts)
    for (const [total, files] of byTotal) if (files.length === total) checkpoints.set(version, files.sort());
  const latestCommit = commits.size ? Math.max(...commits.keys()) : -1;
  const usable = [...checkpoints.keys()].filter((v) => v <= latestCommit || commits.size === 0);
  const checkpoint = usable.length ? Math.max(...usable) : null;
  const version = Math.max(latestCommit, checkpoint ?? -1);
  if (version < 0) {
    const v2 = names.find((n) => V2_CHECKPOINT.test(n));
    if (v2) throw refused(bulk, `a v2 checkpoint (\`_delta_log/${v2}\`)`);
    throw new ActivityError(
      'DeltaLogEmpty',
      `\`_delta_log\` of Delta table \`${bulk}\` holds no commit and no checkpoint; the table has no version to read.`,
    );
  }
  // One list of actions per version replayed; the checkpoint's rows are the reconciled state at its version.
  const versions: Action[][] = [];
  if (checkpoint !== null) {
    const files = checkpoints.get(checkpoint)!.map((f) => path.join(logDir, f));
    const rows = await duck.all<{ j: string }>(
      `SELECT to_json(t)::VARCHAR AS j FROM read_parquet([${files.map(duckLiteral).join(', ')}], union_by_name = true, hive_partitioning = false) t`,
    );
    versions.push(rows.map((r) => JSON.parse(r.j) as Action));
  }
  for (let v = (checkpoint ?? -1) + 1; v <= version; v++) {
    const name = commits.get(v);
    if (!name)
      throw new ActivityError(
        'DeltaLogIncomplete',
        `Delta table \`${bulk}\`: commit ${String(v).padStart(20, '0')}.json is missing from \`_delta_log\`${checkpoint === null ? ' and no checkpoint precedes it' : ` after checkpoint ${checkpoint}`}; the snapshot of version ${version} cannot be built.`,
      );
    const text = await readFile(path.join(logDir, name), 'utf8');
    const actions: Action[] = [];
    versions.push(actions);
    for (const [i, line] of text.split('\n').entries()) {
      if (!line.trim()) continue;
      try {
        actions.push(JSON.parse(line) as Action);
      } catch {
        throw new ActivityError(
          'DeltaLogCorrupt',
          `Delta table \`${bulk}\`: line ${i + 1} of \`_delta_log/${name}\` is not JSON.`,
        );
      }
    }
  }
  let protocol: Action | undefined;
  let metaData: Action | undefined;
  const live = new Map<string, Action>();
  for (const actions of versions) {
    // A commit may remove a file and add it again (with a new deletion vector): removes first, then adds.
    for (const a of actions) if (isObject(a.remove)) live.delete(fileKey(a.remove.path));
    for (const a of actions) {
      if (isObject(a.protocol)) protocol = a.protocol;
      if (isObject(a.metaData)) metaData = a.metaData;
      if (isObject(a.add)) live.set(fileKey(a.add.path), a.add);
    }
  }
  checkProtocol(bulk, protocol);
  if (!metaData)
    throw new ActivityError(
      'DeltaLogCorrupt',
      `Delta table \`${bulk}\` has no \`metaData\` action up to version ${version}; the table has no schema.`,
    );
  const configuration = isObject(metaData.configuration) ? metaData.configuration : {};
  const mapping = configuration['delta.columnMapping.mode'];
  if (mapping !== undefined && mapping !== null && mapping !== 'none')
    throw refused(bulk, `column mapping (\`delta.columnMapping.mode\` = \`${String(mapping)}\`)`);
  const format = isObject(metaData.format) ? metaData.format.provider : 'parquet';
  if (format !== 'parquet') throw notImplemented(bulk, `data files in format \`${String(format)}\``);
  const columns = schemaColumns(bulk, String(metaData.schemaString ?? ''));
  const partitionColumns = Array.isArray(metaData.partitionColumns) ? metaData.partitionColumns.map(String) : [];
  for (const p of partitionColumns)
    if (!columns.some((c) => c.name === p))
      throw new ActivityError(
        'DeltaLogCorrupt',
        `Delta table \`${bulk}\`: partition column \`${p}\` is not in the table schema.`,
      );
  const files: DeltaLiveFile[] = [];
  for (const add of [...live.values()].sort((a, b) => (String(a.path) < String(b.path) ? -1 : 1))) {
    if (add.deletionVector !== undefined && add.deletionVector !== null)
      throw refused(bulk, `deletion vectors (live file \`${String(add.path)}\` has one)`);
    const rel = String(add.path);
    if (/^[a-z][a-z0-9+.-]*:/i.test(rel) || rel.startsWith('/'))
      throw notImplemented(bulk, `an absolute data file path (\`${rel}\`)`);
    const file = path.join(tableDir, ...decodeURIComponent(rel).split('/'));
    if (!existsSync(file))
      throw new ActivityError(
        'DeltaFileNotFound',
        `Delta table \`${bulk}\` version ${version} names data file \`${rel}\`, which does not exist (vacuumed or not yet copied).`,
      );
    const values = isObject(add.partitionValues) ? add.partitionValues : {};
    const partitionValues: Record<string, string | null> = {};
    for (const p of partitionColumns) {
      const v = values[p];
      // An empty string is a null partition value (PROTOCOL.md, Partition Value Serialization).
      partitionValues[p] = v === undefined || v === null || v === '' ? null : String(v);
    }
    files.push({ file, partitionValues });
  }
  return { version, columns, partitionColumns, files, checkpoint };
}

function checkProtocol(bulk: string, protocol: Action | undefined): void {
  if (!protocol)
    throw new ActivityError(
      'DeltaLogCorrupt',
      `Delta table \`${bulk}\` has no \`protocol\` action; it cannot be read.`,
    );
  const reader = Number(protocol.minReaderVersion ?? 1);
  if (reader <= 1) return;
  if (reader === 2) throw refused(bulk, 'column mapping (minReaderVersion 2)');
  const features = Array.isArray(protocol.readerFeatures) ? protocol.readerFeatures.map(String) : [];
  if (reader === 3 && features.length)
    throw refused(
      bulk,
      `reader features ${features.map((f) => `\`${f}\`${READER_FEATURES[f] ? ` (${READER_FEATURES[f]})` : ''}`).join(', ')}`,
    );
  throw refused(bulk, `minReaderVersion ${reader}`);
}

function schemaColumns(bulk: string, schemaString: string): DeltaColumn[] {
  let schema: { type?: unknown; fields?: unknown };
  try {
    schema = JSON.parse(schemaString) as typeof schema;
  } catch {
    throw new ActivityError('DeltaLogCorrupt', `Delta table \`${bulk}\`: \`metaData.schemaString\` is not JSON.`);
  }
  if (schema.type !== 'struct' || !Array.isArray(schema.fields))
    throw new ActivityError('DeltaLogCorrupt', `Delta table \`${bulk}\`: \`metaData.schemaString\` is not a struct.`);
  return schema.fields.map((f: { name?: unknown; type?: unknown }) => {
    const name = String(f.name);
    if (typeof f.type !== 'string')
      // Serverless returns nested columns as JSON text only with an explicit WITH clause; the extracts never ask.
      throw notImplemented(bulk, `a nested column (\`${name}\`, ${JSON.stringify(f.type).slice(0, 60)})`);
    const dec = /^decimal\((\d+),\s*(\d+)\)$/.exec(f.type);
    const sqlType = dec ? `DECIMAL(${dec[1]},${dec[2]})` : SQL_TYPES[f.type];
    if (!sqlType) throw notImplemented(bulk, `column \`${name}\` of type \`${f.type}\``);
    return { name, deltaType: f.type, sqlType };
  });
}

/**
 * The DuckDB query over a snapshot: every schema column by name, typed as serverless reads it (a column older files
 * lack is NULL), partition columns from the log, plus `__folder` = `delta@<version>` (custom extracts exclude it).
 */
export async function deltaSelect(duck: DuckDbStaging, snapshot: DeltaTableSnapshot): Promise<string> {
  const folder = `${duckLiteral(`delta@${snapshot.version}`)} AS __folder`;
  if (snapshot.files.length === 0)
    return `SELECT ${snapshot.columns.map((c) => `CAST(NULL AS ${c.sqlType}) AS ${duckIdent(c.name)}`).join(', ')}, ${folder} WHERE false`;
  const list = `[${snapshot.files.map((f) => duckLiteral(f.file)).join(', ')}]`;
  // The Parquet files' own types: a timestamp written adjusted to UTC reads as TIMESTAMPTZ.
  const present = new Map(
    (
      await duck.all<{ column_name: string; column_type: string }>(
        `DESCRIBE SELECT * FROM read_parquet(${list}, union_by_name = true, hive_partitioning = false)`,
      )
    ).map((r) => [r.column_name, r.column_type]),
  );
  const partitionAt = new Map(snapshot.partitionColumns.map((p, i) => [p, i]));
  const projection = snapshot.columns.map((c) => {
    const i = partitionAt.get(c.name);
    if (i !== undefined) return `CAST(v.__p${i} AS ${c.sqlType}) AS ${duckIdent(c.name)}`;
    const fileType = present.get(c.name);
    if (fileType === undefined) return `CAST(NULL AS ${c.sqlType}) AS ${duckIdent(c.name)}`;
    const source = `d.${duckIdent(c.name)}`;
    if (c.sqlType === 'TIMESTAMP' && fileType === 'TIMESTAMP WITH TIME ZONE')
      return `timezone('UTC', ${source}) AS ${duckIdent(c.name)}`;
    return `CAST(${source} AS ${c.sqlType}) AS ${duckIdent(c.name)}`;
  });
  const values = snapshot.files.map(
    (f) =>
      `(${[f.file, ...snapshot.partitionColumns.map((p) => f.partitionValues[p] ?? null)].map((v) => (v === null ? 'NULL' : duckLiteral(v))).join(', ')})`,
  );
  const names = ['__file', ...snapshot.partitionColumns.map((_, i) => `__p${i}`)].join(', ');
  return `SELECT ${projection.join(', ')}, ${folder} FROM read_parquet(${list}, union_by_name = true, hive_partitioning = false, filename = true) d JOIN (VALUES ${values.join(', ')}) v(${names}) ON d.filename = v.__file`;
}

/** A data file's identity in the log: its path, URI-decoded (an add and its remove may encode it differently). */
function fileKey(p: unknown): string {
  try {
    return decodeURIComponent(String(p));
  } catch {
    return String(p);
  }
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
