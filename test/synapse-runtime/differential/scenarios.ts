/**
 * The differential scenarios: each opens a twin (local runner ‖ runtime on `synapse/`), drives both over the same
 * ticks with the same inputs, then compares their end states. Inputs are the bundled fixtures (`fixtures/inbound`),
 * arriving between ticks under names that carry their arrival time, and Synapse Link folders exported by the
 * emulator's own exporter from the Dataverse the inbound pipelines wrote.
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import { EXIT, exitCodeFor, FerryError } from '../../../src/core/errors.js';
import { silentLogger } from '../../../src/core/log.js';
import type { PipelineDefinition } from '../../../src/core/pipeline.js';
import { DuckDbStaging, openRunStaging } from '../../../src/dialects/duckdb/driver.js';
import type { SynapseExportSettings } from '../../../src/export/synapse/export-settings.js';
import type { StepRenderings } from '../../../src/export/synapse/runtime/connectors/sql-engine.js';
import type { PipelineRun } from '../../../src/export/synapse/runtime/run-records.js';
import { runReplay } from '../../../src/schedule/replay.js';
import { stageRegistry } from '../../../src/stages/registry.js';
import { compareTwin, type Difference, describeDifference } from './end-state.js';
import { classify } from './known-differences.js';
import { DifferentialTwin, LOCAL_SYNAPSE_LINK, METADATA, SynapseLinkSource, TICK_MS } from './twin.js';

export interface ScenarioContext {
  readonly root: string;
  readonly pipelines: readonly PipelineDefinition[];
  readonly settings: SynapseExportSettings;
  readonly renderings: StepRenderings;
}

export interface ScenarioResult {
  readonly name: string;
  readonly ticks: number;
  readonly activitiesRun: number;
  readonly localRuns: number;
  readonly compared: number;
  readonly mismatches: Difference[];
  readonly known: Record<string, number>;
  readonly lost: number;
  readonly duplicated: number;
  readonly stuckRuns: number;
  readonly unsupported: number;
  /** What the scenario itself asserts about the run (beyond the comparison); empty when it holds. */
  readonly failures: string[];
  readonly note: string;
  /** Synapse pipeline → the errors of its latest run's failed activities (when that run failed). */
  readonly latestFailures: Record<string, string[]>;
  /** Every Synapse run: `<pipeline> <status>` in start order (for the report when a scenario fails). */
  readonly runs: string[];
}

export const START = '2026-01-01T00:00:00Z';
const FIX = 'fixtures/inbound';

/** `2026-01-01T00-16-00Z`: the local runner reads a delta file's time from its name, the Synapse path its mtime. */
export const stamp = (ms: number) => new Date(ms).toISOString().replace('.000Z', 'Z').replaceAll(':', '-');

/** A Synapse Link timestamp folder name as exports in the field are named: `2026-01-01T00.15.00Z`. */
export const folderName = (ms: number) => new Date(ms).toISOString().replace('.000Z', 'Z').replaceAll(':', '.');

/**
 * Fixture files as the scenarios use them. `clean` drops the rows that create a record in an inactive state (they
 * have a scenario of their own, `inactiveOnCreate`, which also closes the won/lost opportunities): status `Active` (accounts, contacts) and
 * `Open` (opportunities) only.
 */
export async function fixtureSet(root: string, clean: boolean): Promise<Record<string, string[]>> {
  const out: Record<string, string[]> = {};
  const duck = await DuckDbStaging.open({ memoryLimit: '128MB', threads: 1 });
  try {
    for (const folder of ['currencies', 'regions', 'accounts', 'contacts', 'opportunities']) {
      const files = (await fs.readdir(path.join(FIX, folder))).filter((f) => f.endsWith('.parquet')).sort();
      out[folder] = [];
      for (const f of files) {
        const from = path.join(FIX, folder, f);
        if (!clean || !['accounts', 'contacts', 'opportunities'].includes(folder)) {
          out[folder].push(from);
          continue;
        }
        const to = path.join(root, 'fixtures', folder, f);
        await fs.mkdir(path.dirname(to), { recursive: true });
        await duck.run(
          `COPY (SELECT * FROM read_parquet('${from}') WHERE status IN ('Active', 'Open')) TO '${to}' (FORMAT parquet)`,
        );
        out[folder].push(to);
      }
    }
  } finally {
    await duck.close();
  }
  return out;
}

/** Synapse Link is set up before the first tick: its Changelog names the folder in progress, nothing is complete. */
async function seedSynapseLink(twin: DifferentialTwin): Promise<void> {
  const inProgress = folderName(twin.nowMs() + TICK_MS);
  for (const root of [path.join(twin.local.config.lake, LOCAL_SYNAPSE_LINK), twin.synapse.synapseLinkDir]) {
    await fs.mkdir(path.join(root, 'Changelog'), { recursive: true });
    await fs.writeFile(path.join(root, 'Changelog', 'changelog.info'), inProgress);
  }
}

