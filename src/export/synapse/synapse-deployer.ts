import type { SynapseWorkspace } from '../../connectors/synapse/synapse-artifacts-client.js';
import { describeError, FerryError, UsageError } from '../../core/errors.js';
import { ANNOTATION } from './pipeline-blocks.js';
import { sortKeys } from './stable-json.js';
import { ARTIFACT_KINDS, type SynapseArtifact } from './synapse-artifacts.js';

export const DEPLOY_ACTIONS = ['create', 'update', 'unchanged'] as const;
export type DeployAction = (typeof DEPLOY_ACTIONS)[number];

/** What deploy will do with one artifact, decided by comparing with what the workspace has. */
export interface DeployStep {
  readonly artifact: SynapseArtifact;
  readonly action: DeployAction;
  /** Triggers: state in the workspace before deploy (`Started`, `Stopped`), undefined when new. */
  readonly triggerStateBefore?: string;
  /** Triggers: stop before writing (it runs and changes). */
  readonly stopFirst: boolean;
  /** Triggers: start after writing (it ran before, or it is a new schedule trigger). */
  readonly startAfter: boolean;
}

/** One thing deploy did (or would do), in order. */
export interface DeployEvent {
  readonly op: 'create' | 'update' | 'stop' | 'start' | 'delete';
  readonly kind: SynapseArtifact['kind'];
  readonly name: string;
}

/** The outcome of a deploy. */
export interface DeployReport {
  readonly steps: readonly DeployStep[];
  readonly applied: readonly DeployEvent[];
  /** Planned events that did not happen because an earlier one failed. */
  readonly notApplied: readonly DeployEvent[];
  readonly failed?: { readonly event: DeployEvent; readonly error: string };
}

/**
 * Artifacts in deploy order: linked services → datasets → pipelines → triggers, and within a kind after the
 * artifacts of that kind they reference (an orchestrator after the pipelines it executes, a tumbling-window trigger
 * after the triggers it depends on) — the service refuses a reference to an artifact that does not exist yet.
 */
export function deployOrder(artifacts: readonly SynapseArtifact[]): SynapseArtifact[] {
  const out: SynapseArtifact[] = [];
  for (const kind of ARTIFACT_KINDS) {
    const ofKind = artifacts.filter((a) => a.kind === kind).sort((a, b) => a.name.localeCompare(b.name));
    const byName = new Map(ofKind.map((a) => [a.name, a]));
    const done = new Set<string>();
    const visit = (a: SynapseArtifact, trail: readonly string[]) => {
      if (done.has(a.name)) return;
      if (trail.includes(a.name)) {
        throw new FerryError(
          'deploy.cycle',
          `Artifacts reference each other in a cycle: ${[...trail, a.name].join(' → ')}; fix the definitions.`,
        );
      }
      for (const r of sameKindReferences(a)) {
        const target = byName.get(r);
        if (target && r !== a.name) visit(target, [...trail, a.name]);
      }
      done.add(a.name);
      out.push(a);
    };
    for (const a of ofKind) visit(a, []);
  }
  return out;
}

const REFERENCE_TYPE: Record<SynapseArtifact['kind'], string> = {
  linkedService: 'LinkedServiceReference',
  dataset: 'DatasetReference',
  pipeline: 'PipelineReference',
  trigger: 'TriggerReference',
};

/** Names of same-kind artifacts an artifact references (`{ referenceName, type: '<Kind>Reference' }`). */
function sameKindReferences(a: SynapseArtifact): string[] {
  return references(a.properties, a.kind);
}

/** Names of the artifacts of `kind` that `properties` reference, anywhere in the JSON. */
export function references(properties: unknown, kind: SynapseArtifact['kind']): string[] {
  const want = REFERENCE_TYPE[kind];
  const found = new Set<string>();
  const walk = (v: unknown) => {
    if (Array.isArray(v)) {
      for (const x of v) walk(x);
      return;
    }
    if (!v || typeof v !== 'object') return;
    const o = v as Record<string, unknown>;
    if (o.type === want && typeof o.referenceName === 'string') found.add(o.referenceName);
    for (const x of Object.values(o)) walk(x);
  };
  walk(properties);
  return [...found].sort();
}

