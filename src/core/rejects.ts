/** A row that could not be delivered, with why. Rejects are data: they go to the error store and can be replayed. */
export interface RejectRecord {
  readonly stage: string;
  /** Stable reason code, e.g. `string.too_long`, `lookup.target_missing`, `dataverse.0x80044331`. */
  readonly reason: string;
  readonly message: string;
  /** The row's business key as text (alternate key values), when known. */
  readonly key?: string | null;
  readonly sourceFile?: string | null;
  readonly rowNumber?: number | null;
  /** The staged row as JSON-able data. */
  readonly row?: unknown;
  /** For Dataverse errors: the request payload the row travelled in (its own part of it). */
  readonly requestPayload?: unknown;
  /** For Dataverse errors: the service's error body. */
  readonly serviceError?: unknown;
}

export interface StoredReject extends RejectRecord {
  readonly id: number;
  readonly runId: string;
  readonly pipeline: string;
  readonly createdAt: string;
  /** `open` until replayed successfully (`resolved`) or replaced by a later run of the same window (`superseded`). */
  readonly status: 'open' | 'resolved' | 'superseded';
  readonly resolvedByRun?: string | null;
}
