import {
  type CapacityPlan,
  loadsFromProfile,
  loadsFromRuns,
  PLAN_PROFILES,
  planCapacity,
  type TableLoad,
} from '../core/capacity-plan.js';
import { UsageError } from '../core/errors.js';
import type { PipelineDefinition } from '../core/pipeline.js';
import type { StateStore } from '../core/state-store.js';

export interface CapacityOptions {
  /** Rows per window per table (`--rows`); default: the busiest window seen in the runs. */
  readonly rows?: Readonly<Record<string, number>>;
  readonly initialRows?: Readonly<Record<string, number>>;
  /** Runs since this time are measured (`--from-runs 7d`). */
  readonly sinceMs: number;
  /** Use an emulator-like profile's costs instead of measured ones. */
  readonly profile?: string;
  readonly identities?: number;
  readonly servers?: number;
  readonly cadenceSec?: number;
  readonly dailyEntitlement?: number;
}

/** The Dataverse table each inbound pipeline writes (its `upsert-dataverse` stage). */
export function tableOfPipelines(defs: readonly PipelineDefinition[]): (pipeline: string) => string | undefined {
  const map = new Map<string, string>();
  for (const def of defs)
    for (const stage of def.stages)
      if (stage.kind === 'upsert-dataverse' && typeof (stage as { table?: unknown }).table === 'string')
        map.set(def.name, (stage as unknown as { table: string }).table);
  return (pipeline) => map.get(pipeline);
}

/**
 * Builds a capacity plan from what the state store measured (server time per row, busiest window) or from a
 * profile, for the rows given or measured. Throws a usage error naming what to pass when there is nothing to plan.
 */
export function capacityPlanFor(
  state: StateStore,
  defs: readonly PipelineDefinition[],
  options: CapacityOptions,
): CapacityPlan {
  const since = new Date(options.sinceMs).toISOString();
  const runs = state.listRuns({ limit: 100_000 }).filter((r) => r.startedAt >= since);
  const measured = loadsFromRuns(runs, tableOfPipelines(defs));
  const rows = options.rows && Object.keys(options.rows).length ? options.rows : undefined;
  let loads: TableLoad[];
  let servers = options.servers;
  if (options.profile) {
    const wanted =
      rows ?? Object.fromEntries(measured.map((l) => [l.table, l.rowsPerWindow] as const).filter(([, n]) => n > 0));
    if (Object.keys(wanted).length === 0)
      throw new UsageError(
        'Nothing to plan: no runs wrote to Dataverse in the period; pass the rows per window, e.g. --rows account=50000.',
      );
    const fromProfile = loadsFromProfile(options.profile, wanted);
    loads = fromProfile.loads;
    servers ??= fromProfile.servers;
  } else if (rows) {
    const byTable = new Map(measured.map((l) => [l.table, l]));
    const missing = Object.keys(rows).filter((t) => !byTable.has(t));
    if (missing.length)
      throw new UsageError(
        `No measured cost for ${missing.map((t) => `\`${t}\``).join(', ')} in the runs of the period${byTable.size ? ` (measured: ${[...byTable.keys()].join(', ')})` : ''}; widen --from-runs or use --profile ${Object.keys(PLAN_PROFILES).join('|')}.`,
      );
    loads = Object.entries(rows).map(([table, n]) => ({ ...byTable.get(table)!, rowsPerWindow: n }));
  } else {
    if (measured.length === 0)
      throw new UsageError(
        'Nothing to plan: no runs wrote to Dataverse in the period. Run the pipelines first, widen --from-runs, or pass --rows account=50000 --profile default.',
      );
    loads = measured;
  }
  return planCapacity({
    tables: loads,
    ...(options.identities !== undefined ? { identities: options.identities } : {}),
    ...(servers !== undefined ? { servers } : {}),
    ...(options.cadenceSec !== undefined ? { cadenceSec: options.cadenceSec } : {}),
    ...(options.dailyEntitlement !== undefined ? { dailyEntitlement: options.dailyEntitlement } : {}),
    ...(options.initialRows ? { initialRows: options.initialRows } : {}),
  });
}
