/** One unit of input a run processes: a Parquet file, a Synapse Link folder, or a Delta version. */
export interface WindowItem {
  /** Stable identity: the file path relative to the lake root, the folder name, or `delta:<table>@<version>`. */
  readonly id: string;
  readonly size?: number;
  readonly modifiedMs?: number;
  /** The item's own time (file timestamp, folder time) as ISO-8601; backfill ranges select on it. */
  readonly timestamp?: string;
}

/**
 * What a run will process, fixed when the run is planned. A rerun of a failed or killed run plans the same
 * window again because nothing in it was marked processed and the cursor did not move.
 */
export interface RunWindow {
  /** Names the input the items come from, e.g. `lake:inbound/accounts`. Processed items are kept per source. */
  readonly source: string;
  readonly items: readonly WindowItem[];
  /** Cursor value before the run (null on the first run). */
  readonly cursorBefore: string | null;
  /** Cursor value to save when the run succeeds; null leaves it where it is. */
  readonly cursorAfter: string | null;
  /** For backfills: the requested time range. */
  readonly range?: { readonly from: string; readonly to: string };
}
