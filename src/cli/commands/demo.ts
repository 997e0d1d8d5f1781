import fs from 'node:fs/promises';
import path from 'node:path';
import type { RunCounts } from '../../core/counts.js';
import { EXIT } from '../../core/errors.js';
import type { Lake } from '../../core/lake.js';
import type { PipelineDefinition } from '../../core/pipeline.js';
import { loadPipelines } from '../../core/pipeline-loader.js';
import { type RunReport, runPipeline } from '../../core/runner.js';
import { openRunStaging } from '../../dialects/duckdb/driver.js';
import { stageRegistry } from '../../stages/registry.js';
import type { Command, CommandInput } from '../command.js';
import { exitCodeForReport, reportJson, reportLine } from '../format.js';
import { createProgress } from '../progress.js';
import { PACKAGE_ROOT } from '../project.js';
import { runQueueDemo } from '../queue-demo.js';
import { type OpenDataverse, openDataverse, openLake, openState } from '../services.js';

/** Where the bundled inbound deltas are copied from: the package's own, so the demo runs from any folder. */
const FIXTURE_INBOUND = path.join(PACKAGE_ROOT, 'fixtures', 'inbound');
/** The lake folder the emulator's Synapse Link export goes to; the outbound demo pipelines read it. */
export const DEMO_SYNAPSE_LINK_FOLDER = 'synapse-link/dataverse-demo';

/**
 * `ferry demo` (= `npm start`): every demo pipeline on the bundled fixtures against the built-in emulator —
 * inbound deltas → Dataverse, then Synapse Link export → outbound warehouse Parquet — with a summary.
 */
export const demoCommand: Command = {
  name: 'demo',
  summary: 'run all demo pipelines on the bundled fixtures against the emulator',
  usage: 'demo [--json]',
  description:
    'Copies the bundled inbound deltas into <lake>/inbound, starts the Dataverse emulator in-process, runs the inbound pipelines, writes what Synapse Link would export, runs the outbound pipelines and prints a summary. Works from any folder: the fixtures come with the package.',
  examples: [
    { text: 'The demo (same as npm start):', command: 'ferry demo' },
    { text: 'Start over:', command: 'rm -rf lake .ferry && ferry demo' },
  ],
  async run(commandInput) {
    // The demo's target is the built-in emulator unless a Dataverse URL was given; outside a project (no
    // pipelines/ or metadata/ here) it uses the package's own pipelines and metadata snapshots.
    const pipelinesDir = (await exists(commandInput.pipelinesDir))
      ? commandInput.pipelinesDir
      : path.join(PACKAGE_ROOT, 'pipelines');
    const metadata = (await exists(commandInput.config.metadata))
      ? commandInput.config.metadata
      : path.join(PACKAGE_ROOT, 'fixtures', 'metadata');
    // The package's pipelines name their extract queries relative to the package.
    if (pipelinesDir !== commandInput.pipelinesDir) process.chdir(PACKAGE_ROOT);
    const input: CommandInput = {
      ...commandInput,
      pipelinesDir,
      config: { ...commandInput.config, metadata, emulator: !commandInput.config.dataverse },
    };
    const copied = await seedLake(input.config.lake);
    const lake = openLake(input.config);
    const pipelines = await loadPipelines(input.pipelinesDir);
    const state = openState(input.config);
    let dataverse: OpenDataverse | undefined;
    const reports: Array<{ direction: PipelineDefinition['direction']; report: RunReport }> = [];
    try {
      // First the target line, then what the demo did to the lake.
      dataverse = await openDataverse(input.config, input.log);
      if (copied)
        input.log.info(`Copied ${copied} bundled delta file(s) into ${path.join(input.config.lake, 'inbound')}.`);
      const run = async (def: PipelineDefinition) => {
        const progress = input.json ? undefined : createProgress(def.name);
        const report = await runPipeline(def, {
          mode: 'manual',
          config: input.config,
          lake,
          state,
          registry: stageRegistry,
          services: { dataverse: dataverse!.endpoint, openStaging: openRunStaging },
          log: input.log,
          ...(progress ? { progress } : {}),
          signal: input.signal,
        });
        progress?.done();
        reports.push({ direction: def.direction, report });
        input.print(input.json ? JSON.stringify(reportJson(report)) : reportLine(report));
        return report;
      };
      for (const def of pipelines.filter((p) => p.direction === 'inbound')) await run(def);
      const queueLines = await runQueueDemo({
        config: input.config,
        state,
        dataverse: dataverse.endpoint,
        pipelines,
        log: input.log,
      });
      if (!input.json) for (const line of queueLines) input.print(line);
      if (dataverse.emulator) {
        const exported = await exportDemoSynapseLink(input, dataverse, lake, state);
        if (!input.json) input.print(exported);
      }
      for (const def of pipelines.filter((p) => p.direction === 'outbound')) await run(def);
    } finally {
      await dataverse?.close();
      state.close();
    }
    if (!input.json) printSummary(input, reports);
    const codes = reports.map((r) => exitCodeForReport(r.report));
    return codes.find((c) => c !== EXIT.ok) ?? EXIT.ok;
  },
};

