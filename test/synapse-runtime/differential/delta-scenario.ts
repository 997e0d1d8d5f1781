/**
 * The Delta outbound scenario: `delta-pipelines/accounts-delta-outbound` (readSynapseLink `format: 'delta'`) through
 * the local runner and through the runtime on its exported artifacts (the real exporter, into memory: `pipelines/`
 * has no Delta pipeline), over several ticks. Dataverse changes (the same on both emulators) are exported as CSV by
 * the emulator's exporter and merged into `deltalake/account_partitioned/` by the Synapse Link Delta conversion
 * stand-in; its new files arrive in both lakes between ticks, data files before the commit that names them.
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import { LocalLake } from '../../../src/connectors/lake/local-lake.js';
import { exportSynapseLink } from '../../../src/emulator/synapse-link-export.js';
import { exportDeltaPipelines } from '../delta-export.js';
import { SynapseLinkDeltaJob } from '../synapse-link-delta-job.js';
import { finish, type ScenarioContext, type ScenarioResult, START } from './scenarios.js';
import { DifferentialTwin, LOCAL_SYNAPSE_LINK, METADATA } from './twin.js';

const ids = (n: number) => `d000000${n}-0000-4000-8000-00000000000${n}`;

/** Changes a record the same way in both Dataverses (as the other scenarios change them). */
function put(twin: DifferentialTwin, id: string, attributes: Record<string, unknown>, atMs: number): void {
  for (const store of [twin.local.emulator.store, twin.synapse.emulator.store]) {
    const before = store.get('account', id)?.attributes ?? {};
    store.put('account', id, { ...before, ...attributes }, new Date(atMs));
  }
}

function remove(twin: DifferentialTwin, id: string, atMs: number): void {
  for (const store of [twin.local.emulator.store, twin.synapse.emulator.store])
    store.delete('account', id, new Date(atMs));
}

/**
 * Seven ticks: version 0 (five accounts, two partitions); an update and a delete (version 1); a tick with no new
 * version; an insert and an update (version 2, a checkpoint, the commits before it cleaned up); a change the Spark
 * job merges late with an earlier SinkModifiedOn (version 3); a column added in Dataverse (version 4, the Delta schema
 * grows); a last tick with nothing new.
 */
