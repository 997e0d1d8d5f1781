import { randomUUID } from 'node:crypto';
import { FerryError } from '../../core/errors.js';
import { killPoint } from '../../core/kill-points.js';
import type { Logger } from '../../core/log.js';
import type { RejectRecord } from '../../core/rejects.js';
import {
  AdaptiveConcurrency,
  type AdaptiveConcurrencyOptions,
  type Booking,
  executionUsageFor,
} from './adaptive-concurrency.js';
import type { ClientStats, DataverseClient, DataverseResponse } from './dataverse-client.js';
import { isMissingLookupTarget, parseServiceError, rejectReasonFor, type ServiceError } from './dataverse-errors.js';
import type { BatchOperation, BatchResponsePart } from './odata-batch.js';
import { keyFilter, keyIdentity, keySegment, parseKeyPredicate } from './odata-key.js';
import { sleep } from './throttle-gate.js';

/** One row to write, as the `converted` staging table holds it (src/core/staging-contract.ts). */
export interface WriteRow {
  readonly rowId: number | bigint;
  /** Readable business key, e.g. `accountnumber=A'1`. */
  readonly key: string;
  /** OData key predicate, quotes doubled: `accountnumber='A''1'`. */
  readonly keyPredicate: string;
  /** False when a key value cannot go into a URL: the row is found by `$filter` and written by GUID. */
  readonly keySafe: boolean;
  /** JSON object text: attributes and `nav@odata.bind` entries, without `@odata.type`/`@odata.id`. */
  readonly payload: string;
  readonly sourceFile?: string | null;
  readonly rowNumber?: number | null;
}

/** The table the writer targets, from its metadata snapshot. */
export interface WriterTable {
  readonly logicalName: string;
  readonly entitySet: string;
  readonly primaryId: string;
  /** `SupportsBulk: false` in the snapshot: skip the probe and use `$batch`. */
  readonly supportsBulk?: boolean;
}

export const WRITE_MODES = ['upsert-multiple', 'batch', 'auto'] as const;
export type WriteMode = (typeof WRITE_MODES)[number];

export interface BulkWriterOptions {
  readonly client: DataverseClient;
  /**
   * An identity pool: one client per application user (each its own Dataverse user with its own credential), all
   * for the same environment as `client`. Service-protection limits are per user per web server, so each identity
   * gets its own adaptive controller and budget: chunks go to the identity with the most room, a 429 pauses only
   * the identity it was for, and a key is never in flight through two identities at once. Default: `[client]`.
   */
  readonly identities?: readonly DataverseClient[];
  readonly table: WriterTable;
  /** `auto` probes bulk support per table (TV8) and falls back to `$batch`. Default `auto`. */
  readonly mode?: WriteMode;
  /** Rows per request. Default `100`. */
  readonly batchSize?: number;
  /** Cap on parallel requests. Default `32` (the service's `x-ms-dop-hint` usually decides first). */
  readonly maxConcurrency?: number;
  /** Client timeout per request, used to keep batches small enough. Default `120000` ms. */
  readonly timeoutMs?: number;
  /** Tuning of the adaptive controller (servers, headroom, budget). */
  readonly adaptive?: Omit<AdaptiveConcurrencyOptions, 'maxConcurrency' | 'batchSize' | 'timeoutMs' | 'dopHint'>;
  /** Stage name written into rejects. Default `upsert-dataverse`. */
  readonly stage?: string;
  readonly signal?: AbortSignal;
  readonly log?: Logger;
  /** Called with rows Dataverse accepted (each row once). */
  readonly onUpserted?: (rows: readonly WriteRow[]) => void;
  /** Called with rows that end rejected (each row once). */
  readonly onRejected?: (rejects: readonly RejectRecord[]) => void;
}

/** What a write did. */
export interface WriteResult {
  readonly upserted: number;
  readonly rejected: number;
  readonly mode: 'upsert-multiple' | 'batch';
  readonly deferredRounds: number;
  readonly metrics: Record<string, unknown>;
}

/** One identity of the pool: its client, its own adaptive controller and its requests in flight. */
interface Lane {
  readonly name: string;
  readonly client: DataverseClient;
  controller: AdaptiveConcurrency;
  inFlight: number;
}

