import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { LocalLake } from '../../src/connectors/lake/local-lake.js';
import { SqliteStateStore } from '../../src/connectors/state/sqlite-state-store.js';
import { resolveConfig } from '../../src/core/config.js';
import { silentLogger } from '../../src/core/log.js';
import type { PipelineDefinition } from '../../src/core/pipeline.js';
import { loadPipelines } from '../../src/core/pipeline-loader.js';
import { type RunReport, runPipeline } from '../../src/core/runner.js';
import { DuckDbStaging, openRunStaging } from '../../src/dialects/duckdb/driver.js';
import { type RunningEmulator, startEmulator } from '../../src/emulator/server.js';
import type { EmulatorStore } from '../../src/emulator/store.js';
import { exportSynapseLink } from '../../src/emulator/synapse-link-export.js';
import { stageRegistry } from '../../src/stages/registry.js';

const INBOUND = [
  'currencies-inbound',
  'regions-inbound',
  'accounts-inbound',
  'contacts-inbound',
  'opportunities-inbound',
];

interface Env {
  dir: string;
  emulator: RunningEmulator;
  state: SqliteStateStore;
  config: ReturnType<typeof resolveConfig>;
}

async function openEnv(): Promise<Env> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ferry-e2e-'));
  fs.cpSync('fixtures/inbound', path.join(dir, 'lake/inbound'), { recursive: true, filter: (f) => !f.endsWith('.ts') });
  const config = resolveConfig(
    { lake: path.join(dir, 'lake'), state: path.join(dir, 'state'), metadata: 'fixtures/metadata' },
    {},
  );
  const emulator = await startEmulator({ port: 0, metadataDir: config.metadata });
  return { dir, emulator, state: SqliteStateStore.openIn(config.state), config };
}

async function closeEnv(env: Env): Promise<void> {
  env.state.close();
  await env.emulator.close();
  fs.rmSync(env.dir, { recursive: true, force: true });
}

async function runAll(env: Env, defs: readonly PipelineDefinition[], names = INBOUND): Promise<RunReport[]> {
  const reports: RunReport[] = [];
  for (const name of names) {
    const def = defs.find((d) => d.name === name)!;
    reports.push(
      await runPipeline(def, {
        openStaging: (dir: string) => openRunStaging(dir, {}),
        mode: 'manual',
        config: env.config,
        lake: new LocalLake(env.config.lake),
        state: env.state,
        registry: stageRegistry,
        services: { dataverse: { url: env.emulator.url }, openStaging: openRunStaging },
        log: silentLogger,
      }),
    );
  }
  return reports;
}

/** The business view of a table: rows by alternate key, lookups resolved to the target's key, system columns left out. */
function snapshot(store: EmulatorStore, table: string, keyOf: (a: Record<string, unknown>) => string) {
  const keyOfTarget = (target: string, id: unknown): string | null => {
    if (typeof id !== 'string') return null;
    const row = store.get(target, id);
    if (!row) return `missing:${id}`;
    const a = row.attributes;
    return String(
      a.accountnumber ?? a.isocurrencycode ?? a.ferry_code ?? `${a.ferry_legacysource}|${a.ferry_legacyid}`,
    );
  };
  const out: Record<string, Record<string, unknown>> = {};
  for (const row of store.rows(table)) {
    const a: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(row.attributes)) {
      if (k.endsWith('@target')) continue;
      const target = row.attributes[`${k}@target`];
      a[k] = typeof target === 'string' && target !== 'systemuser' ? keyOfTarget(target, v) : v;
    }
    out[keyOf(row.attributes)] = a;
  }
  return out;
}

