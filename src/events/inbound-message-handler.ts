import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { Alert, AlertSink } from '../alerts/webhook-alerts.js';
import type { WriterTable } from '../connectors/dataverse/bulk-writer.js';
import { DataverseClient } from '../connectors/dataverse/dataverse-client.js';
import type { FerryConfig } from '../core/config.js';
import { emptyCounts, type RunCounts } from '../core/counts.js';
import { describeError, UsageError } from '../core/errors.js';
import { killPoint } from '../core/kill-points.js';
import type { Logger } from '../core/log.js';
import type { ConversionPlan } from '../core/mapping.js';
import type { PipelineDefinition } from '../core/pipeline.js';
import type { ReceivedMessage } from '../core/queue-transport.js';
import type { RejectRecord } from '../core/rejects.js';
import { isDeadHolder, keepRunInputs, pipelineLeaseName } from '../core/runner.js';
import type { DataverseEndpoint } from '../core/stage.js';
import { STAGING_TABLES } from '../core/staging-contract.js';
import type { Lease, StateStore } from '../core/state-store.js';
import { duckdbDialect } from '../dialects/duckdb/conversion.js';
import { DuckDbStaging, duckLiteral } from '../dialects/duckdb/driver.js';
import {
  type AppliedVersionsSource,
  CONVERSION_WORK_TABLE,
  type CompiledConversion,
  compileConversion,
} from '../dialects/sql-dialect.js';
import {
  CONVERT_TO_DATAVERSE,
  type ConvertToDataverseSpec,
  describeStaged,
  loadConversionPlan,
  rejectMessage,
  versionsFile,
} from '../stages/convert-to-dataverse.js';
import { loadWriterTable, type UpsertDataverseSpec } from '../stages/upsert-dataverse.js';
import { type ChainedRow, ChainedWriter } from './chained-writer.js';
import { type InboundChangeMessage, type MessageValue, parseBody, queueMessageProblem } from './queue-message.js';

/** What to do with one message after the handler saw it. */
export type DeliveryOutcome =
  | {
      readonly kind: 'complete';
      /**
       * `upserted`; `stale` (not newer than the applied version); `superseded` (a newer change came with it);
       * `delivered` (outbound: the target accepted it).
       */
      readonly result: 'upserted' | 'stale' | 'superseded' | 'delivered';
    }
  | {
      readonly kind: 'abandon';
      readonly reason: string;
      readonly description: string;
      readonly redeliverAfterMs: number;
    }
  | { readonly kind: 'dead-letter'; readonly reason: string; readonly description: string };

/** Reject stage name of messages refused before conversion (not a message, missing columns...). */
export const LISTEN_STAGE = 'listen';
/** Dead-letter reason of a message past the maximum delivery count (as Service Bus writes it). */
export const MAX_DELIVERY_COUNT_EXCEEDED = 'MaxDeliveryCountExceeded';

/** Where a message's rejects say it came from: `queue:<queue>/<messageId>`, row number = its sequence number. */
export function messageSourceFile(queue: string, messageId: string): string {
  return `queue:${queue}/${messageId}`;
}

export interface InboundHandlerOptions {
  readonly definition: PipelineDefinition;
  readonly config: FerryConfig;
  readonly state: StateStore;
  readonly dataverse: DataverseEndpoint;
  readonly log: Logger;
  /** The queue the messages come from (lineage of rejects). */
  readonly queue: string;
  /** The queue's max delivery count: a transient failure on the last delivery dead-letters instead of abandoning. */
  readonly maxDeliveryCount: number;
  readonly alerts?: AlertSink;
  /**
   * How long to wait for the pipeline lease while a batch run of the same pipeline holds it. Default 15 min: the
   * listener keeps its session locks renewed meanwhile, so waiting costs no delivery; after that the messages are
   * abandoned (`pipeline.busy`).
   */
  readonly leaseWaitMs?: number;
  /** Backoff before redelivery after a transient failure. Default 1 s × 2^(delivery-1), at most 60 s. */
  readonly backoffMs?: (deliveryCount: number) => number;
  /** Each row Dataverse accepted: its key, version and message (benchmarks and tests count effects with it). */
  readonly onApplied?: (applied: ReadonlyArray<{ key: string; version: string; messageId: string }>) => void;
  /** Runs of this handler roll over after this long (a new run id for rejects). Default 15 min. */
  readonly segmentMs?: number;
  /** Requests the chained writer keeps in flight (rows per request = records ready / this). Default 16. */
  readonly targetInFlight?: number;
  readonly signal?: AbortSignal;
}

