import { BulkWriter, type WriteRow, type WriterTable } from '../connectors/dataverse/bulk-writer.js';
import type { DataverseClient } from '../connectors/dataverse/dataverse-client.js';
import { describeError, FerryError, isRetryable } from '../core/errors.js';
import type { Logger } from '../core/log.js';
import type { RejectRecord } from '../core/rejects.js';

/** One change to write: a converted message row with its key and version (text, ordered as the batch path orders). */
export interface ChainedRow {
  readonly row: WriteRow;
  readonly version: string;
}

/** What became of one row. */
export type ChainedOutcome =
  | { readonly kind: 'upserted' }
  | { readonly kind: 'stale' }
  | { readonly kind: 'rejected'; readonly reject: RejectRecord }
  | {
      readonly kind: 'transient';
      readonly reason: string;
      readonly message: string;
    };

export interface ChainedWriterOptions {
  readonly client: DataverseClient;
  readonly table: WriterTable;
  readonly mode: 'upsert-multiple' | 'batch';
  /** The pipeline's rows per request: the largest request sent. */
  readonly batchSize: number;
  /** The pipeline's parallel requests: the most requests in flight. */
  readonly maxConcurrency: number;
  readonly timeoutMs: number;
  /**
   * Requests to keep in flight: rows per request are the rows ready divided by this (at least `minRequestRows`, at
   * most `batchSize`), so a few hundred records each waiting on its previous change still fill several requests.
   * Default 24: up to 48 requests in flight (twice this), under the service's 52 concurrent requests per user
   * (https://learn.microsoft.com/power-apps/developer/data-platform/api-limits). On an idle 2-core machine 16 reached
   * 0.77–0.80 of the emulator's ceiling with 500 sessions, 24 reached 0.89, 32 reached 0.94 (but allows 64 in flight).
   */
  readonly targetInFlight?: number;
  /** Smallest request while more rows are coming. Default 10. */
  readonly minRequestRows?: number;
  /** A writer reject that a later delivery can fix (throttling, a missing lookup target). */
  readonly isTransientReject: (reason: string) => boolean;
  readonly signal?: AbortSignal;
  readonly log?: Logger;
  /** Each row's outcome as soon as it is known (a chain's next row is sent only after this). */
  readonly onOutcome: (row: ChainedRow, outcome: ChainedOutcome) => void;
}

/** Figures of one `write`. */
export interface ChainedWriteResult {
  requests: number;
  rowsPerRequest: number;
  maxInFlight: number;
}

/**
 * Writes every change of many records with the pipeline's `BulkWriter`, one row per record per request, in each
 * record's order: a record's next change is sent only after its previous one was upserted or rejected for good.
 * The heads of all records' chains are gathered into bulk requests (many records per request, several requests in
 * flight), so a micro-batch with ten changes for each of 500 records is written as ten overlapping waves rather than
 * collapsed to the newest change per record. Staleness is judged when a change reaches the head of its chain
 * against the newest version upserted for its key so far, exactly as if the changes were applied one by one. A
 * change that fails transiently does not hold its record's later changes back: they are written (newest wins, as
 * in a batch file), and the failed one, redelivered, is then stale — holding them back would spend their delivery
 * counts too and dead-letter good changes with a bad one.
 *
 * Each request is its own `BulkWriter.write` of one chunk, so the writer's retries, isolation of bad rows, `$batch`
 * fallback and deferred lookups all happen inside one request's rows, which never hold two changes of one record:
 * nothing the writer retries can overtake a later change. Pacing against the execution-time budget is the writer's
 * (shared by every writer of the process).
 */
export class ChainedWriter {
  readonly #options: ChainedWriterOptions;

  constructor(options: ChainedWriterOptions) {
    this.#options = options;
  }

