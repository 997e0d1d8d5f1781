/**
 * The listener's kill harness (`npm run test:queue-crash`): `ferry listen accounts-inbound` runs as a separate
 * process against an in-process Dataverse emulator (which survives the kills) while this harness keeps sending
 * change messages (60 accounts × 20 changes, a share of neighbours swapped so older changes arrive late) to the
 * embedded queue. The listener is SIGKILLed at 12 points — named kill points (after the upsert, after the applied
 * versions were saved, in the middle of a request) and at fixed times — and restarted each time; a last run drains
 * the queue. After every kill the emulator's store is compared with the one before: a key whose stored change is
 * older than before counts as out of order. At the end every account must hold its newest change, the queue and its
 * dead-letter queue must be empty. The last line is one JSON object `{killPoints, recovered, lost, outOfOrder}`.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { EmbeddedQueueTransport } from '../../src/connectors/queue/embedded-queue-transport.js';
import type { OutgoingMessage } from '../../src/core/queue-transport.js';
import { startEmulator } from '../../src/emulator/server.js';

const ROOT = path.resolve(import.meta.dirname, '../..');
const MAIN = path.join(ROOT, 'src/cli/main.ts');
const QUEUE = 'crash-accounts';
const ACCOUNTS = 60;
const CHANGES = 20;

/** `FERRY_KILL_AT` values, or a time after the start (ms) at which the harness kills the listener. */
const KILLS: ReadonlyArray<{ readonly point?: string; readonly afterMs?: number }> = [
  { point: 'listen:after-upsert#1' },
  { point: 'listen:after-versions#1' },
  { point: 'mid-request#2' },
  { afterMs: 1500 },
  { point: 'listen:after-upsert#3' },
  { afterMs: 2500 },
  { point: 'listen:after-versions#4' },
  { afterMs: 3500 },
  { point: 'mid-request#5' },
  { afterMs: 2000 },
  { point: 'listen:after-upsert#2' },
  { afterMs: 3000 },
];

const example = JSON.parse(await fs.readFile(path.join(ROOT, 'fixtures/queue/account-change.json'), 'utf8')) as {
  columns: Record<string, unknown>;
};
const nameOf = (no: string, v: number) => `Crash ${no} v${String(v).padStart(2, '0')}`;
const versionOf = (name: unknown) => (typeof name === 'string' ? Number(name.slice(name.lastIndexOf(' v') + 2)) : -1);

function messagesInSendOrder(): OutgoingMessage[] {
  let seed = 7;
  const random = () => {
    seed = (seed * 1103515245 + 12345) % 2147483648;
    return seed / 2147483648;
  };
  const perAccount = Array.from({ length: ACCOUNTS }, () => Array.from({ length: CHANGES }, (_, v) => v));
  for (const versions of perAccount)
    for (let i = 0; i + 1 < versions.length; i++)
      if (random() < 0.1) {
        [versions[i], versions[i + 1]] = [versions[i + 1]!, versions[i]!];
        i += 1;
      }
  const out: OutgoingMessage[] = [];
  for (let v = 0; v < CHANGES; v++)
    for (let a = 0; a < ACCOUNTS; a++) {
      const no = `K-${a}`;
      const version = perAccount[a]![v]!;
      out.push({
        sessionId: no,
        messageId: `${no}-v${version}`,
        body: {
          type: 'ferry.inbound.change',
          key: { account_no: no },
          changedAt: new Date(Date.UTC(2026, 11, 6, 8, version)).toISOString(),
          columns: { ...example.columns, account_name: nameOf(no, version), credit_limit: String(version) },
        },
      });
    }
  return out;
}

const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'ferry-queue-crash-'));
const state = path.join(dir, 'state');
const emulator = await startEmulator({ port: 0, metadataDir: path.join(ROOT, 'fixtures/metadata') });
const queue = EmbeddedQueueTransport.openIn(state, { lockDurationMs: 3000, maxDeliveryCount: 50 });
const pending = messagesInSendOrder();
const total = pending.length;

function snapshot(): Map<string, number> {
  const out = new Map<string, number>();
  for (const r of emulator.store.rows('account'))
    out.set(String(r.attributes.accountnumber), versionOf(r.attributes.name));
  return out;
}

