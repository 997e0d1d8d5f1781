import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import { emptyCounts } from '../../core/counts.js';
import { FerryError } from '../../core/errors.js';
import { bigintSafe } from '../../core/log.js';
import type { RunMode } from '../../core/pipeline.js';
import type { RejectRecord, StoredReject } from '../../core/rejects.js';
import type {
  Lease,
  NewRun,
  RejectQuery,
  RunOutcome,
  RunRecord,
  RunStatus,
  StateStore,
} from '../../core/state-store.js';
import type { WindowItem } from '../../core/window.js';

const SCHEMA = `
CREATE TABLE IF NOT EXISTS runs (
  id TEXT PRIMARY KEY,
  pipeline TEXT NOT NULL,
  mode TEXT NOT NULL,
  status TEXT NOT NULL,
  window_json TEXT NOT NULL,
  started_at TEXT NOT NULL,
  finished_at TEXT,
  duration_ms INTEGER,
  counts_json TEXT NOT NULL,
  rejects_by_reason_json TEXT NOT NULL DEFAULT '{}',
  error_json TEXT,
  holder TEXT NOT NULL,
  parent_run_id TEXT,
  metrics_json TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS runs_pipeline ON runs (pipeline, started_at);
CREATE TABLE IF NOT EXISTS processed_items (
  pipeline TEXT NOT NULL,
  source TEXT NOT NULL,
  item_id TEXT NOT NULL,
  size INTEGER,
  modified_ms INTEGER,
  item_timestamp TEXT,
  run_id TEXT NOT NULL,
  processed_at TEXT NOT NULL,
  PRIMARY KEY (pipeline, source, item_id)
);
CREATE TABLE IF NOT EXISTS cursors (
  pipeline TEXT NOT NULL,
  source TEXT NOT NULL,
  value TEXT NOT NULL,
  run_id TEXT NOT NULL,
  updated_at TEXT NOT NULL,
  PRIMARY KEY (pipeline, source)
);
CREATE TABLE IF NOT EXISTS leases (
  name TEXT PRIMARY KEY,
  holder TEXT NOT NULL,
  token INTEGER NOT NULL,
  expires_at_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS lease_tokens (
  name TEXT PRIMARY KEY,
  last_token INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS rejects (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  run_id TEXT NOT NULL,
  pipeline TEXT NOT NULL,
  stage TEXT NOT NULL,
  reason TEXT NOT NULL,
  message TEXT NOT NULL,
  key TEXT,
  source_file TEXT,
  row_number INTEGER,
  row_json TEXT,
  request_json TEXT,
  service_error_json TEXT,
  status TEXT NOT NULL DEFAULT 'open',
  resolved_by_run TEXT,
  created_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS rejects_run ON rejects (run_id);
CREATE INDEX IF NOT EXISTS rejects_open ON rejects (pipeline, status, source_file);
CREATE TABLE IF NOT EXISTS kv (
  namespace TEXT NOT NULL,
  key TEXT NOT NULL,
  value TEXT NOT NULL,
  PRIMARY KEY (namespace, key)
);
`;

interface RunRow {
  id: string;
  pipeline: string;
  mode: string;
  status: string;
  window_json: string;
  started_at: string;
  finished_at: string | null;
  duration_ms: number | null;
  counts_json: string;
  rejects_by_reason_json: string;
  error_json: string | null;
  holder: string;
  parent_run_id: string | null;
  metrics_json: string;
}

interface RejectRow {
  id: number;
  run_id: string;
  pipeline: string;
  stage: string;
  reason: string;
  message: string;
  key: string | null;
  source_file: string | null;
  row_number: number | null;
  row_json: string | null;
  request_json: string | null;
  service_error_json: string | null;
  status: StoredReject['status'];
  resolved_by_run: string | null;
  created_at: string;
}

/**
 * Run ids sort by time: `20261126T171500123Z-accounts-inbound-3fa2c41b`. Four random bytes, not two: a listener or a
 * busy scheduler records many runs in one millisecond, and two bytes collided there.
 */
