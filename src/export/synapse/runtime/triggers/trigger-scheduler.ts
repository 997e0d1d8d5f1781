import { UsageError } from '../../../../core/errors.js';
import type { ArtifactStore } from '../artifact-store.js';
import { formatTicks, msFromTicks, parseTimestamp, ticksFromMs } from '../expression/date-time.js';
import { evaluateValue } from '../expression/dynamic-value.js';
import { isObject, type Json, type JsonObject } from '../expression/json-value.js';
import type { PipelineEngine } from '../pipeline-engine.js';
import { timeSpanMs } from '../pipeline-engine.js';
import { checkKeys } from '../property-check.js';
import type { PipelineRun } from '../run-records.js';
import type { VirtualClock } from '../runtime-clock.js';
import { UnsupportedError } from '../runtime-error.js';
import { occurrences, type Recurrence, readRecurrence } from './recurrence.js';

/** One tumbling window and its state (its run's state, plus Waiting). */
export interface WindowState {
  readonly trigger: string;
  readonly startMs: number;
  readonly endMs: number;
  status: 'Waiting' | 'Running' | 'Succeeded' | 'Failed';
  attempts: number;
  runIds: string[];
}

interface ScheduleState {
  readonly kind: 'schedule';
  readonly name: string;
  readonly recurrence: Recurrence;
  readonly pipelines: readonly { readonly pipeline: string; readonly parameters: JsonObject }[];
  lastEvaluatedMs: number;
}

interface Dependency {
  readonly trigger: string;
  readonly offsetMs: number;
  readonly sizeMs: number;
}

interface TumblingState {
  readonly kind: 'tumbling';
  readonly name: string;
  readonly pipeline: string;
  readonly parameters: JsonObject;
  readonly startMs: number;
  readonly endMs?: number;
  readonly sizeMs: number;
  readonly delayMs: number;
  readonly maxConcurrency: number;
  readonly retryCount: number;
  readonly retryIntervalMs: number;
  readonly dependsOn: readonly Dependency[];
  readonly windows: WindowState[];
}

/** Trigger properties the scheduler implements. */
export const TRIGGER_KEYS = [
  'type',
  'typeProperties',
  'pipelines',
  'pipeline',
  'annotations',
  'description',
  'runtimeState',
];
export const TRIGGER_TYPE_PROPERTIES: Readonly<Record<string, readonly string[]>> = {
  ScheduleTrigger: ['recurrence'],
  TumblingWindowTrigger: [
    'frequency',
    'interval',
    'startTime',
    'endTime',
    'delay',
    'maxConcurrency',
    'retryPolicy',
    'dependsOn',
  ],
};

/** Windows wait for their dependencies up to 7 days, then fail (tumbling-window-trigger-dependency). */
const DEPENDENCY_WAIT_MS = 7 * 86_400_000;
const SCHEDULED_FORMAT = "yyyy-MM-dd'T'HH:mm:ss'Z'";

/**
 * Runs started triggers on the virtual clock: schedule triggers fire each occurrence (no backfill of occurrences
 * before the trigger started); tumbling-window triggers create every window since startTime (backfill), run them
 * oldest first up to `maxConcurrency`, retry per `retryPolicy`, and wait for their dependencies.
 */
export class TriggerScheduler {
  readonly #engine: PipelineEngine;
  readonly #artifacts: ArtifactStore;
  readonly #clock: VirtualClock;
  readonly #started = new Map<string, ScheduleState | TumblingState>();
  readonly #inFlight = new Set<Promise<unknown>>();
  ticks = 0;

  constructor(engine: PipelineEngine, artifacts: ArtifactStore, clock: VirtualClock) {
    this.#engine = engine;
    this.#artifacts = artifacts;
    this.#clock = clock;
  }

