import { FerryError } from '../../core/errors.js';
import { timestampFolder } from './timestamp-folder.js';

/** A timestamp folder as listed, with what planning needs to know about it. */
export interface ListedFolder {
  readonly name: string;
  /** True when `<folder>/model.json` exists and is not empty (Synapse Link writes it when the folder is final). */
  readonly hasModel: boolean;
  /** True when the folder holds no file at all (Synapse Link can leave an empty folder behind after a retry). */
  readonly isEmpty?: boolean;
}

/** What {@link planFolders} decides from. */
export interface FolderPlanInput {
  readonly folders: readonly ListedFolder[];
  /** Trimmed content of `Changelog/changelog.info`: the folder being written now. */
  readonly inProgress: string | null;
  /** Last fully processed folder name (the cursor). */
  readonly cursor: string | null;
  /** Backfill: select folders whose time is in [from, to), ignoring the cursor. */
  readonly range?: { readonly from: string; readonly to: string };
  /** Ignore the cursor (process every completed folder again). */
  readonly reprocess?: boolean;
  /**
   * Largest number of folders one window may take. Default: no limit. A scheduled window stops there and the next one
   * goes on from the cursor; a backfill window has no cursor to go on from, so one that holds more fails instead.
   */
  readonly maxFolders?: number;
}

/** A folder the window takes, with its time as ISO-8601. */
export interface PlannedFolder {
  readonly name: string;
  readonly timestamp: string;
}

/** The folders of the window, in time order, and why it stops where it does. */
export interface FolderPlan {
  readonly folders: readonly PlannedFolder[];
  /** Why the window stops where it does (for the log), or null when it simply ran out of folders. */
  readonly stoppedAt: { readonly folder: string; readonly reason: 'in_progress' | 'no_model_json' } | null;
  /** Empty folders without model.json older than the in-progress folder: passed over, they hold no rows. */
  readonly skippedEmpty: readonly string[];
}

/**
 * Whether a folder of this time is one the window would take (in the backfill range, or after the cursor), leaving
 * aside whether it is complete. Folders it rules out need no further look (their model.json is never consulted).
 */
export function isSelected(timestamp: string, input: Pick<FolderPlanInput, 'cursor' | 'range' | 'reprocess'>): boolean {
  if (input.range) return timestamp >= isoOf(input.range.from) && timestamp < isoOf(input.range.to);
  const cursorTime = input.cursor ? (timestampFolder(input.cursor) ?? null) : null;
  return Boolean(input.reprocess) || cursorTime === null || timestamp > cursorTime;
}

/**
 * Decides which timestamp folders a run processes, in time order. A folder named in `changelog.info`, any folder
 * at or after it, and a folder without `model.json` stop the window: the cursor must never pass a folder that was
 * still being written when the run was planned, or its late rows would be skipped for good (FastTrack FT#368).
 */
export function planFolders(input: FolderPlanInput): FolderPlan {
  const parsed = input.folders
    .map((f) => ({ ...f, timestamp: timestampFolder(f.name) }))
    .filter((f): f is ListedFolder & { timestamp: string } => f.timestamp !== undefined)
    .sort((a, b) => (a.timestamp < b.timestamp ? -1 : a.timestamp > b.timestamp ? 1 : a.name < b.name ? -1 : 1));
  const inProgressTime = input.inProgress ? (timestampFolder(input.inProgress) ?? null) : null;
  const out: PlannedFolder[] = [];
  const skippedEmpty: string[] = [];
  for (const f of parsed) {
    if (f.name === input.inProgress || (inProgressTime !== null && f.timestamp >= inProgressTime)) {
      return { folders: out, stoppedAt: { folder: f.name, reason: 'in_progress' }, skippedEmpty };
    }
    const selected = isSelected(f.timestamp, input);
    if (input.range && f.timestamp >= isoOf(input.range.to)) break;
    if (!f.hasModel) {
      // Only a folder the window would take blocks it; older unfinished ones were handled (or skipped) before.
      if (!selected) continue;
      // An empty retry leftover older than the folder being written will never get data: passing it loses nothing.
      // Without changelog.info nothing says it is not about to be written, so it blocks like any other.
      if (f.isEmpty && inProgressTime !== null && f.timestamp < inProgressTime) {
        skippedEmpty.push(f.name);
        continue;
      }
      return { folders: out, stoppedAt: { folder: f.name, reason: 'no_model_json' }, skippedEmpty };
    }
    if (!selected) continue;
    if (input.maxFolders !== undefined && out.length >= input.maxFolders) {
      if (input.range) throw rangeOverMaxFolders(input.range, input.maxFolders, f.name);
      break;
    }
    out.push({ name: f.name, timestamp: f.timestamp });
  }
  return { folders: out, stoppedAt: null, skippedEmpty };
}

// Taking the first folders and moving on would skip the rest of the range for good: nothing comes back for them.
function rangeOverMaxFolders(range: { from: string; to: string }, maxFolders: number, next: string): FerryError {
  return new FerryError(
    'synapse_link.window_over_max_folders',
    `Backfill window ${range.from}..${range.to} holds more than maxFolders (${maxFolders}) Synapse Link folders (\`${next}\` is one too many); run the backfill with a smaller --window, or raise the stage's maxFolders.`,
  );
}

function isoOf(text: string): string {
  const t = Date.parse(text);
  return Number.isNaN(t) ? text : new Date(t).toISOString();
}
