import type { StageSpecBase } from '../../core/pipeline.js';
import type { StageKindSpec } from '../stage-kind.js';

/** The stage kind: runs last in a replay and notes which replayed rows Dataverse accepted (built by `ferry replay`). */
export const REPLAY_OUTCOME = 'replay-outcome' as const;

export interface ReplayOutcomeSpec extends StageSpecBase {
  readonly kind: typeof REPLAY_OUTCOME;
}

/** One row a replay sent that Dataverse accepted, by its place in the source. */
export interface ReplayedRow {
  readonly file: string | null;
  readonly row: number | null;
  readonly rowId: string;
}

/** Writes the replayed rows Dataverse accepted to the run folder's `replay-outcome.json` ({@link ReplayedRow}[]). */
export function replayOutcome(): ReplayOutcomeSpec {
  return { kind: REPLAY_OUTCOME };
}

/** What `replay-outcome` declares to the registries. */
export const replayOutcomeKind: StageKindSpec<ReplayOutcomeSpec> = {
  kind: REPLAY_OUTCOME,
  parse: () => replayOutcome(),
  stagedColumns: () => [],
  synapseRole: null,
};
