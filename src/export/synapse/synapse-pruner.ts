import type { ListedArtifact, SynapseWorkspace } from '../../connectors/synapse/synapse-artifacts-client.js';
import { describeError, FerryError } from '../../core/errors.js';
import { ANNOTATION } from './pipeline-blocks.js';
import { ARTIFACT_KINDS, type ArtifactKind, type SynapseArtifact } from './synapse-artifacts.js';
import { type DeployEvent, deployOrder, formatEvent, references } from './synapse-deployer.js';

/** One artifact prune would delete: ferry made it (annotation), the definitions no longer produce it. */
export interface PruneTarget {
  readonly kind: ArtifactKind;
  readonly name: string;
  /** Triggers: its state in the workspace; a `Started` trigger is stopped before it is deleted. */
  readonly runtimeState?: string;
}

/** An artifact prune may not delete, and the artifacts that stay and still reference it. */
export interface PruneBlock {
  readonly kind: ArtifactKind;
  readonly name: string;
  readonly referencedBy: readonly string[];
}

/** What `deploy synapse --prune` found. Deleting is allowed only when `blocked` is empty. */
export interface PrunePlan {
  /** In delete order: triggers, pipelines, datasets, linked services; within a kind, referrers first. */
  readonly targets: readonly PruneTarget[];
  readonly blocked: readonly PruneBlock[];
  /** Artifacts in the workspace that ferry did not make (no `generated-by-dataverse-ferry` annotation): never touched. */
  readonly foreign: number;
}

/** The outcome of a prune. */
export interface PruneReport {
  readonly applied: readonly DeployEvent[];
  readonly notApplied: readonly DeployEvent[];
  readonly failed?: { readonly event: DeployEvent; readonly error: string };
}

const DELETE_ORDER: readonly ArtifactKind[] = ['trigger', 'pipeline', 'dataset', 'linkedService'];

/** True when ferry made the artifact: the exporter annotates everything it writes with `generated-by-dataverse-ferry`. */
export function madeByFerry(properties: Record<string, unknown>): boolean {
  const annotations = properties.annotations;
  return Array.isArray(annotations) && annotations.includes(ANNOTATION);
}

/**
 * Lists the workspace and finds the artifacts ferry made that `wanted` (the definitions' export) no longer contains.
 * References are read from the workspace as it will be once `wanted` is deployed (a wanted artifact with its new
 * JSON, every other one as it is), including artifacts ferry did not make. A target still referenced by an artifact
 * that stays is blocked — and so is everything a blocked target references, since it stays too.
 */
export async function planPrune(workspace: SynapseWorkspace, wanted: readonly SynapseArtifact[]): Promise<PrunePlan> {
  const wantedKeys = new Set(wanted.map((a) => `${a.kind}/${a.name}`));
  const listed = new Map<ArtifactKind, ListedArtifact[]>();
  for (const kind of ARTIFACT_KINDS) listed.set(kind, await workspace.list(kind));
  let foreign = 0;
  const candidates = new Map<string, { kind: ArtifactKind; listed: ListedArtifact }>();
  const staying: { key: string; properties: Record<string, unknown> }[] = wanted.map((a) => ({
    key: `${a.kind}/${a.name}`,
    properties: a.properties,
  }));
  for (const kind of ARTIFACT_KINDS) {
    for (const a of listed.get(kind) ?? []) {
      const key = `${kind}/${a.name}`;
      if (wantedKeys.has(key)) continue;
      if (madeByFerry(a.properties)) candidates.set(key, { kind, listed: a });
      else {
        foreign++;
        staying.push({ key, properties: a.properties });
      }
    }
  }
  // Blocked targets stay, so what they reference stays too: repeat until nothing changes.
  const blocked = new Map<string, Set<string>>();
  for (let changed = true; changed; ) {
    changed = false;
    const stayingNow = [
      ...staying,
      ...[...blocked.keys()].map((key) => ({ key, properties: candidates.get(key)!.listed.properties })),
    ];
    for (const [key, c] of candidates) {
      const referrers = stayingNow
        .filter((s) => s.key !== key && references(s.properties, c.kind).includes(c.listed.name))
        .map((s) => s.key);
      if (referrers.length === 0) continue;
      const known = blocked.get(key) ?? new Set<string>();
      const before = known.size;
      for (const r of referrers) known.add(r);
      if (known.size !== before) {
        blocked.set(key, known);
        changed = true;
      }
    }
  }
  const deletable = [...candidates.entries()].filter(([key]) => !blocked.has(key)).map(([, c]) => c);
  // deployOrder puts referenced artifacts first; deleting goes the other way round.
  const ordered = deployOrder(
    deletable.map((c) => ({ kind: c.kind, name: c.listed.name, properties: c.listed.properties })),
  ).reverse();
  const targets = DELETE_ORDER.flatMap((kind) =>
    ordered
      .filter((a) => a.kind === kind)
      .map((a) => {
        const state = deletable.find((c) => c.kind === kind && c.listed.name === a.name)?.listed.runtimeState;
        return { kind, name: a.name, ...(state ? { runtimeState: state } : {}) };
      }),
  );
  return {
    targets,
    blocked: [...blocked.entries()]
      .map(([key, by]) => {
        const c = candidates.get(key)!;
        return { kind: c.kind, name: c.listed.name, referencedBy: [...by].sort() };
      })
      .sort((a, b) => `${a.kind}/${a.name}`.localeCompare(`${b.kind}/${b.name}`)),
    foreign,
  };
}

