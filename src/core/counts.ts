/** Row counts of a run. Every row read ends as exactly one of upserted, skippedStale or rejected (inbound). */
export interface RunCounts {
  read: number;
  staged: number;
  converted: number;
  upserted: number;
  skippedStale: number;
  rejected: number;
  /** Outbound: rows written to warehouse Parquet. */
  written: number;
  /** Outbound: delete markers written. */
  deleted: number;
}

export function emptyCounts(): RunCounts {
  return { read: 0, staged: 0, converted: 0, upserted: 0, skippedStale: 0, rejected: 0, written: 0, deleted: 0 };
}