function startListener(killAt: string | undefined, untilIdleSec: number): ChildProcess {
  return spawn(
    process.execPath,
    [
      '--import',
      'tsx',
      MAIN,
      'listen',
      'accounts-inbound',
      '--queue',
      QUEUE,
      '--max-batch',
      '40',
      '--until-idle',
      String(untilIdleSec),
    ],
    {
      cwd: ROOT,
      env: {
        ...process.env,
        FERRY_STATE: state,
        FERRY_LAKE: path.join(dir, 'lake'),
        FERRY_DATAVERSE_URL: emulator.url,
        FERRY_QUEUE_LOCK_MS: '3000',
        FERRY_QUEUE_MAX_DELIVERIES: '50',
        FERRY_LOG_LEVEL: 'error',
        ...(killAt ? { FERRY_KILL_AT: killAt } : {}),
      },
      stdio: ['ignore', 'ignore', 'pipe'],
    },
  );
}

const print = (line: string) => process.stdout.write(`${line}\n`);
let outOfOrder = 0;
let killed = 0;
let before = snapshot();
const sendSome = async (n: number) => {
  const chunk = pending.splice(0, n);
  if (chunk.length) await queue.send(QUEUE, chunk);
};
await sendSome(300);

for (const [i, kill] of KILLS.entries()) {
  const child = startListener(kill.point, 60);
  let stderr = '';
  child.stderr?.on('data', (d) => {
    stderr += d;
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.on('exit', (code, signal) => resolve({ code, signal })),
  );
  const startedAt = Date.now();
  // Messages keep flowing while the listener runs.
  const feeder = setInterval(() => void sendSome(20), 100);
  const deadline = kill.afterMs ?? 20_000;
  const timer = setTimeout(() => child.kill('SIGKILL'), deadline);
  const { code, signal } = await exited;
  clearTimeout(timer);
  clearInterval(feeder);
  const after = snapshot();
  let regressions = 0;
  for (const [key, v] of before) if ((after.get(key) ?? -1) < v) regressions += 1;
  outOfOrder += regressions;
  before = after;
  const how = signal === 'SIGKILL' ? 'killed' : `exited ${code}`;
  if (signal === 'SIGKILL') killed += 1;
  print(
    `kill ${String(i + 1).padStart(2)} ${(kill.point ?? `after ${kill.afterMs} ms`).padEnd(26)} ${how.padEnd(9)} after ${Date.now() - startedAt} ms; queue ${queue.stats(QUEUE).active} waiting; ${regressions} key(s) went back`,
  );
  if (signal !== 'SIGKILL' && stderr) print(stderr.trim().split('\n').slice(-3).join('\n'));
}

await sendSome(pending.length);
// The last run: no kill; it stops once the queue was idle for 8 s (longer than a dead holder's session lock).
const final = startListener(undefined, 8);
let finalErr = '';
final.stderr?.on('data', (d) => {
  finalErr += d;
});
const finalExit = await new Promise<number | null>((resolve) => final.on('exit', (code) => resolve(code)));
const end = snapshot();
for (const [key, v] of before) if ((end.get(key) ?? -1) < v) outOfOrder += 1;
const stats = queue.stats(QUEUE);
let wrong = 0;
for (let a = 0; a < ACCOUNTS; a++) if (end.get(`K-${a}`) !== CHANGES - 1) wrong += 1;
const lost = wrong + stats.active + stats.deadLettered;
print(
  `final run exited ${finalExit}${finalExit !== 0 ? `: ${finalErr.trim().split('\n').slice(-3).join(' ')}` : ''}; ${total} messages sent; queue ${stats.active} waiting, ${stats.deadLettered} dead-lettered; ${ACCOUNTS - wrong} of ${ACCOUNTS} accounts hold their newest change`,
);
for (const d of await queue.peekDeadLetters(QUEUE, 5))
  print(`  dead letter ${d.messageId}: [${d.deadLetterReason}] ${d.deadLetterErrorDescription}`);
await queue.close();
await emulator.close();
await fs.rm(dir, { recursive: true, force: true });
const recovered = lost === 0 && outOfOrder === 0 && finalExit === 0 ? killed : 0;
print(JSON.stringify({ killPoints: killed, recovered, lost, outOfOrder }));
process.exitCode = recovered === killed && killed >= 10 ? 0 : 1;
