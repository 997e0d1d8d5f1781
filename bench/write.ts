/**
 * `npm run bench -- write --profile default --rows 200000 [--time-scale 60]`: writes the same generated accounts to
 * a fresh, time-scaled emulator twice — with ferry's adaptive bulk writer and with a baseline client configured like
 * Azure Data Factory's defaults (batches of 10 via `$batch`, 10 in parallel, fixed retry) — and prints for each the
 * achieved rows/s against the emulator's ceiling for the profile, the 429s and the longest Retry-After, and the rows
 * lost or written twice (the emulator's store is checked row by row). The last line is one JSON object.
 * Options: `--time-scale` (default 60, or 60 / N with `--identities N`), `--batch-size` (100), `--max-concurrency` (64), `--baseline-rows` (same as
 * `--rows`), `--baseline-max-sec` (300: a throttled baseline stops taking batches then), `--no-baseline`,
 * `--baseline-affinity keep|drop` (keep: the baseline sends the ARR affinity cookie back, as the SDK ADF is built on
 * does by default; drop: it spreads over the servers like ferry), `--change-at 0.5 --change-exec-sec 600` (halve the
 * execution budget half-way and report the figures after it), `--identities N` (default 1: ferry writes through an
 * identity pool of N application users, each with its own emulator token and so its own service-protection budget;
 * the ceiling is N times one identity's).
 */
import { spawn } from 'node:child_process';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { BulkWriter, type WriteRow } from '../src/connectors/dataverse/bulk-writer.js';
import { DataverseClient } from '../src/connectors/dataverse/dataverse-client.js';
import { parseServiceError } from '../src/connectors/dataverse/dataverse-errors.js';
import { createIdentityPool } from '../src/connectors/dataverse/identity-pool.js';
import { buildBatch, parseBatchResponse } from '../src/connectors/dataverse/odata-batch.js';
import { keySegment } from '../src/connectors/dataverse/odata-key.js';
import { parseRetryAfter, throttleKindOf } from '../src/connectors/dataverse/retry-policy.js';
import { type EmulatorOptions, startEmulator } from '../src/emulator/server.js';
import { ceilingFor, profileNamed } from '../src/emulator/throttle-model.js';

/** A mid-run change of limits: at `at` (share of rows written), the execution-time budget becomes `execSec`. */
interface LimitChange {
  readonly at: number;
  readonly execSec: number;
}

interface Figures {
  afterChange?: { rowsPerSec: number; ceiling: number; throttled: number };
  rows: number;
  seconds: number;
  rowsPerSec: number;
  requests: number;
  throttled: number;
  throttledByKind: Record<string, number>;
  maxRetryAfterSec: number;
  rejected: number;
  lost: number;
  duplicated: number;
  /** CPU seconds of the writer's process and of the emulator's during the pass (ferry only). */
  writerCpuSec?: number;
  emulatorCpuSec?: number;
}