export function newRunId(pipeline: string, now = new Date()): string {
  const stamp = now.toISOString().replaceAll('-', '').replaceAll(':', '').replace('.', '');
  return `${stamp}-${pipeline}-${randomBytes(4).toString('hex')}`;
}

/**
 * The embedded state store: one SQLite file (`<state>/ferry.sqlite`) in WAL mode, so a scheduler, an operator's
 * `ferry status` and a backfill can use it at once. Every multi-row change is one transaction.
 */
export class SqliteStateStore implements StateStore {
  #db: Database.Database;

  constructor(file: string) {
    if (file !== ':memory:') fs.mkdirSync(path.dirname(file), { recursive: true });
    try {
      this.#db = new Database(file);
    } catch (error) {
      throw new FerryError(
        'state.open',
        `Cannot open the state store \`${file}\`: ${(error as Error).message}. Check --state / FERRY_STATE.`,
        { cause: error },
      );
    }
    this.#db.pragma('journal_mode = WAL');
    this.#db.pragma('busy_timeout = 10000');
    this.#db.pragma('synchronous = NORMAL');
    this.#db.exec(SCHEMA);
  }

  /** Opens `<stateDir>/ferry.sqlite`. */
  static openIn(stateDir: string): SqliteStateStore {
    return new SqliteStateStore(path.join(stateDir, 'ferry.sqlite'));
  }

  startRun(run: NewRun): RunRecord {
    const id = newRunId(run.pipeline);
    const startedAt = new Date().toISOString();
    this.#db
      .prepare(
        `INSERT INTO runs (id, pipeline, mode, status, window_json, started_at, counts_json, holder, parent_run_id)
         VALUES (?, ?, ?, 'running', ?, ?, ?, ?, ?)`,
      )
      .run(
        id,
        run.pipeline,
        run.mode,
        JSON.stringify(run.window),
        startedAt,
        JSON.stringify(emptyCounts()),
        run.holder,
        run.parentRunId ?? null,
      );
    return this.getRun(id)!;
  }

