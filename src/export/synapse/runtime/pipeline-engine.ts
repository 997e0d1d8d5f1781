import { randomUUID } from 'node:crypto';
import { FerryError, UsageError } from '../../../core/errors.js';
import { type Artifact, type ArtifactStore, checkType, type Declaration, declarations } from './artifact-store.js';
import { formatTicks, ticksFromMs } from './expression/date-time.js';
import { evaluateValue } from './expression/dynamic-value.js';
import { ExpressionError } from './expression/expression-error.js';
import type { ExpressionScope } from './expression/expression-evaluator.js';
import { isObject, type Json, type JsonObject, textOf } from './expression/json-value.js';
import { checkKeys, IGNORED_ACTIVITY_KEYS } from './property-check.js';
import type { ActivityRun, ActivityRunError, ActivityStatus, InvokedBy, PipelineRun } from './run-records.js';
import type { RuntimeClock } from './runtime-clock.js';
import { ActivityError, UnsupportedError } from './runtime-error.js';

/** What a data activity (Lookup, Script, GetMetadata, Copy) gets to do its work. */
export interface ActivityContext {
  readonly activity: JsonObject;
  readonly name: string;
  readonly pipelineRun: PipelineRun;
  readonly activityRunId: string;
  readonly scope: ExpressionScope;
  readonly signal: AbortSignal;
  readonly clock: RuntimeClock;
  /** Evaluates a property value (`Expression` objects, `@` strings, nested) in the activity's scope. */
  evaluate(value: unknown): Json;
}

/** Runs one activity type; returns its output. Throws `ActivityError` to fail with a documented code. */
export type ActivityHandler = (context: ActivityContext) => Promise<Json>;

export interface PipelineEngineOptions {
  readonly artifacts: ArtifactStore;
  readonly clock: RuntimeClock;
  /** `pipeline().DataFactory`. */
  readonly workspaceName: string;
  /** Handlers for the data activities, by activity type. */
  readonly handlers: Readonly<Record<string, ActivityHandler>>;
  /** See `ExpressionScope.lazyConditionals`. Default `true`. */
  readonly lazyConditionals?: boolean;
  /**
   * ExecutePipeline `waitOnCompletion` when absent: the Learn page says `true`, the REST model says `false`
   * (learn.microsoft.com/azure/data-factory/control-flow-execute-pipeline-activity). Default `true`.
   */
  readonly waitOnCompletionDefault?: boolean;
  readonly globalParameters?: Readonly<Record<string, Json>>;
}

/** How a run is started. */
export interface StartRunOptions {
  readonly parameters?: Record<string, Json>;
  readonly invokedBy?: InvokedBy;
  /** `pipeline().TriggerTime`: when the trigger fired. Default: now. */
  readonly triggerTimeMs?: number;
  readonly parent?: { readonly runId: string; readonly pipelineName: string; readonly groupId: string };
}

/** A started run: its record (live) and a promise for its end. */
export interface RunHandle {
  readonly run: PipelineRun;
  readonly done: Promise<PipelineRun>;
}

export const CONTROL_TYPES = [
  'SetVariable',
  'AppendVariable',
  'IfCondition',
  'ForEach',
  'Until',
  'Switch',
  'Wait',
  'Fail',
  'Filter',
  'ExecutePipeline',
] as const;

export const TYPE_PROPERTIES: Record<string, readonly string[]> = {
  SetVariable: ['variableName', 'value', 'setSystemVariable'],
  AppendVariable: ['variableName', 'value'],
  IfCondition: ['expression', 'ifTrueActivities', 'ifFalseActivities'],
  ForEach: ['items', 'isSequential', 'batchCount', 'activities'],
  Until: ['expression', 'timeout', 'activities'],
  Switch: ['on', 'cases', 'defaultActivities'],
  Wait: ['waitTimeInSeconds'],
  Fail: ['message', 'errorCode'],
  Filter: ['items', 'condition'],
  ExecutePipeline: ['pipeline', 'parameters', 'waitOnCompletion'],
};

export const PIPELINE_KEYS = [
  'activities',
  'parameters',
  'variables',
  'concurrency',
  'annotations',
  'description',
  'folder',
];
export const POLICY_KEYS = ['timeout', 'retry', 'retryIntervalInSeconds', 'secureInput', 'secureOutput'];

interface Frame {
  readonly results: Map<string, { status: ActivityStatus; output: Json; error: ActivityRunError | null }>;
  readonly parent?: Frame;
  readonly item?: { value: Json };
  readonly label?: string;
  /** Inside a ForEach or Until: those cannot nest (learn.microsoft.com/azure/data-factory/control-flow-for-each-activity). */
  readonly loop?: string;
}

interface RunState {
  readonly run: PipelineRun;
  readonly pipeline: JsonObject;
  readonly variables: Map<string, { type: string; value: Json }>;
  readonly returnValue: { value?: Json };
  readonly signal: AbortSignal;
}

