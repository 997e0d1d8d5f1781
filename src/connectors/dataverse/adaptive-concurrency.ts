import { statedExecutionBudget, type ThrottleKind } from './retry-policy.js';

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
   * (reference §4.1: learn.microsoft.com/power-apps/developer/data-platform/api-limits). Replaced by the limit a 429
   * states when it states a lower one.
   */
  readonly executionBudgetPerSec?: number;
  /**
   * Length of the service's sliding window in wall-clock ms. Default `300000` (reference §4.1); shorter against a
   * time-scaled emulator, which says its scale in `x-ferry-time-scale`.
   */
  readonly windowMs?: number;
  /**
   * Web servers the load spreads over (no affinity cookie). Default: `dopHint / executionBudgetPerSec`, at least 1,
   * since the hint reflects the environment's size. Learned from 429s and probes as the run goes.
   */
  readonly servers?: number;
  /**
   * Share of the execution-time budget to spend. Running at 100% lengthens `Retry-After` (PPDS); just below it is
   * sustainable because every request is booked on the window, not guessed. Default `0.95`.
   */
  readonly headroom?: number;
  /**
   * Server time already booked on the same service by this user, shared by the writers of one process (one run's
   * writer follows another's within the same window). Default: a window of this controller's own.
   */
  readonly usage?: ExecutionUsage;
  /** Clock in ms, replaceable for tests. Default `performance.now`. */
  readonly now?: () => number;
}

/** A request's server time on the window: where it ends (`at`, ms) and how long it ran (`ms`). */
export interface Booking {
  at: number;
  ms: number;
}

/**
 * The client's own record of the server time it spent, by completion time: the same sums the service keeps for its
 * sliding window (it books a request's execution time when the request ends). Kept sorted by `at`.
 */
export class ExecutionUsage {
  readonly #bookings: Booking[] = [];
  /**
   * The latest measured server ms per row of any writer on this window: the first guess of a writer that has not
   * measured its own yet, so it does not start unbooked into a window another writer has filled.
   */
  perRowMs: number | undefined;

  /** Books `ms` of server time ending at `at`. */
  book(at: number, ms: number): Booking {
    const booking = { at, ms };
    this.#insert(booking);
    return booking;
  }

  /** Moves a booking to the request's real end and server time. */
  rebook(booking: Booking, at: number, ms: number): void {
    const i = this.#bookings.indexOf(booking);
    if (i >= 0) this.#bookings.splice(i, 1);
    booking.at = at;
    booking.ms = ms;
    this.#insert(booking);
  }

  /**
   * Earliest time from `now` at which a request of `ms` server time can start so that, when it ends, the window
   * ending then holds at most `capacity` (everything booked to end later counts too: it will be in that window).
   */
  earliestStart(now: number, ms: number, capacity: number, windowMs: number): number {
    const bookings = this.#bookings;
    // Bookings that ended before any window we can still reach are gone for good.
    let drop = 0;
    while (drop < bookings.length && bookings[drop]!.at <= now - windowMs) drop += 1;
    if (drop > 0) bookings.splice(0, drop);
    let inWindow = 0;
    let first = bookings.length;
    for (let i = bookings.length - 1; i >= 0 && bookings[i]!.at > now + ms - windowMs; i -= 1) {
      inWindow += bookings[i]!.ms;
      first = i;
    }
    const excess = inWindow + ms - capacity;
    if (excess <= 0) return now;
    // Wait until enough of the oldest bookings have left the window the request would end in.
    let removed = 0;
    for (let i = first; i < bookings.length; i += 1) {
      removed += bookings[i]!.ms;
      if (removed >= excess) return bookings[i]!.at + windowMs - ms;
    }
    // The request alone is over the capacity: send it once the window is empty.
    return Math.max(now, (bookings.at(-1)?.at ?? now) + windowMs - ms);
  }

  #insert(booking: Booking): void {
    let i = this.#bookings.length;
    while (i > 0 && this.#bookings[i - 1]!.at > booking.at) i -= 1;
    this.#bookings.splice(i, 0, booking);
  }
}

const sharedUsage = new Map<string, ExecutionUsage>();

/** The usage record of one service (by URL) in this process, shared by every writer of a user to it. */
export function executionUsageFor(serviceUrl: string): ExecutionUsage {
  let usage = sharedUsage.get(serviceUrl);
  if (!usage) {
    usage = new ExecutionUsage();
    sharedUsage.set(serviceUrl, usage);
  }
  return usage;
}

/**
 * Decides how many requests run at once, how many rows each carries and when each may start, from what the service
 * says and how long requests take. Under the service-protection limits throughput is bounded by the execution-time
 * budget (4 server-seconds per second per web server, over a sliding 300 s window: src/connectors/dataverse/README.md), so the controller
 * books every request's server time on its own copy of that window and starts a request only when, at its end, the
 * window will hold at most `headroom` of the budget of the servers it believes it reaches. This is the service's own
 * rule, so an unused window (the start of a run, or after a lull) is spent at once and a lowered limit is waited out
 * exactly as long as the window needs to drain. Concurrency starts at the `x-ms-dop-hint` and only needs to be high
 * enough to keep that pace. A 429 for execution time that states a lower limit sets the budget to it; one that does not
 * lowers the servers estimate (all lanes pause for `Retry-After` in the client); a long clean stretch probes a little
 * higher. Requests stay well under the client timeout.
 */