/** Copies bundled delta files the lake does not have yet; returns how many. */
async function seedLake(lakeRoot: string): Promise<number> {
  let copied = 0;
  const walk = async (dir: string): Promise<void> => {
    for (const entry of await fs.readdir(dir, { withFileTypes: true })) {
      const from = path.join(dir, entry.name);
      if (entry.isDirectory()) {
        await walk(from);
        continue;
      }
      if (!entry.name.endsWith('.parquet')) continue;
      const to = path.join(lakeRoot, 'inbound', path.relative(FIXTURE_INBOUND, from));
      const exists = await fs.stat(to).then(
        () => true,
        () => false,
      );
      if (exists) continue;
      await fs.mkdir(path.dirname(to), { recursive: true });
      // Keep the fixture's time so the file's identity (size, time) is the same on every machine.
      await fs.copyFile(from, to);
      const st = await fs.stat(from);
      await fs.utimes(to, st.atime, st.mtime);
      copied += 1;
    }
  };
  await walk(FIXTURE_INBOUND);
  return copied;
}

/** Writes what Synapse Link would export for the emulator's tables since the last demo export. */
async function exportDemoSynapseLink(
  input: CommandInput,
  dataverse: OpenDataverse,
  lake: Lake,
  state: ReturnType<typeof openState>,
): Promise<string> {
  const { exportSynapseLink } = await import('../../emulator/synapse-link-export.js');
  const result = (await exportSynapseLink(dataverse.emulator!.store, lake, DEMO_SYNAPSE_LINK_FOLDER, {
    metadataDir: input.config.metadata,
    state,
  })) as unknown as Record<string, unknown>;
  return `Synapse Link export: ${describeExport(result)} in ${path.join(input.config.lake, DEMO_SYNAPSE_LINK_FOLDER)}`;
}

/** The export's result in words: its folder and how many rows per table, whatever else it reports. */
function describeExport(result: Record<string, unknown>): string {
  if (result.folder === null) return 'nothing changed since the last export';
  const parts: string[] = [];
  if (typeof result.folder === 'string') parts.push(`folder ${result.folder}`);
  for (const [key, value] of Object.entries(result)) {
    if (key === 'folder' || key === 'seq') continue;
    if (typeof value === 'number') parts.push(`${key} ${value}`);
    else if (value && typeof value === 'object' && !Array.isArray(value)) {
      const inner = Object.entries(value as Record<string, unknown>)
        .filter(([, v]) => typeof v === 'number')
        .map(([k, v]) => `${k} ${v}`);
      if (inner.length) parts.push(`${key}: ${inner.join(', ')}`);
    } else if (Array.isArray(value)) parts.push(`${key} ${value.length}`);
  }
  return parts.join('; ') || 'nothing new';
}

async function exists(p: string): Promise<boolean> {
  return fs.stat(p).then(
    () => true,
    () => false,
  );
}

function printSummary(input: CommandInput, runs: ReadonlyArray<{ direction: string; report: RunReport }>): void {
  const reports = runs.map((r) => r.report);
  const total = (pick: (c: RunCounts) => number) => reports.reduce((n, r) => n + pick(r.counts), 0);
  input.print('');
  input.print('Summary');
  for (const { direction, report: r } of runs) {
    const c = r.counts;
    const accounted = c.upserted + c.skippedStale + c.rejected;
    const check =
      direction === 'inbound'
        ? accounted === c.read
          ? 'all rows accounted for'
          : `MISMATCH: ${accounted} accounted of ${c.read} read`
        : '';
    input.print(
      `  ${r.pipeline.padEnd(24)} ${r.status.padEnd(17)} read ${String(c.read).padStart(5)}  upserted ${String(c.upserted).padStart(5)}  skipped ${String(c.skippedStale).padStart(3)}  rejected ${String(c.rejected).padStart(3)}  written ${String(c.written).padStart(5)}  ${check}`,
    );
  }
  input.print(
    `  total read ${total((c) => c.read)}, upserted ${total((c) => c.upserted)}, skipped-stale ${total((c) => c.skippedStale)}, rejected ${total((c) => c.rejected)}, written ${total((c) => c.written)}`,
  );
  const withRejects = reports.filter((r) => r.counts.rejected > 0);
  if (withRejects.length) {
    input.print('  Inspect the rejected rows with:');
    for (const r of withRejects) input.print(`    npx ferry rejects --run ${r.runId}    # ${r.pipeline}`);
  }
}
