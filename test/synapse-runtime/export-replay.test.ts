/**
 * The exported replay pipeline (`pl_<name>_replay`, issue 12 "a replay pipeline for rejected rows") run on the
 * runtime: every SQL step through its DuckDB rendering, the lake fixtures, the Dataverse emulator over HTTP.
 */
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { type RunningEmulator, startEmulator } from '../../src/emulator/server.js';
import type { PipelineRun } from '../../src/export/synapse/runtime/run-records.js';
import type { SynapseRuntime } from '../../src/export/synapse/runtime/synapse-runtime.js';
import { describeRun, openDeployedRuntime } from './real-export.js';

interface RejectRow extends Record<string, unknown> {
  id: bigint;
  run_id: string;
  reason: string;
  status: string;
  resolved_by_run: string | null;
  key: string | null;
  source_file: string | null;
  row_number: bigint | null;
}

describe('the exported replay pipeline, run on the runtime', () => {
  let dir: string;
  let emulator: RunningEmulator;
  let rt: SynapseRuntime;
  const rejects = () =>
    rt.services.sql.duck.all<RejectRow>(
      `SELECT id, run_id, reason, status, resolved_by_run, key, source_file, row_number FROM ferry.rejects WHERE pipeline = 'contacts-inbound' ORDER BY id`,
    );
  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'synapse-replay-'));
    emulator = await startEmulator({ metadataDir: 'fixtures/metadata' });
    rt = await openDeployedRuntime({
      workspaceDir: dir,
      startTime: new Date(Date.now() + 3_600_000).toISOString(),
      dataverseUrl: emulator.url,
      fileSystems: (settings) => ({ [settings.lakeFileSystem]: 'fixtures' }),
    });
  });
  after(async () => {
    await rt.close();
    await emulator.close();
    await rm(dir, { recursive: true, force: true });
  });

  const ODATA = { 'Content-Type': 'application/json', Accept: 'application/json', 'OData-Version': '4.0' };
  /** A parent arrives in Dataverse (an upsert by alternate key over the Web API, as any writer would). */
  const accountArrives = async (accountnumber: string) => {
    const r = await fetch(
      `${emulator.url}/api/data/v9.2/accounts(accountnumber='${accountnumber.replaceAll("'", "''")}')`,
      { method: 'PATCH', headers: ODATA, body: JSON.stringify({ name: `Account ${accountnumber}` }) },
    );
    assert.equal(r.status, 204, await r.text());
  };
  const contact = (source: string, id: string) =>
    emulator.store
      .rows('contact')
      .find((c) => c.attributes.ferry_legacysource === source && c.attributes.ferry_legacyid === id);
  const open = async () =>
    (await rejects())
      .filter((r) => r.status === 'open')
      .map((r) => `${r.key?.replace('ferry_legacysource=', '').replace(',ferry_legacyid=', '/')} ${r.reason}`)
      .sort();
  const replay = (parameters: Record<string, string> = {}) => rt.runPipeline('pl_contacts_inbound_replay', parameters);
  const finish = (run: PipelineRun) => {
    const out = run.activityRuns.find((a) => a.activityName === 'FinishReplay')?.output as
      | { resultSets: { rows: Record<string, number>[] }[] }
      | undefined;
    return out?.resultSets[0]?.rows[0];
  };
  const failCode = (run: PipelineRun, activity: string) =>
    run.activityRuns.find((a) => a.activityName === activity && a.status === 'Failed')?.error?.errorCode;

  it('re-sends rows whose parent was missing once it arrived; still-bad rows stay rejected; nothing left is refused', async () => {
    for (const p of ['pl_regions_inbound', 'pl_currencies_inbound']) await rt.runPipeline(p, { mode: 'manual' });
    // The region DACH has not arrived yet (it arrives below). The regions fixture writes it (its parent EMEA is in
    // the same window and is resolved in the second pass): take it out again, of Dataverse and of the key map.
    const dach = emulator.store.rows('ferry_region').find((r) => r.attributes.ferry_code === 'DACH');
    assert.ok(dach, 'regions-inbound wrote DACH');
    emulator.store.delete('ferry_region', dach.id);
    await rt.services.sql.duck.run(`DELETE FROM ferry.keymap WHERE key_predicate = 'ferry_code=''DACH'''`);
    // Contacts before their accounts: their parent is not in the key map.
    const original = await rt.runPipeline('pl_contacts_inbound', { mode: 'manual' });
    assert.equal(emulator.store.count('contact'), 0, describeRun(original));
    assert.deepEqual(await open(), [
      'CRM1/C-1 lookup.target_missing',
      'CRM1/C-2 lookup.target_missing',
      'CRM1/C-3 lookup.target_missing', // its parent is the contact CRM1/C-1, in the same window
      'CRM1/C-4 number.out_of_range',
      'CRM1/C-5 lookup.target_unknown', // company type `lead`
      'CRM1/C-6 lookup.target_missing',
      'CRM2/C-1 lookup.target_missing',
    ]);

    for (const a of ['A-1001', 'A-1002', "A'1008"]) await accountArrives(a);
    const first = await replay({ runId: original.runId });
    // Rows rejected again fail the run with exit code 3, like `ferry replay`.
    assert.equal(first.status, 'Failed', describeRun(first));
    assert.equal(failCode(first, 'RowsRejectedAgain'), '3', describeRun(first));
    assert.deepEqual(finish(first), { claimed: 7, resolved: 2, upserted: 2, still_rejected: 5 });
    assert.ok(contact('CRM2', 'C-1') && contact('CRM1', 'C-2'));
    assert.equal(contact('CRM1', 'C-1'), undefined);
    const afterFirst = await rejects();
    // The originals: resolved or superseded by the replay run; the rows rejected again are open in the replay run,
    // with their new reason (CRM1/C-1: its account is there now, its region DACH is not).
    for (const r of afterFirst.filter((x) => x.run_id === original.runId)) {
      assert.equal(r.resolved_by_run, first.runId);
      const landed = ['CRM2,ferry_legacyid=C-1', 'CRM1,ferry_legacyid=C-2'].some((k) => r.key?.endsWith(k));
      assert.equal(r.status, landed ? 'resolved' : 'superseded', `${r.key}`);
    }
    const again = afterFirst.filter((x) => x.run_id === first.runId);
    assert.deepEqual(again.map((r) => `${r.status} ${r.source_file}#${r.row_number}`).sort(), [
      'open 2026-11-20T10-00-00Z.parquet#1',
      'open 2026-11-20T10-00-00Z.parquet#3',
      'open 2026-11-20T10-00-00Z.parquet#5',
      'open 2026-11-20T10-00-00Z.parquet#6',
      'open 2026-11-20T10-00-00Z.parquet#7',
    ]);
    const [c1] = await rt.services.sql.duck.all<{ message: string }>(
      `SELECT message FROM ferry.rejects WHERE run_id = '${first.runId}' AND row_number = 1`,
    );
    assert.match(c1!.message, /ferry_regions\(ferry_code='DACH'\)/);

    // The chain is followed: a replay of the original run takes the rows still open in the replays that followed it.
    await accountArrives('A-4040');
    const region = await fetch(`${emulator.url}/api/data/v9.2/ferry_regions(ferry_code='DACH')`, {
      method: 'PATCH',
      headers: ODATA,
      body: JSON.stringify({ ferry_name: 'DACH' }),
    });
    assert.equal(region.status, 204, await region.text());
    const second = await replay({ runId: original.runId });
    // C-3's parent, the contact CRM1/C-1, is a row of this very replay: its lookup goes in the second pass
    // (CopyKeyMapAfterWrite → ResolveDeferredLookups → CopyDeferredLookupsToDataverse), as `ferry replay` defers it.
    assert.deepEqual(finish(second), { claimed: 5, resolved: 3, upserted: 3, still_rejected: 2 }, describeRun(second));
    const a1001 = emulator.store.rows('account').find((a) => a.attributes.accountnumber === 'A-1001')!;
    assert.equal(contact('CRM1', 'C-1')?.attributes.parentcustomerid, a1001.id);
    assert.ok(contact('CRM1', 'C-6'));
    assert.equal(contact('CRM1', 'C-3')?.attributes.parentcustomerid, contact('CRM1', 'C-1')?.id);
    assert.deepEqual(await open(), ['CRM1/C-4 number.out_of_range', 'CRM1/C-5 lookup.target_unknown']);

    // Nothing left with that reason: the run fails with exit code 4 ("nothing was done") and changes nothing.
    const runsBefore = await rt.services.sql.duck.all(`SELECT id, status FROM ferry.runs ORDER BY id`);
    const rejectsBefore = await rejects();
    const nothing = await replay({ reason: 'lookup.target_missing' });
    assert.equal(nothing.status, 'Failed');
    assert.equal(failCode(nothing, 'NothingToReplay'), '4', describeRun(nothing));
    assert.match(
      nothing.message ?? '',
      /replay\.nothing: contacts-inbound has no open rejects with reason lookup\.target_missing/,
    );
    assert.ok(nothing.activityRuns.every((a) => a.activityName !== 'BeginReplay' || a.status === 'Skipped'));
    assert.deepEqual(await rt.services.sql.duck.all(`SELECT id, status FROM ferry.runs ORDER BY id`), runsBefore);
    assert.deepEqual(await rejects(), rejectsBefore);

    // Still-bad rows sent again stay rejected, once each, and Dataverse does not change.
    const contacts = emulator.store.count('contact');
    const fourth = await replay();
    assert.deepEqual(finish(fourth), { claimed: 2, resolved: 0, upserted: 0, still_rejected: 2 });
    assert.equal(emulator.store.count('contact'), contacts);
    assert.deepEqual(await open(), ['CRM1/C-4 number.out_of_range', 'CRM1/C-5 lookup.target_unknown']);

    const runs = await rt.services.sql.duck.all<{
      id: string;
      mode: string;
      status: string;
      parent_run_id: string | null;
      counts_json: string;
    }>(
      `SELECT id, mode, status, parent_run_id, counts_json FROM ferry.runs WHERE pipeline = 'contacts-inbound' AND mode = 'replay' ORDER BY started_at`,
    );
    assert.deepEqual(
      runs.map((r) => [r.id, r.status, r.parent_run_id]),
      [
        [first.runId, 'succeeded', original.runId],
        [second.runId, 'succeeded', original.runId],
        [fourth.runId, 'succeeded', null],
      ],
    );
    assert.deepEqual(JSON.parse(runs[0]!.counts_json), {
      written: 2,
      rejected: 5,
      resolved: 2,
      upserted: 2,
      stillRejected: 5,
    });
  });

  it('a failed replay leaves the rows it took open (nothing lost, nothing resolved)', async () => {
    const openBefore = await open();
    assert.ok(openBefore.length > 0);
    // An activity after the copy fails (its table is gone): the replay is marked failed and undone.
    await rt.services.sql.duck.run('ALTER TABLE ferry.applied_versions RENAME TO applied_versions_away');
    const failed = await replay();
    assert.equal(failed.status, 'Failed');
    assert.equal(
      failed.activityRuns.find((a) => a.activityName === 'MarkReplayFailed')?.status,
      'Succeeded',
      describeRun(failed),
    );
    await rt.services.sql.duck.run('ALTER TABLE ferry.applied_versions_away RENAME TO applied_versions');
    assert.deepEqual(await open(), openBefore);
    assert.deepEqual(
      (await rejects()).filter((r) => r.run_id === failed.runId),
      [],
      'the failed replay keeps no rejects of its own',
    );
    const [run] = await rt.services.sql.duck.all<{ status: string }>(
      `SELECT status FROM ferry.runs WHERE id = '${failed.runId}'`,
    );
    assert.equal(run?.status, 'failed');
  });

  it('a replay cancelled while running is undone by the next one (its rows open again, its own rejects gone)', async () => {
    const openBefore = await open();
    const [c4] = (await rejects()).filter((r) => r.status === 'open' && r.key?.endsWith('C-4'));
    // What a replay killed between FinishReplay's updates leaves: its run `running`, a taken row resolved by it, a
    // reject of its own.
    await rt.services.sql.duck.run(
      `INSERT INTO ferry.runs (id, pipeline, mode, status, window_json, started_at, counts_json, holder) VALUES ('killed', 'contacts-inbound', 'replay', 'running', '{}', '2026-12-06T00:00:00', '{}', 'test')`,
    );
    await rt.services.sql.duck.run(
      `UPDATE ferry.rejects SET status = 'resolved', resolved_by_run = 'killed' WHERE id = ${c4!.id}`,
    );
    await rt.services.sql.duck.run(
      `INSERT INTO ferry.rejects (run_id, pipeline, stage, reason, message, source_file, row_number, row_json, created_at) VALUES ('killed', 'contacts-inbound', 'convert-to-dataverse', 'x', 'x', 'f', 1, '{}', '2026-12-06T00:00:00')`,
    );
    const next = await replay();
    assert.deepEqual(finish(next), { claimed: 2, resolved: 0, upserted: 0, still_rejected: 2 }, describeRun(next));
    assert.deepEqual(await open(), openBefore);
    assert.deepEqual(
      (await rejects()).filter((r) => r.run_id === 'killed'),
      [],
    );
    const [killed] = await rt.services.sql.duck.all<{ status: string; error_json: string }>(
      `SELECT status, error_json FROM ferry.runs WHERE id = 'killed'`,
    );
    assert.equal(killed?.status, 'failed');
    assert.match(killed!.error_json, /replay\.abandoned/);
  });

  it('the T-SQL rebuilding source rows keeps its shape (OPENJSON ... WITH is beyond the T-SQL parser check)', async () => {
    const text = await readFile('sql/tsql/contacts-inbound/replay-begin.sql', 'utf8');
    const rebuild = text.split('\n').find((l) => l.includes('CROSS APPLY OPENJSON'));
    assert.ok(rebuild, text);
    assert.match(
      rebuild,
      /^SELECT (v\.\[\w+\], )+c\.\[source_file\] AS \[__source_file\], @run_id AS \[__run_id\], ROW_NUMBER\(\) OVER \(ORDER BY c\.\[id\]\) AS \[__row_id\], c\.\[row_number\] AS \[__row_number\], c\.\[id\] AS \[__reject_id\] INTO \[stg_contacts_inbound_replay_rows\] FROM \[stg_contacts_inbound_replay_claimed\] AS c CROSS APPLY OPENJSON\(c\.\[row_json\]\) WITH \((\[\w+\] NVARCHAR\(MAX\) N'\$\."\w+"'(, )?)+\) AS v;$/,
    );
    for (const column of ['contact_no', 'company_ref', 'company_type', 'modified_at'])
      assert.ok(rebuild.includes(`[${column}] NVARCHAR(MAX) N'$."${column}"'`), column);
  });
});
