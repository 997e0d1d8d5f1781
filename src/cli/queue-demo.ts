import fs from 'node:fs/promises';
import path from 'node:path';
import { EmbeddedQueueTransport } from '../connectors/queue/embedded-queue-transport.js';
import type { FerryConfig } from '../core/config.js';
import type { Logger } from '../core/log.js';
import type { PipelineDefinition } from '../core/pipeline.js';
import type { OutgoingMessage } from '../core/queue-transport.js';
import type { DataverseEndpoint } from '../core/stage.js';
import type { StateStore } from '../core/state-store.js';
import { type DeliveryOutcome, InboundMessageHandler } from '../events/inbound-message-handler.js';
import { listenToQueue } from '../events/session-listener.js';

/** The example change the demo messages are made from (also the `ferry queue send` example). */
const EXAMPLE = 'fixtures/queue/account-change.json';
export const DEMO_QUEUE = 'demo-accounts';

interface DemoMessage {
  readonly label: string;
  readonly message: OutgoingMessage;
}

/**
 * The event-driven part of `ferry demo`: a handful of change messages for `accounts-inbound` through the embedded
 * queue — a plain change, an out-of-order pair (the newer change sent first; the older one arrives later), a change
 * the mapping rejects and a malformed message — applied by the same handler as `ferry listen`, and what became of
 * each. Returns the lines to print.
 */
export async function runQueueDemo(options: {
  readonly config: FerryConfig;
  readonly state: StateStore;
  readonly dataverse: DataverseEndpoint;
  readonly pipelines: readonly PipelineDefinition[];
  readonly log: Logger;
}): Promise<string[]> {
  const def = options.pipelines.find((p) => p.name === 'accounts-inbound');
  if (!def) return ['queue demo: skipped (no accounts-inbound pipeline)'];
  const example = JSON.parse(await fs.readFile(path.resolve(EXAMPLE), 'utf8')) as {
    columns: Record<string, unknown>;
  };
  const change = (label: string, no: string, at: string, columns: Record<string, unknown>): DemoMessage => ({
    label,
    message: {
      sessionId: no,
      body: {
        type: 'ferry.inbound.change',
        pipeline: def.name,
        key: { account_no: no },
        changedAt: at,
        columns: { ...example.columns, ...columns },
      },
    },
  });
  const first: DemoMessage[] = [
    change('new account Q-1001', 'Q-1001', '2026-12-06T09:30:00Z', { account_name: 'Queue Example Ltd' }),
    change('Q-1002, newer change (sent first)', 'Q-1002', '2026-12-06T10:00:00Z', {
      account_name: 'Late Pair Ltd (newer)',
    }),
    change('Q-1003, name over MaxLength 160', 'Q-1003', '2026-12-06T09:30:00Z', { account_name: 'N'.repeat(200) }),
    { label: 'malformed message', message: { sessionId: 'junk', body: { hello: 'not a change' } } },
  ];
  const late = [
    change('Q-1002, older change (arrives late)', 'Q-1002', '2026-12-06T09:50:00Z', {
      account_name: 'Late Pair Ltd (older)',
    }),
  ];
  const transport = EmbeddedQueueTransport.openIn(options.config.state, {
    lockDurationMs: 30_000,
    maxDeliveryCount: 3,
  });
  const handler = await InboundMessageHandler.open({
    definition: def,
    config: options.config,
    state: options.state,
    dataverse: options.dataverse,
    log: options.log,
    queue: DEMO_QUEUE,
    maxDeliveryCount: 3,
  });
  const lines = [
    `queue demo: ${first.length + late.length} messages through the embedded queue \`${DEMO_QUEUE}\` → ${def.name}`,
  ];
  try {
    for (const round of [first, late]) {
      const ids = new Map<string, string>();
      const sent = round.map((m, i) => ({ ...m.message, messageId: `demo-${Date.now()}-${i}-${m.message.sessionId}` }));
      for (const [i, m] of sent.entries()) ids.set(m.messageId, round[i]!.label);
      await transport.send(DEMO_QUEUE, sent);
      const outcomes = new Map<string, DeliveryOutcome>();
      await listenToQueue({
        transport,
        queue: DEMO_QUEUE,
        handler,
        log: options.log,
        pollMs: 100,
        stopWhenIdleMs: 200,
        onSettled: (m, o) => {
          if (ids.has(m.messageId)) outcomes.set(m.messageId, o);
        },
      });
      for (const [id, label] of ids) lines.push(`  ${label.padEnd(38)} → ${describeOutcome(outcomes.get(id))}`);
    }
    const q2 = await readName(options.dataverse, 'Q-1002');
    lines.push(`  Dataverse now has Q-1002 name = ${JSON.stringify(q2)} (the newer change kept)`);
    if (handler.runId)
      lines.push(`  Inspect: npx ferry rejects --run ${handler.runId}; npx ferry queue dead-letters ${DEMO_QUEUE}`);
  } finally {
    await handler.close();
    await transport.close();
  }
  return lines;
}

function describeOutcome(o: DeliveryOutcome | undefined): string {
  if (!o) return 'not settled (still on the queue)';
  if (o.kind === 'complete')
    return o.result === 'upserted'
      ? 'upserted'
      : o.result === 'stale'
        ? 'skipped: not newer than the change already applied'
        : o.result === 'superseded'
          ? 'skipped: a newer change came with it'
          : o.result;
  if (o.kind === 'abandon') return `given back for retry (${o.reason})`;
  return `dead-lettered [${o.reason}] and kept in the error store`;
}

async function readName(dataverse: DataverseEndpoint, accountNumber: string): Promise<unknown> {
  try {
    const res = await fetch(
      `${dataverse.url}/api/data/v9.2/accounts?$select=name&$filter=accountnumber eq '${accountNumber}'`,
      {
        headers: {
          Accept: 'application/json',
          'OData-Version': '4.0',
          ...(dataverse.getToken ? { Authorization: `Bearer ${await dataverse.getToken()}` } : {}),
        },
      },
    );
    const body = (await res.json()) as { value?: Array<{ name?: unknown }> };
    return body.value?.[0]?.name ?? null;
  } catch {
    return null;
  }
}
