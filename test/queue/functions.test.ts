import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import azureFunctions from '@azure/functions';
import {
  type FunctionServices,
  handleInboundInvocation,
  receivedFromTrigger,
} from '../../functions/src/queue-invocations.js';
import { SqliteStateStore } from '../../src/connectors/state/sqlite-state-store.js';
import { resolveConfig } from '../../src/core/config.js';
import { type RunningEmulator, startEmulator } from '../../src/emulator/server.js';

// The Function's handler with a constructed InvocationContext, as the Functions host would call it for a batch of
// one session (cardinality `many`), against the emulator.
// The package is CommonJS; Node's ESM interop does not see every named export.
const { InvocationContext } = azureFunctions;
const ROOT = path.resolve(import.meta.dirname, '../..');
let dir: string;
let emulator: RunningEmulator;
let services: FunctionServices;

const exampleColumns = JSON.parse(await fs.readFile(path.join(ROOT, 'fixtures/queue/account-change.json'), 'utf8'))
  .columns as Record<string, unknown>;
const account = (no: string, name: string, at: string) => ({
  type: 'ferry.inbound.change',
  key: { account_no: no },
  changedAt: at,
  columns: { ...exampleColumns, account_name: name } as Record<string, unknown>,
});

function context(messageIds: string[], sessionId: string, deliveryCount = 1): InstanceType<typeof InvocationContext> {
  return new InvocationContext({
    invocationId: 'test',
    functionName: 'ferryInbound',
    logHandler: () => undefined,
    triggerMetadata: {
      messageIdArray: messageIds,
      sessionIdArray: messageIds.map(() => sessionId),
      deliveryCountArray: messageIds.map(() => deliveryCount),
      sequenceNumberArray: messageIds.map((_, i) => i + 1),
      enqueuedTimeUtcArray: messageIds.map(() => new Date().toISOString()),
    },
  });
}

async function getAccount(no: string): Promise<Record<string, unknown> | undefined> {
  const res = await fetch(`${emulator.url}/api/data/v9.2/accounts?$filter=accountnumber eq '${no}'`, {
    headers: { Accept: 'application/json', 'OData-Version': '4.0' },
  });
  return ((await res.json()) as { value: Array<Record<string, unknown>> }).value[0];
}

before(async () => {
  dir = await fs.mkdtemp(path.join(os.tmpdir(), 'ferry-functions-'));
  emulator = await startEmulator({ metadataDir: path.join(ROOT, 'fixtures', 'metadata') });
  const config = resolveConfig(
    { state: path.join(dir, 'state'), metadata: path.join(ROOT, 'fixtures', 'metadata'), dataverse: emulator.url },
    {},
  );
  services = {
    config,
    state: SqliteStateStore.openIn(config.state),
    dataverse: { url: emulator.url },
    pipelinesDir: path.join(ROOT, 'pipelines'),
    maxDeliveryCount: 3,
    env: { FERRY_INBOUND_PIPELINE: 'accounts-inbound', FERRY_INBOUND_QUEUE: 'accounts-inbound' },
  };
});

after(async () => {
  services.state.close();
  await emulator.close();
  await fs.rm(dir, { recursive: true, force: true });
});

test('the trigger metadata of a batch becomes the messages the handler sees', () => {
  const got = receivedFromTrigger([{ a: 1 }, { a: 2 }], context(['m1', 'm2'], 'S'));
  assert.deepEqual(
    got.map((m) => [m.messageId, m.sessionId, m.deliveryCount, m.sequenceNumber, m.body]),
    [
      ['m1', 'S', 1, 1, { a: 1 }],
      ['m2', 'S', 1, 2, { a: 2 }],
    ],
  );
  assert.throws(
    () => receivedFromTrigger({ a: 1 }, new InvocationContext({ logHandler: () => undefined })),
    /isSessionsEnabled/,
  );
});

test('the inbound Function applies a session batch; a bad message is recorded and completed, the newest change wins', async () => {
  const batch = [
    account('F-1', 'Function v2', '2026-12-06T10:05:00Z'),
    account('F-1', 'Function v1', '2026-12-06T10:00:00Z'),
    { type: 'ferry.inbound.change', key: { account_no: 'F-1' }, changedAt: 'yesterday', columns: {} },
  ];
  const result = await handleInboundInvocation(batch, context(['a', 'b', 'c'], 'F-1'), services);
  assert.deepEqual(result, { completed: 2, deadLettered: 1 });
  assert.equal((await getAccount('F-1'))?.name, 'Function v2');
  const rejects = services.state.listRejects({ pipeline: 'accounts-inbound' });
  assert.deepEqual(
    rejects.map((r) => r.reason),
    ['message.invalid'],
  );
});

test('a transient failure fails the invocation so the host abandons and the broker redelivers', async () => {
  const change = account('F-2', 'Needs a region', '2026-12-06T11:00:00Z');
  change.columns = { ...change.columns, region_code: 'NOWHERE' };
  await assert.rejects(handleInboundInvocation([change], context(['t1'], 'F-2'), services), /must be retried/);
  // On the last delivery it is recorded as poison instead of failing again.
  const last = await handleInboundInvocation([change], context(['t1'], 'F-2', 3), services);
  assert.deepEqual(last, { completed: 0, deadLettered: 1 });
  assert.ok(services.state.listRejects({ pipeline: 'accounts-inbound', reason: 'message.max_deliveries' }).length);
});
