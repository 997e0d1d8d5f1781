import { FerryError } from './errors.js';

/*
 * What the stages of one run hand to each other, in one typed object (`ctx.handoff`) instead of loose keys. Each
 * field names the stage kinds that write it and those that read it; a reader that finds its field unset fails
 * with a message naming the stage that should come first. The data itself stays in the staging engine: the
 * handoff carries relation names and the small facts about them.
 */

/** The staged rows of an inbound run: the `staged` relation (columns in src/core/staging-contract.ts). */
export interface StagedRows {
  /** The relation the conversion reads. */
  readonly relation: string;
  /** Kind of the stage that staged it (the runner asks it to repair its input when it cannot be read). */
  readonly producer: string;
}

/** Where converted rows go in Dataverse: the target table's facts from its metadata snapshot. */
export interface DataverseTarget {
  /** Logical name, e.g. `account`. */
  readonly table: string;
  readonly entitySetName: string;
  readonly primaryIdAttribute: string;
  /** The alternate key's name, and its attributes in key order. */
  readonly keyName: string;
  readonly keyAttributes: readonly string[];
  /** False when the snapshot says the table has no bulk messages (`$batch` is used). */
  readonly supportsBulk: boolean;
  /** `statecode` value → its default `statuscode` (closing records needs them); empty without a statecode. */
  readonly stateDefaults: ReadonlyArray<{ readonly state: number; readonly status: number }>;
}

/** The converted rows of an inbound run: the `converted` relation and where they go. */
export interface ConvertedRows {
  readonly relation: string;
  readonly target: DataverseTarget;
}

/** The rows Dataverse accepted: a relation of `__row_id`s (`upserted`). */
export interface UpsertedRows {
  readonly relation: string;
  readonly rows: number;
}

/** One staged Synapse Link table, as the extract stage finds it. */
export interface StagedSynapseLinkTable {
  readonly table: string;
  /** The view extract SQL reads. */
  readonly relation: string;
  /** The table behind the view (typed rows plus internal `__` columns); its insertion order is folder, file, line. */
  readonly stagedTable: string;
  readonly rows: number;
  readonly columns: ReadonlyArray<{ readonly name: string; readonly sqlType: string }>;
  readonly sourceFolders: readonly string[];
}

/**
 * Everything a Synapse Link read staged in this run. Each table is a view named after the table (`account`), with
 * typed columns plus `__folder` (timestamp folder or `delta@<version>`) and `__source_file` (lake path); choice labels
 * are the views `OptionsetMetadata`, `GlobalOptionsetMetadata`, `StateMetadata`, `StatusMetadata`, `TargetMetadata`.
 */
export interface StagedSynapseLink {
  readonly format: 'csv' | 'delta';
  readonly tables: readonly StagedSynapseLinkTable[];
}

/** One extract result handed to the writer. */
export interface ExtractResult {
  readonly output: string;
  readonly table: string;
  /** Staging relation holding the result. */
  readonly relation: string;
  readonly deleteColumn: string | null;
  readonly sourceFolders: readonly string[];
  /** True when the relation's row order is deterministic (the default extract), so the writer need not sort. */
  readonly ordered: boolean;
}

/** The one object the stages of a run hand data through; a new run starts with an empty one. */
export interface StageHandoff {
  /** Written by `read-parquet-deltas` and `replay-source`; read by `convert-to-dataverse`. */
  staged?: StagedRows;
  /** Written by `convert-to-dataverse`; read by `upsert-dataverse`. */
  converted?: ConvertedRows;
  /** Written by `upsert-dataverse`; read by convert's commit hook (applied versions) and `replay-outcome`. */
  upserted?: UpsertedRows;
  /** Written by `read-synapse-link`; read by `run-sql-extract`. */
  synapseLink?: StagedSynapseLink;
  /** Appended to by `run-sql-extract` (one per output, the last wins); read by `write-parquet`. */
  readonly extracts: ExtractResult[];
}

/** A fresh handoff for a new run. */
export function emptyHandoff(): StageHandoff {
  return { extracts: [] };
}

/**
 * Thrown by a stage that could not read the staged rows (a delta file whose pages cannot be decoded shows up only
 * when they are read). The runner then asks the stage that staged them to repair its input (hold back the bad
 * files and stage the rest) and runs the failed stage once more; with nothing to repair it rethrows `cause`.
 */
export class StagedInputUnreadable extends FerryError {
  constructor(stage: string, cause: unknown) {
    super('staging.input_unreadable', `Stage \`${stage}\` could not read the staged rows.`, { cause });
  }
}