export async function deltaOutbound(ctx: ScenarioContext): Promise<ScenarioResult> {
  const delta = await exportDeltaPipelines(ctx.settings);
  const scenario: ScenarioContext = { ...ctx, pipelines: delta.pipelines, renderings: delta.renderings };
  const twin = await DifferentialTwin.open({
    root: ctx.root,
    startTime: START,
    pipelines: delta.pipelines,
    settings: ctx.settings,
    renderings: delta.renderings,
    artifacts: delta.artifacts,
  });
  const failures: string[] = [];
  try {
    const csvRoot = path.join(ctx.root, 'synapse-link-csv');
    const deltaRoot = path.join(ctx.root, 'synapse-link-delta');
    const job = new SynapseLinkDeltaJob(deltaRoot, { checkpointInterval: 2 });
    const copied = new Set<string>();
    const versions: number[] = [];
    const metadataV2 = await metadataWithNewColumn(ctx.root);
    /** Synapse Link's interval (CSV export, then the Delta MERGE); the new Delta files arrive in both lakes. */
    const convert = async (atMs: number, metadataDir = METADATA) => {
      const ex = await exportSynapseLink(twin.local.emulator.store, new LocalLake(csvRoot), '', {
        metadataDir,
        now: new Date(atMs),
      });
      if (!ex.folder) return;
      const v = (await job.merge(csvRoot, ex.folder, atMs)).account;
      if (v !== undefined) versions.push(v);
      const fresh: string[] = [];
      for (const e of await fs.readdir(deltaRoot, { recursive: true, withFileTypes: true })) {
        if (!e.isFile()) continue;
        const rel = path.relative(deltaRoot, path.join(e.parentPath, e.name));
        if (copied.has(rel)) continue;
        copied.add(rel);
        fresh.push(rel);
      }
      // Data files first, then the log (`_last_checkpoint` last): a commit names only files already there.
      const rank = (f: string) => (f.includes('_delta_log') ? (f.endsWith('_last_checkpoint') ? 2 : 1) : 0);
      fresh.sort((a, b) => rank(a) - rank(b) || (a < b ? -1 : 1));
      await twin.arriveSynapseLink(deltaRoot, fresh);
    };
    const soon = (minutes: number) => twin.nowMs() + minutes * 60_000;

    for (let n = 1; n <= 5; n++)
      put(
        twin,
        ids(n),
        { name: `Delta ${n}`, accountnumber: `D-${n}`, revenue: n * 100.25 },
        // Accounts 1 and 2 created in 2025: two partitions.
        n <= 2 ? Date.parse('2025-06-01T00:00:00Z') + n * 60_000 : soon(-10 + n),
      );
    await convert(soon(-2));
    await twin.tick(); // version 0
    put(twin, ids(1), { name: 'Delta 1 renamed' }, soon(1));
    remove(twin, ids(2), soon(2));
    const lateAt = soon(3);
    await convert(soon(4));
    await twin.tick(); // version 1
    await convert(soon(4));
    await twin.tick(); // nothing new
    put(twin, ids(6), { name: 'Delta 6', accountnumber: 'D-6', revenue: 6 }, soon(1));
    put(twin, ids(3), { telephone1: '+1 555 0103' }, soon(2));
    await convert(soon(4));
    // Log cleanup: Spark removes commits older than the log retention once a checkpoint covers them.
    const checkpoint = path.join(
      'deltalake',
      'account_partitioned',
      '_delta_log',
      '00000000000000000002.checkpoint.parquet',
    );
    if (!copied.has(checkpoint)) failures.push('the Delta conversion wrote no checkpoint at version 2');
    for (const lake of [path.join(twin.local.config.lake, LOCAL_SYNAPSE_LINK), twin.synapse.synapseLinkDir])
      for (const v of ['00000000000000000000.json', '00000000000000000001.json'])
        await fs.rm(path.join(lake, 'deltalake', 'account_partitioned', '_delta_log', v));
    await twin.tick(); // version 2, read from the checkpoint
    // A change merged late: its SinkModifiedOn is before version 2's rows (a selection by time would skip it).
    put(twin, ids(4), { name: 'Delta 4 late' }, lateAt);
    await convert(lateAt + 60_000);
    await twin.tick(); // version 3
    // A column added to account in Dataverse: the next CSV folder's model.json has it, the Delta schema grows.
    put(twin, ids(5), { ferry_newcolumn: 'added' }, soon(1));
    await convert(soon(3), metadataV2);
    await twin.tick(); // version 4
    await twin.tick(); // nothing new

    const expected = versions.map((v) => `v${v}`);
    if (expected.join() !== 'v0,v1,v2,v3,v4') failures.push(`the conversion committed ${expected.join(', ')}`);
    const extracts = twin.synapse.rt.runs
      .filter((r) => r.pipelineName === 'pl_accounts_delta_outbound')
      .filter((r) =>
        r.activityRuns.some((a) => a.activityName === 'ExtractToParquet_account' && a.status === 'Succeeded'),
      );
    if (extracts.length !== versions.length)
      failures.push(`${extracts.length} Synapse extracts ran for ${versions.length} versions`);
    return await finish(
      'Delta outbound: versions with an update and a delete, ticks with no new version, a checkpoint, a late merge, a column added',
      twin,
      scenario,
      failures,
      `${versions.length} Delta versions, ${extracts.length} Synapse extracts`,
    );
  } finally {
    await twin.close();
  }
}

/** A copy of the metadata snapshots with one more account column (a column added in Dataverse mid-sequence). */
async function metadataWithNewColumn(root: string): Promise<string> {
  const dir = path.join(root, 'metadata-delta-v2');
  await fs.cp(METADATA, dir, { recursive: true });
  const file = path.join(dir, 'account.json');
  const meta = JSON.parse(await fs.readFile(file, 'utf8')) as { Attributes: Array<Record<string, unknown>> };
  const template = meta.Attributes.find((a) => a.LogicalName === 'telephone2') ?? meta.Attributes[0]!;
  meta.Attributes.splice(5, 0, { ...template, LogicalName: 'ferry_newcolumn', SchemaName: 'ferry_NewColumn' });
  await fs.writeFile(file, JSON.stringify(meta, null, 2));
  return dir;
}
