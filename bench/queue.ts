/**
 * `npm run bench -- queue --messages 20000 --sessions 500 [--rate <msgs/s>|half] [--transport embedded|service-bus]`:
 * change messages for an account pipeline (session = account number, several changes per account, a share of
 * them sent out of order) through a session queue into the throttling Dataverse emulator (profile `default`, time
 * scale 60 as `bench -- write`), applied by the same listener and handler as `ferry listen`. Without `--rate` every
 * message is enqueued first and the figure is how fast the listener drains the queue; with `--rate` a producer
 * sends at that rate while the listener runs, and the latency (enqueue → settled) is what counts. Every message is
 * Like `ferry listen`, a micro-batch takes an equal share of up to `--max-batch` (5000) messages from every held
 * session (at most `--per-session`, 32) and writes **every** change — nothing is collapsed: each account's changes go
 * one per request, in order, gathered with other accounts' into bulk requests (`src/events/chained-writer.ts`).
 * `msgsPerSec` counts messages settled, `rowsPerSec` rows Dataverse accepted (messages minus the late changes dropped
 * as stale); `ratioToCeiling` is messages, `writeRatioToCeiling` rows, both against the ceiling for the pipeline's
 * batch size. The Dataverse emulator runs in a process of its own unless `--emulator in-process`. The emulator's
 * store is then checked key by key.
 * The last line is one JSON object.
 */

import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { DataverseClient } from '../src/connectors/dataverse/dataverse-client.js';
import { SqliteStateStore } from '../src/connectors/state/sqlite-state-store.js';
import { resolveConfig } from '../src/core/config.js';
import { silentLogger } from '../src/core/log.js';
import { definePipeline } from '../src/core/pipeline.js';
import type { OutgoingMessage, QueueTransport } from '../src/core/queue-transport.js';
import { startEmulator } from '../src/emulator/server.js';
import { ceilingFor } from '../src/emulator/throttle-model.js';
import { InboundMessageHandler } from '../src/events/inbound-message-handler.js';
import { openQueueTransport } from '../src/events/open-queue-transport.js';
import { listenToQueue } from '../src/events/session-listener.js';
import { convertToDataverse } from '../src/stages/convert-to-dataverse.js';
import { readParquetDeltas } from '../src/stages/read-parquet-deltas.js';
import { upsertDataverse } from '../src/stages/upsert-dataverse.js';

const pipeline = definePipeline({
  name: 'bench-accounts-queue',
  direction: 'inbound',
  stages: [
    readParquetDeltas({ folder: 'inbound/bench-accounts' }),
    convertToDataverse({
      table: 'account',
      key: ['accountnumber'],
      changeTimestamp: 'modified_at',
      columns: { accountnumber: 'account_no', name: 'account_name', numberofemployees: 'employees' },
    }),
    upsertDataverse({ table: 'account', batchSize: 100, maxConcurrency: 64 }),
  ],
});

