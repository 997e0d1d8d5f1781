import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import type { CommandInput } from '../../src/cli/command.js';
import { COMMANDS, loadCommand } from '../../src/cli/commands/index.js';
import { parseBodies } from '../../src/cli/commands/queue.js';
import { EmbeddedQueueTransport } from '../../src/connectors/queue/embedded-queue-transport.js';
import { resolveConfig } from '../../src/core/config.js';
import { UsageError } from '../../src/core/errors.js';
import { silentLogger } from '../../src/core/log.js';

const ROOT = path.resolve(import.meta.dirname, '../..');
let dir: string;

before(async () => {
  dir = await fs.mkdtemp(path.join(os.tmpdir(), 'ferry-queue-cli-'));
});
after(async () => {
  await fs.rm(dir, { recursive: true, force: true });
});

async function ferry(name: string, positionals: string[], values: CommandInput['values'] = {}) {
  const entry = COMMANDS.find((c) => c.name === name);
  assert.ok(entry, `command ${name} is registered`);
  const command = await loadCommand(entry);
  const lines: string[] = [];
  const code = await command.run({
    values: { transport: 'embedded', ...values },
    positionals,
    config: resolveConfig({ state: path.join(dir, 'state'), lake: path.join(dir, 'lake') }, {}),
    log: silentLogger,
    json: false,
    print: (l) => lines.push(l),
    signal: new AbortController().signal,
    pipelinesDir: path.join(ROOT, 'pipelines'),
  });
  return { code, out: lines.join('\n') };
}

test('queue send checks bodies against the schema, peek shows them, dead-letters lists and resubmits', async () => {
  const example = path.join(ROOT, 'fixtures/queue/account-change.json');
  const sent = await ferry('queue send', ['accounts', example], { session: 'Q-1001' });
  assert.equal(sent.code, 0);
  assert.match(sent.out, /Sent 1 message/);
  const bad = path.join(dir, 'bad.json');
  await fs.writeFile(bad, '{"type":"ferry.inbound.change","key":{},"changedAt":"2026-01-01T00:00:00Z","columns":{}}');
  await assert.rejects(ferry('queue send', ['accounts', bad], { session: 'X' }), (e: unknown) => {
    assert.ok(e instanceof UsageError);
    assert.match(e.message, /--no-check/);
    return true;
  });
  await assert.rejects(ferry('queue send', ['accounts', example], {}), /--session/);
  const peek = await ferry('queue peek', ['accounts'], { max: '10' });
  assert.match(peek.out, /session Q-1001/);
  assert.match(peek.out, /1 message\(s\) waiting/);

  // Dead-letter it by hand, then list and resubmit it by id.
  const queue = EmbeddedQueueTransport.openIn(path.join(dir, 'state'));
  const session = await queue.acceptNextSession('accounts', { maxWaitMs: 1000 });
  const [m] = await session!.receive(1, 500);
  await session!.deadLetter(m!, 'string.too_long', 'too long');
  await session!.close();
  const listed = await ferry('queue dead-letters', ['accounts'], { max: '10' });
  assert.match(listed.out, /\[string\.too_long\] too long/);
  await assert.rejects(
    ferry('queue dead-letters', ['accounts', 'nope'], { resubmit: true }),
    /No dead letter with id `nope`/,
  );
  const resubmitted = await ferry('queue dead-letters', ['accounts', m!.messageId], { resubmit: true });
  assert.match(resubmitted.out, /Resubmitted 1 message/);
  assert.equal((await queue.peek('accounts', 10))[0]?.messageId, m!.messageId);
  await queue.close();
});

test('bodies are read as one object, an array or JSON Lines', () => {
  assert.deepEqual(parseBodies('{"a":1}', 'f'), [{ a: 1 }]);
  assert.deepEqual(parseBodies('[{"a":1},{"a":2}]', 'f'), [{ a: 1 }, { a: 2 }]);
  assert.deepEqual(parseBodies('{"a":1}\n{"a":2}\n', 'f'), [{ a: 1 }, { a: 2 }]);
  assert.throws(() => parseBodies('{"a":1}\nnot json', 'f'), /Line 2 of `f`/);
  assert.throws(() => parseBodies('  ', 'f'), /is empty/);
});

test('the transport and listen options are checked', async () => {
  await assert.rejects(
    ferry('queue peek', ['accounts'], { transport: 'carrier-pigeon' }),
    /`carrier-pigeon` is not known/,
  );
  await assert.rejects(ferry('listen', ['accounts-outbound']), /is outbound/);
  await assert.rejects(ferry('listen', ['accounts-inbound'], { 'max-batch': '0' }), /--max-batch `0`/);
});
