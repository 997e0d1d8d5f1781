import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { loadPipelines } from '../../../src/core/pipeline-loader.js';
import { loadExportSettings } from '../../../src/export/synapse/export-settings.js';
import { synapseStepRenderings } from '../../../src/export/synapse/step-renderings.js';
import * as S from './scenarios.js';

const t0 = Date.now();
const settings = await loadExportSettings('synapse/settings.json');
const pipelines = await loadPipelines('pipelines');
const renderings = await synapseStepRenderings(pipelines, { settings, metadataDir: 'fixtures/metadata' });
const root = await mkdtemp(path.join(tmpdir(), 'diff-probe-'));
const which = process.argv[2] ?? 'eightTicks';
const r = await (S as any)[which]({ root, pipelines, settings, renderings });
S.printResult(r);
if (process.argv.includes('--runs')) for (const x of (r as any).runs ?? []) console.log('RUN', x);
const groups = new Map<string, number>();
for (const d of r.mismatches) {
  const g = `${d.area} ${d.table} ${d.column}`;
  groups.set(g, (groups.get(g) ?? 0) + 1);
}
for (const [g, n] of groups) console.log('DIFF', n, g);
for (const [p, e] of Object.entries(r.latestFailures)) console.log('LAST', p, JSON.stringify(e));
if (!process.argv.includes('--keep')) await rm(root, { recursive: true, force: true });
else console.log(root);
console.log('ms', Date.now() - t0);
