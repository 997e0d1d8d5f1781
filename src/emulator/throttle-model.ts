import { createHash } from 'node:crypto';
import { UsageError } from '../core/errors.js';
import { callerOf } from './caller-identity.js';
import { ServiceFault } from './service-fault.js';
import type { WorkKind } from './web-api.js';

/** Operations a write workload may consist of. */
export const WRITE_OPERATIONS = ['create', 'update', 'upsert'] as const;
export type WriteOperationKind = (typeof WRITE_OPERATIONS)[number];

/**
 * Service-protection limits and server-time costs of a simulated environment. Limits are per user, per web server,
 * over a sliding window (reference §4.1); times are service time (before `timeScale`).
 */
export interface ThrottleProfile {
  readonly name: string;
  /** Simulated web servers; requests without the affinity cookie are spread over them. */
  readonly servers: number;
  /** Sliding window length in seconds. Default `300`. */
  readonly windowSec: number;
  /** Requests per user per server per window. Default `6000`. */
  readonly maxRequests: number;
  /** Combined execution seconds per user per server per window. Default `1200`. */
  readonly maxExecutionSec: number;
  /** Concurrent requests per user per server. Default `52`. */
  readonly maxConcurrent: number;
  /** Sent as `x-ms-dop-hint`. */
  readonly dopHint: number;
  /** Fixed server time of every request (`t0`), ms. */
  readonly baseMs: number;
  /** Server time per record by kind of work (`c`), ms. */
  readonly perRecordMs: Readonly<Record<WriteOperationKind | 'delete' | 'read', number>>;
  /** Synchronous plug-in time added per written record, ms. */
  readonly pluginMsPerRecord: number;
  /** Extra time per operation that is not part of a bulk message (single requests, `$batch` parts), ms. */
  readonly nonBulkOverheadMs: number;
  /** Service seconds added to `Retry-After` for each request sent while already throttled ("hammering"). */
  readonly hammerPenaltySec: number;
}

const LIMITS = { windowSec: 300, maxRequests: 6000, maxExecutionSec: 1200, maxConcurrent: 52, hammerPenaltySec: 5 };
const COSTS = {
  baseMs: 50,
  perRecordMs: { create: 60, update: 50, upsert: 75, delete: 30, read: 1 },
  pluginMsPerRecord: 0,
  nonBulkOverheadMs: 20,
};

/**
 * Named profiles. The limits are the documented defaults; the costs are assumptions chosen to match the published
 * benchmark cited in src/emulator/README.md (PPDS; taken here as ~75 ms per created record): `default` is a production
 * environment with two web servers, `trial` has one server, `heavy-plugins` adds 150 ms of synchronous plug-in time
 * per written record.
 */
export const PROFILES: Readonly<Record<string, ThrottleProfile>> = {
  default: { name: 'default', servers: 2, dopHint: 8, ...LIMITS, ...COSTS },
  trial: { name: 'trial', servers: 1, dopHint: 4, ...LIMITS, ...COSTS },
  'heavy-plugins': { name: 'heavy-plugins', servers: 2, dopHint: 8, ...LIMITS, ...COSTS, pluginMsPerRecord: 150 },
};