/** The events a prune performs, in order: a started trigger is stopped right before it is deleted. */
export function pruneEvents(plan: PrunePlan): DeployEvent[] {
  return plan.targets.flatMap((t) => [
    ...(t.kind === 'trigger' && t.runtimeState === 'Started'
      ? [{ op: 'stop' as const, kind: t.kind, name: t.name }]
      : []),
    { op: 'delete' as const, kind: t.kind, name: t.name },
  ]);
}

/** The refusal of a blocked prune, naming each artifact and what still references it. */
export function pruneBlockedError(plan: PrunePlan): FerryError {
  return new FerryError(
    'deploy.prune_blocked',
    `Prune refused; nothing was deleted. These artifacts are no longer produced by the definitions but are still referenced by artifacts that stay:\n${plan.blocked.map((b) => `  ${b.kind} ${b.name} ← ${b.referencedBy.join(', ')}`).join('\n')}\nRemove or change the referencing artifacts (in the workspace, or in the definitions and deploy), then prune again.`,
    { details: { blocked: plan.blocked } },
  );
}

/**
 * Deletes the targets of a plan (the caller refuses a plan with `blocked` entries first). A failure stops the prune
 * and is reported with what was and was not done; a trigger stopped for a delete that then failed is started again.
 */
export async function applyPrune(
  workspace: SynapseWorkspace,
  plan: PrunePlan,
  onEvent?: (e: DeployEvent) => void,
): Promise<PruneReport> {
  if (plan.blocked.length > 0) throw pruneBlockedError(plan);
  const events = pruneEvents(plan);
  const applied: DeployEvent[] = [];
  for (let i = 0; i < events.length; i++) {
    const e = events[i]!;
    try {
      if (e.op === 'stop') await workspace.stopTrigger(e.name);
      else await workspace.delete(e.kind, e.name);
    } catch (error) {
      const stoppedIt = applied.at(-1);
      if (e.op === 'delete' && stoppedIt?.op === 'stop' && stoppedIt.name === e.name) {
        try {
          await workspace.startTrigger(e.name);
          applied.push({ op: 'start', kind: e.kind, name: e.name });
        } catch {
          // Listed in the failure message: the operator starts it by hand.
        }
      }
      return { applied, notApplied: events.slice(i), failed: { event: e, error: describeError(error) } };
    }
    applied.push(e);
    onEvent?.(e);
  }
  return { applied, notApplied: [] };
}

/** The failure message of a prune that stopped part way. */
export function partialPruneError(report: PruneReport): FerryError {
  const f = report.failed!;
  return new FerryError(
    'deploy.partial',
    `Prune stopped at \`${formatEvent(f.event).trim()}\`: ${f.error}\nDone (${report.applied.length}):\n${report.applied.map((e) => `  ${formatEvent(e)}`).join('\n') || '  nothing'}\nNot done (${report.notApplied.length}):\n${report.notApplied.map((e) => `  ${formatEvent(e)}`).join('\n')}\nFix the cause and run the prune again: what was deleted is not listed again.`,
    { details: { applied: report.applied, notApplied: report.notApplied } },
  );
}