/** Reads what the workspace has and decides the step for each artifact (a dry run stops here). */
export async function planDeploy(
  workspace: SynapseWorkspace,
  artifacts: readonly SynapseArtifact[],
): Promise<DeployStep[]> {
  const steps: DeployStep[] = [];
  const foreign: string[] = [];
  for (const artifact of deployOrder(artifacts)) {
    const current = await workspace.get(artifact.kind, artifact.name);
    // Someone else's artifact under a ferry name: overwriting it would lose their work (prune never touches it either).
    const annotations = current?.properties.annotations;
    if (current && !(Array.isArray(annotations) && annotations.includes(ANNOTATION)))
      foreign.push(`${artifact.kind} ${artifact.name}`);
    const action: DeployAction = !current
      ? 'create'
      : same(current.properties, artifact.properties)
        ? 'unchanged'
        : 'update';
    const isTrigger = artifact.kind === 'trigger';
    const wasStarted = current?.runtimeState === 'Started';
    // Backfill (tumbling window) triggers stay as the operator left them; new schedules start so runs begin.
    const isSchedule = (artifact.properties.annotations as unknown[] | undefined)?.includes('ferry:schedule') === true;
    steps.push({
      artifact,
      action,
      ...(isTrigger && current?.runtimeState ? { triggerStateBefore: current.runtimeState } : {}),
      stopFirst: isTrigger && action === 'update' && wasStarted,
      startAfter: isTrigger && ((action === 'update' && wasStarted) || (action === 'create' && isSchedule)),
    });
  }
  if (foreign.length > 0)
    throw new UsageError(
      `The workspace already has ${foreign.join(', ')}, not made by ferry (no \`${ANNOTATION}\` annotation); nothing was written. Rename or remove ${foreign.length === 1 ? 'it' : 'them'} in the workspace, or add the annotation if ferry should own ${foreign.length === 1 ? 'it' : 'them'}.`,
    );
  return steps;
}

/** The events a plan implies, in the order deploy performs them. */
export function planEvents(steps: readonly DeployStep[]): DeployEvent[] {
  const stops: DeployEvent[] = [];
  const writes: DeployEvent[] = [];
  const starts: DeployEvent[] = [];
  for (const s of steps) {
    const { kind, name } = s.artifact;
    if (s.action === 'unchanged') continue;
    if (s.stopFirst) stops.push({ op: 'stop', kind, name });
    writes.push({ op: s.action, kind, name });
    if (s.startAfter) starts.push({ op: 'start', kind, name });
  }
  // Running triggers that change stop before anything is written and start after everything is, so no trigger
  // fires a half-deployed pipeline (the usual Data Factory CI/CD order).
  return [...stops, ...writes, ...starts];
}

/**
 * Applies a plan. A failure stops the deploy and is reported with what was applied and what was not; a trigger
 * stopped for an update that then failed is started again, so a failed deploy leaves schedules running.
 */
export async function applyDeploy(
  workspace: SynapseWorkspace,
  steps: readonly DeployStep[],
  onEvent?: (e: DeployEvent) => void,
): Promise<DeployReport> {
  const events = planEvents(steps);
  const byName = new Map(steps.map((s) => [`${s.artifact.kind}/${s.artifact.name}`, s]));
  const applied: DeployEvent[] = [];
  for (let i = 0; i < events.length; i++) {
    const e = events[i];
    const step = byName.get(`${e.kind}/${e.name}`);
    if (!step) continue;
    try {
      if (e.op === 'stop') await workspace.stopTrigger(e.name);
      else if (e.op === 'start') await workspace.startTrigger(e.name);
      else await workspace.put(e.kind, e.name, step.artifact.properties);
    } catch (error) {
      // Triggers this deploy stopped are started again, so a failed deploy leaves the schedules as they were.
      for (const stopped of applied.filter((a) => a.op === 'stop')) {
        if (events.slice(0, i).some((x) => x.op === 'start' && x.name === stopped.name)) continue;
        try {
          await workspace.startTrigger(stopped.name);
          applied.push({ op: 'start', kind: stopped.kind, name: stopped.name });
        } catch {
          // The report lists it under "not applied"; the operator starts it by hand.
        }
      }
      const notApplied = events
        .slice(i)
        .filter((x) => !(x.op === 'start' && applied.some((a) => a.op === 'start' && a.name === x.name)));
      return { steps, applied, notApplied, failed: { event: e, error: describeError(error) } };
    }
    applied.push(e);
    onEvent?.(e);
  }
  return { steps, applied, notApplied: [] };
}

/** One line per event: `update pipeline pl_accounts_inbound`. */
export function formatEvent(e: DeployEvent): string {
  return `${e.op.padEnd(6)} ${e.kind} ${e.name}`;
}

/** The failure message of a partial deploy, naming what was and was not applied. */
export function partialDeployError(report: DeployReport): FerryError {
  const f = report.failed!;
  return new FerryError(
    'deploy.partial',
    `Deploy stopped at \`${formatEvent(f.event).trim()}\`: ${f.error}\nApplied (${report.applied.length}):\n${report.applied.map((e) => `  ${formatEvent(e)}`).join('\n') || '  nothing'}\nNot applied (${report.notApplied.length}):\n${report.notApplied.map((e) => `  ${formatEvent(e)}`).join('\n')}\nFix the cause and run deploy again: unchanged artifacts are skipped.`,
    { details: { applied: report.applied, notApplied: report.notApplied } },
  );
}

/** Equal when the workspace holds the same JSON (key order aside; read-only fields are not compared). */
function same(current: Record<string, unknown>, wanted: Record<string, unknown>): boolean {
  return JSON.stringify(sortKeys(current)) === JSON.stringify(sortKeys(wanted));
}
