import fs from 'node:fs/promises';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { didYouMean } from './closest-name.js';
import { FerryError, UsageError } from './errors.js';
import type { PipelineDefinition } from './pipeline.js';

/** A pipeline file that could not be loaded, and why. */
export interface BrokenPipelineFile {
  readonly file: string;
  readonly message: string;
}

/**
 * Loads every `pipelines/*.ts` definition (default export of `definePipeline`), ordered so that a pipeline comes
 * after the ones it depends on. A file that cannot be loaded (syntax error, a mapping that does not validate, no
 * default export) is an error naming the file.
 */
export async function loadPipelines(dir = path.resolve('pipelines')): Promise<PipelineDefinition[]> {
  const { pipelines, broken } = await loadPipelineSet(dir);
  if (broken.length) throw new UsageError(brokenMessage(broken));
  return pipelines;
}

/**
 * Like `loadPipelines`, but a broken file does not stop the others: it is listed in `broken`, so `ferry status`
 * and `ferry run` of the other pipelines still work.
 */
export async function loadPipelineSet(
  dir = path.resolve('pipelines'),
): Promise<{ pipelines: PipelineDefinition[]; broken: BrokenPipelineFile[] }> {
  let names: string[];
  try {
    names = (await fs.readdir(dir)).filter((n) => /\.(ts|js|mjs)$/.test(n) && !n.endsWith('.d.ts')).sort();
  } catch {
    throw new UsageError(
      `Pipeline folder \`${dir}\` does not exist; run ferry from the project root or pass --pipelines-dir.`,
    );
  }
  const defs: PipelineDefinition[] = [];
  const broken: BrokenPipelineFile[] = [];
  for (const name of names) {
    const file = path.join(dir, name);
    let mod: { default?: PipelineDefinition };
    try {
      mod = (await import(pathToFileURL(file).href)) as { default?: PipelineDefinition };
    } catch (error) {
      // A syntax error's location is on the line after "Transform failed with 1 error:".
      const lines = (error instanceof Error ? error.message : String(error)).split('\n').filter((l) => l.trim());
      broken.push({ file, message: lines.slice(0, /:$/.test(lines[0] ?? '') ? 2 : 1).join(' ') });
      continue;
    }
    if (!mod.default?.name || !Array.isArray(mod.default.stages)) {
      broken.push({ file, message: 'it does not default-export a definePipeline({...}) result' });
      continue;
    }
    defs.push(mod.default);
  }
  return { pipelines: orderByDependencies(defs), broken };
}

/** One sentence per broken file. */
export function brokenMessage(broken: readonly BrokenPipelineFile[]): string {
  return broken.map((b) => `Pipeline file \`${b.file}\` cannot be loaded: ${b.message}. Fix the file.`).join('\n');
}

/** Topological order by `dependsOn`, stable by name otherwise. */
export function orderByDependencies(defs: readonly PipelineDefinition[]): PipelineDefinition[] {
  const byName = new Map(defs.map((d) => [d.name, d]));
  const out: PipelineDefinition[] = [];
  const state = new Map<string, 'visiting' | 'done'>();
  const visit = (d: PipelineDefinition, trail: string[]) => {
    if (state.get(d.name) === 'done') return;
    if (state.get(d.name) === 'visiting') {
      throw new FerryError(
        'pipeline.cycle',
        `Pipelines depend on each other in a cycle: ${[...trail, d.name].join(' → ')}.`,
      );
    }
    state.set(d.name, 'visiting');
    for (const dep of d.dependsOn) {
      const target = byName.get(dep);
      if (target) visit(target, [...trail, d.name]);
    }
    state.set(d.name, 'done');
    out.push(d);
  };
  for (const d of [...defs].sort((a, b) => a.name.localeCompare(b.name))) visit(d, []);
  return out;
}

/** Picks pipelines by name, with a clear error for an unknown one. */
export function selectPipelines(
  all: readonly PipelineDefinition[],
  names: readonly string[] | undefined,
): PipelineDefinition[] {
  if (!names || names.length === 0) return [...all];
  const known = new Set(all.map((p) => p.name));
  for (const n of names) {
    if (!known.has(n))
      throw new UsageError(`Unknown pipeline \`${n}\`.${didYouMean(n, known)} Known: ${[...known].join(', ')}.`);
  }
  return all.filter((p) => names.includes(p.name));
}