export async function openTwin(
  ctx: ScenarioContext,
  extra: { backfillRange?: { start: string; end: string } } = {},
): Promise<DifferentialTwin> {
  const twin = await DifferentialTwin.open({
    root: ctx.root,
    startTime: START,
    pipelines: ctx.pipelines,
    settings: ctx.settings,
    renderings: ctx.renderings,
    ...extra,
  });
  await seedSynapseLink(twin);
  return twin;
}

/** Timestamp folders with no file in them. */
async function emptyFolders(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await fs.readdir(dir, { withFileTypes: true }))
    if (
      e.isDirectory() &&
      /^\d{4}-/.test(e.name) &&
      !(await fs.readdir(path.join(dir, e.name), { recursive: true })).length
    )
      out.push(e.name);
  return out;
}

/** Compares the twin's end states and counts what the scenario ran. */
export async function finish(
  name: string,
  twin: DifferentialTwin,
  ctx: ScenarioContext,
  failures: string[],
  note: string,
): Promise<ScenarioResult> {
  const { differences, local, synapse } = await compareTwin(twin);
  const runs = twin.synapse.rt.runs;
  const { mismatches, known } = classify(differences, {
    pipelines: ctx.pipelines,
    local,
    synapse,
    synapseRuns: runs,
    emptySynapseLinkFolders: await emptyFolders(twin.synapse.synapseLinkDir),
  });
  const compared =
    Object.values(local.dataverse).reduce((n, t) => n + Object.keys(t).length, 0) +
    Object.values(local.warehouse).reduce((n, t) => n + Object.keys(t).length, 0) +
    Object.values(local.deleted).reduce((n, t) => n + t.length, 0) +
    Object.keys(local.rejects).length;
  // Lost / duplicated on the Synapse path itself: a record both executors should hold but Synapse lost is a
  // mismatch (or a known difference); duplicated = two records with one alternate key in its Dataverse.
  let duplicated = 0;
  for (const table of twin.synapse.emulator.store.tables()) {
    const rows = twin.synapse.emulator.store.rows(table);
    const ids = Object.keys(synapse.dataverse[table] ?? {});
    duplicated += rows.length - ids.length;
  }
  const lost = mismatches.filter((d) => d.column === '*' && d.local !== undefined && d.synapse === undefined).length;
  const unsupported = runs
    .flatMap((r) => r.activityRuns)
    .filter(
      (a) => a.error?.errorCode === 'UnsupportedByLocalRuntime' || a.error?.errorCode === 'SqlStepNotRunnable',
    ).length;
  if (process.env.DIFF_DEBUG)
    for (const r of runs.filter((x) => x.pipelineName === process.env.DIFF_DEBUG))
      console.log(
        r.status,
        JSON.stringify(
          r.activityRuns
            .filter((a) =>
              /^(LookupWatermark|SetWindowEnd|ListDeltaFiles|FilterDeltaFiles|CopyStagingToDataverse|CopyLookupsToDataverse)$/.test(
                a.activityName,
              ),
            )
            .map((a) => [a.activityName, a.output]),
        ).slice(0, 1500),
      );
  return {
    name,
    ticks: twin.ticks,
    activitiesRun: twin.synapse.rt.engine.activityRunCount(),
    localRuns: twin.local.reports.length,
    compared,
    mismatches,
    known,
    lost,
    duplicated,
    // Runs not ended in the engine, and runs left `running` in either executor's run records after the last tick.
    stuckRuns:
      twin.synapse.rt.engine.unfinishedRuns().length +
      Number(
        (
          await twin.synapse.rt.services.sql.duck.all<{ n: number }>(
            "SELECT count(*) AS n FROM ferry.runs WHERE status = 'running'",
          )
        )[0]?.n ?? 0,
      ) +
      twin.local.state.listRuns({ limit: 10_000 }).filter((r) => r.status === 'running').length,
    unsupported,
    failures,
    note,
    runs: runs.map((r) => `${r.pipelineName} ${r.status} ${r.status === 'Failed' ? r.message.slice(0, 120) : ''}`),
    latestFailures: Object.fromEntries(
      [...new Set(runs.map((r) => r.pipelineName))].flatMap((p) => {
        const last = runs.filter((r) => r.pipelineName === p).at(-1)!;
        return last.status === 'Failed'
          ? [
              [
                p,
                last.activityRuns
                  .filter((a) => a.status === 'Failed' && a.error?.errorCode !== 'ContainerFailed')
                  .map((a) => `${a.activityName}: ${a.error?.message.slice(0, 160)}`),
              ],
            ]
          : [];
      }),
    ),
  };
}

export function printResult(r: ScenarioResult): void {
  const ok =
    r.mismatches.length === 0 && !r.lost && !r.duplicated && !r.stuckRuns && !r.unsupported && !r.failures.length;
  const known = Object.entries(r.known)
    .map(([k, n]) => `${k} ×${n}`)
    .join(', ');
  console.log(
    `${ok ? 'ok  ' : 'FAIL'} ${r.name}: ${r.ticks} ticks, ${r.activitiesRun} activity runs, ${r.localRuns} local runs, compared ${r.compared}, mismatches ${r.mismatches.length}${known ? `, known: ${known}` : ''} — ${r.note}`,
  );
  for (const f of r.failures) console.log(`  ${f}`);
  for (const d of r.mismatches.slice(0, 12)) console.log(`  mismatch: ${describeDifference(d)}`);
}