  /** Starts a trigger (as `Start trigger` in Studio) at the current clock time. */
  start(name: string): void {
    if (this.#started.has(name)) return;
    const artifact = this.#artifacts.get('trigger', name);
    const p = artifact.properties;
    checkKeys(p, TRIGGER_KEYS, `trigger \`${name}\``);
    const tp = isObject(p.typeProperties) ? p.typeProperties : {};
    if (p.type === 'ScheduleTrigger') {
      checkKeys(tp, TRIGGER_TYPE_PROPERTIES.ScheduleTrigger!, `ScheduleTrigger \`${name}\``);
      if (!Array.isArray(p.pipelines) || p.pipelines.length === 0)
        throw new UsageError(`Schedule trigger \`${name}\` references no pipeline.`);
      const pipelines = p.pipelines.map((entry) => {
        if (
          !isObject(entry) ||
          !isObject(entry.pipelineReference) ||
          typeof entry.pipelineReference.referenceName !== 'string'
        )
          throw new UsageError(`A pipeline entry of \`${name}\` has no pipelineReference.`);
        // Each entry must include `parameters` (use {} when none) (concepts-pipeline-execution-triggers).
        if (!isObject(entry.parameters))
          throw new UsageError(
            `Pipeline entry \`${entry.pipelineReference.referenceName}\` of \`${name}\` has no \`parameters\`; use {} when there are none.`,
          );
        return { pipeline: entry.pipelineReference.referenceName, parameters: entry.parameters };
      });
      this.#started.set(name, {
        kind: 'schedule',
        name,
        recurrence: readRecurrence(tp.recurrence, name),
        pipelines,
        lastEvaluatedMs: this.#clock.nowMs(),
      });
      return;
    }
    if (p.type === 'TumblingWindowTrigger') {
      checkKeys(tp, TRIGGER_TYPE_PROPERTIES.TumblingWindowTrigger!, `TumblingWindowTrigger \`${name}\``);
      if (
        !isObject(p.pipeline) ||
        !isObject(p.pipeline.pipelineReference) ||
        typeof p.pipeline.pipelineReference.referenceName !== 'string'
      )
        throw new UsageError(`Tumbling window trigger \`${name}\` needs exactly one \`pipeline\`.`);
      const unit = tp.frequency === 'Minute' ? 60_000 : tp.frequency === 'Hour' ? 3_600_000 : undefined;
      if (!unit)
        throw new UnsupportedError(
          `Tumbling window frequency \`${tp.frequency}\` of \`${name}\` is not implemented; use Minute or Hour.`,
        );
      const interval = Number(tp.interval);
      if (!Number.isInteger(interval) || interval < 1)
        throw new UsageError(`Tumbling window interval \`${tp.interval}\` of \`${name}\` must be a positive integer.`);
      const maxConcurrency = Number(tp.maxConcurrency);
      if (!Number.isInteger(maxConcurrency) || maxConcurrency < 1 || maxConcurrency > 50)
        throw new UsageError(`maxConcurrency \`${tp.maxConcurrency}\` of \`${name}\` is required and must be 1–50.`);
      const sizeMs = interval * unit;
      const retry = isObject(tp.retryPolicy) ? tp.retryPolicy : {};
      checkKeys(retry, ['count', 'intervalInSeconds'], `retryPolicy of \`${name}\``);
      const deps = (Array.isArray(tp.dependsOn) ? tp.dependsOn : []).map((d) => this.#dependency(d, name, sizeMs));
      if (deps.length > 5)
        throw new UsageError(`Tumbling window trigger \`${name}\` has ${deps.length} dependencies; the limit is 5.`);
      if (typeof tp.startTime !== 'string')
        throw new UsageError(`Tumbling window trigger \`${name}\` needs a startTime.`);
      this.#started.set(name, {
        kind: 'tumbling',
        name,
        pipeline: p.pipeline.pipelineReference.referenceName,
        parameters: isObject(p.pipeline.parameters) ? p.pipeline.parameters : {},
        startMs: msFromTicks(parseTimestamp(tp.startTime, `startTime of ${name}`)),
        ...(typeof tp.endTime === 'string'
          ? { endMs: msFromTicks(parseTimestamp(tp.endTime, `endTime of ${name}`)) }
          : {}),
        sizeMs,
        delayMs: tp.delay === undefined ? 0 : timeSpanMs(tp.delay, `delay of \`${name}\``),
        maxConcurrency,
        retryCount: retry.count === undefined ? 0 : Number(retry.count),
        retryIntervalMs: (retry.intervalInSeconds === undefined ? 30 : Number(retry.intervalInSeconds)) * 1000,
        dependsOn: deps,
        windows: [],
      });
      return;
    }
    throw new UnsupportedError(
      `Trigger type \`${p.type}\` (\`${name}\`) is not implemented by the local runtime; supported: ScheduleTrigger, TumblingWindowTrigger.`,
    );
  }

  #dependency(d: unknown, name: string, ownSize: number): Dependency {
    if (!isObject(d)) throw new UsageError(`A dependsOn entry of \`${name}\` is not an object.`);
    checkKeys(d, ['type', 'referenceTrigger', 'offset', 'size'], `a dependency of \`${name}\``);
    const size = d.size === undefined ? ownSize : timeSpanMs(d.size, `dependency size of \`${name}\``);
    const offset = d.offset === undefined ? 0 : timeSpanMs(d.offset, `dependency offset of \`${name}\``);
    if (d.type === 'SelfDependencyTumblingWindowTriggerReference') {
      if (d.offset === undefined || offset >= 0)
        throw new UsageError(`The self-dependency of \`${name}\` needs a negative offset.`);
      return { trigger: name, offsetMs: offset, sizeMs: size };
    }
    if (d.type === 'TumblingWindowTriggerDependencyReference') {
      if (!isObject(d.referenceTrigger) || typeof d.referenceTrigger.referenceName !== 'string')
        throw new UsageError(`A dependency of \`${name}\` has no referenceTrigger.`);
      return { trigger: d.referenceTrigger.referenceName, offsetMs: offset, sizeMs: size };
    }
    throw new UnsupportedError(`Dependency type \`${d.type}\` of \`${name}\` is not implemented.`);
  }

  /** Every window of a started tumbling-window trigger, with its state. */
  windows(name: string): readonly WindowState[] {
    const t = this.#started.get(name);
    return t?.kind === 'tumbling' ? t.windows : [];
  }

  /** Advances the clock `n` ticks of `tickMs`, firing what is due at each and letting the runs finish. */
  async runTicks(n: number, tickMs: number): Promise<void> {
    let boundary = this.#clock.nowMs();
    for (let i = 0; i < n; i++) {
      boundary += tickMs;
      this.#clock.advanceTo(boundary);
      this.ticks++;
      await this.#evaluateUntilIdle();
    }
  }

  /** Fires what is due now, without advancing the clock. */
  async evaluateNow(): Promise<void> {
    await this.#evaluateUntilIdle();
  }

  async #evaluateUntilIdle(): Promise<void> {
    for (;;) {
      this.#fire();
      if (this.#inFlight.size === 0) break;
      await Promise.race([...this.#inFlight]);
    }
    await this.#engine.settle();
  }

  #fire(): void {
    const now = this.#clock.nowMs();
    for (const t of this.#started.values()) {
      if (t.kind === 'schedule') {
        for (const at of occurrences(t.recurrence, t.lastEvaluatedMs, now)) {
          for (const entry of t.pipelines) {
            const trigger: JsonObject = {
              scheduledTime: formatTicks(ticksFromMs(at), SCHEDULED_FORMAT),
              startTime: formatTicks(ticksFromMs(now)),
              name: t.name,
            };
            this.#track(this.#startRun(entry.pipeline, entry.parameters, trigger, t.name, 'ScheduleTrigger', now));
          }
        }
        t.lastEvaluatedMs = now;
      } else {
        this.#fireTumbling(t, now);
      }
    }
  }

  #fireTumbling(t: TumblingState, now: number): void {
    // Create every window whose end (plus delay) has passed: backfill for a past startTime.
    let nextStart = t.windows.length ? t.windows[t.windows.length - 1]!.endMs : t.startMs;
    while (nextStart + t.sizeMs + t.delayMs <= now && (t.endMs === undefined || nextStart + t.sizeMs <= t.endMs)) {
      t.windows.push({
        trigger: t.name,
        startMs: nextStart,
        endMs: nextStart + t.sizeMs,
        status: 'Waiting',
        attempts: 0,
        runIds: [],
      });
      nextStart += t.sizeMs;
    }
    let running = t.windows.filter((w) => w.status === 'Running').length;
    for (const w of t.windows) {
      if (running >= t.maxConcurrency) break;
      if (w.status !== 'Waiting' || w.attempts > 0) continue;
      if (this.#dependenciesMet(t, w) !== 'met') {
        // A window waits for its dependencies (a failed one must be rerun successfully) up to 7 days, then fails.
        if (now - (w.endMs + t.delayMs) >= DEPENDENCY_WAIT_MS) w.status = 'Failed';
        continue;
      }
      running++;
      this.#track(this.#runWindow(t, w));
    }
  }

  /** `met` when every dependency window covering [start+offset, start+offset+size) succeeded. */
  #dependenciesMet(t: TumblingState, w: WindowState): 'met' | 'waiting' | 'failed' {
    let state: 'met' | 'waiting' | 'failed' = 'met';
    for (const d of t.dependsOn) {
      const other = this.#started.get(d.trigger);
      const from = w.startMs + d.offsetMs;
      const to = from + d.sizeMs;
      if (other?.kind !== 'tumbling') {
        // A dependency on a trigger that is not started never completes (the window keeps waiting).
        state = 'waiting';
        continue;
      }
      if (to <= other.startMs) continue; // windows before the dependency's start time do not exist
      const covering = other.windows.filter((o) => o.endMs > from && o.startMs < to);
      const expected = Math.ceil(
        (Math.min(to, other.endMs ?? Number.POSITIVE_INFINITY) - Math.max(from, other.startMs)) / other.sizeMs,
      );
      if (covering.some((o) => o.status === 'Failed')) state = 'failed';
      else if (covering.length < expected || covering.some((o) => o.status !== 'Succeeded'))
        state = state === 'failed' ? state : 'waiting';
    }
    return state;
  }

  async #runWindow(t: TumblingState, w: WindowState): Promise<void> {
    w.status = 'Running';
    for (;;) {
      w.attempts++;
      const trigger: JsonObject = {
        outputs: {
          windowStartTime: formatTicks(ticksFromMs(w.startMs), SCHEDULED_FORMAT),
          windowEndTime: formatTicks(ticksFromMs(w.endMs), SCHEDULED_FORMAT),
        },
        scheduledTime: formatTicks(ticksFromMs(w.endMs), SCHEDULED_FORMAT),
        startTime: formatTicks(ticksFromMs(this.#clock.nowMs())),
        name: t.name,
      };
      const run = await this.#startRun(
        t.pipeline,
        t.parameters,
        trigger,
        t.name,
        'TumblingWindowTrigger',
        this.#clock.nowMs(),
      );
      if (run) w.runIds.push(run.runId);
      if (run?.status === 'Succeeded') {
        w.status = 'Succeeded';
        return;
      }
      if (w.attempts > t.retryCount) {
        w.status = 'Failed';
        return;
      }
      await this.#clock.sleep(t.retryIntervalMs);
    }
  }

  async #startRun(
    pipeline: string,
    parameters: JsonObject,
    trigger: JsonObject,
    name: string,
    type: 'ScheduleTrigger' | 'TumblingWindowTrigger',
    firedMs: number,
  ): Promise<PipelineRun | undefined> {
    const values = evaluateValue(parameters, { now: () => this.#clock.now(), trigger: () => trigger }) as Record<
      string,
      Json
    >;
    return this.#engine.runPipeline(pipeline, {
      parameters: values,
      invokedBy: { name, invokedByType: type, id: `${name}:${trigger.scheduledTime}` },
      triggerTimeMs: firedMs,
    });
  }

  #track(p: Promise<unknown>): void {
    const tracked = p.catch(() => undefined).finally(() => this.#inFlight.delete(tracked));
    this.#inFlight.add(tracked);
  }
}
