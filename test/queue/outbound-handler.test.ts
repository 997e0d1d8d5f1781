import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import fs from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { EmbeddedQueueTransport } from '../../src/connectors/queue/embedded-queue-transport.js';
import { SqliteStateStore } from '../../src/connectors/state/sqlite-state-store.js';
import { silentLogger } from '../../src/core/log.js';
import type { OutgoingMessage } from '../../src/core/queue-transport.js';
import { OutboundChangeHandler, outboundTargetFromEnv } from '../../src/events/outbound-change-handler.js';
import { listenToQueue } from '../../src/events/session-listener.js';

/** Mulberry32: a small seeded PRNG, so the target's failures are random but the same on every run. */
function seeded(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

let dir: string;
let state: SqliteStateStore;
let queue: EmbeddedQueueTransport;
let server: http.Server;
let url: string;
/** What the target applied per record, in the order it applied it. */
const applied = new Map<string, string[]>();
const authSeen = new Set<string>();
const random = seeded(20261206);

before(async () => {
  dir = await fs.mkdtemp(path.join(os.tmpdir(), 'ferry-outbound-'));
  state = SqliteStateStore.openIn(dir);
  queue = EmbeddedQueueTransport.openIn(dir, { lockDurationMs: 10_000, maxDeliveryCount: 20 });
  // A target that fails (503, dropped connection) and answers slowly (past the client timeout) at random, and
  // refuses data it cannot take (400).
  server = http.createServer((req, res) => {
    let text = '';
    req.on('data', (c) => {
      text += c;
    });
    req.on('end', () => {
      authSeen.add(String(req.headers['x-api-key']));
      const change = JSON.parse(text) as { recordId: string; changedAt: string; columns: Record<string, unknown> };
      if (change.columns.invalid) {
        res.writeHead(400, { 'content-type': 'application/json' }).end('{"error":"column invalid is not allowed"}');
        return;
      }
      const roll = random();
      if (roll < 0.15) {
        res.writeHead(503).end();
        return;
      }
      if (roll < 0.2) {
        req.socket.destroy();
        return;
      }
      applied.set(change.recordId, [...(applied.get(change.recordId) ?? []), change.changedAt]);
      // Slow answers (100-400 ms against a 200 ms client timeout): some arrive late, some after the client gave up,
      // which then sends a change the target already applied again (the same change: order is kept).
      if (roll < 0.35) setTimeout(() => res.writeHead(204).end(), 100 + Math.floor(random() * 300));
      else res.writeHead(204).end();
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/changes`;
});

after(async () => {
  await queue.close();
  state.close();
  server.closeAllConnections();
  await new Promise((r) => server.close(r));
  await fs.rm(dir, { recursive: true, force: true });
});

test('changes reach the target per record in order, older ones dropped, failures retried, refusals recorded', async () => {
  const records = Array.from({ length: 12 }, () => randomUUID());
  const messages: OutgoingMessage[] = [];
  const newest = new Map<string, string>();
  for (const [r, id] of records.entries()) {
    // Each record: 4 changes, the third one late (older than the second).
    const minutes = [0, 20, 10, 30];
    for (const m of minutes) {
      const changedAt = new Date(Date.UTC(2026, 11, 6, 10, m + r)).toISOString();
      messages.push({
        sessionId: id,
        body: { type: 'ferry.outbound.change', recordId: id, table: 'account', changedAt, columns: { name: `v${m}` } },
      });
      if (!newest.has(id) || changedAt > newest.get(id)!) newest.set(id, changedAt);
    }
  }
  const refused = randomUUID();
  messages.push({
    sessionId: refused,
    body: {
      type: 'ferry.outbound.change',
      recordId: refused,
      table: 'account',
      changedAt: '2026-12-06T11:00:00Z',
      columns: { invalid: true },
    },
  });
  await queue.send('changes', messages);
  const target = outboundTargetFromEnv({
    FERRY_OUTBOUND_URL: url,
    FERRY_OUTBOUND_AUTH_HEADER: 'x-api-key',
    FERRY_OUTBOUND_AUTH: 'secret-from-key-vault',
  });
  const handler = new OutboundChangeHandler({
    name: 'accounts-to-erp',
    queue: 'changes',
    target: { ...target, timeoutMs: 200, attempts: 2 },
    state,
    log: silentLogger,
    maxDeliveryCount: 20,
    backoffMs: () => 20,
  });
  await listenToQueue({
    transport: queue,
    queue: 'changes',
    handler,
    log: silentLogger,
    pollMs: 100,
    stopWhenIdleMs: 1500,
  });
  handler.close();
  for (const id of records) {
    const seen = applied.get(id) ?? [];
    assert.equal(seen.at(-1), newest.get(id), `record ${id} ends at its newest change`);
    for (let i = 1; i < seen.length; i++)
      assert.ok(seen[i]! >= seen[i - 1]!, `record ${id}: an older change was applied after a newer one: ${seen}`);
  }
  assert.ok(handler.counts.stale >= records.length, 'every late change was dropped as stale');
  assert.ok(handler.counts.abandoned > 0 || handler.counts.attempts > handler.counts.delivered, 'failures happened');
  assert.deepEqual([...authSeen], ['secret-from-key-vault']);
  assert.equal(applied.has(refused), false);
  const dead = await queue.peekDeadLetters('changes', 10);
  assert.deepEqual(
    dead.map((d) => [d.sessionId, d.deadLetterReason]),
    [[refused, 'target.http_400']],
  );
  const [reject] = state.listRejects({
    runId: handler.runId ?? state.listRuns({ pipeline: 'accounts-to-erp' })[0]!.id,
  });
  assert.equal(reject?.reason, 'target.http_400');
  assert.deepEqual(reject?.serviceError, { status: 400, body: '{"error":"column invalid is not allowed"}' });
  assert.equal(
    JSON.stringify(state.listRejects({ pipeline: 'accounts-to-erp' })).includes('secret-from-key-vault'),
    false,
  );
  assert.deepEqual(await queue.peek('changes', 10), []);
});

test('the target settings are checked', () => {
  assert.throws(() => outboundTargetFromEnv({}), /FERRY_OUTBOUND_URL/);
  assert.throws(() => outboundTargetFromEnv({ FERRY_OUTBOUND_URL: 'ftp://x' }), /not an http/);
});
