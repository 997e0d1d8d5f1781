import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { describe, it } from 'node:test';
import { ceilingFor, PROFILES, serverTimeMs, ThrottleModel } from '../../src/emulator/throttle-model.js';
import { type Harness, startHarness } from './emulator-harness.js';

/** An unsigned JWT with these claims (the emulator reads the claims; it does not check signatures). */
const bearer = (claims: Record<string, unknown>) =>
  `Bearer ${Buffer.from('{"alg":"none"}').toString('base64url')}.${Buffer.from(JSON.stringify(claims)).toString('base64url')}.`;

const upsert = (h: Harness, n: string, headers: Record<string, string> = {}) =>
  h.call('PATCH', `accounts(accountnumber='${n}')`, { name: n }, headers);

describe('throttling model: ceiling', () => {
  it('ceilingFor follows servers · min(E/W·b/t, R/W·b, C·b/t) · timeScale', () => {
    const p = PROFILES.default;
    for (const b of [1, 10, 100, 1000]) {
      const t = (p.baseMs + b * (p.perRecordMs.upsert + p.pluginMsPerRecord)) / 1000;
      const expected =
        p.servers *
        Math.min(
          ((p.maxExecutionSec / p.windowSec) * b) / t,
          (p.maxRequests / p.windowSec) * b,
          (p.maxConcurrent * b) / t,
        );
      assert.ok(Math.abs(ceilingFor('default', { operation: 'upsert', batchSize: b }) - expected) < 1e-9);
    }
    // For single-record requests the request limit (20/s per server) binds; for big batches execution time does.
    const single = ceilingFor('default', { operation: 'upsert', batchSize: 1 });
    assert.ok(Math.abs(single - p.servers * (p.maxRequests / p.windowSec)) < 1e-9);
    const big = ceilingFor('default', { operation: 'upsert', batchSize: 1000 });
    assert.ok(big < (p.servers * (p.maxExecutionSec / p.windowSec) * 1000) / p.perRecordMs.upsert);
  });

  it('profiles and workloads move the ceiling the way the limits say', () => {
    const w = { operation: 'upsert' as const, batchSize: 100 };
    const base = ceilingFor('default', w);
    assert.ok(Math.abs(ceilingFor('trial', w) - base / 2) < 1e-9, 'one server instead of two');
    assert.ok(ceilingFor('heavy-plugins', w) < base / 2, 'plug-in time per record dominates');
    assert.ok(ceilingFor('default', { ...w, bulk: false }) < base, '$batch pays per-operation overhead');
    assert.ok(ceilingFor('default', { ...w, operation: 'create' }) > base, 'create is cheaper than upsert');
    assert.ok(Math.abs(ceilingFor('default', { ...w, timeScale: 60 }) - base * 60) < 1e-6);
    assert.throws(() => ceilingFor('nosuch', w), /Unknown emulator profile `nosuch`/);
  });

  it('server time is t0 + b·c (+ plug-ins, + per-operation overhead outside bulk)', () => {
    const p = PROFILES['heavy-plugins'];
    assert.equal(
      serverTimeMs(p, 'upsert', 10, { bulk: true }),
      p.baseMs + 10 * (p.perRecordMs.upsert + p.pluginMsPerRecord),
    );
    assert.equal(
      serverTimeMs(p, 'create', 10, { bulk: false, operations: 10 }),
      p.baseMs + 10 * (p.perRecordMs.create + p.pluginMsPerRecord + p.nonBulkOverheadMs),
    );
    assert.equal(serverTimeMs(p, 'metadata', 1), p.baseMs);
  });
});

