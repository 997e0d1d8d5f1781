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
   * since the hint reflects the environment's size. Learned from 429s and probes as the run goes.
   */
  readonly servers?: number;
  /**
   * Share of the execution-time budget to spend. Running at 100% lengthens `Retry-After` (PPDS); just below it is
   * sustainable because the budget is paced, not guessed. Default `0.95`.
   */
  readonly headroom?: number;
  /** Clock in ms, replaceable for tests. Default `performance.now`. */
  readonly now?: () => number;
}

/**
 * Decides how many requests run at once, how many rows each carries and when each may start, from what the service
 * says and how long requests take. Under the service-protection limits throughput is bounded by the execution-time
 * budget (THROUGHPUT.md: 4 server-seconds per second per web server), so the controller paces requests by their
 * server time (a GCRA over the measured server time per row) at `headroom` of the budget of the servers it believes
 * it reaches; concurrency starts at the `x-ms-dop-hint` and only needs to be high enough to keep that pace. A 429
 * for execution time or concurrency lowers the servers estimate (all lanes pause for `Retry-After` in the client);
 * a long clean stretch probes a little higher. Requests stay well under the client timeout.
 */
export class AdaptiveConcurrency {
  readonly maxConcurrency: number;
  readonly configuredBatchSize: number;
  #limit: number;
  #batchSize: number;
  #servers: number;
  #streak = 0;
  #clean = 0;
  #probeInterval = 1000;
  /** The servers estimate before the latest probe, while that probe has not been proven safe or unsafe. */
  #beforeProbe: number | undefined;
  #successes = 0;
  #lastThrottleAt: number | undefined;
  #busyShare = 1;
  #perRowEwma: number | undefined;
  #serverEwma: number | undefined;
  #latencyEwma: number | undefined;
  #serverTimeSum = 0;
  #maxLimitSeen: number;
  #tat = 0;
  /** Rows sent before the first measurement; booked on the budget once the cost per row is known. */
  #unbookedRows = 0;
  #firstReserveAt: number | undefined;
  readonly #maxBatch: number;
  readonly #timeoutMs: number;
  readonly #budget: number;
  readonly #headroom: number;
  readonly #now: () => number;

  constructor(options: AdaptiveConcurrencyOptions = {}) {
    this.maxConcurrency = Math.max(1, options.maxConcurrency ?? 32);
    this.configuredBatchSize = Math.max(1, options.batchSize ?? 100);
    this.#maxBatch = Math.max(this.configuredBatchSize, options.maxBatchSize ?? 1000);
    this.#timeoutMs = options.timeoutMs ?? 120_000;
    this.#budget = options.executionBudgetPerSec ?? 4;
    const hint = options.dopHint ?? 4;
    this.#servers = options.servers ?? Math.max(1, hint / this.#budget);
    this.#headroom = options.headroom ?? 0.95;
    this.#now = options.now ?? (() => performance.now());
    this.#limit = Math.min(this.maxConcurrency, Math.max(1, hint));
    this.#maxLimitSeen = this.#limit;
    this.#batchSize = this.configuredBatchSize;
  }

  /** Requests that may be in flight now. */
  get limit(): number {
    return this.#limit;
  }

  /** Rows to put in the next request. */
  get batchSize(): number {
    return this.#batchSize;
  }

  /** Server-seconds per second the writer spends: `headroom · budget · servers`. */
  get executionRate(): number {
    return this.#headroom * this.#budget * this.#servers;
  }

