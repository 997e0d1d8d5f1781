import { UsageError } from './errors.js';
import type { RunRecord } from './state-store.js';

/**
 * Dataverse service-protection limits, per user (identity) and per web server, over a 5-minute sliding window:
 * 6,000 requests, 1,200 s of combined execution time, 52 concurrent requests
 * (https://learn.microsoft.com/power-apps/developer/data-platform/api-limits). Kept here, apart from the emulator's
 * own copy, so the client side never depends on the emulator.
 */
export const SERVICE_PROTECTION_LIMITS = {
  windowSec: 300,
  maxRequests: 6000,
  maxExecutionSec: 1200,
  maxConcurrent: 52,
} as const;

/**
 * Daily request entitlement assumed per identity: 40,000 requests per 24 hours, what a user with a paid Dynamics 365
 * (Enterprise) or Power Apps premium licence is entitled to
 * (https://learn.microsoft.com/power-platform/admin/api-request-limits-allocations). Application users draw on the
 * tenant's pool for non-licensed users instead, whose size depends on the tenant's licences: pass your own figure.
 */
export const DEFAULT_DAILY_ENTITLEMENT = 40_000;

/** The schedule every pipeline runs on unless it says otherwise. */
export const DEFAULT_CADENCE_SEC = 15 * 60;

/** Share of each limit a plan counts on: the adaptive writer keeps ~5 % headroom to stay clear of 429s. */
export const PLAN_HEADROOM = 0.95;

/**
 * Cost assumptions that mirror the emulator's throttling profiles (server time `t(b) = t0 + b·c` per request of
 * `b` records; costs chosen to match published UpsertMultiple figures of ~7.5 s per batch of 100): `default` is a
 * production environment with two web servers, `trial` has one, `heavy-plugins` adds 150 ms of synchronous
 * plug-in time per record.
 */
export const PLAN_PROFILES = {
  default: { servers: 2, baseMs: 50, perRecordMs: 75 },
  trial: { servers: 1, baseMs: 50, perRecordMs: 75 },
  'heavy-plugins': { servers: 2, baseMs: 50, perRecordMs: 225 },
} as const satisfies Record<string, { servers: number; baseMs: number; perRecordMs: number }>;
export type PlanProfileName = keyof typeof PLAN_PROFILES;

/** What one table costs and how much of it arrives per window. */
export interface TableLoad {
  readonly table: string;
  /** Rows to write per cadence window. */
  readonly rowsPerWindow: number;
  /** Server time per record in ms at `batchSize` (fixed request cost included). */
  readonly serverMsPerRow: number;
  /** Records per request. */
  readonly batchSize: number;
  /** Where the cost came from: `runs` (measured) or `profile:<name>`. */
  readonly costSource: string;
  /** Runs the figures were taken from (0 for a profile). */
  readonly runs: number;
}

export interface CapacityInput {
  readonly tables: readonly TableLoad[];
  /** Identities (application users) writing in parallel. Default 1. */
  readonly identities?: number;
  /** Web servers of the environment the limits apply per. Default 1 (the cautious figure: trial environments). */
  readonly servers?: number;
  /** Seconds between runs. Default 900 (15 minutes). */
  readonly cadenceSec?: number;
  /** Requests per identity per 24 hours. Default {@link DEFAULT_DAILY_ENTITLEMENT}. */
  readonly dailyEntitlement?: number;
  /** Rows of an initial load per table; default: none. */
  readonly initialRows?: Readonly<Record<string, number>>;
}

export type BindingLimit = 'execution time' | 'requests' | 'concurrency';

export interface TablePlan extends TableLoad {
  readonly requestsPerWindow: number;
  readonly serverSecPerWindow: number;
  /** Best sustainable rows/s for one identity at the limits (with headroom). */
  readonly rowsPerSecPerIdentity: number;
  readonly boundBy: BindingLimit;
  /** Seconds one window's rows take with the planned identities, tables written one after another. */
  readonly windowSec: number;
  readonly initialRows: number | null;
  readonly initialLoadSec: number | null;
}

export interface CapacityPlan {
  readonly identities: number;
  readonly servers: number;
  readonly cadenceSec: number;
  readonly dailyEntitlement: number;
  readonly limits: typeof SERVICE_PROTECTION_LIMITS;
  readonly headroom: number;
  readonly tables: readonly TablePlan[];
  readonly totals: {
    readonly rowsPerWindow: number;
    readonly requestsPerWindow: number;
    readonly serverSecPerWindow: number;
    /** Seconds all tables' window rows take, written one table after another, over `identities`. */
    readonly windowSec: number;
    /** Share of the cadence the window takes (1 = exactly the cadence). */
    readonly cadenceShare: number;
    readonly fitsCadence: boolean;
    /** Fewest identities with which a window finishes inside the cadence. */
    readonly identitiesNeeded: number;
    readonly requestsPerDay: number;
    /** Share of the daily entitlement of all `identities` the requests use. */
    readonly entitlementShare: number;
    /** Seconds per million rows at the plan's mix (all identities). */
    readonly secPerMillionRows: number;
    readonly initialLoadSec: number | null;
  };
  readonly assumptions: readonly string[];
}