export async function runQueueBench(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    options: {
      messages: { type: 'string', default: '20000' },
      sessions: { type: 'string', default: '500' },
      rate: { type: 'string' },
      transport: { type: 'string', default: 'embedded' },
      profile: { type: 'string', default: 'default' },
      'time-scale': { type: 'string', default: '60' },
      'max-batch': { type: 'string', default: '5000' },
      'per-session': { type: 'string', default: '32' },
      late: { type: 'string', default: '0.05' },
      metadata: { type: 'string', default: 'fixtures/metadata' },
      queue: { type: 'string' },
      emulator: { type: 'string', default: 'process' },
      'target-in-flight': { type: 'string' },
    },
    strict: true,
  });
  const messages = Number(values.messages);
  const sessions = Number(values.sessions);
  const timeScale = Number(values['time-scale']);
  const late = Number(values.late);
  if (!(messages > 0 && sessions > 0 && messages >= sessions))
    throw new Error(`--messages \`${values.messages}\` must be at least --sessions \`${values.sessions}\` (> 0).`);
  const ceiling = ceilingFor(values.profile!, { operation: 'upsert', batchSize: 100, timeScale });
  const rate = values.rate === undefined ? undefined : values.rate === 'half' ? ceiling / 2 : Number(values.rate);
  if (rate !== undefined && !(rate > 0))
    throw new Error(`--rate \`${values.rate}\` must be a positive number or \`half\`.`);
  const print = (line: string) => process.stdout.write(`${line}\n`);

  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'ferry-bench-queue-'));
  if (values.emulator !== 'process' && values.emulator !== 'in-process')
    throw new Error(`--emulator \`${values.emulator}\` must be \`process\` or \`in-process\`.`);
  // By default the Dataverse emulator runs in a process of its own (as in the inbound bench): Dataverse is not on
  // the listener's CPU, and on a shared machine the listener's figure should not pay for the service's work.
  const emu =
    values.emulator === 'process'
      ? await spawnEmulator(values.profile!, timeScale, values.metadata!)
      : await inProcessEmulator(values.profile!, timeScale, values.metadata!);
  const config = resolveConfig({ state: path.join(dir, 'state'), metadata: values.metadata!, lake: dir }, {});
  const state = SqliteStateStore.openIn(config.state);
  const env = { ...process.env, FERRY_QUEUE_MAX_DELIVERIES: '10', FERRY_QUEUE_LOCK_MS: '60000' };
  let transport: QueueTransport;
  let maxDeliveryCount: number;
  if (values.transport === 'service-bus' && !process.env.FERRY_SERVICE_BUS_CONNECTION_STRING) {
    await emu.close();
    throw new Error(
      'The queue bench on Service Bus needs a running Service Bus (emulator): start `ferry emulator service-bus` (from the Service Bus emulator module, src/emulator/service-bus) and set FERRY_SERVICE_BUS_CONNECTION_STRING to its connection string (UseDevelopmentEmulator=true), with the queue created session-enabled; or use --transport embedded.',
    );
  }
  try {
    ({ transport, maxDeliveryCount } = await openQueueTransport(values.transport!, config, env));
  } catch (error) {
    await emu.close();
    throw error;
  }
  // A session-enabled queue; on Service Bus name one that exists (`--queue`).
  const queue = values.queue ?? `bench-${randomUUID().slice(0, 8)}`;

  // The changes: per account `perKey` versions, one minute apart; a share `late` of neighbours swapped in send order.
  const perKey = Math.floor(messages / sessions);
  const total = perKey * sessions;
  const newest = new Map<string, string>();
  const order: Array<{ key: string; v: number }> = [];
  const perSession = Array.from({ length: sessions }, () => Array.from({ length: perKey }, (_, v) => v));
  let seed = 42;
  const random = () => {
    seed = (seed * 1103515245 + 12345) % 2147483648;
    return seed / 2147483648;
  };
  for (const versions of perSession)
    for (let i = 0; i + 1 < versions.length; i++)
      if (random() < late) {
        [versions[i], versions[i + 1]] = [versions[i + 1]!, versions[i]!];
        i += 1;
      }
  for (let v = 0; v < perKey; v++)
    for (let s = 0; s < sessions; s++) order.push({ key: `QB${s}`, v: perSession[s]![v]! });
  const nameOf = (key: string, v: number) => `Queue bench ${key} v${v}`;
  for (let s = 0; s < sessions; s++) newest.set(`QB${s}`, nameOf(`QB${s}`, perKey - 1));
  const toMessage = ({ key, v }: { key: string; v: number }): OutgoingMessage => ({
    sessionId: key,
    messageId: `${key}-v${v}`,
    body: {
      type: 'ferry.inbound.change',
      key: { account_no: key },
      changedAt: new Date(Date.UTC(2026, 11, 6, 0, v)).toISOString(),
      columns: { account_name: nameOf(key, v), employees: v },
    },
  });

  const sentAt = new Map<string, number>();
  const latencies: number[] = [];
  const applied = new Map<string, number[]>();
  let settled = 0;
  let lastSettled = 0;
  let staleDropped = 0;
  let deadLettered = 0;
  const done = new AbortController();
  const handler = await InboundMessageHandler.open({
    definition: pipeline,
    config,
    state,
    dataverse: { url: emu.url },
    log: silentLogger,
    queue,
    maxDeliveryCount,
    ...(values['target-in-flight'] ? { targetInFlight: Number(values['target-in-flight']) } : {}),
    onApplied: (rows) => {
      for (const r of rows) {
        const v = Number(r.messageId.slice(r.messageId.lastIndexOf('-v') + 2));
        const key = r.messageId.slice(0, r.messageId.lastIndexOf('-v'));
        applied.set(key, [...(applied.get(key) ?? []), v]);
      }
    },
  });
  const send = async (batch: Array<{ key: string; v: number }>) => {
    const now = performance.now();
    const list = batch.map(toMessage);
    for (const m of list) sentAt.set(m.messageId!, now);
    await transport.send(queue, list);
  };

  print(
    `queue bench: ${total} messages, ${sessions} sessions (${perKey} changes per account, ${Math.round(late * 100)}% swapped), transport ${transport.kind}, profile ${values.profile} × ${timeScale}`,
  );
  print(`ceiling: ${ceiling.toFixed(1)} rows/s (scaled)${rate ? `; producer rate ${rate.toFixed(1)} msgs/s` : ''}`);
  let started = performance.now();
  if (!rate) {
    for (let i = 0; i < order.length; i += 1000) await send(order.slice(i, i + 1000));
    started = performance.now();
  }
  const producer = rate
    ? (async () => {
        const t0 = performance.now();
        let next = 0;
        while (next < order.length) {
          const due = Math.min(order.length, Math.floor(((performance.now() - t0) / 1000) * rate));
          if (due > next) {
            await send(order.slice(next, due));
            next = due;
          }
          await new Promise((r) => setTimeout(r, 20));
        }
      })()
    : Promise.resolve();
  const listener = listenToQueue({
    transport,
    queue,
    handler,
    log: silentLogger,
    maxBatch: Number(values['max-batch']),
    perSession: Number(values['per-session']),
    maxSessions: sessions,
    pollMs: 200,
    signal: done.signal,
    onSettled: (m, o) => {
      if (o.kind === 'abandon') return;
      settled += 1;
      lastSettled = performance.now();
      latencies.push(lastSettled - (sentAt.get(m.messageId) ?? lastSettled));
      if (o.kind === 'dead-letter') deadLettered += 1;
      else if (o.result !== 'upserted') staleDropped += 1;
      if (settled >= total) done.abort();
    },
  });
  const timeout = setTimeout(() => done.abort(), Math.max(600_000, (total / (rate ?? ceiling / 4)) * 4000));
  await producer;
  const summary = await listener;
  clearTimeout(timeout);
  await handler.close();

  // Effects: each applied (key, version) once, in increasing order per key, and the store holds the newest.
  let duplicatedEffects = 0;
  let outOfOrder = 0;
  for (const versions of applied.values()) {
    duplicatedEffects += versions.length - new Set(versions).size;
    for (let i = 1; i < versions.length; i++) if (versions[i]! < versions[i - 1]!) outOfOrder += 1;
  }
  const stored = new Map<string, unknown>();
  for (const [key, name] of await emu.accounts()) stored.set(key, name);
  let lost = total - settled;
  for (const [key, name] of newest) if (stored.get(key) !== name) lost += 1;
  const seconds = ((lastSettled || performance.now()) - started) / 1000;
  const msgsPerSec = settled / seconds;
  const appliedRows = [...applied.values()].reduce((n, v) => n + v.length, 0);
  latencies.sort((a, b) => a - b);
  const p95 = latencies.length ? latencies[Math.min(latencies.length - 1, Math.floor(latencies.length * 0.95))]! : 0;
  print(
    `drained ${settled} of ${total} in ${seconds.toFixed(1)} s: ${msgsPerSec.toFixed(1)} msgs/s = ${(msgsPerSec / ceiling).toFixed(3)} of the ceiling; ${summary.batches} micro-batches (${(summary.messages / Math.max(1, summary.batches)).toFixed(0)} messages each), ${summary.abandoned} abandoned for retry`,
  );
  print(
    `listener time by phase (ms): ${JSON.stringify(Object.fromEntries(Object.entries(summary.timings).map(([k, v]) => [k, Math.round(v)])))}`,
  );
  print(
    `handler time by phase (ms): ${JSON.stringify(Object.fromEntries(Object.entries(handler.timings).map(([k, v]) => [k, Math.round(v)])))}`,
  );
  print(
    `applied ${[...applied.values()].reduce((n, v) => n + v.length, 0)}, stale dropped ${staleDropped}, dead-lettered ${deadLettered}, p95 latency ${p95.toFixed(0)} ms`,
  );
  await transport.close();
  state.close();
  await emu.close();
  await fs.rm(dir, { recursive: true, force: true });
  print(
    JSON.stringify({
      messages: total,
      sessions,
      transport: transport.kind,
      rate: rate ? Math.round(rate * 10) / 10 : null,
      msgsPerSec: Math.round(msgsPerSec * 10) / 10,
      rowsPerSec: Math.round((appliedRows / seconds) * 10) / 10,
      perSession: Number(values['per-session']),
      ceilingRowsPerSec: Math.round(ceiling * 10) / 10,
      ratioToCeiling: Math.round((msgsPerSec / ceiling) * 1000) / 1000,
      writeRatioToCeiling: Math.round((appliedRows / seconds / ceiling) * 1000) / 1000,
      emulator: values.emulator,
      outOfOrder,
      lost,
      duplicatedEffects,
      deadLettered,
      staleDropped,
      p95LatencyMs: Math.round(p95),
    }),
  );
}

