import { UsageError } from '../core/errors.js';
import type { StageSpecBase } from '../core/pipeline.js';

/**
 * How the Synapse exporter compiles a stage kind: its place in an exported pipeline. A kind without one cannot be
 * exported, and the exporter says so naming the kind.
 */
export type SynapseRole =
  | 'parquet-source'
  | 'conversion'
  | 'upsert'
  | 'synapse-link-source'
  | 'extract'
  | 'parquet-sink';

/**
 * What a stage kind's spec module declares besides its factory. Everything here is pure (no I/O), so pipeline
 * files and the exporter can read it; `src/stages/stage-spec.ts` lists one per kind, and a kind missing there does
 * not compile.
 */
export interface StageKindSpec<S extends StageSpecBase> {
  readonly kind: S['kind'];
  /**
   * Checks a spec read as data (a pipeline file, a run's kept definition) and returns it typed, with defaults
   * filled in; a wrong field is a `UsageError` naming the stage, the field and the value.
   */
  parse(spec: StageSpecBase): S;
  /** The source columns this stage reads from the staged rows (none for most kinds): a read stage stages them. */
  stagedColumns(spec: S): readonly string[];
  /** Where the Synapse exporter puts this stage, or null when it cannot compile it. */
  readonly synapseRole: SynapseRole | null;
}

/** The fields of a spec read as data, each checked for its type with a message naming it. */
export class SpecFields {
  readonly #kind: string;
  readonly #values: ReadonlyMap<string, unknown>;

  constructor(spec: StageSpecBase) {
    this.#kind = spec.kind;
    this.#values = new Map(Object.entries(spec));
  }

  string(name: string): string {
    const value = this.#values.get(name);
    if (typeof value === 'string' && value !== '') return value;
    throw this.#wrong(name, value, 'a non-empty string');
  }

  optString(name: string): string | undefined {
    return this.#values.get(name) === undefined ? undefined : this.string(name);
  }

  strings(name: string): string[] {
    const value = this.#values.get(name);
    if (Array.isArray(value) && value.every((v) => typeof v === 'string')) return value.map(String);
    throw this.#wrong(name, value, 'a list of strings');
  }

  optStrings(name: string): string[] | undefined {
    return this.#values.get(name) === undefined ? undefined : this.strings(name);
  }

  optNumber(name: string): number | undefined {
    const value = this.#values.get(name);
    if (value === undefined) return undefined;
    if (typeof value === 'number' && Number.isFinite(value)) return value;
    throw this.#wrong(name, value, 'a number');
  }

  /** An optional field holding one of `allowed`. */
  optOneOf<T extends string>(name: string, allowed: readonly T[]): T | undefined {
    const value = this.#values.get(name);
    if (value === undefined) return undefined;
    const found = allowed.find((a) => a === value);
    if (found !== undefined) return found;
    throw this.#wrong(name, value, `one of ${allowed.join(', ')}`);
  }

  /** An optional plain object, its values unchecked (the caller checks them). */
  optObject(name: string): Readonly<Record<string, unknown>> | undefined {
    const value = this.#values.get(name);
    if (value === undefined) return undefined;
    if (value !== null && typeof value === 'object' && !Array.isArray(value))
      return Object.fromEntries(Object.entries(value));
    throw this.#wrong(name, value, 'an object');
  }

  #wrong(name: string, value: unknown, expected: string): UsageError {
    return new UsageError(
      `Stage \`${this.#kind}\` has \`${name}\` = \`${value === undefined ? 'undefined' : JSON.stringify(value)}\`; it must be ${expected}. Fix the pipeline definition.`,
    );
  }
}