/**
 * Executes pipelines as the Synapse/Data Factory engine documents: dependency conditions with skip propagation,
 * the leaf-based final status, activity policy, containers, variables and per-pipeline concurrency queues
 * (learn.microsoft.com/azure/data-factory/concepts-pipelines-activities, …/tutorial-pipeline-failure-error-handling).
 */
export class PipelineEngine {
  readonly runs: PipelineRun[] = [];
  readonly #options: PipelineEngineOptions;
  readonly #active = new Map<string, number>();
  readonly #queues = new Map<string, (() => void)[]>();
  readonly #inFlight = new Set<Promise<PipelineRun>>();

  constructor(options: PipelineEngineOptions) {
    this.#options = options;
  }

  get clock(): RuntimeClock {
    return this.#options.clock;
  }

  /** Number of activity runs recorded so far (every attempt counts). */
  activityRunCount(): number {
    return this.runs.reduce((n, r) => n + r.activityRuns.filter((a) => a.status !== 'Skipped').length, 0);
  }

  /** Starts a run; it waits in the pipeline's queue while `concurrency` runs are in progress. */
  startRun(pipelineName: string, options: StartRunOptions = {}): RunHandle {
    const artifact = this.#options.artifacts.get('pipeline', pipelineName);
    const runId = randomUUID();
    const nowMs = this.#options.clock.nowMs();
    const run: PipelineRun = {
      runId,
      pipelineName,
      parameters: {},
      invokedBy: options.invokedBy ?? { name: 'Manual', invokedByType: 'Manual', id: randomUUID() },
      ...(options.parent ? { parentRunId: options.parent.runId } : {}),
      status: 'Queued',
      queuedAt: iso(nowMs),
      message: '',
      activityRuns: [],
    };
    this.runs.push(run);
    const done = this.#execute(artifact, run, options).finally(() => this.#inFlight.delete(done));
    this.#inFlight.add(done);
    return { run, done };
  }

  /** Runs a pipeline to its end. */
  async runPipeline(pipelineName: string, options: StartRunOptions = {}): Promise<PipelineRun> {
    return this.startRun(pipelineName, options).done;
  }

  /** Resolves when every started run (including fire-and-forget child runs) has ended. */
  async settle(): Promise<void> {
    while (this.#inFlight.size) await Promise.allSettled([...this.#inFlight]);
  }

  /** Runs not yet ended (queued or in progress). */
  unfinishedRuns(): PipelineRun[] {
    return this.runs.filter((r) => r.status === 'Queued' || r.status === 'InProgress');
  }

  async #execute(artifact: Artifact, run: PipelineRun, options: StartRunOptions): Promise<PipelineRun> {
    const props = artifact.properties;
    const controller = new AbortController();
    try {
      checkKeys(props, PIPELINE_KEYS, `pipeline \`${artifact.name}\``);
      const concurrency = props.concurrency === undefined ? Number.POSITIVE_INFINITY : Number(props.concurrency);
      if (!(concurrency >= 1))
        throw new UsageError(
          `Pipeline \`${artifact.name}\` has concurrency \`${props.concurrency}\`; use a positive integer.`,
        );
      await this.#acquire(artifact.name, concurrency);
    } catch (error) {
      return this.#finish(run, 'Failed', messageOf(error));
    }
    try {
      run.status = 'InProgress';
      const startMs = this.#options.clock.nowMs();
      run.runStart = iso(startMs);
      const parameters = bindParameters(
        declarations(props.parameters, 'parameter', `pipeline \`${artifact.name}\``),
        options.parameters ?? {},
        artifact.name,
      );
      Object.assign(run.parameters, parameters);
      const variables = new Map<string, { type: string; value: Json }>();
      for (const [name, decl] of declarations(props.variables, 'variable', `pipeline \`${artifact.name}\``)) {
        variables.set(name, { type: decl.type, value: decl.defaultValue ?? (decl.type === 'Array' ? [] : null) });
      }
      const triggerTimeMs = options.triggerTimeMs ?? startMs;
      const invokedBy = run.invokedBy;
      const pipelineObject: JsonObject = {
        DataFactory: this.#options.workspaceName,
        Pipeline: artifact.name,
        RunId: run.runId,
        GroupId: options.parent?.groupId ?? run.runId,
        TriggerType: invokedBy.invokedByType === 'PipelineActivity' ? 'PipelineActivity' : invokedBy.invokedByType,
        TriggerId: invokedBy.id,
        TriggerName: invokedBy.name,
        TriggerTime: formatTicks(ticksFromMs(triggerTimeMs)),
        parameters,
        globalParameters: { ...(this.#options.globalParameters ?? {}) },
      };
      if (options.parent) {
        pipelineObject.TriggeredByPipelineName = options.parent.pipelineName;
        pipelineObject.TriggeredByPipelineRunId = options.parent.runId;
      }
      const activities = activityList(props.activities, `pipeline \`${artifact.name}\``);
      const state: RunState = { run, pipeline: pipelineObject, variables, returnValue: {}, signal: controller.signal };
      const status = await this.#runScope(activities, state, { results: new Map() });
      if (state.returnValue.value !== undefined) run.output = state.returnValue.value;
      const failed = run.activityRuns.filter((a) => a.status === 'Failed' && a.error);
      const message =
        status === 'Failed'
          ? failed.length
            ? `Operation on target ${failed[failed.length - 1]!.activityName} failed: ${failed[failed.length - 1]!.error!.message}`
            : 'A leaf activity was skipped on the success path, so the pipeline failed (leaf rule).'
          : '';
      return this.#finish(run, status, message);
    } catch (error) {
      return this.#finish(run, 'Failed', messageOf(error));
    } finally {
      controller.abort();
      this.#release(artifact.name);
    }
  }

  #finish(run: PipelineRun, status: 'Succeeded' | 'Failed', message: string): PipelineRun {
    const endMs = this.#options.clock.nowMs();
    run.status = status;
    run.message = message;
    run.runEnd = iso(endMs);
    run.durationInMs = endMs - Date.parse(run.runStart ?? run.queuedAt);
    return run;
  }

  async #acquire(pipeline: string, concurrency: number): Promise<void> {
    const active = this.#active.get(pipeline) ?? 0;
    if (active < concurrency) {
      this.#active.set(pipeline, active + 1);
      return;
    }
    // Runs beyond `concurrency` are queued until earlier runs finish (concepts-pipelines-activities).
    await new Promise<void>((resolve) => {
      const queue = this.#queues.get(pipeline) ?? [];
      queue.push(resolve);
      this.#queues.set(pipeline, queue);
    });
  }

