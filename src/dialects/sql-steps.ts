/**
 * SQL steps: every SQL statement the Synapse export writes is a step — a dialect-neutral plan with a stable id —
 * rendered by a dialect. The exported T-SQL (Script blocks, Lookup/Copy source queries, `preCopyScript`s, and the
 * files under `sql/tsql/`) starts with the line `-- ferry-step: <id>`; the DuckDB rendering of the same plan is what
 * a local runtime executes in its place.
 *
 * Usage (a runtime executing the exported artifacts):
 *
 * ```ts
 * import { planSynapseSteps } from '../export/synapse/synapse-exporter.js';   // the registry, from the pipelines
 * import { duckdbSteps } from './duckdb/steps.js';
 * const steps = await planSynapseSteps(pipelines, { settings, metadataDir, readExtract });  // as `ferry export synapse`
 * const renderings = steps.renderings(duckdbSteps);           // (id) => DuckDB text, or undefined for an unknown id
 * const step = steps.get(stepIdIn(text)!)!;                   // the id on the statement's first line
 * const values = {};                                          // each of step.parameters, evaluated in the activity
 * for (const p of step.parameters) values[p.name] = evaluate(p.expression);   // (a dataSource one: its local path)
 * for (const s of splitStatements(bindStepParameters(renderings(step.id)!, values))) await duck.run(s);
 * ```
 * Run `setup:ferry-state` once on a new workspace database (the state tables in schema `ferry`).
 *
 * Parameters, in both renderings:
 * - T-SQL: a parameter with `script: true` is a Script activity parameter of the same name (`@run_id`, `@pipeline`,
 *   `@window_start`, `@window_end`), bound by the Script activity; every other parameter is a pipeline expression
 *   interpolated into the text (`@{pipeline().RunId}`), inside `N'…'` when it is a string, evaluated by the pipeline
 *   engine before the text reaches the server. A parameter with `dataSource` does not appear in T-SQL (CETAS names
 *   the folder itself under that data source).
 * - DuckDB: every parameter is `$name` (DuckDB's named prepared-statement parameter), never inside a string literal;
 *   `bindStepParameters` replaces each with a DuckDB literal (text, number, boolean or NULL). Its value is what the
 *   T-SQL rendering receives: `expression` evaluated in the activity's scope; for a `dataSource` parameter, the local
 *   path of that folder under the data source (the runtime creates its parent folders; DuckDB refuses a folder that
 *   already holds files, as CETAS refuses a location holding data).
 * - Tables are the same in both renderings: `ferry.<table>` for the state schema (DuckDB: schema `ferry` of the same
 *   database), staging tables by their one-part name (`stg_<pipeline>_staged`, …), which the Copy activities fill.
 * - The outbound extract's DuckDB rendering reads the relation `synapse_link_<table>` (`synapseLinkRelation` in
 *   duckdb/synapse-link.ts: the window's Synapse Link rows, each folder's columns bound and typed by its own
 *   `model.json` as the T-SQL rendering binds them, plus `__folder` = the timestamp folder) instead of OPENROWSET,
 *   which the runtime provides; a custom extract also reads the label tables its DuckDB query joins
 *   (`OptionsetMetadata`, `StateMetadata`, … of the newest folder of the window).
 */

import type { ConversionPlan } from '../core/mapping.js';
import type { RecoveryStepPlan } from './recovery-steps.js';

/** A value the step receives when it runs. */
export interface StepParameter {
  /** `$name` in DuckDB; `@name` (script) or an interpolated expression in T-SQL. */
  readonly name: string;
  /** The pipeline expression giving the value, e.g. `@pipeline().RunId`, `@variables('windowEnd')`. */
  readonly expression: string;
  readonly type: 'string' | 'number';
  /** True when the Script activity passes it as a parameter (`@name` in T-SQL); otherwise T-SQL interpolates it. */
  readonly script?: boolean;
  /**
   * The value is a folder under this external data source (`ferry_warehouse`): the T-SQL rendering names the folder
   * in CETAS itself; a runtime binds the folder's local path (DuckDB `COPY … TO $name`).
   */
  readonly dataSource?: string;
}

/** A plan of one step; `kind` selects how each dialect renders it. */
export interface StepPlan {
  readonly kind: string;
}

