import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { AdaptiveConcurrency } from '../../src/connectors/dataverse/adaptive-concurrency.js';
import {
  isMissingLookupTarget,
  parseServiceError,
  rejectReasonFor,
} from '../../src/connectors/dataverse/dataverse-errors.js';
import { parseRetryAfter, RetryPolicy, throttleKindOf } from '../../src/connectors/dataverse/retry-policy.js';

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

  it('derives the ceiling from the execution-time budget and stays below it', () => {
    // dop 8 ⇒ 2 servers; all latency is server time ⇒ ceiling = 0.8·4·2 = 6 lanes.
    const c = new AdaptiveConcurrency({ dopHint: 8, maxConcurrency: 32 });
    for (let i = 0; i < 20; i += 1) c.recordSuccess({ rows: 100, elapsedMs: 1000, serverTimeMs: 1000 });
    assert.equal(c.ceiling, 6);
    assert.equal(c.limit, 6);
    // Half of each request is network time: lanes only spend half their time executing ⇒ twice the lanes.
    const d = new AdaptiveConcurrency({ dopHint: 8, maxConcurrency: 32 });
    for (let i = 0; i < 100; i += 1) d.recordSuccess({ rows: 100, elapsedMs: 1000, serverTimeMs: 500 });
    assert.equal(d.ceiling, 12);
    assert.equal(d.limit, 12);
  });

  it('probes above the ceiling after a clean stretch, and a 429 brings it back below the level that drew it', () => {
    const c = new AdaptiveConcurrency({ dopHint: 4, maxConcurrency: 32 });
    for (let i = 0; i < 2000; i += 1) c.recordSuccess({ rows: 100, elapsedMs: 100, serverTimeMs: 100 });
    const probed = c.limit;
    assert.ok(probed > 3, `climbed above the first estimate (${probed})`);
    c.recordThrottle('executionTime', probed);
    assert.equal(c.limit, Math.floor(probed * 0.8));
    assert.ok(c.servers < probed / 4 + 1e-9);
    // The other lanes that were in flight get their 429 too: one episode, one cut.
    c.recordThrottle('executionTime', probed);
    assert.equal(c.limit, Math.floor(probed * 0.8));
  });

  it('cuts below the level that drew a 429 and climbs back slowly', () => {
    const c = new AdaptiveConcurrency({ dopHint: 10, maxConcurrency: 32, servers: 10 });
    c.recordThrottle('executionTime', 10);
    assert.equal(c.limit, 8);
    for (let i = 0; i < 10; i += 1) c.recordSuccess({ rows: 100, elapsedMs: 10, serverTimeMs: 10 });
    assert.equal(c.limit, 8, 'no climb right after a 429');
    for (let i = 0; i < 500; i += 1) c.recordSuccess({ rows: 100, elapsedMs: 10, serverTimeMs: 10 });
    assert.ok(c.limit > 8);
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