  #release(pipeline: string): void {
    const next = this.#queues.get(pipeline)?.shift();
    if (next)
      next(); // the slot passes to the next queued run
    else this.#active.set(pipeline, Math.max(0, (this.#active.get(pipeline) ?? 1) - 1));
  }

  /** Runs the activities of one scope (a pipeline or a container branch); returns the scope's final status. */
  async #runScope(activities: readonly JsonObject[], state: RunState, frame: Frame): Promise<'Succeeded' | 'Failed'> {
    const byName = new Map<string, JsonObject>();
    for (const a of activities) {
      const name = a.name;
      if (typeof name !== 'string' || name === '')
        throw new UsageError(`An activity of pipeline \`${state.run.pipelineName}\` has no name.`);
      if (byName.has(name))
        throw new UsageError(`Pipeline \`${state.run.pipelineName}\` has two activities named \`${name}\`.`);
      byName.set(name, a);
    }
    const deps = new Map<string, { activity: string; conditions: string[] }[]>();
    for (const [name, a] of byName) deps.set(name, dependencies(a, byName, state.run.pipelineName));
    assertAcyclic(deps, state.run.pipelineName);

    const statuses = new Map<string, Promise<ActivityStatus>>();
    const statusOf = (name: string): Promise<ActivityStatus> => {
      let p = statuses.get(name);
      if (!p) {
        p = (async () => {
          const own = deps.get(name)!;
          const before = await Promise.all(own.map((d) => statusOf(d.activity)));
          // Entries combine with AND; conditions inside one entry with OR (tutorial-pipeline-failure-error-handling).
          const satisfied = own.every((d, i) => d.conditions.some((c) => conditionMet(c, before[i]!)));
          const activity = byName.get(name)!;
          if (!satisfied) return this.#skip(activity, state, frame);
          return this.#runActivity(activity, state, frame);
        })();
        statuses.set(name, p);
      }
      return p;
    };
    const final = new Map<string, ActivityStatus>();
    await Promise.all([...byName.keys()].map(async (n) => final.set(n, await statusOf(n))));
    return scopeStatus(deps, final);
  }

  #skip(activity: JsonObject, state: RunState, frame: Frame): ActivityStatus {
    const name = activity.name as string;
    const now = iso(this.#options.clock.nowMs());
    state.run.activityRuns.push({
      activityRunId: randomUUID(),
      pipelineRunId: state.run.runId,
      pipelineName: state.run.pipelineName,
      activityName: name,
      activityType: String(activity.type),
      attempt: 1,
      status: 'Skipped',
      activityRunStart: now,
      activityRunEnd: now,
      durationInMs: 0,
      ...(frame.label ? { scope: frame.label } : {}),
    });
    frame.results.set(name, { status: 'Skipped', output: null, error: null });
    return 'Skipped';
  }

  async #runActivity(activity: JsonObject, state: RunState, frame: Frame): Promise<ActivityStatus> {
    const name = activity.name as string;
    const type = String(activity.type);
    if (activity.state === 'Inactive') {
      // Deactivated: not executed, reported as `onInactiveMarkAs` (default Succeeded).
      const markAs = (activity.onInactiveMarkAs as ActivityStatus | undefined) ?? 'Succeeded';
      frame.results.set(name, { status: markAs, output: null, error: null });
      return markAs;
    }
    const policy = isObject(activity.policy) ? activity.policy : {};
    let retries = 0;
    let intervalMs = 30_000;
    let timeoutMs = 7 * 86_400_000;
    try {
      checkKeys(activity, IGNORED_ACTIVITY_KEYS, `activity \`${name}\``);
      checkKeys(policy, POLICY_KEYS, `the policy of activity \`${name}\``);
      retries = integerProperty(policy.retry ?? 0, 'retry', name);
      intervalMs = integerProperty(policy.retryIntervalInSeconds ?? 30, 'retryIntervalInSeconds', name) * 1000;
      timeoutMs = timeSpanMs(policy.timeout ?? '7.00:00:00', `policy.timeout of activity \`${name}\``);
    } catch (error) {
      return this.#record(activity, state, frame, 1, async () => {
        throw error;
      });
    }
    for (let attempt = 1; ; attempt++) {
      const status = await this.#record(activity, state, frame, attempt, (ctx) =>
        this.#withTimeout(type, name, timeoutMs, ctx, (c) => this.#dispatch(activity, state, frame, c)),
      );
      if (status === 'Succeeded' || attempt > retries) return status;
      await this.#options.clock.sleep(intervalMs, state.signal);
    }
  }

  async #withTimeout(
    type: string,
    name: string,
    timeoutMs: number,
    ctx: ActivityContext,
    work: (c: ActivityContext) => Promise<Json>,
  ): Promise<Json> {
    const timer = new AbortController();
    const timedOut = this.#options.clock.sleep(timeoutMs, timer.signal).then(() => {
      if (timer.signal.aborted) return new Promise<never>(() => {});
      throw new ActivityError(
        'ActivityTimedOut',
        `Activity \`${name}\` (${type}) exceeded its policy timeout of ${timeoutMs / 1000} s and was stopped.`,
      );
    });
    try {
      return await Promise.race([work(ctx), timedOut]);
    } finally {
      timer.abort();
    }
  }

  async #record(
    activity: JsonObject,
    state: RunState,
    frame: Frame,
    attempt: number,
    work: (ctx: ActivityContext) => Promise<Json>,
  ): Promise<ActivityStatus> {
    const name = activity.name as string;
    const clock = this.#options.clock;
    const startMs = clock.nowMs();
    const record: ActivityRun = {
      activityRunId: randomUUID(),
      pipelineRunId: state.run.runId,
      pipelineName: state.run.pipelineName,
      activityName: name,
      activityType: String(activity.type),
      attempt,
      status: 'InProgress',
      activityRunStart: iso(startMs),
      ...(frame.label ? { scope: frame.label } : {}),
    };
    state.run.activityRuns.push(record);
    const scope = this.#scope(state, frame);
    const ctx: ActivityContext = {
      activity,
      name,
      pipelineRun: state.run,
      activityRunId: record.activityRunId,
      scope,
      signal: state.signal,
      clock,
      evaluate: (value) => evaluateValue(value, scope),
    };
    try {
      const output = await work(ctx);
      record.status = 'Succeeded';
      // secureOutput: not captured in monitoring; later activities still read it (concepts-pipelines-activities).
      record.output = isObject(activity.policy) && activity.policy.secureOutput === true ? '**secured**' : output;
      frame.results.set(name, { status: 'Succeeded', output, error: null });
    } catch (error) {
      const err = toActivityRunError(error, name);
      record.status = 'Failed';
      record.error = err;
      record.output = error instanceof ActivityError && isObject(error.details.output) ? error.details.output : null;
      frame.results.set(name, { status: 'Failed', output: record.output ?? null, error: err });
    }
    const endMs = clock.nowMs();
    record.activityRunEnd = iso(endMs);
    record.durationInMs = endMs - startMs;
    return record.status;
  }

  #scope(state: RunState, frame: Frame): ExpressionScope {
    const clock = this.#options.clock;
    const lazy = this.#options.lazyConditionals ?? true;
    return {
      now: () => clock.now(),
      lazyConditionals: lazy,
      pipeline: () => state.pipeline,
      variables: (name) => {
        const v = state.variables.get(name);
        if (!v)
          throw new ExpressionError(
            `Variable \`${name}\` is not declared in pipeline \`${state.run.pipelineName}\`; declare it under \`variables\`.`,
          );
        return v.value;
      },
      activity: (name) => {
        for (let f: Frame | undefined = frame; f; f = f.parent) {
          const r = f.results.get(name);
          if (r) return { output: r.output, status: r.status, error: r.error as unknown as Json };
        }
        throw new ExpressionError(
          `\`activity('${name}')\` has no result in this run of \`${state.run.pipelineName}\`: the activity does not exist or has not run before this one; add a dependency on it.`,
        );
      },
      ...(frame.item || frame.parent ? { item: () => itemOf(frame) } : {}),
    };
  }

  async #dispatch(activity: JsonObject, state: RunState, frame: Frame, ctx: ActivityContext): Promise<Json> {
    const type = String(activity.type);
    const tp = isObject(activity.typeProperties) ? activity.typeProperties : {};
    if ((CONTROL_TYPES as readonly string[]).includes(type)) {
      checkKeys(tp, TYPE_PROPERTIES[type]!, `${type} activity \`${ctx.name}\``);
      return this.#control(type, tp, state, frame, ctx);
    }
    const handler = this.#options.handlers[type];
    if (!handler) {
      throw new UnsupportedError(
        `Activity type \`${type}\` (activity \`${ctx.name}\`) is not implemented by the local runtime; supported: ${[...CONTROL_TYPES, ...Object.keys(this.#options.handlers)].join(', ')}.`,
      );
    }
    return this.#options.clock.busy(() => handler(ctx));
  }

  async #control(type: string, tp: JsonObject, state: RunState, frame: Frame, ctx: ActivityContext): Promise<Json> {
    const name = ctx.name;
    switch (type) {
      case 'SetVariable':
      case 'AppendVariable': {
        const variableName = ctx.evaluate(tp.variableName);
        if (typeof variableName !== 'string') throw new UsageError(`${type} \`${name}\` has no \`variableName\`.`);
        if (type === 'SetVariable' && tp.setSystemVariable === true) {
          if (variableName !== 'pipelineReturnValue')
            throw new UnsupportedError(
              `System variable \`${variableName}\` of SetVariable \`${name}\` is not implemented; only \`pipelineReturnValue\` is.`,
            );
          state.returnValue.value = returnValue(tp.value, ctx);
          return { name: variableName, value: state.returnValue.value };
        }
        const variable = state.variables.get(variableName);
        if (!variable)
          throw new ActivityError(
            'InvalidVariable',
            `Variable \`${variableName}\` (${type} \`${name}\`) is not declared in pipeline \`${state.run.pipelineName}\`.`,
          );
        // SetVariable in a parallel ForEach is documented as not thread-safe: writes land in completion order.
        const value = ctx.evaluate(tp.value);
        if (type === 'AppendVariable') {
          if (variable.type !== 'Array')
            throw new ActivityError(
              'InvalidVariableType',
              `AppendVariable \`${name}\` appends to \`${variableName}\`, which is a ${variable.type}, not an Array.`,
            );
          variable.value = [...((variable.value as Json[] | null) ?? []), value];
          return { name: variableName, value };
        }
        variable.value = checkType(value, variable.type, `Variable \`${variableName}\` set by \`${name}\``);
        return { name: variableName, value };
      }
      case 'IfCondition': {
        const condition = ctx.evaluate(tp.expression);
        if (typeof condition !== 'boolean')
          throw new ActivityError(
            'InvalidTemplate',
            `IfCondition \`${name}\` expression must be a boolean, got \`${JSON.stringify(condition)}\`.`,
          );
        const branch = condition ? 'ifTrueActivities' : 'ifFalseActivities';
        const inner = activityList(tp[branch] ?? [], `${branch} of \`${name}\``);
        const status = await this.#runScope(inner, state, child(frame, `${name}:${condition}`));
        if (status === 'Failed')
          throw new ActivityError(
            'ContainerFailed',
            `An activity in the ${condition ? 'true' : 'false'} branch of \`${name}\` failed.`,
          );
        return {};
      }
      case 'Switch': {
        const on = textOf(ctx.evaluate(tp.on));
        const cases = Array.isArray(tp.cases) ? tp.cases : [];
        const match = cases.find((c) => isObject(c) && textOf(c.value as Json) === on) as JsonObject | undefined;
        const inner = activityList(
          match ? (match.activities ?? []) : (tp.defaultActivities ?? []),
          `case \`${on}\` of \`${name}\``,
        );
        const status = await this.#runScope(inner, state, child(frame, `${name}:${match ? on : 'default'}`));
        if (status === 'Failed')
          throw new ActivityError(
            'ContainerFailed',
            `An activity in case \`${match ? on : 'default'}\` of \`${name}\` failed.`,
          );
        return {};
      }
      case 'ForEach': {
        if (frame.loop)
          throw new ActivityError(
            'InvalidNesting',
            `ForEach \`${name}\` is inside a ${frame.loop}; a ForEach cannot be nested in a ForEach or Until — use ExecutePipeline with a child pipeline.`,
          );
        const items = ctx.evaluate(tp.items);
        if (!Array.isArray(items))
          throw new ActivityError(
            'InvalidTemplate',
            `ForEach \`${name}\` items must evaluate to an array, got \`${JSON.stringify(items)?.slice(0, 100)}\`.`,
          );
        if (items.length > 100_000)
          throw new ActivityError(
            'TooManyItems',
            `ForEach \`${name}\` has ${items.length} items; the limit is 100,000.`,
          );
        const sequential = tp.isSequential === undefined ? false : ctx.evaluate(tp.isSequential) === true;
        const batch = tp.batchCount === undefined ? 20 : Number(ctx.evaluate(tp.batchCount));
        if (!sequential && !(Number.isInteger(batch) && batch >= 1 && batch <= 50)) {
          throw new ActivityError(
            'InvalidBatchCount',
            `ForEach \`${name}\` batchCount \`${tp.batchCount}\` is outside 1–50.`,
          );
        }
        const inner = activityList(tp.activities ?? [], `activities of \`${name}\``);
        const lanes = sequential ? 1 : Math.min(batch, Math.max(1, items.length));
        let next = 0;
        let failed = 0;
        await Promise.all(
          Array.from({ length: lanes }, async () => {
            while (next < items.length) {
              const index = next++;
              const status = await this.#runScope(inner, state, {
                ...child(frame, `${name}[${index}]`),
                item: { value: items[index]! },
                loop: 'ForEach',
              });
              if (status === 'Failed') failed++;
            }
          }),
        );
        if (failed)
          throw new ActivityError(
            'ContainerFailed',
            `${failed} of ${items.length} iteration(s) of ForEach \`${name}\` failed.`,
          );
        return { itemsCount: items.length };
      }
      case 'Until': {
        if (frame.loop)
          throw new ActivityError(
            'InvalidNesting',
            `Until \`${name}\` is inside a ${frame.loop}; use ExecutePipeline with a child pipeline.`,
          );
        const limitMs = timeSpanMs(tp.timeout ?? '7.00:00:00', `timeout of Until \`${name}\``);
        if (limitMs > 90 * 86_400_000)
          throw new ActivityError('InvalidTimeout', `Until \`${name}\` timeout exceeds the maximum of 90 days.`);
        const inner = activityList(tp.activities ?? [], `activities of \`${name}\``);
        const started = this.#options.clock.nowMs();
        for (let i = 1; ; i++) {
          // do-while: the activities run first, then the condition (control-flow-until-activity).
          const iteration: Frame = { ...child(frame, `${name}#${i}`), loop: 'Until' };
          const status = await this.#runScope(inner, state, iteration);
          // The condition sees the activities of the iteration that just ran (e.g. `activity('Check').output`).
          const scope = this.#scope(state, iteration);
          const done = evaluateValue(tp.expression, scope);
          if (typeof done !== 'boolean')
            throw new ActivityError(
              'InvalidTemplate',
              `Until \`${name}\` expression must be a boolean, got \`${JSON.stringify(done)}\`.`,
            );
          if (done) {
            if (status === 'Failed')
              throw new ActivityError('ContainerFailed', `The last iteration (${i}) of Until \`${name}\` failed.`);
            return { iterations: i };
          }
          if (this.#options.clock.nowMs() - started >= limitMs) {
            throw new ActivityError(
              'ActivityTimedOut',
              `Until \`${name}\` reached its timeout after ${i} iteration(s) without its condition becoming true.`,
            );
          }
        }
      }
      case 'Wait': {
        const seconds = ctx.evaluate(tp.waitTimeInSeconds);
        if (typeof seconds !== 'number' || !Number.isInteger(seconds) || seconds < 0)
          throw new ActivityError(
            'InvalidTemplate',
            `Wait \`${name}\` waitTimeInSeconds must be a non-negative integer, got \`${JSON.stringify(seconds)}\`.`,
          );
        await this.#options.clock.sleep(seconds * 1000, ctx.signal);
        return { waitTimeInSeconds: seconds };
      }
      case 'Fail': {
        const message = ctx.evaluate(tp.message);
        const errorCode = ctx.evaluate(tp.errorCode);
        if (typeof message !== 'string' || message === '')
          throw new ActivityError(
            'InvalidTemplate',
            `Fail \`${name}\` message must evaluate to a non-empty string, got \`${JSON.stringify(message)}\`.`,
          );
        if (typeof errorCode !== 'string' || errorCode === '')
          throw new ActivityError(
            'InvalidTemplate',
            `Fail \`${name}\` errorCode must evaluate to a non-empty string, got \`${JSON.stringify(errorCode)}\`.`,
          );
        throw new ActivityError(errorCode, message);
      }
      case 'Filter': {
        const items = ctx.evaluate(tp.items);
        if (!Array.isArray(items))
          throw new ActivityError('InvalidTemplate', `Filter \`${name}\` items must evaluate to an array.`);
        const kept: Json[] = [];
        for (const item of items) {
          const keep = evaluateValue(tp.condition, { ...ctx.scope, item: () => item });
          if (typeof keep !== 'boolean')
            throw new ActivityError(
              'InvalidTemplate',
              `Filter \`${name}\` condition must be a boolean, got \`${JSON.stringify(keep)}\`.`,
            );
          if (keep) kept.push(item);
        }
        return { ItemsCount: items.length, FilteredItemsCount: kept.length, Value: kept };
      }
      case 'ExecutePipeline': {
        const ref = tp.pipeline;
        if (!isObject(ref) || typeof ref.referenceName !== 'string')
          throw new UsageError(`ExecutePipeline \`${name}\` has no pipeline reference.`);
        const parameters = isObject(tp.parameters) ? (ctx.evaluate(tp.parameters) as Record<string, Json>) : {};
        const wait =
          tp.waitOnCompletion === undefined
            ? (this.#options.waitOnCompletionDefault ?? true)
            : tp.waitOnCompletion === true;
        const handle = this.startRun(ref.referenceName, {
          parameters,
          invokedBy: { name: state.run.pipelineName, invokedByType: 'PipelineActivity', id: state.run.runId },
          parent: {
            runId: state.run.runId,
            pipelineName: state.run.pipelineName,
            groupId: String(state.pipeline.GroupId),
          },
        });
        if (!wait) return { pipelineName: ref.referenceName, pipelineRunId: handle.run.runId };
        const childRun = await handle.done;
        const output: JsonObject = { pipelineName: ref.referenceName, pipelineRunId: childRun.runId };
        if (childRun.output !== undefined) output.pipelineReturnValue = childRun.output;
        if (childRun.status !== 'Succeeded') {
          throw Object.assign(
            new ActivityError(
              'PipelineRunFailed',
              `Child pipeline \`${ref.referenceName}\` run ${childRun.runId} ${childRun.status.toLowerCase()}: ${childRun.message}`,
            ),
            { details: { output } },
          );
        }
        return output;
      }
    }
    throw new UnsupportedError(`Activity type \`${type}\` is not implemented by the local runtime.`);
  }
}