interface PendingRow {
  readonly row: WriteRow;
  readonly identity: string;
  /** Requeues after a part-level 429/5xx inside a `$batch`. */
  tries: number;
  /** Caller-chosen GUID for creating an unsafe-key row, fixed before the first try so a retry cannot duplicate. */
  newId?: string;
  /** Why the row was last deferred (kept for its reject if the target never appears). */
  lastError?: unknown;
  lastPayload?: unknown;
  /**
   * Set when a new record could not be created in a non-default state (statecode is not valid for create, so the
   * service checks statuscode against the default state and refuses): `create` while the row is written without its
   * state columns, `state` while only statecode/statuscode are sent as an update. `original` is the row as converted.
   */
  stateStep?: 'create' | 'state';
  original?: WriteRow;
}

/** Dataverse: "<statuscode> is not a valid status code for state code <statecode>". */
const STATUS_NOT_VALID_FOR_STATE = '0x80040203';
const STATE_COLUMNS = ['statecode', 'statuscode'] as const;

type RowOutcome =
  | { readonly kind: 'ok' }
  | { readonly kind: 'defer'; readonly error: ServiceError; readonly status: number; readonly requestPayload: unknown }
  | {
      readonly kind: 'reject';
      readonly reason: string;
      readonly message: string;
      readonly status: number;
      readonly error: unknown;
      readonly requestPayload: unknown;
    }
  | { readonly kind: 'again' };

const MAX_PART_TRIES = 5;

/**
 * Writes rows to one Dataverse table by alternate key: `UpsertMultiple` requests (or `$batch` PATCH upserts for
 * tables without bulk support), adaptive concurrency, isolation of bad rows, deferred lookups. Every row ends
 * upserted or rejected.
 *
 * Only upserts by key are sent, never plain creates: an upsert that timed out after the server applied it is
 * simply applied again on retry, so retries cannot duplicate rows. Rows whose key cannot go into a URL are looked
 * up by `$filter` and then written with PATCH by GUID; a missing row gets a caller-chosen GUID, so a repeated
 * create lands on the same id (and a rerun finds it by `$filter` first).
 */
export class BulkWriter {
  readonly #client: DataverseClient;
  readonly #table: WriterTable;
  /** The opening of every UpsertMultiple target: `{"@odata.type":"Microsoft.Dynamics.CRM.<table>",`. */
  readonly #targetType: string;
  readonly #options: BulkWriterOptions;
  readonly #stage: string;
  #lanes: Lane[] = [];
  #mode: 'upsert-multiple' | 'batch' = 'upsert-multiple';
  /** Keys in flight through any identity: a key travels in one request at a time. */
  #inFlightKeys = new Set<string>();
  #deferred: PendingRow[] = [];
  #stateSplits = 0;
  #upserted = 0;
  #rejected = 0;
  #progressThisRound = 0;
  #bulkFailures = 0;
  #batchReplays = 0;

