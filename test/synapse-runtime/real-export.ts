/**
 * Helpers for runtime tests on the exported artifacts as deployed (`synapse/`): the real store, the same store with
 * a few artifacts replaced (a stub pipeline standing in for one whose SQL the test does not exercise), and one real
 * activity lifted out of its pipeline to run on its own; and the runtime opened on them as a deployment would run.
 */

import { loadPipelines } from '../../src/core/pipeline-loader.js';
import { type DuckDbStaging, duckIdent, duckLiteral } from '../../src/dialects/duckdb/driver.js';
import { loadExportSettings, type SynapseExportSettings } from '../../src/export/synapse/export-settings.js';
import { ArtifactStore } from '../../src/export/synapse/runtime/artifact-store.js';
import {
  DuckDbSqlEngine,
  type SqlEngine,
  type SqlResult,
  type SqlStep,
  type StepRenderings,
} from '../../src/export/synapse/runtime/connectors/sql-engine.js';
import { isObject, type Json, type JsonObject } from '../../src/export/synapse/runtime/expression/json-value.js';
import type { PipelineRun } from '../../src/export/synapse/runtime/run-records.js';
import { ActivityError } from '../../src/export/synapse/runtime/runtime-error.js';
import { SynapseRuntime } from '../../src/export/synapse/runtime/synapse-runtime.js';
import { synapseDataSources, synapseStepRenderings } from '../../src/export/synapse/step-renderings.js';

export const SYNAPSE_DIR = 'synapse';

/**
 * The runtime on `synapse/` with the export's DuckDB step renderings of `pipelines/` and the state store set up:
 * what the export-* tests run. `fileSystems` maps the settings' containers to local folders.
 */
export async function openDeployedRuntime(options: {
  readonly workspaceDir: string;
  readonly startTime: string;
  readonly dataverseUrl?: string;
  readonly fileSystems: (settings: SynapseExportSettings) => Record<string, string>;
}): Promise<SynapseRuntime> {
  const settings = await loadExportSettings('synapse/settings.json');
  const rt = await SynapseRuntime.open({
    artifacts: SYNAPSE_DIR,
    workspaceDir: options.workspaceDir,
    startTime: options.startTime,
    ...(options.dataverseUrl ? { dataverseUrl: options.dataverseUrl, dataverseSleep: async () => undefined } : {}),
    stepRenderings: await synapseStepRenderings(await loadPipelines('pipelines'), {
      settings,
      metadataDir: 'fixtures/metadata',
    }),
    dataSources: synapseDataSources(settings),
    fileSystems: options.fileSystems(settings),
  });
  await rt.runSetup(['sql/tsql/setup/ferry-state.sql']);
  return rt;
}
const KINDS = ['linkedService', 'dataset', 'pipeline', 'trigger'] as const;
type Kind = (typeof KINDS)[number];

export function loadRealStore(dir = SYNAPSE_DIR): Promise<ArtifactStore> {
  return ArtifactStore.load(dir);
}

/** The real artifacts with some replaced or added (by kind and name). */
export function storeWith(
  real: ArtifactStore,
  overrides: Partial<Record<Kind, readonly { name: string; properties: object }[]>>,
): ArtifactStore {
  const objects: Partial<Record<Kind, { name: string; properties: object }[]>> = {};
  for (const kind of KINDS) {
    const replaced = new Map((overrides[kind] ?? []).map((a) => [a.name, a]));
    const list = real.names(kind).map((n) => replaced.get(n) ?? { name: n, properties: real.get(kind, n).properties });
    for (const [n, a] of replaced) if (!real.has(kind, n)) list.push(a);
    objects[kind] = list;
  }
  return ArtifactStore.fromObjects(objects);
}

/** Every activity of a real pipeline, those inside If/ForEach/Until/Switch branches included. */
export function allActivities(real: ArtifactStore, pipeline: string): JsonObject[] {
  const out: JsonObject[] = [];
  const walk = (list: unknown) => {
    for (const a of Array.isArray(list) ? list : []) {
      if (!isObject(a)) continue;
      out.push(a);
      const tp = isObject(a.typeProperties) ? a.typeProperties : {};
      walk(tp.ifTrueActivities);
      walk(tp.ifFalseActivities);
      walk(tp.activities);
    }
  };
  walk(real.get('pipeline', pipeline).properties.activities);
  return out;
}

/** One activity of a real pipeline (at any depth), as exported. */
export function realActivity(real: ArtifactStore, pipeline: string, activity: string): JsonObject {
  const found = allActivities(real, pipeline).find((a) => a.name === activity);
  if (!isObject(found)) throw new Error(`No activity \`${activity}\` in \`${pipeline}\`.`);
  return structuredClone(found);
}