function child(frame: Frame, label: string): Frame {
  return {
    results: new Map(),
    parent: frame,
    label,
    ...(frame.item ? { item: frame.item } : {}),
    ...(frame.loop ? { loop: frame.loop } : {}),
  };
}

function itemOf(frame: Frame): Json {
  if (frame.item) return frame.item.value;
  throw new ExpressionError('`item()` is only available inside a ForEach (or a Filter condition).');
}

function returnValue(value: unknown, ctx: ActivityContext): Json {
  // `value` is a list of { key, value: { type, content } } (learn.microsoft.com/azure/data-factory/tutorial-pipeline-return-value).
  if (!Array.isArray(value))
    throw new ActivityError(
      'InvalidReturnValue',
      `pipelineReturnValue of \`${ctx.name}\` must be a list of { key, value }.`,
    );
  const out: JsonObject = {};
  for (const entry of value) {
    if (!isObject(entry) || typeof entry.key !== 'string' || !isObject(entry.value))
      throw new ActivityError(
        'InvalidReturnValue',
        `An entry of pipelineReturnValue in \`${ctx.name}\` lacks key or value.`,
      );
    const v = entry.value;
    out[entry.key] =
      v.type === 'Null'
        ? null
        : ctx.evaluate(v.type === 'Expression' ? { type: 'Expression', value: v.content } : v.content);
  }
  return out;
}

