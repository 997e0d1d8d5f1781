/** Schedule triggers (one orchestrator per cadence, pipelines in dependency order) and the bounded backfill triggers. */
import type { PipelineDefinition } from '../../core/pipeline.js';
import type { SynapseExportSettings } from './export-settings.js';
import { ANNOTATION, after, minutesOf } from './pipeline-blocks.js';
import { NAMES, type SynapseArtifact, snake } from './synapse-artifacts.js';

/**
 * Scheduled runs: one ScheduleTrigger per distinct `every`, starting an orchestrator pipeline that runs its
 * pipelines in dependency order (ExecutePipeline, wait on completion) — the local scheduler's tick order.
 */
export function schedules(defs: readonly PipelineDefinition[], s: SynapseExportSettings): SynapseArtifact[] {
  const groups = new Map<number, PipelineDefinition[]>();
  for (const d of defs) {
    const m = minutesOf(d);
    groups.set(m, [...(groups.get(m) ?? []), d]);
  }
  const out: SynapseArtifact[] = [];
  for (const [minutes, group] of [...groups.entries()].sort((a, b) => a[0] - b[0])) {
    const inGroup = new Set(group.map((d) => d.name));
    const activities = [...group]
      .sort((a, b) => a.name.localeCompare(b.name))
      .map((d) => ({
        name: `Run_${snake(d.name)}`,
        type: 'ExecutePipeline',
        // A dependent pipeline waits for its parents to succeed in the same tick (accounts before contacts).
        dependsOn: d.dependsOn
          .filter((p) => inGroup.has(p))
          .sort()
          .map((p) => after(`Run_${snake(p)}`)),
        userProperties: [],
        typeProperties: {
          pipeline: { referenceName: NAMES.pipeline(d.name), type: 'PipelineReference' },
          waitOnCompletion: true,
          parameters: {
            windowStart: '',
            // Empty: each pipeline runs from its watermark to now (inbound) or to the in-progress folder (outbound).
            windowEnd: '',
            mode: 'scheduled',
          },
        },
      }));
    out.push({
      kind: 'pipeline',
      name: NAMES.schedulePipeline(minutes),
      properties: {
        description: `Runs every ${minutes} minutes, in dependency order: ${group
          .map((d) => d.name)
          .sort()
          .join(', ')}.`,
        annotations: [ANNOTATION],
        folder: { name: 'ferry/schedule' },
        concurrency: 1,
        parameters: { scheduledTime: { type: 'String', defaultValue: '' } },
        activities,
      },
    });
    out.push({
      kind: 'trigger',
      name: NAMES.scheduleTrigger(minutes),
      properties: {
        type: 'ScheduleTrigger',
        description: `Every ${minutes} minutes (scheduled runs). Schedule triggers do not backfill missed ticks; the next run catches up from the watermark.`,
        annotations: [ANNOTATION, 'ferry:schedule'],
        typeProperties: {
          recurrence: { frequency: 'Minute', interval: minutes, startTime: s.triggerStartTime, timeZone: 'UTC' },
        },
        pipelines: [
          {
            pipelineReference: { referenceName: NAMES.schedulePipeline(minutes), type: 'PipelineReference' },
            parameters: { scheduledTime: '@trigger().scheduledTime' },
          },
        ],
      },
    });
  }
  return out;
}

/**
 * Backfills: a TumblingWindowTrigger per pipeline (windows of `every`, at least 15 minutes) over
 * [backfillStartTime, backfillEndTime) — bounded, so it does not keep firing beside the schedule — each window after
 * the same window of the pipelines it depends on. No self-dependency: windows are independent (inbound files are
 * selected by their own window, outbound output goes to its own folder, stale versions are skipped by
 * `applied_versions`), so one failed window does not hold back every later one; rerun it from monitoring.
 */
export function backfillTrigger(
  def: PipelineDefinition,
  all: readonly PipelineDefinition[],
  s: SynapseExportSettings,
): SynapseArtifact {
  const minutes = Math.max(15, minutesOf(def));
  const known = new Set(all.map((d) => d.name));
  const parents = def.dependsOn.filter((p) => known.has(p)).sort();
  return {
    kind: 'trigger',
    name: NAMES.backfillTrigger(def.name),
    properties: {
      type: 'TumblingWindowTrigger',
      description: `Backfill of ${def.name} in ${minutes}-minute windows from ${s.backfillStartTime} to ${s.backfillEndTime} (settings backfillStartTime/backfillEndTime); created stopped — start it (or rerun windows) to backfill. Backfill runs never move the cursor. Frequency and interval cannot change after publish: deploy replaces the trigger when they do.`,
      annotations: [ANNOTATION, 'ferry:backfill'],
      typeProperties: {
        frequency: 'Minute',
        interval: minutes,
        startTime: s.backfillStartTime,
        endTime: s.backfillEndTime,
        delay: s.windowDelay,
        maxConcurrency: s.backfillMaxConcurrency,
        retryPolicy: { count: 2, intervalInSeconds: 120 },
        ...(parents.length
          ? {
              dependsOn: parents.map((p) => ({
                type: 'TumblingWindowTriggerDependencyReference',
                referenceTrigger: { referenceName: NAMES.backfillTrigger(p), type: 'TriggerReference' },
              })),
            }
          : {}),
      },
      pipeline: {
        pipelineReference: { referenceName: NAMES.pipeline(def.name), type: 'PipelineReference' },
        parameters: {
          windowStart: '@trigger().outputs.windowStartTime',
          windowEnd: '@trigger().outputs.windowEndTime',
          mode: 'backfill',
        },
      },
    },
  };
}