/** The bench entry the coordinator wires into `bench/main.ts`. */
export async function runWriteBench(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    options: {
      profile: { type: 'string', default: 'default' },
      rows: { type: 'string', default: '200000' },
      'baseline-rows': { type: 'string' },
      'time-scale': { type: 'string' },
      'batch-size': { type: 'string', default: '100' },
      'max-concurrency': { type: 'string', default: '64' },
      metadata: { type: 'string', default: 'fixtures/metadata' },
      'no-baseline': { type: 'boolean', default: false },
      'baseline-max-sec': { type: 'string', default: '300' },
      'baseline-affinity': { type: 'string', default: 'keep' },
      'change-at': { type: 'string' },
      'change-exec-sec': { type: 'string', default: '600' },
      identities: { type: 'string', default: '1' },
    },
    strict: true,
  });
  const profile = values.profile!;
  const rows = Number(values.rows);
  const baselineRows = Number(values['baseline-rows'] ?? rows);
  const identities = Number(values.identities);
  if (!Number.isInteger(identities) || identities < 1) {
    throw new Error(`--identities \`${values.identities}\` must be a whole number of at least 1.`);
  }
  // N identities have N times the budget; the default scale keeps the wall-clock rows/s of one identity at 60 (the
  // emulator and the writer share this process, and a 2-core machine cannot serve N times that), so the ratio measures
  // how well the writer uses N budgets, not the CPU.
  const timeScale = Number(values['time-scale'] ?? 60 / identities);
  const batchSize = Number(values['batch-size']);
  const maxConcurrency = Number(values['max-concurrency']);
  const metadataDir = values.metadata!;
  const affinity = values['baseline-affinity'];
  if (affinity !== 'keep' && affinity !== 'drop') {
    throw new Error(`--baseline-affinity \`${affinity}\` is not known; use keep (ADF's default) or drop.`);
  }
  const emulatorOptions: EmulatorOptions = { port: 0, metadataDir, profile, timeScale };

  // Limits are per user per server: N application users have N times the budget of one.
  const ceiling = identities * ceilingFor(profile, { operation: 'upsert', batchSize, timeScale });
  print(
    `profile ${profile}, time scale ${timeScale}, ${rows} rows (baseline ${baselineRows}), ${identities} identit${identities === 1 ? 'y' : 'ies'}`,
  );
  print(`ceiling: ${fmt(ceiling)} rows/s (scaled${identities > 1 ? `, ${identities} identities` : ''})`);

  const change: LimitChange | undefined =
    values['change-at'] === undefined
      ? undefined
      : { at: Number(values['change-at']), execSec: Number(values['change-exec-sec']) };
  const ferry = await withEmulator(emulatorOptions, (emu) =>
    runFerry(emu, rows, { batchSize, maxConcurrency, timeScale, change, identities, profile }),
  );
  if (ferry.afterChange) {
    const a = ferry.afterChange;
    print(
      `after the limit change (execution ${change!.execSec} s per window at ${Math.round(change!.at * 100)}% of rows): ${fmt(a.rowsPerSec)} rows/s vs ceiling ${fmt(a.ceiling)} (${(a.rowsPerSec / a.ceiling).toFixed(3)}), ${a.throttled} × 429 after the change`,
    );
  }
  print(
    `ferry:    ${fmt(ferry.rowsPerSec)} rows/s in ${ferry.seconds.toFixed(1)} s, ${ferry.requests} requests, ${ferry.throttled} × 429 ${JSON.stringify(ferry.throttledByKind)}, longest Retry-After ${ferry.maxRetryAfterSec} s, rejected ${ferry.rejected}, lost ${ferry.lost}, duplicated ${ferry.duplicated}`,
  );
  print(`ferry / ceiling: ${(ferry.rowsPerSec / ceiling).toFixed(3)}`);

  let baseline: Figures | undefined;
  if (!values['no-baseline']) {
    baseline = await withEmulator(emulatorOptions, (emu) =>
      runBaseline(emu, baselineRows, timeScale, Number(values['baseline-max-sec']), affinity === 'keep'),
    );
    print(
      `baseline (affinity cookie ${affinity === 'keep' ? 'kept' : 'dropped'}): ${fmt(baseline.rowsPerSec)} rows/s in ${baseline.seconds.toFixed(1)} s, ${baseline.requests} requests, ${baseline.throttled} × 429, longest Retry-After ${baseline.maxRetryAfterSec} s, lost ${baseline.lost}, duplicated ${baseline.duplicated}`,
    );
    print(`ferry / baseline: ${(ferry.rowsPerSec / baseline.rowsPerSec).toFixed(2)}×`);
  }
  const result = {
    profile,
    rows,
    identities,
    timeScale,
    ceilingRowsPerSec: round(ceiling),
    ferryRowsPerSec: round(ferry.rowsPerSec),
    ratioToCeiling: round(ferry.rowsPerSec / ceiling, 3),
    baselineRowsPerSec: baseline ? round(baseline.rowsPerSec) : null,
    speedupVsBaseline: baseline ? round(ferry.rowsPerSec / baseline.rowsPerSec, 2) : null,
    requests: ferry.requests,
    throttled: ferry.throttled,
    throttledShare: ferry.requests > 0 ? round(ferry.throttled / ferry.requests, 4) : 0,
    maxRetryAfterSec: ferry.maxRetryAfterSec,
    lost: ferry.lost,
    duplicated: ferry.duplicated,
    writerCpuSec: round(ferry.writerCpuSec ?? 0),
    emulatorCpuSec: round(ferry.emulatorCpuSec ?? 0),
    loadAverage1m: round(os.loadavg()[0]!, 2),
    ...(baseline ? { baselineAffinityCookie: affinity === 'keep' } : {}),
    ...(ferry.afterChange
      ? {
          afterChange: {
            executionSec: change!.execSec,
            ceilingRowsPerSec: round(ferry.afterChange.ceiling),
            ferryRowsPerSec: round(ferry.afterChange.rowsPerSec),
            ratioToCeiling: round(ferry.afterChange.rowsPerSec / ferry.afterChange.ceiling, 3),
            throttled: ferry.afterChange.throttled,
          },
        }
      : {}),
  };
  process.stdout.write(`${JSON.stringify(result)}\n`);
}