/** Deletes an account in both Dataverses, as a user would in the app. */
function deleteAccount(twin: DifferentialTwin, accountnumber: string): void {
  for (const store of [twin.local.emulator.store, twin.synapse.emulator.store]) {
    const row = store.rows('account').find((r) => r.attributes.accountnumber === accountnumber);
    if (row) store.delete('account', row.id, new Date(twin.nowMs() + 60_000));
  }
}

/** After a tick: what Synapse Link exports of the local Dataverse arrives in both lakes. */
async function exportBetweenTicks(twin: DifferentialTwin, source: SynapseLinkSource, metadataDir = METADATA) {
  const ex = await source.export(twin.local.emulator.store, twin.nowMs() + 2 * 60_000, metadataDir);
  await twin.arriveSynapseLink(source.root, ex.files);
  return ex;
}

async function arrive(twin: DifferentialTwin, folder: string, file: string, minutes = 1): Promise<void> {
  const at = twin.nowMs() + minutes * 60_000;
  await twin.arriveFile(file, `inbound/${folder}/${stamp(at)}.parquet`, at);
}

/** A copy of the metadata snapshots with one more account column (a column added in Dataverse mid-sequence). */
async function metadataWithNewColumn(root: string): Promise<string> {
  const dir = path.join(root, 'metadata-v2');
  await fs.cp(METADATA, dir, { recursive: true });
  const file = path.join(dir, 'account.json');
  const meta = JSON.parse(await fs.readFile(file, 'utf8')) as { Attributes: Array<Record<string, unknown>> };
  const template = meta.Attributes.find((a) => a.LogicalName === 'telephone2') ?? meta.Attributes[0]!;
  meta.Attributes.splice(5, 0, { ...template, LogicalName: 'ferry_newcolumn', SchemaName: 'ferry_NewColumn' });
  await fs.writeFile(file, JSON.stringify(meta, null, 2));
  return dir;
}

/** Eight 15-minute ticks: files and Synapse Link folders between them, ticks with nothing new, and the edge cases. */
export async function eightTicks(ctx: ScenarioContext): Promise<ScenarioResult> {
  const files = await fixtureSet(ctx.root, true);
  const twin = await openTwin(ctx);
  const failures: string[] = [];
  try {
    const source = new SynapseLinkSource(path.join(ctx.root, 'synapse-link-source'));
    const metadataV2 = await metadataWithNewColumn(ctx.root);
    let heldBack: { folder: string; files: string[] } | undefined;
    for (let tick = 1; tick <= 8; tick++) {
      if (tick === 1) {
        await arrive(twin, 'currencies', files.currencies![0]!);
        await arrive(twin, 'regions', files.regions![0]!);
        await arrive(twin, 'accounts', files.accounts![0]!);
      }
      if (tick === 2) {
        await arrive(twin, 'accounts', files.accounts![2]!);
        await arrive(twin, 'contacts', files.contacts![0]!);
      }
      if (tick === 4) {
        await arrive(twin, 'opportunities', files.opportunities![0]!);
        await arrive(twin, 'contacts', files.contacts![1]!);
      }
      if (tick === 6) await arrive(twin, 'opportunities', files.opportunities![1]!);
      // The file of bad rows (fourteen reject reasons) last: over the reject threshold on both sides, its window is
      // repeated by every later run and the pipelines that depend on accounts wait (both executors do the same).
      if (tick === 7) await arrive(twin, 'accounts', files.accounts![1]!);
      // Ticks 3, 5 and 8 bring no delta file.
      await twin.tick();
      if (tick === 3) {
        // An account deleted in Dataverse (on both sides, as a user would): the next export carries the delete.
        deleteAccount(twin, 'A-1007');
      }
      if (tick === 4) {
        // A column added to account in Dataverse: later folders' model.json carry it (binding by model.json).
        for (const store of [twin.local.emulator.store, twin.synapse.emulator.store]) {
          const row = store.rows('account').find((r) => r.attributes.accountnumber === 'A-1001');
          if (row)
            store.put('account', row.id, { ...row.attributes, ferry_newcolumn: 'added' }, new Date(twin.nowMs()));
        }
      }
      if (tick === 5) {
        // A change in Dataverse (both sides), exported into a folder still being written at tick 6 (its CSVs are
        // there, model.json not, changelog.info names it)…
        for (const store of [twin.local.emulator.store, twin.synapse.emulator.store]) {
          const row = store.rows('account').find((r) => r.attributes.accountnumber === 'A-1004');
          if (row)
            store.put('account', row.id, { ...row.attributes, telephone1: '+44 20 5550101' }, new Date(twin.nowMs()));
        }
        const ex = await source.export(twin.local.emulator.store, twin.nowMs() + 2 * 60_000, metadataV2);
        if (ex.folder) {
          const csvs = ex.files.filter((f) => f.startsWith(`${ex.folder}/`) && !f.endsWith('model.json'));
          await twin.arriveSynapseLink(source.root, csvs);
          for (const root of [path.join(twin.local.config.lake, LOCAL_SYNAPSE_LINK), twin.synapse.synapseLinkDir])
            await fs.writeFile(path.join(root, 'Changelog', 'changelog.info'), ex.folder);
          heldBack = { folder: ex.folder, files: ex.files.filter((f) => !csvs.includes(f)) };
        } else failures.push('tick 5: the export wrote no folder');
        continue;
      }
      if (tick === 6 && heldBack) {
        // …completes before tick 7.
        await twin.arriveSynapseLink(source.root, heldBack.files);
        await exportBetweenTicks(twin, source, metadataV2);
        continue;
      }
      if (tick === 7) {
        // An empty folder a retried export leaves behind, before a real one.
        await twin.emptySynapseLinkFolder(folderName(twin.nowMs() + 60_000));
      }
      await exportBetweenTicks(twin, source, tick >= 4 ? metadataV2 : METADATA);
    }
    return await finish(
      '8 ticks: files and Synapse Link folders between ticks, ticks with no new file, a delete, a column added, a folder completing between ticks, an empty retry folder, a file of bad rows',
      twin,
      ctx,
      failures,
      `${twin.local.emulator.store.count('account')} accounts, ${twin.synapse.rt.runs.filter((r) => r.status === 'Failed').length} failed Synapse runs`,
    );
  } finally {
    await twin.close();
  }
}

