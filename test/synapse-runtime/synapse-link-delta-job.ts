/**
 * A stand-in for the Delta Lake conversion of Azure Synapse Link for Dataverse (learn.microsoft.com/power-apps/
 * maker/data-platform/azure-synapse-link-delta-lake): Synapse Link first writes append-only CSV timestamp folders,
 * then a Spark job MERGEs each folder into `deltalake/<table>_partitioned/`, a Delta table partitioned by
 * `PartitionId` (the year, as the CSV files of a folder are split by year), updated in place (the latest row per
 * `Id`), deletes kept as rows with `IsDelete = true`. Here the CSV folders are the Dataverse emulator's own
 * (`exportSynapseLink`), so the Delta tables follow the emulator's changes.
 *
 * Written as Spark's Delta writer writes (github.com/delta-io/delta PROTOCOL.md): Parquet data files without the
 * partition column under `PartitionId=<year>/`, a MERGE rewriting the files that hold a matched `Id` (remove + add,
 * copy-on-write), one JSON commit per MERGE (`commitInfo`, `protocol` and `metaData` in the first and whenever the
 * schema grows, `remove`, `add` with `stats`), a classic checkpoint (`<v>.checkpoint.parquet` + `_last_checkpoint`)
 * every `delta.checkpointInterval` commits (default 10). Reader version 1, no deletion vectors: what Synapse
 * serverless reads. Test support only: the emulator (which may not use DuckDB) exports CSV.
 */
import { randomUUID } from 'node:crypto';
import { existsSync } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { DuckDbStaging, duckIdent, duckLiteral } from '../../src/dialects/duckdb/driver.js';

interface Field {
  readonly name: string;
  readonly type: string;
}

interface LiveFile {
  readonly path: string;
  readonly partition: string;
  readonly size: number;
  readonly rows: number;
}

interface TableState {
  version: number;
  /** `metaData.id`: the table's identity, kept across schema changes. */
  readonly id: string;
  fields: Field[];
  live: Map<string, LiveFile>;
  tombstones: { path: string; partition: string; at: number }[];
}

export interface DeltaJobOptions {
  /** `delta.checkpointInterval`: a checkpoint after every this many commits. Default 10 (Delta's default). */
  readonly checkpointInterval?: number;
}

/** The Delta type of a CDM `dataType` (model.json), as the conversion writes it. */
function deltaType(attribute: Record<string, unknown>): string {
  switch (attribute.dataType) {
    case 'int64':
      return 'long';
    case 'double':
      return 'double';
    case 'boolean':
      return 'boolean';
    case 'dateTime':
    case 'dateTimeOffset':
      return 'timestamp';
    case 'decimal': {
      let precision = 38;
      let scale = 10;
      for (const t of (attribute['cdm:traits'] ?? []) as { traitReference?: string; arguments?: unknown[] }[])
        if (t.traitReference === 'is.dataFormat.numeric.shaped')
          for (const a of (t.arguments ?? []) as { name?: string; value?: unknown }[]) {
            if (a.name === 'precision') precision = Number(a.value);
            if (a.name === 'scale') scale = Number(a.value);
          }
      return `decimal(${precision},${scale})`;
    }
    default:
      return 'string';
  }
}

/** DuckDB typing of the CSV text `v` for a Delta type (Synapse Link's `M/d/yyyy h:mm:ss tt` or ISO 8601 date-times). */
function typed(type: string, v: string): string {
  if (type === 'long') return `TRY_CAST(${v} AS BIGINT)`;
  if (type === 'double') return `TRY_CAST(${v} AS DOUBLE)`;
  if (type === 'boolean')
    return `CASE lower(${v}) WHEN 'true' THEN true WHEN '1' THEN true WHEN 'false' THEN false WHEN '0' THEN false END`;
  if (type === 'timestamp')
    return `CASE WHEN contains(${v}, '/') THEN CAST(strptime(${v}, '%m/%d/%Y %I:%M:%S %p') AS TIMESTAMP) AT TIME ZONE 'UTC' ELSE TRY_CAST(${v} AS TIMESTAMPTZ) END`;
  const dec = /^decimal\((\d+),(\d+)\)$/.exec(type);
  if (dec) return `TRY_CAST(${v} AS DECIMAL(${dec[1]},${dec[2]}))`;
  return v;
}

function duckType(type: string): string {
  const dec = /^decimal\((\d+),(\d+)\)$/.exec(type);
  if (dec) return `DECIMAL(${dec[1]},${dec[2]})`;
  return (
    ({ long: 'BIGINT', double: 'DOUBLE', boolean: 'BOOLEAN', timestamp: 'TIMESTAMPTZ' } as Record<string, string>)[
      type
    ] ?? 'VARCHAR'
  );
}

