import { EXIT, UsageError } from '../../core/errors.js';
import type { Lake } from '../../core/lake.js';
import { parseDuration } from '../../core/pipeline.js';

import type { WindowItem } from '../../core/window.js';
import { DuckDbStaging, openRunStaging } from '../../dialects/duckdb/driver.js';
import { type BackfillOptions, planBackfill, runBackfill } from '../../schedule/backfill.js';
import { stageRegistry } from '../../stages/registry.js';
import type { Command } from '../command.js';
import { countsText } from '../format.js';
import { announceLakeTarget, openDataverse, openLake, openState, pipelinesFor } from '../services.js';

/**
 * `ferry backfill <pipeline> --from --to`: reprocesses a past range window by window without moving the cursor;
 * the same command after a kill continues with the first unfinished window.
 */
export const backfillCommand: Command = {
  name: 'backfill',
  summary: 'reprocess the inputs of a time range, window by window (cursor untouched, resumable)',
  usage: 'backfill <pipeline> --from <time> --to <time> [--window 15m] [--dry-run] [--json]',
  options: {
    from: { type: 'string', valueName: '<time>', description: 'start of the range (ISO date or time), inclusive' },
    to: { type: 'string', valueName: '<time>', description: 'end of the range, exclusive' },
    window: {
      type: 'string',
      valueName: '<duration>',
      check: 'duration',
      defaultText: '15m',
      description: 'window size',
    },
    'dry-run': {
      type: 'boolean',
      default: false,
      description: 'list the windows with inputs and their row counts; change nothing',
    },
  },
  description:
    'Reprocesses the inputs of each window without moving the cursor. Killed or failed, the same command continues with the first window not done.',
  examples: [
    {
      text: 'What one day would reprocess:',
      command: 'ferry backfill accounts-inbound --from 2026-11-01 --to 2026-11-02 --dry-run',
    },
    {
      text: 'Reprocess it in hourly windows:',
      command: 'ferry backfill accounts-inbound --from 2026-11-01 --to 2026-11-02 --window 1h --target prod',
    },
  ],
  async run(input) {
    const [name, ...extra] = input.positionals;
    if (!name || extra.length)
      throw new UsageError('Name exactly one pipeline: ferry backfill <pipeline> --from <time> --to <time>.');
    const from = input.values.from;
    const to = input.values.to;
    if (typeof from !== 'string' || typeof to !== 'string') {
      throw new UsageError('Give the range: --from <time> --to <time>, e.g. --from 2026-11-01 --to 2026-11-02.');
    }
    const windowMs = parseDuration(typeof input.values.window === 'string' ? input.values.window : '15m');
    const [def] = await pipelinesFor(input.pipelinesDir, [name], input.log);
    const state = openState(input.config);
    const lake = openLake(input.config);
    const base = {
      config: input.config,
      lake,
      state,
      registry: stageRegistry,
      log: input.log,
      signal: input.signal,
      from,
      to,
      windowMs,
    };
    try {
      if (input.values['dry-run']) {
        const plan = await planBackfill(def!, base);
        const counter = await RowCounter.open(lake);
        try {
          let files = 0;
          let rows = 0;
          // Runs of windows without inputs print as one line (a day of 15-minute windows is 96 of them).
          let empty:
            | { first: (typeof plan.windows)[number]; last: (typeof plan.windows)[number]; n: number }
            | undefined;
          const flushEmpty = () => {
            if (!empty) return;
            const { first, last, n } = empty;
            input.print(
              n === 1
                ? `window ${first.index + 1}/${plan.windows.length} ${first.from}..${first.to}: no inputs`
                : `windows ${first.index + 1}–${last.index + 1}/${plan.windows.length} ${first.from}..${last.to}: no inputs (${n} windows)`,
            );
            empty = undefined;
          };
          for (const w of plan.windows) {
            const items = [];
            for (const item of w.items) {
              const n = await counter.count(item);
              if (n !== null) rows += n;
              items.push({ id: item.id, size: item.size ?? null, timestamp: item.timestamp ?? null, rows: n });
            }
            files += items.length;
            if (input.json)
              input.print(JSON.stringify({ window: w.index, from: w.from, to: w.to, done: w.done, items }));
            else if (items.length === 0) {
              empty = empty ? { ...empty, last: w, n: empty.n + 1 } : { first: w, last: w, n: 1 };
            } else {
              flushEmpty();
              input.print(
                `window ${w.index + 1}/${plan.windows.length} ${w.from}..${w.to}${w.done ? ' (done earlier)' : ''}: ${items.length} item(s)`,
              );
              for (const i of items) input.print(`    ${i.id}${i.rows === null ? '' : ` ${i.rows} rows`}`);
            }
          }
          if (!input.json) flushEmpty();
          const summary = {
            dryRun: true,
            pipeline: def!.name,
            job: plan.job,
            windows: plan.windows.length,
            items: files,
            rows,
          };
          input.print(
            input.json
              ? JSON.stringify(summary)
              : `plan: ${plan.windows.length} window(s), ${files} item(s), ${rows} row(s); nothing changed (dry run).`,
          );
          return 0;
        } finally {
          await counter.close();
        }
      }
      if (def!.direction !== 'inbound') announceLakeTarget(input.config, input.log);
      const dataverse = def!.direction === 'inbound' ? await openDataverse(input.config, input.log) : undefined;
      try {
        const options: BackfillOptions = {
          ...base,
          services: dataverse
            ? { dataverse: dataverse.endpoint, openStaging: openRunStaging }
            : { openStaging: openRunStaging },
          onWindow: (w) => {
            if (input.json) {
              input.print(
                JSON.stringify({
                  window: w.index,
                  from: w.from,
                  to: w.to,
                  outcome: w.outcome,
                  runId: w.runId,
                  items: w.items,
                  counts: w.counts,
                  ...(w.error ? { error: w.error } : {}),
                }),
              );
            } else {
              const counts = w.counts ? `, ${countsText(w.counts)}` : '';
              input.print(
                `window ${w.index + 1} ${w.from}..${w.to}: ${w.outcome}, run ${w.runId ?? '-'}, ${w.items} item(s)${counts}${w.error ? ` — ${w.error.message}` : ''}`,
              );
            }
          },
        };
        const result = await runBackfill(def!, options);
        const summary = {
          pipeline: result.pipeline,
          job: result.job,
          status: result.status,
          windows: result.windows.length,
        };
        input.print(
          input.json ? JSON.stringify(summary) : `backfill ${result.status}: ${result.windows.length} window(s).`,
        );
        if (result.status === 'succeeded') return EXIT.ok;
        if (result.status === 'rejects_exceeded') return EXIT.rejectThresholdExceeded;
        const last = result.windows.at(-1);
        return result.status === 'stopped' || last?.error?.retryable ? EXIT.temporaryFailure : EXIT.failed;
      } finally {
        await dataverse?.close();
      }
    } finally {
      state.close();
    }
  },
};

/** Counts the rows of Parquet items from their footers (cheap); other items get `null`. */
class RowCounter {
  #lake: Lake;
  #duck: DuckDbStaging | undefined;

  private constructor(lake: Lake, duck: DuckDbStaging | undefined) {
    this.#lake = lake;
    this.#duck = duck;
  }

  static async open(lake: Lake): Promise<RowCounter> {
    return new RowCounter(lake, await DuckDbStaging.open({ memoryLimit: '256MB' }).catch(() => undefined));
  }

  async count(item: WindowItem): Promise<number | null> {
    if (!this.#duck || !item.id.endsWith('.parquet')) return null;
    try {
      const local = await this.#lake.toLocalPath(item.id);
      const [row] = await this.#duck.all<{ n: bigint }>('SELECT num_rows AS n FROM parquet_file_metadata(?)', [local]);
      return row ? Number(row.n) : null;
    } catch {
      return null;
    }
  }

  async close(): Promise<void> {
    await this.#duck?.close();
  }
}
