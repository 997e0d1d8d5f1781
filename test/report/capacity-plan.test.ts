import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  identityCeiling,
  loadsFromProfile,
  loadsFromRuns,
  PLAN_HEADROOM,
  PLAN_PROFILES,
  parseTableCounts,
  planCapacity,
} from '../../src/core/capacity-plan.js';
import { emptyCounts } from '../../src/core/counts.js';
import type { RunRecord } from '../../src/core/state-store.js';
import { ceilingFor } from '../../src/emulator/throttle-model.js';

function run(pipeline: string, converted: number, metrics: Record<string, unknown>): RunRecord {
  return {
    id: `r-${pipeline}-${converted}`,
    pipeline,
    mode: 'scheduled',
    status: 'succeeded',
    window: { source: 'x', items: [{ id: 'a' }], cursorBefore: null, cursorAfter: null },
    startedAt: '2026-12-06T10:00:00.000Z',
    finishedAt: '2026-12-06T10:01:00.000Z',
    durationMs: 60_000,
    counts: { ...emptyCounts(), read: converted, converted, upserted: converted },
    rejectsByReason: {},
    error: null,
    holder: 'h:1',
    parentRunId: null,
    metrics,
  };
}

describe('capacity plan', () => {
  it('agrees with the emulator model on the ceiling of each profile (less the headroom)', () => {
    for (const profile of Object.keys(PLAN_PROFILES)) {
      const { loads, servers } = loadsFromProfile(profile, { account: 1 });
      const ours = identityCeiling(loads[0]!, servers).rowsPerSec;
      const emulator = ceilingFor(profile, { operation: 'upsert', batchSize: 100 });
      assert.ok(Math.abs(ours - emulator * PLAN_HEADROOM) < 1e-6, `${profile}: ${ours} vs ${emulator}`);
    }
  });

  it('says whether a window fits the cadence, how many identities make it, and the daily share', () => {
    const { loads, servers } = loadsFromProfile('default', { account: 100_000 });
    const plan = planCapacity({ tables: loads, servers });
    // t(100) = 50 + 100·75 ms = 7.55 s; execution limit 1,200 s / 300 s = 4 server-s per s per server.
    const rowsPerSec = ((4 * 100) / 7.55) * 2 * 0.95;
    assert.equal(plan.tables[0]!.boundBy, 'execution time');
    assert.ok(Math.abs(plan.tables[0]!.rowsPerSecPerIdentity - rowsPerSec) < 1e-9);
    assert.ok(Math.abs(plan.totals.windowSec - 100_000 / rowsPerSec) < 1e-6);
    assert.equal(plan.totals.fitsCadence, false);
    assert.equal(plan.totals.identitiesNeeded, 2);
    assert.equal(plan.totals.requestsPerWindow, 1000);
    assert.equal(plan.totals.requestsPerDay, 96_000);
    assert.equal(plan.totals.entitlementShare, 96_000 / 40_000);

    const two = planCapacity({ tables: loads, servers, identities: 2, initialRows: { account: 10_000_000 } });
    assert.equal(two.totals.fitsCadence, true);
    assert.ok(Math.abs(two.tables[0]!.initialLoadSec! - 10_000_000 / (rowsPerSec * 2)) < 1e-6);
    assert.equal(two.totals.entitlementShare, 96_000 / 80_000);
  });

  it('binds on the request count when rows are cheap and batches small', () => {
    const plan = planCapacity({
      tables: [{ table: 't', rowsPerWindow: 1, serverMsPerRow: 1, batchSize: 10, costSource: 'runs', runs: 1 }],
    });
    assert.equal(plan.tables[0]!.boundBy, 'requests');
    assert.equal(plan.tables[0]!.rowsPerSecPerIdentity, 20 * 10 * 0.95);
  });

  it('measures the server time per row and the busiest window from runs', () => {
    const table = (p: string) => (p === 'accounts-inbound' ? 'account' : undefined);
    const loads = loadsFromRuns(
      [
        run('accounts-inbound', 400, { requests: 4, serverTimeMs: 32_000, serverTimeRows: 400, batchSize: 100 }),
        // An older run without the totals: the mean per request times the requests.
        run('accounts-inbound', 1000, { requests: 10, meanServerTimeMs: 8000, batchSize: 100 }),
        run('accounts-outbound', 5000, {}),
      ],
      table,
    );
    assert.equal(loads.length, 1);
    assert.equal(loads[0]!.table, 'account');
    assert.equal(loads[0]!.rowsPerWindow, 1000);
    assert.equal(loads[0]!.serverMsPerRow, (32_000 + 80_000) / 1400);
    assert.equal(loads[0]!.runs, 2);
  });

  it('refuses malformed row counts and unknown profiles with what to write', () => {
    assert.deepEqual(parseTableCounts(['account=50_000', 'contact=1,200'], '--rows'), {
      account: 50_000,
      contact: 1200,
    });
    assert.throws(() => parseTableCounts(['account:5'], '--rows'), /--rows `account:5` is not <table>=<rows>/);
    assert.throws(() => loadsFromProfile('huge', { a: 1 }), /Unknown profile `huge`; use one of `default`/);
    assert.throws(() => planCapacity({ tables: [], identities: 0 }), /Identities `0`/);
  });
});

describe('capacity plan text', () => {
  const load = (rowsPerWindow: number) => ({
    table: 'contact',
    rowsPerWindow,
    serverMsPerRow: 4,
    batchSize: 100,
    costSource: 'runs',
    runs: 1,
  });

  it('says when the requests of a day are over the daily entitlement, and not when under', async () => {
    const { capacityPlanLines } = await import('../../src/report/capacity-text.js');
    // 120,000 rows / 100 per request × 96 windows = 115,200 requests a day against 2 × 40,000.
    const over = capacityPlanLines(planCapacity({ tables: [load(120_000)], identities: 2 })).join('\n');
    assert.match(over, /Requests per day: 115,200, 144 % of the daily entitlement \(40,000 per identity\) — OVER it: /);
    const under = capacityPlanLines(planCapacity({ tables: [load(10_000)], identities: 2 })).join('\n');
    assert.match(under, /Requests per day: 9,600, 12 % of the daily entitlement \(40,000 per identity\)\.$/m);
  });
});
