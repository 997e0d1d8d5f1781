import { FerryError } from '../../core/errors.js';
import type { Lake } from '../../core/lake.js';
import { lakeJoin } from '../../core/lake.js';

/**
 * Reads the rows of a checkpoint's Parquet files (local paths) as action objects: the SQL engine's job
 * (`readCheckpointActions` in src/dialects/duckdb/synapse-link.ts), passed in so this file keeps to the log format.
 */
export type CheckpointReader = (localFiles: readonly string[]) => Promise<Record<string, unknown>[]>;

/** A field of the table schema (`metaData.schemaString`, Spark JSON schema). */
export interface DeltaField {
  readonly name: string;
  /** Column name in the Parquet files and in `partitionValues`: the logical name unless column mapping renames it. */
  readonly physicalName: string;
  readonly type: string;
}

/** A live data file of a snapshot: lake path and its partition values taken from the log (never from the path). */
export interface DeltaFile {
  readonly path: string;
  readonly partitionValues: Readonly<Record<string, string | null>>;
  /** Version whose commit added the file; files known only from a checkpoint get the checkpoint's version. */
  readonly addedVersion: number;
}

/** What a reader needs of a Delta table at one version. */
export interface DeltaSnapshot {
  readonly version: number;
  readonly fields: readonly DeltaField[];
  readonly partitionColumns: readonly string[];
  readonly files: readonly DeltaFile[];
}

/** Reader features this reader implements (or that need no reader behaviour). `v2Checkpoint` only with a JSON fallback. */
const SUPPORTED_READER_FEATURES = new Set([
  'timestampNtz',
  'vacuumProtocolCheck',
  'v2Checkpoint',
  'deletionVectors',
  'columnMapping',
]);

const COMMIT = /^(\d{20})\.json$/;
const CLASSIC_CHECKPOINT = /^(\d{20})\.checkpoint\.parquet$/;
const MULTIPART_CHECKPOINT = /^(\d{20})\.checkpoint\.(\d{10})\.(\d{10})\.parquet$/;
const V2_CHECKPOINT = /^(\d{20})\.checkpoint\.[0-9a-fA-F-]{36}\.(json|parquet)$/;

interface LogListing {
  readonly commits: Map<number, string>;
  /** Complete classic or multi-part checkpoints: version → files. */
  readonly checkpoints: Map<number, string[]>;
  readonly v2Checkpoints: Map<number, string>;
}

async function listLog(lake: Lake, tableRoot: string): Promise<LogListing> {
  const entries = await lake.list(lakeJoin(tableRoot, '_delta_log'));
  const commits = new Map<number, string>();
  const checkpoints = new Map<number, string[]>();
  const parts = new Map<number, { total: number; files: string[] }>();
  const v2Checkpoints = new Map<number, string>();
  for (const e of entries) {
    if (e.isDirectory) continue;
    const name = e.path.split('/').at(-1)!;
    const commit = COMMIT.exec(name);
    const classic = CLASSIC_CHECKPOINT.exec(name);
    const multi = MULTIPART_CHECKPOINT.exec(name);
    const v2 = V2_CHECKPOINT.exec(name);
    if (commit) commits.set(Number(commit[1]), e.path);
    else if (classic) checkpoints.set(Number(classic[1]), [e.path]);
    else if (multi) {
      const v = Number(multi[1]);
      const p = parts.get(v) ?? { total: Number(multi[3]), files: [] };
      p.files.push(e.path);
      parts.set(v, p);
    } else if (v2) v2Checkpoints.set(Number(v2[1]), e.path);
  }
  // An incomplete multi-part set is ignored (protocol: a writer may have died half-way).
  for (const [v, p] of parts) if (p.files.length === p.total && !checkpoints.has(v)) checkpoints.set(v, p.files.sort());
  return { commits, checkpoints, v2Checkpoints };
}

/** The newest version of a Delta table (highest commit or checkpoint), or null when `_delta_log` is empty. */
export async function latestDeltaVersion(lake: Lake, tableRoot: string): Promise<number | null> {
  const { commits, checkpoints } = await listLog(lake, tableRoot);
  const all = [...commits.keys(), ...checkpoints.keys()];
  return all.length ? Math.max(...all) : null;
}

/**
 * Reconstructs the snapshot of a Delta table at `version` (default: the latest): the newest classic checkpoint at
 * or below it, read by `readCheckpoint`, then the JSON commits after it (delta-io PROTOCOL.md "Action
 * Reconciliation"). Refuses, naming the feature, what it does not implement: deletion vectors in use, column
 * mapping, v2 checkpoints when the JSON commits needed instead are gone, and unknown reader features.
 */
