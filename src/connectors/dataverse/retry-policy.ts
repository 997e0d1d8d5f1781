/** How the client treats an HTTP status or a transport failure. */
export const OUTCOME_KINDS = ['success', 'throttled', 'transient', 'data', 'auth', 'fatal'] as const;
export type OutcomeKind = (typeof OUTCOME_KINDS)[number];

/** Throttling codes (reference §4.1); the kind tells the writer which limit it hit. */
export const THROTTLE_CODES = {
  '0x80072322': 'requests',
  '0x80072321': 'executionTime',
  '0x80072326': 'concurrency',
} as const;
export type ThrottleKind = (typeof THROTTLE_CODES)[keyof typeof THROTTLE_CODES] | 'unknown';

/** SQL deadlock / timeout codes inside a 5xx or 400 body: retry with backoff (reference §2.2, §8). */
const TRANSIENT_SERVICE_CODES = new Set(['0x80044150', '-2147204784', '-2147204783']);

export interface RetryPolicyOptions {
  /** Attempts per request after the first, for transient failures. Default `6`. */
  readonly maxRetries?: number;
  /** Attempts per request after the first, for 429s (they wait as told, so more are fine). Default `30`. */
  readonly maxThrottleRetries?: number;
  /** First backoff. Default `500` ms. */
  readonly baseDelayMs?: number;
  /** Longest backoff. Default `30000` ms. */
  readonly maxDelayMs?: number;
  /** Random source in [0, 1), replaceable for tests. Default `Math.random`. */
  readonly random?: () => number;
}

/**
 * Pure retry decisions: which outcomes are retried, and how long to wait. 429 honours `Retry-After`; 502/503/504
 * and connection failures back off exponentially with jitter; 400/403/404/412 are data errors and never retried
 * (reference §8: "never retry 400/403/404/412 (data errors)").
 */
export class RetryPolicy {
  readonly maxRetries: number;
  readonly maxThrottleRetries: number;
  readonly #base: number;
  readonly #max: number;
  readonly #random: () => number;

  constructor(options: RetryPolicyOptions = {}) {
    this.maxRetries = options.maxRetries ?? 6;
    this.maxThrottleRetries = options.maxThrottleRetries ?? 30;
    this.#base = options.baseDelayMs ?? 500;
    this.#max = options.maxDelayMs ?? 30_000;
    this.#random = options.random ?? Math.random;
  }

  /** Classifies a response status (and the service error code, when the body had one). */
  classify(status: number, serviceCode?: string): OutcomeKind {
    if (status >= 200 && status < 300) return 'success';
    if (status === 429) return 'throttled';
    if (status === 502 || status === 503 || status === 504 || status === 408) return 'transient';
    if (serviceCode && TRANSIENT_SERVICE_CODES.has(serviceCode)) return 'transient';
    if (status === 401) return 'auth';
    if (status >= 400 && status < 500) return 'data';
    return 'fatal';
  }

  /** True when another attempt is allowed after `attempt` (0-based) failed with this kind. */
  shouldRetry(kind: OutcomeKind, attempt: number): boolean {
    if (kind === 'throttled') return attempt < this.maxThrottleRetries;
    if (kind === 'transient') return attempt < this.maxRetries;
    // One retry for 401: the token may have expired between fetch and use.
    if (kind === 'auth') return attempt < 1;
    return false;
  }

  /** Exponential backoff with jitter for attempt `attempt` (0-based): between half and all of `base·2^attempt`, capped. */
  backoffMs(attempt: number): number {
    const ceiling = Math.min(this.#max, this.#base * 2 ** attempt);
    return Math.round(ceiling / 2 + (ceiling / 2) * this.#random());
  }

  /**
   * Milliseconds to wait after a 429: the `Retry-After` header (seconds or an HTTP date), else the Microsoft
   * sample's fallback `2^attempt` seconds (reference §4.2).
   */
  throttleDelayMs(retryAfter: string | null | undefined, attempt: number, nowMs = Date.now()): number {
    const parsed = parseRetryAfter(retryAfter, nowMs);
    if (parsed !== undefined) return parsed;
    return Math.min(this.#max, 1000 * 2 ** attempt);
  }
}

/** `Retry-After` as milliseconds: delta-seconds (fractions accepted) or an HTTP date; undefined when absent or bad. */
export function parseRetryAfter(value: string | null | undefined, nowMs = Date.now()): number | undefined {
  if (value === null || value === undefined || value.trim() === '') return undefined;
  const text = value.trim();
  if (/^\d+(\.\d+)?$/.test(text)) return Math.round(Number(text) * 1000);
  const date = Date.parse(text);
  if (Number.isNaN(date)) return undefined;
  return Math.max(0, date - nowMs);
}

/** Which limit a 429 body names. */
export function throttleKindOf(serviceCode: string | undefined): ThrottleKind {
  if (!serviceCode) return 'unknown';
  return (THROTTLE_CODES as Record<string, ThrottleKind>)[serviceCode.toLowerCase()] ?? 'unknown';
}

/**
 * The execution-time budget an execution-time 429 states, in server-seconds per second: its message names the limit
 * and the window ("… exceeded limit of 1,200,000 milliseconds over time window of 300 seconds …", reference §4.1).
 * Undefined when the message does not say.
 */
export function statedExecutionBudget(message: string | undefined): number | undefined {
  const match = /limit of ([\d,.]+) milliseconds over time window of (\d+) seconds/i.exec(message ?? '');
  if (!match) return undefined;
  const limitMs = Number(match[1]!.replace(/[,.]/g, ''));
  const windowSec = Number(match[2]);
  return limitMs > 0 && windowSec > 0 ? limitMs / 1000 / windowSec : undefined;
}
