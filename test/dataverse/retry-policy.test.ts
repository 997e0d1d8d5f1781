import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  AdaptiveConcurrency,
  ExecutionUsage,
  executionUsageFor,
} from '../../src/connectors/dataverse/adaptive-concurrency.js';
import {
  isMissingLookupTarget,
  parseServiceError,
  rejectReasonFor,
} from '../../src/connectors/dataverse/dataverse-errors.js';
import {
  parseRetryAfter,
  RetryPolicy,
  statedExecutionBudget,
  throttleKindOf,
} from '../../src/connectors/dataverse/retry-policy.js';
import { ThrottleGate } from '../../src/connectors/dataverse/throttle-gate.js';

describe('retry policy', () => {
  const policy = new RetryPolicy({
    maxRetries: 3,
    maxThrottleRetries: 5,
    baseDelayMs: 100,
    maxDelayMs: 1000,
    random: () => 0.5,
  });

  it('retries 429 and 502/503/504, never 400/403/404/412', () => {
    assert.equal(policy.classify(429), 'throttled');
    for (const s of [502, 503, 504]) assert.equal(policy.classify(s), 'transient');
    for (const s of [400, 403, 404, 412]) {
      assert.equal(policy.classify(s), 'data');
      assert.equal(policy.shouldRetry(policy.classify(s), 0), false);
    }
    assert.equal(policy.classify(204), 'success');
    assert.equal(policy.shouldRetry('transient', 2), true);
    assert.equal(policy.shouldRetry('transient', 3), false);
    assert.equal(policy.shouldRetry('throttled', 4), true);
    assert.equal(policy.shouldRetry('throttled', 5), false);
  });

  it('treats SQL deadlock codes as transient even inside a 400', () => {
    assert.equal(policy.classify(400, '-2147204784'), 'transient');
  });

  it('backs off exponentially with jitter, capped', () => {
    assert.deepEqual(
      [0, 1, 2, 3, 4, 5].map((a) => policy.backoffMs(a)),
      [75, 150, 300, 600, 750, 750],
    );
    const low = new RetryPolicy({ baseDelayMs: 100, random: () => 0 });
    const high = new RetryPolicy({ baseDelayMs: 100, random: () => 0.999 });
    assert.equal(low.backoffMs(2), 200);
    assert.equal(high.backoffMs(2), 400);
  });

  it('honours Retry-After in seconds or as a date, else 2^n seconds', () => {
    assert.equal(parseRetryAfter('30'), 30_000);
    assert.equal(parseRetryAfter('0.25'), 250);
    assert.equal(parseRetryAfter('Thu, 26 Nov 2026 17:00:10 GMT', Date.parse('Thu, 26 Nov 2026 17:00:00 GMT')), 10_000);
    assert.equal(parseRetryAfter('soon'), undefined);
    assert.equal(policy.throttleDelayMs('2', 0), 2000);
    assert.equal(policy.throttleDelayMs(null, 0), 1000);
    assert.equal(policy.throttleDelayMs(null, 3), 1000);
  });

  it('names the limit behind a 429 from its code', () => {
    assert.equal(throttleKindOf('0x80072322'), 'requests');
    assert.equal(throttleKindOf('0x80072321'), 'executionTime');
    assert.equal(throttleKindOf('0x80072326'), 'concurrency');
    assert.equal(throttleKindOf(''), 'unknown');
  });
});

describe('service errors', () => {
  it('reads the error body and makes a reason code', () => {
    const e = parseServiceError('{"error":{"code":"0x80044331","message":"A validation error occurred."}}');
    assert.deepEqual(e, { code: '0x80044331', message: 'A validation error occurred.' });
    assert.equal(rejectReasonFor(400, e), 'dataverse.0x80044331');
    assert.equal(rejectReasonFor(404, { code: '', message: 'x' }), 'dataverse.http_404');
    assert.equal(parseServiceError('<html>'), undefined);
  });

  it('recognises missing lookup targets (both documented messages)', () => {
    assert.equal(
      isMissingLookupTarget({
        code: '',
        message: 'A record with the specified key values does not exist in account entity',
      }),
      true,
    );
    assert.equal(isMissingLookupTarget({ code: '0x80040217', message: 'account With Id = 0000 Does Not Exist' }), true);
    assert.equal(isMissingLookupTarget({ code: '0x80044331', message: 'A validation error occurred.' }), false);
  });
});