export async function readDeltaSnapshot(
  lake: Lake,
  readCheckpoint: CheckpointReader,
  tableRoot: string,
  version?: number,
): Promise<DeltaSnapshot> {
  const log = await listLog(lake, tableRoot);
  const target = version ?? Math.max(-1, ...log.commits.keys(), ...log.checkpoints.keys());
  if (target < 0) {
    throw new FerryError(
      'delta.empty',
      `Delta table \`${tableRoot}\` has no commits in \`_delta_log\`; check the path (expected \`deltalake/<table>_partitioned\`).`,
    );
  }
  const checkpointVersion = Math.max(-1, ...[...log.checkpoints.keys()].filter((v) => v <= target));
  const actions: Array<Record<string, unknown>> = [];
  if (checkpointVersion >= 0) {
    const files = await Promise.all(log.checkpoints.get(checkpointVersion)!.map((p) => lake.toLocalPath(p)));
    for (const action of await readCheckpoint(files)) actions.push({ ...action, __version: checkpointVersion });
  }
  for (let v = checkpointVersion + 1; v <= target; v++) {
    const file = log.commits.get(v);
    if (!file) {
      const v2 = [...log.v2Checkpoints.keys()].filter((k) => k <= target).length > 0;
      throw new FerryError(
        v2 ? 'delta.unsupported_feature' : 'delta.missing_commit',
        v2
          ? `Delta table \`${tableRoot}\` needs reader feature \`v2Checkpoint\`: commit ${v} is gone and only a v2 checkpoint covers it, which this reader does not implement. Write a classic checkpoint (or keep the JSON log) and run again.`
          : `Delta table \`${tableRoot}\` is missing commit \`${String(v).padStart(20, '0')}.json\` and no checkpoint covers it; the log is incomplete.`,
        { details: { table: tableRoot, version: v } },
      );
    }
    const text = await lake.readText(file);
    let lineNo = 0;
    for (const line of text.split('\n')) {
      lineNo += 1;
      if (line.trim() === '') continue;
      try {
        actions.push({ ...(JSON.parse(line) as Record<string, unknown>), __version: v });
      } catch (error) {
        throw new FerryError(
          'delta.bad_log',
          `\`${file}\` line ${lineNo} is not valid JSON; the Delta log is damaged.`,
          {
            cause: error,
            details: { file, line: lineNo },
          },
        );
      }
    }
  }
  return reconcile(tableRoot, target, actions);
}

function reconcile(tableRoot: string, version: number, actions: readonly Record<string, unknown>[]): DeltaSnapshot {
  let protocol: Record<string, unknown> | undefined;
  let metaData: Record<string, unknown> | undefined;
  const live = new Map<string, Record<string, unknown>>();
  for (const a of actions) {
    if (isObj(a.protocol)) protocol = a.protocol;
    if (isObj(a.metaData)) metaData = a.metaData;
    if (isObj(a.add)) live.set(fileKey(a.add), { ...a.add, __version: a.__version });
    if (isObj(a.remove)) live.delete(fileKey(a.remove));
  }
  if (!protocol || !metaData) {
    throw new FerryError(
      'delta.bad_log',
      `Delta table \`${tableRoot}\` has no ${protocol ? 'metaData' : 'protocol'} action up to version ${version}; the log is damaged.`,
    );
  }
  const config = isObj(metaData.configuration) ? metaData.configuration : {};
  const mapping = String(config['delta.columnMapping.mode'] ?? 'none');
  checkProtocol(tableRoot, protocol, mapping, [...live.values()]);
  const fields = parseSchema(tableRoot, String(metaData.schemaString ?? ''), mapping === 'name');
  const partitionColumns = Array.isArray(metaData.partitionColumns) ? metaData.partitionColumns.map(String) : [];
  const files = [...live.values()]
    .map((add) => ({
      path: resolvePath(tableRoot, String(add.path)),
      partitionValues: partitionValuesOf(add.partitionValues),
      addedVersion: Number(add.__version),
    }))
    .sort((x, y) => (x.path < y.path ? -1 : 1));
  return { version, fields, partitionColumns, files };
}