describe('throttling model: `ferry emulator --ceiling`', () => {
  const ferry = (...args: string[]) =>
    spawnSync(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', 'emulator', ...args], { encoding: 'utf8' });

  it('reports the ceiling of a profile and workload, with the limit that binds', () => {
    const out = ferry('--profile', 'heavy-plugins', '--time-scale', '60', '--ceiling', '--json');
    assert.equal(out.status, 0, out.stderr);
    const c = JSON.parse(out.stdout);
    assert.equal(c.recordsPerSec, ceilingFor('heavy-plugins', { operation: 'upsert', batchSize: 100, timeScale: 60 }));
    assert.equal(c.boundBy, 'execution');
    assert.equal(c.serverTimeSec, 22.55);
    const batch = JSON.parse(
      ferry('--profile', 'trial', '--ceiling', '--mode', 'batch', '--batch-size', '10', '--json').stdout,
    );
    assert.deepEqual([batch.recordsPerSec, batch.bulk, batch.serverTimeSec], [40, false, 1]);
  });

  it('refuses a ceiling without a profile, or an unknown operation, naming what to pass', () => {
    const noProfile = ferry('--ceiling');
    assert.equal(noProfile.status, 2);
    assert.match(noProfile.stderr, /add e\.g\. --profile default/);
    const badOperation = ferry('--profile', 'default', '--ceiling', '--operation', 'merge');
    assert.equal(badOperation.status, 2);
    assert.match(badOperation.stderr, /--operation `merge` is not one of create, update, upsert/);
  });
});

describe('throttling model: limits over HTTP', () => {
  it('request limit → 429 0x80072322 with scaled Retry-After; after waiting it, requests pass again', async () => {
    const h = await startHarness({ profile: 'default', timeScale: 600 });
    try {
      h.emulator.throttle!.update({ maxRequests: 3 });
      const first = await upsert(h, 'R-0');
      const cookie = first.headers.get('set-cookie')!.split(';')[0];
      assert.match(cookie, /^ARRAffinity=[0-9a-f]{40}$/);
      const statuses = [first.status];
      let throttled: Awaited<ReturnType<typeof upsert>> | undefined;
      for (let i = 1; i < 5 && !throttled; i++) {
        const r = await upsert(h, `R-${i}`, { Cookie: cookie });
        statuses.push(r.status);
        if (r.status === 429) throttled = r;
      }
      assert.deepEqual(statuses, [204, 204, 204, 429]);
      assert.equal(throttled!.json.error.code, '0x80072322');
      assert.equal(
        throttled!.json.error.message,
        'Number of requests exceeded the limit of 3 over time window of 300 seconds.',
      );
      const retryAfter = Number(throttled!.headers.get('retry-after'));
      assert.ok(retryAfter > 0 && retryAfter <= 300 / 600, `Retry-After ${retryAfter} fits the scaled 0.5 s window`);
      assert.equal(h.emulator.store.count('account'), 3, 'the throttled request wrote nothing');
      await new Promise((r) => setTimeout(r, retryAfter * 1000 + 20));
      assert.equal((await upsert(h, 'R-after', { Cookie: cookie })).status, 204);
      assert.equal(h.emulator.throttle!.stats().throttled.requests, 1);
    } finally {
      await h.close();
    }
  });

  it('execution-time limit → 429 0x80072321 with the documented message; server time is reported', async () => {
    const h = await startHarness({ profile: 'trial', timeScale: 100 });
    try {
      // A single upsert costs t0 + c + the non-bulk overhead (145 ms of service time): 0.3 s is spent by the third.
      h.emulator.throttle!.update({ maxExecutionSec: 0.3 });
      const a = await upsert(h, 'E-1');
      assert.equal(a.status, 204);
      const p = PROFILES.trial;
      const expected = Math.round(((p.baseMs + p.perRecordMs.upsert + p.nonBulkOverheadMs) / 100) * 1000) / 1000;
      assert.equal(Number(a.headers.get('x-ferry-server-time-ms')), expected);
      assert.equal(a.headers.get('x-ms-dop-hint'), String(PROFILES.trial.dopHint));
      const statuses = [a.status];
      let last = a;
      for (let i = 2; i <= 4; i++) {
        last = await upsert(h, `E-${i}`);
        statuses.push(last.status);
      }
      assert.deepEqual(statuses, [204, 204, 204, 429]);
      assert.equal(last.json.error.code, '0x80072321');
      assert.equal(
        last.json.error.message,
        'Combined execution time of incoming requests exceeded limit of 300 milliseconds over time window of 300 seconds. Decrease number of concurrent requests or reduce the duration of requests and try again later.',
      );
    } finally {
      await h.close();
    }
  });

  it('concurrency limit → immediate 429 0x80072326 while requests are held for their server time', async () => {
    const h = await startHarness({ profile: 'trial', timeScale: 1 });
    try {
      h.emulator.throttle!.update({ maxConcurrent: 2, baseMs: 300 });
      const results = await Promise.all([0, 1, 2, 3].map((i) => upsert(h, `C-${i}`)));
      const statuses = results.map((r) => r.status).sort();
      assert.deepEqual(statuses, [204, 204, 429, 429]);
      const throttled = results.find((r) => r.status === 429)!;
      assert.deepEqual(throttled.json.error, {
        code: '0x80072326',
        message: 'Number of concurrent requests exceeded the limit of 2.',
      });
    } finally {
      await h.close();
    }
  });

  it('hammering while throttled lengthens Retry-After', async () => {
    const h = await startHarness({ profile: 'trial', timeScale: 10 });
    try {
      h.emulator.throttle!.update({ maxRequests: 1 });
      assert.equal((await upsert(h, 'H-0')).status, 204);
      const first = await upsert(h, 'H-1');
      const second = await upsert(h, 'H-2');
      const third = await upsert(h, 'H-3');
      const waits = [first, second, third].map((r) => Number(r.headers.get('retry-after')));
      assert.deepEqual([first.status, second.status, third.status], [429, 429, 429]);
      assert.ok(waits[1] > waits[0] && waits[2] > waits[1], `Retry-After grows: ${waits.join(', ')}`);
      assert.equal(h.emulator.throttle!.stats().maxRetryAfterSec, waits[2]);
    } finally {
      await h.close();
    }
  });

  it('limits are per web server: without the cookie requests spread; with it they land on one server', async () => {
    const h = await startHarness({ profile: 'default', timeScale: 1 });
    try {
      h.emulator.throttle!.update({ maxRequests: 2, baseMs: 0 });
      const spread = [];
      for (let i = 0; i < 4; i++) spread.push((await upsert(h, `S-${i}`)).status);
      assert.deepEqual(spread, [204, 204, 204, 204], '2 servers × 2 requests');
      assert.deepEqual(h.emulator.throttle!.stats().perServer, [2, 2]);
      const h2 = await startHarness({ profile: 'default', timeScale: 1 });
      try {
        h2.emulator.throttle!.update({ maxRequests: 2, baseMs: 0 });
        const first = await upsert(h2, 'K-0');
        const cookie = first.headers.get('set-cookie')!.split(';')[0];
        const sticky = [first.status];
        for (let i = 1; i < 4; i++) sticky.push((await upsert(h2, `K-${i}`, { Cookie: cookie })).status);
        assert.deepEqual(sticky, [204, 204, 429, 429]);
      } finally {
        await h2.close();
      }
    } finally {
      await h.close();
    }
  });

  it("limits are per user, the user being the token's oid: a refreshed token is the same user", async () => {
    const h = await startHarness({ profile: 'trial', timeScale: 1 });
    try {
      h.emulator.throttle!.update({ maxRequests: 1, baseMs: 0 });
      assert.equal((await upsert(h, 'U-1', { Authorization: bearer({ oid: 'user-a', iat: 1 }) })).status, 204);
      // Another token (different text) for the same user: same budget, so the limit of 1 request is reached.
      assert.equal((await upsert(h, 'U-2', { Authorization: bearer({ oid: 'user-a', iat: 2 }) })).status, 429);
      assert.equal((await upsert(h, 'U-3', { Authorization: bearer({ oid: 'user-b' }) })).status, 204);
      // An app-only token without oid is counted by its appid.
      assert.equal((await upsert(h, 'U-4', { Authorization: bearer({ appid: 'app-c' }) })).status, 204);
    } finally {
      await h.close();
    }
  });

  it('a header the caller sets freely does not make another user; a token that names no user is refused', async () => {
    const h = await startHarness({ profile: 'trial', timeScale: 1 });
    try {
      h.emulator.throttle!.update({ maxRequests: 1, baseMs: 0 });
      const a = bearer({ oid: 'user-a' });
      assert.equal((await upsert(h, 'H-1', { Authorization: a, CallerObjectId: 'x1' })).status, 204);
      assert.equal((await upsert(h, 'H-2', { Authorization: a, CallerObjectId: 'x2' })).status, 429);
      for (const auth of ['Bearer user-a', bearer({ name: 'no id' }), 'Basic dXNlcjpwdw==']) {
        const r = await upsert(h, 'H-3', { Authorization: auth });
        assert.equal(r.status, 401, auth);
        assert.match(r.headers.get('www-authenticate') ?? '', /^Bearer/);
      }
      const expired = await upsert(h, 'H-4', { Authorization: bearer({ oid: 'user-z', exp: 1 }) });
      assert.equal(expired.status, 401);
      assert.equal(h.emulator.store.count('account'), 1, 'refused requests wrote nothing');
    } finally {
      await h.close();
    }
  });

  it("without the cookie each user's requests alternate over the servers, however users interleave", () => {
    const model = new ThrottleModel(PROFILES.default!, 1);
    const as = (oid: string) => ({ authorization: bearer({ oid }) });
    const servers: Record<string, number[]> = { a: [], b: [] };
    // a, b, a, b …: one turn shared by both users would put every request of `a` on server 0 and of `b` on 1.
    for (const who of ['a', 'b', 'a', 'b', 'a', 'b', 'a', 'b']) servers[who]!.push(model.admit(as(who)).server);
    assert.deepEqual(servers.a, [0, 1, 0, 1]);
    assert.deepEqual(servers.b, [0, 1, 0, 1]);
  });

  it('the model works on an injected clock: the window slides', () => {
    let now = 0;
    const model = new ThrottleModel({ ...PROFILES.trial, maxRequests: 2 }, 1, () => now);
    const headers = {};
    const a = model.admit(headers);
    model.finish(a, 10);
    now = 100_000;
    model.finish(model.admit(headers), 10);
    assert.throws(() => model.admit(headers), /Number of requests exceeded the limit of 2/);
    now = 300_001; // the first request left the 300 s window, and the Retry-After (ends at 300 000) has passed
    assert.doesNotThrow(() => model.admit(headers));
  });
});