/** Reference data and the first accounts file before tick 1 (the common start of the shorter scenarios). */
async function firstWave(twin: DifferentialTwin, files: Record<string, string[]>): Promise<void> {
  await arrive(twin, 'currencies', files.currencies![0]!);
  await arrive(twin, 'regions', files.regions![0]!);
  await arrive(twin, 'accounts', files.accounts![0]!);
}

/** A parent and its child in one delta file (regions: DACH's parent EMEA; accounts: A-1003's parent A-1001). */
export async function parentAndChild(ctx: ScenarioContext): Promise<ScenarioResult> {
  const files = await fixtureSet(ctx.root, true);
  const twin = await openTwin(ctx);
  try {
    await firstWave(twin, files);
    await twin.tick();
    await twin.tick();
    const rejected = await twin.synapse.rt.services.sql.duck.all<{ key: string }>(
      "SELECT DISTINCT \"key\" FROM ferry.rejects WHERE reason = 'lookup.target_missing' AND pipeline = 'regions-inbound'",
    );
    return await finish(
      'a parent and its child in one window',
      twin,
      ctx,
      [],
      `${rejected.length} child region(s) rejected on the Synapse path`,
    );
  } finally {
    await twin.close();
  }
}

/** A 429 storm (every 3rd request, Retry-After) in tick 2 and a 503 burst (every 2nd write) in tick 3, on both sides. */
export async function throttlingAndOutage(ctx: ScenarioContext): Promise<ScenarioResult> {
  const files = await fixtureSet(ctx.root, true);
  const twin = await openTwin(ctx);
  try {
    await firstWave(twin, files);
    await twin.tick();
    await arrive(twin, 'contacts', files.contacts![0]!);
    await arrive(twin, 'accounts', files.accounts![2]!);
    twin.setFaults({ throttleEvery: 3, retryAfterSec: 0.01 });
    await twin.tick();
    const throttled = twin.synapse.rt.services.dataverse?.stats.throttled ?? 0;
    await arrive(twin, 'opportunities', files.opportunities![0]!);
    twin.setFaults({ failEvery: 2 });
    await twin.tick();
    twin.setFaults({});
    await twin.tick();
    const failures = throttled > 0 ? [] : ['no 429 reached the Synapse path during the storm'];
    return await finish(
      'a 429 storm and a 503 burst during the Dataverse copies',
      twin,
      ctx,
      failures,
      `${throttled} throttled answers on the Synapse path`,
    );
  } finally {
    await twin.close();
  }
}

/**
 * The Synapse path's Dataverse copy fails mid-pipeline (its emulator answers 503 to every write during tick 2,
 * beyond the sink's retries), then tick 3 runs with the service back: the window is repeated and both executors end
 * the same. The failed run is recorded as failed, not left running.
 */