const pad = (v: number) => String(v).padStart(20, '0');

export class SynapseLinkDeltaJob {
  readonly containerDir: string;
  readonly #interval: number;
  readonly #tables = new Map<string, TableState>();
  #files = 0;

  /** `containerDir`: the Synapse Link container whose `deltalake/` the job writes. */
  constructor(containerDir: string, options: DeltaJobOptions = {}) {
    this.containerDir = containerDir;
    this.#interval = options.checkpointInterval ?? 10;
  }

  tableDir(table: string): string {
    return path.join(this.containerDir, 'deltalake', `${table}_partitioned`);
  }

  /**
   * MERGEs one completed CSV timestamp folder (`<csvRoot>/<folder>/`, with its model.json) into the Delta tables,
   * at `atMs`. Returns the version committed per table (tables without rows in the folder get no commit).
   */
  async merge(csvRoot: string, folder: string, atMs: number): Promise<Record<string, number>> {
    const model = JSON.parse(await fs.readFile(path.join(csvRoot, folder, 'model.json'), 'utf8')) as {
      entities: { name: string; attributes: Record<string, unknown>[] }[];
    };
    const out: Record<string, number> = {};
    const duck = await DuckDbStaging.open({ path: ':memory:', threads: 1, memoryLimit: '256MB' });
    try {
      await duck.run(`SET TimeZone = 'UTC'`);
      for (const entity of model.entities) {
        const dir = path.join(csvRoot, folder, entity.name);
        const csvs = existsSync(dir) ? (await fs.readdir(dir)).filter((f) => f.endsWith('.csv')).sort() : [];
        if (!csvs.length) continue;
        out[entity.name] = await this.#mergeTable(
          duck,
          entity.name,
          entity.attributes,
          csvs.map((f) => path.join(dir, f)),
          atMs,
        );
      }
    } finally {
      await duck.close();
    }
    return out;
  }

  async #mergeTable(
    duck: DuckDbStaging,
    table: string,
    attributes: Record<string, unknown>[],
    csvs: string[],
    atMs: number,
  ): Promise<number> {
    const root = this.tableDir(table);
    const state: TableState = this.#tables.get(table) ?? {
      version: -1,
      id: randomUUID(),
      fields: [],
      live: new Map(),
      tombstones: [],
    };
    // The schema: the table's columns, then columns a later model.json adds (Spark's schema merge appends them).
    const before = state.fields.length;
    for (const a of attributes)
      if (!state.fields.some((f) => f.name === a.name)) {
        const partition = state.fields.findIndex((f) => f.name === 'PartitionId');
        const field = { name: String(a.name), type: deltaType(a) };
        if (partition >= 0) state.fields.splice(partition, 0, field);
        else state.fields.push(field);
      }
    if (!state.fields.some((f) => f.name === 'PartitionId')) state.fields.push({ name: 'PartitionId', type: 'string' });
    const schemaChanged = state.fields.length !== before;
    const dataFields = state.fields.filter((f) => f.name !== 'PartitionId');

    // The folder's rows, typed, the CSV file's year as PartitionId; the latest per Id (versionnumber, SinkModifiedOn).
    const columns = `{${attributes.map((a) => `${duckLiteral(String(a.name))}: 'VARCHAR'`).join(', ')}}`;
    const own = new Set(attributes.map((a) => String(a.name)));
    const projection = dataFields.map((f) =>
      own.has(f.name)
        ? `CAST(${typed(f.type, `r.${duckIdent(f.name)}`)} AS ${duckType(f.type)}) AS ${duckIdent(f.name)}`
        : `CAST(NULL AS ${duckType(f.type)}) AS ${duckIdent(f.name)}`,
    );
    await duck.run(
      `CREATE OR REPLACE TEMP TABLE batch AS SELECT * EXCLUDE (__rn) FROM (SELECT *, row_number() OVER (PARTITION BY "Id" ORDER BY "versionnumber" DESC NULLS LAST, "SinkModifiedOn" DESC NULLS LAST) AS __rn FROM (SELECT ${projection.join(', ')}, regexp_extract(r.filename, '(\\d{4})\\.csv$', 1) AS "PartitionId" FROM read_csv([${csvs.map(duckLiteral).join(', ')}], auto_detect = false, header = false, delim = ',', quote = '"', escape = '"', null_padding = true, filename = true, columns = ${columns}) r)) WHERE __rn = 1`,
    );
    // Copy-on-write: the live files holding a matched Id are rewritten without it, the batch rows added.
    const liveFiles = [...state.live.values()];
    let touched: LiveFile[] = [];
    if (liveFiles.length) {
      const list = `[${liveFiles.map((f) => duckLiteral(path.join(root, f.path))).join(', ')}]`;
      const hit = await duck.all<{ f: string }>(
        `SELECT DISTINCT d.filename AS f FROM read_parquet(${list}, union_by_name = true, hive_partitioning = false, filename = true) d WHERE d."Id" IN (SELECT "Id" FROM batch)`,
      );
      const hits = new Set(hit.map((h) => h.f));
      touched = liveFiles.filter((f) => hits.has(path.join(root, f.path)));
    }
    if (touched.length) {
      // Older files lack columns the schema gained: read each with the columns it has, NULL for the others.
      const parts: string[] = [];
      for (const f of touched) {
        const have = new Set(
          (
            await duck.all<{ column_name: string }>(
              `DESCRIBE SELECT * FROM read_parquet([${duckLiteral(path.join(root, f.path))}], hive_partitioning = false)`,
            )
          ).map((r) => r.column_name),
        );
        const select = dataFields.map((c) =>
          have.has(c.name) ? `d.${duckIdent(c.name)}` : `CAST(NULL AS ${duckType(c.type)}) AS ${duckIdent(c.name)}`,
        );
        parts.push(
          `SELECT ${select.join(', ')}, ${duckLiteral(f.partition)} AS "PartitionId" FROM read_parquet([${duckLiteral(path.join(root, f.path))}], hive_partitioning = false) d`,
        );
      }
      await duck.run(
        `CREATE OR REPLACE TEMP TABLE merged AS SELECT * FROM (${parts.join(' UNION ALL ')}) k WHERE k."Id" NOT IN (SELECT "Id" FROM batch) UNION ALL SELECT * FROM batch`,
      );
    } else await duck.run('CREATE OR REPLACE TEMP TABLE merged AS SELECT * FROM batch');

    const partitions = (await duck.all<{ p: string }>(`SELECT DISTINCT "PartitionId" AS p FROM merged ORDER BY 1`)).map(
      (r) => r.p,
    );
    const added: LiveFile[] = [];
    for (const p of partitions) {
      const rel = `PartitionId=${p}/part-${String(this.#files++).padStart(5, '0')}-${randomUUID()}.c000.snappy.parquet`;
      const file = path.join(root, rel);
      await fs.mkdir(path.dirname(file), { recursive: true });
      await duck.run(
        `COPY (SELECT * EXCLUDE ("PartitionId") FROM merged WHERE "PartitionId" = ${duckLiteral(p)} ORDER BY "Id") TO ${duckLiteral(file)} (FORMAT parquet, COMPRESSION snappy)`,
      );
      const [n] = await duck.all<{ n: bigint }>(
        `SELECT count(*) AS n FROM merged WHERE "PartitionId" = ${duckLiteral(p)}`,
      );
      added.push({ path: rel, partition: p, size: (await fs.stat(file)).size, rows: Number(n?.n ?? 0) });
    }

    const version = state.version + 1;
    const metaData = {
      id: state.id,
      format: { provider: 'parquet', options: {} },
      schemaString: JSON.stringify({
        type: 'struct',
        fields: state.fields.map((f) => ({ name: f.name, type: f.type, nullable: true, metadata: {} })),
      }),
      partitionColumns: ['PartitionId'],
      // A table property only when it differs from Delta's default (as `ALTER TABLE … SET TBLPROPERTIES` records it).
      configuration: this.#interval === 10 ? {} : { 'delta.checkpointInterval': String(this.#interval) },
      createdTime: atMs,
    };
    const actions: object[] = [
      {
        commitInfo: {
          timestamp: atMs,
          operation: version === 0 ? 'WRITE' : 'MERGE',
          operationParameters: version === 0 ? { mode: 'Append', partitionBy: '["PartitionId"]' } : {},
          isBlindAppend: version === 0,
        },
      },
      ...(version === 0 ? [{ protocol: { minReaderVersion: 1, minWriterVersion: 2 } }] : []),
      ...(version === 0 || schemaChanged ? [{ metaData }] : []),
      ...touched.map((f) => ({
        remove: {
          path: encodePath(f.path),
          deletionTimestamp: atMs,
          dataChange: true,
          extendedFileMetadata: true,
          partitionValues: { PartitionId: f.partition },
          size: f.size,
        },
      })),
      ...added.map((f) => ({
        add: {
          path: encodePath(f.path),
          partitionValues: { PartitionId: f.partition },
          size: f.size,
          modificationTime: atMs,
          dataChange: true,
          stats: JSON.stringify({ numRecords: f.rows }),
        },
      })),
    ];
    await fs.mkdir(path.join(root, '_delta_log'), { recursive: true });
    // Written to a temp name and renamed: a reader never sees half a commit.
    const commit = path.join(root, '_delta_log', `${pad(version)}.json`);
    await fs.writeFile(`${commit}.tmp`, `${actions.map((a) => JSON.stringify(a)).join('\n')}\n`);
    await fs.rename(`${commit}.tmp`, commit);
    for (const f of touched) {
      state.live.delete(f.path);
      state.tombstones.push({ path: f.path, partition: f.partition, at: atMs });
    }
    for (const f of added) state.live.set(f.path, f);
    state.version = version;
    this.#tables.set(table, state);
    if (version > 0 && version % this.#interval === 0) await this.#checkpoint(duck, table, state, metaData);
    return version;
  }

  /** A classic checkpoint of the table's state at its version, then `_last_checkpoint`. */
  async #checkpoint(
    duck: DuckDbStaging,
    table: string,
    state: TableState,
    metaData: { id: string; schemaString: string; createdTime: number },
  ): Promise<void> {
    const root = this.tableDir(table);
    const lit = duckLiteral;
    await duck.run(
      `CREATE OR REPLACE TEMP TABLE cp ("protocol" STRUCT(minReaderVersion INTEGER, minWriterVersion INTEGER), "metaData" STRUCT(id VARCHAR, format STRUCT(provider VARCHAR, options MAP(VARCHAR, VARCHAR)), schemaString VARCHAR, partitionColumns VARCHAR[], configuration MAP(VARCHAR, VARCHAR), createdTime BIGINT), "add" STRUCT(path VARCHAR, partitionValues MAP(VARCHAR, VARCHAR), size BIGINT, modificationTime BIGINT, dataChange BOOLEAN, stats VARCHAR), "remove" STRUCT(path VARCHAR, deletionTimestamp BIGINT, dataChange BOOLEAN, extendedFileMetadata BOOLEAN, partitionValues MAP(VARCHAR, VARCHAR), size BIGINT))`,
    );
    await duck.run(`INSERT INTO cp ("protocol") VALUES ({'minReaderVersion': 1, 'minWriterVersion': 2})`);
    await duck.run(
      `INSERT INTO cp ("metaData") VALUES ({'id': ${lit(metaData.id)}, 'format': {'provider': 'parquet', 'options': MAP {}}, 'schemaString': ${lit(metaData.schemaString)}, 'partitionColumns': ['PartitionId'], 'configuration': ${this.#interval === 10 ? 'MAP {}' : `MAP {'delta.checkpointInterval': ${lit(String(this.#interval))}}`}, 'createdTime': ${metaData.createdTime}})`,
    );
    for (const f of state.live.values())
      await duck.run(
        `INSERT INTO cp ("add") VALUES ({'path': ${lit(encodePath(f.path))}, 'partitionValues': MAP {'PartitionId': ${lit(f.partition)}}, 'size': ${f.size}, 'modificationTime': 0, 'dataChange': false, 'stats': ${lit(JSON.stringify({ numRecords: f.rows }))}})`,
      );
    for (const t of state.tombstones)
      await duck.run(
        `INSERT INTO cp ("remove") VALUES ({'path': ${lit(encodePath(t.path))}, 'deletionTimestamp': ${t.at}, 'dataChange': false, 'extendedFileMetadata': false, 'partitionValues': MAP {'PartitionId': ${lit(t.partition)}}, 'size': 0})`,
      );
    const file = path.join(root, '_delta_log', `${pad(state.version)}.checkpoint.parquet`);
    await duck.run(`COPY cp TO ${lit(file)} (FORMAT parquet)`);
    const size = 2 + state.live.size + state.tombstones.length;
    await fs.writeFile(
      path.join(root, '_delta_log', '_last_checkpoint'),
      `${JSON.stringify({ version: state.version, size })}\n`,
    );
  }
}

/** A data file's path in the log: a relative URI, each segment percent-encoded (`=` kept, as Spark writes it). */
function encodePath(rel: string): string {
  return rel
    .split('/')
    .map((s) => encodeURIComponent(s).replaceAll('%3D', '='))
    .join('/');
}
