import { mkdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { UsageError } from '../../../core/errors.js';
import { DuckDbStaging } from '../../../dialects/duckdb/driver.js';
import { dataActivityHandlers } from './activities/data-activities.js';
import { deleteActivityHandler } from './activities/delete-activity.js';
import type { RuntimeServices } from './activities/runtime-services.js';
import { webActivityHandler } from './activities/web-activity.js';
import { ArtifactStore } from './artifact-store.js';
import { DataverseHttp } from './connectors/dataverse-http.js';
import { LocalStorage } from './connectors/lake-files.js';
import { DuckDbSqlEngine, type SqlEngine, type StepRenderings } from './connectors/sql-engine.js';
import type { Json } from './expression/json-value.js';
import { PipelineEngine } from './pipeline-engine.js';
import type { PipelineRun } from './run-records.js';
import { VirtualClock } from './runtime-clock.js';
import { TriggerScheduler } from './triggers/trigger-scheduler.js';

export interface SynapseRuntimeOptions {
  /** The exported artifacts: a `synapse/` folder, or a store built in memory. */
  readonly artifacts: string | ArtifactStore;
  /** Folder of the local workspace: `workspace.duckdb` (Azure SQL and serverless SQL stand-in) and containers. */
  readonly workspaceDir: string;
  /**
   * Local folders of ADLS file systems (containers); default `<workspaceDir>/storage/<name>`. E.g.
   * `{ lake: './lake' }` to read the ferry lake as container `lake`.
   */
  readonly fileSystems?: Readonly<Record<string, string>>;
  /** Start of simulated time (ISO 8601). Default: now. */
  readonly startTime?: string;
  /** Dataverse environment root (the emulator's URL) standing in for the linked service's `serviceUri`. */
  readonly dataverseUrl?: string;
  /** A SQL engine other than the per-workspace DuckDB one. */
  readonly sqlEngine?: SqlEngine;
  /** DuckDB renderings of plan steps, by step id (`-- ferry-step: <id>` in the artifacts). */
  readonly stepRenderings?: StepRenderings;
  /**
   * Serverless external data sources → the file system (container) they point at, e.g.
   * `{ ferry_warehouse: 'warehouse', ferry_synapse_link: 'dataverse-…' }` (what `sql/tsql/setup/serverless.sql`
   * creates in Azure). Extract steps write under them and read Synapse Link from `ferry_synapse_link`.
   */
  readonly dataSources?: Readonly<Record<string, string>>;
  /**
   * Linked-service parameter values by name, as `ferry deploy synapse --environment` sets them in a workspace (the
   * `parameters` of `synapse/environments/<name>.json`): they replace the exported defaults.
   */
  readonly linkedServiceParameters?: Readonly<Record<string, Json>>;
  /** `pipeline().DataFactory`. Default `ferry-local`. */
  readonly workspaceName?: string;
  readonly lazyConditionals?: boolean;
  readonly noFilesFound?: 'succeed' | 'fail';
  /** Sleep for Dataverse throttling waits (real time by default: the service's clock is real). */
  readonly dataverseSleep?: (ms: number) => Promise<void>;
  /** Sleep between a Web activity's polls of a 202 `Location` (real time by default). */
  readonly webSleep?: (ms: number) => Promise<void>;
}

/**
 * The local runtime for exported Synapse pipeline artifacts: pipelines, activities, triggers and connectors on a
 * virtual clock, the workspace DuckDB database, local containers and Dataverse over HTTP.
 *
 * ```ts
 * const rt = await SynapseRuntime.open({ artifacts: 'synapse', workspaceDir: '.ferry/synapse', startTime: '2026-01-01T00:00:00Z' });
 * const run = await rt.runPipeline('pl_accounts_inbound', { mode: 'manual' });
 * rt.startTrigger('tr_ferry_every_15m'); await rt.runTicks(8, 15 * 60_000);
 * await rt.close();
 * ```
 */
export class SynapseRuntime {
  readonly engine: PipelineEngine;
  readonly triggers: TriggerScheduler;
  readonly clock: VirtualClock;
  readonly artifacts: ArtifactStore;
  readonly services: RuntimeServices;
  readonly #ownedDuck: DuckDbStaging | undefined;

  private constructor(
    artifacts: ArtifactStore,
    services: RuntimeServices,
    clock: VirtualClock,
    options: SynapseRuntimeOptions,
    ownedDuck: DuckDbStaging | undefined,
  ) {
    this.artifacts = artifacts;
    this.services = services;
    this.clock = clock;
    this.#ownedDuck = ownedDuck;
    this.engine = new PipelineEngine({
      artifacts,
      clock,
      workspaceName: options.workspaceName ?? 'ferry-local',
      handlers: {
        ...dataActivityHandlers(services),
        Delete: deleteActivityHandler(services),
        WebActivity: webActivityHandler(services, {
          ...(options.dataverseUrl ? { localDataverseUrl: options.dataverseUrl } : {}),
          ...(options.webSleep ? { sleep: options.webSleep } : {}),
        }),
      },
      ...(options.lazyConditionals === undefined ? {} : { lazyConditionals: options.lazyConditionals }),
    });
    this.triggers = new TriggerScheduler(this.engine, artifacts, clock);
  }

  static async open(options: SynapseRuntimeOptions): Promise<SynapseRuntime> {
    const loaded =
      typeof options.artifacts === 'string' ? await ArtifactStore.load(options.artifacts) : options.artifacts;
    const artifacts = options.linkedServiceParameters
      ? loaded.withLinkedServiceParameters(options.linkedServiceParameters)
      : loaded;
    await mkdir(options.workspaceDir, { recursive: true });
    let owned: DuckDbStaging | undefined;
    let sql = options.sqlEngine;
    if (!sql) {
      owned = await DuckDbStaging.open({
        path: path.join(options.workspaceDir, 'workspace.duckdb'),
        threads: 2,
        memoryLimit: '512MB',
      });
      // Azure SQL databases always have the `dbo` schema, the default schema of the pipelines' user: one-part names
      // resolve there, as they do in Azure SQL.
      await owned.run('CREATE SCHEMA IF NOT EXISTS dbo');
      await owned.run("SET schema = 'dbo'");
      const storage = new LocalStorage(path.join(options.workspaceDir, 'storage'), options.fileSystems ?? {});
      const sources = options.dataSources ?? {};
      const container = (name: string) => {
        const fs = sources[name];
        if (fs === undefined)
          throw new UsageError(
            `External data source \`${name}\` has no file system in this runtime; pass \`dataSources: { ${name}: '<container>' }\`.`,
          );
        return fs;
      };
      sql = new DuckDbSqlEngine(owned, options.stepRenderings, {
        dataSourcePath: (name, folder) => storage.resolve(container(name), folder),
        synapseLinkDir: () => storage.resolve(container('ferry_synapse_link'), ''),
      });
    }
    const startMs = options.startTime ? Date.parse(options.startTime) : Date.now();
    if (Number.isNaN(startMs)) throw new Error(`Start time \`${options.startTime}\` is not an ISO 8601 timestamp.`);
    const services: RuntimeServices = {
      artifacts,
      storage: new LocalStorage(path.join(options.workspaceDir, 'storage'), options.fileSystems ?? {}),
      sql,
      ...(options.dataverseUrl
        ? {
            dataverse: new DataverseHttp({
              url: options.dataverseUrl,
              ...(options.dataverseSleep ? { sleep: options.dataverseSleep } : {}),
            }),
          }
        : {}),
      noFilesFound: options.noFilesFound ?? 'succeed',
    };
    return new SynapseRuntime(artifacts, services, new VirtualClock(startMs), options, owned);
  }

  /**
   * Runs one-time setup SQL as an admin would before the first run (e.g. `sql/tsql/setup/ferry-state.sql`): a file
   * naming a plan step (`-- ferry-step: <id>`) runs that step's DuckDB rendering; anything else is refused by name.
   */
  async runSetup(files: readonly string[]): Promise<void> {
    for (const file of files) {
      const text = await readFile(file, 'utf8');
      await this.services.sql.execute({
        text,
        where: `Setup script \`${file}\``,
        linkedService: 'setup',
        evaluate: () => null,
      });
    }
  }

  /** Runs a pipeline manually (TriggerType `Manual`) to its end. */
  runPipeline(name: string, parameters: Record<string, Json> = {}): Promise<PipelineRun> {
    return this.engine.runPipeline(name, { parameters });
  }

  startTrigger(name: string): void {
    this.triggers.start(name);
  }

  /** Advances simulated time `n` ticks of `tickMs` (default 15 minutes), firing started triggers. */
  runTicks(n: number, tickMs = 15 * 60_000): Promise<void> {
    return this.triggers.runTicks(n, tickMs);
  }

  get runs(): readonly PipelineRun[] {
    return this.engine.runs;
  }

  async close(): Promise<void> {
    await this.engine.settle();
    await this.#ownedDuck?.close();
  }
}