/** A value as the emulator stores it and as the warehouse Parquet holds it (decimals as text, dates as timestamps). */
function sameValue(stored: unknown, warehouse: unknown): boolean {
  if (stored === null || stored === undefined) return warehouse === null || warehouse === undefined;
  if (typeof stored === 'number') return Number(warehouse) === stored;
  if (typeof stored === 'boolean') return warehouse === stored;
  const text = String(stored);
  const w = String(warehouse);
  if (/^\d{4}-\d{2}-\d{2}(T[\d:.]+Z)?$/.test(text))
    return (
      Date.parse(w.replace(' ', 'T').replace(/(\+00(:00)?)?$/, 'Z')) ===
      Date.parse(text.length === 10 ? `${text}T00:00:00Z` : text)
    );
  return w.toLowerCase() === text.toLowerCase();
}

describe('inbound demo pipelines end to end against the emulator', () => {
  let env: Env;
  let defs: PipelineDefinition[];
  let first: RunReport[];
  before(async () => {
    defs = await loadPipelines(path.resolve('pipelines'));
    env = await openEnv();
    first = await runAll(env, defs);
  });
  after(async () => closeEnv(env));

  it('accounts for every row read: upserted + skipped-stale + rejected = read', () => {
    for (const r of first) {
      assert.equal(r.status, 'succeeded', `${r.pipeline}: ${r.error?.message}`);
      const c = r.counts;
      assert.equal(c.upserted + c.skippedStale + c.rejected, c.read, r.pipeline);
    }
    assert.deepEqual(
      first.map((r) => [r.pipeline, r.counts.read, r.counts.upserted, r.counts.skippedStale, r.counts.rejected]),
      [
        ['currencies-inbound', 3, 3, 0, 0],
        ['regions-inbound', 4, 4, 0, 0],
        ['accounts-inbound', 30, 10, 5, 15],
        ['contacts-inbound', 8, 4, 1, 3],
        ['opportunities-inbound', 6, 4, 1, 1],
      ],
    );
  });

  it('stores exactly the expected accounts, with the latest version of each key', () => {
    const accounts = snapshot(env.emulator.store, 'account', (a) => String(a.accountnumber));
    assert.deepEqual(Object.keys(accounts).sort(), [
      "A'1008",
      'A-1001',
      'A-1002',
      'A-1003',
      'A-1004',
      'A-1005',
      'A-1006',
      'A-1007',
      'A-1010',
      'A-1011',
    ]);
    const pick = (key: string, ...cols: string[]) =>
      Object.fromEntries(cols.map((c) => [c, accounts[key]![c] ?? null]));
    // An inactive account cannot be created inactive: it was created, then its state set by an update.
    assert.deepEqual(pick('A-1006', 'name', 'statecode', 'statuscode'), {
      name: 'Tailspin Toys',
      statecode: 1,
      statuscode: 2,
    });
    // A-1001: the 09:15 delta's version wins over the 09:00 one.
    assert.deepEqual(
      pick(
        'A-1001',
        'name',
        'revenue',
        'creditlimit',
        'numberofemployees',
        'industrycode',
        'ferry_interests',
        'ferry_lastauditdate',
        'ferry_onboardedon',
        'ferry_lastcontactedon',
        'transactioncurrencyid',
        'ferry_regionid',
        'parentaccountid',
      ),
      {
        name: 'Contoso Ltd',
        revenue: 13100000,
        creditlimit: 300000,
        numberofemployees: 1250,
        industrycode: 7,
        ferry_interests: '100000000,100000003,100000004',
        ferry_lastauditdate: '2026-09-30',
        ferry_onboardedon: '2019-05-01T09:30:00Z',
        ferry_lastcontactedon: '2026-11-20T08:45:00Z',
        transactioncurrencyid: 'EUR',
        ferry_regionid: 'DACH',
        parentaccountid: null,
      },
    );
    // Two versions of A-1002 in one file: the later one wins.
    assert.deepEqual(pick('A-1002', 'name', 'revenue', 'ferry_interests'), {
      name: 'Fabrikam, Inc.',
      revenue: 99500000,
      ferry_interests: '100000001,100000005',
    });
    assert.deepEqual(pick('A-1003', 'parentaccountid', 'creditonhold', 'donotemail'), {
      parentaccountid: 'A-1001',
      creditonhold: true,
      donotemail: true,
    });
    // The stale 08:10 version of A-1004 did not overwrite the 08:30 one.
    assert.deepEqual(pick('A-1004', 'name', 'revenue'), { name: 'Northwind Traders', revenue: 4300000 });
    assert.deepEqual(pick('A-1005', 'revenue', 'numberofemployees', 'ferry_interests'), {
      revenue: 750000,
      numberofemployees: 45,
      ferry_interests: '100000003,100000004',
    });
    // The child arrived before its parent in the same file; the deferred lookup bound it.
    assert.equal(accounts['A-1010']!.parentaccountid, 'A-1011');
    assert.equal(accounts["A'1008"]!.name, "O'Brien & Sons");
  });

  it('stores contacts and opportunities with polymorphic and composite-key lookups resolved', () => {
    const contacts = snapshot(env.emulator.store, 'contact', (a) => `${a.ferry_legacysource}|${a.ferry_legacyid}`);
    assert.deepEqual(Object.keys(contacts).sort(), ['CRM1|C-1', 'CRM1|C-2', 'CRM1|C-3', 'CRM2|C-1']);
    assert.equal(contacts['CRM1|C-1']!.parentcustomerid, 'A-1001');
    assert.equal(
      contacts['CRM1|C-3']!.parentcustomerid,
      'CRM1|C-1',
      'customer is a contact, bound by its composite key',
    );
    assert.equal(contacts['CRM2|C-1']!.parentcustomerid, "A'1008");
    assert.deepEqual(
      {
        job: contacts['CRM1|C-2']!.jobtitle,
        channels: contacts['CRM1|C-2']!.ferry_preferredchannels,
        birthdate: contacts['CRM1|C-1']!.birthdate,
      },
      { job: 'Head of Purchasing', channels: '3,1', birthdate: '1980-04-12' },
    );
    const opportunities = snapshot(env.emulator.store, 'opportunity', (a) => String(a.ferry_legacyid));
    assert.deepEqual(Object.keys(opportunities).sort(), ['O-1', 'O-2', 'O-3', 'O-4']);
    assert.deepEqual(
      [opportunities['O-3']!.statecode, opportunities['O-3']!.statuscode, opportunities['O-3']!.customerid],
      [1, 3, 'CRM1|C-1'],
    );
    assert.deepEqual(
      Object.fromEntries(
        ['name', 'customerid', 'estimatedvalue', 'closeprobability', 'ferry_productlines', 'estimatedclosedate'].map(
          (c) => [c, opportunities['O-2']![c]],
        ),
      ),
      {
        name: 'Hardware refresh (phase 1)',
        customerid: 'A-1002',
        estimatedvalue: 800000,
        closeprobability: 45,
        ferry_productlines: '100000001,100000000',
        estimatedclosedate: '2027-05-31',
      },
    );
    assert.equal(opportunities['O-1']!.description, 'Scope:\n- phase 1 "lift"\n- phase 2 refactor');
  });

  it('records exactly the expected rejects with their reasons and lineage', () => {
    const rejects = first.flatMap((r) =>
      env.state.listRejects({ runId: r.runId }).map((x) => [r.pipeline, x.key ?? null, x.reason]),
    );
    const sorted = (rows: unknown[][]) => [...rows].sort((a, b) => JSON.stringify(a).localeCompare(JSON.stringify(b)));
    assert.deepEqual(
      sorted(rejects),
      sorted([
        ['accounts-inbound', 'accountnumber=A-2001', 'string.too_long'],
        ['accounts-inbound', 'accountnumber=A-2002', 'number.out_of_range'],
        ['accounts-inbound', 'accountnumber=A-2003', 'number.precision'],
        ['accounts-inbound', 'accountnumber=A-2004', 'guid.invalid'],
        ['accounts-inbound', 'accountnumber=A-2005', 'choice.unknown_label'],
        ['accounts-inbound', 'accountnumber=A-2006', 'choice.unknown_value'],
        ['accounts-inbound', 'accountnumber=A-2007', 'multiselect.invalid_member'],
        ['accounts-inbound', 'accountnumber=A-2008', 'date.before_min'],
        ['accounts-inbound', 'accountnumber=A-2009', 'date.unparsable'],
        ['accounts-inbound', null, 'key.missing'],
        ['accounts-inbound', 'accountnumber=A-2011', 'lookup.key_unsafe'],
        ['accounts-inbound', 'accountnumber=A-2012', 'boolean.invalid'],
        ['accounts-inbound', 'accountnumber=A-2013', 'number.unparsable'],
        ['accounts-inbound', 'accountnumber=A-2014', 'status.invalid_for_state'],
        ['accounts-inbound', 'accountnumber=A-1012', 'lookup.target_missing'],
        ['contacts-inbound', 'ferry_legacysource=CRM1,ferry_legacyid=C-4', 'number.out_of_range'],
        ['contacts-inbound', 'ferry_legacysource=CRM1,ferry_legacyid=C-5', 'lookup.target_unknown'],
        ['contacts-inbound', 'ferry_legacysource=CRM1,ferry_legacyid=C-6', 'lookup.target_missing'],
        ['opportunities-inbound', 'ferry_legacyid=O-5', 'number.out_of_range'],
      ]),
    );
    const tooLong = env.state.listRejects({ reason: 'string.too_long' })[0]!;
    assert.equal(tooLong.sourceFile, 'inbound/accounts/2026-11-20T09-15-00Z.parquet');
    assert.equal(tooLong.rowNumber, 5);
    const serviceReject = env.state.listRejects({ reason: 'lookup.target_missing' })[0]!;
    assert.ok(serviceReject.requestPayload, 'a Dataverse reject keeps the request payload');
    assert.ok(serviceReject.serviceError, 'and the service error body');
  });

  it('closes the loop: what went in comes out of the Synapse Link export and the outbound pipelines unchanged', async () => {
    const lake = new LocalLake(env.config.lake);
    const exported = await exportSynapseLink(env.emulator.store, lake, 'synapse-link/dataverse-demo', {
      metadataDir: env.config.metadata,
      state: env.state,
    });
    assert.ok(exported.folder);
    // Append-only export: a record created and then given its state is two rows (A-1006, O-3, O-4).
    assert.deepEqual(exported.rows, {
      account: 11,
      contact: 4,
      ferry_region: 4,
      opportunity: 6,
      transactioncurrency: 3,
    });
    for (const name of ['accounts-outbound', 'contacts-outbound']) {
      const report = await runPipeline(defs.find((d) => d.name === name)!, {
        openStaging: (dir: string) => openRunStaging(dir, {}),
        mode: 'manual',
        config: env.config,
        lake,
        state: env.state,
        registry: stageRegistry,
        log: silentLogger,
      });
      assert.equal(report.status, 'succeeded', report.error?.message);
    }
    const db = await DuckDbStaging.open();
    try {
      for (const table of ['account', 'contact']) {
        const files = path.join(env.config.warehouse, table, '*', 'part-*.parquet');
        const out = new Map((await db.all(`SELECT * FROM read_parquet('${files}')`)).map((r) => [String(r.Id), r]));
        const stored = env.emulator.store.rows(table);
        assert.equal(out.size, stored.length, `${table}: one warehouse row per stored row`);
        let compared = 0;
        for (const row of stored) {
          const w = out.get(row.id);
          assert.ok(w, `${table} ${row.id} reached the warehouse`);
          for (const [attr, value] of Object.entries(row.attributes)) {
            if (attr.includes('@') || !(attr in w)) continue;
            assert.equal(
              sameValue(value, w[attr]),
              true,
              `${table}.${attr} of ${row.id}: stored ${JSON.stringify(value)}, warehouse ${String(w[attr])} (${typeof w[attr]})`,
            );
            compared += 1;
          }
        }
        assert.ok(compared > stored.length * 10, `${table}: compared ${compared} values`);
      }
    } finally {
      await db.close();
    }
  });

  it('a second run finds nothing new and changes nothing', async () => {
    const before = JSON.stringify(['account', 'contact', 'opportunity'].map((t) => env.emulator.store.rows(t)));
    const second = await runAll(env, defs);
    for (const r of second) {
      assert.equal(r.status, 'succeeded');
      assert.equal(r.window.items, 0);
      assert.equal(r.counts.upserted, 0);
    }
    assert.equal(JSON.stringify(['account', 'contact', 'opportunity'].map((t) => env.emulator.store.rows(t))), before);
  });
});