describe('adaptive concurrency', () => {
  it('starts from the dop hint, capped by config', () => {
    assert.equal(new AdaptiveConcurrency({ dopHint: 8, maxConcurrency: 32 }).limit, 8);
    assert.equal(new AdaptiveConcurrency({ dopHint: 50, maxConcurrency: 10 }).limit, 10);
  });

  it('books requests on a sliding window of the execution-time budget and waits only when it is full', () => {
    let now = 0;
    // dop 8 ⇒ 2 servers ⇒ 0.95 · 4 · 2 = 7.6 server-ms per wall-ms, i.e. 7,600 server-ms per 1,000 ms window.
    const c = new AdaptiveConcurrency({ dopHint: 8, maxConcurrency: 64, windowMs: 1000, now: () => now });
    assert.equal(c.capacityMs, 7600);
    const first = c.reserve(100);
    assert.deepEqual([first.waitMs, first.booking.ms], [0, 0], 'nothing is paced before a measurement');
    c.settle(first.booking, 76);
    c.recordSuccess({ rows: 100, elapsedMs: 76, serverTimeMs: 76 });
    // An unused window is spent at once: 99 more requests of 76 server-ms fill it to 7,600 ...
    const waits = Array.from({ length: 100 }, () => c.reserve(100).waitMs);
    assert.deepEqual(waits.slice(0, 99), Array(99).fill(0));
    // ... and the 100th starts when the first request (ended at 0) has left the window it would end in.
    assert.equal(waits[99], 924);
    // Over a long stretch no window holds more than the capacity, and every window is used to it.
    now = 10_000;
    const ends: Array<{ at: number; ms: number }> = [];
    for (let i = 0; i < 2000; i += 1) ends.push(c.reserve(100).booking);
    const fullest = Math.max(
      ...ends.map((e) => ends.filter((o) => o.at > e.at - 1000 && o.at <= e.at).reduce((a, o) => a + o.ms, 0)),
    );
    assert.ok(fullest <= 7600 + 1e-6, `fullest window ${fullest}`);
    const rate = (2000 * 76) / (ends.at(-1)!.at - 10_000 + 1000);
    assert.ok(Math.abs(rate - 7.6) < 0.1, `rate ${rate}`);
  });

  it('moves a booking to the real end and server time of the request', () => {
    const now = 0;
    const c = new AdaptiveConcurrency({ dopHint: 4, windowMs: 1000, headroom: 1, now: () => now });
    c.recordSuccess({ rows: 10, elapsedMs: 40, serverTimeMs: 40 });
    const bookings = Array.from({ length: 100 }, () => c.reserve(10));
    assert.ok(
      bookings.every((b) => b.waitMs === 0),
      '100 × 40 server-ms fill the 4,000 of one server',
    );
    // Two requests the server refused ran for no time: settling them frees their share at once.
    c.settle(bookings[0]!.booking, 0);
    c.settle(bookings[1]!.booking, 0);
    assert.deepEqual(
      [c.reserve(10).waitMs, c.reserve(10).waitMs, c.reserve(10).waitMs],
      [0, 0, 1000],
      'then full again: wait for the oldest real bookings to leave the window',
    );
    const other = new AdaptiveConcurrency({ dopHint: 4, windowMs: 1000, headroom: 1, now: () => now });
    assert.equal(other.reserve(10).waitMs, 0, 'each controller has its own window unless given a shared one');
  });

  it('shares one window between the writers of a process to the same service', () => {
    const now = 0;
    const usage = new ExecutionUsage();
    const a = new AdaptiveConcurrency({ dopHint: 4, windowMs: 1000, headroom: 1, usage, now: () => now });
    const b = new AdaptiveConcurrency({ dopHint: 4, windowMs: 1000, headroom: 1, usage, now: () => now });
    a.recordSuccess({ rows: 10, elapsedMs: 400, serverTimeMs: 400 });
    b.recordSuccess({ rows: 10, elapsedMs: 400, serverTimeMs: 400 });
    for (let i = 0; i < 10; i += 1) assert.equal(a.reserve(10).waitMs, 0);
    assert.equal(b.reserve(10).waitMs, 1000, "the second writer waits for the first one's server time to age out");
    // A writer that has measured nothing yet expects the cost per row measured on the window, not zero.
    const c = new AdaptiveConcurrency({ dopHint: 4, windowMs: 1000, headroom: 1, usage, now: () => now });
    const first = c.reserve(10);
    assert.equal(first.booking.ms, 400);
    assert.ok(first.waitMs > 0);
    assert.equal(executionUsageFor('https://x.example'), executionUsageFor('https://x.example'));
  });

  it('takes the limit an execution-time 429 states, and waits for the window to drain to it', () => {
    let now = 0;
    const c = new AdaptiveConcurrency({ dopHint: 8, maxConcurrency: 64, windowMs: 1000, now: () => now });
    c.recordSuccess({ rows: 100, elapsedMs: 76, serverTimeMs: 76 });
    for (let i = 0; i < 100; i += 1) c.reserve(100);
    now = 76;
    const halved =
      'Combined execution time of incoming requests exceeded limit of 600,000 milliseconds over time window of 300 seconds. Decrease number of concurrent requests or reduce the duration of requests and try again later.';
    c.recordThrottle('executionTime', 8, { message: halved, retryAfterMs: 500 });
    assert.equal(c.executionBudgetPerSec, 2);
    assert.equal(c.servers, 2, 'an explained 429 does not cut the servers estimate');
    assert.equal(c.capacityMs, 3800);
    // 7,600 booked ending at 76: nothing more until they have left the window.
    assert.equal(c.reserve(100).waitMs, 1000 - 76);
    c.recordThrottle('executionTime', 8, { message: halved, retryAfterMs: 500 });
    assert.equal(c.servers, 2);
    assert.equal(statedExecutionBudget(halved), 2);
    assert.equal(
      statedExecutionBudget(
        'Combined execution time of incoming requests exceeded limit of 1,200,000 milliseconds over time window of 300 seconds.',
      ),
      4,
    );
    assert.equal(statedExecutionBudget('Number of concurrent requests exceeded the limit of 52.'), undefined);
    assert.equal(statedExecutionBudget(undefined), undefined);
  });

  it('keeps enough lanes to hold the pace and no more than the cap', () => {
    const c = new AdaptiveConcurrency({ dopHint: 8, maxConcurrency: 64 });
    for (let i = 0; i < 400; i += 1) c.recordSuccess({ rows: 100, elapsedMs: 200, serverTimeMs: 100 });
    // 7.6 busy lanes at a busy share of 0.5 ⇒ 15.2 lanes, plus a quarter for waiting (19), plus one.
    assert.equal(c.ceiling, 20);
    assert.equal(c.limit, 20);
    assert.equal(new AdaptiveConcurrency({ dopHint: 8, maxConcurrency: 6 }).ceiling, 6);
  });

  it('lowers the servers estimate on an execution-time 429, once per episode', () => {
    const c = new AdaptiveConcurrency({ dopHint: 8, maxConcurrency: 64 });
    c.recordSuccess({ rows: 100, elapsedMs: 100, serverTimeMs: 100 });
    c.recordThrottle('executionTime', 8);
    assert.equal(c.servers, 1.6);
    // The other lanes in flight answer 429 too: no further cut.
    c.recordThrottle('executionTime', 8);
    c.recordThrottle('executionTime', 8);
    assert.equal(c.servers, 1.6);
    // A later, separate episode cuts again.
    for (let i = 0; i < 100; i += 1) c.recordSuccess({ rows: 100, elapsedMs: 100, serverTimeMs: 100 });
    c.recordThrottle('executionTime', 8);
    assert.equal(Math.round(c.servers * 100) / 100, 1.28);
  });

  it('cuts the servers estimate by as much as Retry-After says the window was overdrawn', () => {
    const c = new AdaptiveConcurrency({ dopHint: 8, maxConcurrency: 64, windowMs: 1000 });
    c.recordSuccess({ rows: 100, elapsedMs: 100, serverTimeMs: 100 });
    // One request too many on one server: over by a few ms of a 1,000 ms window.
    c.recordThrottle('executionTime', 8, { retryAfterMs: 5 });
    assert.equal(c.servers, 2 * (1 - 0.01));
    // A drop of the limits: a long wait, the full 20% cut.
    for (let i = 0; i < 100; i += 1) c.recordSuccess({ rows: 100, elapsedMs: 100, serverTimeMs: 100 });
    c.recordThrottle('executionTime', 8, { retryAfterMs: 400 });
    assert.equal(Math.round(c.servers * 1000) / 1000, Math.round(2 * 0.99 * 0.8 * 1000) / 1000);
  });

  it('probes a little above after a long clean stretch and steps back when the probe draws a 429', () => {
    const c = new AdaptiveConcurrency({ dopHint: 8, maxConcurrency: 64 });
    for (let i = 0; i < 1000; i += 1) c.recordSuccess({ rows: 100, elapsedMs: 100, serverTimeMs: 100 });
    assert.equal(c.servers, 2 * 1.03);
    c.recordThrottle('executionTime', 10);
    assert.equal(c.servers, 2 * 0.97);
    // The next probe comes four times later.
    for (let i = 0; i < 3999; i += 1) c.recordSuccess({ rows: 100, elapsedMs: 100, serverTimeMs: 100 });
    assert.equal(c.servers, 2 * 0.97);
    c.recordSuccess({ rows: 100, elapsedMs: 100, serverTimeMs: 100 });
    assert.equal(c.servers, 2 * 0.97 * 1.03);
  });

  it('sends fewer, bigger requests when the request-count limit bites', () => {
    const c = new AdaptiveConcurrency({ batchSize: 100 });
    c.recordThrottle('requests', 4);
    assert.equal(c.batchSize, 200);
  });

  it('keeps requests under a quarter of the client timeout', () => {
    const c = new AdaptiveConcurrency({ batchSize: 400, timeoutMs: 10_000 });
    c.recordSuccess({ rows: 400, elapsedMs: 4000 });
    assert.equal(c.batchSize, 200);
    c.recordTimeout();
    assert.equal(c.batchSize, 100);
    c.recordSuccess({ rows: 100, elapsedMs: 100 });
    assert.equal(c.batchSize, 150);
  });
});

describe('throttle gate', () => {
  it('holds every lane for the pause, then lets one request go first and the rest after its answer', async () => {
    const gate = new ThrottleGate();
    gate.pause(30);
    const order: string[] = [];
    const lanes = ['a', 'b', 'c'].map(async (name) => {
      await gate.wait();
      order.push(name);
    });
    await new Promise((r) => setTimeout(r, 60));
    assert.equal(order.length, 1, 'only the first lane went after the pause');
    gate.open();
    await Promise.all(lanes);
    assert.equal(order.length, 3);
  });

  it('never shortens a longer pause', () => {
    let now = 0;
    const gate = new ThrottleGate(() => now);
    gate.pause(1000);
    gate.pause(10);
    now = 500;
    assert.equal(gate.remainingMs(), 500);
  });
});