  finishRun(runId: string, outcome: RunOutcome): RunRecord {
    const run = this.getRun(runId);
    if (!run) throw new FerryError('state.run_missing', `Run \`${runId}\` is not in the state store.`);
    const finishedAt = new Date();
    const tx = this.#db.transaction(() => {
      this.#db
        .prepare(
          `UPDATE runs SET status = ?, finished_at = ?, duration_ms = ?, counts_json = ?, rejects_by_reason_json = ?,
             error_json = ?, metrics_json = ? WHERE id = ?`,
        )
        .run(
          outcome.status,
          finishedAt.toISOString(),
          finishedAt.getTime() - Date.parse(run.startedAt),
          JSON.stringify(outcome.counts),
          JSON.stringify(outcome.rejectsByReason),
          outcome.error ? JSON.stringify(outcome.error) : null,
          JSON.stringify(outcome.metrics ?? {}),
          runId,
        );
      if (outcome.markProcessed) {
        const insert = this.#db.prepare(
          `INSERT INTO processed_items (pipeline, source, item_id, size, modified_ms, item_timestamp, run_id, processed_at)
           VALUES (?, ?, ?, ?, ?, ?, ?, ?)
           ON CONFLICT (pipeline, source, item_id) DO UPDATE SET size = excluded.size, modified_ms = excluded.modified_ms,
             item_timestamp = excluded.item_timestamp, run_id = excluded.run_id, processed_at = excluded.processed_at`,
        );
        const heldBack = new Set(outcome.heldBack ?? []);
        for (const item of run.window.items) {
          if (heldBack.has(item.id)) continue;
          insert.run(
            run.pipeline,
            run.window.source,
            item.id,
            item.size ?? null,
            item.modifiedMs ?? null,
            item.timestamp ?? null,
            runId,
            finishedAt.toISOString(),
          );
        }
      }
      if (outcome.moveCursor && run.window.cursorAfter !== null) {
        this.#db
          .prepare(
            `INSERT INTO cursors (pipeline, source, value, run_id, updated_at) VALUES (?, ?, ?, ?, ?)
             ON CONFLICT (pipeline, source) DO UPDATE SET value = excluded.value, run_id = excluded.run_id, updated_at = excluded.updated_at`,
          )
          .run(run.pipeline, run.window.source, run.window.cursorAfter, runId, finishedAt.toISOString());
      }
    });
    tx.immediate();
    return this.getRun(runId)!;
  }

  recordSkipped(pipeline: string, mode: RunMode, holder: string, reason: string): RunRecord {
    const id = newRunId(pipeline);
    const now = new Date().toISOString();
    this.#db
      .prepare(
        `INSERT INTO runs (id, pipeline, mode, status, window_json, started_at, finished_at, duration_ms, counts_json, error_json, holder)
         VALUES (?, ?, ?, 'skipped', ?, ?, ?, 0, ?, ?, ?)`,
      )
      .run(
        id,
        pipeline,
        mode,
        JSON.stringify({ source: '', items: [], cursorBefore: null, cursorAfter: null }),
        now,
        now,
        JSON.stringify(emptyCounts()),
        JSON.stringify({ code: 'lease.held', message: reason }),
        holder,
      );
    return this.getRun(id)!;
  }

  getRun(runId: string): RunRecord | undefined {
    const row = this.#db.prepare('SELECT * FROM runs WHERE id = ?').get(runId) as RunRow | undefined;
    return row ? toRunRecord(row) : undefined;
  }

  listRuns(query: { pipeline?: string; limit?: number; status?: RunStatus } = {}): RunRecord[] {
    const { where, params } = whereEqual({ pipeline: query.pipeline, status: query.status });
    const sql = `SELECT * FROM runs ${where} ORDER BY started_at DESC, id DESC LIMIT ?`;
    return (this.#db.prepare(sql).all(...params, query.limit ?? 50) as RunRow[]).map(toRunRecord);
  }

  abandonRunningRuns(pipeline: string): string[] {
    const rows = this.#db
      .prepare(`SELECT id FROM runs WHERE pipeline = ? AND status = 'running'`)
      .all(pipeline) as Array<{ id: string }>;
    const now = new Date().toISOString();
    const update = this.#db.prepare(
      `UPDATE runs SET status = 'abandoned', finished_at = ?, error_json = ? WHERE id = ? AND status = 'running'`,
    );
    const tx = this.#db.transaction(() => {
      for (const { id } of rows) {
        update.run(
          now,
          JSON.stringify({
            code: 'run.abandoned',
            message: 'The process running it stopped before it finished; the next run repeats its window.',
          }),
          id,
        );
      }
    });
    tx.immediate();
    return rows.map((r) => r.id);
  }

  processedItems(pipeline: string, source: string): Map<string, WindowItem> {
    const rows = this.#db
      .prepare(
        'SELECT item_id, size, modified_ms, item_timestamp FROM processed_items WHERE pipeline = ? AND source = ?',
      )
      .all(pipeline, source) as Array<{
      item_id: string;
      size: number | null;
      modified_ms: number | null;
      item_timestamp: string | null;
    }>;
    const map = new Map<string, WindowItem>();
    for (const r of rows) {
      map.set(r.item_id, {
        id: r.item_id,
        ...(r.size === null ? {} : { size: r.size }),
        ...(r.modified_ms === null ? {} : { modifiedMs: r.modified_ms }),
        ...(r.item_timestamp === null ? {} : { timestamp: r.item_timestamp }),
      });
    }
    return map;
  }

  getCursor(pipeline: string, source: string): string | null {
    const row = this.#db.prepare('SELECT value FROM cursors WHERE pipeline = ? AND source = ?').get(pipeline, source) as
      | { value: string }
      | undefined;
    return row?.value ?? null;
  }

  acquireLease(name: string, holder: string, ttlMs: number, nowMs = Date.now()): Lease | null {
    const tx = this.#db.transaction((): Lease | null => {
      const current = this.#db.prepare('SELECT * FROM leases WHERE name = ?').get(name) as
        | { holder: string; token: number; expires_at_ms: number }
        | undefined;
      if (current && current.expires_at_ms > nowMs) return null;
      const last = this.#db.prepare('SELECT last_token FROM lease_tokens WHERE name = ?').get(name) as
        | { last_token: number }
        | undefined;
      const token = (last?.last_token ?? 0) + 1;
      this.#db
        .prepare(
          `INSERT INTO lease_tokens (name, last_token) VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET last_token = excluded.last_token`,
        )
        .run(name, token);
      this.#db
        .prepare(
          `INSERT INTO leases (name, holder, token, expires_at_ms) VALUES (?, ?, ?, ?)
           ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, token = excluded.token, expires_at_ms = excluded.expires_at_ms`,
        )
        .run(name, holder, token, nowMs + ttlMs);
      return { name, holder, token, expiresAtMs: nowMs + ttlMs };
    });
    return tx.immediate();
  }

  renewLease(name: string, token: number, ttlMs: number, nowMs = Date.now()): boolean {
    const result = this.#db
      .prepare('UPDATE leases SET expires_at_ms = ? WHERE name = ? AND token = ?')
      .run(nowMs + ttlMs, name, token);
    return result.changes === 1;
  }

  releaseLease(name: string, token: number): void {
    this.#db.prepare('DELETE FROM leases WHERE name = ? AND token = ?').run(name, token);
  }

  getLease(name: string): Lease | undefined {
    const row = this.#db.prepare('SELECT * FROM leases WHERE name = ?').get(name) as
      | { name: string; holder: string; token: number; expires_at_ms: number }
      | undefined;
    return row ? { name: row.name, holder: row.holder, token: row.token, expiresAtMs: row.expires_at_ms } : undefined;
  }

  addRejects(runId: string, pipeline: string, rejects: readonly RejectRecord[]): void {
    if (rejects.length === 0) return;
    const now = new Date().toISOString();
    const insert = this.#db.prepare(
      `INSERT INTO rejects (run_id, pipeline, stage, reason, message, key, source_file, row_number, row_json, request_json,
         service_error_json, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
    );
    const tx = this.#db.transaction(() => {
      for (const r of rejects) {
        insert.run(
          runId,
          pipeline,
          r.stage,
          r.reason,
          r.message,
          r.key ?? null,
          r.sourceFile ?? null,
          r.rowNumber ?? null,
          r.row === undefined ? null : jsonText(r.row),
          r.requestPayload === undefined ? null : jsonText(r.requestPayload),
          r.serviceError === undefined ? null : jsonText(r.serviceError),
          now,
        );
      }
    });
    tx.immediate();
  }

  listRejects(query: RejectQuery): StoredReject[] {
    const { where, params } = whereEqual({
      run_id: query.runId,
      pipeline: query.pipeline,
      reason: query.reason,
      status: query.status,
    });
    const sql = `SELECT * FROM rejects ${where} ORDER BY id LIMIT ?`;
    return (this.#db.prepare(sql).all(...params, query.limit ?? 1_000_000) as RejectRow[]).map(toStoredReject);
  }

  countOpenRejects(pipeline: string): number {
    const row = this.#db
      .prepare(`SELECT count(*) AS n FROM rejects WHERE pipeline = ? AND status = 'open'`)
      .get(pipeline) as { n: number };
    return row.n;
  }

  supersedeRejects(pipeline: string, sourceFiles: readonly string[], byRunId: string): number {
    const update = this.#db.prepare(
      `UPDATE rejects SET status = 'superseded', resolved_by_run = ? WHERE pipeline = ? AND status = 'open' AND source_file = ? AND run_id != ?`,
    );
    let changed = 0;
    const tx = this.#db.transaction(() => {
      for (const file of sourceFiles) changed += update.run(byRunId, pipeline, file, byRunId).changes;
    });
    tx.immediate();
    return changed;
  }

  resolveRejects(ids: readonly number[], byRunId: string): void {
    const update = this.#db.prepare(`UPDATE rejects SET status = 'resolved', resolved_by_run = ? WHERE id = ?`);
    const tx = this.#db.transaction(() => {
      for (const id of ids) update.run(byRunId, id);
    });
    tx.immediate();
  }

  supersedeRejectsById(ids: readonly number[], byRunId: string): void {
    const update = this.#db.prepare(
      `UPDATE rejects SET status = 'superseded', resolved_by_run = ? WHERE id = ? AND status = 'open'`,
    );
    const tx = this.#db.transaction(() => {
      for (const id of ids) update.run(byRunId, id);
    });
    tx.immediate();
  }

  getValue(namespace: string, key: string): string | null {
    const row = this.#db.prepare('SELECT value FROM kv WHERE namespace = ? AND key = ?').get(namespace, key) as
      | { value: string }
      | undefined;
    return row?.value ?? null;
  }

  setValue(namespace: string, key: string, value: string | null): void {
    if (value === null) {
      this.#db.prepare('DELETE FROM kv WHERE namespace = ? AND key = ?').run(namespace, key);
      return;
    }
    this.#db
      .prepare(
        'INSERT INTO kv (namespace, key, value) VALUES (?, ?, ?) ON CONFLICT (namespace, key) DO UPDATE SET value = excluded.value',
      )
      .run(namespace, key, value);
  }

  listValues(namespace: string): Array<{ key: string; value: string }> {
    return this.#db.prepare('SELECT key, value FROM kv WHERE namespace = ? ORDER BY key').all(namespace) as Array<{
      key: string;
      value: string;
    }>;
  }

  close(): void {
    this.#db.close();
  }
}

/** `WHERE column = ? AND ...` over the filters that are set (empty when none), with their values in order. */
function whereEqual(filters: Readonly<Record<string, string | undefined>>): { where: string; params: string[] } {
  const set = Object.entries(filters).filter((entry): entry is [string, string] => Boolean(entry[1]));
  return {
    where: set.length ? `WHERE ${set.map(([column]) => `${column} = ?`).join(' AND ')}` : '',
    params: set.map(([, value]) => value),
  };
}

function jsonText(value: unknown): string {
  return JSON.stringify(value, bigintSafe);
}

function parseJson(text: string | null): unknown {
  return text === null ? undefined : JSON.parse(text);
}

function toRunRecord(row: RunRow): RunRecord {
  return {
    id: row.id,
    pipeline: row.pipeline,
    mode: row.mode as RunMode,
    status: row.status as RunStatus,
    window: JSON.parse(row.window_json),
    startedAt: row.started_at,
    finishedAt: row.finished_at,
    durationMs: row.duration_ms,
    counts: { ...emptyCounts(), ...JSON.parse(row.counts_json) },
    rejectsByReason: JSON.parse(row.rejects_by_reason_json),
    error: row.error_json ? JSON.parse(row.error_json) : null,
    holder: row.holder,
    parentRunId: row.parent_run_id,
    metrics: JSON.parse(row.metrics_json),
  };
}

function toStoredReject(row: RejectRow): StoredReject {
  return {
    id: row.id,
    runId: row.run_id,
    pipeline: row.pipeline,
    stage: row.stage,
    reason: row.reason,
    message: row.message,
    key: row.key,
    sourceFile: row.source_file,
    rowNumber: row.row_number,
    row: parseJson(row.row_json),
    requestPayload: parseJson(row.request_json),
    serviceError: parseJson(row.service_error_json),
    status: row.status,
    resolvedByRun: row.resolved_by_run,
    createdAt: row.created_at,
  };
}
