import fs from 'node:fs/promises';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { FerryError, UsageError } from './errors.js';
import type { PipelineDefinition } from './pipeline.js';

/**
 * Loads every `pipelines/*.ts` definition (default export of `definePipeline`), ordered so that a pipeline comes
 * after the ones it depends on.
 */
export async function loadPipelines(dir = path.resolve('pipelines')): Promise<PipelineDefinition[]> {
  let names: string[];
  try {
    names = (await fs.readdir(dir)).filter((n) => /\.(ts|js|mjs)$/.test(n) && !n.endsWith('.d.ts')).sort();
  } catch {
    throw new UsageError(
      `Pipeline folder \`${dir}\` does not exist; run ferry from the project root or pass --pipelines-dir.`,
    );
  }
  const defs: PipelineDefinition[] = [];
  for (const name of names) {
    const mod = (await import(pathToFileURL(path.join(dir, name)).href)) as { default?: PipelineDefinition };
    if (!mod.default?.name || !Array.isArray(mod.default.stages)) {
      throw new UsageError(`\`${path.join(dir, name)}\` does not default-export a definePipeline({...}) result.`);
    }
    defs.push(mod.default);
  }
  return orderByDependencies(defs);
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
    if (!known.has(n)) throw new UsageError(`Unknown pipeline \`${n}\`; known: ${[...known].join(', ')}.`);
  }
  return all.filter((p) => names.includes(p.name));
}
