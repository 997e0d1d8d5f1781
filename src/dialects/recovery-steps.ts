/**
 * Step plans of the Synapse export's recovery pipelines (`src/export/synapse/replay-pipeline.ts` and
 * `housekeeping-pipeline.ts`): the replay of rejected rows and the housekeeping of staging tables and state rows.
 * Each dialect renders them in its own `recovery-steps.ts`.
 */
import type { SynapseConversion, TableName } from './sql-steps.js';

/** The rejects a replay takes: open, of one pipeline, written with their source row by the conversion. */
export interface ReplaySelection {
  readonly pipeline: string;
  /** The stage whose rejects carry the source row (`convert-to-dataverse`). */
  readonly stage: string;
}

export type RecoveryStepPlan =
  /**
   * How many rejects a replay would re-send (`pending`). Parameters (script): replay_of (a run id, or empty for
   * every run), reason (a reason code, or empty for every reason). A run id takes the rows still open in it and in
   * the replays that followed it (a row rejected again lives on in the replay's rejects).
   */
  | { readonly kind: 'replay-pending'; readonly selection: ReplaySelection }
  /**
   * Starts a replay run (`mode` replay, `parent_run_id` the run replayed): abandons an earlier replay of the same
   * pipeline left `running` (cancelled: its own rejects go, the rows it took are still open), drops the replay's
   * staging tables, takes the selected rejects into `claimed` and rebuilds their source rows, lineage kept, as the
   * conversion's `rows` table. Parameters (script): run_id, replay_of, reason, data_factory.
   */
  | {
      readonly kind: 'replay-begin';
      readonly selection: ReplaySelection;
      readonly conversion: SynapseConversion;
      readonly claimed: TableName;
      readonly dropTables: readonly string[];
    }
  /** The conversion of the rebuilt rows: key maps, classification, rejects, sink — the pipeline's own, without lineage. Parameters: run_id, pipeline (script). */
  | { readonly kind: 'replay-convert'; readonly conversion: SynapseConversion }
  /**
   * Ends a replay after the Copy to Dataverse: a claimed reject whose row was rejected again (same source file and
   * row) is `superseded` by the new one, every other is `resolved` (upserted, stale or an older duplicate) — unless
   * the copy skipped rows, when those sent stay open. Returns claimed, resolved, upserted, still_rejected.
   * Parameters (script): run_id, rows_skipped.
   */
  | {
      readonly kind: 'replay-finish';
      readonly selection: ReplaySelection;
      readonly conversion: SynapseConversion;
      readonly claimed: TableName;
    }
  /** A replay failed: the run is marked failed and its own rejects go (the rows it took stay open). Parameter: run_id. */
  | { readonly kind: 'replay-failed'; readonly pipeline: string }
  /**
   * Whether each group of staging tables is in use: one row, a column `busy_<group>` per group, 1 when a run of one
   * of its pipelines is `running` and started after `stale_before` (older `running` rows are runs that were
   * cancelled). Parameter (script): stale_before (UTC text).
   */
  | {
      readonly kind: 'staging-in-use';
      readonly groups: readonly { readonly name: string; readonly pipelines: readonly string[] }[];
    }
  /** Drops staging tables and views (one-part names) when they exist. */
  | { readonly kind: 'drop-tables'; readonly tables: readonly string[]; readonly views: readonly string[] }
  /**
   * Deletes state rows older than the retention: rejects no longer open (resolved, superseded) created before
   * `rejects_before`; finished runs started before `runs_before` that no open reject and no cursor names. Open
   * rejects are never deleted (they are rows not yet in Dataverse). Returns rejects_deleted, runs_deleted.
   * Parameters (script): rejects_before, runs_before (UTC text).
   */
  | { readonly kind: 'expire-state' }
  // Outbound run folders (CETAS writes in place, so a run that dies leaves what it wrote).
  /**
   * Records the window folder name an outbound run writes (`windowName` in its `runs.window_json`), before its first
   * CETAS: housekeeping finds the folders of a run that died by it. Parameters (script): run_id, window_name.
   */
  | { readonly kind: 'record-run-window' }
  /**
   * The run folders of outbound runs that did not succeed and started before `stale_before` (a run still in
   * progress is never named): one row per folder that run may have written, `folder` (`<root>/<window>/<run id>`,
   * the manifest folder included) and `manifest` (the run's manifest folder of that output,
   * `_manifests/<output>/<window>/<run id>`), ordered by run and folder. Housekeeping deletes a folder when that
   * manifest folder holds no file. Parameter (script): stale_before (UTC text).
   */
  | { readonly kind: 'unpublished-run-folders'; readonly pipelines: readonly OutboundRunFolders[] }
  /**
   * An outbound run failed: drops the external tables its extracts' CETAS created and did not drop (serverless SQL:
   * names only, the files stay — the failure path deletes them), so failed runs leave no names behind. Each
   * output's tables are `ferry_out.<output>[_deletes|_manifest]_<run id without dashes>`; those that do not exist
   * are skipped. Parameter (script): run_id.
   */
  | { readonly kind: 'drop-run-tables'; readonly outputs: readonly RunTables[] };

/** The external tables one output's extract creates (its data, deletes with `separate-file`, manifest). */
export interface RunTables {
  readonly output: string;
  readonly separateDeletes: boolean;
}

/** The warehouse folders an outbound pipeline's runs write, per output. */
export interface OutboundRunFolders {
  readonly pipeline: string;
  readonly outputs: readonly {
    /** The output's data root (`<output>`), its deletes root (`<output>_deletes`) when it has one, its manifest root. */
    readonly roots: readonly string[];
    /** The output's manifest root (`_manifests/<output>`). */
    readonly manifestRoot: string;
  }[];
}

/** Plan kinds of {@link RecoveryStepPlan}, for the dialects' step renderers. */
export const RECOVERY_STEP_KINDS = [
  'replay-pending',
  'replay-begin',
  'replay-convert',
  'replay-finish',
  'replay-failed',
  'staging-in-use',
  'drop-tables',
  'expire-state',
  'record-run-window',
  'unpublished-run-folders',
  'drop-run-tables',
] as const satisfies readonly RecoveryStepPlan['kind'][];

export function isRecoveryStep(plan: { readonly kind: string }): plan is RecoveryStepPlan {
  return (RECOVERY_STEP_KINDS as readonly string[]).includes(plan.kind);
}

/** Every source column the conversion reads, the change timestamp included (what a replay rebuilds from a reject). */
export function replaySourceColumns(conversion: SynapseConversion): string[] {
  const { plan } = conversion;
  return [...new Set([...plan.sourceColumns, plan.changeTimestamp])];
}