/** The real pipeline's parameters, with its activities replaced (a stub of the same name and signature). */
export function stubPipeline(real: ArtifactStore, name: string, activities: readonly JsonObject[]) {
  const p = real.get('pipeline', name).properties;
  return {
    name,
    properties: { parameters: p.parameters ?? {}, variables: p.variables ?? {}, activities },
  };
}

/**
 * Until every exported statement carries a plan step id with its DuckDB rendering, the sink query of the copies to
 * Dataverse is a bare bracket projection (`SELECT [a], [b@EntityReference] FROM [t]`). This engine renders exactly
 * that shape for DuckDB (brackets → double quotes) and passes every other step to the runtime's engine, which still
 * refuses T-SQL by name. Nothing else is translated.
 */
export class BracketProjectionEngine implements SqlEngine {
  readonly duck: DuckDbStaging;
  readonly #inner: DuckDbSqlEngine;
  /** `renderings`: the export's DuckDB renderings, for the steps that are not a bare projection (a state copy). */
  constructor(duck: DuckDbStaging, renderings?: StepRenderings) {
    this.duck = duck;
    this.#inner = new DuckDbSqlEngine(duck, renderings);
  }
  static projection(text: string): string | undefined {
    const body = text.replace(/^(\s*--[^\n]*\n)*/, '').trim();
    const m = /^SELECT\s+((?:\[[^\]]+\]\s*,\s*)*\[[^\]]+\])\s+FROM\s+\[(\w+)\];?$/i.exec(body);
    if (!m) return undefined;
    return `SELECT ${m[1]!.replace(/\[([^\]]+)\]/g, '"$1"')} FROM "${m[2]}"`;
  }
  render(step: SqlStep): string {
    const p = BracketProjectionEngine.projection(step.text);
    return p ?? this.#inner.render(step);
  }
  execute(step: SqlStep): Promise<SqlResult> {
    const p = BracketProjectionEngine.projection(step.text);
    return this.#inner.execute(p ? { ...step, text: p } : step);
  }
}

/** Column names of a sink query's SELECT list. */
export function projectionColumns(sinkQuery: string): string[] {
  const p = BracketProjectionEngine.projection(sinkQuery);
  if (!p) throw new Error(`Not a bare projection: ${sinkQuery.slice(0, 80)}`);
  return [...p.matchAll(/"([^"]+)"/g)].map((m) => m[1]!).slice(0, -1);
}

/**
 * For orchestration tests of the real pipelines (which activities run after which outcome): records every SQL step
 * by where it comes from, runs none of them, answers Lookups/Query scripts with given rows, and fails the steps a
 * test names. The SQL itself is not under test here.
 */
export class RecordingSqlEngine implements SqlEngine {
  readonly duck: DuckDbStaging;
  readonly steps: SqlStep[] = [];
  readonly #fail: (where: string) => boolean;
  readonly #rows: (where: string) => Record<string, Json>[];
  constructor(
    duck: DuckDbStaging,
    fail: (where: string) => boolean,
    rows: (where: string) => Record<string, Json>[] = () => [],
  ) {
    this.duck = duck;
    this.#fail = fail;
    this.#rows = rows;
  }
  render(step: SqlStep): string {
    this.steps.push(step);
    if (this.#fail(step.where)) throw new ActivityError('SqlFailed', `${step.where} failed (injected by the test).`);
    const rows = this.#rows(step.where);
    if (!rows.length) return 'SELECT 1 AS x WHERE false';
    const cols = Object.keys(rows[0]!);
    const lit = (v: Json | undefined) =>
      v === null || v === undefined ? 'NULL' : typeof v === 'number' ? String(v) : duckLiteral(String(v));
    return `SELECT * FROM (VALUES ${rows.map((r) => `(${cols.map((c) => lit(r[c])).join(', ')})`).join(', ')}) AS t(${cols.map((c) => duckIdent(c)).join(', ')})`;
  }
  async execute(step: SqlStep): Promise<SqlResult> {
    this.steps.push(step);
    if (this.#fail(step.where)) throw new ActivityError('SqlFailed', `${step.where} failed (injected by the test).`);
    const rows = this.#rows(step.where);
    return { resultSets: rows.length ? [{ columns: Object.keys(rows[0]!), rows }] : [], recordsAffected: 0 };
  }
}

/** A pipeline run as an assertion's message: its status and message, then each activity with its error. */
export function describeRun(r: PipelineRun): string {
  return [
    `${r.status} ${r.message ?? ''}`,
    ...r.activityRuns.map(
      (a) => `${a.activityName} ${a.status} ${a.error?.errorCode ?? ''} ${a.error?.message.slice(0, 300) ?? ''}`,
    ),
  ].join('\n');
}
