import type { ThrottleKind } from './retry-policy.js';

export interface AdaptiveConcurrencyOptions {
  /** Hard cap on parallel requests (config). Default `32`. */
  readonly maxConcurrency?: number;
  /** `x-ms-dop-hint` from `GET WhoAmI`; the starting concurrency. Default `4`. */
  readonly dopHint?: number;
  /** Configured rows per request; batches shrink below it on slow requests and grow back. Default `100`. */
  readonly batchSize?: number;
  /** Largest rows per request (`$batch` allows 1000 operations). Default `1000`. */
  readonly maxBatchSize?: number;
  /** Client timeout per request; batches are kept to a quarter of it. Default `120000` ms. */
  readonly timeoutMs?: number;
  /**
   * Server-seconds the execution-time limit allows per wall-second per web server: 1,200 s per 300 s window = `4`
   * (reference §4.1, THROUGHPUT.md).
   */
  readonly executionBudgetPerSec?: number;
  /**
   * Web servers the load spreads over (no affinity cookie). Default: `dopHint / executionBudgetPerSec`, at least 1,
   * since the hint reflects the environment's size.
   */
  readonly servers?: number;
  /** Share of the derived ceiling to run at. PPDS found 100% lengthens `Retry-After`; default `0.8`. */
  readonly headroom?: number;
}

/**
 * Decides how many requests run at once and how many rows each carries, from what the service says and how long
 * requests take. Throughput under the service-protection limits is bounded by the execution-time budget
 * (THROUGHPUT.md): each lane that is always busy spends `serverTime / latency` server-seconds per second, so the
 * ceiling is `headroom · budget · servers · latency / serverTime` lanes. Starts at the `x-ms-dop-hint`, climbs
 * one lane at a time while no 429 arrives, cuts to below the level that drew a 429, and keeps every request well
 * under the client timeout.
 */
export class AdaptiveConcurrency {
  readonly maxConcurrency: number;
  readonly configuredBatchSize: number;
  #limit: number;
  #batchSize: number;
  #budgetCeiling: number;
  #streak = 0;
  /** Successes at the ceiling before probing one lane above it; doubles after each probe that drew a 429. */
  #probeInterval: number;
  #atCeiling = 0;
  #busyShare = 1;
  #serverTimeEwma: number | undefined;
  #latencyEwma: number | undefined;
  #serverTimeSum = 0;
  #samples = 0;
  #maxLimitSeen: number;
  #successes = 0;
  #lastThrottleAt: number | undefined;
  readonly #maxBatch: number;
  readonly #timeoutMs: number;
  readonly #budget: number;
  #servers: number;
  readonly #headroom: number;

  constructor(options: AdaptiveConcurrencyOptions = {}) {
    this.maxConcurrency = Math.max(1, options.maxConcurrency ?? 32);
    this.configuredBatchSize = Math.max(1, options.batchSize ?? 100);
    this.#maxBatch = Math.max(this.configuredBatchSize, options.maxBatchSize ?? 1000);
    this.#timeoutMs = options.timeoutMs ?? 120_000;
    this.#budget = options.executionBudgetPerSec ?? 4;
    const hint = options.dopHint ?? 4;
    this.#servers = options.servers ?? Math.max(1, hint / this.#budget);
    this.#headroom = options.headroom ?? 0.8;
    this.#limit = Math.min(this.maxConcurrency, Math.max(1, hint));
    this.#maxLimitSeen = this.#limit;
    this.#batchSize = this.configuredBatchSize;
    this.#budgetCeiling = this.#deriveCeiling();
    this.#probeInterval = 50;
  }

  /** Requests that may be in flight now. */
  get limit(): number {
    return this.#limit;
  }

  /** Rows to put in the next request. */
  get batchSize(): number {
    return this.#batchSize;
  }