function bindParameters(
  decls: Map<string, Declaration>,
  given: Record<string, Json>,
  pipeline: string,
): Record<string, Json> {
  const out: Record<string, Json> = {};
  for (const key of Object.keys(given)) {
    if (!decls.has(key))
      throw new UsageError(
        `Pipeline \`${pipeline}\` has no parameter \`${key}\`; declared: ${[...decls.keys()].join(', ') || '(none)'}.`,
      );
  }
  for (const [name, decl] of decls) {
    const value = Object.hasOwn(given, name) ? given[name]! : decl.defaultValue;
    if (value === undefined)
      throw new UsageError(
        `Pipeline \`${pipeline}\` needs parameter \`${name}\` (${decl.type}), which has no default; pass it.`,
      );
    out[name] = checkType(value, decl.type, `Parameter \`${name}\` of pipeline \`${pipeline}\``);
  }
  return out;
}

function activityList(value: unknown, where: string): JsonObject[] {
  if (!Array.isArray(value) || !value.every(isObject))
    throw new UsageError(`The activities of ${where} are not a list of objects.`);
  return value as JsonObject[];
}

function dependencies(
  activity: JsonObject,
  scope: Map<string, JsonObject>,
  pipeline: string,
): { activity: string; conditions: string[] }[] {
  const list = activity.dependsOn ?? [];
  if (!Array.isArray(list)) throw new UsageError(`dependsOn of \`${activity.name}\` is not a list.`);
  return list.map((d) => {
    if (!isObject(d) || typeof d.activity !== 'string' || !Array.isArray(d.dependencyConditions)) {
      throw new UsageError(`A dependsOn entry of \`${activity.name}\` lacks activity or dependencyConditions.`);
    }
    if (!scope.has(d.activity))
      throw new UsageError(
        `Activity \`${activity.name}\` of \`${pipeline}\` depends on \`${d.activity}\`, which is not in the same scope.`,
      );
    const conditions = d.dependencyConditions.map(String);
    for (const c of conditions) {
      if (!['Succeeded', 'Failed', 'Skipped', 'Completed'].includes(c))
        throw new UnsupportedError(
          `Dependency condition \`${c}\` of \`${activity.name}\` is unknown; use Succeeded, Failed, Skipped or Completed.`,
        );
    }
    return { activity: d.activity, conditions };
  });
}

