import type { CapacityPlan } from '../core/capacity-plan.js';
import { formatNumber, formatPercent, formatSeconds } from './figures.js';

/** Lays out rows of cells as aligned columns (numbers right-aligned). */
export function alignColumns(rows: ReadonlyArray<readonly string[]>, rightAligned: ReadonlySet<number>): string[] {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)));
  return rows.map((r) =>
    r
      .map((cell, i) => (rightAligned.has(i) ? cell.padStart(widths[i]!) : cell.padEnd(widths[i]!)))
      .join('  ')
      .trimEnd(),
  );
}

/** The capacity plan as terminal lines: one row per table, the totals, the verdicts and the assumptions. */
export function capacityPlanLines(plan: CapacityPlan): string[] {
  const t = plan.totals;
  const head = [
    'table',
    'rows/window',
    'ms/row',
    'cost from',
    'requests',
    'server s',
    'rows/s/identity',
    'bound by',
    'window',
  ];
  const rows = plan.tables.map((x) => [
    x.table,
    formatNumber(x.rowsPerWindow),
    formatNumber(x.serverMsPerRow, 2),
    x.costSource === 'runs' ? `runs (${x.runs})` : x.costSource,
    formatNumber(x.requestsPerWindow),
    formatNumber(x.serverSecPerWindow, 1),
    formatNumber(x.rowsPerSecPerIdentity),
    x.boundBy,
    formatSeconds(x.windowSec),
  ]);
  const total = [
    'total',
    formatNumber(t.rowsPerWindow),
    '',
    '',
    formatNumber(t.requestsPerWindow),
    formatNumber(t.serverSecPerWindow, 1),
    '',
    '',
    formatSeconds(t.windowSec),
  ];
  const table = alignColumns([head, ...rows, total], new Set([1, 2, 4, 5, 6, 8]));
  const rule = '-'.repeat(Math.max(...table.map((l) => l.length)));
  return [
    `Capacity plan: ${plan.identities} identit${plan.identities === 1 ? 'y' : 'ies'}, ${plan.servers} web server(s), a window every ${formatSeconds(plan.cadenceSec)}`,
    '',
    table[0]!,
    rule,
    ...table.slice(1, -1),
    rule,
    table.at(-1)!,
    '',
    t.fitsCadence
      ? `Fits: a window takes ${formatSeconds(t.windowSec)}, ${formatPercent(t.cadenceShare)} of the cadence.`
      : `Does not fit: a window takes ${formatSeconds(t.windowSec)}, ${formatPercent(t.cadenceShare)} of the cadence.`,
    `Identities needed for each window to finish inside ${formatSeconds(plan.cadenceSec)}: ${t.identitiesNeeded}.`,
    `Requests per day: ${formatNumber(t.requestsPerDay)}, ${formatPercent(t.entitlementShare)} of the daily entitlement (${formatNumber(plan.dailyEntitlement)} per identity)${
      t.entitlementShare > 1
        ? ` — OVER it: more identities spend the same tenant pool faster; this is a licensing matter (more capacity add-ons or fewer requests: larger batches, fewer windows), not a throughput setting`
        : ''
    }.`,
    `Initial load: ${formatSeconds(t.secPerMillionRows)} per million rows with ${plan.identities} identit${plan.identities === 1 ? 'y' : 'ies'}${t.initialLoadSec !== null ? `; the given initial load takes ${formatSeconds(t.initialLoadSec)}` : ' (pass --initial <table>=<rows> for a given load)'}.`,
    '',
    'Assumptions:',
    ...plan.assumptions.map((a) => `  - ${a}`),
  ];
}