  /** The current concurrency ceiling: the execution-time budget of the servers we believe we reach. */
  get ceiling(): number {
    return Math.max(1, Math.min(this.maxConcurrency, this.#budgetCeiling));
  }

  /** Web servers the budget is currently estimated for (learned from 429s and probes). */
  get servers(): number {
    return this.#servers;
  }

  get maxLimitSeen(): number {
    return this.#maxLimitSeen;
  }

  /** Mean server time per request over the run (the server's own figure when reported, else latency). */
  get meanServerTimeMs(): number | undefined {
    return this.#samples === 0 ? undefined : this.#serverTimeSum / this.#samples;
  }

  /** Records a completed request of `rows` rows. */
  recordSuccess(sample: { rows: number; elapsedMs: number; serverTimeMs?: number | undefined }): void {
    const server = sample.serverTimeMs ?? sample.elapsedMs;
    this.#successes += 1;
    this.#serverTimeSum += server;
    this.#samples += 1;
    this.#serverTimeEwma = ewma(this.#serverTimeEwma, server);
    this.#latencyEwma = ewma(this.#latencyEwma, Math.max(sample.elapsedMs, server));
    if (this.#serverTimeEwma > 0) {
      this.#busyShare = Math.min(1, this.#serverTimeEwma / this.#latencyEwma);
      this.#budgetCeiling = this.#deriveCeiling();
    }
    // Keep each request well under the client timeout (SQL 4 CDS and PPDS aim for ~10 s requests).
    const target = this.#timeoutMs / 4;
    if (sample.elapsedMs > target && this.#batchSize > 1) {
      this.#batchSize = Math.max(1, Math.floor(this.#batchSize / 2));
    } else if (sample.elapsedMs < target / 4 && this.#batchSize < this.configuredBatchSize) {
      this.#batchSize = Math.min(this.configuredBatchSize, Math.ceil(this.#batchSize * 1.5));
    }
    this.#streak += 1;
    // Additive increase: one more lane after a clean round at the current level, never past the ceiling.
    if (this.#streak >= this.#limit * 2) {
      this.#streak = 0;
      if (this.#limit < this.ceiling) this.#limit += 1;
    }
    if (this.#limit > this.ceiling) this.#limit = this.ceiling;
    // Running at the ceiling without a 429 for a while: the environment may have more servers (or a user less
    // sharing them) than we think; probe one lane higher. A 429 teaches us the real level again.
    if (this.#limit >= this.ceiling && this.ceiling < this.maxConcurrency) {
      this.#atCeiling += 1;
      if (this.#atCeiling >= this.#probeInterval) {
        this.#atCeiling = 0;
        this.#servers += 1 / this.#budget;
        this.#budgetCeiling = this.#deriveCeiling();
      }
    } else {
      this.#atCeiling = 0;
    }
    this.#maxLimitSeen = Math.max(this.#maxLimitSeen, this.#limit);
  }

  /**
   * Records a 429 drawn with `inFlight` requests running. Execution-time and concurrency limits say the budget
   * holds fewer lanes than that: re-estimate the servers from it and resume below (headroom). Request-count limits
   * also get fewer, bigger requests.
   */
  recordThrottle(kind: ThrottleKind, inFlight: number): void {
    const level = Math.max(1, Math.min(this.#limit, inFlight));
    this.#streak = -this.#limit * 4;
    this.#atCeiling = 0;
    if (this.#lastThrottleAt !== undefined && this.#successes - this.#lastThrottleAt < 4) {
      // The lanes that were already in flight answer 429 together: one episode, one cut.
      return;
    }
    this.#lastThrottleAt = this.#successes;
    this.#probeInterval = Math.min(this.#probeInterval * 2, 10_000);
    if (kind === 'requests') {
      if (this.#batchSize < this.#maxBatch) this.#batchSize = Math.min(this.#maxBatch, this.#batchSize * 2);
      this.#limit = Math.max(1, Math.floor(this.#limit * this.#headroom));
      return;
    }
    this.#servers = Math.max(1 / this.#budget, (level * this.#busyShare) / this.#budget);
    this.#budgetCeiling = this.#deriveCeiling();
    this.#limit = Math.max(1, Math.min(this.#limit, this.ceiling));
  }

  /** Records a request that timed out: halve the batch so the next requests finish in time. */
  recordTimeout(): void {
    this.#batchSize = Math.max(1, Math.floor(this.#batchSize / 2));
  }

  #deriveCeiling(): number {
    return Math.max(1, Math.floor((this.#headroom * this.#budget * this.#servers) / this.#busyShare));
  }
}

function ewma(previous: number | undefined, value: number): number {
  return previous === undefined ? value : previous * 0.8 + value * 0.2;
}
