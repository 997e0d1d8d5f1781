import os from 'node:os';
import type { AlertSink } from '../alerts/webhook-alerts.js';
import { emptyCounts, type RunCounts } from '../core/counts.js';
import { describeError, UsageError } from '../core/errors.js';
import type { Logger } from '../core/log.js';
import type { ReceivedMessage } from '../core/queue-transport.js';
import type { RejectRecord } from '../core/rejects.js';
import type { StateStore } from '../core/state-store.js';
import { type DeliveryOutcome, MAX_DELIVERY_COUNT_EXCEEDED, messageSourceFile } from './inbound-message-handler.js';
import { type OutboundChangeMessage, parseBody, queueMessageProblem } from './queue-message.js';

/** Where outbound changes go. */
export interface OutboundTarget {
  /** The target system's endpoint; each change is POSTed to it as JSON. */
  readonly url: string;
  /** Header carrying the credential, e.g. `Authorization` or `x-api-key`. */
  readonly authHeader?: string;
  /** The credential (from the environment or a Key Vault reference; never logged). */
  readonly authValue?: string;
  /** Per attempt. Default 10 s. */
  readonly timeoutMs?: number;
  /** Attempts per delivery before the message is given back to the queue. Default 3. */
  readonly attempts?: number;
}

/**
 * The target from the environment: `FERRY_OUTBOUND_URL`, `FERRY_OUTBOUND_AUTH_HEADER` (default `Authorization`) and
 * `FERRY_OUTBOUND_AUTH` (the secret; in Azure a Key Vault reference in the app settings).
 */