/** One SQL step: id, plan and the parameters it receives. */
export interface SqlStep<P extends StepPlan = StepPlan> {
  /** Stable: `<pipeline>:<step>[:<part>]`, or `setup:<name>`; characters `[A-Za-z0-9_.:-]`. */
  readonly id: string;
  readonly plan: P;
  readonly parameters: readonly StepParameter[];
}

/** How a dialect renders step plans: one function per plan kind. */
export interface StepRenderer {
  readonly dialect: string;
  /** The statements of a step, in run order (no trailing `;`). */
  render(step: SqlStep): string[];
}

/** The line that names a step in rendered text. */
export const STEP_ID_PREFIX = '-- ferry-step: ';

const STEP_ID = /^[A-Za-z0-9_.:-]+$/;

/** Checks a step id's characters; throws naming the id otherwise. */
export function checkStepId(id: string): string {
  if (!STEP_ID.test(id)) throw new Error(`SQL step id \`${id}\` may only hold letters, digits and \`_ . : -\`.`);
  return id;
}

/** The step's statements rendered by a dialect, joined as one batch (`;` after each). */
export function renderStep(step: SqlStep, renderer: StepRenderer): string {
  return renderer
    .render(step)
    .map((s) => `${s.trim().replace(/;$/, '')};`)
    .join('\n');
}

/** The step id a rendered text names on its first `-- ferry-step:` line, if any. */
export function stepIdIn(text: string): string | undefined {
  return /(?:^|\n)\s*-- ferry-step: ([A-Za-z0-9_.:-]+)/.exec(text)?.[1];
}

/** The steps of an export by id; refuses two different steps with one id. */
export class StepRegistry {
  readonly #steps = new Map<string, SqlStep>();

  add<P extends StepPlan>(step: SqlStep<P>): SqlStep<P> {
    checkStepId(step.id);
    const known = this.#steps.get(step.id);
    if (known && JSON.stringify(known) !== JSON.stringify(step))
      throw new Error(`Two different SQL steps have the id \`${step.id}\`.`);
    this.#steps.set(step.id, step);
    return step;
  }

  get(id: string): SqlStep | undefined {
    return this.#steps.get(id);
  }