export async function failureThenNextTick(ctx: ScenarioContext): Promise<ScenarioResult> {
  const files = await fixtureSet(ctx.root, true);
  const twin = await openTwin(ctx);
  try {
    await firstWave(twin, files);
    await twin.tick();
    await arrive(twin, 'contacts', files.contacts![0]!);
    twin.synapse.faults.failEvery = 1;
    await twin.tick();
    delete twin.synapse.faults.failEvery;
    await twin.tick();
    const failures: string[] = [];
    const master = twin.synapse.rt.runs.filter((r) => r.pipelineName === 'pl_ferry_every_15m');
    const copyFailed = twin.synapse.rt.runs.some((r) =>
      r.activityRuns.some((a) => a.activityName.startsWith('Copy') && /503/.test(a.error?.message ?? '')),
    );
    if (!copyFailed) failures.push('no Dataverse copy failed with 503 in tick 2');
    if (master.at(-1)?.status !== 'Succeeded') failures.push('the schedule pipeline of tick 3 did not succeed');
    const states = await twin.synapse.rt.services.sql.duck.all<{ status: string }>(
      'SELECT status FROM ferry.runs ORDER BY started_at',
    );
    if (states.some((s) => s.status === 'running'))
      failures.push(`a run left \`running\`: ${states.map((s) => s.status).join(', ')}`);
    return await finish(
      'an activity failure mid-pipeline, then the next tick',
      twin,
      ctx,
      failures,
      `schedule runs on the Synapse path: ${master.map((r) => r.status).join(', ')}`,
    );
  } finally {
    await twin.close();
  }
}

/**
 * Five ticks (with Synapse Link folders between them), then bounded backfills over the first hour, which the
 * schedule already covered: accounts-inbound (with its parents) and accounts-outbound.
 */
export async function backfillOverCoveredRange(ctx: ScenarioContext): Promise<ScenarioResult> {
  const files = await fixtureSet(ctx.root, true);
  const end = new Date(Date.parse(START) + 4 * TICK_MS).toISOString().replace('.000Z', 'Z');
  const twin = await openTwin(ctx, { backfillRange: { start: START, end } });
  try {
    const source = new SynapseLinkSource(path.join(ctx.root, 'synapse-link-source'));
    await firstWave(twin, files);
    await twin.tick();
    await exportBetweenTicks(twin, source);
    await arrive(twin, 'accounts', files.accounts![2]!);
    await arrive(twin, 'contacts', files.contacts![0]!);
    for (let i = 0; i < 4; i++) {
      await twin.tick();
      await exportBetweenTicks(twin, source);
    }
    const failures: string[] = [];
    const notes: string[] = [];
    for (const name of ['accounts-inbound', 'accounts-outbound']) {
      const { local, synapse } = await twin.backfill(name);
      for (const [trigger, windows] of Object.entries(synapse))
        if (windows.length !== 4 || windows.some((w) => w.status === 'Waiting' || w.status === 'Running'))
          failures.push(`${trigger}: ${windows.map((w) => w.status).join(',')} (expected 4 windows run)`);
      for (const r of local)
        if (r.windows.length !== 4)
          failures.push(`ferry backfill ${r.pipeline} ran ${r.windows.length} windows, expected 4`);
      notes.push(
        `local ${local.map((r) => `${r.pipeline} ${r.status}`).join(', ')}; Synapse ${Object.entries(synapse)
          .map(([t, w]) => `${t} ${w.map((x) => x.status).join('/')}`)
          .join(', ')}`,
      );
    }
    return await finish(
      'a bounded backfill over a range the schedule already covered (inbound and outbound)',
      twin,
      ctx,
      failures,
      notes.join('; '),
    );
  } finally {
    await twin.close();
  }
}

/** Two manual runs of accounts-inbound started together on each side, with a new file waiting. */
export async function overlappingManualRuns(ctx: ScenarioContext): Promise<ScenarioResult> {
  const files = await fixtureSet(ctx.root, true);
  const twin = await openTwin(ctx);
  try {
    await firstWave(twin, files);
    await twin.tick();
    await arrive(twin, 'accounts', files.accounts![2]!);
    const runs = await twin.overlappingManualRuns('accounts-inbound');
    await twin.tick();
    const failures: string[] = [];
    if (!runs.queued) failures.push('the second Synapse run did not queue behind the first (concurrency 1)');
    if (!runs.local.some((r) => r.status === 'skipped'))
      failures.push('the second local run was not skipped by the lease');
    return await finish(
      'two overlapping manual runs',
      twin,
      ctx,
      failures,
      `local ${runs.local.map((r) => r.status).join('+')}, Synapse ${runs.synapse.map((r) => r.status).join('+')}`,
    );
  } finally {
    await twin.close();
  }
}

/**
 * The bundled fixtures as they are: new records in an inactive state (account A-1006, contacts, won/lost
 * opportunities). Both paths create them and set the state afterwards; a won/lost opportunity is written open, then
 * closed by its message (WinOpportunity / LoseOpportunity) — locally by the writer, on the Synapse path by Web
 * activities — and both emulators hold it closed in the same state and status.
 */
