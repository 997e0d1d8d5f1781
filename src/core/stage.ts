import type { FerryConfig } from './config.js';
import type { RunCounts } from './counts.js';
import type { Lake } from './lake.js';
import type { Logger } from './log.js';
import type { PipelineDefinition, RunMode, StageSpec } from './pipeline.js';
import type { RejectRecord } from './rejects.js';
import type { StagingEngine } from './staging.js';
import type { StateStore } from './state-store.js';
import type { RunWindow } from './window.js';

/** Where Dataverse is and how to authenticate. The emulator needs no token. */
export interface DataverseEndpoint {
  /** Environment root, e.g. `https://org.crm.dynamics.com` or `http://127.0.0.1:5555`. */
  readonly url: string;
  /** Returns a bearer token; undefined for the emulator. */
  readonly getToken?: () => Promise<string>;
  /**
   * An identity pool: several application users, each with its own token source. When set, writers spread their
   * requests over these (each has its own service-protection budget) instead of using `getToken`.
   */
  readonly identities?: ReadonlyArray<{ readonly name: string; readonly getToken?: () => Promise<string> }>;
}

/** Outside services a run may use, provided by the CLI (or a test). */
export interface RunServices {
  readonly dataverse?: DataverseEndpoint;
  /**
   * Opens the staging engine of a run in its folder (the composition root passes the dialect's driver, e.g.
   * `openRunStaging` of src/dialects/duckdb/driver.ts): core names no engine.
   */
  readonly openStaging?: (runDir: string, config: FerryConfig) => Promise<StagingEngine>;
}

export interface PlanContext {
  readonly pipeline: PipelineDefinition;
  readonly mode: RunMode;
  readonly config: FerryConfig;
  readonly lake: Lake;
  readonly state: StateStore;
  /** Backfill: process only items whose time lies in [from, to). */
  readonly range?: { readonly from: string; readonly to: string };
  /** Process items again even if they were processed before. */
  readonly reprocess?: boolean;
  readonly log: Logger;
}

/** Live progress of a run, for the terminal display. */
export interface Progress {
  update(phase: string, counts: Readonly<RunCounts>): void;
}

export interface StageContext {
  readonly runId: string;
  readonly pipeline: PipelineDefinition;
  readonly mode: RunMode;
  readonly window: RunWindow;
  readonly config: FerryConfig;
  readonly lake: Lake;
  readonly state: StateStore;
  readonly staging: StagingEngine;
  readonly services: RunServices;
  /** Counts the stages fill in; the run report reads them. */
  readonly counts: RunCounts;
  /** Figures a stage reports (requests, 429s, mean server time...), stored with the run. */
  readonly metrics: Record<string, unknown>;
  readonly log: Logger;
  readonly progress: Progress;
  /** Aborted on SIGINT/SIGTERM: finish the current batch, then stop. */
  readonly signal: AbortSignal;
  /** A folder kept with the run (`<state>/runs/<runId>`), e.g. for the staged input a replay re-reads. */
  readonly runDir: string;
  /** Values one stage hands to the next (e.g. the staged table's name). Keys are documented by the stages. */
  readonly shared: Map<string, unknown>;
  /** Stores rejected rows in the error store and counts them by reason. */
  reject(records: readonly RejectRecord[]): void;
  /**
   * Registers work to do after every stage succeeded and before the run's state is committed (e.g. saving the
   * versions applied per key). It must be idempotent: a kill after it and before the commit repeats the run.
   */
  onCommit(hook: () => Promise<void>): void;
}

/**
 * The code behind a stage kind. Source stages also `plan` the run's window. A stage never sleeps or retries on
 * its own: retry lives in the client that owns the I/O.
 */
export interface StageImpl<S extends StageSpec = StageSpec> {
  readonly kind: string;
  plan?(spec: S, ctx: PlanContext): Promise<RunWindow>;
  run(spec: S, ctx: StageContext): Promise<void>;
  /**
   * A sink whose earlier output is grouped by input-time spans (the warehouse's current windows) reports them, so
   * a backfill never cuts through one: each window it writes then supersedes whole earlier windows.
   */
  outputSpans?(spec: S, ctx: PlanContext): Promise<ReadonlyArray<{ readonly first: string; readonly last: string }>>;
}
