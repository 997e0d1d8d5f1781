import type { Stats } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { FerryError } from '../../core/errors.js';
import type { Lake, LakeEntry } from '../../core/lake.js';

/** The embedded lake: a folder on this machine (`./lake` by default). */
export class LocalLake implements Lake {
  readonly root: string;

  constructor(root: string) {
    this.root = path.resolve(root);
  }

  #abs(p: string): string {
    const abs = path.resolve(this.root, p);
    if (abs !== this.root && !abs.startsWith(this.root + path.sep)) {
      throw new FerryError(
        'lake.path',
        `Lake path \`${p}\` leaves the lake root \`${this.root}\`; use a path inside it.`,
      );
    }
    return abs;
  }

  async list(prefix: string, options: { recursive?: boolean } = {}): Promise<LakeEntry[]> {
    const base = this.#abs(prefix);
    const out: LakeEntry[] = [];
    const walk = async (dir: string): Promise<void> => {
      let names: import('node:fs').Dirent[];
      try {
        names = await fs.readdir(dir, { withFileTypes: true });
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code === 'ENOENT' || (error as NodeJS.ErrnoException).code === 'ENOTDIR')
          return;
        throw error;
      }
      for (const d of names) {
        const abs = path.join(dir, d.name);
        const st = await fs.stat(abs).catch(() => undefined);
        if (!st) continue;
        out.push(entryOf(path.relative(this.root, abs).split(path.sep).join('/'), st));
        if (options.recursive && st.isDirectory()) await walk(abs);
      }
    };
    await walk(base);
    return out.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  }

  async stat(p: string): Promise<LakeEntry | undefined> {
    const st = await fs.stat(this.#abs(p)).catch(() => undefined);
    return st ? entryOf(p, st) : undefined;
  }

  readText(p: string): Promise<string> {
    return fs.readFile(this.#abs(p), 'utf8');
  }

  readBytes(p: string): Promise<Buffer> {
    return fs.readFile(this.#abs(p));
  }

  async write(p: string, data: Buffer | string): Promise<void> {
    const abs = this.#abs(p);
    await fs.mkdir(path.dirname(abs), { recursive: true });
    await fs.writeFile(abs, data);
  }

  async rename(from: string, to: string): Promise<void> {
    const target = this.#abs(to);
    await fs.mkdir(path.dirname(target), { recursive: true });
    await fs.rename(this.#abs(from), target);
  }

  async delete(p: string, options: { recursive?: boolean } = {}): Promise<void> {
    await fs.rm(this.#abs(p), { recursive: options.recursive ?? false, force: true });
  }

  async toLocalPath(p: string): Promise<string> {
    return this.#abs(p);
  }

  async localWritePath(p: string): Promise<string> {
    const abs = this.#abs(p);
    await fs.mkdir(path.dirname(abs), { recursive: true });
    return abs;
  }

  async publish(_p: string): Promise<void> {
    // Written in place: nothing to upload.
  }
}

/** A stat result as a lake entry (a folder has no size), for list and stat alike. */
function entryOf(p: string, st: Stats): LakeEntry {
  return {
    path: p,
    isDirectory: st.isDirectory(),
    size: st.isDirectory() ? 0 : st.size,
    modifiedMs: Math.trunc(st.mtimeMs),
  };
}
