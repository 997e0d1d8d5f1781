import type { RunCounts } from '../core/counts.js';
import { describeError, UsageError } from '../core/errors.js';
import type { Logger } from '../core/log.js';
import type { StateStore } from '../core/state-store.js';

export const ALERT_KINDS = ['run_failed', 'rejects_exceeded', 'stale', 'dead_lettered'] as const;
export type AlertKind = (typeof ALERT_KINDS)[number];

/** One alert as posted to the webhook (the JSON body). */
export interface Alert {
  readonly kind: AlertKind;
  readonly pipeline: string;
  /** The run that caused it; for `stale`, the last run that completed (null when none ever did). */
  readonly runId: string | null;
  /** Stable reason code, e.g. `dataverse.auth`, `rejects.threshold`, `pipeline.stale`. */
  readonly reason: string;
  readonly message: string;
  readonly counts: Partial<RunCounts>;
  /** A command an operator types to look into it. */
  readonly inspect: string;
  readonly at: string;
}

/** Where alerts go. The scheduler calls `notify` for problems and `recovered` when a pipeline completes a run. */
export interface AlertSink {
  /** Sends the alert unless the same one was already sent; returns whether it was sent now. */
  notify(alert: Alert): Promise<boolean>;
  /** A pipeline completed a run: later failures alert again. */
  recovered(pipeline: string): void;
}

export interface WebhookAlertsOptions {
  /** The webhook URL (`FERRY_ALERT_WEBHOOK`). */
  readonly url: string;
  /** Dedupe memory lives in the state store, so a restarted scheduler does not repeat alerts. */
  readonly state: StateStore;
  readonly log: Logger;
  /** Request timeout. Default `10000` ms. */
  readonly timeoutMs?: number;
  readonly fetch?: typeof fetch;
}

const NAMESPACE = 'alerts';

/**
 * Posts one JSON alert per problem to a webhook (a ticketing system's intake, a chat hook). The same problem is
 * posted once: the dedupe key is the pipeline and kind, the value a fingerprint (the error code, or the last
 * completed run for staleness), kept in the state store's kv slots until the pipeline recovers.
 */
export class WebhookAlerts implements AlertSink {
  #url: string;
  #state: StateStore;
  #log: Logger;
  #timeoutMs: number;
  #fetch: typeof fetch;

  constructor(options: WebhookAlertsOptions) {
    try {
      new URL(options.url);
    } catch {
      throw new UsageError(
        `Alert webhook \`${options.url}\` is not a URL; set FERRY_ALERT_WEBHOOK (or --alert-webhook) to e.g. \`https://hooks.example/ferry\`.`,
      );
    }
    this.#url = options.url;
    this.#state = options.state;
    this.#log = options.log;
    this.#timeoutMs = options.timeoutMs ?? 10_000;
    this.#fetch = options.fetch ?? fetch;
  }

  async notify(alert: Alert): Promise<boolean> {
    const key = `${alert.pipeline}|${alert.kind}`;
    const fingerprint = alertFingerprint(alert);
    if (this.#state.getValue(NAMESPACE, key) === fingerprint) return false;
    try {
      const response = await this.#fetch(this.#url, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(alert),
        signal: AbortSignal.timeout(this.#timeoutMs),
      });
      if (!response.ok) throw new Error(`HTTP ${response.status}`);
      await response.body?.cancel();
    } catch (error) {
      // Not remembered, so the next tick tries again: an alert that never arrived is worse than a late one.
      this.#log.warn(
        `Could not post the \`${alert.kind}\` alert of \`${alert.pipeline}\` to the webhook: ${describeError(error)}; will retry next tick.`,
      );
      return false;
    }
    this.#state.setValue(NAMESPACE, key, fingerprint);
    this.#log.info(`Alert sent: ${alert.kind} ${alert.pipeline}`, {
      pipeline: alert.pipeline,
      runId: alert.runId,
      reason: alert.reason,
    });
    return true;
  }

  recovered(pipeline: string): void {
    for (const kind of ALERT_KINDS) this.#state.setValue(NAMESPACE, `${pipeline}|${kind}`, null);
  }
}

/** What makes two alerts "the same": a pipeline failing every tick for one reason posts once. */
export function alertFingerprint(alert: Alert): string {
  if (alert.kind === 'stale') return `stale:${alert.runId ?? 'never'}`;
  // Dead letters: once per reason and listener run, so a queue listener that runs for days alerts again later.
  if (alert.kind === 'dead_lettered') return `${alert.kind}:${alert.reason}:${alert.runId ?? ''}`;
  return `${alert.kind}:${alert.reason}`;
}

/** An alert sink that drops everything (no webhook configured). */
export const noAlerts: AlertSink = {
  notify: async () => false,
  recovered() {},
};
