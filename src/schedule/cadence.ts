import { parseDuration } from '../core/pipeline.js';

/**
 * The first wall-clock boundary strictly after `afterMs` for a cadence of `everyMs` (UTC, counted from the epoch),
 * so `15m` ticks at :00, :15, :30 and :45 whatever time the scheduler was started.
 */
export function nextBoundary(afterMs: number, everyMs: number): number {
  return (Math.floor(afterMs / everyMs) + 1) * everyMs;
}

/** A pipeline's cadence in milliseconds: `override` (the `--every` flag) wins over the definition's `every`. */
export function cadenceMs(every: string, override?: string): number {
  return parseDuration(override ?? every);
}
