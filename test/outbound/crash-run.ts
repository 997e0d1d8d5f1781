/** Child process for the outbound crash test: runs one outbound pipeline over `<dir>/lake` with state in `<dir>/state`. */
import path from 'node:path';
import { LocalLake } from '../../src/connectors/lake/local-lake.js';
import { SqliteStateStore } from '../../src/connectors/state/sqlite-state-store.js';
import { resolveConfig } from '../../src/core/config.js';
import { silentLogger } from '../../src/core/log.js';
import { definePipeline } from '../../src/core/pipeline.js';
import { runPipeline } from '../../src/core/runner.js';
import { openRunStaging } from '../../src/dialects/duckdb/driver.js';
import { readSynapseLink } from '../../src/stages/read-synapse-link.js';
import { stageRegistry } from '../../src/stages/registry.js';
import { runSqlExtract } from '../../src/stages/run-sql-extract.js';
import { writeParquet } from '../../src/stages/write-parquet.js';

const dir = process.argv[2]!;
const config = resolveConfig({ lake: path.join(dir, 'lake'), state: path.join(dir, 'state') }, {});
const state = SqliteStateStore.openIn(config.state);
const def = definePipeline({
  name: 'crash-outbound',
  direction: 'outbound',
  stages: [
    readSynapseLink({ folder: 'synapse-link/demo', tables: ['account'] }),
    runSqlExtract({ table: 'account' }),
    writeParquet(),
  ],
});
const report = await runPipeline(def, {
  openStaging: (dir: string) => openRunStaging(dir, {}),
  mode: 'manual',
  config,
  lake: new LocalLake(config.lake),
  state,
  registry: stageRegistry,
  log: silentLogger,
  leaseTtlMs: 1000,
});
state.close();
process.stdout.write(
  `${JSON.stringify({ status: report.status, items: report.window.items, cursorAfter: report.window.cursorAfter })}\n`,
);