  constructor(options: BulkWriterOptions) {
    this.#client = options.client;
    if (options.identities && options.identities.length === 0) {
      throw new FerryError(
        'dataverse.identities',
        'The identity pool is empty; give at least one identity or leave `identities` out.',
      );
    }
    const urls = new Set((options.identities ?? [options.client]).map((c) => c.url));
    if (urls.size > 1 || !urls.has(options.client.url)) {
      throw new FerryError(
        'dataverse.identities',
        `The identities of one writer must all reach \`${options.client.url}\`; got ${[...urls].map((u) => `\`${u}\``).join(', ')}.`,
      );
    }
    this.#table = options.table;
    this.#targetType = `{"@odata.type":${JSON.stringify(`Microsoft.Dynamics.CRM.${options.table.logicalName}`)},`;
    this.#options = options;
    this.#stage = options.stage ?? 'upsert-dataverse';
  }

  /** Writes every row from `source` (chunks of rows), then retries deferred lookups while that makes progress. */
  async write(source: AsyncIterable<readonly WriteRow[]>): Promise<WriteResult> {
    const started = performance.now();
    this.#mode = await this.#resolveMode();
    const { dopHint, timeScale } = await this.#client.whoAmI().catch((error: unknown) => {
      this.#options.log?.warn('WhoAmI failed; starting from 4 parallel requests', {
        error: error instanceof Error ? error.message : String(error),
      });
      return { dopHint: undefined, timeScale: undefined };
    });
    const clients = this.#options.identities ?? [this.#client];
    const service = `${this.#client.url}${timeScale ? `#${timeScale}` : ''}`;
    this.#lanes = clients.map((client, i) => ({
      name: client.identity ?? `identity-${i + 1}`,
      client,
      inFlight: 0,
      controller: new AdaptiveConcurrency({
        // Every writer of this process to the same service books on one window per user: the limits are per user,
        // and the next pipeline's writer starts while the previous one's server time is still in the window.
        usage: executionUsageFor(clients.length === 1 ? service : `${service}@${client.identity ?? i + 1}`),
        ...(timeScale ? { windowMs: 300_000 / timeScale } : {}),
        ...this.#options.adaptive,
        maxConcurrency: this.#options.maxConcurrency ?? 32,
        batchSize: this.#options.batchSize ?? 100,
        timeoutMs: this.#options.timeoutMs ?? 120_000,
        ...(dopHint ? { dopHint } : {}),
      }),
    }));
    this.#options.log?.debug('Writing to Dataverse', {
      table: this.#table.logicalName,
      mode: this.#mode,
      dopHint,
      identities: this.#lanes.length,
      concurrency: this.#lanes.map((l) => l.controller.limit),
    });
    // A 429 lowers concurrency for all lanes of the identity it was for (its client pauses them for Retry-After);
    // every timed-out attempt shrinks that identity's batches. Other identities keep their own budgets.
    const unsubscribers = this.#lanes.map((lane) =>
      lane.client.subscribe({
        onThrottled: (kind, retryAfterMs, message) =>
          lane.controller.recordThrottle(kind, lane.inFlight, { message, retryAfterMs }),
        onTimeout: () => lane.controller.recordTimeout(),
      }),
    );
    const unsubscribe = () => {
      for (const u of unsubscribers) u();
    };
    let rounds = 0;
    try {
      await this.#pass(pendingFrom(source));
      // Rows whose lookup target was missing go again after the rest (parents later in the run, accounts before
      // contacts); repeat while a round lands something, reject what is still missing.
      while (this.#deferred.length > 0) {
        rounds += 1;
        const again = this.#deferred;
        this.#deferred = [];
        this.#progressThisRound = 0;
        await this.#pass(pendingFromArray(again));
        if (this.#progressThisRound === 0 && this.#deferred.length > 0) {
          this.#rejectRows(
            this.#deferred.map((p) => ({
              pending: p,
              reason: 'lookup.target_missing',
              message: '',
              error: p.lastError,
              requestPayload: p.lastPayload,
            })),
          );
          this.#deferred = [];
        }
      }
    } finally {
      unsubscribe();
    }
    const seconds = (performance.now() - started) / 1000;
    const stats = sumStats(this.#lanes.map((l) => l.client.stats));
    const first = this.#lanes[0]!.controller;
    const meanServerTimeMs = mean(this.#lanes.map((l) => l.controller.meanServerTimeMs));
    const metrics: Record<string, unknown> = {
      mode: this.#mode,
      requests: stats.requests,
      retries: stats.retries,
      throttled429: { ...stats.throttled },
      throttled429Total: Object.values(stats.throttled).reduce((a, b) => a + b, 0),
      maxRetryAfterSec: stats.maxRetryAfterSec,
      timeouts: stats.timeouts,
      transientFailures: stats.transientFailures,
      meanServerTimeMs: meanServerTimeMs === undefined ? null : Math.round(meanServerTimeMs * 10) / 10,
      // Totals behind the mean, for capacity plans: server ms per row = serverTimeMs / serverTimeRows.
      serverTimeMs: Math.round(this.#lanes.reduce((n, l) => n + l.controller.serverTime.totalMs, 0)),
      serverTimeRows: this.#lanes.reduce((n, l) => n + l.controller.serverTime.rows, 0),
      rowsPerSec: seconds > 0 ? Math.round((this.#upserted / seconds) * 10) / 10 : null,
      batchSize: first.batchSize,
      concurrency: this.#lanes.reduce((n, l) => n + l.controller.limit, 0),
      maxConcurrencyUsed: this.#lanes.reduce((n, l) => n + l.controller.maxLimitSeen, 0),
      // 4 unless a 429 stated a lower execution-time limit (server-seconds per second per web server).
      executionBudgetPerSec: first.executionBudgetPerSec,
      identities: this.#lanes.length,
      ...(this.#lanes.length > 1
        ? {
            perIdentity: this.#lanes.map((l) => ({
              identity: l.name,
              requests: l.client.stats.requests,
              throttled429: Object.values(l.client.stats.throttled).reduce((a, b) => a + b, 0),
              concurrency: l.controller.limit,
            })),
          }
        : {}),
      dopHint: dopHint ?? null,
      bulkFailures: this.#bulkFailures,
      batchReplays: this.#batchReplays,
      deferredRounds: rounds,
      stateSetAfterCreate: this.#stateSplits,
    };
    return { upserted: this.#upserted, rejected: this.#rejected, mode: this.#mode, deferredRounds: rounds, metrics };
  }

  async #resolveMode(): Promise<'upsert-multiple' | 'batch'> {
    const mode = this.#options.mode ?? 'auto';
    if (mode !== 'auto') return mode;
    if (this.#table.supportsBulk === false) return 'batch';
    return (await this.#client.supportsBulk(this.#table.logicalName)) ? 'upsert-multiple' : 'batch';
  }

  /** One pass over the rows: dispatch batches to lanes, keep one key out of two concurrent requests. */
  async #pass(source: AsyncIterator<PendingRow[]>): Promise<void> {
    const queue = new RowQueue();
    const unsafe: PendingRow[] = [];
    let sourceDone = false;
    const running = new Set<Promise<void>>();
    let failure: unknown;
    const signal = this.#options.signal;

    const lanes = this.#lanes;
    const pooled = lanes.length > 1;
    const capacity = () => lanes.reduce((n, l) => n + l.controller.batchSize * (l.controller.limit + 1), 0) * 2;
    /**
     * The identity with the most room: fewest requests in flight for its limit. With a pool, an identity its client
     * is holding back for `Retry-After` gets nothing new meanwhile (the others carry on); with one identity the
     * client's gate holds the requests as before.
     */
    const pickLane = (): Lane | undefined => {
      let best: Lane | undefined;
      for (const lane of lanes) {
        if (lane.inFlight >= lane.controller.limit) continue;
        if (pooled && lane.client.gate.remainingMs() > 0) continue;
        if (!best || lane.inFlight / lane.controller.limit < best.inFlight / best.controller.limit) best = lane;
      }
      return best;
    };
    const pausedMs = () => Math.min(...lanes.map((l) => l.client.gate.remainingMs()));

    const refill = async () => {
      while (!sourceDone && queue.length < capacity()) {
        const next = await source.next();
        if (next.done) {
          sourceDone = true;
          break;
        }
        for (const p of next.value) (p.row.keySafe ? queue : unsafe).push(p);
      }
    };

    const launch = (lane: Lane, work: () => Promise<void>, keys: readonly string[]) => {
      for (const k of keys) this.#inFlightKeys.add(k);
      lane.inFlight += 1;
      const task = work()
        .catch((error: unknown) => {
          failure ??= error;
        })
        .finally(() => {
          for (const k of keys) this.#inFlightKeys.delete(k);
          lane.inFlight -= 1;
          running.delete(task);
          killPoint('between-batches');
        });
      running.add(task);
    };

    for (;;) {
      if (failure || signal?.aborted) break;
      await refill();
      let launched = false;
      let lane = pickLane();
      while (lane && queue.length > 0 && !failure && !signal?.aborted) {
        const chunk = takeChunk(queue, lane.controller.batchSize, this.#inFlightKeys);
        if (chunk.length === 0) break;
        launched = true;
        const to = lane;
        launch(
          to,
          () => this.#sendChunk(to, chunk, queue),
          chunk.map((p) => p.identity),
        );
        if (queue.length < to.controller.batchSize) await refill();
        lane = pickLane();
      }
      if (running.size === 0 && queue.length === 0 && sourceDone) break;
      if (running.size > 0 && (!launched || !lane || queue.length === 0)) await Promise.race(running);
      else if (running.size === 0 && !lane && pooled) {
        // Every identity is paused for Retry-After and nothing is in flight: wait for the first to reopen.
        await sleep(Math.max(1, pausedMs()), signal).catch(() => undefined);
      }
    }
    // Rows with unsafe keys: find by $filter, then PATCH by GUID. Few in practice; same lanes, one row each.
    while (unsafe.length > 0 && !failure && !signal?.aborted) {
      const lane = pickLane();
      if (!lane) {
        if (running.size > 0) await Promise.race(running);
        else await sleep(Math.max(1, pausedMs()), signal).catch(() => undefined);
        continue;
      }
      const p = unsafe.shift()!;
      if (this.#inFlightKeys.has(p.identity)) {
        unsafe.push(p);
        await Promise.race(running);
        continue;
      }
      launch(lane, () => this.#sendUnsafe(lane, p), [p.identity]);
      if (!pickLane()) await Promise.race(running);
    }
    // Finish what is in flight before stopping (a stop or a failure never abandons a sent request).
    await Promise.all([...running]);
    if (failure) throw failure;
    if (signal?.aborted) {
      throw new FerryError(
        'run.interrupted',
        `Stopped writing to \`${this.#table.entitySet}\` after the requests in flight; the next run repeats the window (upserts by key are idempotent).`,
      );
    }
  }

  async #sendChunk(lane: Lane, chunk: PendingRow[], queue: RowQueue): Promise<void> {
    if (this.#mode === 'batch' || chunk.length === 0) {
      await this.#sendBatch(lane, chunk, queue);
      return;
    }
    const targets = chunk.map((p) => this.#target(p.row));
    const slot = await this.#pace(lane, chunk.length);
    const response = await lane.client.upsertMultiple(this.#table.entitySet, targets);
    killPoint('mid-request');
    this.#recordTiming(lane, response, chunk.length, slot);
    if (response.status < 300) {
      this.#accept(chunk);
      return;
    }
    this.#bulkFailures += 1;
    const error = parseServiceError(response.body);
    if (response.status === 501 || error?.code.toLowerCase() === '0x80040219') {
      // The table has no bulk messages after all (NotImplemented): send this chunk and the rest with $batch.
      this.#options.log?.warn(`\`${this.#table.entitySet}\` does not support UpsertMultiple; falling back to $batch.`);
      this.#mode = 'batch';
      await this.#sendBatch(lane, chunk, queue);
      return;
    }
    if (chunk.length === 1) {
      this.#settle([
        { pending: chunk[0]!, outcome: this.#outcomeOf(response.status, error, response.body, safeParse(targets[0]!)) },
      ]);
      return;
    }
    // Standard tables roll a failed bulk request back whole (reference §2.2): replay the chunk as single upserts
    // in one $batch with continue-on-error, which applies the good rows and names each bad one.
    this.#batchReplays += 1;
    await this.#sendBatch(lane, chunk, queue);
  }

  async #sendBatch(lane: Lane, chunk: PendingRow[], queue: RowQueue): Promise<void> {
    const operations: BatchOperation[] = chunk.map((p) => ({
      method: 'PATCH',
      url: keySegment(this.#table.entitySet, p.row.keyPredicate),
      body: p.row.payload,
    }));
    const slot = await this.#pace(lane, chunk.length);
    const { response, parts } = await lane.client.batch(operations, { continueOnError: true });
    killPoint('mid-request');
    this.#recordTiming(lane, response, chunk.length, slot);
    if (parts.length !== chunk.length) {
      throw new FerryError(
        'dataverse.batch_response',
        `A \`$batch\` of ${chunk.length} upserts to \`${this.#table.entitySet}\` came back with ${parts.length} parts; the service did not run every operation. Run again; if it repeats, lower the batch size.`,
      );
    }
    const settled = chunk.map((pending, i) => {
      const part = parts[i]!;
      return { pending, outcome: this.#partOutcome(part, operations[i]!.body) };
    });
    for (const { pending, outcome } of settled) {
      if (outcome.kind === 'again') {
        pending.tries += 1;
        if (pending.tries < MAX_PART_TRIES) queue.push(pending);
      }
    }
    this.#settle(
      settled.map((s) =>
        s.outcome.kind === 'again' && s.pending.tries >= MAX_PART_TRIES
          ? {
              pending: s.pending,
              outcome: {
                kind: 'reject',
                reason: 'dataverse.unavailable',
                message: `Dataverse kept failing this row's upsert inside \`$batch\` (${MAX_PART_TRIES} tries); replay it later.`,
                status: 503,
                error: null,
                requestPayload: s.pending.row.payload,
              },
            }
          : s,
      ),
    );
  }

  /** Unsafe key: find the row by `$filter`, then upsert by its GUID (or a caller-chosen one when absent). */
  async #sendUnsafe(lane: Lane, p: PendingRow): Promise<void> {
    const parts = parseKeyPredicate(p.row.keyPredicate);
    const filter = encodeURIComponent(keyFilter(parts));
    const found = await lane.client.getJson<{ value?: Array<Record<string, unknown>> }>(
      `${this.#table.entitySet}?$select=${this.#table.primaryId}&$filter=${filter}&$top=2`,
    );
    const matches = found.value ?? [];
    if (matches.length > 1) {
      this.#settle([
        {
          pending: p,
          outcome: {
            kind: 'reject',
            reason: 'dataverse.key_ambiguous',
            message: `Key \`${p.row.key}\` matches ${matches.length} rows of \`${this.#table.logicalName}\`; make the key unique in Dataverse.`,
            status: 0,
            error: null,
            requestPayload: null,
          },
        },
      ]);
      return;
    }
    const existing = matches[0]?.[this.#table.primaryId];
    let id: string;
    const body = JSON.parse(p.row.payload) as Record<string, unknown>;
    if (typeof existing === 'string') {
      id = existing;
    } else {
      p.newId ??= randomUUID();
      id = p.newId;
      // A create must carry the key values itself; the URL names the GUID, not the key (reference §1.2).
      for (const part of parts) if (part.name && !part.name.startsWith('_')) body[part.name] ??= part.value;
    }
    const slot = await this.#pace(lane, 1);
    const response = await lane.client.send('PATCH', `${this.#table.entitySet}(${id})`, {
      body,
      returnDataErrors: true,
    });
    killPoint('mid-request');
    this.#recordTiming(lane, response, 1, slot);
    const outcome: RowOutcome =
      response.status < 300
        ? { kind: 'ok' }
        : this.#outcomeOf(response.status, parseServiceError(response.body), response.body, body);
    this.#settle([{ pending: p, outcome }]);
  }

  /**
   * The row as an UpsertMultiple target: its payload text with `@odata.type` and `@odata.id` spliced in front, so
   * the JSON is never parsed and re-serialised per row.
   */
  #target(row: WriteRow): string {
    // Not percent-encoded: Microsoft's own SDK (PowerPlatform-DataverseClient-Python `_upsert_multiple`) sends the
    // key predicate as is, and the emulator reads it that way. URL-breaking characters never get here (keySafe).
    const head = `${this.#targetType}"@odata.id":${JSON.stringify(`${this.#table.entitySet}(${row.keyPredicate})`)}`;
    const body = row.payload.trimStart();
    if (!body.startsWith('{')) {
      throw new FerryError(
        'dataverse.payload',
        `The payload of \`${row.key}\` is not a JSON object (\`${body.slice(0, 40)}\`); the converted rows are damaged. Run again.`,
      );
    }
    const rest = body.slice(1).trimStart();
    return rest.startsWith('}') ? `${head}${rest}` : `${head},${rest}`;
  }

  #partOutcome(part: BatchResponsePart, requestPayload: unknown): RowOutcome {
    if (part.status < 300) return { kind: 'ok' };
    if (part.status === 429 || part.status >= 500) return { kind: 'again' };
    return this.#outcomeOf(part.status, parseServiceError(part.body), part.body, requestPayload);
  }

  #outcomeOf(status: number, error: ServiceError | undefined, body: string, requestPayload: unknown): RowOutcome {
    if (isMissingLookupTarget(error)) return { kind: 'defer', error: error!, status, requestPayload };
    return {
      kind: 'reject',
      reason: rejectReasonFor(status, error),
      message: error?.message || `Dataverse answered ${status}.`,
      status,
      error: error ?? (body ? body.slice(0, 2000) : null),
      requestPayload,
    };
  }

  #settle(items: ReadonlyArray<{ pending: PendingRow; outcome: RowOutcome }>): void {
    const ok: PendingRow[] = [];
    const rejects: Array<{
      pending: PendingRow;
      reason: string;
      message: string;
      error: unknown;
      requestPayload: unknown;
    }> = [];
    for (const { pending, outcome } of items) {
      if (outcome.kind === 'ok') ok.push(pending);
      else if (outcome.kind === 'defer') {
        pending.lastError = outcome.error;
        pending.lastPayload = outcome.requestPayload;
        this.#deferred.push(pending);
      } else if (outcome.kind === 'reject' && this.#splitState(pending, outcome)) {
        // Written again in the next round: first without its state, then the state as an update.
      } else if (outcome.kind === 'reject') {
        rejects.push({
          pending,
          reason: outcome.reason,
          message: outcome.message,
          error: outcome.error,
          requestPayload: outcome.requestPayload,
        });
      }
    }
    this.#accept(ok);
    this.#rejectRows(rejects);
  }

  #accept(rows: readonly PendingRow[]): void {
    if (rows.length === 0) return;
    const done: PendingRow[] = [];
    for (const p of rows) {
      if (p.stateStep === 'create') {
        // The record exists now; its state goes next round as an update.
        const state = pickState(p.original!.payload);
        this.#deferred.push({ ...p, row: { ...p.original!, payload: state }, stateStep: 'state', tries: 0 });
      } else done.push(p);
    }
    this.#progressThisRound += rows.length;
    this.#upserted += done.length;
    if (done.length) this.#options.onUpserted?.(done.map((p) => p.original ?? p.row));
  }

  /**
   * A new record cannot be created in a closed or inactive state: Dataverse ignores statecode on create and then
   * refuses a statuscode of another state (0x80040203). Such a row is written again without its state columns, and
   * its state is set by an update once the record exists. Returns false when the rule does not apply.
   */
  #splitState(pending: PendingRow, outcome: Extract<RowOutcome, { kind: 'reject' }>): boolean {
    if (pending.stateStep !== undefined) return false;
    if (outcome.reason !== `dataverse.${STATUS_NOT_VALID_FOR_STATE}`) return false;
    const payload = safeParse(pending.row.payload);
    if (!payload || typeof payload !== 'object' || !('statecode' in payload)) return false;
    const rest = Object.fromEntries(
      Object.entries(payload).filter(([k]) => !(STATE_COLUMNS as readonly string[]).includes(k)),
    );
    this.#deferred.push({
      ...pending,
      row: { ...pending.row, payload: JSON.stringify(rest) },
      original: pending.row,
      stateStep: 'create',
      tries: 0,
    });
    this.#stateSplits += 1;
    return true;
  }

  #rejectRows(
    items: ReadonlyArray<{
      pending: PendingRow;
      reason: string;
      message: string;
      error: unknown;
      requestPayload: unknown;
    }>,
  ): void {
    if (items.length === 0) return;
    this.#rejected += items.length;
    this.#options.onRejected?.(
      items.map(({ pending, reason, message, error, requestPayload }) => {
        const row = pending.original ?? pending.row;
        const serviceMessage = (error as ServiceError | undefined)?.message;
        const text =
          reason === 'lookup.target_missing'
            ? `A lookup target of \`${row.key}\` does not exist in Dataverse, even after the rest of the run was written${serviceMessage ? ` (${serviceMessage})` : ''}; load the referenced row first, then replay.`
            : pending.stateStep === 'state'
              ? `Dataverse created \`${row.key}\` but refused to set its state: ${message} Fix statecode/statuscode, then replay the row.`
              : `Dataverse rejected \`${row.key}\`: ${message} Fix the value, then replay the row.`;
        return {
          stage: this.#stage,
          reason,
          message: text,
          key: row.key,
          sourceFile: row.sourceFile ?? null,
          rowNumber: row.rowNumber ?? null,
          row: {
            __row_id: String(row.rowId),
            __key: row.key,
            __key_predicate: row.keyPredicate,
            payload: safeParse(row.payload),
          },
          requestPayload: typeof requestPayload === 'string' ? safeParse(requestPayload) : requestPayload,
          serviceError: error,
        };
      }),
    );
  }

  /** Waits for this request's turn on the execution-time budget (see AdaptiveConcurrency). */
  async #pace(lane: Lane, rows: number): Promise<Booking> {
    const { waitMs, booking } = lane.controller.reserve(rows);
    if (waitMs > 0) await sleep(waitMs, this.#options.signal);
    return booking;
  }

  #recordTiming(lane: Lane, response: DataverseResponse, rows: number, booking: Booking): void {
    lane.controller.settle(booking, response.serverTimeMs ?? response.elapsedMs);
    // A refused bulk request costs little server time and says nothing about the per-row cost.
    if (response.status < 300)
      lane.controller.recordSuccess({ rows, elapsedMs: response.elapsedMs, serverTimeMs: response.serverTimeMs });
  }
}

