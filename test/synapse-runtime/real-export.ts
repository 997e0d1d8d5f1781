/**
 * Helpers for runtime tests on the exported artifacts as deployed (`synapse/`): the real store, the same store with
 * a few artifacts replaced (a stub pipeline standing in for one whose SQL the test does not exercise), and one real
 * activity lifted out of its pipeline to run on its own.
 */
import { ArtifactStore } from '../../src/export/synapse/runtime/artifact-store.js';
import { isObject, type JsonObject } from '../../src/export/synapse/runtime/expression/json-value.js';

export const SYNAPSE_DIR = 'synapse';
const KINDS = ['linkedService', 'dataset', 'pipeline', 'trigger'] as const;
type Kind = (typeof KINDS)[number];

export function loadRealStore(dir = SYNAPSE_DIR): Promise<ArtifactStore> {
  return ArtifactStore.load(dir);
}

/** The real artifacts with some replaced or added (by kind and name). */
export function storeWith(
  real: ArtifactStore,
  overrides: Partial<Record<Kind, readonly { name: string; properties: object }[]>>,
): ArtifactStore {
  const objects: Partial<Record<Kind, { name: string; properties: object }[]>> = {};
  for (const kind of KINDS) {
    const replaced = new Map((overrides[kind] ?? []).map((a) => [a.name, a]));
    const list = real.names(kind).map((n) => replaced.get(n) ?? { name: n, properties: real.get(kind, n).properties });
    for (const [n, a] of replaced) if (!real.has(kind, n)) list.push(a);
    objects[kind] = list;
  }
  return ArtifactStore.fromObjects(objects);
}

/** One activity of a real pipeline (top level), as exported. */
export function realActivity(real: ArtifactStore, pipeline: string, activity: string): JsonObject {
  const acts = real.get('pipeline', pipeline).properties.activities;
  const found = (Array.isArray(acts) ? acts : []).find((a) => isObject(a) && a.name === activity);
  if (!isObject(found)) throw new Error(`No activity \`${activity}\` in \`${pipeline}\`.`);
  return structuredClone(found);
}

/** The real pipeline's parameters, with its activities replaced (a stub of the same name and signature). */
export function stubPipeline(real: ArtifactStore, name: string, activities: readonly JsonObject[]) {
  const p = real.get('pipeline', name).properties;
  return {
    name,
    properties: { parameters: p.parameters ?? {}, variables: p.variables ?? {}, activities },
  };
}
