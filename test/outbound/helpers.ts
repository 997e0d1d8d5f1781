import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { LocalLake } from '../../src/connectors/lake/local-lake.js';
import { SqliteStateStore } from '../../src/connectors/state/sqlite-state-store.js';
import { type FerryConfig, resolveConfig } from '../../src/core/config.js';
import { silentLogger } from '../../src/core/log.js';
import type { PipelineDefinition, RunMode } from '../../src/core/pipeline.js';
import { type RunReport, runPipeline } from '../../src/core/runner.js';
import type { Row } from '../../src/core/staging.js';
import { DuckDbStaging, openRunStaging } from '../../src/dialects/duckdb/driver.js';
import { stageRegistry } from '../../src/stages/registry.js';

export const FIXTURES = path.resolve('fixtures');

/** A temp lake + state folder; `copy` puts a fixture folder into the lake. */
export class OutboundSandbox {
  readonly dir: string;
  readonly config: FerryConfig;
  readonly lake: LocalLake;
  readonly state: SqliteStateStore;

  /** `warehouseOutsideLake` puts the warehouse in `<tmp>/dw` instead of the default `<lake>/warehouse`. */
  constructor(options: { warehouseOutsideLake?: boolean } = {}) {
    this.dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ferry-outbound-'));
    this.config = resolveConfig(
      {
        lake: path.join(this.dir, 'lake'),
        state: path.join(this.dir, 'state'),
        ...(options.warehouseOutsideLake ? { warehouse: path.join(this.dir, 'dw') } : {}),
      },
      {},
    );
    fs.mkdirSync(this.config.lake, { recursive: true });
    this.lake = new LocalLake(this.config.lake);
    this.state = SqliteStateStore.openIn(this.config.state);
  }

  /** Copies `fixtures/<from>` to `<lake>/<to>`. */
  copy(from: string, to: string): void {
    fs.cpSync(path.join(FIXTURES, from), path.join(this.config.lake, to), { recursive: true });
  }

  lakePath(p: string): string {
    return path.join(this.config.lake, p);
  }

  run(
    def: PipelineDefinition,
    mode: RunMode = 'manual',
    extra: { range?: { from: string; to: string } } = {},
  ): Promise<RunReport> {
    return runPipeline(def, {
      openStaging: (dir: string) => openRunStaging(dir, {}),
      mode,
      config: this.config,
      lake: this.lake,
      state: this.state,
      registry: stageRegistry,
      log: silentLogger,
      ...extra,
    });
  }

  warehouse(...parts: string[]): string {
    return path.join(this.config.warehouse, ...parts);
  }

  close(): void {
    this.state.close();
    fs.rmSync(this.dir, { recursive: true, force: true });
  }
}

/** Reads Parquet files back with DuckDB (the real reader), ordered by `order`. */
export async function readParquetRows(files: string | string[], select = '*', order = '1'): Promise<Row[]> {
  const db = await DuckDbStaging.open();
  try {
    await db.run(`SET TimeZone = 'UTC'`);
    const list = (Array.isArray(files) ? files : [files]).map((f) => `'${f.replaceAll("'", "''")}'`).join(', ');
    return await db.all(`SELECT ${select} FROM read_parquet([${list}]) ORDER BY ${order}`);
  } finally {
    await db.close();
  }
}

/** DuckDB column types of a Parquet file as `name → type`. */
export async function parquetSchema(file: string): Promise<Record<string, string>> {
  const db = await DuckDbStaging.open();
  try {
    const rows = await db.all<{ column_name: string; column_type: string }>(
      `DESCRIBE SELECT * FROM read_parquet('${file}')`,
    );
    return Object.fromEntries(rows.map((r) => [r.column_name, r.column_type]));
  } finally {
    await db.close();
  }
}
