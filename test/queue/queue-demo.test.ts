import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { DEMO_QUEUE, runQueueDemo } from '../../src/cli/queue-demo.js';
import { EmbeddedQueueTransport } from '../../src/connectors/queue/embedded-queue-transport.js';
import { SqliteStateStore } from '../../src/connectors/state/sqlite-state-store.js';
import { resolveConfig } from '../../src/core/config.js';
import { silentLogger } from '../../src/core/log.js';
import { loadPipelines } from '../../src/core/pipeline-loader.js';
import { type RunningEmulator, startEmulator } from '../../src/emulator/server.js';

const ROOT = path.resolve(import.meta.dirname, '../..');
let dir: string;
let emulator: RunningEmulator;

before(async () => {
  dir = await fs.mkdtemp(path.join(os.tmpdir(), 'ferry-queue-demo-'));
  emulator = await startEmulator({ metadataDir: path.join(ROOT, 'fixtures', 'metadata') });
});
after(async () => {
  await emulator.close();
  await fs.rm(dir, { recursive: true, force: true });
});

test('the demo part of the queue says what became of each message, and a second demo finds the changes applied', async () => {
  const config = resolveConfig(
    { state: path.join(dir, 'state'), metadata: path.join(ROOT, 'fixtures', 'metadata') },
    {},
  );
  const state = SqliteStateStore.openIn(config.state);
  const pipelines = await loadPipelines(path.join(ROOT, 'pipelines'));
  const run = () => runQueueDemo({ config, state, dataverse: { url: emulator.url }, pipelines, log: silentLogger });
  try {
    const first = (await run()).join('\n');
    assert.match(first, /new account Q-1001\s+→ upserted/);
    assert.match(first, /Q-1002, newer change \(sent first\)\s+→ upserted/);
    assert.match(first, /Q-1002, older change \(arrives late\)\s+→ skipped: not newer/);
    assert.match(first, /over MaxLength 160\s+→ dead-lettered \[string\.too_long\]/);
    assert.match(first, /malformed message\s+→ dead-lettered \[message\.invalid\]/);
    assert.match(first, /Q-1002 name = "Late Pair Ltd \(newer\)"/);
    const second = (await run()).join('\n');
    assert.match(second, /new account Q-1001\s+→ skipped: not newer/);
    const queue = EmbeddedQueueTransport.openIn(config.state);
    assert.deepEqual(await queue.peek(DEMO_QUEUE, 10), []);
    assert.equal((await queue.peekDeadLetters(DEMO_QUEUE, 10)).length, 4);
    await queue.close();
  } finally {
    state.close();
  }
});