export function outboundTargetFromEnv(env: NodeJS.ProcessEnv = process.env): OutboundTarget {
  const url = env.FERRY_OUTBOUND_URL;
  if (!url || !/^https?:\/\//.test(url))
    throw new UsageError(
      `FERRY_OUTBOUND_URL \`${url ?? ''}\` is not an http(s) URL; set it to the target system's change endpoint.`,
    );
  return {
    url,
    ...(env.FERRY_OUTBOUND_AUTH ? { authHeader: env.FERRY_OUTBOUND_AUTH_HEADER ?? 'Authorization' } : {}),
    ...(env.FERRY_OUTBOUND_AUTH ? { authValue: env.FERRY_OUTBOUND_AUTH } : {}),
  };
}

export interface OutboundHandlerOptions {
  /** Name the rejects and runs are kept under (like a pipeline name), e.g. `accounts-to-erp`. */
  readonly name: string;
  readonly queue: string;
  readonly target: OutboundTarget;
  readonly state: StateStore;
  readonly log: Logger;
  readonly maxDeliveryCount: number;
  readonly alerts?: AlertSink;
  /** Records delivered at once. Default 8. */
  readonly concurrency?: number;
  readonly backoffMs?: (deliveryCount: number) => number;
  readonly fetch?: typeof fetch;
}

const DELIVERED = 'outbound-delivered';

class Transient extends Error {}
class Permanent extends Error {
  constructor(
    message: string,
    readonly status: number,
    readonly body: string,
  ) {
    super(message);
  }
}

/**
 * Delivers Dataverse change messages (record id, table, change timestamp, changed columns) to a target system's
 * HTTP API. Per record in order (a record's messages of one micro-batch go one after another; the queue's session
 * keeps later ones back); a change not newer than the last one delivered for the record is dropped as stale (the
 * last delivered timestamp per record is kept in the state store, written after the target accepted); transient
 * failures (network, timeout, 408, 429, 5xx) are retried, then given back to the queue with backoff; a 4xx for
 * the data goes to the error store with the request and the target's answer, and is dead-lettered.
 */
export class OutboundChangeHandler {
  readonly counts = { received: 0, delivered: 0, stale: 0, deadLettered: 0, abandoned: 0, attempts: 0 };
  readonly #options: OutboundHandlerOptions;
  #run: { id: string; counts: RunCounts; rejectsByReason: Record<string, number> } | undefined;

  constructor(options: OutboundHandlerOptions) {
    this.#options = options;
  }

  get runId(): string | null {
    return this.#run?.id ?? null;
  }

  async handle(messages: readonly ReceivedMessage[]): Promise<DeliveryOutcome[]> {
    this.counts.received += messages.length;
    this.#ensureRun();
    const run = this.#run!;
    run.counts.read += messages.length;
    const outcomes: DeliveryOutcome[] = new Array(messages.length);
    const rejects: RejectRecord[] = [];
    // One lane per record, in message order; records in parallel.
    const lanes = new Map<string, number[]>();
    messages.forEach((m, i) => {
      const body = parseBody(m.body);
      const problem = queueMessageProblem(body);
      const change = body as OutboundChangeMessage;
      if (problem || change.type !== 'ferry.outbound.change') {
        const description = problem ?? `A \`${change.type}\` message is not an outbound change.`;
        outcomes[i] = { kind: 'dead-letter', reason: 'message.invalid', description };
        rejects.push(this.#reject(m, 'message.invalid', description, body));
        return;
      }
      const lane = `${change.table}:${change.recordId.toLowerCase()}`;
      lanes.set(lane, [...(lanes.get(lane) ?? []), i]);
    });
    const queue = [...lanes.entries()];
    const worker = async () => {
      for (let next = queue.shift(); next; next = queue.shift()) {
        const [lane, indexes] = next;
        let blocked: DeliveryOutcome | undefined;
        for (const i of indexes) {
          const m = messages[i]!;
          // A failed change holds the record's later changes back, so they cannot overtake it.
          if (blocked) {
            outcomes[i] = this.#retry(m, 'record.blocked', 'An earlier change of this record is being retried.');
            continue;
          }
          outcomes[i] = await this.#deliver(lane, m, parseBody(m.body) as OutboundChangeMessage, rejects);
          if (outcomes[i]!.kind === 'abandon') blocked = outcomes[i];
        }
      }
    };
    await Promise.all(Array.from({ length: this.#options.concurrency ?? 8 }, worker));
    if (rejects.length) {
      this.#options.state.addRejects(run.id, this.#options.name, rejects);
      run.counts.rejected += rejects.length;
      for (const r of rejects) run.rejectsByReason[r.reason] = (run.rejectsByReason[r.reason] ?? 0) + 1;
    }
    for (const o of outcomes) {
      if (o.kind === 'dead-letter') {
        this.counts.deadLettered += 1;
        await this.#options.alerts?.notify({
          kind: 'dead_lettered',
          pipeline: this.#options.name,
          runId: run.id,
          reason: o.reason,
          message: `A change on queue \`${this.#options.queue}\` was dead-lettered: ${o.description}`,
          counts: { rejected: 1 },
          inspect: `ferry queue dead-letters ${this.#options.queue}`,
          at: new Date().toISOString(),
        });
      } else if (o.kind === 'abandon') this.counts.abandoned += 1;
    }
    return outcomes;
  }

  close(): void {
    const run = this.#run;
    if (!run) return;
    this.#run = undefined;
    this.#options.state.finishRun(run.id, {
      status: 'succeeded',
      counts: run.counts,
      rejectsByReason: run.rejectsByReason,
      metrics: { queue: this.#options.queue, outbound: this.counts },
      markProcessed: false,
      moveCursor: false,
    });
  }

  async #deliver(
    lane: string,
    m: ReceivedMessage,
    change: OutboundChangeMessage,
    rejects: RejectRecord[],
  ): Promise<DeliveryOutcome> {
    const { state } = this.#options;
    const last = state.getValue(DELIVERED, lane);
    const at = new Date(change.changedAt).toISOString();
    if (last !== null && at <= last) {
      this.counts.stale += 1;
      this.#run!.counts.skippedStale += 1;
      return { kind: 'complete', result: 'stale' };
    }
    const attempts = this.#options.target.attempts ?? 3;
    let lastError = '';
    for (let attempt = 1; attempt <= attempts; attempt++) {
      try {
        await this.#post(m, change);
        state.setValue(DELIVERED, lane, at);
        this.counts.delivered += 1;
        this.#run!.counts.upserted += 1;
        return { kind: 'complete', result: 'delivered' };
      } catch (error) {
        if (error instanceof Permanent) {
          const reason = `target.http_${error.status}`;
          const description = `The target answered ${error.status} for change \`${m.messageId}\` of \`${lane}\`: ${error.body.slice(0, 300)}`;
          rejects.push(this.#reject(m, reason, description, change, { status: error.status, body: error.body }));
          return { kind: 'dead-letter', reason, description };
        }
        lastError = describeError(error);
        if (attempt < attempts) await new Promise((r) => setTimeout(r, 50 * 2 ** attempt));
      }
    }
    const outcome = this.#retry(m, 'target.unavailable', lastError);
    if (outcome.kind === 'dead-letter')
      rejects.push(this.#reject(m, 'message.max_deliveries', outcome.description, change));
    return outcome;
  }

  async #post(m: ReceivedMessage, change: OutboundChangeMessage): Promise<void> {
    const target = this.#options.target;
    this.counts.attempts += 1;
    const headers: Record<string, string> = {
      'content-type': 'application/json',
      // Lets the target drop a repeat of a delivery it already applied (a timeout after it accepted).
      'idempotency-key': m.messageId,
    };
    if (target.authHeader && target.authValue) headers[target.authHeader] = target.authValue;
    let response: Response;
    try {
      response = await (this.#options.fetch ?? fetch)(target.url, {
        method: 'POST',
        headers,
        body: JSON.stringify({
          recordId: change.recordId,
          table: change.table,
          changedAt: change.changedAt,
          columns: change.columns,
        }),
        signal: AbortSignal.timeout(target.timeoutMs ?? 10_000),
      });
    } catch (error) {
      throw new Transient(`No answer from the target: ${describeError(error)}`);
    }
    const text = await response.text().catch(() => '');
    if (response.ok) return;
    if (response.status === 408 || response.status === 429 || response.status >= 500)
      throw new Transient(`The target answered ${response.status}.`);
    throw new Permanent(`The target refused the change (${response.status}).`, response.status, text);
  }

  #retry(m: ReceivedMessage, reason: string, description: string): DeliveryOutcome {
    if (m.deliveryCount >= this.#options.maxDeliveryCount)
      return {
        kind: 'dead-letter',
        reason: MAX_DELIVERY_COUNT_EXCEEDED,
        description: `Failed on all ${m.deliveryCount} deliveries; last error (${reason}): ${description}`,
      };
    const backoff = this.#options.backoffMs ?? ((n: number) => Math.min(60_000, 1000 * 2 ** (n - 1)));
    return { kind: 'abandon', reason, description, redeliverAfterMs: backoff(m.deliveryCount) };
  }

  #reject(m: ReceivedMessage, reason: string, message: string, body: unknown, serviceError?: unknown): RejectRecord {
    const change = body as Partial<OutboundChangeMessage> | null;
    return {
      stage: 'deliver-outbound',
      reason,
      message,
      key: change?.recordId ?? null,
      sourceFile: messageSourceFile(this.#options.queue, m.messageId),
      rowNumber: m.sequenceNumber,
      row: null,
      requestPayload: body,
      ...(serviceError ? { serviceError } : {}),
    };
  }

  #ensureRun(): void {
    if (this.#run) return;
    const run = this.#options.state.startRun({
      pipeline: this.#options.name,
      mode: 'listen',
      window: { source: `queue:${this.#options.queue}`, items: [], cursorBefore: null, cursorAfter: null },
      holder: `${os.hostname()}:${process.pid}`,
    });
    this.#run = { id: run.id, counts: emptyCounts(), rejectsByReason: {} };
  }
}
