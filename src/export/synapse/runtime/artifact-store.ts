import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { UsageError } from '../../../core/errors.js';
import { isObject, type Json, type JsonObject } from './expression/json-value.js';

export const ARTIFACT_KINDS = ['linkedService', 'dataset', 'pipeline', 'trigger'] as const;
export type ArtifactKind = (typeof ARTIFACT_KINDS)[number];

/** One deployed artifact: `{ name, properties }` as the workspace REST API and Git mode store it. */
export interface Artifact {
  readonly name: string;
  readonly properties: JsonObject;
  readonly file: string;
}

/** A declared parameter or variable: type and optional default. */
export interface Declaration {
  readonly type: string;
  readonly defaultValue?: Json;
}

const PARAMETER_TYPES = ['String', 'Int', 'Float', 'Bool', 'Array', 'Object', 'SecureString'];
const VARIABLE_TYPES = ['String', 'Bool', 'Array', 'Integer', 'Boolean'];

/**
 * The artifacts of one workspace as deployed: the JSON files under `linkedService/`, `dataset/`, `pipeline/`,
 * `trigger/` of a `synapse/` folder. Other folders (schemas, README) are ignored.
 */
export class ArtifactStore {
  readonly root: string;
  readonly #byKind: Record<ArtifactKind, Map<string, Artifact>>;

  constructor(root: string, artifacts: Record<ArtifactKind, Map<string, Artifact>>) {
    this.root = root;
    this.#byKind = artifacts;
  }

  /** Reads every artifact under `root`; a file whose `name` is missing or duplicated is an error naming it. */
  static async load(root: string): Promise<ArtifactStore> {
    const byKind = {} as Record<ArtifactKind, Map<string, Artifact>>;
    let any = false;
    for (const kind of ARTIFACT_KINDS) {
      const map = new Map<string, Artifact>();
      byKind[kind] = map;
      let files: string[] = [];
      try {
        files = (await readdir(path.join(root, kind))).filter((f) => f.endsWith('.json')).sort();
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
      }
      for (const file of files) {
        any = true;
        const full = path.join(root, kind, file);
        let parsed: unknown;
        try {
          parsed = JSON.parse(await readFile(full, 'utf8'));
        } catch (error) {
          throw new UsageError(`Artifact \`${full}\` is not valid JSON; fix or regenerate it.`, { cause: error });
        }
        if (!isObject(parsed) || typeof parsed.name !== 'string' || !isObject(parsed.properties)) {
          throw new UsageError(
            `Artifact \`${full}\` lacks \`name\` or \`properties\`; it is not a deployable ${kind}.`,
          );
        }
        if (map.has(parsed.name)) {
          throw new UsageError(
            `Two ${kind} artifacts are named \`${parsed.name}\` (\`${map.get(parsed.name)!.file}\`, \`${full}\`).`,
          );
        }
        map.set(parsed.name, { name: parsed.name, properties: parsed.properties, file: full });
      }
    }
    if (!any) {
      throw new UsageError(
        `No artifacts under \`${root}\`: expected JSON files in ${ARTIFACT_KINDS.map((k) => `${k}/`).join(', ')}; run \`ferry export synapse\` or point at the exported folder.`,
      );
    }
    return new ArtifactStore(root, byKind);
  }

  /** Builds a store from in-memory artifacts (tests). */
  static fromObjects(
    objects: Partial<Record<ArtifactKind, readonly { name: string; properties: object }[]>>,
  ): ArtifactStore {
    const byKind = {} as Record<ArtifactKind, Map<string, Artifact>>;
    for (const kind of ARTIFACT_KINDS) {
      byKind[kind] = new Map(
        (objects[kind] ?? []).map((a) => [
          a.name,
          { name: a.name, properties: a.properties as JsonObject, file: `<memory>/${kind}/${a.name}.json` },
        ]),
      );
    }
    return new ArtifactStore('<memory>', byKind);
  }