  ids(): string[] {
    return [...this.#steps.keys()].sort();
  }

  all(): SqlStep[] {
    return this.ids().map((id) => this.#steps.get(id)!);
  }

  /** `(id) => rendering` for a dialect: what a runtime looks steps up by. */
  renderings(renderer: StepRenderer): (id: string) => string | undefined {
    return (id) => {
      const step = this.#steps.get(id);
      return step ? renderStep(step, renderer) : undefined;
    };
  }
}

/** A parameter value as the runtime evaluated it. */
export type StepValue = string | number | boolean | null;

/**
 * Replaces each `$name` of a DuckDB rendering (outside string literals, quoted identifiers and comments) with the
 * DuckDB literal of `values[name]`; a `$name` without a value is an error naming it.
 */
export function bindStepParameters(sql: string, values: Readonly<Record<string, StepValue>>): string {
  let out = '';
  for (let i = 0; i < sql.length; i++) {
    const c = sql[i]!;
    if (c === "'" || c === '"') {
      let j = i + 1;
      for (; j < sql.length; j++) {
        if (sql[j] === c) {
          if (sql[j + 1] === c) j++;
          else break;
        }
      }
      out += sql.slice(i, j + 1);
      i = j;
      continue;
    }
    if (c === '-' && sql[i + 1] === '-') {
      const end = sql.indexOf('\n', i);
      const stop = end < 0 ? sql.length : end;
      out += sql.slice(i, stop);
      i = stop - 1;
      continue;
    }
    if (c === '$') {
      const m = /^\$([A-Za-z_]\w*)/.exec(sql.slice(i));
      if (m) {
        const name = m[1]!;
        if (!Object.hasOwn(values, name))
          throw new Error(`SQL step parameter \`$${name}\` has no value; pass it (see the step's parameters).`);
        out += duckValue(values[name] ?? null);
        i += m[0].length - 1;
        continue;
      }
    }
    out += c;
  }
  return out;
}

function duckValue(v: StepValue): string {
  if (v === null) return 'NULL';
  if (typeof v === 'number') return Number.isFinite(v) ? String(v) : 'NULL';
  if (typeof v === 'boolean') return v ? 'TRUE' : 'FALSE';
  return `'${v.replaceAll("'", "''")}'`;
}

/** The `$name` parameters a DuckDB rendering uses (outside literals and comments). */
export function stepParameterNames(sql: string): string[] {
  const names = new Set<string>();
  const blanked = sql.replace(/'(?:[^']|'')*'|"(?:[^"]|"")*"|--[^\n]*/g, "''");
  for (const m of blanked.matchAll(/\$([A-Za-z_]\w*)/g)) names.add(m[1]!);
  return [...names];
}

/** A table: `schema` empty means the connection's default schema (one-part name). */
export interface TableName {
  readonly schema: string;
  readonly table: string;
}

/** Tables the compiled statements use. */
export interface ConversionNames {
  /** Prefix of shared staging tables (the key map copies), e.g. `stg_`. */
  readonly prefix: string;
  /** Source rows as copied (source columns + `__source_file`). */
  readonly staged: TableName;
  /** Source rows with `__row_id` and `__row_number` (the staging contract's `staged`). */
  readonly rows: TableName;
  /** The classification work table. */
  readonly work: TableName;
  /** The staging contract's `converted` table. */
  readonly converted: TableName;
  /** Flat rows for the Copy activity: key attributes, attributes, lookups resolved to GUIDs. */
  readonly sink: TableName;
  readonly rejects: TableName;
  readonly keymap: TableName;
  /** `(pipeline, key, version)` of the versions applied per key (`ferry.applied_versions`). */
  readonly appliedVersions: TableName;
}

/** A lookup target whose alternate-key → GUID map the pipeline copies from Dataverse before converting. */
export interface KeymapTarget {
  readonly table: string;
  readonly entitySet: string;
  readonly idAttribute: string;
  readonly keyAttributes: readonly string[];
}

/** What an outbound extract compiles from. */
export interface ExtractInput {
  readonly table: string;
  /** Warehouse folder (and external table) name. Default: the table. */
  readonly output?: string;
  /**
   * Attributes of the metadata snapshot: the column list of a Delta extract (bound by name). A CSV extract binds
   * each timestamp folder's columns by that folder's `model.json` at run time (tables gain columns over time).
   */
  readonly metadata: { readonly Attributes: readonly { readonly LogicalName: string }[] };
  readonly format: 'csv' | 'delta';
  /** The Synapse Link folder of the pipeline (informational; the data source points at the container). */
  readonly synapseLinkFolder: string;
  readonly deletes: 'flag-column' | 'separate-file' | 'drop';
  /**
   * A hand-written T-SQL SELECT reading from the relation `src` (deduplicated latest rows). `{window_start}` and
   * `{window_end}` in it stand for the window's bounds (timestamp folder names), e.g. to read only the
   * `OptionsetMetadata` of the window's folders: `o.filepath(1) > N'{window_start}' AND o.filepath(1) < N'{window_end}'`.
   */
  readonly customSelect?: string;
  /** The custom extract's DuckDB query (the local runner's), reading `<table>_latest`: its DuckDB rendering. */
  readonly duckdbSelect?: string;
}

/** A conversion as the Synapse export runs it: the plan, its tables and the key maps of its lookup targets. */
export interface SynapseConversion {
  readonly plan: ConversionPlan;
  readonly names: ConversionNames;
  /** Lookup targets by alternate key, with their primary id attribute. */
  readonly keymapTargets: readonly KeymapTarget[];
  /**
   * Lookups to the pipeline's own table whose target is a row of the same run are sent empty and set by a second
   * pass after the run's writes (`resolve-deferred`), instead of being rejected. Only for a pipeline that runs that
   * pass.
   */
  readonly deferSelfLookups?: boolean;
}

/** The steps of the Synapse export, as plain data (what each statement does, not how a dialect writes it). */
export type SynapseStepPlan =
  /** The state store, error store, applied versions and key map tables (idempotent). */
  | { readonly kind: 'state-schema'; readonly schema: string }
  /** Inserts the run row (status `running`); drops the staging tables the run refills. Parameters: run_id, mode, window_start, window_end, data_factory. */
  | { readonly kind: 'begin-run'; readonly pipeline: string; readonly dropTables: readonly string[] }
  /** One row `cursor_value`: the pipeline's cursor for `source`, `fallback` when none. */
  | { readonly kind: 'read-cursor'; readonly pipeline: string; readonly source: string; readonly fallback: string }
  /**
   * Creates the table when missing (typed, so a Copy sink fills it by name and an empty source still leaves it with
   * its columns), then empties it: a Copy sink's pre-copy script. Both dialects keep the table.
   */
  | {
      readonly kind: 'truncate-table';
      readonly schema: string;
      readonly table: string;
      readonly columns: readonly RawColumn[];
    }
  /** Ends the run: counts, reject threshold, cursor (never for backfills); returns over_threshold, rejected, written. */
  | {
      readonly kind: 'finish-run';
      readonly pipeline: string;
      readonly source: string;
      readonly maxRejectedRatio: number;
      readonly maxRejected?: number;
      /** Rows written come from the `rows` parameter; otherwise 0. */
      readonly rowsWritten: boolean;
      /** Records the rows the Dataverse Copy skipped (`rows_skipped` parameter) as one reject, naming the lake folder. */
      readonly copySkipped?: { readonly errorsFolder: string };
    }
  /** Marks the run failed because `failedActivity` failed. Parameter: run_id. */
  | { readonly kind: 'mark-failed'; readonly failedActivity: string }
  /** Key map refresh, lineage, classification, rejects and the sink table. Parameters: run_id, pipeline (script). */
  | { readonly kind: 'convert'; readonly conversion: SynapseConversion }
  /** The rows the Copy activity sends to Dataverse. */
  | { readonly kind: 'sink-query'; readonly conversion: SynapseConversion }
  /** Applied versions after the Copy to Dataverse succeeded. Parameters: run_id, pipeline (script). */
  | { readonly kind: 'save-versions'; readonly conversion: SynapseConversion }
  /**
   * One table's window from Synapse Link into a fresh warehouse folder `<output>/<window_name>/<run_id>/`.
   * Parameters: window_start, window_end, window_name, run_id (script); location(s) (data source). Returns
   * rows_written, rows_deleted.
   */
  | { readonly kind: 'extract'; readonly extract: ExtractInput }
  /** The replay and housekeeping pipelines' steps (`recovery-steps.ts`). */
  | RecoveryStepPlan
  // Inbound key maps, processed files and same-window lookups.
  /**
   * The lower bound (`since`, `yyyy-MM-ddTHH:mm:ssZ`) of the incremental read of a key-map table from Dataverse:
   * `1900-01-01T00:00:00Z` (a full read) when the key map holds no row of `entitySet`, has no watermark, or its last
   * full read is older than `fullEveryHours` (recorded as this pipeline's full-pending marker), else the watermark
   * minus `overlapMinutes`; `run_since` is this run's start minus the overlap (the read after this run's
   * own writes). Records this run's start as the pending watermark of `pipeline` (promoted when the key map is
   * merged). Parameter: run_id.
   */
  | {
      readonly kind: 'keymap-since';
      readonly pipeline: string;
      readonly table: string;
      readonly entitySet: string;
      readonly overlapMinutes: number;
      /** A full read (which drops entries of records deleted in Dataverse) when the last one is older than this. */
      readonly fullEveryHours: number;
    }
  /** Merges the re-read key map of the pipeline's own table, resolves the lookups deferred to after this run's writes. */
  | { readonly kind: 'resolve-deferred'; readonly conversion: SynapseConversion }
  /** The rows (key and deferred lookups) the Copy activity sends after the key map was re-read. */
  | { readonly kind: 'deferred-sink-query'; readonly conversion: SynapseConversion }
  /**
   * Lookup targets checked before the copies (an incremental key-map read cannot see a delete): the key-map ids of
   * `table` the sink's lookups point at, in chunks of `chunkSize` (`lookupCheckTable`); empties the table the
   * Dataverse read fills (`lookupSeenTable`, typed `seenColumns`); returns one row per chunk (`chunk`).
   */
  | {
      readonly kind: 'lookup-target-chunks';
      readonly conversion: SynapseConversion;
      readonly table: string;
      readonly chunkSize: number;
      readonly seenColumns: readonly RawColumn[];
    }
  /**
   * One row `run_since` (`yyyy-MM-ddTHH:mm:ssZ`): the database's time less `overlapMinutes`, the lower bound of a
   * re-read of the records this run writes (the replay's second pass), by the clock the key-map reads use.
   */
  | { readonly kind: 'run-since'; readonly overlapMinutes: number }
  /** One chunk of those ids as FetchXML `<value>` elements, one row `ids`. Parameter: chunk. */
  | { readonly kind: 'lookup-target-chunk'; readonly conversion: SynapseConversion; readonly table: string }
  /**
   * Drops the key-map entries checked and not found in Dataverse, then builds the sink again, so a row pointing at
   * a deleted record is rejected `lookup.target_missing` (or deferred, when its target is a row of the run) before
   * anything is written. Parameters: run_id, pipeline (script).
   */
  | { readonly kind: 'apply-lookup-check'; readonly conversion: SynapseConversion }
  /**
   * The delta files (`files`: JSON array of `{ name }`) not yet in `ferry.processed_items` for (pipeline, source),
   * oldest name first, at most `limit`; a run with a window (`window_start` set) takes every listed file, as the
   * local runner reprocesses a range. Parameters: files, window_start (script).
   */
  | {
      readonly kind: 'select-new-files';
      readonly pipeline: string;
      readonly source: string;
      /** The lake folder: a processed item's id is `<folder>/<name>`, as the local runner records it. */
      readonly folder: string;
      readonly limit: number;
    }
  /** Records the selected files (`files`: JSON array of `{ name }`) as processed. Parameters: files, run_id (script). */
  | {
      readonly kind: 'record-processed-files';
      readonly pipeline: string;
      readonly source: string;
      readonly folder: string;
    }
  // State columns of new records.
  /**
   * The rows whose `statecode`/`statuscode` the second Dataverse copy sets once the records exist (a new record
   * cannot be created in a non-default state): key and state columns, only rows with a state column set, without
   * the states reachable only through a message (`messageOnlyStates`).
   */
  | {
      readonly kind: 'state-sink-query';
      readonly conversion: SynapseConversion;
      readonly messageOnlyStates: readonly number[];
    }
  // Won/lost: close messages after the rows are written.
  /**
   * The steps that close the rows whose `statecode` only a message reaches (`close.states`), after the copies wrote
   * them open (`close-steps.ts` builds them for every dialect):
   * - `list`: empties the close-state table and lists at most `close.limit` such rows (`row_id`, `key_filter`: the
   *   OData `$filter` on the alternate key), rejecting the rest (`synapse.close_limit`) for a later window;
   * - `record-state`: records one row's record id, `statecode` and `statuscode` as read from Dataverse
   *   (parameters row_id, record_id, statecode, statuscode);
   * - `reopens`: the rows closed the other way (`row_id`, `body` of the UpdateMultiple that sets `statecode` 0);
   * - `sends`: the rows not yet in the wanted state and status and not refused in this run (`row_id`, `action`,
   *   `body` of the message with its activity and `Status`: the row's, else the state's default, else -1);
   * - `refusal`: rejects one row the service refused (stage upsert-dataverse; reason `dataverse.<code>` from the
   *   service's error in the failed Web activity's message, else `dataverse.http_<status>`, else
   *   `synapse.close_refused`), as the local writer rejects it (parameters row_id, error).
   * Each phase declares the parameters it uses (run_id, pipeline where it writes or reads this run's rejects).
   */
  | {
      readonly kind: 'close-messages';
      readonly phase: 'list' | 'record-state' | 'reopens' | 'sends' | 'refusal';
      readonly conversion: SynapseConversion;
      readonly close: CloseMessagePlan;
    }
  // Multi-select columns, written by Web activities.
  /**
   * The multi-select values of the rows the Dataverse copies wrote (the sink table), as `UpsertMultiple` request
   * bodies of at most `chunkRows` targets each, into the table `chunks` (`chunk`, `body`):
   * `{"Targets":[{"@odata.type":"Microsoft.Dynamics.CRM.<table>","@odata.id":"<entity set>(<key predicate>)",
   * "<column>":"1,9"}, …]}` — the comma-separated option values the Web API takes for a MultiSelectPicklist.
   * `includeNulls`: the columns clear on null (a null is sent as `null`, every row has a target, as the local writer
   * sends `null`); otherwise they omit on null (a null column is left out, a row with all of them null has no
   * target). Returns one row: `chunks`, a JSON array of the chunk numbers (`[1,2,…]`, `[]` when none). Never more
   * than `maxChunks` chunks (a ForEach takes at most 100,000 items): a run with more rows than that many chunks of
   * `chunkRows` hold gets larger chunks. Parameters: none.
   */
  | {
      readonly kind: 'multiselect-chunks';
      readonly conversion: SynapseConversion;
      readonly columns: readonly string[];
      readonly includeNulls: boolean;
      readonly chunkRows: number;
      readonly maxChunks: number;
      readonly chunks: TableName;
    }
  /** The `body` of one chunk of `multiselect-chunks`. Parameter: chunk (the chunk number). */
  | { readonly kind: 'multiselect-chunk'; readonly chunks: TableName };

/** What the close-message steps need of the target table and its message-only states. */
export interface CloseMessagePlan {
  /** The table's logical name (`opportunity`), its entity set and primary id. */
  readonly table: string;
  readonly entitySet: string;
  readonly primaryId: string;
  /** The activity the message takes (`opportunityclose`) and the message's parameter naming it (`OpportunityClose`). */
  readonly activity: string;
  readonly parameter: string;
  readonly states: readonly {
    readonly state: number;
    readonly action: string;
    /** `Won: ` / `Lost: `: the activity's subject is this and the row's key. */
    readonly subjectPrefix: string;
    /** The state's default status, for a row without `statuscode` (-1 when the metadata has none). */
    readonly defaultStatus: number;
  }[];
  /** The alternate key's columns (sink columns) and whether each is text (quoted in the `$filter`). */
  readonly key: readonly { readonly attribute: string; readonly text: boolean }[];
  /** Messages per run: the Script activity's result set holds at most 5,000 rows. */
  readonly limit: number;
}

/** The reject message of a refused close, around the key and the service's message (as the local writer words it). */
export const CLOSE_REFUSAL_MESSAGE = [
  'Dataverse upserted `',
  '` open but refused to close it: ',
  ' Fix statecode/statuscode, then replay the row.',
] as const;

/** The reject message of a row past the per-run limit of close messages. */
export const CLOSE_LIMIT_MESSAGE =
  'The row was written open: a run sends at most {limit} close messages (the Script result set limit) and this run had more. Close the record with its message, or send the row again in a later window.';

/**
 * The `dataverse.copy_skipped` reject's message, before and after the count: the rows the Copy's fault tolerance
 * skipped are rows it could not convert to the sink's column types; a row the service refuses fails the copy
 * (connector-dynamics-crm-office-365, copy-activity-fault-tolerance on learn.microsoft.com).
 */
export const COPY_SKIPPED_MESSAGE = [
  'The copy to Dataverse skipped ',
  ' rows it could not convert to the column types (fault tolerance: enableSkipIncompatibleRow); a row Dataverse refuses fails the copy instead. The skipped rows and their errors are in the lake under {folder}; fix them at the source, then replay.',
] as const;

/** The state-store cursor holding a key-map table's watermark (`ferry.cursors`, pipeline `ferry:keymap`). */
export const KEYMAP_CURSOR_PIPELINE = 'ferry:keymap';
/** Source of the committed watermark of a key-map table. */
export const keymapCursorSource = (table: string) => `dataverse:${table}`;
/** Source of the pending watermark of one pipeline's read (promoted to the committed one after the merge). */
export const keymapPendingPrefix = (table: string) => `dataverse:${table}:pending:`;
/** Source of the time of the table's last full read (a full read also drops key-map entries it did not see). */
export const keymapFullSource = (table: string) => `dataverse:${table}:full`;
/** Source of the marker (`1` full, `0` incremental) of one pipeline's current read of the table. */
export const keymapFullPendingPrefix = (table: string) => `dataverse:${table}:full-pending:`;
/** The sink column holding a deferred lookup's key predicate (the target is written in the same run). */
export const deferColumn = (index: number) => `__defer_${index}`;
/** The key-map ids of `table` a run's sink points at, with their chunk (`lookup-target-chunks`). */
export const lookupCheckTable = (names: ConversionNames, table: string): TableName => ({
  schema: names.sink.schema,
  table: `${names.sink.table}_check_${table}`,
});
/** The records of `table` the lookup check found in Dataverse (filled by its Copy activities). */
export const lookupSeenTable = (names: ConversionNames, table: string): TableName => ({
  schema: names.sink.schema,
  table: `${names.sink.table}_seen_${table}`,
});

/** A column of a table a step creates: text (`length` characters), GUID, 64-bit integer, decimal, double, UTC time, boolean. */
export interface RawColumn {
  readonly name: string;
  readonly type: 'text' | 'uuid' | 'bigint' | 'decimal' | 'double' | 'timestamp' | 'boolean';
}
