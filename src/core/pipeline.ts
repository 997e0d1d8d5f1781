import { UsageError } from './errors.js';

export const DIRECTIONS = ['inbound', 'outbound'] as const;
export type Direction = (typeof DIRECTIONS)[number];

/** `listen`: the run of a queue listener (`ferry listen`), holding the rejects of the messages it handled. */
export const RUN_MODES = ['scheduled', 'manual', 'backfill', 'replay', 'listen'] as const;
export type RunMode = (typeof RUN_MODES)[number];

/**
 * What every stage spec is: plain, serialisable data with a `kind`. The runner finds the kind's code through the
 * registry it is given (`src/stages/registry.ts`); the union of the project's own kinds is `StageSpec` in
 * `src/stages/stage-spec.ts`.
 */
export interface StageSpecBase {
  readonly kind: string;
}

export interface RejectThreshold {
  /** Largest share of rejected rows (0..1) a run may have and still move its cursor. Default `0.05`. */
  readonly maxRejectedRatio: number;
  /** Largest number of rejected rows; unset means no absolute cap. */
  readonly maxRejected?: number;
}

export interface PipelineDefinition {
  readonly name: string;
  readonly description: string;
  readonly direction: Direction;
  /** How often `ferry schedule` runs it, as a duration (`15m`, `1h`). Default `15m`. */
  readonly every: string;
  /** Pipelines that must run first in the same tick (accounts before contacts). */
  readonly dependsOn: readonly string[];
  readonly rejectThreshold: RejectThreshold;
  readonly stages: readonly StageSpecBase[];
}

export interface PipelineInput {
  readonly name: string;
  readonly description?: string;
  readonly direction: Direction;
  readonly every?: string;
  readonly dependsOn?: readonly string[];
  readonly rejectThreshold?: Partial<RejectThreshold>;
  readonly stages: readonly StageSpecBase[];
}

const NAME = /^[a-z][a-z0-9-]{0,62}$/;

/**
 * Declares a pipeline. The result is plain data read by both the local runner and the Synapse exporter.
 *
 * @example
 * export default definePipeline({
 *   name: 'accounts-inbound', direction: 'inbound',
 *   stages: [readParquetDeltas({...}), convertToDataverse({...}), upsertDataverse({...})],
 * });
 */
export function definePipeline(input: PipelineInput): PipelineDefinition {
  if (!NAME.test(input.name)) {
    throw new UsageError(
      `Pipeline name \`${input.name}\` is not valid; use lower-case letters, digits and dashes, starting with a letter.`,
    );
  }
  if (!(DIRECTIONS as readonly string[]).includes(input.direction)) {
    throw new UsageError(`Pipeline \`${input.name}\` has direction \`${input.direction}\`; use inbound or outbound.`);
  }
  if (input.stages.length === 0) throw new UsageError(`Pipeline \`${input.name}\` has no stages.`);
  const every = input.every ?? '15m';
  parseDuration(every);
  const maxRejectedRatio = input.rejectThreshold?.maxRejectedRatio ?? 0.05;
  if (!(maxRejectedRatio >= 0 && maxRejectedRatio <= 1)) {
    throw new UsageError(
      `Pipeline \`${input.name}\` rejectThreshold.maxRejectedRatio \`${maxRejectedRatio}\` must be between 0 and 1.`,
    );
  }
  return deepFreeze({
    name: input.name,
    description: input.description ?? '',
    direction: input.direction,
    every,
    dependsOn: [...(input.dependsOn ?? [])],
    rejectThreshold: {
      maxRejectedRatio,
      ...(input.rejectThreshold?.maxRejected === undefined ? {} : { maxRejected: input.rejectThreshold.maxRejected }),
    },
    stages: input.stages.map((s) => structuredClone(s)),
  });
}

/** Parses `90s`, `15m`, `1h`, `1d` into milliseconds. */
export function parseDuration(text: string): number {
  const match = /^(\d+)(ms|s|m|h|d)$/.exec(text.trim());
  if (!match)
    throw new UsageError(
      `Duration \`${text}\` is not valid; write a number and a unit, e.g. \`15m\`, \`1h\`, \`90s\`.`,
    );
  const n = Number(match[1]);
  const unit = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }[match[2] as 'ms' | 's' | 'm' | 'h' | 'd'];
  if (n <= 0) throw new UsageError(`Duration \`${text}\` must be greater than zero.`);
  return n * unit;
}

function deepFreeze<T>(value: T): T {
  if (value && typeof value === 'object') {
    for (const v of Object.values(value)) deepFreeze(v);
    Object.freeze(value);
  }
  return value;
}
