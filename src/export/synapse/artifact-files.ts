import fs from 'node:fs/promises';
import path from 'node:path';
import { stableJson } from './stable-json.js';
import { ARTIFACT_KINDS, type GeneratedFile, type SynapseExport } from './synapse-artifacts.js';

/** Where the artifacts and SQL go, relative to the project root. */
export interface OutputLayout {
  /** Artifacts folder. Default `synapse`. */
  readonly synapseDir: string;
  /** Generated T-SQL folder. Default `sql/tsql`. */
  readonly sqlDir: string;
}

/** Files to write: `<synapseDir>/<kind>/<name>.json` (the Synapse Git layout) and `<sqlDir>/...`. */
export function exportFiles(result: SynapseExport, layout: OutputLayout): GeneratedFile[] {
  const files: GeneratedFile[] = result.artifacts.map((a) => ({
    path: path.posix.join(layout.synapseDir, a.kind, `${a.name}.json`),
    content: stableJson({ name: a.name, properties: a.properties }),
  }));
  for (const f of result.sqlFiles)
    files.push({ path: path.posix.join(layout.sqlDir, f.path.replace(/^sql\/tsql\//, '')), content: f.content });
  return files.sort((a, b) => a.path.localeCompare(b.path));
}

/** What differs between the wanted files and the tree: new, changed, and stale files (generated before, no longer). */
export interface FileDiff {
  readonly added: string[];
  readonly changed: string[];
  readonly removed: string[];
}

/** Compares generated files with what is on disk under `root`; only the generated folders are scanned. */
export async function diffFiles(
  root: string,
  files: readonly GeneratedFile[],
  layout: OutputLayout,
): Promise<FileDiff> {
  const added: string[] = [];
  const changed: string[] = [];
  for (const f of files) {
    const current = await fs.readFile(path.join(root, f.path), 'utf8').catch(() => undefined);
    if (current === undefined) added.push(f.path);
    else if (current !== f.content) changed.push(f.path);
  }
  const wanted = new Set(files.map((f) => f.path));
  const existing = [
    ...(await listGenerated(root, layout.synapseDir, ARTIFACT_KINDS.map(String), '.json')),
    ...(await listGenerated(root, layout.sqlDir, undefined, '.sql')).filter(
      (p) => !p.startsWith(`${layout.sqlDir}/extract/`),
    ),
  ];
  const removed = existing.filter((p) => !wanted.has(p)).sort();
  return { added, changed, removed };
}

/** Writes the files (and deletes stale generated ones) so the tree matches the export exactly. */
export async function writeFiles(
  root: string,
  files: readonly GeneratedFile[],
  layout: OutputLayout,
): Promise<FileDiff> {
  const diff = await diffFiles(root, files, layout);
  for (const f of files) {
    if (!diff.added.includes(f.path) && !diff.changed.includes(f.path)) continue;
    const target = path.join(root, f.path);
    await fs.mkdir(path.dirname(target), { recursive: true });
    // Temp name then rename: a killed export never leaves a half-written artifact.
    await fs.writeFile(`${target}.tmp`, f.content);
    await fs.rename(`${target}.tmp`, target);
  }
  for (const p of diff.removed) await fs.rm(path.join(root, p), { force: true });
  return diff;
}

async function listGenerated(root: string, dir: string, subdirs: string[] | undefined, ext: string): Promise<string[]> {
  const out: string[] = [];
  const walk = async (rel: string) => {
    const entries = await fs.readdir(path.join(root, rel), { withFileTypes: true }).catch(() => []);
    for (const e of entries) {
      const p = path.posix.join(rel, e.name);
      if (e.isDirectory()) await walk(p);
      else if (e.name.endsWith(ext)) out.push(p);
    }
  };
  if (subdirs) for (const s of subdirs) await walk(path.posix.join(dir, s));
  else await walk(dir);
  return out;
}