export async function inactiveOnCreate(ctx: ScenarioContext): Promise<ScenarioResult> {
  const files = await fixtureSet(ctx.root, false);
  const twin = await openTwin(ctx);
  try {
    await firstWave(twin, files);
    await twin.tick();
    await arrive(twin, 'contacts', files.contacts![0]!);
    await arrive(twin, 'opportunities', files.opportunities![0]!);
    await twin.tick();
    await twin.tick();
    const failures: string[] = [];
    const refused = twin.synapse.rt.runs.filter((r) =>
      r.activityRuns.some((a) => /is not a valid status code for state code|0x80100005/.test(a.error?.message ?? '')),
    );
    if (refused.length) failures.push(`${refused.length} Synapse run(s) refused by the service for a state column`);
    const inactive = twin.synapse.emulator.store.rows('account').filter((r) => r.attributes.statecode === 1).length;
    if (inactive === 0) failures.push('no account was created in an inactive state on the Synapse path');
    const closed = (side: 'local' | 'synapse') =>
      twin[side].emulator.store
        .rows('opportunity')
        .filter((r) => r.attributes.statecode === 1 || r.attributes.statecode === 2)
        .map((r) => `${String(r.attributes.statecode)}/${String(r.attributes.statuscode)}`)
        .sort()
        .join(' ');
    if (closed('synapse') === '') failures.push('no won/lost opportunity was closed on the Synapse path');
    if (closed('synapse') !== closed('local'))
      failures.push(`won/lost opportunities differ: local ${closed('local')}, Synapse ${closed('synapse')}`);
    const sent = twin.synapse.rt.runs
      .flatMap((r) => r.activityRuns)
      .filter((a) => a.activityName === 'SendCloseMessage' && a.status === 'Succeeded').length;
    return await finish(
      'new records in an inactive state (the fixtures as bundled)',
      twin,
      ctx,
      failures,
      `${inactive} inactive account(s) on the Synapse path; won/lost opportunities (state/status) ${closed('synapse')}, closed by ${sent} WinOpportunity/LoseOpportunity message(s)`,
    );
  } finally {
    await twin.close();
  }
}

/**
 * An account deleted in Dataverse after the Synapse path's key map learned it, then a contact naming it as its
 * parent: the local runner rejects the contact (`lookup.target_missing`); the Synapse path checks the key-map ids
 * the window points at before its copies, drops the deleted one and rejects the contact the same way, in the same
 * run — no copy is refused for it.
 */
export async function deletedLookupTarget(ctx: ScenarioContext): Promise<ScenarioResult> {
  const files = await fixtureSet(ctx.root, true);
  const twin = await openTwin(ctx);
  try {
    await firstWave(twin, files);
    await arrive(twin, 'contacts', files.contacts![0]!);
    await twin.tick();
    await twin.tick();
    deleteAccount(twin, 'A-1002');
    await arrive(twin, 'contacts', files.contacts![1]!);
    await twin.tick();
    await twin.tick();
    const refused = twin.synapse.rt.runs.filter((r) =>
      r.activityRuns.some((a) => /0x80040217/.test(a.error?.message ?? '')),
    ).length;
    const failures = refused ? [`${refused} Synapse run(s) refused by the service for a deleted lookup target`] : [];
    const [rejected] = await twin.synapse.rt.services.sql.duck.all<{ n: number }>(
      "SELECT COUNT(*) AS n FROM ferry.rejects WHERE reason = 'lookup.target_missing' AND status = 'open'",
    );
    if (Number(rejected?.n ?? 0) === 0) failures.push('the Synapse path rejected no row lookup.target_missing');
    return await finish(
      'a lookup to a record deleted in Dataverse',
      twin,
      ctx,
      failures,
      `no Synapse run refused; ${Number(rejected?.n ?? 0)} row(s) rejected lookup.target_missing there`,
    );
  } finally {
    await twin.close();
  }
}

/** `pipeline|reason|key|status` of every reject a replay closed, counted (`resolved` or `superseded`). */
type ClosedRejects = Record<string, number>;

/** JSON of rows read from DuckDB (its BIGINTs come back as `bigint`). */
const snapshot = (rows: unknown) => JSON.stringify(rows, (_, v) => (typeof v === 'bigint' ? String(v) : v));

function countInto(out: ClosedRejects, key: string, n = 1): void {
  out[key] = (out[key] ?? 0) + n;
}

/**
 * Replay of rejected rows on both sides. Tick 1: regions, currencies, the accounts without `A'1008`, and contacts
 * (C-1, C-2, C-3 whose parent is C-1 in the same window, CRM2/C-1 naming the missing account `A'1008`, C-4 with a
 * loyalty tier out of range): both executors reject CRM2/C-1 (`lookup.target_missing`, a parent of another pipeline)
 * and C-4 (`number.out_of_range`) — 2 of 5 rows, under the pipeline's reject threshold, so the window is not
 * repeated. Tick 2: `A'1008` arrives. Then a replay of the contacts run on each side — `runReplay` as `ferry replay
 * --run` calls it, and `pl_contacts_inbound_replay` with that run's id: CRM2/C-1 is resolved, C-4 rejected again
 * (superseded). Then a second replay of `lookup.target_missing` rows, of which none is left: both must say nothing
 * was done (the CLI's exit code 4 for `replay.nothing`; the Fail activity's `errorCode` 4) and change nothing.
 * Compared: the end states (Dataverse, warehouse, open rejects) as in every scenario, plus the rejects each replay
 * closed (pipeline, reason, key, resolved or superseded), the replay's counts and the second replay's outcome.
 */