/** The clients' figures added up (one client: its own). */
function sumStats(all: readonly ClientStats[]): ClientStats {
  if (all.length === 1) return all[0]!;
  const total: ClientStats = {
    requests: 0,
    retries: 0,
    throttled: { requests: 0, executionTime: 0, concurrency: 0, unknown: 0 },
    maxRetryAfterSec: 0,
    transientFailures: 0,
    timeouts: 0,
  };
  for (const s of all) {
    total.requests += s.requests;
    total.retries += s.retries;
    for (const [k, v] of Object.entries(s.throttled)) total.throttled[k as keyof ClientStats['throttled']] += v;
    total.maxRetryAfterSec = Math.max(total.maxRetryAfterSec, s.maxRetryAfterSec);
    total.transientFailures += s.transientFailures;
    total.timeouts += s.timeouts;
  }
  return total;
}

function mean(values: ReadonlyArray<number | undefined>): number | undefined {
  const known = values.filter((v): v is number => v !== undefined);
  return known.length ? known.reduce((a, b) => a + b, 0) / known.length : undefined;
}

/**
 * The rows waiting to be sent, oldest first: a deque over one array with a moving head, since taking rows off the
 * front of a plain array (`shift`) copies the rest each time (a queue of a few thousand rows, 100 per chunk).
 */