/**
 * Best rows/s one identity can sustain for a table under the three limits, per web server times `servers`:
 * execution time `E/W · 1000 / msPerRow`, requests `R/W · batch`, concurrency `C · 1000 / msPerRow`
 * (each request held for about its server time).
 */
export function identityCeiling(
  load: Pick<TableLoad, 'serverMsPerRow' | 'batchSize'>,
  servers: number,
): { rowsPerSec: number; boundBy: BindingLimit } {
  const L = SERVICE_PROTECTION_LIMITS;
  const msPerRow = Math.max(load.serverMsPerRow, 0.001);
  const byExecution = ((L.maxExecutionSec / L.windowSec) * 1000) / msPerRow;
  const byRequests = (L.maxRequests / L.windowSec) * Math.max(1, load.batchSize);
  const byConcurrency = (L.maxConcurrent * 1000) / msPerRow;
  const best = Math.min(byExecution, byRequests, byConcurrency);
  const boundBy: BindingLimit =
    best === byExecution ? 'execution time' : best === byRequests ? 'requests' : 'concurrency';
  return { rowsPerSec: best * servers * PLAN_HEADROOM, boundBy };
}

/** Plans the load: per table and in total, with the planned identities, against the cadence and the entitlement. */
export function planCapacity(input: CapacityInput): CapacityPlan {
  const identities = input.identities ?? 1;
  const servers = input.servers ?? 1;
  const cadenceSec = input.cadenceSec ?? DEFAULT_CADENCE_SEC;
  const dailyEntitlement = input.dailyEntitlement ?? DEFAULT_DAILY_ENTITLEMENT;
  if (!(Number.isInteger(identities) && identities >= 1))
    throw new UsageError(`Identities \`${identities}\` must be a whole number of at least 1.`);
  if (!(servers > 0)) throw new UsageError(`Web servers \`${servers}\` must be greater than 0.`);
  const windowsPerDay = 86_400 / cadenceSec;
  const tables: TablePlan[] = input.tables.map((t) => {
    const { rowsPerSec, boundBy } = identityCeiling(t, servers);
    const initial = input.initialRows?.[t.table];
    return {
      ...t,
      requestsPerWindow: Math.ceil(t.rowsPerWindow / Math.max(1, t.batchSize)),
      serverSecPerWindow: (t.rowsPerWindow * t.serverMsPerRow) / 1000,
      rowsPerSecPerIdentity: rowsPerSec,
      boundBy,
      windowSec: t.rowsPerWindow / (rowsPerSec * identities),
      initialRows: initial ?? null,
      initialLoadSec: initial === undefined ? null : initial / (rowsPerSec * identities),
    };
  });
  const sum = (f: (t: TablePlan) => number) => tables.reduce((a, t) => a + f(t), 0);
  const rowsPerWindow = sum((t) => t.rowsPerWindow);
  const requestsPerWindow = sum((t) => t.requestsPerWindow);
  // Seconds one identity needs per window; identities split every table's rows between them.
  const oneIdentitySec = sum((t) => t.rowsPerWindow / t.rowsPerSecPerIdentity);
  const windowSec = oneIdentitySec / identities;
  const requestsPerDay = requestsPerWindow * windowsPerDay;
  const initialTables = tables.filter((t) => t.initialLoadSec !== null);
  const secPerRow = rowsPerWindow > 0 ? oneIdentitySec / rowsPerWindow / identities : null;
  const meanSecPerRow =
    secPerRow ??
    (tables.length ? tables.reduce((a, t) => a + 1 / t.rowsPerSecPerIdentity, 0) / tables.length / identities : 0);
  return {
    identities,
    servers,
    cadenceSec,
    dailyEntitlement,
    limits: SERVICE_PROTECTION_LIMITS,
    headroom: PLAN_HEADROOM,
    tables,
    totals: {
      rowsPerWindow,
      requestsPerWindow,
      serverSecPerWindow: sum((t) => t.serverSecPerWindow),
      windowSec,
      cadenceShare: windowSec / cadenceSec,
      fitsCadence: windowSec <= cadenceSec,
      identitiesNeeded: Math.max(1, Math.ceil(oneIdentitySec / cadenceSec)),
      requestsPerDay,
      entitlementShare: requestsPerDay / (dailyEntitlement * identities),
      secPerMillionRows: meanSecPerRow * 1_000_000,
      initialLoadSec: initialTables.length ? initialTables.reduce((a, t) => a + t.initialLoadSec!, 0) : null,
    },
    assumptions: [
      `Service-protection limits per identity and web server over ${SERVICE_PROTECTION_LIMITS.windowSec} s: ${SERVICE_PROTECTION_LIMITS.maxRequests.toLocaleString('en-US')} requests, ${SERVICE_PROTECTION_LIMITS.maxExecutionSec.toLocaleString('en-US')} s execution time, ${SERVICE_PROTECTION_LIMITS.maxConcurrent} concurrent (learn.microsoft.com/power-apps/developer/data-platform/api-limits); ${Math.round(PLAN_HEADROOM * 100)} % of them used.`,
      `${servers} web server(s) (--servers): the limits apply per server, and requests without the affinity cookie spread over them.`,
      `Tables written one after another in a window; identities split each table's rows. Requests per window = rows / batch size (full batches); isolating bad rows and retries add a few. Measured costs include each request's fixed time spread over the rows it carried, so small test windows overstate the cost per row.`,
      `Daily entitlement ${dailyEntitlement.toLocaleString('en-US')} requests per identity per 24 h (--daily-entitlement): a user with a paid Dynamics 365 / Power Apps premium licence; application users draw on the tenant's non-licensed pool instead (learn.microsoft.com/power-platform/admin/api-request-limits-allocations). One HTTP request counted as one request.`,
    ],
  };
}

