import fs from 'node:fs/promises';
import type { StageImpl } from '../../core/stage.js';
import { STAGING_TABLES } from '../../core/staging-contract.js';
import { replaySql } from '../../dialects/duckdb/staging.js';
import { REPLAY_OUTCOME, type ReplayedRow, type ReplayOutcomeSpec } from './spec.js';

/** Runs last in a replay: notes which replayed rows Dataverse accepted (the upsert stage hands them over). */
export const replayOutcomeStage: StageImpl<ReplayOutcomeSpec> = {
  kind: REPLAY_OUTCOME,
  async run(_spec, ctx) {
    const upserted = ctx.handoff.upserted;
    if (!upserted) return;
    const rows = await ctx.staging.all<{ f: string | null; n: bigint | null; id: bigint }>(
      replaySql.accepted(upserted.relation, STAGING_TABLES.staged),
    );
    const passed: ReplayedRow[] = rows.map((r) => ({
      file: r.f,
      row: r.n === null ? null : Number(r.n),
      rowId: String(r.id),
    }));
    await fs.writeFile(ctx.runFolder.replayOutcomeFile, JSON.stringify(passed));
    ctx.metrics.replayUpserted = rows.length;
  },
};