class RowQueue {
  #items: PendingRow[] = [];
  #head = 0;

  get length(): number {
    return this.#items.length - this.#head;
  }

  push(row: PendingRow): void {
    this.#items.push(row);
  }

  shift(): PendingRow | undefined {
    if (this.#head >= this.#items.length) return undefined;
    const row = this.#items[this.#head]!;
    this.#items[this.#head] = undefined as unknown as PendingRow;
    this.#head += 1;
    // Drop the consumed front once it is most of the array (amortised: each row is copied at most once more).
    if (this.#head >= 1024 && this.#head * 2 >= this.#items.length) {
      this.#items = this.#items.slice(this.#head);
      this.#head = 0;
    }
    return row;
  }

  /** Puts rows back at the front, in their order. */
  unshiftAll(rows: readonly PendingRow[]): void {
    if (rows.length === 0) return;
    if (rows.length <= this.#head) {
      this.#head -= rows.length;
      for (let i = 0; i < rows.length; i += 1) this.#items[this.#head + i] = rows[i]!;
    } else {
      this.#items = [...rows, ...this.#items.slice(this.#head)];
      this.#head = 0;
    }
  }
}

/** Takes up to `size` rows from the front of the queue whose keys are not in flight nor already in the chunk. */
function takeChunk(queue: RowQueue, size: number, inFlight: ReadonlySet<string>): PendingRow[] {
  const chunk: PendingRow[] = [];
  const inChunk = new Set<string>();
  const held: PendingRow[] = [];
  while (queue.length > 0 && chunk.length < size) {
    const p = queue.shift()!;
    // Rows of one key never share a request (the service refuses duplicate keys) nor travel in two concurrent
    // requests (SQL deadlocks, reference §2.2); they wait, in order, for a later chunk.
    if (inFlight.has(p.identity) || inChunk.has(p.identity)) {
      held.push(p);
      if (held.length > size * 4) break;
      continue;
    }
    inChunk.add(p.identity);
    chunk.push(p);
  }
  queue.unshiftAll(held);
  return chunk;
}

async function* pendingFrom(source: AsyncIterable<readonly WriteRow[]>): AsyncGenerator<PendingRow[]> {
  for await (const rows of source)
    yield rows.map((row) => ({ row, identity: keyIdentity(row.keyPredicate), tries: 0 }));
}

function pendingFromArray(rows: PendingRow[]): AsyncIterator<PendingRow[]> {
  return (async function* () {
    for (const p of rows) p.tries = 0;
    yield rows;
  })();
}

function safeParse(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

/** The state columns of a payload, as the JSON text of an update. */
function pickState(payload: string): string {
  const parsed = safeParse(payload) as Record<string, unknown>;
  return JSON.stringify(Object.fromEntries(STATE_COLUMNS.filter((k) => k in parsed).map((k) => [k, parsed[k]])));
}