  /**
   * The store as a workspace deployed for one environment holds it: each linked-service parameter named in `values`
   * gets that value as its default (what `ferry deploy synapse --environment` writes; an environment file's
   * `parameters`). A reference that passes its own value still wins. A name no linked service declares is an error.
   * A pipeline parameter of the same name as a linked-service parameter (e.g. `dataverseUrl`, which a Web activity
   * needs for its URL, having no linked service) gets the same default, as the deploy binds it; a run or trigger that
   * passes its own value still wins.
   */
  withLinkedServiceParameters(values: Readonly<Record<string, Json>>): ArtifactStore {
    const declared = new Set<string>();
    const services = new Map<string, Artifact>();
    for (const [name, artifact] of this.#byKind.linkedService) {
      const params = artifact.properties.parameters;
      if (!isObject(params)) {
        services.set(name, artifact);
        continue;
      }
      const next: JsonObject = {};
      for (const [p, decl] of Object.entries(params)) {
        declared.add(p);
        next[p] = Object.hasOwn(values, p) && isObject(decl) ? { ...decl, defaultValue: values[p]! } : decl;
      }
      services.set(name, { ...artifact, properties: { ...artifact.properties, parameters: next } });
    }
    const unknown = Object.keys(values).filter((k) => !declared.has(k));
    if (unknown.length > 0)
      throw new UsageError(
        `Linked-service parameter${unknown.length > 1 ? 's' : ''} ${unknown.map((k) => `\`${k}\``).join(', ')} given to the runtime ${unknown.length > 1 ? 'are' : 'is'} declared by no linked service under \`${this.root}\`; declared: ${[...declared].sort().join(', ') || '(none)'}.`,
      );
    const pipelines = new Map<string, Artifact>();
    for (const [name, artifact] of this.#byKind.pipeline) {
      const params = artifact.properties.parameters;
      if (!isObject(params) || !Object.keys(params).some((p) => declared.has(p) && Object.hasOwn(values, p))) {
        pipelines.set(name, artifact);
        continue;
      }
      const next: JsonObject = {};
      for (const [p, decl] of Object.entries(params))
        next[p] =
          declared.has(p) && Object.hasOwn(values, p) && isObject(decl) ? { ...decl, defaultValue: values[p]! } : decl;
      pipelines.set(name, { ...artifact, properties: { ...artifact.properties, parameters: next } });
    }
    return new ArtifactStore(this.root, { ...this.#byKind, linkedService: services, pipeline: pipelines });
  }

  names(kind: ArtifactKind): string[] {
    return [...this.#byKind[kind].keys()];
  }

  has(kind: ArtifactKind, name: string): boolean {
    return this.#byKind[kind].has(name);
  }

  get(kind: ArtifactKind, name: string): Artifact {
    const found = this.#byKind[kind].get(name);
    if (!found) {
      const known = this.names(kind);
      throw new UsageError(
        `No ${kind} named \`${name}\` under \`${this.root}\`; known: ${known.length ? known.join(', ') : '(none)'}.`,
      );
    }
    return found;
  }
}

/** Reads a `parameters`/`variables` block into declarations, checking the documented types. */
export function declarations(block: unknown, what: 'parameter' | 'variable', owner: string): Map<string, Declaration> {
  const out = new Map<string, Declaration>();
  if (block === undefined) return out;
  if (!isObject(block)) throw new UsageError(`The ${what}s of \`${owner}\` are not an object.`);
  const allowed = what === 'parameter' ? PARAMETER_TYPES : VARIABLE_TYPES;
  for (const [name, decl] of Object.entries(block)) {
    if (!isObject(decl) || typeof decl.type !== 'string') {
      throw new UsageError(`The ${what} \`${name}\` of \`${owner}\` has no \`type\`.`);
    }
    const type = allowed.find((t) => t.toLowerCase() === (decl.type as string).toLowerCase());
    if (!type) {
      throw new UsageError(
        `The ${what} \`${name}\` of \`${owner}\` has type \`${decl.type}\`; use one of ${allowed.join(', ')}.`,
      );
    }
    out.set(name, decl.defaultValue === undefined ? { type } : { type, defaultValue: decl.defaultValue as Json });
  }
  return out;
}

/** Checks a value against a declared parameter/variable type (`SecureString` is a string). */
export function checkType(value: Json, type: string, what: string): Json {
  const t = type.toLowerCase();
  const ok =
    t === 'string' || t === 'securestring'
      ? typeof value === 'string'
      : t === 'int' || t === 'integer'
        ? typeof value === 'number' && Number.isInteger(value)
        : t === 'float'
          ? typeof value === 'number'
          : t === 'bool' || t === 'boolean'
            ? typeof value === 'boolean'
            : t === 'array'
              ? Array.isArray(value)
              : t === 'object'
                ? isObject(value)
                : false;
  if (!ok && value !== null) {
    throw new UsageError(`${what} is of type \`${type}\` but got \`${JSON.stringify(value)?.slice(0, 100)}\`.`);
  }
  return value;
}