function conditionMet(condition: string, status: ActivityStatus): boolean {
  // `Completed` = succeeded or failed ("regardless of" success); a skipped predecessor does not satisfy it (INFERENCE).
  if (condition === 'Completed') return status === 'Succeeded' || status === 'Failed';
  return condition === status;
}

function assertAcyclic(deps: Map<string, { activity: string }[]>, pipeline: string): void {
  const state = new Map<string, 1 | 2>();
  const visit = (n: string, path: string[]) => {
    if (state.get(n) === 2) return;
    if (state.get(n) === 1)
      throw new UsageError(
        `Activities of \`${pipeline}\` depend on each other in a cycle: ${[...path, n].join(' → ')}.`,
      );
    state.set(n, 1);
    for (const d of deps.get(n) ?? []) visit(d.activity, [...path, n]);
    state.set(n, 2);
  };
  for (const n of deps.keys()) visit(n, []);
}

/**
 * The documented final-status algorithm: take every leaf; for a skipped leaf evaluate its parents instead
 * (repeatedly); the scope succeeds iff every evaluated activity succeeded (tutorial-pipeline-failure-error-handling).
 */
export function scopeStatus(
  deps: Map<string, { activity: string }[]>,
  statuses: Map<string, ActivityStatus>,
): 'Succeeded' | 'Failed' {
  const hasDependents = new Set<string>();
  for (const list of deps.values()) for (const d of list) hasDependents.add(d.activity);
  const seen = new Set<string>();
  const evaluate = (name: string): boolean => {
    if (seen.has(name)) return true;
    seen.add(name);
    const status = statuses.get(name);
    if (status === 'Skipped') {
      const parents = deps.get(name) ?? [];
      return parents.length === 0 ? true : parents.every((p) => evaluate(p.activity));
    }
    return status === 'Succeeded';
  };
  const leaves = [...deps.keys()].filter((n) => !hasDependents.has(n));
  return leaves.every((leaf) => evaluate(leaf)) ? 'Succeeded' : 'Failed';
}

