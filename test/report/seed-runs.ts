import Database from 'better-sqlite3';
import { SqliteStateStore } from '../../src/connectors/state/sqlite-state-store.js';
import { emptyCounts } from '../../src/core/counts.js';
import type { RejectRecord } from '../../src/core/rejects.js';

/**
 * Seeds a state store with six hours of 15-minute runs of the demo pipelines, as the runner records them: counts,
 * writer metrics (requests, 429s by kind, Retry-After, server time), stage timings, rejects with reasons and rows,
 * held-back files, one failed run and empty scheduled ticks. Times end at `endMs`. Deterministic.
 */
export function seedRuns(stateDir: string, endMs: number): { runs: number; rejects: number } {
  const state = SqliteStateStore.openIn(stateDir);
  const times: Array<{ id: string; startedAt: string; finishedAt: string }> = [];
  let rejects = 0;
  let seed = 7;
  const random = () => {
    seed = (seed * 16807) % 2147483647;
    return (seed - 1) / 2147483646;
  };
  const inbound = [
    { pipeline: 'accounts-inbound', table: 'account', base: 2400 },
    { pipeline: 'contacts-inbound', table: 'contact', base: 5200 },
    { pipeline: 'opportunities-inbound', table: 'opportunity', base: 900 },
  ];
  const reasons = ['string.too_long', 'choice.unknown_label', 'lookup.target_missing', 'number.out_of_range'];
  const ticks = 24;
  for (let tick = 0; tick < ticks; tick++) {
    const tickMs = endMs - (ticks - tick) * 900_000;
    let offset = 2_000;
    for (const p of inbound) {
      // A quiet tick now and then: nothing arrived, the scheduler records an empty run.
      const empty = (tick + p.base) % 7 === 3;
      const rows = empty ? 0 : Math.round(p.base * (0.5 + random()) * (tick === 17 ? 3 : 1));
      const run = state.startRun({
        pipeline: p.pipeline,
        mode: 'scheduled',
        window: {
          source: `lake:inbound/${p.table}`,
          items: empty
            ? []
            : [{ id: `inbound/${p.table}/${tick}.parquet` }, { id: `inbound/${p.table}/${tick}b.parquet` }],
          cursorBefore: null,
          cursorAfter: null,
        },
        holder: 'seed:1',
      });
      const counts = emptyCounts();
      const metrics: Record<string, unknown> = {};
      let status: 'succeeded' | 'failed' = 'succeeded';
      let durationMs = 400;
      const byReason: Record<string, number> = {};
      if (!empty) {
        const rejected = Math.round(rows * 0.004 * random());
        const throttledExec = tick === 17 ? 6 : random() < 0.15 ? 1 : 0;
        const throttledReq = tick === 18 && p.table === 'contact' ? 2 : 0;
        const serverMsPerRow = 70 + 20 * random();
        const rowsPerSec = Math.round(180 + 120 * random() - throttledExec * 12);
        durationMs = Math.round((rows / rowsPerSec) * 1000 + 2500);
        Object.assign(counts, {
          read: rows,
          staged: rows,
          converted: rows - rejected,
          upserted: rows - rejected,
          rejected,
        });
        const records: RejectRecord[] = Array.from({ length: rejected }, (_, i) => ({
          stage: 'convert-to-dataverse',
          reason: reasons[(i + tick) % reasons.length]!,
          message: `Column \`name\` value \`${'x'.repeat(5)}, "quoted"\` is not valid (${i}); fix the source.`,
          key: `${p.table}number=${p.table.slice(0, 1).toUpperCase()}${tick}-${i}`,
          sourceFile: `inbound/${p.table}/${tick}.parquet`,
          rowNumber: 10 + i,
          row: { name: 'x' },
        }));
        state.addRejects(run.id, p.pipeline, records);
        rejects += records.length;
        for (const r of records) byReason[r.reason] = (byReason[r.reason] ?? 0) + 1;
        Object.assign(metrics, {
          stageMs: {
            'read-parquet-deltas': Math.round(300 + rows * 0.02),
            'convert-to-dataverse': Math.round(900 + rows * 0.08),
            'upsert-dataverse': Math.round((rows / rowsPerSec) * 1000),
            commitHooks: 40,
          },
          filesLoaded: 2,
          filesHeldBack: tick === 9 && p.table === 'contact' ? 1 : 0,
          ...(tick === 9 && p.table === 'contact' ? { heldBackFiles: [`inbound/${p.table}/${tick}b.parquet`] } : {}),
          mode: 'upsert-multiple',
          requests: Math.ceil(rows / 100) + 2 + throttledExec + throttledReq,
          throttled429: { requests: throttledReq, executionTime: throttledExec, concurrency: 0, unknown: 0 },
          throttled429Total: throttledExec + throttledReq,
          maxRetryAfterSec: throttledExec ? 18 + 4 * throttledExec : throttledReq ? 6 : 0,
          serverTimeMs: Math.round((rows - rejected) * serverMsPerRow),
          serverTimeRows: rows - rejected,
          meanServerTimeMs: serverMsPerRow * 100,
          rowsPerSec,
          batchSize: 100,
          executionBudgetPerSec: 4,
        });
        if (tick === 12 && p.table === 'opportunity') {
          status = 'failed';
          counts.upserted = 0;
        }
      }
      const finished = state.finishRun(run.id, {
        status,
        counts,
        rejectsByReason: byReason,
        metrics,
        markProcessed: false,
        moveCursor: false,
        ...(status === 'failed'
          ? { error: { code: 'dataverse.unavailable', message: 'Dataverse answered 503 five times; try again later.' } }
          : {}),
      });
      const startedMs = tickMs + offset;
      offset += durationMs + 500;
      times.push({
        id: finished.id,
        startedAt: new Date(startedMs).toISOString(),
        finishedAt: new Date(startedMs + durationMs).toISOString(),
      });
    }
    // The outbound pipeline: Synapse Link folders to Parquet.
    const run = state.startRun({
      pipeline: 'accounts-outbound',
      mode: 'scheduled',
      window: {
        source: 'synapse-link:account',
        items: [{ id: `folder-${tick}` }],
        cursorBefore: null,
        cursorAfter: null,
      },
      holder: 'seed:1',
    });
    const read = Math.round(3000 * (0.6 + random()));
    const durationMs = Math.round(900 + read * 0.4);
    const finished = state.finishRun(run.id, {
      status: 'succeeded',
      counts: { ...emptyCounts(), read, staged: read, written: read * 2 },
      rejectsByReason: {},
      metrics: {
        stageMs: {
          'read-synapse-link': Math.round(durationMs * 0.55),
          'run-sql-extract': 80,
          'write-parquet': Math.round(durationMs * 0.4),
        },
      },
      markProcessed: false,
      moveCursor: false,
    });
    times.push({
      id: finished.id,
      startedAt: new Date(tickMs + offset + 1000).toISOString(),
      finishedAt: new Date(tickMs + offset + 1000 + durationMs).toISOString(),
    });
  }
  state.close();
  // The store stamps runs with the wall clock; spread them over the six hours as a scheduler would have.
  const db = new Database(`${stateDir}/ferry.sqlite`);
  const update = db.prepare('UPDATE runs SET started_at = ?, finished_at = ?, duration_ms = ? WHERE id = ?');
  db.transaction(() => {
    for (const t of times)
      update.run(t.startedAt, t.finishedAt, Date.parse(t.finishedAt) - Date.parse(t.startedAt), t.id);
  })();
  db.close();
  return { runs: times.length, rejects };
}