/** Counts over the handler's life. */
export interface HandlerCounts {
  received: number;
  upserted: number;
  stale: number;
  superseded: number;
  deadLettered: number;
  abandoned: number;
  transientFailures: number;
}

interface Item {
  readonly index: number;
  readonly message: ReceivedMessage;
  readonly sourceFile: string;
  values?: Record<string, MessageValue>;
  outcome?: DeliveryOutcome;
}

const TRANSIENT_REJECTS = new Set(['lookup.target_missing', 'dataverse.unavailable']);

/** A writer reject that trying again later can fix: a missing lookup target, throttling, a 5xx. */
function isTransientReject(reason: string): boolean {
  return TRANSIENT_REJECTS.has(reason) || /^dataverse\.http_(408|429|5\d\d)$/.test(reason);
}

/**
 * The event-driven inbound path: takes change messages for an inbound pipeline and applies the pipeline's own
 * conversion — the same compiled conversion SQL as the batch path, run in DuckDB on a micro-batch of the gathered
 * messages — and its Dataverse writer (`BulkWriter`), so a message and a batch row with the same values get the same
 * payload or the same reject reason. Staleness is judged against the same applied-versions file the batch path uses
 * (`<state>/versions/<pipeline>.parquet`), under the pipeline's lease, so a batch run and the listener never judge
 * staleness on an old view of each other's versions.
 *
 * Order of effects per micro-batch: upsert → save applied versions → return the outcomes (the caller settles the
 * messages). A kill before the versions are saved re-sends the same version (an idempotent upsert); a kill after
 * finds the redelivered message stale. Several changes of one key in a micro-batch collapse to the latest, as in
 * a batch file, so a request never carries one key twice.
 *
 * Rejects go to the error store under a run of mode `listen` (one per handler segment), with the message's source
 * values as the row, so `ferry rejects --run <id>` lists them and `ferry replay --run <id>` re-sends them.
 */
export class InboundMessageHandler {
  readonly counts: HandlerCounts = {
    received: 0,
    upserted: 0,
    stale: 0,
    superseded: 0,
    deadLettered: 0,
    abandoned: 0,
    transientFailures: 0,
  };
  /** Wall time per phase over the handler's life (ms), for benchmarks. */
  readonly timings: Record<string, number> = {};
  readonly #options: InboundHandlerOptions;
  readonly #plan: ConversionPlan;
  readonly #upsert: UpsertDataverseSpec;
  readonly #table: WriterTable;
  readonly #client: DataverseClient;
  readonly #staging: DuckDbStaging;
  readonly #holder = `${os.hostname()}:${process.pid}`;
  #mode: 'upsert-multiple' | 'batch' | undefined;
  #compiled = new Map<boolean, CompiledConversion>();
  #segment: { id: string; started: number; counts: RunCounts; rejectsByReason: Record<string, number> } | undefined;
  /** Per run: what `keepRunInputs` noted (the metadata snapshot id a replay needs). */
  readonly #metrics = new Map<string, Record<string, unknown>>();