function runChild(
  args: string[],
  extraEnv: Record<string, string>,
): Promise<{ status: number | null; signal: string | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, args, {
      env: { ...process.env, ...extraEnv },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
    child.on('exit', (status, signal) => {
      clearTimeout(timer);
      resolve({ status, signal, stdout, stderr });
    });
  });
}

describe('a run killed mid-request, then rerun, ends like an uninterrupted run', () => {
  let defs: PipelineDefinition[];
  let clean: Env;
  let killed: Env;
  before(async () => {
    defs = await loadPipelines(path.resolve('pipelines'));
    clean = await openEnv();
    killed = await openEnv();
  });
  after(async () => {
    await closeEnv(clean);
    await closeEnv(killed);
  });

  it('leaves the cursor unmoved, and the rerun completes without loss or duplicates', async () => {
    await runAll(clean, defs, ['currencies-inbound', 'regions-inbound', 'accounts-inbound']);
    await runAll(killed, defs, ['currencies-inbound', 'regions-inbound']);

    // A separate ferry process (the emulator stays up in this one), killed with SIGKILL right after its first
    // Dataverse request was sent.
    const cli = (extraEnv: Record<string, string>) =>
      runChild(
        [
          '--import',
          'tsx',
          'src/cli/main.ts',
          'run',
          'accounts-inbound',
          '--lake',
          killed.config.lake,
          '--state',
          killed.config.state,
          '--dataverse',
          killed.emulator.url,
          '--metadata',
          'fixtures/metadata',
          '--json',
        ],
        extraEnv,
      );
    const crashed = await cli({ FERRY_KILL_AT: 'mid-request' });
    assert.equal(crashed.signal, 'SIGKILL', crashed.stderr);
    const abandoned = killed.state.listRuns({ pipeline: 'accounts-inbound' })[0]!;
    assert.equal(abandoned.status, 'running', 'the killed run never committed');
    assert.equal(killed.state.processedItems('accounts-inbound', 'lake:inbound/accounts').size, 0);

    const rerun = await cli({});
    assert.equal(rerun.status, 0, rerun.stderr);
    const report = JSON.parse(rerun.stdout.trim().split('\n').at(-1)!);
    assert.equal(report.status, 'succeeded');
    assert.equal(killed.state.getRun(abandoned.id)!.status, 'abandoned');

    const view = (env: Env) => snapshot(env.emulator.store, 'account', (a) => String(a.accountnumber));
    assert.deepEqual(view(killed), view(clean));
    assert.equal(killed.emulator.store.count('account'), clean.emulator.store.count('account'));
    const openRejects = (env: Env) =>
      env.state
        .listRejects({ pipeline: 'accounts-inbound', status: 'open' })
        .map((r) => `${r.key}|${r.reason}`)
        .sort();
    assert.deepEqual(openRejects(killed), openRejects(clean), 'the error store holds the rerun’s rejects once');
  });
});