  /**
   * Writes the chains (each one record's changes, oldest first; one chain per key) and resolves when every row has an
   * outcome. `appliedBefore` holds versions already upserted per key (the applied-versions file is judged before). Throws
   * the first error that is not retryable after the requests in flight ended (their rows end `transient`).
   */
  async write(
    chains: ReadonlyArray<readonly ChainedRow[]>,
    appliedBefore?: ReadonlyMap<string, string>,
  ): Promise<ChainedWriteResult> {
    const o = this.#options;
    const target = Math.max(1, o.targetInFlight ?? 24);
    const maxInFlight = Math.max(1, Math.min(o.maxConcurrency, target * 2));
    const minRows = Math.max(1, Math.min(o.batchSize, o.minRequestRows ?? 10));
    const applied = new Map<string, string>(appliedBefore);
    const heads = chains.map(() => 0);
    const ready: number[] = [];
    let active = 0;
    let failure: unknown;
    const result: ChainedWriteResult = { requests: 0, rowsPerRequest: 0, maxInFlight: 0 };
    let rowsSent = 0;

    /** Moves chain `c` to its next change that is newer than what is applied; queues it, or ends the chain. */
    const advance = (c: number) => {
      const chain = chains[c]!;
      while (heads[c]! < chain.length) {
        const next = chain[heads[c]!]!;
        const done = applied.get(next.row.keyPredicate);
        if (done === undefined || next.version > done) {
          ready.push(c);
          return;
        }
        heads[c] = heads[c]! + 1;
        o.onOutcome(next, { kind: 'stale' });
      }
      active -= 1;
    };
    /** The writer stopped before chain `c`'s head was sent: it and the record's later changes come again. */
    const holdBack = (c: number, reason: string, message: string) => {
      const chain = chains[c]!;
      for (let i = heads[c]!; i < chain.length; i++)
        o.onOutcome(chain[i]!, {
          kind: 'transient',
          reason: i === heads[c] ? reason : 'listen.held_back',
          message:
            i === heads[c]
              ? message
              : `An earlier change of \`${chain[i]!.row.key}\` failed (${reason}); this one waits for it.`,
        });
      heads[c] = chain.length;
      active -= 1;
    };

    active = chains.length;
    for (let c = 0; c < chains.length; c++) advance(c);

    const running = new Set<Promise<void>>();
    const send = (batch: number[]) => {
      const rowsOf = batch.map((c) => chains[c]![heads[c]!]!);
      const byKey = new Map<string, number>();
      const bySource = new Map<string, number>();
      batch.forEach((c, i) => {
        const row = rowsOf[i]!.row;
        byKey.set(row.keyPredicate, c);
        byKey.set(row.key, c);
        if (row.sourceFile) bySource.set(row.sourceFile, c);
      });
      const settled = new Set<number>();
      const settle = (c: number, outcome: ChainedOutcome) => {
        if (settled.has(c)) return;
        settled.add(c);
        const row = chains[c]![heads[c]!]!;
        if (outcome.kind === 'upserted') {
          const before = applied.get(row.row.keyPredicate);
          if (before === undefined || row.version > before) applied.set(row.row.keyPredicate, row.version);
        }
        o.onOutcome(row, outcome);
        heads[c] = heads[c]! + 1;
        advance(c);
      };
      const writer = new BulkWriter({
        client: o.client,
        table: o.table,
        mode: o.mode,
        batchSize: batch.length,
        maxConcurrency: 1,
        timeoutMs: o.timeoutMs,
        ...(o.signal ? { signal: o.signal } : {}),
        ...(o.log ? { log: o.log } : {}),
        onUpserted: (rows) => {
          for (const r of rows) {
            const c = byKey.get(r.keyPredicate);
            if (c !== undefined) settle(c, { kind: 'upserted' });
          }
        },
        onRejected: (rejects) => {
          for (const reject of rejects) {
            const c =
              (reject.sourceFile ? bySource.get(reject.sourceFile) : undefined) ??
              (reject.key ? byKey.get(reject.key) : undefined);
            if (c === undefined) continue;
            settle(
              c,
              o.isTransientReject(reject.reason)
                ? { kind: 'transient', reason: reject.reason, message: reject.message }
                : { kind: 'rejected', reject },
            );
          }
        },
      });
      result.requests += 1;
      rowsSent += batch.length;
      const task = writer
        .write(
          (async function* () {
            yield rowsOf.map((r) => r.row);
          })(),
        )
        .then(
          () => {
            // A row the writer reported neither way (it should not happen): it comes again.
            for (const c of batch)
              settle(c, {
                kind: 'transient',
                reason: 'listen.unsettled',
                message: 'The writer reported neither success nor a reject for this row.',
              });
          },
          (error: unknown) => {
            const reason = error instanceof FerryError ? error.code : 'dataverse.transient';
            for (const c of batch) settle(c, { kind: 'transient', reason, message: describeError(error) });
            if (!isRetryable(error)) failure ??= error;
          },
        )
        .finally(() => running.delete(task));
      running.add(task);
      result.maxInFlight = Math.max(result.maxInFlight, running.size);
    };

    for (;;) {
      if (failure === undefined && !o.signal?.aborted) {
        while (ready.length > 0 && running.size < maxInFlight) {
          const size = Math.max(minRows, Math.min(o.batchSize, Math.ceil(active / target)));
          // Wait for more heads rather than send a small request, unless nothing else is in flight.
          if (ready.length < size && running.size > 0) break;
          send(ready.splice(0, Math.min(size, ready.length)));
        }
      }
      if (running.size === 0) break;
      await Promise.race(running);
    }
    // Stopped (failure or abort) with changes not sent: they come again.
    if (failure !== undefined || o.signal?.aborted) {
      const reason = failure instanceof FerryError ? failure.code : 'run.interrupted';
      const message =
        failure === undefined ? 'The listener stopped before this change was sent.' : describeError(failure);
      for (const c of ready.splice(0)) holdBack(c, reason, message);
    }
    result.rowsPerRequest = result.requests ? Math.round((rowsSent / result.requests) * 10) / 10 : 0;
    if (failure !== undefined) throw failure;
    return result;
  }
}