  /**
   * Most lanes worth running: enough to keep the paced rate busy (each lane executes `busyShare` of its time, and
   * some time goes to waiting for its slot), never above the configured cap.
   */
  get ceiling(): number {
    const lanes = Math.ceil((this.executionRate / this.#busyShare) * 1.25) + 1;
    return Math.max(1, Math.min(this.maxConcurrency, lanes));
  }

  /** Web servers the budget is currently estimated for. */
  get servers(): number {
    return this.#servers;
  }

  get maxLimitSeen(): number {
    return this.#maxLimitSeen;
  }

  /** Mean server time per request over the run (the server's own figure when reported, else latency). */
  get meanServerTimeMs(): number | undefined {
    return this.#successes === 0 ? undefined : this.#serverTimeSum / this.#successes;
  }

  /**
   * Books a request of `rows` rows on the execution budget and returns how long to wait before sending it, with
   * the server time it is expected to take (pass both back to `settle`). Before any measurement nothing is paced.
   */
  reserve(rows: number): { waitMs: number; expectedMs: number } {
    if (this.#perRowEwma === undefined) {
      this.#firstReserveAt ??= this.#now();
      this.#unbookedRows += rows;
      return { waitMs: 0, expectedMs: 0 };
    }
    const expectedMs = this.#perRowEwma * rows;
    const interval = expectedMs / this.executionRate;
    const now = this.#now();
    // Two requests' worth of unused budget may be caught up after a stall (the limit is a sliding window, so a
    // short lull leaves room); more, on top of a probe, would push the window over the limit.
    const start = Math.max(this.#tat, now - 2 * interval);
    // Tolerate a small burst (two requests' worth) so lanes starting together are not serialised.
    const waitMs = Math.max(0, start - now - 2 * interval);
    this.#tat = start + interval;
    return { waitMs, expectedMs };
  }

  /** Corrects the booking of a request once its real server time is known. */
  settle(expectedMs: number, actualMs: number): void {
    if (expectedMs === 0) return;
    this.#tat += (actualMs - expectedMs) / this.executionRate;
  }

  /** Records a completed request of `rows` rows. */
  recordSuccess(sample: { rows: number; elapsedMs: number; serverTimeMs?: number | undefined }): void {
    const server = sample.serverTimeMs ?? sample.elapsedMs;
    this.#successes += 1;
    this.#serverTimeSum += server;
    if (sample.rows > 0) {
      const first = this.#perRowEwma === undefined;
      this.#perRowEwma = ewma(this.#perRowEwma, server / sample.rows);
      if (first && this.#unbookedRows > 0) {
        // The first requests went out unpaced; their server time counts against the same window.
        const since = this.#firstReserveAt ?? this.#now();
        this.#tat = Math.max(this.#tat, since) + (this.#unbookedRows * this.#perRowEwma) / this.executionRate;
        this.#unbookedRows = 0;
      }
    }
    this.#serverEwma = ewma(this.#serverEwma, server);
    this.#latencyEwma = ewma(this.#latencyEwma, Math.max(sample.elapsedMs, server));
    if (this.#latencyEwma > 0) this.#busyShare = Math.max(0.05, Math.min(1, this.#serverEwma / this.#latencyEwma));
    // Keep each request well under the client timeout (SQL 4 CDS and PPDS aim for ~10 s requests).
    const target = this.#timeoutMs / 4;
    if (sample.elapsedMs > target && this.#batchSize > 1) {
      this.#batchSize = Math.max(1, Math.floor(this.#batchSize / 2));
    } else if (sample.elapsedMs < target / 4 && this.#batchSize < this.configuredBatchSize) {
      this.#batchSize = Math.min(this.configuredBatchSize, Math.ceil(this.#batchSize * 1.5));
    }
    // Additive increase: one more lane after a clean round at the current level, never past the ceiling.
    this.#streak += 1;
    if (this.#streak >= this.#limit * 2) {
      this.#streak = 0;
      if (this.#limit < this.ceiling) this.#limit += 1;
    }
    // A long clean stretch: the environment may have more servers (or fewer users sharing them) than we think.
    this.#clean += 1;
    if (this.#clean >= this.#probeInterval) {
      this.#clean = 0;
      this.#beforeProbe = this.#servers;
      this.#servers *= 1.03;
    }
    if (this.#limit > this.ceiling) this.#limit = this.ceiling;
    this.#maxLimitSeen = Math.max(this.#maxLimitSeen, this.#limit);
  }

  /**
   * Records a 429 drawn with `inFlight` requests running. Execution-time and concurrency limits say we spend more
   * than the servers give: lower the estimate (once per episode: the lanes already in flight answer 429 together)
   * and probe less often. Request-count limits get fewer, bigger requests.
   */
  recordThrottle(kind: ThrottleKind, inFlight: number): void {
    this.#streak = -this.#limit * 4;
    this.#clean = 0;
    // The lanes in flight answer 429 together, and the window stays full until the excess has left it: 429s that
    // follow within a couple of rounds of the last one belong to the same episode and are not cut again.
    const sameEpisode =
      this.#lastThrottleAt !== undefined && this.#successes - this.#lastThrottleAt < Math.max(4, this.#limit * 2);
    this.#lastThrottleAt = this.#successes;
    if (sameEpisode) return;
    if (kind === 'requests') {
      if (this.#batchSize < this.#maxBatch) this.#batchSize = Math.min(this.#maxBatch, this.#batchSize * 2);
      return;
    }
    if (kind === 'concurrency') {
      this.#limit = Math.max(1, Math.min(this.#limit, Math.floor(inFlight * 0.8)));
      return;
    }
    if (this.#beforeProbe !== undefined) {
      // The probe overdrew the budget: go back just below the level that held, and probe much less often.
      this.#servers = this.#beforeProbe * 0.97;
      this.#probeInterval = Math.min(this.#probeInterval * 4, 1_000_000);
    } else {
      // The limits dropped (or the hint was optimistic): cut well below, then probe back up soon, since a 20% cut
      // may overshoot what is left.
      this.#servers = Math.max(1 / this.#budget, this.#servers * 0.8);
      this.#probeInterval = Math.min(this.#probeInterval, 200);
    }
    this.#beforeProbe = undefined;
    this.#limit = Math.max(1, Math.min(this.#limit, this.ceiling));
  }

  /** Records a request that timed out: halve the batch so the next requests finish in time. */
  recordTimeout(): void {
    this.#batchSize = Math.max(1, Math.floor(this.#batchSize / 2));
  }
}

function ewma(previous: number | undefined, value: number): number {
  return previous === undefined ? value : previous * 0.8 + value * 0.2;
}
