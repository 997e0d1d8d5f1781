/** A file or folder in the lake; paths are relative to the lake root and use `/`. */
export interface LakeEntry {
  readonly path: string;
  readonly isDirectory: boolean;
  readonly size: number;
  readonly modifiedMs: number;
}

/**
 * The data lake as the toolkit needs it. Embedded default: a local folder (`LocalLake`); Azure: ADLS Gen2 through
 * its blob endpoint. DuckDB reads local files only, so remote lakes materialise files with `toLocalPath`.
 */
export interface Lake {
  /** Human-readable root, for messages. */
  readonly root: string;
  /** Entries directly under `prefix` (or all below it with `recursive`), sorted by path. Missing folder → []. */
  list(prefix: string, options?: { readonly recursive?: boolean }): Promise<LakeEntry[]>;
  stat(path: string): Promise<LakeEntry | undefined>;
  readText(path: string): Promise<string>;
  readBytes(path: string): Promise<Buffer>;
  /** Writes a whole file, creating folders. */
  write(path: string, data: Buffer | string): Promise<void>;
  /** Renames a file; the target is replaced. Local: atomic within one file system. */
  rename(from: string, to: string): Promise<void>;
  delete(path: string, options?: { readonly recursive?: boolean }): Promise<void>;
  /** A local file path DuckDB can open for `path`, downloading it first for remote lakes. */
  toLocalPath(path: string): Promise<string>;
  /** A local path to write `path` to before `publish` (local lakes write in place). */
  localWritePath(path: string): Promise<string>;
  /** Makes a file written at `localWritePath(path)` visible in the lake (upload for remote lakes). */
  publish(path: string): Promise<void>;
}

/** Joins lake path segments with `/`, dropping empty ones. */
export function lakeJoin(...parts: string[]): string {
  return parts
    .flatMap((p) => p.split('/'))
    .filter((p) => p !== '' && p !== '.')
    .join('/');
}
