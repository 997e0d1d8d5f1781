/**
 * `npm run test:synapse` (after the unit tests): the differential scenarios. Each runs the same pipeline definitions
 * on the same fixtures over the same ticks through the local runner (the scheduler of `ferry schedule`, one Dataverse
 * emulator, one lake) and through the local Synapse runtime on the exported artifacts as deployed (`synapse/`, a
 * second emulator, its own lake), then compares the Dataverse records (every column), the warehouse's current state
 * (latest row per Id, deletes) and the open rejects (count and reason). A difference is either one that
 * `synapse/README.md` lists — recognised by name in `differential/known-differences.ts` — or a mismatch.
 *
 * Prints one line per scenario, a table, then one JSON line:
 * `{ scenarios, ticks, activitiesRun, comparedWithLocal, mismatchesVsLocal, lost, duplicated, stuckRuns, unsupported,
 * knownDifferences, sqlStepsWithoutDuckDbRendering }`. Exit code 1 when any of mismatchesVsLocal, lost, duplicated,
 * stuckRuns, unsupported is not 0, or a scenario's own assertion fails. `--only <name,name>` runs some scenarios.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { loadPipelines } from '../../src/core/pipeline-loader.js';
import { loadExportSettings } from '../../src/export/synapse/export-settings.js';
import { inspectArtifacts } from '../../src/export/synapse/runtime/artifact-inspector.js';
import { ArtifactStore } from '../../src/export/synapse/runtime/artifact-store.js';
import { synapseStepRenderings } from '../../src/export/synapse/step-renderings.js';
import { deltaOutbound } from './differential/delta-scenario.js';
import { KNOWN_DIFFERENCES } from './differential/known-differences.js';
import {
  backfillOverCoveredRange,
  deletedLookupTarget,
  eightTicks,
  failureThenNextTick,
  inactiveOnCreate,
  overlappingManualRuns,
  parentAndChild,
  printResult,
  replayOfRejects,
  type ScenarioContext,
  type ScenarioResult,
  throttlingAndOutage,
} from './differential/scenarios.js';

const SCENARIOS: Record<string, (ctx: ScenarioContext) => Promise<ScenarioResult>> = {
  eightTicks,
  parentAndChild,
  throttlingAndOutage,
  failureThenNextTick,
  backfillOverCoveredRange,
  overlappingManualRuns,
  inactiveOnCreate,
  deletedLookupTarget,
  replayOfRejects,
  deltaOutbound,
};

async function main(): Promise<void> {
  const started = Date.now();
  const onlyAt = process.argv.indexOf('--only');
  const only = onlyAt >= 0 ? new Set((process.argv[onlyAt + 1] ?? '').split(',')) : undefined;
  const settings = await loadExportSettings('synapse/settings.json');
  const pipelines = await loadPipelines('pipelines');
  const renderings = await synapseStepRenderings(pipelines, { settings, metadataDir: 'fixtures/metadata' });
  const real = inspectArtifacts(await ArtifactStore.load('synapse'), renderings);
  const realUnsupported = real.filter((f) => f.kind !== 'sql-without-duckdb-rendering');
  const realSql = real.filter((f) => f.kind === 'sql-without-duckdb-rendering');
  for (const f of realUnsupported) console.log(`unsupported in synapse/: ${f.kind} ${f.detail} at ${f.where}`);
  console.log(
    `synapse/: ${realUnsupported.length} unsupported activity types/properties/functions; ${realSql.length} SQL steps without a DuckDB rendering`,
  );

  const results: ScenarioResult[] = [];
  for (const [name, run] of Object.entries(SCENARIOS)) {
    if (only && !only.has(name)) continue;
    const root = await mkdtemp(path.join(tmpdir(), 'synapse-diff-'));
    try {
      const t0 = Date.now();
      const r = await run({ root, pipelines, settings, renderings });
      printResult(r);
      console.log(`  (${((Date.now() - t0) / 1000).toFixed(1)} s)`);
      results.push(r);
    } finally {
      await rm(root, { recursive: true, force: true });
    }
  }

  const sum = (f: (r: ScenarioResult) => number) => results.reduce((n, r) => n + f(r), 0);
  const known: Record<string, number> = {};
  for (const r of results) for (const [k, n] of Object.entries(r.known)) known[k] = (known[k] ?? 0) + n;
  console.log('');
  console.log('| scenario | ticks | activity runs | compared | mismatches | known differences |');
  console.log('| --- | --- | --- | --- | --- | --- |');
  for (const r of results)
    console.log(
      `| ${r.name} | ${r.ticks} | ${r.activitiesRun} | ${r.compared} | ${r.mismatches.length} | ${Object.entries(
        r.known,
      )
        .map(([k, n]) => `${k} ×${n}`)
        .join(', ')} |`,
    );
  for (const k of KNOWN_DIFFERENCES.filter((x) => known[x.name]))
    console.log(`known: ${k.name}${k.defect ? ` (review defect ${k.defect})` : ''} — README row "${k.readmeRow}"`);
  // A known difference no scenario met any more: its cause was fixed; remove it (and its README row) when all ran.
  if (!only)
    for (const k of KNOWN_DIFFERENCES.filter((x) => !known[x.name]))
      console.log(
        `known difference \`${k.name}\` did not occur in any scenario: remove it and its README row if it is fixed`,
      );
  console.log(`scenarios took ${((Date.now() - started) / 1000).toFixed(1)} s`);
  const figures = {
    scenarios: results.length,
    ticks: sum((r) => r.ticks),
    activitiesRun: sum((r) => r.activitiesRun),
    comparedWithLocal: sum((r) => r.compared),
    mismatchesVsLocal: sum((r) => r.mismatches.length),
    lost: sum((r) => r.lost),
    duplicated: sum((r) => r.duplicated),
    stuckRuns: sum((r) => r.stuckRuns),
    unsupported: sum((r) => r.unsupported) + realUnsupported.length,
    knownDifferences: known,
    sqlStepsWithoutDuckDbRendering: realSql.length,
  };
  console.log(JSON.stringify(figures));
  const failed =
    figures.mismatchesVsLocal ||
    figures.lost ||
    figures.duplicated ||
    figures.stuckRuns ||
    figures.unsupported ||
    results.some((r) => r.failures.length);
  if (failed) process.exitCode = 1;
}

await main();
