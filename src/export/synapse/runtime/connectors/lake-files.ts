import { readdir, stat } from 'node:fs/promises';
import path from 'node:path';
import { UsageError } from '../../../../core/errors.js';

/** A file in a local container, with the attributes Copy filters on. */
export interface LakeFile {
  /** Path relative to the container, `/`-separated. */
  readonly path: string;
  readonly absolutePath: string;
  readonly size: number;
  readonly modifiedMs: number;
}

/**
 * The local stand-in for ADLS Gen2: each file system (container) is a folder. By default `<storageRoot>/<name>`;
 * `fileSystems` maps names to other folders (e.g. `lake` → the ferry lake).
 */
export class LocalStorage {
  readonly #root: string;
  readonly #fileSystems: Readonly<Record<string, string>>;

  constructor(root: string, fileSystems: Readonly<Record<string, string>> = {}) {
    this.#root = root;
    this.#fileSystems = fileSystems;
  }

  /** Local folder of a container. */
  container(fileSystem: string): string {
    if (!fileSystem || fileSystem.includes('/') || fileSystem.includes('..')) {
      throw new UsageError(`File system \`${fileSystem}\` is not a container name; give the container only.`);
    }
    return this.#fileSystems[fileSystem] ?? path.join(this.#root, fileSystem);
  }

  /** Local path of `relative` inside a container; `..` escaping the container is refused. */
  resolve(fileSystem: string, relative: string): string {
    const base = this.container(fileSystem);
    const full = path.resolve(base, relative.replace(/^\/+/, ''));
    if (full !== path.resolve(base) && !full.startsWith(path.resolve(base) + path.sep)) {
      throw new UsageError(`Path \`${relative}\` leaves file system \`${fileSystem}\`.`);
    }
    return full;
  }
}

/** Every file and folder below `dir` (relative `/` paths), sorted; a missing folder gives nothing. */
export async function walk(dir: string, recursive: boolean): Promise<{ files: LakeFile[]; folders: string[] }> {
  const files: LakeFile[] = [];
  const folders: string[] = [];
  const visit = async (rel: string) => {
    let entries: import('node:fs').Dirent[];
    try {
      entries = await readdir(path.join(dir, rel), { withFileTypes: true });
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT' || (error as NodeJS.ErrnoException).code === 'ENOTDIR')
        return;
      throw error;
    }
    for (const e of entries.sort((a, b) => (a.name < b.name ? -1 : 1))) {
      const childRel = rel ? `${rel}/${e.name}` : e.name;
      if (e.isDirectory()) {
        folders.push(childRel);
        if (recursive) await visit(childRel);
      } else if (e.isFile()) {
        const abs = path.join(dir, childRel);
        const s = await stat(abs);
        files.push({ path: childRel, absolutePath: abs, size: s.size, modifiedMs: s.mtimeMs });
      }
    }
  };
  await visit('');
  return { files, folders };
}

/**
 * A Copy wildcard as a regular expression: `*` = zero or more characters, `?` = zero or one character, `^` escapes
 * the next `*`, `?` or `^` (learn.microsoft.com/azure/data-factory/connector-azure-data-lake-storage, "Folder and
 * file filter examples"). Matching is case-sensitive, like blob names.
 */
export function wildcardRegExp(pattern: string): RegExp {
  let out = '';
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i]!;
    if (c === '^' && i + 1 < pattern.length && '*?^'.includes(pattern[i + 1]!)) {
      out += `\\${pattern[++i]}`;
    } else if (c === '*') out += '[^/]*';
    else if (c === '?') out += '[^/]?';
    else out += c.replace(/[.+()|[\]{}$\\]/g, '\\$&');
  }
  return new RegExp(`^${out}$`);
}

/** True when a wildcard pattern has an unescaped `*` or `?`. */
export function hasWildcard(pattern: string): boolean {
  return /(^|[^^])[*?]/.test(pattern);
}

/** How a file-based Copy source selects files. */
export interface FileSelection {
  readonly folderPath: string;
  readonly fileName?: string;
  readonly wildcardFolderPath?: string;
  readonly wildcardFileName?: string;
  readonly recursive: boolean;
  /** `start ≤ lastModified < end` (connector docs); undefined = open. */
  readonly modifiedStartMs?: number;
  readonly modifiedEndMs?: number;
  /** Lines of a `fileListPath` file: paths relative to the dataset folder. */
  readonly fileList?: readonly string[];
}

/** The files a Copy source reads, sorted by path. */
export async function selectFiles(container: string, selection: FileSelection): Promise<LakeFile[]> {
  const inWindow = (f: LakeFile) =>
    (selection.modifiedStartMs === undefined || f.modifiedMs >= selection.modifiedStartMs) &&
    (selection.modifiedEndMs === undefined || f.modifiedMs < selection.modifiedEndMs);
  if (selection.fileList) {
    // `recursive` and `modifiedDatetime*` do not apply to a file list (connector docs).
    const all = (await walk(container, true)).files;
    const wanted = new Set(selection.fileList.map((p) => joinPath(selection.folderPath, p)));
    return all.filter((f) => wanted.has(f.path));
  }
  const all = await walk(container, true);
  let folders: string[];
  const folderPattern = selection.wildcardFolderPath ?? selection.folderPath;
  const cleanFolder = folderPattern.replace(/^\/+|\/+$/g, '');
  if (selection.wildcardFolderPath !== undefined && hasWildcard(cleanFolder)) {
    const re = wildcardRegExp(cleanFolder);
    folders = all.folders.filter((f) => re.test(f));
  } else {
    folders = [cleanFolder];
  }
  const nameRe = selection.wildcardFileName !== undefined ? wildcardRegExp(selection.wildcardFileName) : undefined;
  const picked = new Map<string, LakeFile>();
  for (const folder of folders) {
    const prefix = folder === '' ? '' : `${folder}/`;
    for (const f of all.files) {
      if (!f.path.startsWith(prefix)) continue;
      const rest = f.path.slice(prefix.length);
      if (!selection.recursive && rest.includes('/')) continue;
      const base = rest.slice(rest.lastIndexOf('/') + 1);
      if (selection.fileName !== undefined && selection.wildcardFileName === undefined && rest !== selection.fileName)
        continue;
      if (nameRe && !nameRe.test(base)) continue;
      if (inWindow(f)) picked.set(f.path, f);
    }
  }
  return [...picked.values()].sort((a, b) => (a.path < b.path ? -1 : 1));
}

export function joinPath(...parts: string[]): string {
  return parts
    .flatMap((p) => p.split('/'))
    .filter((p) => p !== '' && p !== '.')
    .join('/');
}