/** Looks a profile up by name; throws a usage error naming the known ones. */
export function profileNamed(name: string): ThrottleProfile {
  const profile = PROFILES[name];
  if (!profile) {
    throw new UsageError(
      `Unknown emulator profile \`${name}\`; use one of ${Object.keys(PROFILES)
        .map((p) => `\`${p}\``)
        .join(', ')}.`,
    );
  }
  return profile;
}

/** A write workload for {@link ceilingFor}. */
export interface Workload {
  readonly operation: WriteOperationKind;
  /** Records per request. */
  readonly batchSize: number;
  /** Bulk message (`*Multiple`, default) or one operation per record (`$batch` parts / single requests). */
  readonly bulk?: boolean;
  /** Emulator time scale: the result is in records per wall-clock second at this scale. Default `1`. */
  readonly timeScale?: number;
}

/** Service time in ms of one request of `records` records: `t(b) = t0 + b·c`. */
export function serverTimeMs(
  profile: ThrottleProfile,
  kind: WorkKind,
  records: number,
  options: { bulk?: boolean; operations?: number } = {},
): number {
  const writes = kind === 'create' || kind === 'update' || kind === 'upsert' || kind === 'delete';
  const perRecord =
    kind === 'metadata' ? 0 : profile.perRecordMs[kind] + (writes && kind !== 'delete' ? profile.pluginMsPerRecord : 0);
  const overhead = writes && !options.bulk ? (options.operations ?? records) * profile.nonBulkOverheadMs : 0;
  return profile.baseMs + records * perRecord + overhead;
}

/**
 * The best sustainable records/s a profile's limits allow for a workload (src/emulator/README.md, Ceiling), in wall-clock seconds of
 * an emulator running at `workload.timeScale`:
 * `servers · min(E/W · b/t(b), R/W · b, C · b/t(b)) · timeScale` with `t(b) = t0 + b·c` in seconds, `E` the execution
 * seconds, `R` the requests and `C` the concurrent requests allowed per window `W`.
 */
export function ceilingFor(profile: string | ThrottleProfile, workload: Workload): number {
  return ceilingBreakdown(profile, workload).recordsPerSec;
}

/** {@link ceilingFor} with its terms: the server time of one request and the records/s each limit allows. */
export interface CeilingBreakdown {
  readonly profile: string;
  readonly servers: number;
  readonly operation: WriteOperationKind;
  readonly batchSize: number;
  readonly bulk: boolean;
  readonly timeScale: number;
  /** `t(b)` in service seconds. */
  readonly serverTimeSec: number;
  /** Records per wall-clock second each limit allows over all servers, at the time scale. */
  readonly byExecution: number;
  readonly byRequests: number;
  readonly byConcurrency: number;
  /** The lowest of the three: the ceiling. */
  readonly recordsPerSec: number;
  readonly boundBy: ThrottleKind;
}

export function ceilingBreakdown(profile: string | ThrottleProfile, workload: Workload): CeilingBreakdown {
  const p = typeof profile === 'string' ? profileNamed(profile) : profile;
  const b = Math.max(1, workload.batchSize);
  const bulk = workload.bulk ?? true;
  const scale = workload.timeScale ?? 1;
  const t = serverTimeMs(p, workload.operation, b, { bulk, operations: b }) / 1000;
  const perServerAndScale = p.servers * scale;
  const byExecution = (((p.maxExecutionSec / p.windowSec) * b) / t) * perServerAndScale;
  const byRequests = (p.maxRequests / p.windowSec) * b * perServerAndScale;
  const byConcurrency = ((p.maxConcurrent * b) / t) * perServerAndScale;
  const recordsPerSec = Math.min(byExecution, byRequests, byConcurrency);
  const boundBy: ThrottleKind =
    recordsPerSec === byExecution ? 'execution' : recordsPerSec === byRequests ? 'requests' : 'concurrency';
  return {
    profile: p.name,
    servers: p.servers,
    operation: workload.operation,
    batchSize: b,
    bulk,
    timeScale: scale,
    serverTimeSec: t,
    byExecution,
    byRequests,
    byConcurrency,
    recordsPerSec,
    boundBy,
  };
}

/** Which limit a 429 was for. */
export type ThrottleKind = 'requests' | 'execution' | 'concurrency';

/** Counters a benchmark can read. */
export interface ThrottleStats {
  requests: number;
  throttled: Record<ThrottleKind, number>;
  maxRetryAfterSec: number;
  serverTimeMs: number;
  perServer: number[];
}

/** A request let through: which server and user it counts against. */
export interface Admission {
  readonly server: number;
  readonly user: string;
  readonly setCookie?: string;
}

interface Budget {
  inFlight: number;
  requests: number[];
  exec: Array<{ at: number; ms: number }>;
  execSum: number;
  blockedUntil: number;
  /** When the current block began; hammering cannot extend it past two windows from then. */
  blockedSince: number;
  blockedKind: ThrottleKind;
}

const COOKIE = 'ARRAffinity';

/**
 * The service-protection model: per user and web server, a sliding window of request count and execution time and a
 * concurrency limit, each answered with 429, its documented code and message, and `Retry-After`; requests sent while
 * throttled lengthen the wait. Time runs `timeScale` times faster than the service's (60 ⇒ a 300 s window lasts 5 s).
 */
export class ThrottleModel {
  #profile: ThrottleProfile;
  readonly #timeScale: number;
  readonly #now: () => number;
  readonly #budgets = new Map<string, Budget>();
  readonly #cookies: string[];
  /** The next server in turn, per user (see {@link admit}). */
  readonly #nextServer = new Map<string, number>();
  readonly #stats: ThrottleStats;

  constructor(profile: ThrottleProfile, timeScale = 1, now: () => number = () => performance.now()) {
    if (!(timeScale > 0)) throw new UsageError(`Time scale \`${timeScale}\` must be a number above 0, e.g. 60.`);
    this.#profile = profile;
    this.#timeScale = timeScale;
    this.#now = now;
    this.#cookies = Array.from({ length: profile.servers }, (_, i) =>
      createHash('sha1').update(`ferry-emulator-server-${i}`).digest('hex'),
    );
    this.#stats = {
      requests: 0,
      throttled: { requests: 0, execution: 0, concurrency: 0 },
      maxRetryAfterSec: 0,
      serverTimeMs: 0,
      perServer: this.#cookies.map(() => 0),
    };
  }

  /** The active profile. */
  get profile(): ThrottleProfile {
    return this.#profile;
  }

  /** Wall-clock ms per service ms. */
  get timeScale(): number {
    return this.#timeScale;
  }

  /** Changes limits or costs mid-run (the number of servers stays). */
  update(changes: Partial<Omit<ThrottleProfile, 'servers'>>): void {
    this.#profile = { ...this.#profile, ...changes, servers: this.#profile.servers };
  }

  /** A copy of the counters. */
  stats(): ThrottleStats {
    return structuredClone(this.#stats);
  }

  /**
   * Lets a request in or throws the 429 {@link ServiceFault} (or the 401 of a token that names no user). The server is the one named by the `ARRAffinity`
   * cookie, else the next in turn (and the response sets the cookie, as the service does).
   */
  admit(headers: Readonly<Record<string, string>>): Admission {
    const p = this.#profile;
    const now = this.#now();
    const windowMs = (p.windowSec * 1000) / this.#timeScale;
    // Limits are per calling user, identified from the bearer token (never from a header the caller sets freely).
    const user = callerOf(headers).id;
    const cookie = /(?:^|;\s*)ARRAffinity=([0-9a-f]+)/.exec(headers.cookie ?? '')?.[1];
    let server = cookie === undefined ? -1 : this.#cookies.indexOf(cookie);
    let setCookie: string | undefined;
    if (server < 0) {
      // Round-robin per user: every user's requests spread evenly over the servers, whatever other users send in
      // between. One turn shared by all users gave a lone user a perfect spread but several users an uneven one
      // that followed the order their requests happened to interleave in (55/45 for one of four identities over a
      // bench run): an artefact of the emulator, not a property of the service, whose balancing is not documented.
      const turn = this.#nextServer.get(user) ?? 0;
      this.#nextServer.set(user, turn + 1);
      server = turn % p.servers;
      setCookie = `${COOKIE}=${this.#cookies[server]}; Path=/; HttpOnly`;
    }
    const budget = this.#budget(user, server);
    while (budget.requests.length && budget.requests[0] <= now - windowMs) budget.requests.shift();
    while (budget.exec.length && budget.exec[0].at <= now - windowMs) budget.execSum -= budget.exec.shift()!.ms;

    let kind: ThrottleKind | undefined;
    let waitMs = 0;
    if (now < budget.blockedUntil) {
      // Still inside a Retry-After: the client is hammering, which extends the wait (reference §4.1). The growth
      // is bounded (a block lasts two windows at most): published observations show Retry-After lengthening from
      // ~37 s to ~81 s under sustained pressure, not without end.
      budget.blockedUntil = Math.min(
        budget.blockedUntil + (p.hammerPenaltySec * 1000) / this.#timeScale,
        budget.blockedSince + 2 * windowMs,
      );
      kind = budget.blockedKind;
      waitMs = budget.blockedUntil - now;
    } else if (budget.inFlight >= p.maxConcurrent) {
      kind = 'concurrency';
      waitMs = 1000 / this.#timeScale;
    } else if (budget.requests.length >= p.maxRequests) {
      kind = 'requests';
      waitMs = budget.requests[budget.requests.length - p.maxRequests] + windowMs - now;
    } else if (budget.execSum >= p.maxExecutionSec * 1000) {
      kind = 'execution';
      // The wait ends when enough of the oldest execution time has left the window to go below the limit.
      const over = budget.execSum - p.maxExecutionSec * 1000;
      let removed = 0;
      let i = 0;
      while (i < budget.exec.length - 1) {
        removed += budget.exec[i].ms;
        if (removed > over) break;
        i += 1;
      }
      waitMs = budget.exec[i].at + windowMs - now;
    }
    if (kind !== undefined) {
      if (kind !== 'concurrency') {
        if (now >= budget.blockedUntil) budget.blockedSince = now;
        budget.blockedUntil = Math.max(budget.blockedUntil, now + waitMs);
        budget.blockedKind = kind;
      }
      const retryAfterSec = Math.max(0.001, Math.round(waitMs) / 1000);
      this.#stats.throttled[kind] += 1;
      this.#stats.maxRetryAfterSec = Math.max(this.#stats.maxRetryAfterSec, retryAfterSec);
      throw throttleFault(kind, p, retryAfterSec);
    }
    budget.inFlight += 1;
    budget.requests.push(now);
    this.#stats.requests += 1;
    this.#stats.perServer[server] += 1;
    return { server, user, ...(setCookie ? { setCookie } : {}) };
  }

  /** Service time of a finished request, ms (before scaling). */
  serverTimeMs(kind: WorkKind | undefined, records: number, bulk: boolean, operations: number): number {
    return serverTimeMs(this.#profile, kind ?? 'read', kind ? records : 0, { bulk, operations });
  }

  /** Wall-clock ms to hold a response for `serviceMs` of service time. */
  wallMs(serviceMs: number): number {
    return serviceMs / this.#timeScale;
  }

  /** Books the request's execution time and frees its concurrency slot. */
  finish(admission: Admission, serviceMs: number): void {
    const budget = this.#budget(admission.user, admission.server);
    budget.inFlight -= 1;
    budget.exec.push({ at: this.#now(), ms: serviceMs });
    budget.execSum += serviceMs;
    this.#stats.serverTimeMs += serviceMs;
  }

  /** Debug headers like the service's (which say not to steer by them): remaining requests and execution ms. */
  remaining(admission: Admission): Record<string, string> {
    const budget = this.#budget(admission.user, admission.server);
    return {
      'x-ms-ratelimit-burst-remaining-xrm-requests': String(
        Math.max(0, this.#profile.maxRequests - budget.requests.length),
      ),
      'x-ms-ratelimit-time-remaining-xrm-requests': String(
        Math.max(0, Math.round(this.#profile.maxExecutionSec * 1000 - budget.execSum)),
      ),
    };
  }

  #budget(user: string, server: number): Budget {
    const key = `${user}\u0000${server}`;
    let budget = this.#budgets.get(key);
    if (!budget) {
      budget = {
        inFlight: 0,
        requests: [],
        exec: [],
        execSum: 0,
        blockedUntil: 0,
        blockedSince: 0,
        blockedKind: 'requests',
      };
      this.#budgets.set(key, budget);
    }
    return budget;
  }
}

function throttleFault(kind: ThrottleKind, p: ThrottleProfile, retryAfterSec: number): ServiceFault {
  // Retry-After is in wall-clock seconds of the emulator, with fractions when time is scaled (the client accepts
  // delta-seconds with fractions); whole seconds otherwise.
  const retryAfter = String(retryAfterSec);
  const headers = { 'Retry-After': retryAfter };
  if (kind === 'requests') {
    return new ServiceFault(
      429,
      '0x80072322',
      `Number of requests exceeded the limit of ${p.maxRequests} over time window of ${p.windowSec} seconds.`,
      headers,
    );
  }
  if (kind === 'execution') {
    return new ServiceFault(
      429,
      '0x80072321',
      `Combined execution time of incoming requests exceeded limit of ${(p.maxExecutionSec * 1000).toLocaleString('en-US')} milliseconds over time window of ${p.windowSec} seconds. Decrease number of concurrent requests or reduce the duration of requests and try again later.`,
      headers,
    );
  }
  return new ServiceFault(
    429,
    '0x80072326',
    `Number of concurrent requests exceeded the limit of ${p.maxConcurrent}.`,
    headers,
  );
}
