import { parseTableCounts } from '../../core/capacity-plan.js';
import { UsageError } from '../../core/errors.js';
import { parseDuration } from '../../core/pipeline.js';
import { loadPipelines } from '../../core/pipeline-loader.js';
import { type CapacityOptions, capacityPlanFor } from '../../report/capacity-input.js';
import { capacityPlanLines } from '../../report/capacity-text.js';
import { parseSince } from '../../report/figures.js';
import type { Command, CommandInput, OptionSpec } from '../command.js';
import { openState } from '../services.js';

/** Reads the capacity flags shared by `plan capacity` and `report`. */
export function capacityFlags(values: CommandInput['values'], sinceMs: number): CapacityOptions {
  const list = (v: unknown) => (Array.isArray(v) ? v.map(String) : typeof v === 'string' ? [v] : []);
  const positiveInt = (flag: string, fallback?: number) => {
    const v = values[flag];
    if (v === undefined) return fallback;
    const n = Number(v);
    if (!Number.isInteger(n) || n < 1)
      throw new UsageError(`--${flag} \`${String(v)}\` must be a whole number of at least 1.`);
    return n;
  };
  const rows = parseTableCounts(list(values.rows), '--rows');
  const initialRows = parseTableCounts(list(values.initial), '--initial');
  const identities = positiveInt('identities');
  const servers = positiveInt('servers');
  const dailyEntitlement = positiveInt('daily-entitlement');
  const every = typeof values.every === 'string' ? parseDuration(values.every) / 1000 : undefined;
  return {
    sinceMs,
    ...(Object.keys(rows).length ? { rows } : {}),
    ...(Object.keys(initialRows).length ? { initialRows } : {}),
    ...(typeof values.profile === 'string' ? { profile: values.profile } : {}),
    ...(identities !== undefined ? { identities } : {}),
    ...(servers !== undefined ? { servers } : {}),
    ...(dailyEntitlement !== undefined ? { dailyEntitlement } : {}),
    ...(every !== undefined ? { cadenceSec: every } : {}),
  };
}

/** Parses `--since`/`--from-runs` (`24h`, `7d`) into the start of the period. */
export function sinceFlag(value: unknown, fallback: string, flag: string, nowMs: number): number {
  const text = typeof value === 'string' ? value : fallback;
  const ms = parseSince(text);
  if (ms === undefined) throw new UsageError(`--${flag} \`${text}\` is not a period; write e.g. 24h, 7d, 90m or 2w.`);
  return nowMs - ms;
}

export const CAPACITY_OPTIONS: Readonly<Record<string, OptionSpec>> = {
  rows: {
    type: 'string',
    multiple: true,
    valueName: '<table>=<n>',
    defaultText: 'the busiest window of each table in the measured runs',
    description: 'rows per window to plan for, e.g. account=50000',
  },
  initial: {
    type: 'string',
    multiple: true,
    valueName: '<table>=<n>',
    defaultText: 'the time per million rows',
    description: 'an initial load to time, e.g. contact=2000000',
  },
  identities: {
    type: 'string',
    valueName: '<n>',
    check: 'whole-number',
    defaultText: '1',
    description: 'application users writing in parallel (each has its own service-protection limits)',
  },
  servers: {
    type: 'string',
    valueName: '<n>',
    check: 'whole-number',
    defaultText: "1, or the profile's",
    description: 'web servers of the environment (not visible to a client; the limits apply per server)',
  },
  profile: {
    type: 'string',
    valueName: '<default|trial|heavy-plugins>',
    defaultText: 'none: the server time per row measured in the runs',
    description: "use an emulator profile's assumed cost per row instead of measured ones",
  },
  'daily-entitlement': {
    type: 'string',
    valueName: '<n>',
    check: 'whole-number',
    defaultText: '40000',
    description: 'requests per identity per 24 hours the licence allows',
  },
  every: {
    type: 'string',
    valueName: '<duration>',
    check: 'duration',
    defaultText: "the pipelines' cadence, 15m",
    description: 'the window each load must finish in',
  },
};

/**
 * `ferry plan capacity`: does each window's load finish inside the cadence under the service-protection limits, how
 * many identities would make it, how long an initial load takes and how much of the daily entitlement it uses.
 */
export const planCapacityCommand: Command = {
  name: 'plan capacity',
  summary: 'plan whether the load fits the 15-minute cadence under the Dataverse service-protection limits',
  usage:
    'plan capacity [--rows <table>=<n> ...] [--from-runs 7d] [--identities N] [--profile default|trial|heavy-plugins] [--servers N] [--initial <table>=<n> ...] [--daily-entitlement N] [--json]',
  options: {
    ...CAPACITY_OPTIONS,
    'from-runs': {
      type: 'string',
      valueName: '<period>',
      defaultText: '7d',
      description: 'measure the cost per row in the runs of this period, e.g. 24h, 7d',
    },
  },
  examples: [
    { text: 'From the last week of runs, with one identity:', command: 'ferry plan capacity' },
    {
      text: 'A planned load of 50,000 accounts per window with two identities, and a 2 M contact initial load:',
      command: 'ferry plan capacity --rows account=50000 --identities 2 --initial contact=2000000',
    },
    {
      text: 'Before any run, from a profile:',
      command: 'ferry plan capacity --rows account=50000 --profile default',
    },
  ],
  async run(input) {
    const options = capacityFlags(input.values, sinceFlag(input.values['from-runs'], '7d', 'from-runs', Date.now()));
    const defs = await loadPipelines(input.pipelinesDir);
    const state = openState(input.config);
    try {
      const plan = capacityPlanFor(state, defs, options);
      if (input.json) input.print(JSON.stringify(plan));
      else for (const line of capacityPlanLines(plan)) input.print(line);
      return 0;
    } finally {
      state.close();
    }
  },
};