/** Server time per row and rows per window of each table, measured in inbound runs that wrote to Dataverse. */
export function loadsFromRuns(
  runs: readonly RunRecord[],
  tableOf: (pipeline: string) => string | undefined,
): TableLoad[] {
  const byTable = new Map<string, { rows: number[]; serverMs: number; serverRows: number; batch: number[] }>();
  for (const run of runs) {
    const m = run.metrics;
    const table = tableOf(run.pipeline);
    // Rows that reached the writer: the converted rows (conversion rejects never cost a request).
    const sent = run.counts.converted || run.counts.upserted + run.counts.rejected;
    if (!table || typeof m.requests !== 'number' || sent === 0) continue;
    const entry = byTable.get(table) ?? { rows: [], serverMs: 0, serverRows: 0, batch: [] };
    entry.rows.push(sent);
    const cost = serverCostOf(run);
    if (cost) {
      entry.serverMs += cost.serverMs;
      entry.serverRows += cost.rows;
    }
    if (typeof m.batchSize === 'number') entry.batch.push(m.batchSize);
    byTable.set(table, entry);
  }
  return [...byTable].flatMap(([table, e]) =>
    e.serverRows === 0
      ? []
      : [
          {
            table,
            // The busiest window seen: a plan must hold for the peaks, not the mean.
            rowsPerWindow: Math.max(...e.rows),
            serverMsPerRow: e.serverMs / e.serverRows,
            batchSize: e.batch.length ? Math.max(...e.batch) : 100,
            costSource: 'runs',
            runs: e.rows.length,
          },
        ],
  );
}

/**
 * Server time a run spent and the rows it covers: the writer's totals (`serverTimeMs`, `serverTimeRows`) when the
 * run has them, else the mean per request times the requests over the rows sent (older runs).
 */
export function serverCostOf(run: RunRecord): { serverMs: number; rows: number } | undefined {
  const m = run.metrics;
  if (typeof m.serverTimeMs === 'number' && typeof m.serverTimeRows === 'number' && m.serverTimeRows > 0)
    return { serverMs: m.serverTimeMs, rows: m.serverTimeRows };
  const sent = run.counts.converted || run.counts.upserted + run.counts.rejected;
  if (typeof m.meanServerTimeMs === 'number' && typeof m.requests === 'number' && sent > 0)
    return { serverMs: m.meanServerTimeMs * m.requests, rows: sent };
  return undefined;
}

/** Loads from an emulator-like profile for the given row counts. */
export function loadsFromProfile(
  profile: string,
  rows: Readonly<Record<string, number>>,
  batchSize = 100,
): { loads: TableLoad[]; servers: number } {
  const p = PLAN_PROFILES[profile as PlanProfileName];
  if (!p)
    throw new UsageError(
      `Unknown profile \`${profile}\`; use one of ${Object.keys(PLAN_PROFILES)
        .map((n) => `\`${n}\``)
        .join(', ')}.`,
    );
  return {
    servers: p.servers,
    loads: Object.entries(rows).map(([table, n]) => ({
      table,
      rowsPerWindow: n,
      serverMsPerRow: (p.baseMs + batchSize * p.perRecordMs) / batchSize,
      batchSize,
      costSource: `profile:${profile}`,
      runs: 0,
    })),
  };
}

/** Parses `table=n` pairs (`--rows account=50000`). */
export function parseTableCounts(pairs: readonly string[], flag: string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const pair of pairs) {
    const match = /^([A-Za-z_][\w.-]*)=(\d[\d_,]*)$/.exec(pair.trim());
    const n = match ? Number(match[2]!.replace(/[_,]/g, '')) : Number.NaN;
    if (!match || !Number.isSafeInteger(n))
      throw new UsageError(`${flag} \`${pair}\` is not <table>=<rows>; write e.g. ${flag} account=50000.`);
    out[match[1]!] = n;
  }
  return out;
}