function checkProtocol(
  tableRoot: string,
  protocol: Record<string, unknown>,
  mapping: string,
  adds: readonly Record<string, unknown>[],
): void {
  const refuse = (feature: string, why: string): never => {
    throw new FerryError(
      'delta.unsupported_feature',
      `Delta table \`${tableRoot}\` uses reader feature \`${feature}\`, which this reader does not implement: ${why}`,
      { details: { table: tableRoot, feature } },
    );
  };
  const readerVersion = Number(protocol.minReaderVersion ?? 1);
  if (readerVersion > 3)
    refuse(
      `minReaderVersion ${readerVersion}`,
      'only reader versions 1 to 3 are known. Read it with Spark or a newer delta reader.',
    );
  const features =
    readerVersion === 3 && Array.isArray(protocol.readerFeatures) ? protocol.readerFeatures.map(String) : [];
  for (const f of features) {
    if (!SUPPORTED_READER_FEATURES.has(f))
      refuse(f, 'rows could be read wrongly. Read it with Spark, or ask for the feature to be added.');
  }
  // `name` mode is implemented (physical names from the schema metadata); `id` mode binds Parquet field ids.
  if ((readerVersion === 2 || features.includes('columnMapping')) && mapping !== 'none' && mapping !== 'name') {
    refuse(
      'columnMapping',
      `mode \`${mapping}\` binds Parquet columns by field id, which this reader does not do (only \`name\` mode). Read it with Spark.`,
    );
  }
  const withDv = adds.find((a) => isObj(a.deletionVector));
  if (withDv) {
    refuse(
      'deletionVectors',
      `live file \`${String(withDv.path)}\` has a deletion vector, so some of its rows are deleted without being rewritten (Synapse serverless refuses these tables too). Run \`REORG TABLE ... APPLY (PURGE)\` in Spark or disable \`delta.enableDeletionVectors\`, then run again.`,
    );
  }
}

/** The flat Delta (Spark) types this reader maps, besides `decimal(p,s)` (their DuckDB types: dialects/duckdb). */
const DELTA_TYPES = new Set([
  'string',
  'long',
  'integer',
  'short',
  'byte',
  'float',
  'double',
  'boolean',
  'binary',
  'date',
  'timestamp',
  'timestamp_ntz',
]);
export const DECIMAL_TYPE = /^decimal\((\d+),\s*(\d+)\)$/;

function parseSchema(tableRoot: string, schemaString: string, mapped: boolean): DeltaField[] {
  let schema: unknown;
  try {
    schema = JSON.parse(schemaString);
  } catch (error) {
    throw new FerryError(
      'delta.bad_log',
      `Delta table \`${tableRoot}\` has a schemaString that is not JSON; the log is damaged.`,
      { cause: error },
    );
  }
  const fields = isObj(schema) && Array.isArray(schema.fields) ? schema.fields : [];
  return fields.map((f: unknown) => {
    const field = f as Record<string, unknown>;
    const type = typeof field.type === 'string' ? field.type : 'complex';
    if (!DELTA_TYPES.has(type) && !DECIMAL_TYPE.test(type)) {
      throw new FerryError(
        'delta.unsupported_type',
        `Delta table \`${tableRoot}\` column \`${String(field.name)}\` has type \`${typeof field.type === 'string' ? field.type : JSON.stringify(field.type)}\`, which this reader does not map; Synapse Link tables use flat columns only.`,
      );
    }
    const meta = isObj(field.metadata) ? field.metadata : {};
    const physical = mapped ? meta['delta.columnMapping.physicalName'] : undefined;
    if (mapped && typeof physical !== 'string') {
      throw new FerryError(
        'delta.bad_log',
        `Delta table \`${tableRoot}\` uses column mapping but column \`${String(field.name)}\` has no physical name; the log is damaged.`,
      );
    }
    return {
      name: String(field.name),
      physicalName: typeof physical === 'string' ? physical : String(field.name),
      type,
    };
  });
}

function fileKey(action: Record<string, unknown>): string {
  const dv = isObj(action.deletionVector)
    ? `${String(action.deletionVector.storageType)}${String(action.deletionVector.pathOrInlineDv)}@${String(action.deletionVector.offset ?? '')}`
    : '';
  return `${decodePath(String(action.path))}#${dv}`;
}

// Paths in the log are URI-encoded (PROTOCOL.md "Path"); relative ones are relative to the table root.
function resolvePath(tableRoot: string, raw: string): string {
  const decoded = decodePath(raw);
  if (/^[a-z]+:/i.test(decoded)) {
    throw new FerryError(
      'delta.absolute_path',
      `Delta file path \`${decoded}\` is absolute; only files inside the table folder \`${tableRoot}\` are supported.`,
    );
  }
  return lakeJoin(tableRoot, decoded);
}

function decodePath(raw: string): string {
  try {
    return decodeURIComponent(raw);
  } catch {
    return raw;
  }
}

function partitionValuesOf(value: unknown): Record<string, string | null> {
  const out: Record<string, string | null> = {};
  // JSON commits carry an object; a checkpoint's MAP arrives through to_json as an object too (or key/value pairs).
  if (Array.isArray(value)) {
    for (const kv of value)
      if (isObj(kv)) out[String(kv.key)] = kv.value === null || kv.value === '' ? null : String(kv.value);
  } else if (isObj(value)) {
    for (const [k, v] of Object.entries(value)) out[k] = v === null || v === '' ? null : String(v);
  }
  return out;
}

function isObj(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