export class AdaptiveConcurrency {
  readonly maxConcurrency: number;
  readonly configuredBatchSize: number;
  #limit: number;
  #batchSize: number;
  #servers: number;
  #budget: number;
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
  #serverTimeRows = 0;
  #maxLimitSeen: number;
  readonly #usage: ExecutionUsage;
  readonly #windowMs: number;
  readonly #maxBatch: number;
  readonly #timeoutMs: number;
  readonly #headroom: number;
  readonly #now: () => number;

  constructor(options: AdaptiveConcurrencyOptions = {}) {
    this.maxConcurrency = Math.max(1, options.maxConcurrency ?? 32);
    this.configuredBatchSize = Math.max(1, options.batchSize ?? 100);
    this.#maxBatch = Math.max(this.configuredBatchSize, options.maxBatchSize ?? 1000);
    this.#timeoutMs = options.timeoutMs ?? 120_000;
    this.#budget = options.executionBudgetPerSec ?? 4;
    this.#windowMs = options.windowMs ?? 300_000;
    const hint = options.dopHint ?? 4;
    this.#servers = options.servers ?? Math.max(1, hint / this.#budget);
    this.#headroom = options.headroom ?? 0.95;
    this.#usage = options.usage ?? new ExecutionUsage();
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

  /** Server-ms the writer lets the window hold: `executionRate · window`. */
  get capacityMs(): number {
    return this.executionRate * this.#windowMs;
  }

  /** Server-seconds per second per web server the execution-time limit allows, as last stated by the service. */
  get executionBudgetPerSec(): number {
    return this.#budget;
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

  /** Server time of the successful requests over the run, in ms, and the rows they carried (run metrics, plans). */
  get serverTime(): { readonly totalMs: number; readonly rows: number } {
    return { totalMs: this.#serverTimeSum, rows: this.#serverTimeRows };
  }

  /** Mean server time per request over the run (the server's own figure when reported, else latency). */
  get meanServerTimeMs(): number | undefined {
    return this.#successes === 0 ? undefined : this.#serverTimeSum / this.#successes;
  }

  /**
   * Books a request of `rows` rows on the window and returns how long to wait before sending it, with its booking
   * (pass it to `settle` once the request ends). Before its own measurement a writer expects the cost per row
   * another writer measured on the same window, or 0 when none did: then the first requests go at once and are
   * booked at their real cost when they end.
   */
  reserve(rows: number): { waitMs: number; booking: Booking } {
    const expectedMs = (this.#perRowEwma ?? this.#usage.perRowMs ?? 0) * rows;
    const now = this.#now();
    const start = this.#usage.earliestStart(now, expectedMs, this.capacityMs, this.#windowMs);
    return { waitMs: start - now, booking: this.#usage.book(start + expectedMs, expectedMs) };
  }

  /** Moves a request's booking to its real end (now) and server time. */
  settle(booking: Booking, actualMs: number): void {
    this.#usage.rebook(booking, this.#now(), actualMs);
  }

  /** Records a completed request of `rows` rows. */
  recordSuccess(sample: { rows: number; elapsedMs: number; serverTimeMs?: number | undefined }): void {
    const server = sample.serverTimeMs ?? sample.elapsedMs;
    this.#successes += 1;
    this.#serverTimeSum += server;
    this.#serverTimeRows += sample.rows;
    if (sample.rows > 0) {
      this.#perRowEwma = ewma(this.#perRowEwma, server / sample.rows);
      this.#usage.perRowMs = this.#perRowEwma;
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
   * Records a 429 drawn with `inFlight` requests running, with the service's message and the wait it asked for. An
   * execution-time 429 whose message states a lower limit sets the budget to it. Otherwise an execution-time 429
   * says we spend more than the servers give: lower the estimate by as much as the wait says we overdrew (once per
   * episode: the lanes already in flight answer 429 together). A concurrency 429 cuts lanes; request-count limits
   * get fewer, bigger requests.
   */
  recordThrottle(
    kind: ThrottleKind,
    inFlight: number,
    answer: { message?: string | undefined; retryAfterMs?: number | undefined } = {},
  ): void {
    const { message, retryAfterMs } = answer;
    this.#streak = -this.#limit * 4;
    this.#clean = 0;
    const stated = kind === 'executionTime' ? statedExecutionBudget(message) : undefined;
    if (stated !== undefined && stated < this.#budget * 0.99) {
      // The service says the limit is lower now: take it as is; the window booked so far drains before more is
      // sent. (A stated limit above ours explains nothing: someone else spends the budget, so fall through.)
      this.#budget = stated;
      this.#lastThrottleAt = this.#successes;
      this.#beforeProbe = undefined;
      this.#limit = Math.max(1, Math.min(this.#limit, this.ceiling));
      return;
    }
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
      // We spend more than we get. Retry-After says by how much: it is the time until enough of the window has
      // left it, so an overdraw of x·window waits about x·window. Cut twice that, at most 20%: a hair over (one
      // request too many on one server, Retry-After of a few ms) costs a hair, while the limits dropping (or an
      // optimistic hint) cuts well below, and then the writer probes back up soon, since the cut may overshoot.
      const cut = retryAfterMs === undefined ? 0.2 : Math.min(0.2, (2 * retryAfterMs) / this.#windowMs);
      this.#servers = Math.max(1 / this.#budget, this.#servers * (1 - cut));
      if (cut >= 0.1) this.#probeInterval = Math.min(this.#probeInterval, 200);
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