function toActivityRunError(error: unknown, target: string): ActivityRunError {
  if (error instanceof ActivityError)
    return { errorCode: error.errorCode, message: error.message, failureType: error.failureType, target };
  if (error instanceof ExpressionError)
    return { errorCode: 'InvalidTemplate', message: error.message, failureType: 'UserError', target };
  if (error instanceof UnsupportedError)
    return { errorCode: 'UnsupportedByLocalRuntime', message: error.message, failureType: 'UserError', target };
  if (error instanceof FerryError)
    return { errorCode: error.code, message: error.message, failureType: 'UserError', target };
  return { errorCode: 'LocalRuntimeError', message: messageOf(error), failureType: 'SystemError', target };
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

function integerProperty(value: unknown, what: string, activity: string): number {
  const n = typeof value === 'number' || typeof value === 'string' ? Number(value) : Number.NaN;
  if (!Number.isInteger(n) || n < 0)
    throw new UsageError(
      `Policy \`${what}\` of activity \`${activity}\` is \`${JSON.stringify(value)}\`; use a non-negative integer.`,
    );
  return n;
}

/** `[d.]hh:mm:ss` (the REST `ActivityPolicy.timeout` pattern) in milliseconds. */
export function timeSpanMs(value: unknown, what: string): number {
  const m = typeof value === 'string' ? /^(-)?(?:(\d+)\.)?(\d{1,2}):(\d{2}):(\d{2})$/.exec(value) : null;
  if (!m)
    throw new UsageError(`${what} is \`${JSON.stringify(value)}\`; write it as \`[d.]hh:mm:ss\`, e.g. \`0.12:00:00\`.`);
  const ms = ((Number(m[2] ?? 0) * 24 + Number(m[3])) * 3600 + Number(m[4]) * 60 + Number(m[5])) * 1000;
  return m[1] ? -ms : ms;
}

export function iso(ms: number): string {
  return formatTicks(ticksFromMs(ms));
}
