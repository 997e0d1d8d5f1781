import path from 'node:path';

/**
 * The one owner of where a run keeps its files under the state folder. Every path of a run's folder (and of the
 * state kept for later runs: applied versions, metadata snapshots) is computed here, so the runner, the stages,
 * replay and the queue listener agree without each joining names of its own.
 *
 * ```
 * <state>/runs/<runId>/definition.json     the definition the run used (replay builds the same requests from it)
 * <state>/runs/<runId>/staged.parquet      the staged inbound rows of a run with rejects (replay re-reads them)
 * <state>/runs/<runId>/replay-rows.jsonl   a replay's rows rebuilt from the error store (no staged input kept)
 * <state>/runs/<runId>/replay-outcome.json a replay's accepted rows (file and row number), read after the run
 * <state>/runs/<runId>/staging.duckdb      the run's staging database (deleted when the run ends)
 * <state>/runs/<runId>/spill/              the staging engine's spill folder (deleted with it)
 * <state>/metadata-snapshots/<hash>/       content-addressed copies of the metadata snapshots runs used
 * <state>/versions/<pipeline>.parquet      the versions applied per key of an inbound pipeline
 * ```
 */
export interface RunFolder {
  readonly dir: string;
  readonly definitionFile: string;
  readonly stagedInputFile: string;
  readonly replayRowsFile: string;
  readonly replayOutcomeFile: string;
  readonly stagingDatabase: string;
  readonly spillDir: string;
}

/** The folder of run `runId` under the state folder `stateDir`. */
export function runFolder(stateDir: string, runId: string): RunFolder {
  const dir = path.join(stateDir, 'runs', runId);
  return {
    dir,
    definitionFile: path.join(dir, 'definition.json'),
    stagedInputFile: path.join(dir, 'staged.parquet'),
    replayRowsFile: path.join(dir, 'replay-rows.jsonl'),
    replayOutcomeFile: path.join(dir, 'replay-outcome.json'),
    stagingDatabase: path.join(dir, 'staging.duckdb'),
    spillDir: path.join(dir, 'spill'),
  };
}

/** Where the content-addressed copy `id` of the metadata snapshots is kept. */
export function metadataSnapshotDir(stateDir: string, id: string): string {
  return path.join(stateDir, 'metadata-snapshots', id);
}

/** Where the versions applied per key are kept for an inbound pipeline. */
export function appliedVersionsFile(stateDir: string, pipeline: string): string {
  return path.join(stateDir, 'versions', `${pipeline}.parquet`);
}
