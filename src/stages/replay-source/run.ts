import fs from 'node:fs/promises';
import type { StageImpl } from '../../core/stage.js';
import { STAGING_TABLES } from '../../core/staging-contract.js';
import { copyToParquetSql, countRowsSql, replaySql } from '../../dialects/duckdb/staging.js';
import { REPLAY_SOURCE, type ReplaySourceSpec } from './spec.js';

/** Stands in for the source stage of a replay: fills `staged` with exactly the rows to re-send, lineage kept. */
export const replaySourceStage: StageImpl<ReplaySourceSpec> = {
  kind: REPLAY_SOURCE,
  async run(spec, ctx) {
    const staged = STAGING_TABLES.staged;
    if (spec.stagedFile) {
      // Same values and lineage as the original run: the conversion builds the same request.
      await ctx.staging.run(replaySql.placesTable);
      for (const insert of replaySql.insertPlaces(spec.places)) await ctx.staging.run(insert);
      await ctx.staging.run(
        replaySql.stageFromParquet(
          staged,
          spec.stagedFile,
          spec.rowIds.map((id) => BigInt(id)),
        ),
      );
    } else {
      // No staged input kept: rebuild the rows from what the error store holds (source values, lineage).
      const file = ctx.runFolder.replayRowsFile;
      const lines = spec.rows.map((r, i) =>
        JSON.stringify({
          ...r.values,
          __row_id: i + 1,
          __run_id: ctx.runId,
          __source_file: r.sourceFile,
          __row_number: r.rowNumber,
        }),
      );
      await fs.writeFile(file, `${lines.join('\n')}\n`);
      await ctx.staging.run(replaySql.stageFromJsonLines(staged, file));
    }
    const [row] = await ctx.staging.all<{ n: bigint }>(countRowsSql(staged));
    const n = Number(row?.n ?? 0);
    ctx.counts.read += n;
    ctx.counts.staged += n;
    ctx.metrics.replayOf = spec.replayOf;
    ctx.metrics.replaySource = spec.source;
    if (spec.metadataSnapshot) ctx.metrics.metadataSnapshot = spec.metadataSnapshot;
    ctx.handoff.staged = { relation: staged, producer: REPLAY_SOURCE };
    ctx.progress.update('staging', ctx.counts);
    // Keep this run's input too (whatever the outcome), so rows rejected again can be replayed from it.
    const target = ctx.runFolder.stagedInputFile;
    await ctx.staging.run(copyToParquetSql(staged, `${target}.tmp`));
    await fs.rename(`${target}.tmp`, target);
  },
};