export async function replayOfRejects(ctx: ScenarioContext): Promise<ScenarioResult> {
  const files = await fixtureSet(ctx.root, true);
  const made = path.join(ctx.root, 'fixtures', 'replay');
  await fs.mkdir(made, { recursive: true });
  const accountsFirst = path.join(made, 'accounts-first.parquet');
  const accountsLater = path.join(made, 'accounts-later.parquet');
  const contacts = path.join(made, 'contacts.parquet');
  const duck = await DuckDbStaging.open({ memoryLimit: '128MB', threads: 1 });
  try {
    const accounts = files.accounts![0]!;
    await duck.run(
      `COPY (SELECT * FROM read_parquet('${accounts}') WHERE account_no <> 'A''1008') TO '${accountsFirst}' (FORMAT parquet)`,
    );
    await duck.run(
      `COPY (SELECT * FROM read_parquet('${accounts}') WHERE account_no = 'A''1008') TO '${accountsLater}' (FORMAT parquet)`,
    );
    await duck.run(
      `COPY (SELECT * FROM read_parquet('${files.contacts![0]!}') WHERE source_system || '/' || contact_no IN ('CRM1/C-1', 'CRM1/C-2', 'CRM1/C-3', 'CRM2/C-1', 'CRM1/C-4')) TO '${contacts}' (FORMAT parquet)`,
    );
  } finally {
    await duck.close();
  }
  const twin = await openTwin(ctx);
  const failures: string[] = [];
  const PIPELINE = 'contacts-inbound';
  try {
    await arrive(twin, 'currencies', files.currencies![0]!);
    await arrive(twin, 'regions', files.regions![0]!);
    await arrive(twin, 'accounts', accountsFirst);
    await arrive(twin, 'contacts', contacts);
    await twin.tick();
    await arrive(twin, 'accounts', accountsLater);
    await twin.tick();

    // The run whose rejects each side replays: the one contacts run with open rejects.
    const localOpen = twin.local.state.listRejects({ pipeline: PIPELINE, status: 'open' });
    const localRuns = [...new Set(localOpen.map((r) => r.runId))];
    const synapseRuns = (
      await twin.synapse.rt.services.sql.duck.all<{ run_id: string }>(
        `SELECT DISTINCT run_id FROM ferry.rejects WHERE pipeline = '${PIPELINE}' AND status = 'open'`,
      )
    ).map((r) => r.run_id);
    if (localRuns.length !== 1 || synapseRuns.length !== 1)
      failures.push(
        `expected one ${PIPELINE} run with open rejects on each side, got local ${localRuns.length}, Synapse ${synapseRuns.length}`,
      );
    const def = ctx.pipelines.find((p) => p.name === PIPELINE)!;
    const localReplay = (runId: string, reason?: string) =>
      runReplay(def, {
        config: twin.local.config,
        lake: twin.local.lake,
        state: twin.local.state,
        registry: stageRegistry,
        services: { dataverse: { url: twin.local.emulator.url }, openStaging: openRunStaging },
        log: silentLogger,
        runId,
        ...(reason ? { reason } : {}),
      });
    const synapseReplay = (runId: string, reason?: string) =>
      twin.synapse.rt.runPipeline(`pl_${PIPELINE.replaceAll('-', '_')}_replay`, { runId, reason: reason ?? '' });
    const failCode = (run: PipelineRun, activity: string) =>
      run.activityRuns.find((a) => a.activityName === activity && a.status === 'Failed')?.error?.errorCode;

    // CRM2/C-1 is in neither Dataverse before the replays, and in both after the first.
    const hasContact = (side: 'local' | 'synapse') =>
      (side === 'local' ? twin.local.emulator : twin.synapse.emulator).store
        .rows('contact')
        .some((c) => c.attributes.ferry_legacysource === 'CRM2' && c.attributes.ferry_legacyid === 'C-1');
    if (hasContact('local') || hasContact('synapse'))
      failures.push(
        `CRM2/C-1 written before the replay: local ${hasContact('local')}, Synapse ${hasContact('synapse')}`,
      );

    // The first replay: the exit code as `ferry replay` computes it (3 when rows were rejected again), and the
    // replay pipeline's (its Fail activity `RowsRejectedAgain`, errorCode 3), with the counts of each.
    const local = await localReplay(localRuns[0] ?? '');
    const localExit =
      local.report.status === 'succeeded' || local.report.status === 'rejects_exceeded'
        ? local.stillRejected > 0
          ? EXIT.rejectThresholdExceeded
          : EXIT.ok
        : EXIT.failed;
    const synapse = await synapseReplay(synapseRuns[0] ?? '');
    const synapseExit =
      synapse.status === 'Succeeded' ? EXIT.ok : Number(failCode(synapse, 'RowsRejectedAgain') ?? EXIT.failed);
    const [counts] = await twin.synapse.rt.services.sql.duck.all<{ counts_json: string }>(
      `SELECT counts_json FROM ferry.runs WHERE id = '${synapse.runId}'`,
    );
    const synapseCounts = JSON.parse(counts?.counts_json ?? '{}') as Record<string, number>;
    const localFigures = `exit ${localExit}, resolved ${local.resolved}, upserted ${local.upserted}, rejected again ${local.stillRejected}`;
    const synapseFigures = `exit ${synapseExit}, resolved ${synapseCounts.resolved}, upserted ${synapseCounts.upserted}, rejected again ${synapseCounts.stillRejected}`;
    if (localFigures !== synapseFigures)
      failures.push(`first replay: local ${localFigures}; Synapse ${synapseFigures}`);
    if (local.resolved === 0 || local.stillRejected === 0)
      failures.push(`first replay: expected rows resolved and rows rejected again, local ${localFigures}`);

    if (!hasContact('local') || !hasContact('synapse'))
      failures.push(
        `CRM2/C-1 not written by the replay: local ${hasContact('local')}, Synapse ${hasContact('synapse')}`,
      );

    // The rejects each replay closed, by pipeline, reason, key and how (resolved / superseded).
    const localClosed: ClosedRejects = {};
    for (const r of twin.local.state.listRejects({ pipeline: PIPELINE }))
      if (r.status !== 'open' && r.resolvedByRun === local.report.runId)
        countInto(localClosed, `${r.pipeline}|${r.reason}|${r.key ?? ''}|${r.status}`);
    const synapseClosed: ClosedRejects = {};
    for (const r of await twin.synapse.rt.services.sql.duck.all<{
      pipeline: string;
      reason: string;
      key: string | null;
      status: string;
      n: number;
    }>(
      `SELECT pipeline, reason, "key", status, count(*) AS n FROM ferry.rejects WHERE resolved_by_run = '${synapse.runId}' AND status <> 'open' GROUP BY ALL`,
    ))
      countInto(synapseClosed, `${r.pipeline}|${r.reason}|${r.key ?? ''}|${r.status}`, Number(r.n));
    for (const k of [...new Set([...Object.keys(localClosed), ...Object.keys(synapseClosed)])].sort())
      if (localClosed[k] !== synapseClosed[k])
        failures.push(`closed by the replay: ${k} local ${localClosed[k] ?? 0} vs Synapse ${synapseClosed[k] ?? 0}`);

    // The second replay, of `lookup.target_missing` rows: none is left on either side.
    const rejectsBefore = {
      local: JSON.stringify(twin.local.state.listRejects({ pipeline: PIPELINE })),
      synapse: snapshot(await twin.synapse.rt.services.sql.duck.all(`SELECT * FROM ferry.rejects ORDER BY id`)),
    };
    const runsBefore = {
      local: twin.local.state.listRuns({ limit: 10_000 }).length,
      synapse: await twin.synapse.rt.services.sql.duck.all(`SELECT id, status FROM ferry.runs ORDER BY id`),
    };
    let localNothing: number;
    try {
      await localReplay(localRuns[0] ?? '', 'lookup.target_missing');
      localNothing = EXIT.ok;
    } catch (error) {
      localNothing = exitCodeFor(error);
      if (!(error instanceof FerryError && error.code === 'replay.nothing'))
        failures.push(`second local replay: ${error instanceof Error ? error.message : String(error)}`);
    }
    const nothing = await synapseReplay(synapseRuns[0] ?? '', 'lookup.target_missing');
    const synapseNothing = Number(failCode(nothing, 'NothingToReplay') ?? (nothing.status === 'Succeeded' ? 0 : 1));
    if (localNothing !== EXIT.heldBack || synapseNothing !== EXIT.heldBack)
      failures.push(
        `second replay (nothing left): local exit ${localNothing}, Synapse errorCode ${synapseNothing}; both should be 4`,
      );
    if (JSON.stringify(twin.local.state.listRejects({ pipeline: PIPELINE })) !== rejectsBefore.local)
      failures.push('the second local replay changed the rejects');
    if (twin.local.state.listRuns({ limit: 10_000 }).length !== runsBefore.local)
      failures.push('the second local replay recorded a run');
    if (
      snapshot(await twin.synapse.rt.services.sql.duck.all(`SELECT * FROM ferry.rejects ORDER BY id`)) !==
      rejectsBefore.synapse
    )
      failures.push('the second Synapse replay changed ferry.rejects');
    if (
      snapshot(await twin.synapse.rt.services.sql.duck.all(`SELECT id, status FROM ferry.runs ORDER BY id`)) !==
      snapshot(runsBefore.synapse)
    )
      failures.push('the second Synapse replay recorded a run');

    return await finish(
      'replay of rejected rows (a parent of another pipeline arriving a tick later), then a replay with nothing left',
      twin,
      ctx,
      failures,
      `first replay: local ${localFigures}, Synapse ${synapseFigures}; closed ${JSON.stringify(localClosed)}; second replay: local exit ${localNothing}, Synapse errorCode ${synapseNothing}`,
    );
  } finally {
    await twin.close();
  }
}
