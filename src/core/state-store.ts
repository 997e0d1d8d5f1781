import type { RunCounts } from './counts.js';
import type { RunMode } from './pipeline.js';
import type { RejectRecord, StoredReject } from './rejects.js';
import type { RunWindow, WindowItem } from './window.js';

/** `held_back`: the run had inputs and every one was held back (unreadable, missing a mapped column): nothing done. */
export const RUN_STATUSES = [
  'running',
  'succeeded',
  'failed',
  'rejects_exceeded',
  'held_back',
  'abandoned',
  'skipped',
] as const;
export type RunStatus = (typeof RUN_STATUSES)[number];

export interface RunRecord {
  readonly id: string;
  readonly pipeline: string;
  readonly mode: RunMode;
  readonly status: RunStatus;
  readonly window: RunWindow;
  readonly startedAt: string;
  readonly finishedAt: string | null;
  readonly durationMs: number | null;
  readonly counts: RunCounts;
  readonly rejectsByReason: Record<string, number>;
  readonly error: { readonly code: string; readonly message: string } | null;
  /** Who ran it: `host:pid`. */
  readonly holder: string;
  /** For replays: the run whose rejects were re-sent. */
  readonly parentRunId: string | null;
  /** Free-form figures a stage reports (requests, 429s, server time...). */
  readonly metrics: Record<string, unknown>;
}

export interface NewRun {
  readonly pipeline: string;
  readonly mode: RunMode;
  readonly window: RunWindow;
  readonly holder: string;
  readonly parentRunId?: string | null;
}

export interface RunOutcome {
  readonly status: Exclude<RunStatus, 'running'>;
  readonly counts: RunCounts;
  readonly rejectsByReason: Record<string, number>;
  readonly error?: { readonly code: string; readonly message: string } | null;
  readonly metrics?: Record<string, unknown>;
  /** Mark the window's items processed (false for backfills and replays, which never move pipeline state). */
  readonly markProcessed: boolean;
  /** Save the window's `cursorAfter`. */
  readonly moveCursor: boolean;
  /** Items a stage could not process: never marked processed, so the next run tries them again. */
  readonly heldBack?: readonly string[];
}

export interface Lease {
  readonly name: string;
  readonly holder: string;
  /** Fencing token: grows with every acquisition, so a stale holder can be told apart. */
  readonly token: number;
  readonly expiresAtMs: number;
}

export interface RejectQuery {
  readonly runId?: string;
  readonly pipeline?: string;
  readonly reason?: string;
  readonly status?: StoredReject['status'];
  readonly limit?: number;
}

/**
 * Shared state of every `ferry` process: runs, processed items, cursors, leases and the error store.
 * Embedded default: SQLite in WAL mode (`src/connectors/state/sqlite-state-store.ts`).
 */
export interface StateStore {
  startRun(run: NewRun): RunRecord;
  finishRun(runId: string, outcome: RunOutcome): RunRecord;
  /** Records a run that did not start because another holds the lease. */
  recordSkipped(pipeline: string, mode: RunMode, holder: string, reason: string): RunRecord;
  getRun(runId: string): RunRecord | undefined;
  listRuns(query?: { readonly pipeline?: string; readonly limit?: number; readonly status?: RunStatus }): RunRecord[];
  /** Runs left `running` by a process that died; the caller decides (lease expiry) when to call this. */
  abandonRunningRuns(pipeline: string): string[];

  processedItems(pipeline: string, source: string): Map<string, WindowItem>;
  getCursor(pipeline: string, source: string): string | null;

  acquireLease(name: string, holder: string, ttlMs: number, nowMs?: number): Lease | null;
  renewLease(name: string, token: number, ttlMs: number, nowMs?: number): boolean;
  releaseLease(name: string, token: number): void;
  getLease(name: string): Lease | undefined;

  addRejects(runId: string, pipeline: string, rejects: readonly RejectRecord[]): void;
  listRejects(query: RejectQuery): StoredReject[];
  countOpenRejects(pipeline: string): number;
  /** A later run reprocessed the same items: earlier open rejects of those items are superseded. */
  supersedeRejects(pipeline: string, sourceFiles: readonly string[], byRunId: string): number;
  resolveRejects(ids: readonly number[], byRunId: string): void;
  /** A replay rejected these rows again: the replay's own rejects (with the new reason) replace them. */
  supersedeRejectsById(ids: readonly number[], byRunId: string): void;

  /** Small namespaced key/value slots for features that need a bit of state (alerts, backfill progress). */
  getValue(namespace: string, key: string): string | null;
  setValue(namespace: string, key: string, value: string | null): void;
  listValues(namespace: string): Array<{ key: string; value: string }>;

  close(): void;
}