/**
 * The emulator of one pass, running in a child process of its own: the service's CPU is not the writer's, and on a
 * busy machine one process serving both starved each of them in turn (the figure then measured the scheduler).
 * The child verifies the store itself and takes limit changes, over the IPC channel.
 */
interface Emulator {
  readonly url: string;
  /** Lost and duplicated among the first `count` generated rows, checked row by row in the emulator's store. */
  verify(count: number): Promise<{ lost: number; duplicated: number; emulatorCpuSec: number }>;
  /** Changes the execution-time budget mid-run (the `--change-at` case). */
  changeExecutionSec(execSec: number): void;
}

const SELF = fileURLToPath(import.meta.url);
const CHILD_FLAG = '--write-bench-emulator';

async function withEmulator<T>(options: EmulatorOptions, work: (emu: Emulator) => Promise<T>): Promise<T> {
  // BENCH_EMULATOR_NODE_ARGS: extra node flags for the emulator's process, e.g. `--cpu-prof` to profile it.
  const nodeArgs = process.env.BENCH_EMULATOR_NODE_ARGS?.split(' ').filter(Boolean) ?? [];
  const child = spawn(process.execPath, [...nodeArgs, '--import', 'tsx', SELF, CHILD_FLAG, JSON.stringify(options)], {
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  const answers: Array<(message: ChildMessage) => void> = [];
  const exited = new Promise<never>((_, reject) =>
    child.once('exit', (code, signal) => reject(new Error(`the emulator child exited with ${code ?? signal}`))),
  );
  exited.catch(() => undefined);
  const ready = new Promise<string>((resolve) => {
    child.on('message', (message: ChildMessage) => {
      if (message.type === 'ready') resolve(message.url);
      else answers.shift()?.(message);
    });
  });
  const ask = (message: object) =>
    Promise.race([
      new Promise<ChildMessage>((resolve) => {
        answers.push(resolve);
        child.send(message);
      }),
      exited,
    ]);
  try {
    const url = await Promise.race([ready, exited]);
    return await work({
      url,
      verify: async (count) => {
        const m = (await ask({ type: 'verify', count })) as Extract<ChildMessage, { type: 'verified' }>;
        return { lost: m.lost, duplicated: m.duplicated, emulatorCpuSec: m.cpuSec };
      },
      changeExecutionSec: (execSec) => child.send({ type: 'change', execSec }),
    });
  } finally {
    if (child.exitCode === null) {
      child.send({ type: 'close' });
      await exited.catch(() => undefined);
    }
  }
}

type ChildMessage =
  | { type: 'ready'; url: string }
  | { type: 'verified'; lost: number; duplicated: number; cpuSec: number };

/** The child: an emulator with these options until told to close. */
async function emulatorChild(options: EmulatorOptions): Promise<void> {
  const emu = await startEmulator(options);
  const send = (m: ChildMessage) => process.send!(m);
  process.on('message', (message: { type: string; count?: number; execSec?: number }) => {
    if (message.type === 'verify') {
      const check = verify(emu.store.rows('account'), accountRows(message.count!));
      const cpu = process.cpuUsage();
      send({ type: 'verified', ...check, cpuSec: (cpu.user + cpu.system) / 1e6 });
    } else if (message.type === 'change') {
      emu.throttle?.update({ maxExecutionSec: message.execSec! });
    } else if (message.type === 'close') {
      void emu.close().then(() => process.exit(0));
    }
  });
  send({ type: 'ready', url: emu.url });
}

function accountRows(n: number): WriteRow[] {
  return Array.from({ length: n }, (_, i) => ({
    rowId: i + 1,
    key: `accountnumber=W${i}`,
    keyPredicate: `accountnumber='W${i}'`,
    keySafe: true,
    payload: JSON.stringify({ name: `Bench account ${i}`, numberofemployees: i % 5000, creditonhold: i % 3 === 0 }),
  }));
}

async function runFerry(
  emu: Emulator,
  n: number,
  options: {
    batchSize: number;
    maxConcurrency: number;
    timeScale: number;
    change: LimitChange | undefined;
    identities: number;
    profile: string;
  },
): Promise<Figures> {
  const rows = accountRows(n);
  // One identity: no token (the emulator's anonymous user), as before. A pool: each application user its own token.
  const clients =
    options.identities === 1
      ? [new DataverseClient({ url: emu.url, timeoutMs: 120_000 })]
      : createIdentityPool(
          emu.url,
          Array.from({ length: options.identities }, (_, i) => ({ name: `bench-loader-${i + 1}` })),
        ).map(
          (identity) =>
            new DataverseClient({
              url: emu.url,
              timeoutMs: 120_000,
              identity: identity.name,
              ...(identity.getToken ? { getToken: identity.getToken } : {}),
            }),
        );
  const client = clients[0]!;
  const sum = (pick: (c: DataverseClient) => number) => clients.reduce((a, c) => a + pick(c), 0);
  let rejected = 0;
  let written = 0;
  let changedAt: { ms: number; rows: number; throttled: number } | undefined;
  const throttledNow = () => sum((c) => Object.values(c.stats.throttled).reduce((a, b) => a + b, 0));
  const writer = new BulkWriter({
    client,
    ...(clients.length > 1 ? { identities: clients } : {}),
    table: { logicalName: 'account', entitySet: 'accounts', primaryId: 'accountid' },
    mode: 'upsert-multiple',
    batchSize: options.batchSize,
    maxConcurrency: options.maxConcurrency,
    onRejected: (r) => {
      rejected += r.length;
    },
    onUpserted: (r) => {
      written += r.length;
      if (options.change && !changedAt && written >= n * options.change.at) {
        emu.changeExecutionSec(options.change.execSec);
        changedAt = { ms: performance.now(), rows: written, throttled: throttledNow() };
      }
    },
  });
  const cpuBefore = process.cpuUsage();
  const started = performance.now();
  const result = await writer.write(
    (async function* () {
      for (let i = 0; i < rows.length; i += 2048) yield rows.slice(i, i + 2048);
    })(),
  );
  const ended = performance.now();
  const cpu = process.cpuUsage(cpuBefore);
  const seconds = (ended - started) / 1000;
  const check = await emu.verify(n);
  const byKind: Record<string, number> = {};
  for (const c of clients) for (const [k, v] of Object.entries(c.stats.throttled)) byKind[k] = (byKind[k] ?? 0) + v;
  let afterChange: Figures['afterChange'];
  if (changedAt) {
    const ceiling =
      options.identities *
      ceilingFor(
        { ...profileNamed(options.profile), maxExecutionSec: options.change!.execSec },
        {
          operation: 'upsert',
          batchSize: options.batchSize,
          timeScale: options.timeScale,
        },
      );
    afterChange = {
      rowsPerSec: (written - changedAt.rows) / ((ended - changedAt.ms) / 1000),
      ceiling,
      throttled: throttledNow() - changedAt.throttled,
    };
  }
  return {
    ...(afterChange ? { afterChange } : {}),
    rows: n,
    seconds,
    rowsPerSec: result.upserted / seconds,
    requests: sum((c) => c.stats.requests),
    throttled: Object.values(byKind).reduce((a, b) => a + b, 0),
    throttledByKind: byKind,
    maxRetryAfterSec: Math.max(...clients.map((c) => c.stats.maxRetryAfterSec)),
    rejected,
    lost: check.lost,
    duplicated: check.duplicated,
    writerCpuSec: (cpu.user + cpu.system) / 1e6,
    emulatorCpuSec: check.emulatorCpuSec,
  };
}

/**
 * A client set up like ADF's Dataverse sink defaults: `writeBatchSize` 10 (one `$batch` of 10 upserts, continue on
 * error like ExecuteMultiple), 10 parallel copies, and a fixed retry wait (`sinkRetryWait`-style, here 10 s of
 * service time, i.e. divided by the time scale) that ignores Retry-After and never slows down. With `keepAffinity`
 * its lanes share one cookie jar and send the `ARRAffinity` cookie back, so they settle on one web server: ADF's
 * connector is built on the XRM tooling (`CrmServiceClient`), whose `EnableAffinityCookie` defaults to true.
 */
async function runBaseline(
  emu: Emulator,
  n: number,
  timeScale: number,
  maxSec: number,
  keepAffinity: boolean,
): Promise<Figures> {
  const rows = accountRows(n);
  // Under heavy throttling the baseline can take very long; after `maxSec` its lanes stop taking new batches and
  // the figures cover the batches it started (lost/duplicated are checked for those rows only).
  const deadline = performance.now() + maxSec * 1000;
  const apiPath = '/api/data/v9.2/';
  const fixedWaitMs = 10_000 / timeScale;
  const batches: WriteRow[][] = [];
  for (let i = 0; i < rows.length; i += 10) batches.push(rows.slice(i, i + 10));
  let next = 0;
  let affinityCookie: string | undefined;
  const figures = { requests: 0, throttled: 0, maxRetryAfterSec: 0, rejected: 0, byKind: {} as Record<string, number> };
  const lane = async () => {
    for (;;) {
      if (performance.now() > deadline) return;
      const batch = batches[next++];
      if (!batch) return;
      const built = buildBatch(
        batch.map((r) => ({ method: 'PATCH' as const, url: keySegment('accounts', r.keyPredicate), body: r.payload })),
        { apiPath },
      );
      for (let attempt = 0; attempt < 60; attempt += 1) {
        figures.requests += 1;
        let response: Response;
        try {
          response = await fetch(`${emu.url}${apiPath}$batch`, {
            method: 'POST',
            headers: {
              'Content-Type': built.contentType,
              Prefer: 'odata.continue-on-error',
              'OData-Version': '4.0',
              Accept: 'application/json',
              ...(affinityCookie ? { Cookie: affinityCookie } : {}),
            },
            body: built.body,
          });
          const setCookie = response.headers.get('set-cookie');
          if (keepAffinity && setCookie) affinityCookie = setCookie.split(';')[0];
        } catch {
          await sleep(fixedWaitMs);
          continue;
        }
        const text = await response.text();
        if (response.status === 429 || response.status >= 500) {
          if (response.status === 429) {
            figures.throttled += 1;
            const kind = throttleKindOf(parseServiceError(text)?.code);
            figures.byKind[kind] = (figures.byKind[kind] ?? 0) + 1;
            const ra = parseRetryAfter(response.headers.get('retry-after'));
            if (ra !== undefined) figures.maxRetryAfterSec = Math.max(figures.maxRetryAfterSec, ra / 1000);
          }
          await sleep(fixedWaitMs);
          continue;
        }
        const parts = parseBatchResponse(response.headers.get('content-type') ?? '', text);
        figures.rejected += parts.filter((p) => p.status >= 400).length;
        break;
      }
    }
  };
  const started = performance.now();
  await Promise.all(Array.from({ length: 10 }, lane));
  const seconds = (performance.now() - started) / 1000;
  const attempted = rows.slice(0, Math.min(next, batches.length) * 10);
  const check = await emu.verify(attempted.length);
  return {
    rows: attempted.length,
    seconds,
    rowsPerSec: (attempted.length - check.lost) / seconds,
    requests: figures.requests,
    throttled: figures.throttled,
    throttledByKind: figures.byKind,
    maxRetryAfterSec: figures.maxRetryAfterSec,
    rejected: figures.rejected,
    lost: check.lost,
    duplicated: check.duplicated,
  };
}

/** Row-by-row check of the store: each generated key exactly once, with the values sent. */
function verify(
  stored: ReadonlyArray<{ attributes: Readonly<Record<string, unknown>> }>,
  rows: readonly WriteRow[],
): { lost: number; duplicated: number } {
  const seen = new Map<string, Array<Readonly<Record<string, unknown>>>>();
  for (const r of stored) {
    const key = String(r.attributes.accountnumber);
    const list = seen.get(key);
    if (list) list.push(r.attributes);
    else seen.set(key, [r.attributes]);
  }
  let lost = 0;
  let duplicated = 0;
  for (const row of rows) {
    const number = row.key.slice('accountnumber='.length);
    const list = seen.get(number) ?? [];
    const expected = JSON.parse(row.payload) as Record<string, unknown>;
    if (list.length === 0 || list[0]!.name !== expected.name) lost += 1;
    if (list.length > 1) duplicated += list.length - 1;
  }
  return { lost, duplicated };
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

function round(n: number, digits = 1): number {
  const f = 10 ** digits;
  return Math.round(n * f) / f;
}

function fmt(n: number): string {
  return n.toFixed(1);
}

function print(line: string): void {
  process.stdout.write(`${line}\n`);
}

if (process.argv[2] === CHILD_FLAG && path.resolve(process.argv[1] ?? '') === SELF) {
  await emulatorChild(JSON.parse(process.argv[3]!) as EmulatorOptions);
}