  private constructor(
    options: InboundHandlerOptions,
    plan: ConversionPlan,
    upsert: UpsertDataverseSpec,
    table: WriterTable,
    staging: DuckDbStaging,
  ) {
    this.#options = options;
    this.#plan = plan;
    this.#upsert = upsert;
    this.#table = table;
    this.#staging = staging;
    this.#client = new ListenerDataverseClient({
      url: options.dataverse.url,
      ...(options.dataverse.getToken ? { getToken: options.dataverse.getToken } : {}),
      timeoutMs: upsert.timeoutMs,
      ...(upsert.bypass ? { bypass: upsert.bypass } : {}),
      log: options.log,
      ...(options.signal ? { signal: options.signal } : {}),
    });
  }

  /** Loads the pipeline's mapping and metadata snapshot; fails with a usage error for a pipeline it cannot serve. */
  static async open(options: InboundHandlerOptions): Promise<InboundMessageHandler> {
    const def = options.definition;
    if (def.direction !== 'inbound')
      throw new UsageError(
        `Pipeline \`${def.name}\` is ${def.direction}; \`ferry listen\` applies change messages of an inbound pipeline.`,
      );
    const spec = def.stages.find((s) => s.kind === CONVERT_TO_DATAVERSE) as ConvertToDataverseSpec | undefined;
    const upsert = def.stages.find((s) => s.kind === 'upsert-dataverse') as UpsertDataverseSpec | undefined;
    if (!spec || !upsert)
      throw new UsageError(
        `Pipeline \`${def.name}\` has no convert-to-dataverse and upsert-dataverse stages; a listener needs both.`,
      );
    const plan = await loadConversionPlan(spec, options.config.metadata);
    const table = await loadWriterTable(options.config.metadata, upsert.table);
    const staging = await DuckDbStaging.open({ memoryLimit: '256MB', threads: 1 });
    return new InboundMessageHandler(options, plan, upsert, table, staging);
  }

  /** The source columns a message must carry (the mapping's). */
  get sourceColumns(): readonly string[] {
    return this.#plan.sourceColumns;
  }

  /** The run that holds this handler's rejects right now (null before the first message). */
  get runId(): string | null {
    return this.#segment?.id ?? null;
  }

  /** Decides every message of a micro-batch; the caller settles them in the order given back. */
  async handle(messages: readonly ReceivedMessage[]): Promise<DeliveryOutcome[]> {
    const items: Item[] = messages.map((message, index) => ({
      index,
      message,
      sourceFile: messageSourceFile(this.#options.queue, message.messageId),
    }));
    this.counts.received += items.length;
    const rejects: Array<{ item: Item; reject: RejectRecord }> = [];
    for (const item of items) {
      const problem = this.#readMessage(item);
      if (problem) {
        item.outcome = { kind: 'dead-letter', reason: problem.reason, description: problem.message };
        rejects.push({
          item,
          reject: {
            stage: LISTEN_STAGE,
            reason: problem.reason,
            message: problem.message,
            key: null,
            sourceFile: item.sourceFile,
            rowNumber: item.message.sequenceNumber,
            // Not a row a replay could rebuild: the body is kept as the payload the message carried.
            row: null,
            requestPayload: parseBody(item.message.body),
          },
        });
      }
    }
    const valid = items.filter((i) => !i.outcome);
    const lease = valid.length ? await this.#acquireLease() : null;
    if (valid.length && !lease) {
      for (const item of valid)
        item.outcome = this.#transient(
          item,
          'pipeline.busy',
          `Pipeline \`${this.#options.definition.name}\` is being run by another process (its lease is held); the message waits.`,
        );
    }
    const leaseName = pipelineLeaseName(this.#options.definition.name);
    // Renewed like the batch runner's, so a micro-batch slowed by throttling keeps batch runs out until it is done.
    const renewing = lease
      ? setInterval(() => this.#options.state.renewLease(leaseName, lease.token, 120_000), 40_000)
      : undefined;
    try {
      this.#ensureSegment();
      this.#segment!.counts.read += items.length;
      if (lease) await this.#convertAndWrite(valid, rejects);
    } finally {
      clearInterval(renewing);
      if (lease) this.#options.state.releaseLease(leaseName, lease.token);
    }
    const outcomes = items.map(
      (i) =>
        (i.outcome ??= this.#transient(
          i,
          'listen.unsettled',
          'The writer reported neither success nor a reject for this row.',
        )),
    );
    // Poison (transient on every delivery): into the error store too, so nothing leaves the queue unrecorded.
    const recorded = new Set(rejects.map((r) => r.item));
    for (const item of items) {
      const o = item.outcome!;
      if (o.kind !== 'dead-letter' || o.reason !== MAX_DELIVERY_COUNT_EXCEEDED || recorded.has(item)) continue;
      rejects.push({
        item,
        reject: {
          stage: LISTEN_STAGE,
          reason: 'message.max_deliveries',
          message: o.description,
          key: null,
          sourceFile: item.sourceFile,
          rowNumber: item.message.sequenceNumber,
          row: item.values ?? null,
          ...(item.values ? {} : { requestPayload: parseBody(item.message.body) }),
        },
      });
    }
    this.#storeRejects(rejects);
    for (const o of outcomes) {
      if (o.kind === 'dead-letter') this.counts.deadLettered += 1;
      else if (o.kind === 'abandon') this.counts.abandoned += 1;
      else if (o.result !== 'delivered') this.counts[o.result] += 1;
    }
    await this.#alert(rejects, outcomes);
    return outcomes;
  }

  /** Finishes the current run (counts, rejects by reason) and closes the staging engine. */
  async close(): Promise<void> {
    this.#finishSegment();
    await this.#staging.close().catch(() => undefined);
  }

  /** Checks the message and builds its source row; returns the reason when it cannot be converted at all. */
  #readMessage(item: Item): { reason: string; message: string } | null {
    const body = parseBody(item.message.body);
    const problem = queueMessageProblem(body);
    if (problem) return { reason: 'message.invalid', message: problem };
    const change = body as InboundChangeMessage;
    if (change.type !== 'ferry.inbound.change')
      return {
        reason: 'message.invalid',
        message: `Message \`${item.message.messageId}\` is a \`${change.type}\` message; an inbound listener takes \`ferry.inbound.change\`.`,
      };
    const def = this.#options.definition;
    if (change.pipeline !== undefined && change.pipeline !== def.name)
      return {
        reason: 'message.wrong_pipeline',
        message: `Message \`${item.message.messageId}\` is for pipeline \`${change.pipeline}\`, but this listener runs \`${def.name}\`; send it to that pipeline's queue.`,
      };
    const values: Record<string, MessageValue> = { ...change.columns };
    const changeColumn = this.#plan.changeTimestamp;
    if (
      values[changeColumn] !== undefined &&
      values[changeColumn] !== null &&
      values[changeColumn] !== change.changedAt
    )
      return {
        reason: 'message.inconsistent',
        message: `Column \`${changeColumn}\` = \`${String(values[changeColumn])}\` differs from changedAt \`${change.changedAt}\`; send one change timestamp.`,
      };
    values[changeColumn] = change.changedAt;
    for (const [column, value] of Object.entries(change.key)) {
      if (values[column] !== undefined && values[column] !== null && String(values[column]) !== String(value))
        return {
          reason: 'message.inconsistent',
          message: `Key column \`${column}\` = \`${String(value)}\` differs from the column's value \`${String(values[column])}\`; send the key once.`,
        };
      values[column] = value;
    }
    const missing = this.#plan.sourceColumns.filter((c) => values[c] === undefined);
    if (missing.length)
      return {
        reason: 'message.missing_columns',
        message: `Message \`${item.message.messageId}\` lacks source column(s) \`${missing.join('`, `')}\` that the \`${def.name}\` mapping reads; send every mapped column (null for empty).`,
      };
    item.values = values;
    return null;
  }

  async #convertAndWrite(items: Item[], rejects: Array<{ item: Item; reject: RejectRecord }>): Promise<void> {
    if (items.length === 0) return;
    this.#lapAt = performance.now();
    const segment = this.#segment!;
    segment.counts.staged += items.length;
    const staging = this.#staging;
    const columns = this.#plan.sourceColumns;
    await staging.run(
      `DROP VIEW IF EXISTS ${STAGING_TABLES.converted}; DROP TABLE IF EXISTS ${STAGING_TABLES.upserted}; DROP TABLE IF EXISTS ${CONVERSION_WORK_TABLE}; DROP TABLE IF EXISTS ${STAGING_TABLES.staged}`,
    );
    // Message values are staged as text, like a text column of a delta file: the conversion parses them by rule.
    // They go in through a JSON Lines file read with fixed VARCHAR columns (far faster than SQL literals).
    const lines = items.map((item) => {
      const row: Record<string, unknown> = {
        __row_id: item.index + 1,
        __run_id: segment.id,
        __source_file: item.sourceFile,
        __row_number: item.message.sequenceNumber,
      };
      for (const c of columns) {
        const v = item.values![c];
        row[c] = v === null || v === undefined ? null : String(v);
      }
      return JSON.stringify(row);
    });
    const batchFile = path.join(this.#workDir, `batch-${process.pid}.jsonl`);
    await fs.mkdir(this.#workDir, { recursive: true });
    await fs.writeFile(batchFile, `${lines.join('\n')}\n`);
    const types = [
      `'__row_id': 'BIGINT'`,
      `'__run_id': 'VARCHAR'`,
      `'__source_file': 'VARCHAR'`,
      `'__row_number': 'BIGINT'`,
      ...columns.map((c) => `${duckLiteral(c)}: 'VARCHAR'`),
    ];
    await staging.run(
      `CREATE TABLE ${STAGING_TABLES.staged} AS SELECT * FROM read_json(${duckLiteral(batchFile)}, format = 'newline_delimited', columns = {${types.join(', ')}})`,
    );
    const file = versionsFile(this.#options.config.state, this.#options.definition.name);
    const hasPrevious = await exists(file);
    const previous: AppliedVersionsSource | null = hasPrevious ? { kind: 'parquet', path: file } : null;
    let sql = this.#compiled.get(hasPrevious);
    if (!sql) {
      const sources = await describeStaged(staging, duckdbDialect);
      sql = compileConversion(this.#plan, duckdbDialect, { sources, appliedVersions: previous });
      this.#compiled.set(hasPrevious, sql);
    }
    this.#lap('stage');
    await staging.run(everyVersion(sql));
    await staging.run(sql.converted);
    this.#lap('convert');
    const byRowId = new Map(items.map((i) => [i.index + 1, i]));
    const work = await staging.all<{
      __row_id: bigint;
      __outcome: string;
      __reason: string | null;
      __reason_column: number | bigint | null;
      __key: string | null;
    }>(`SELECT __row_id, __outcome, __reason, __reason_column, __key FROM ${CONVERSION_WORK_TABLE}`);
    for (const w of work) {
      const item = byRowId.get(Number(w.__row_id))!;
      if (w.__outcome === 'stale' || w.__outcome === 'superseded') {
        item.outcome = { kind: 'complete', result: w.__outcome };
        segment.counts.skippedStale += 1;
      } else if (w.__outcome === 'reject') {
        const reason = String(w.__reason ?? 'key.missing');
        const column = w.__reason_column === null ? undefined : this.#plan.columns[Number(w.__reason_column)];
        const message = rejectMessage(reason, column, item.values!, this.#plan);
        item.outcome = { kind: 'dead-letter', reason, description: message };
        rejects.push({
          item,
          reject: {
            stage: CONVERT_TO_DATAVERSE,
            reason,
            message,
            key: w.__key,
            sourceFile: item.sourceFile,
            rowNumber: item.message.sequenceNumber,
            row: item.values!,
          },
        });
      } else segment.counts.converted += 1;
    }

    const rows = await staging.all<{
      __row_id: bigint;
      __key: string;
      __key_predicate: string;
      __key_safe: boolean;
      __payload: string;
      __version: string;
    }>(
      `SELECT __row_id, __key, __key_predicate, __key_safe, __payload, __version FROM ${STAGING_TABLES.converted} ORDER BY __row_id`,
    );
    if (rows.length === 0) return;
    // Every change is written, in message order per record: one chain per key (rows are in message order, and the
    // listener hands each session's messages over in sequence order).
    const chains = new Map<string, ChainedRow[]>();
    const itemOf = new Map<ChainedRow, Item>();
    for (const r of rows) {
      const item = byRowId.get(Number(r.__row_id))!;
      const change: ChainedRow = {
        row: {
          rowId: r.__row_id,
          key: r.__key,
          keyPredicate: r.__key_predicate,
          keySafe: r.__key_safe !== false,
          payload: r.__payload,
          sourceFile: item.sourceFile,
          rowNumber: item.message.sequenceNumber,
        },
        version: r.__version,
      };
      itemOf.set(change, item);
      const chain = chains.get(r.__key_predicate);
      if (chain) chain.push(change);
      else chains.set(r.__key_predicate, [change]);
    }
    // Redelivered changes (a kill or a lost lock after some of them were upserted but before their versions were
    // saved) collapse to the newest of them, as a repeated batch window does: re-sending them one by one would put
    // an older change back over a newer one that was already applied.
    for (const [key, chain] of chains) {
      const again = chain.filter((c) => itemOf.get(c)!.message.deliveryCount > 1);
      if (again.length < 2) continue;
      const newest = again.reduce((a, b) => (b.version >= a.version ? b : a));
      for (const c of again)
        if (c !== newest) {
          itemOf.get(c)!.outcome = { kind: 'complete', result: 'superseded' };
          segment.counts.skippedStale += 1;
        }
      chains.set(
        key,
        chain.filter((c) => c === newest || !again.includes(c)),
      );
    }
    const accepted: bigint[] = [];
    const applied: Array<{ key: string; version: string; messageId: string }> = [];
    this.#mode ??= await this.#resolveMode();
    const writer = new ChainedWriter({
      client: this.#client,
      table: this.#table,
      mode: this.#mode,
      batchSize: this.#upsert.batchSize,
      maxConcurrency: this.#upsert.maxConcurrency,
      timeoutMs: this.#upsert.timeoutMs,
      isTransientReject,
      ...(this.#options.targetInFlight ? { targetInFlight: this.#options.targetInFlight } : {}),
      ...(this.#options.signal ? { signal: this.#options.signal } : {}),
      log: this.#options.log,
      onOutcome: (change, outcome) => {
        const item = itemOf.get(change)!;
        if (outcome.kind === 'upserted') {
          accepted.push(BigInt(change.row.rowId));
          item.outcome = { kind: 'complete', result: 'upserted' };
          applied.push({ key: change.row.keyPredicate, version: change.version, messageId: item.message.messageId });
        } else if (outcome.kind === 'stale') {
          item.outcome = { kind: 'complete', result: 'stale' };
          segment.counts.skippedStale += 1;
        } else if (outcome.kind === 'rejected') {
          item.outcome = { kind: 'dead-letter', reason: outcome.reject.reason, description: outcome.reject.message };
          // The source values as the row, so a replay can rebuild the message's row.
          rejects.push({ item, reject: { ...outcome.reject, row: item.values! } });
        } else item.outcome = this.#transient(item, outcome.reason, outcome.message);
      },
    });
    const written = await writer.write([...chains.values()]);
    this.timings.requests = (this.timings.requests ?? 0) + written.requests;
    this.#lap('write');
    killPoint('listen:after-upsert');
    // Applied versions, merged into the pipeline's file exactly as the batch path's commit hook does.
    await staging.run(`CREATE TABLE ${STAGING_TABLES.upserted} (__row_id BIGINT)`);
    if (accepted.length)
      await staging.run(`INSERT INTO ${STAGING_TABLES.upserted} VALUES ${accepted.map((id) => `(${id})`).join(',')}`);
    await saveVersions(staging, file, segment.id);
    this.#lap('versions');
    killPoint('listen:after-versions');
    segment.counts.upserted += accepted.length;
    if (applied.length) this.#options.onApplied?.(applied);
  }

  #lapAt = 0;
  /** Where micro-batches are written for DuckDB to read. */
  get #workDir(): string {
    return path.join(this.#options.config.state, 'listen');
  }

  #lap(phase: string): void {
    const now = performance.now();
    this.timings[phase] = (this.timings[phase] ?? 0) + (now - this.#lapAt);
    this.#lapAt = now;
  }

  async #resolveMode(): Promise<'upsert-multiple' | 'batch'> {
    if (this.#upsert.mode !== 'auto') return this.#upsert.mode;
    if (this.#table.supportsBulk === false) return 'batch';
    return (await this.#client.supportsBulk(this.#table.logicalName)) ? 'upsert-multiple' : 'batch';
  }

  /** Abandon with backoff, or dead-letter when this was the last delivery the queue allows. */
  #transient(item: Item, reason: string, description: string): DeliveryOutcome {
    this.counts.transientFailures += 1;
    const delivery = item.message.deliveryCount;
    if (delivery >= this.#options.maxDeliveryCount) {
      return {
        kind: 'dead-letter',
        reason: MAX_DELIVERY_COUNT_EXCEEDED,
        description: `Failed on all ${delivery} deliveries; last error (${reason}): ${description}`,
      };
    }
    const backoff = this.#options.backoffMs ?? ((n: number) => Math.min(60_000, 1000 * 2 ** (n - 1)));
    return { kind: 'abandon', reason, description, redeliverAfterMs: backoff(delivery) };
  }

  async #acquireLease(): Promise<Lease | null> {
    const { state, definition, log } = this.#options;
    const name = pipelineLeaseName(definition.name);
    const deadline = Date.now() + (this.#options.leaseWaitMs ?? 15 * 60_000);
    for (;;) {
      const lease = state.acquireLease(name, this.#holder, 120_000);
      if (lease) return lease;
      const current = state.getLease(name);
      if (current && isDeadHolder(current)) {
        const taken = state.acquireLease(name, this.#holder, 120_000, current.expiresAtMs);
        if (taken) {
          state.renewLease(name, taken.token, 120_000);
          log.warn(`Took over the lease of \`${name}\` from \`${current.holder}\`, which is no longer running.`);
          return taken;
        }
      }
      if (Date.now() >= deadline || this.#options.signal?.aborted) return null;
      await new Promise((r) => setTimeout(r, 200));
    }
  }

  /** Opens a `listen` run for rejects (and rolls it over after `segmentMs`); runs left by a killed listener end as abandoned. */
  #ensureSegment(): void {
    const segmentMs = this.#options.segmentMs ?? 15 * 60_000;
    if (this.#segment && Date.now() - this.#segment.started < segmentMs) return;
    this.#finishSegment();
    const { state, definition, queue } = this.#options;
    for (const run of state.listRuns({ pipeline: definition.name, status: 'running', limit: 50 })) {
      const holder = run.holder.slice(0, run.holder.lastIndexOf(':'));
      const pid = Number(run.holder.slice(run.holder.lastIndexOf(':') + 1));
      if (run.mode === 'listen' && isDeadHolder({ name: '', holder: run.holder, token: 0, expiresAtMs: 0 }))
        state.finishRun(run.id, {
          status: 'abandoned',
          counts: run.counts,
          rejectsByReason: run.rejectsByReason,
          markProcessed: false,
          moveCursor: false,
          error: {
            code: 'run.abandoned',
            message: `Listener \`${holder}:${pid}\` stopped without finishing this run.`,
          },
        });
    }
    const run = state.startRun({
      pipeline: definition.name,
      mode: 'listen',
      window: { source: `queue:${queue}`, items: [], cursorBefore: null, cursorAfter: null },
      holder: this.#holder,
    });
    this.#segment = { id: run.id, started: Date.now(), counts: emptyCounts(), rejectsByReason: {} };
    // What a replay of this run needs: the mapping and the metadata snapshot, kept as the batch runner keeps them.
    const runDir = path.join(this.#options.config.state, 'runs', run.id);
    const metrics: Record<string, unknown> = {};
    void fs
      .mkdir(runDir, { recursive: true })
      .then(() => keepRunInputs(runDir, definition, this.#options.config, metrics, this.#options.log))
      .then(() => {
        this.#metrics.set(run.id, metrics);
      })
      .catch((error: unknown) =>
        this.#options.log.warn(`Could not keep the inputs of run \`${run.id}\` for replays: ${describeError(error)}`),
      );
  }

  #finishSegment(): void {
    const segment = this.#segment;
    if (!segment) return;
    this.#segment = undefined;
    this.#options.state.finishRun(segment.id, {
      status: 'succeeded',
      counts: segment.counts,
      rejectsByReason: segment.rejectsByReason,
      metrics: { ...(this.#metrics.get(segment.id) ?? {}), queue: this.#options.queue, listener: this.counts },
      markProcessed: false,
      moveCursor: false,
    });
  }

  #storeRejects(rejects: ReadonlyArray<{ item: Item; reject: RejectRecord }>): void {
    if (rejects.length === 0) return;
    const segment = this.#segment!;
    const { state, definition } = this.#options;
    // A message redelivered after a kill between storing its reject and dead-lettering it: the newer reject wins.
    state.supersedeRejects(
      definition.name,
      rejects.map((r) => r.item.sourceFile),
      segment.id,
    );
    state.addRejects(
      segment.id,
      definition.name,
      rejects.map((r) => r.reject),
    );
    segment.counts.rejected += rejects.length;
    for (const { reject } of rejects)
      segment.rejectsByReason[reject.reason] = (segment.rejectsByReason[reject.reason] ?? 0) + 1;
  }

  async #alert(
    rejects: ReadonlyArray<{ item: Item; reject: RejectRecord }>,
    outcomes: readonly DeliveryOutcome[],
  ): Promise<void> {
    const alerts = this.#options.alerts;
    const dead = outcomes.filter((o) => o.kind === 'dead-letter');
    if (!alerts || dead.length === 0) return;
    const byReason = new Map<string, number>();
    for (const o of dead) byReason.set(o.reason, (byReason.get(o.reason) ?? 0) + 1);
    for (const [reason, n] of byReason) {
      const alert: Alert = {
        kind: 'dead_lettered',
        pipeline: this.#options.definition.name,
        runId: this.#segment?.id ?? null,
        reason,
        message: `${n} message(s) of queue \`${this.#options.queue}\` dead-lettered with \`${reason}\`${rejects[0] ? `, e.g. ${rejects.find((r) => r.reject.reason === reason)?.reject.message ?? ''}` : ''}`,
        counts: { rejected: n },
        inspect: `ferry queue dead-letters ${this.#options.queue}`,
        at: new Date().toISOString(),
      };
      await alerts.notify(alert);
    }
  }
}

/**
 * The work-table statement of a compiled conversion without its second statement, which collapses the versions of
 * one key to the newest (`superseded`): the listener writes every change of a record in order instead.
 */
function everyVersion(sql: CompiledConversion): string {
  const cut = sql.classify.indexOf(';\nUPDATE ');
  if (cut < 0)
    throw new Error(
      'The compiled conversion no longer ends with the statement that marks superseded versions; the listener needs its first statement alone (see compileConversion).',
    );
  return sql.classify.slice(0, cut);
}

/**
 * The handler's Dataverse client: asks `WhoAmI` (user, `x-ms-dop-hint`, time scale) once, not before every request
 * the chained writer sends (each is a `BulkWriter.write` of its own).
 */
class ListenerDataverseClient extends DataverseClient {
  #whoAmI: ReturnType<DataverseClient['whoAmI']> | undefined;

  override whoAmI(): ReturnType<DataverseClient['whoAmI']> {
    this.#whoAmI ??= super.whoAmI().catch((error: unknown) => {
      this.#whoAmI = undefined;
      throw error;
    });
    return this.#whoAmI;
  }
}

async function saveVersions(staging: DuckDbStaging, file: string, runId: string): Promise<void> {
  await fs.mkdir(path.dirname(file), { recursive: true });
  const temp = `${file}.${runId}.${process.pid}.tmp`;
  // Read the file as it is now (under the lease), not as it was when the batch was converted.
  const previous: AppliedVersionsSource | null = (await exists(file)) ? { kind: 'parquet', path: file } : null;
  try {
    await staging.run(duckdbDialect.saveAppliedVersionsSql(previous, { kind: 'parquet', path: temp }));
    await fs.rename(temp, file);
  } finally {
    await fs.rm(temp, { force: true });
  }
}

async function exists(file: string): Promise<boolean> {
  return fs.stat(file).then(
    () => true,
    () => false,
  );
}