interface BenchEmulator {
  readonly url: string;
  /** Account number → name, as stored. */
  accounts(): Promise<Map<string, unknown>>;
  close(): Promise<void>;
}

async function inProcessEmulator(profile: string, timeScale: number, metadata: string): Promise<BenchEmulator> {
  const emu = await startEmulator({ port: 0, metadataDir: metadata, profile, timeScale });
  return {
    url: emu.url,
    accounts: async () =>
      new Map(emu.store.rows('account').map((r) => [String(r.attributes.accountnumber), r.attributes.name])),
    close: () => emu.close(),
  };
}

async function spawnEmulator(profile: string, timeScale: number, metadata: string): Promise<BenchEmulator> {
  const child = spawn(
    process.execPath,
    [
      '--import',
      'tsx',
      path.resolve('src/cli/main.ts'),
      'emulator',
      '--port',
      '0',
      '--profile',
      profile,
      '--time-scale',
      String(timeScale),
      '--metadata',
      path.resolve(metadata),
    ],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  const url = await new Promise<string>((resolve, reject) => {
    let text = '';
    child.stdout!.on('data', (chunk: Buffer) => {
      text += chunk.toString('utf8');
      const m = /listening on (http:\/\/\S+)/.exec(text);
      if (m) resolve(m[1]!);
    });
    child.once('exit', (code) => reject(new Error(`The Dataverse emulator exited with ${code} before listening.`)));
  });
  const client = new DataverseClient({ url, log: silentLogger });
  return {
    url,
    accounts: async () => {
      const out = new Map<string, unknown>();
      let next: string | undefined = 'accounts?$select=accountnumber,name';
      while (next) {
        const page: { value?: Array<Record<string, unknown>>; '@odata.nextLink'?: string } = await client.getJson(next);
        for (const r of page.value ?? []) out.set(String(r.accountnumber), r.name);
        const link = page['@odata.nextLink'];
        next = link ? link.slice(link.indexOf('accounts?')) : undefined;
      }
      return out;
    },
    close: async () => {
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGTERM');
      await exited;
    },
  };
}
